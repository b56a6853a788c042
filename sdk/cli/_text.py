"""Text for a terminal: untrusted values escaped, times and values on one line.

Light on purpose (stdlib only): every command imports it, ``--help`` included.
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from typing import Any

#: Payloads are cut to this many characters on an event line (``--full`` keeps them whole).
PAYLOAD_WIDTH = 160


#: What must not reach a terminal as is: C0 and C1 controls (ESC starts escape sequences,
#: newlines break lines and tables), DEL, bidirectional overrides and isolates, invisible
#: zero-width characters, line and paragraph separators, and lone surrogates.
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200b\u200e\u200f\u2028-\u202e\u2060\u2066-\u2069"
    "\ufeff\ud800-\udfff]"
)
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return _SHORT.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def safe_text(text: str) -> str:
    """`text` made safe for a terminal: control and invisible characters as ``\\x1b``-style escapes.

    Ids, names, values and error messages come from users and their data; raw,
    an ESC could drive the terminal and a newline could fake a line of output.
    Everything else, backslashes included, is shown as it is.
    """
    if text.isascii() and text.isprintable():
        return text
    return _UNSAFE.sub(_escaped, text)


def iso(ts: float | None) -> str:
    """A unix time as ISO 8601 in UTC with milliseconds, e.g. 2024-05-01T12:00:00.123Z."""
    if ts is None or ts <= 0:
        return "-"
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def compact(value: Any, width: int | None = PAYLOAD_WIDTH) -> str:
    """One-line JSON of `value`, cut to `width` characters."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=repr)
    if width is not None and len(text) > width:
        return text[: width - 1] + "…"
    return text


def relative(ts: float | None, now: float | None = None) -> str:
    """A unix time as an age for people: "12s ago", "3m ago", "2h ago", "5d ago" (or "in 4m")."""
    if ts is None or ts <= 0:
        return "-"
    delta = (time.time() if now is None else now) - ts
    ahead = delta < 0
    delta = abs(delta)
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if delta >= size:
            amount = f"{int(delta // size)}{unit}"
            break
    else:
        amount = f"{int(delta)}s"
    if ahead:
        return f"in {amount}"
    return "just now" if delta < 1 else f"{amount} ago"
