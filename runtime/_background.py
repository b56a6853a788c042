"""A runtime on a background event-loop thread, for synchronous callers (`Client.run`, `invoke`).

One background runtime per store (keyed by the log object or the store's real
path) is shared by every caller in the process, because LMDB allows one open
per process and one writer per store. It is closed at interpreter exit.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from perdure.eventlog import EventLog
from perdure.runtime._runtime import Runtime
from perdure.runtime._store import store_key

T = TypeVar("T")

_lock = threading.Lock()
_runtimes: dict[Any, BackgroundRuntime] = {}


class BackgroundRuntime:
    """A `Runtime` living on its own daemon thread with its own event loop."""

    def __init__(self, *, path: str | None = None, log: EventLog | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name="perdure-runtime", daemon=True)
        self.runtime = Runtime(path, log=log)
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
        """Run `make(runtime)` on the background loop and wait for it (from a non-async caller)."""
        return self.submit(make).result(timeout)

    def submit(self, make: Callable[[Runtime], Awaitable[T]]) -> concurrent.futures.Future[T]:
        async def go() -> T:
            return await make(self.runtime)

        return asyncio.run_coroutine_threadsafe(go(), self.loop)

    def close(self) -> None:
        if not self.loop.is_running():
            return
        asyncio.run_coroutine_threadsafe(self.runtime.close(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self.loop.close()  # else: ResourceWarning "unclosed event loop" at GC


def background_runtime(
    *, path: str | None = None, log: EventLog | None = None
) -> BackgroundRuntime:
    """The shared background runtime for a log object or a store path."""
    key: Any = ("log", id(log)) if log is not None else ("path", store_key(path or "."))
    with _lock:
        runtime = _runtimes.get(key)
        if runtime is None:
            runtime = _runtimes[key] = BackgroundRuntime(path=path, log=log)
        return runtime


def close_background_runtimes() -> None:
    """Close every background runtime (also registered to run at interpreter exit)."""
    with _lock:
        runtimes = list(_runtimes.values())
        _runtimes.clear()
    for runtime in runtimes:
        runtime.close()


atexit.register(close_background_runtimes)
