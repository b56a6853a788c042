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


def runs_table(runs: list[RunInfo], width: int, now: float | None = None) -> Table:
    """`perdure runs list` on a terminal `width` columns wide: statuses coloured, times as
    ages ("3m ago"); on a narrow terminal the kind, then the creation time, are left out
    and long ids fold over lines rather than being cut."""
    columns = ["RUN ID", "TARGET", "KIND", "STATUS", "CREATED", "UPDATED", "EVENTS"]
    if width < 100:
        columns.remove("KIND")
    if width < 72:
        columns.remove("CREATED")
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    for name in columns:
        if name == "RUN ID":
            table.add_column(name, overflow="fold", ratio=3, min_width=8)
        elif name == "TARGET":
            table.add_column(name, overflow="ellipsis", ratio=2, min_width=6)
        else:
            right = name in ("CREATED", "UPDATED", "EVENTS")
            table.add_column(name, no_wrap=True, justify="right" if right else "left")
    for r in runs:
        cells = {
            "RUN ID": text(r.run_id),
            "TARGET": text(r.target),
            "KIND": text(r.kind),
            "STATUS": status(r.status),
            "CREATED": text(relative(r.created_at, now), "dim"),
            "UPDATED": text(relative(r.updated_at, now), "dim"),
            "EVENTS": text(str(r.next_seq)),
        }
        table.add_row(*(cells[name] for name in columns))
    return table


def event_style(wire_name: str) -> str:
    for word, style in _EVENT_STYLES:
        if word.lower() in wire_name.lower():
            return style
    return ""


def event_text(event: Event, *, full: bool = False) -> Text:
    """One event for people: seq, time, coloured type, the demo's summary (or the payload)."""
    name = type(event).WIRE_NAME
    summary = (not full and describe(event)) or compact(
        event_payload(event), None if full else PAYLOAD_WIDTH
    )
    line = Text()
    line.append(f"{event.seq:>5}  ", style="dim")
    line.append(iso(event.ts), style="dim")
    line.append("  ")
    line.append(f"{safe_text(name):<20}", style=event_style(name))
    line.append("  ")
    line.append(safe_text(summary))
    return line


#: Words coloured in run details and replay reports on a terminal.
_VERDICTS = {
    ": OK": "bold green",
    "ok        ": "green",
    "DIVERGED": "bold red",
    "FAILED": "bold red",
    "ERROR": "bold red",
}


def lines_text(lines: list[str], status: str | None = None) -> Text:
    """Plain report lines (see `perdure.cli._render`) for a terminal: escaped, with the run's
    `status` and replay verdicts coloured (by literal match, never markup)."""
    result = Text("\n".join(safe_text(line) for line in lines))
    if status is not None and status in STATUS_STYLES:
        first = result.plain.find(f"status       {status}")
        if first >= 0:
            start = first + len("status       ")
            result.stylize(STATUS_STYLES[status], start, start + len(status))
    for word, style in _VERDICTS.items():
        result.highlight_words([word], style)
    return result
