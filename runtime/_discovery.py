"""Where runtimes and stores are found: the default store path, open runtimes, run ids.

Open runtimes are registered here so code running in another context on the
same event loop (a web framework's request handlers, after its lifespan opened
the runtime) finds them, and so a second runtime on one store is refused.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import secrets
import time
from typing import TYPE_CHECKING, Any

from perdure.eventlog import EventLog
from perdure.runtime import _store
from perdure.runtime._errors import InvalidIdError
from perdure.runtime._store import StoreKey, default_store, store_key

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
    candidates = [rt for rt in (current, *reversed(_open_runtimes)) if rt is not None]
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


def check_id(parameter: str, value: Any) -> str:
    """`value` if it is usable as a run id, thread id, idempotency key or name, else an error.

    The one check every id and key passes before it reaches the log or a log
    line: a non-empty string of at most 200 characters, without NUL, that
    UTF-8 can encode. A lone surrogate (``json.loads('"\\ud800"')`` makes one)
    cannot be stored, logged or printed, so it is refused here with an
    `InvalidIdError` naming `parameter`, not deep in the store.
    """
    if not isinstance(value, str) or not value or len(value) > _MAX_ID or "\x00" in value:
        raise InvalidIdError(
            f"{parameter} must be a non-empty string of at most {_MAX_ID} characters "
            f"without NUL, got {_shown(value)}",
            parameter=parameter,
        )
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError as exc:
            raise InvalidIdError(
                f"{parameter} must be text that UTF-8 can encode, got {_shown(value)}: it holds "
                f"a lone surrogate {value[exc.start]!r} at position {exc.start} (json.loads "
                "makes one from an unpaired \\ud800-\\udfff escape, Python one from bytes "
                "that are not UTF-8)",
                parameter=parameter,
            ) from None
    return value


def _shown(value: Any) -> str:
    """`value` for an error message: its repr (escapes control characters), cut short."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
