"""A runtime on a background event-loop thread, for synchronous callers (`Client.run`, `invoke`).

One background runtime per store (keyed by `store_key`) is shared by every
caller in the process, because LMDB allows one open per process and one writer
per store. Callers lease it (`lease_background` / `release_background`): a
call holds a lease while it runs, a `Client` from its first call until its
`close()`. The last lease released with ``close_if_unused`` closes it (so a
`Runtime` can open the store afterwards); otherwise it lives until interpreter
exit (`close_background_runtimes`).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

from perdure.eventlog import EventLog
from perdure.runtime._executors import lend_while_blocked
from perdure.runtime._runtime import Runtime
from perdure.runtime._store import StoreKey, store_key

T = TypeVar("T")

_lock = threading.Lock()
_runtimes: dict[StoreKey, BackgroundRuntime] = {}


class BackgroundRuntime:
    """A `Runtime` living on its own daemon thread with its own event loop."""

    def __init__(self, *, path: str | None = None, log: EventLog | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name="perdure-runtime", daemon=True)
        self.runtime = Runtime(path, log=log)
        self.key = self.runtime.store_key
        #: Callers using it now (guarded by the module lock); see `release_background`.
        self.leases = 0
        #: A holder closed while calls were in flight: the last of them closes it.
        self.close_when_unused = False
        self._ready = concurrent.futures.Future[None]()
        self._thread.start()
        self._ready.result()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.runtime.open())
        except BaseException as exc:
            self._ready.set_exception(exc)
            self.loop.close()
            return
        self._ready.set_result(None)
        self.loop.run_forever()

    def call(self, make: Callable[[Runtime], Awaitable[T]], timeout: float | None = None) -> T:
        """Run `make(runtime)` on the background loop and wait for it (from a non-async caller).

        Called from a sync function or workflow body (a run calling another), the
        caller's pool thread lends its slot while it waits, so the run it waits
        for can get a thread even when every slot is held by such callers.
        """
        with lend_while_blocked():
            return self.submit(make).result(timeout)

    def submit(self, make: Callable[[Runtime], Awaitable[T]]) -> concurrent.futures.Future[T]:
        async def go() -> T:
            return await make(self.runtime)

        return asyncio.run_coroutine_threadsafe(go(), self.loop)

    def close(self) -> None:
        if not self.loop.is_running() or threading.current_thread() is self._thread:
            return  # (on its own thread it cannot wait for itself: interpreter exit closes it)
        asyncio.run_coroutine_threadsafe(self.runtime.close(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self.loop.close()  # else: ResourceWarning "unclosed event loop" at GC


def background_runtime(
    *, path: str | None = None, log: EventLog | None = None
) -> BackgroundRuntime:
    """The shared background runtime for a log object or a store path (created on first use)."""
    key = store_key(log=log, path=path)
    with _lock:
        runtime = _runtimes.get(key)
        if runtime is None:
            runtime = _runtimes[key] = BackgroundRuntime(path=path, log=log)
        return runtime


def is_background(runtime: Runtime) -> bool:
    """Whether `runtime` is a shared background runtime (use it through a lease)."""
    with _lock:
        background = _runtimes.get(runtime.store_key)
        return background is not None and background.runtime is runtime


def lease_background(*, path: str | None = None, log: EventLog | None = None) -> BackgroundRuntime:
    """`background_runtime`, counted as in use until `release_background`."""
    key = store_key(log=log, path=path)
    with _lock:
        runtime = _runtimes.get(key)
        if runtime is None:
            runtime = _runtimes[key] = BackgroundRuntime(path=path, log=log)
        runtime.leases += 1
        runtime.close_when_unused = False  # wanted again
        return runtime


def retain_background(runtime: BackgroundRuntime) -> None:
    """One more lease on a runtime already leased (a holder keeping it beyond one call)."""
    with _lock:
        runtime.leases += 1


def release_background(runtime: BackgroundRuntime, *, close_if_unused: bool = False) -> None:
    """Give a lease back; with `close_if_unused`, close the runtime once no lease is left (now,
    or when the calls still in flight give theirs back)."""
    with _lock:
        runtime.leases = max(runtime.leases - 1, 0)
        if close_if_unused:
            runtime.close_when_unused = True
        if (
            not runtime.close_when_unused
            or runtime.leases
            or _runtimes.get(runtime.key) is not runtime
        ):
            return
        del _runtimes[runtime.key]
    runtime.close()


def close_background_runtimes() -> None:
    """Close every background runtime (also registered to run at interpreter exit)."""
    with _lock:
        runtimes = list(_runtimes.values())
        _runtimes.clear()
    for runtime in runtimes:
        runtime.close()


atexit.register(close_background_runtimes)
