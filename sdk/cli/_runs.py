"""``perdure runs [list]`` and ``perdure runs show RUN_ID``: the runs of a store."""

from __future__ import annotations

import asyncio
import time

import click

from perdure.cli import _render as render
from perdure.cli._app import events_or_fail, with_log
from perdure.cli._options import POSITIVE, SINCE, STATUS, Args, common, run_id_argument
from perdure.cli._output import is_terminal, out, out_json, show
from perdure.eventlog import EventLog

_LIST_EPILOG = """\b
Examples:
  perdure runs                            the 50 newest runs
  perdure runs list --status failed       failed runs only
  perdure runs list --since 2h            runs active in the last two hours
  perdure runs list --since 2026-01-31T09:00Z --target review_flow
  perdure runs list --json | jq -r '.[].run_id'
"""


def _list_options(f: click.decorators.FC) -> click.decorators.FC:
    for option in reversed(
        [
            click.option("--status", type=STATUS, help="Only runs with this status."),
            click.option("--target", metavar="NAME", help="Only runs of this target."),
            click.option(
                "--since",
                type=SINCE,
                metavar="WHEN",
                help="Only runs updated since WHEN: an age (30s, 10m, 2h, 3d) or an ISO "
                "date/time (UTC unless it says otherwise).",
            ),
            click.option(
                "--limit",
                type=POSITIVE,
                default=50,
                show_default=True,
                metavar="N",
                help="At most N runs.",
            ),
        ]
    ):
        f = option(f)
    return f


@click.group(invoke_without_command=True, epilog=_LIST_EPILOG)
@_list_options
@common
def runs(args: Args) -> int:
    """List runs, newest first (the default), or show one (`runs show RUN_ID`)."""
    ctx = click.get_current_context()
    if ctx.invoked_subcommand is not None:
        return 0
    return _list(args)


@runs.command("list", epilog=_LIST_EPILOG)
@_list_options
@common
def runs_list(args: Args) -> int:
    """A table of runs, newest first."""
    return _list(args)


def _list(args: Args) -> int:
    async def read(log: EventLog) -> int:
        found = await log.list_runs(status=args.status, target=args.target)
        if args.since is not None:
            found = [info for info in found if info.updated_at >= args.since]
        found.sort(key=lambda info: (info.created_at, info.run_id), reverse=True)
        shown = found[: args.limit]
        if args.json:
            out_json([render.run_row(info) for info in shown])
        elif not found:
            filtered = args.status or args.target or args.since is not None
            out("no runs match" if filtered else "no runs in this store")
        else:
            if is_terminal():
                from perdure.cli._output import console
                from perdure.cli._views import runs_table

                show(runs_table(shown, console().width, time.time()))
            else:
                out(*render.runs_table(shown))
            if len(shown) < len(found):
                out(f"(the newest {len(shown)} of {len(found)} runs; --limit N shows more)")
        return 0

    return asyncio.run(with_log(args.store, read))


@runs.command(
    "show",
    epilog="\b\nExamples:\n  perdure runs show RUN_ID\n  perdure runs show RUN_ID --json",
)
@run_id_argument
@common
def runs_show(args: Args) -> int:
    """One run: status, input, result, steps, timers, interrupts, child workflows."""
    from perdure.actors import fold

    async def read(log: EventLog) -> int:
        events = await events_or_fail(log, args.run_id)
        state = fold(args.run_id, events)
        details = render.run_details(state, await log.get_run(args.run_id), len(events))
        details["children"] = await render.with_statuses(log, render.child_runs(events))
        if args.json:
            out_json(details)
        elif is_terminal():
            from perdure.cli._views import lines_text

            show(lines_text(render.run_details_text(details), details["status"]))
        else:
            out(*render.run_details_text(details))
        return 0

    return asyncio.run(with_log(args.store, read))
