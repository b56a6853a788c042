"""``perdure replay``: re-execute workflow code against recorded runs (one, all, or a file)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import click

from perdure.cli import _render as render
from perdure.cli._app import events_or_fail, load_app, with_log
from perdure.cli._options import (
    APP_HELP,
    SECONDS,
    SINCE,
    STATUS,
    Args,
    common,
    complete_run_id,
)
from perdure.cli._output import USAGE, Progress, fail, is_terminal, out, out_json, show
from perdure.eventlog import Event, EventLog, PerdureError, from_dict
from perdure.runtime import ReplayResult

_EPILOG = """\b
Examples:
  perdure replay RUN_ID --app myapp.workflows:review_flow
  perdure replay --all --app myapp.workflows --since 7d     before a deploy
  perdure replay --all --in-flight --app myapp.workflows --json
  perdure replay --file run.jsonl --app myapp/workflows.py:review_flow

Exit code 1 when a run diverged: use it as a deploy check.
"""


@click.command(epilog=_EPILOG)
@click.argument("run_id", metavar="[RUN_ID]", required=False, shell_complete=complete_run_id)
@click.option("--app", required=True, metavar="MODULE:ATTR", help=APP_HELP)
@click.option("--all", "all_", is_flag=True, help="Replay every run (filters below).")
@click.option("--file", metavar="FILE", help="Events exported by `perdure events ID --json`.")
@click.option("--target", metavar="NAME", help="With --all: runs of this workflow.")
@click.option("--status", type=STATUS, multiple=True, help="With --all: runs with this status.")
@click.option("--in-flight", is_flag=True, help="With --all: running/waiting runs.")
@click.option(
    "--since",
    type=SINCE,
    metavar="WHEN",
    help="With --all: runs updated since WHEN (an ISO time, or an age: 10m, 2h, 7d).",
)
@click.option(
    "--timeout", type=SECONDS, default=30.0, show_default=True, metavar="S", help="Per run."
)
@common
def replay(args: Args) -> int:
    """Re-execute workflow code against recorded runs."""
    if sum([bool(args.run_id), args.all_, args.file is not None]) != 1:
        fail("replay takes exactly one of RUN_ID, --all or --file FILE", USAGE)
    if not args.all_ and (args.target or args.status or args.in_flight or args.since is not None):
        fail("--target, --status, --in-flight and --since go with --all", USAGE)
    app = load_app(args.app, timeout=args.timeout)
    if args.file is not None:
        return _show(args, asyncio.run(app.replayer.areplay(_read_jsonl(args.file))))

    async def one(log: EventLog) -> int:
        return _show(args, await app.replayer.areplay(await events_or_fail(log, args.run_id)))

    async def many(log: EventLog) -> int:
        statuses = set(args.status) | ({"running", "waiting"} if args.in_flight else set())
        progress = Progress("replaying")
        try:
            summary = await app.replayer.areplay_all(
                log,
                since=args.since,
                target=args.target,
                status=statuses or None,
                progress=progress,
            )
        finally:
            progress.done()
        if args.json:
            out_json(render.summary_dict(summary))
        else:
            _lines(render.summary_text(summary))
        return 0 if summary.ok else 1

    return asyncio.run(with_log(args.store, many if args.all_ else one))


def _show(args: Args, result: ReplayResult) -> int:
    if args.json:
        out_json(result.to_dict())
    else:
        _lines(render.replay_text(result))
    return 0 if result.ok else 1


def _lines(lines: list[str]) -> None:
    """A replay report: verdicts coloured on a terminal, plain elsewhere."""
    if is_terminal():
        from perdure.cli._views import lines_text

        show(lines_text(lines))
    else:
        out(*lines)


def _read_jsonl(name: str) -> list[Event]:
    try:
        text = Path(name).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"--file {name!r}: {getattr(exc, 'strerror', None) or exc}", USAGE)
    found = []
    # Lines end at "\n" only: str.splitlines() would also cut at a U+0085 or U+2028 inside a
    # JSON string (they need no escape in JSON, and `events --json` writes them raw).
    for number, line in enumerate(text.split("\n"), 1):
        if line.strip():
            try:
                found.append(from_dict(json.loads(line)))
            except (ValueError, LookupError, TypeError, AttributeError, PerdureError) as exc:
                fail(f"--file {name!r}, line {number}: not an exported event ({exc})")
    if not found:
        fail(f"--file {name!r} holds no events (export them with `perdure events RUN_ID --json`)")
    return found
