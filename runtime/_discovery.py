"""Where runtimes and stores are found: the default store path, and the open runtime of a store.

Open runtimes register themselves (`perdure.runtime._runtime.open_runtimes`) so
code running in another context on the same event loop (a web framework's
request handlers, after its lifespan opened the runtime) finds them here.
Run ids moved to `perdure.runtime._ids` (re-exported here).
"""

from __future__ import annotations

import asyncio
import os

from perdure.eventlog import EventLog
from perdure.runtime import _store
from perdure.runtime._ids import check_id, new_run_id
from perdure.runtime._runtime import Runtime, current_runtime, open_runtimes
from perdure.runtime._store import StoreKey, default_store, store_key

__all__ = [
    "DEFAULT_PATH",
    "check_id",
    "current_runtime",
    "default_store_path",
    "find_runtime",
    "new_run_id",
]

DEFAULT_PATH = _store.DEFAULT_PATH


def default_store_path() -> str:
    """The default store: ``PERDURE_STORE``, else ``PERDURE_PATH``, else ``./.perdure``."""
    return default_store()


def find_runtime(
    *,
    log: EventLog | None = None,
    path: str | os.PathLike[str] | None = None,
    any_loop: bool = False,
) -> Runtime | None:
    """The open runtime for a store, if there is one.

    With `log`, the runtime using that log object; with `path`, the runtime on
    that store path; with neither, the current runtime (``async with``) or else
    one on the default store. Only runtimes on the running event loop are
    returned, unless `any_loop` (then a runtime on another thread's loop, or
    with no running loop here, is returned too).
    """
    try:
        loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        if not any_loop:
            return None
        loop = None
    current = current_runtime.get()
    candidates = [rt for rt in (current, *reversed(open_runtimes)) if rt is not None]
    wanted: StoreKey | None = None  # computed only if a key has to be compared (syscalls)
    for rt in candidates:
        if not rt.is_open or (rt.loop is not loop and not any_loop):
            continue
        if log is None and path is None and rt is current:
            return rt
        if wanted is None:
            wanted = store_key(log=log, path=path)
        if rt.store_key == wanted:
            return rt
    return None
