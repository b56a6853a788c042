"""The `perdure` command line's arguments: one argparse parser, noun-verb commands.

``--store`` and ``--json`` are accepted before or after the command. Each
command sets ``args.action`` to the name of its handler in `perdure.cli`.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime

from perdure.eventlog import RUN_STATUSES

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_STORE_HELP = (
    "the store: a folder or a postgresql:// URL (default: $PERDURE_STORE, $PERDURE_PATH "
    "or ./.perdure)"
)
_JSON_HELP = "machine-readable output"
_URL_HELP = "act through a running `perdure serve` at URL (token: $PERDURE_TOKEN)"


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value < 1e9:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def since(text: str) -> float:
    """``--since``: an ISO date/time (UTC unless it says otherwise), or an age like 30m, 2h, 7d."""
    unit = _UNITS.get(text[-1:])
    number = text[:-1]
    if unit is not None and number and number.replace(".", "", 1).isdigit():
        return time.time() - float(number) * unit
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an ISO date/time or an age like 2h: {text!r}"
        ) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def build_parser(version: str) -> argparse.ArgumentParser:
    # allow_abbrev=False everywhere: scripts must not depend on prefixes that a new option breaks.
    shared = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    shared.add_argument("--store", metavar="STORE", default=argparse.SUPPRESS, help=_STORE_HELP)
    shared.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help=_JSON_HELP)
    parser = argparse.ArgumentParser(
        prog="perdure",
        allow_abbrev=False,
        description="Look at, replay and nudge the runs in a perdure store.",
        epilog="exit codes: 0 ok, 1 divergence / failure / not found, 2 usage",
    )
    parser.add_argument("--store", metavar="PATH", default=None, help=_STORE_HELP)
    parser.add_argument("--json", action="store_true", default=False, help=_JSON_HELP)
    parser.add_argument("--version", action="version", version=f"perdure {version}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    runs = sub.add_parser("runs", allow_abbrev=False, help="list runs, or show one")
    verbs = runs.add_subparsers(dest="verb", metavar="VERB", required=True)
    p = verbs.add_parser(
        "list", allow_abbrev=False, parents=[shared], help="a table of runs, newest first"
    )
    p.add_argument("--status", choices=RUN_STATUSES)
    p.add_argument("--target", metavar="NAME", help="only runs of this function or workflow")
    p.add_argument("--limit", type=positive, default=50, metavar="N", help="at most N runs (50)")
    p.set_defaults(action="runs_list")
    p = verbs.add_parser(
        "show", allow_abbrev=False, parents=[shared], help="status, input, result, steps, timers"
    )
    p.add_argument("run_id", metavar="RUN_ID")
    p.set_defaults(action="runs_show")

    p = sub.add_parser(
        "events", allow_abbrev=False, parents=[shared], help="a run's events, one per line"
    )
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument("--follow", "-f", action="store_true", help="print new events until it settles")
    p.add_argument("--full", action="store_true", help="do not shorten payloads")
    p.add_argument(
        "--interval", type=seconds, default=0.5, metavar="S", help="--follow poll period"
    )
    p.set_defaults(action="events")

    p = sub.add_parser(
        "replay", allow_abbrev=False, parents=[shared], help="re-execute workflow code against runs"
    )
    p.add_argument("run_id", nargs="?", metavar="RUN_ID")
    p.add_argument(
        "--app",
        required=True,
        metavar="MODULE:ATTR",
        help="your code: a workflow, a list of them, a Registry, a Replayer or a module",
    )
    p.add_argument("--all", action="store_true", help="replay every run (filters below)")
    p.add_argument("--file", metavar="FILE", help="events exported by `perdure events ID --json`")
    p.add_argument("--target", metavar="NAME", help="with --all: runs of this workflow")
    p.add_argument("--status", action="append", choices=RUN_STATUSES, help="with --all")
    p.add_argument("--in-flight", action="store_true", help="with --all: running/waiting runs")
    p.add_argument("--since", type=since, metavar="WHEN", help="with --all: ISO time, or 2h, 7d")
    p.add_argument("--timeout", type=seconds, default=30.0, metavar="S", help="per run (30)")
    p.set_defaults(action="replay")

    p = sub.add_parser(
        "resume", allow_abbrev=False, parents=[shared], help="answer a run's pending interrupt"
    )
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument("--value", required=True, metavar="JSON", help="the answer, as JSON")
    p.add_argument("--app", metavar="MODULE:ATTR", help="continue the run here with this code")
    p.add_argument("--timeout", type=seconds, default=60.0, metavar="S", help="wait with --app")
    p.add_argument("--url", metavar="URL", help=_URL_HELP)
    p.set_defaults(action="resume")

    p = sub.add_parser(
        "send", allow_abbrev=False, parents=[shared], help="send a message to a workflow run"
    )
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument("value", metavar="JSON", help="the message, as JSON")
    p.add_argument("--topic", default="default", metavar="T", help="the topic (default)")
    p.add_argument("--idempotency-key", metavar="KEY", help="send at most once with this key")
    p.set_defaults(action="send")

    p = sub.add_parser(
        "continue",
        allow_abbrev=False,
        parents=[shared],
        help="reopen a failed, parked or cancelled run from its last completed step",
    )
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument("--app", metavar="MODULE:ATTR", help="continue the run here with this code")
    p.add_argument("--timeout", type=seconds, default=60.0, metavar="S", help="wait with --app")
    p.set_defaults(action="continue")

    p = sub.add_parser("cancel", allow_abbrev=False, parents=[shared], help="cancel a run")
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument("--reason", default="cancelled from the command line")
    p.add_argument("--url", metavar="URL", help=_URL_HELP)
    p.set_defaults(action="cancel")

    p = sub.add_parser(
        "serve",
        allow_abbrev=False,
        parents=[shared],
        help="host a runtime and serve its runs: HTTP API and web UI",
    )
    p.add_argument("--app", required=True, metavar="MODULE[:ATTR]", help="your code")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (8080)")
    p.add_argument(
        "--token-file", metavar="FILE", help="the API token (else $PERDURE_TOKEN); off loopback"
    )
    p.set_defaults(action="serve")

    p = sub.add_parser(
        "stats", allow_abbrev=False, parents=[shared], help="store size, runs by status, events"
    )
    p.set_defaults(action="stats")
    store = sub.add_parser(
        "store", allow_abbrev=False, help="check a store for damage, or salvage its runs"
    )
    verbs = store.add_subparsers(dest="verb", metavar="VERB", required=True)
    p = verbs.add_parser(
        "check", allow_abbrev=False, parents=[shared], help="read every run; report damage"
    )
    p.set_defaults(action="store_check")
    p = verbs.add_parser(
        "salvage",
        allow_abbrev=False,
        parents=[shared],
        help="copy the runs that can be read into a new store",
    )
    p.add_argument("run_ids", nargs="*", metavar="RUN_ID")
    p.add_argument("--all", action="store_true", help="every run that can be read")
    p.add_argument("--to", required=True, metavar="NEWSTORE", help="a new or empty directory")
    p.set_defaults(action="store_salvage")

    p = sub.add_parser(
        "demo", allow_abbrev=False, parents=[shared], help="retries, crash recovery and interrupts"
    )
    p.set_defaults(action="demo")
    return parser
