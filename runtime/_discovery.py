"""Where runtimes and stores are found: the default store path, open runtimes, run ids.

Open runtimes are registered here so code running in another context on the
same event loop (a web framework's request handlers, after its lifespan opened
the runtime) finds them, and so a second runtime on one store is refused.
"""

from __future__ import annotations

import asyncio
import contextvars
import secrets
import time
from typing import TYPE_CHECKING, Any

from perdure.eventlog import EventLog
from perdure.runtime import _store
from perdure.runtime._store import default_store, store_key

if TYPE_CHECKING:
    from perdure.runtime._runtime import Runtime

DEFAULT_PATH = _store.DEFAULT_PATH
current_runtime: contextvars.ContextVar[Runtime | None] = contextvars.ContextVar(
    "perdure_runtime", default=None
)
_MAX_ID = 200
#: Open runtimes, so code running in another context on the same loop (a web
#: framework's request handlers, after its lifespan opened the runtime) finds them.
_open_runtimes: list[Runtime] = []


def default_store_path() -> str:
    """The default store: ``PERDURE_STORE``, else ``PERDURE_PATH``, else ``./.perdure``."""
    return default_store()


def find_runtime(*, log: EventLog | None = None, path: str | None = None) -> Runtime | None:
    """The open runtime on the running event loop for a store, if there is one.

    With `log`, the runtime using that log object; with `path`, the runtime on
    that store path; with neither, the current runtime (``async with``) or else
    one on the default store. Runtimes on other loops are never returned.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    current = current_runtime.get()
    candidates = [rt for rt in (current, *reversed(_open_runtimes)) if rt is not None]
    wanted: str | None = None  # resolved only if a path has to be compared (syscalls)
    for rt in candidates:
        if not rt.is_open or rt._loop is not loop:
            continue
        if log is not None:
            matches = rt._log is log
        elif path is None and rt is current:
            matches = True
        else:
            if wanted is None:
                wanted = store_key(path or default_store_path())
            matches = rt._given_log is None and store_key(rt.path) == wanted
        if matches:
            return rt
    return None


_last_id_time = [0, 0]  # (millisecond, sequence within it) of the last id made here


def new_run_id() -> str:
    """A fresh run id that sorts by creation time (strictly, within one process)."""
    ms = int(time.time() * 1000)
    last_ms, last_seq = _last_id_time
    seq = 0
    if ms <= last_ms:
        ms, seq = last_ms, last_seq + 1
    _last_id_time[:] = [ms, seq]
    return f"run-{ms:012x}-{seq:04x}{secrets.token_hex(4)}"


def _check_id(kind: str, value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > _MAX_ID or "\x00" in value:
        raise ValueError(
            f"{kind} must be a non-empty string of at most {_MAX_ID} characters without NUL, "
            f"got {value!r}"
        )
    return value
