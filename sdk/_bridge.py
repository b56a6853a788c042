"""How sdk callers (`Client`, `Workflow`) reach a runtime, from sync or async code.

A `Bridge` names a store (a log object, a path, or the default store) and sends
each call to the runtime open on it in this process:

1. an async caller whose event loop runs that runtime calls it directly (with
   neither log nor path: the runtime of the enclosing ``async with Runtime(...)``);
2. otherwise, a runtime open on that store on another thread's loop (a web
   app's lifespan runtime, called from a ``def`` handler's worker thread) gets
   the call on its own loop, thread-safely;
3. otherwise the store's shared background runtime (`perdure.runtime._background`),
   leased for the duration of the call.

A blocking call made on a running event loop raises `ClientUsageError`, as does
any call through a closed bridge.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import queue
import threading
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

from perdure.eventlog import EventLog, StorageError, UsageError
from perdure.runtime import (
    MISSING,
    BackgroundRuntime,
    Runtime,
    RuntimeClosedError,
    current_runtime,
    default_store_path,
    find_runtime,
    is_background,
    lease_background,
    lend_while_blocked,
    release_background,
    retain_background,
)

T = TypeVar("T")


def _nothing() -> None:
    return None


#: How often a thread blocked on another loop checks that the loop still runs (seconds).
_POLL = 0.5


class ClientUsageError(UsageError, RuntimeError):
    """A client or workflow call was made where it cannot work: a blocking call inside a
    running event loop, or a call on a closed `Client`."""


def in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _stopped(loop: asyncio.AbstractEventLoop) -> bool:
    return loop.is_closed() or not loop.is_running()


def _wait(fut: concurrent.futures.Future[T], loop: asyncio.AbstractEventLoop) -> T:
    """`fut.result()`, unless `loop` stops first (its pending calls would never run).

    Called from a run's pool thread (a sync body calling another run), the thread
    lends its slot while it waits, so the run it waits for can get a thread.
    """
    with lend_while_blocked():
        # Not `fut.result(timeout=_POLL)`: the call's own error may be a TimeoutError
        # (`RunTimeoutError`), which must not pass for the poll timing out.
        while not concurrent.futures.wait([fut], timeout=_POLL).done:
            if _stopped(loop) and not fut.done():
                fut.cancel()
                raise RuntimeClosedError(
                    "the runtime's event loop stopped before the call finished"
                )
        return fut.result()


class Bridge:
    """Routes calls for one store to the runtime that serves it (see the module docstring).

    log / path: the store (neither: the enclosing runtime, else the default store
        ``PERDURE_PATH`` or ``./.perdure``, looked up at each call).
    hold: keep a lease on the background runtime from the first call until
        `close` (a `Client`), so `close` can release the store.
    """

    def __init__(
        self, *, log: EventLog | None = None, path: str | None = None, hold: bool = False
    ) -> None:
        self.log = log
        self.path = path
        self._hold = hold
        self._held: BackgroundRuntime | None = None
        #: The runtime the last sync call went to (`call`'s reads from the store use it).
        self._recent: Callable[[], Runtime | None] = _nothing
        self._recent_default: str | None = None
        self._lock = threading.Lock()
        self.closed = False
        self.closed_message = "this client is closed"

    def where(self) -> str:
        if self.log is not None:
            return repr(self.log)
        return self.path or default_store_path()

    # -- finding the runtime -----------------------------------------------------------------

    def _check(self, blocking: str | None) -> None:
        if self.closed:
            raise ClientUsageError(self.closed_message)
        if blocking is not None and in_event_loop():
            raise ClientUsageError(blocking)

    def _here(self) -> Runtime | None:
        """The runtime of this store on the running loop."""
        return find_runtime(log=self.log, path=self.path)

    def _lease(self) -> BackgroundRuntime:
        background = lease_background(log=self.log, path=self.path)
        if not self._hold:
            return background
        with self._lock:
            if self.closed:  # closed while this call was on its way: hold nothing more
                return background
            stale, self._held = self._held, background
            if stale is not background:
                retain_background(background)  # the holder's own lease, until close()
        if stale is not None and stale is not background:
            release_background(stale)  # closed meanwhile (close_background_runtimes)
        return background

    @contextlib.contextmanager
    def _elsewhere(self) -> Iterator[tuple[Runtime, asyncio.AbstractEventLoop]]:
        """The runtime of this store on another thread's loop: an open one, else the
        background one (leased while the `with` block runs)."""
        runtime = find_runtime(log=self.log, path=self.path, any_loop=True)
        if runtime is not None and runtime.loop is not None and not is_background(runtime):
            if _stopped(runtime.loop):
                raise ClientUsageError(
                    f"the Runtime open on {self.where()} belongs to an event loop that is not "
                    "running now, so nothing can carry this call to it; call it from that "
                    "loop (the async form), or close that runtime first"
                )
            yield runtime, runtime.loop
            return
        background = self._lease()
        try:
            yield background.runtime, background.loop
        finally:
            release_background(background)

    def _default(self) -> str | None:
        """The default store now, if this bridge names no store (None if it names one)."""
        return default_store_path() if self.log is None and self.path is None else None

    def _still_here(self) -> Runtime | None:
        """The runtime the last sync call went to, if a call now would find it again.

        One runtime per store per process: while it is open it is the store's
        runtime, unless this bridge follows the current runtime or the default
        store and those changed since. Saves the lookup and the lease of a read.
        """
        recent = self._recent()
        if recent is None or not recent.is_open:
            return None
        if self.log is None and self.path is None:
            current = current_runtime.get()
            if (current is not None and current is not recent) or (
                self._recent_default != default_store_path()
            ):
                return None
        return recent

    # -- calls -----------------------------------------------------------------------------------

    def call(
        self,
        make: Callable[[Runtime], Awaitable[T]],
        blocking: str,
        peek: Callable[[Runtime], Any] | None = None,
    ) -> T:
        """Run `make(runtime)` and wait for it, from synchronous code.

        blocking: the `ClientUsageError` message if this is called on a running loop.
        peek: the answer read from the store in this thread (`Runtime.completed_now`,
        `Runtime.keyed_now`), or `MISSING`: then `make` runs on the runtime's loop.
        An answer already durable costs no crossing into the loop and back.
        """
        self._check(blocking)
        recent = self._still_here() if peek is not None else None
        if peek is not None and recent is not None:
            try:
                found = peek(recent)
            except (RuntimeClosedError, StorageError):  # StoreClosedError is one
                found = MISSING  # closed meanwhile (or unreadable): the usual path decides
            if found is not MISSING:
                answer: T = found
                return answer
        with self._elsewhere() as (runtime, loop):
            self._recent = weakref.ref(runtime)
            self._recent_default = self._default()
            if peek is not None and recent is not runtime:
                found = peek(runtime)
                if found is not MISSING:
                    return found  # type: ignore[no-any-return]

            async def go() -> T:
                return await make(runtime)

            return _wait(asyncio.run_coroutine_threadsafe(go(), loop), loop)

    async def acall(self, make: Callable[[Runtime], Awaitable[T]]) -> T:
        """Run `make(runtime)` from async code (directly, if the runtime is on this loop)."""
        self._check(None)
        runtime = self._here()
        if runtime is not None:
            return await make(runtime)
        with self._elsewhere() as (runtime, loop):

            async def go() -> T:
                return await make(runtime)

            return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(go(), loop))

    def iterate(self, make: Callable[[Runtime], AsyncIterator[T]], blocking: str) -> Iterator[T]:
        """Iterate `make(runtime)` from synchronous code (it runs on the runtime's loop)."""
        self._check(blocking)
        items: queue.Queue[tuple[str, Any]] = queue.Queue()
        with self._elsewhere() as (runtime, loop):
            fut = asyncio.run_coroutine_threadsafe(_pump(make(runtime), items.put), loop)
            try:
                while True:
                    try:
                        with lend_while_blocked():
                            kind, value = items.get(timeout=_POLL)
                    except queue.Empty:
                        if _stopped(loop) and not fut.done():
                            raise RuntimeClosedError(
                                "the runtime's event loop stopped before the stream ended"
                            ) from None
                        continue
                    if kind == "item":
                        yield value
                    elif kind == "error":
                        raise value
                    else:
                        return
            finally:
                fut.cancel()  # the caller stopped early: stop the producer too

    async def aiterate(self, make: Callable[[Runtime], AsyncIterator[T]]) -> AsyncIterator[T]:
        """Iterate `make(runtime)` from async code (directly, if the runtime is on this loop)."""
        self._check(None)
        runtime = self._here()
        if runtime is not None:
            async for item in make(runtime):
                yield item
            return
        here = asyncio.get_running_loop()
        items: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

        def put(entry: tuple[str, Any]) -> None:
            here.call_soon_threadsafe(items.put_nowait, entry)

        with self._elsewhere() as (runtime, loop):
            fut = asyncio.run_coroutine_threadsafe(_pump(make(runtime), put), loop)
            try:
                while True:
                    kind, value = await items.get()
                    if kind == "item":
                        yield value
                    elif kind == "error":
                        raise value
                    else:
                        return
            finally:
                fut.cancel()

    # -- releasing the store -----------------------------------------------------------------------

    def close(self) -> None:
        """Refuse further calls; give back the held lease (closing the background runtime
        if no other caller uses it, which releases the store)."""
        with self._lock:
            self.closed = True
            held, self._held = self._held, None
        if held is not None:
            release_background(held, close_if_unused=True)


async def _pump(source: AsyncIterator[Any], put: Callable[[tuple[str, Any]], None]) -> None:
    """Forward `source` through `put` as ("item", x) ... then ("end", None) or ("error", exc)."""
    try:
        async for item in source:
            put(("item", item))
    except asyncio.CancelledError:
        raise
    except BaseException as exc:
        put(("error", exc))
        return
    finally:
        aclose = getattr(source, "aclose", None)
        if aclose is not None:
            await aclose()  # stopped early: its own cleanup (unlisten) runs now
    put(("end", None))
