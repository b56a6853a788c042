"""Run ids: making fresh ones, and the one check every id, key and name passes."""

from __future__ import annotations

import secrets
import time
from typing import Any

from perdure.runtime._errors import InvalidIdError

_MAX_ID = 200
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
