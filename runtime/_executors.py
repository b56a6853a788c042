"""Thread pools for sync user code: one for task attempts, a larger one for sync workflow bodies.

Separate pools mean sync bodies blocked on `.result()` can never starve the
tasks they wait for. Context variables (the run scope, structlog context, the
current span) are copied into the worker thread.

Each pool admits at most its size of calls at once, plus one for every call
that is blocked in a nested, synchronous perdure call (``Client().run(...)``
from inside a sync function: see `lend_while_blocked`). The nested run needs a
thread of its own; if the blocked caller kept its slot, enough such callers
would hold every thread and wait for ever on runs that can never start.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import contextvars
import functools
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

_SIZES = {"task": 64, "body": 256}
_pools: dict[str, concurrent.futures.ThreadPoolExecutor] = {}
_gates: dict[str, _Gate] = {}
_setup = threading.Lock()
_worker = threading.local()  # .gate: the gate of the call this pool thread is running
#: A call waiting to be admitted: its event loop and the future that admits it.
_Waiter = tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]


class _Gate:
    """Admits `size` calls at once, plus one per admitted call blocked in a nested call.

    Thread-safe: calls are admitted from any event loop, and released from the
    pool threads that ran them.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._busy = 0
        self._lent = 0
        self._queue: collections.deque[_Waiter] = collections.deque()

    @property
    def busy(self) -> int:
        return self._busy

    @property
    def lent(self) -> int:
        return self._lent

    async def acquire(self) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            if not self._queue and self._busy < self.size + self._lent:
                self._busy += 1
                return
            admitted: asyncio.Future[None] = loop.create_future()
            self._queue.append((loop, admitted))
        try:
            await admitted
        except asyncio.CancelledError:
            with self._lock:
                try:
                    self._queue.remove((loop, admitted))
                    holding = False
                except ValueError:
                    holding = True  # a slot was handed over to this call
            if holding and admitted.done() and not admitted.cancelled():
                self.release()  # handed over and set, but the caller went away: pass it on
            # (handed over but not set yet: `_hand_over` sees the cancelled future and releases)
            raise

    def release(self) -> None:
        with self._lock:
            self._busy -= 1
            admitted = self._admit()
        self._notify(admitted)

    @contextlib.contextmanager
    def lend(self) -> Iterator[None]:
        """One more call may run while the current one waits in here."""
        with self._lock:
            self._lent += 1
            admitted = self._admit()
        self._notify(admitted)
        try:
            yield
        finally:
            with self._lock:
                self._lent -= 1

    def _admit(self) -> list[_Waiter]:
        admitted = []
        while self._queue and self._busy < self.size + self._lent:
            admitted.append(self._queue.popleft())
            self._busy += 1
        return admitted

    def _notify(self, admitted: list[_Waiter]) -> None:
        for loop, future in admitted:
            try:
                loop.call_soon_threadsafe(self._hand_over, future)
            except RuntimeError:  # that loop is closed: nobody will take the slot
                self.release()

    def _hand_over(self, future: asyncio.Future[None]) -> None:
        if future.done():
            self.release()  # its caller was cancelled meanwhile
        else:
            future.set_result(None)


def _pool(kind: str) -> concurrent.futures.ThreadPoolExecutor:
    pool = _pools.get(kind)
    if pool is None:
        with _setup:
            pool = _pools.get(kind)
            if pool is None:
                # The gate bounds how many calls run; the executor only supplies threads
                # (reusing idle ones), so it must never be the one to make a call wait.
                pool = _pools[kind] = concurrent.futures.ThreadPoolExecutor(
                    max_workers=sys.maxsize, thread_name_prefix=f"perdure-{kind}"
                )
    return pool


def _gate(kind: str) -> _Gate:
    gate = _gates.get(kind)
    if gate is None:
        with _setup:
            gate = _gates.get(kind)
            if gate is None:
                gate = _gates[kind] = _Gate(_SIZES[kind])
    return gate


def _work(gate: _Gate, call: Callable[[], T]) -> T:
    """In the pool thread: run the call; its slot is released when it ends, not before."""
    _worker.gate = gate
    try:
        return call()
    finally:
        _worker.gate = None
        gate.release()


async def run_sync(kind: str, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Run `fn` in the `kind` ("task" or "body") pool with the caller's context variables.

    `kind` and `fn` are positional-only, so `kwargs` may hold any name (a user
    function's ``kind=`` or ``fn=`` parameter, or its ``**kwargs``).
    """
    gate = _gate(kind)
    ctx = contextvars.copy_context()
    await gate.acquire()
    try:
        submitted = _pool(kind).submit(_work, gate, functools.partial(ctx.run, fn, *args, **kwargs))
    except BaseException:
        gate.release()
        raise
    # Cancelled before a thread took it (the awaiting task was cancelled): it never runs.
    submitted.add_done_callback(lambda done: gate.release() if done.cancelled() else None)
    return await asyncio.wrap_future(submitted)


@contextlib.contextmanager
def lend_while_blocked() -> Iterator[None]:
    """Around a blocking wait for another run: a pool thread lends its slot meanwhile.

    Outside the pools (plain caller threads) this does nothing.
    """
    gate: _Gate | None = getattr(_worker, "gate", None)
    if gate is None:
        yield
        return
    with gate.lend():
        yield
