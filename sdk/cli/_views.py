"""Terminal views of the `perdure` command line, drawn with rich: used only when stdout is a
terminal (a pipe or a file gets the plain lines of `perdure.cli._render`, stable for scripts).

Every value that comes from a run goes through `safe_text` into a `rich.text.Text`, never
into markup: a run id like ``[red]x[/red]`` prints as it is, and control characters are
escaped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich import box
from rich.table import Table
from rich.text import Text

from perdure.cli._render import describe, event_payload
from perdure.cli._text import PAYLOAD_WIDTH, compact, iso, relative, safe_text

if TYPE_CHECKING:
    from perdure.eventlog import Event, RunInfo

#: The style of each run status (and of the words that end an event's name).
STATUS_STYLES = {
    "completed": "green",
    "running": "cyan",
    "waiting": "yellow",
    "sleeping": "blue",
    "failed": "bold red",
    "parked": "magenta",
    "cancelled": "dim",
}
_EVENT_STYLES = (
    ("Failed", "red"),
    ("Lost", "red"),
    ("Completed", "green"),
    ("Cancelled", "dim"),
    ("Started", "cyan"),
    ("Interrupted", "yellow"),
    ("Resumed", "yellow"),
    ("Timer", "blue"),
)


def text(value: str, style: str = "") -> Text:
    """A cell or line from untrusted text: escaped, and never read as markup."""
    return Text(safe_text(value), style=style)


def status(value: str) -> Text:
    return text(value, STATUS_STYLES.get(value, ""))


def runs_table(runs: list[RunInfo], now: float | None = None) -> Table:
    """`perdure runs list` on a terminal: fits the width (ids fold, targets shorten), statuses
    coloured, times as ages ("3m ago")."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, header_style="bold")
    table.add_column("RUN ID", overflow="fold", ratio=3, min_width=8)
    table.add_column("TARGET", overflow="ellipsis", ratio=2, min_width=6)
    table.add_column("KIND", no_wrap=True)
    table.add_column("STATUS", no_wrap=True)
    table.add_column("CREATED", no_wrap=True, justify="right")
    table.add_column("UPDATED", no_wrap=True, justify="right")
    table.add_column("EVENTS", no_wrap=True, justify="right")
    for r in runs:
        table.add_row(
            text(r.run_id),
            text(r.target),
            text(r.kind),
            status(r.status),
            text(relative(r.created_at, now), "dim"),
            text(relative(r.updated_at, now), "dim"),
            text(str(r.next_seq)),
        )
    return table


def event_style(wire_name: str) -> str:
    for word, style in _EVENT_STYLES:
        if word.lower() in wire_name.lower():
            return style
    return ""


def event_text(event: Event, *, full: bool = False) -> Text:
    """One event for people: seq, time, coloured type, the demo's summary (or the payload)."""
    name = type(event).WIRE_NAME
    summary = describe(event) or compact(event_payload(event), None if full else PAYLOAD_WIDTH)
    line = Text()
    line.append(f"{event.seq:>5}  ", style="dim")
    line.append(iso(event.ts), style="dim")
    line.append("  ")
    line.append(f"{safe_text(name):<20}", style=event_style(name))
    line.append("  ")
    line.append(safe_text(summary))
    return line
