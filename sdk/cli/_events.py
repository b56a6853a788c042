"""``perdure events RUN_ID``: a run's events, one per line (``--follow`` until it settles).

On a terminal each event is drawn for people (coloured type, the demo's short
summary of it); in a pipe or a file the line is plain and stable for scripts;
``--json`` prints each event as exported (one JSON object per line, which
``perdure replay --file`` reads back). Messages (``message_received``,
``message_delivered``) and published values (``event_set``) are events like the
others; after a parent's events come its child workflows, with their statuses
(not with ``--json``).
"""

from __future__ import annotations

import asyncio
import json
import sys

import click

from perdure.cli import _render as render
from perdure.cli._app import events_or_fail, with_log
from perdure.cli._options import SECONDS, Args, common, run_id_argument
from perdure.cli._output import is_terminal, out, out_exact, show
from perdure.eventlog import SETTLED_STATUSES, Event, EventLog, to_dict

_EPILOG = """\b
Examples:
  perdure events RUN_ID                  the run's history
  perdure events RUN_ID --follow         and new events until it settles (Ctrl-C stops)
  perdure events RUN_ID --json > run.jsonl
  perdure replay --file run.jsonl --app myapp.workflows
"""


@click.command(epilog=_EPILOG)
@run_id_argument
@click.option("--follow", "-f", is_flag=True, help="Print new events until the run settles.")
@click.option("--full", is_flag=True, help="Do not shorten payloads.")
@click.option(
    "--interval",
    type=SECONDS,
    default=0.5,
    show_default=True,
    metavar="S",
    help="--follow poll period, in seconds.",
)
@common
def events(args: Args) -> int:
    """A run's events, one per line."""
    try:
        return asyncio.run(with_log(args.store, lambda log: _events(args, log)))
    except KeyboardInterrupt:
        return 0  # Ctrl-C ends --follow


async def _events(args: Args, log: EventLog) -> int:
    human = not args.json and is_terminal()
    if human:
        from perdure.cli._views import event_text

    def emit(event: Event) -> None:
        if args.json:
            out_exact(json.dumps(to_dict(event), ensure_ascii=False, separators=(",", ":")))
        elif human:
            show(event_text(event, full=args.full))
        else:
            out(render.event_line(event, full=args.full))

    found = await events_or_fail(log, args.run_id)
    for event in found:
        emit(event)
    seq = len(found)
    while args.follow:
        info = await log.get_run(args.run_id)
        settled = info is not None and info.status in SETTLED_STATUSES
        sys.stdout.flush()
        if not settled:
            await asyncio.sleep(args.interval)
        more = await log.read(args.run_id, seq)
        for event in more:
            emit(event)
        found += more
        seq += len(more)
        if settled:
            break
    if not args.json:
        children = render.child_runs(found)
        if children:
            out(*render.children_text(await render.with_statuses(log, children)))
    return 0
