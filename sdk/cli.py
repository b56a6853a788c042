"""The `perdure` command line (also ``python -m perdure``): look at runs, replay them, nudge them.

Noun-verb commands built on the public API:

    perdure runs list [--status S] [--target NAME] [--limit N]
    perdure runs show RUN_ID
    perdure events RUN_ID [--follow]
    perdure replay RUN_ID --app module:attr      (or --all, or --file FILE)
    perdure resume RUN_ID --value JSON [--app module:attr]
    perdure send RUN_ID JSON [--topic T] [--idempotency-key KEY]
    perdure continue RUN_ID [--app module:attr]
    perdure cancel RUN_ID
    perdure stats
    perdure store check
    perdure store salvage RUN_ID... --to NEWSTORE      (or --all)
    perdure serve --app module:attr [--host H] [--port P] [--token-file F]
    perdure demo

Read commands (``runs``, ``events``, ``replay``, ``stats``) open the store
read-only, so they work beside a running service; each takes ``--json``.
Exit codes: 0 ok; 1 a replay diverged, a run was not found, or a command
failed; 2 usage (bad arguments, a bad ``--app``, ``--value`` that is not JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from perdure import _cli_render as render
from perdure import _cli_store, _cli_write
from perdure._cli_app import (
    USAGE,
    CliError,
    Progress,
    fail,
    load_app,
    open_read_only,
    out,
    out_exact,
    out_json,
    parse_json,
    store_path,
)
from perdure._cli_args import build_parser
from perdure._console_log import console_logging
from perdure.actors import fold
from perdure.eventlog import (
    RUN_STATUSES,
    SETTLED_STATUSES,
    Event,
    EventLog,
    PerdureError,
    from_dict,
    to_dict,
)
from perdure.runtime import InvalidIdError, ReplayResult, check_id, store_label

__all__ = ["main"]


async def _with_log(args: argparse.Namespace, use: Callable[[EventLog], Awaitable[int]]) -> int:
    log = open_read_only(store_path(args.store))
    try:
        return await use(log)
    finally:
        await log.close()


async def _events_or_fail(log: EventLog, run_id: str) -> list[Event]:
    try:
        check_id("RUN_ID", run_id)  # e.g. bytes that are not UTF-8 in the argument
    except InvalidIdError as exc:
        fail(str(exc), USAGE)
    events = await log.read(run_id)
    if not events:
        fail(f"no run with id {run_id!r} in the store (see `perdure runs list`)")
    return events


# -- reading -----------------------------------------------------------------------------------


async def runs_list(args: argparse.Namespace, log: EventLog) -> int:
    runs = await log.list_runs(status=args.status, target=args.target)
    runs.sort(key=lambda info: (info.created_at, info.run_id), reverse=True)
    shown = runs[: args.limit]
    if args.json:
        out_json([render.run_row(info) for info in shown])
    elif not runs:
        out("no runs match" if args.status or args.target else "no runs in this store")
    else:
        out(*render.runs_table(shown))
        if len(shown) < len(runs):
            out(f"(the newest {len(shown)} of {len(runs)} runs; --limit N shows more)")
    return 0


async def runs_show(args: argparse.Namespace, log: EventLog) -> int:
    events = await _events_or_fail(log, args.run_id)
    state = fold(args.run_id, events)
    details = render.run_details(state, await log.get_run(args.run_id), len(events))
    if args.json:
        out_json(details)
    else:
        out(*render.run_details_text(details))
    return 0


async def events(args: argparse.Namespace, log: EventLog) -> int:
    def show(event: Event) -> None:
        if args.json:
            out_exact(json.dumps(to_dict(event), ensure_ascii=False, separators=(",", ":")))
        else:
            out(render.event_line(event, full=args.full))

    found = await _events_or_fail(log, args.run_id)
    for event in found:
        show(event)
    seq = len(found)
    while args.follow:
        info = await log.get_run(args.run_id)
        settled = info is not None and info.status in SETTLED_STATUSES
        sys.stdout.flush()
        if not settled:
            await asyncio.sleep(args.interval)
        more = await log.read(args.run_id, seq)
        for event in more:
            show(event)
        seq += len(more)
        if settled:
            break
    return 0


async def stats(args: argparse.Namespace, log: EventLog) -> int:
    where = store_label(store_path(args.store))
    progress = Progress("")
    progress.note("reading store statistics…")
    found = await log.statistics()
    progress.done()
    by_status = {s: found.runs_by_status.get(s, 0) for s in RUN_STATUSES}
    data = {
        "store": where,
        "size_bytes": found.size_bytes,
        "runs": sum(found.runs_by_status.values()),
        "runs_by_status": by_status,
        "events": found.events,
        "pending_timers": found.timers,
        "idempotency_keys": found.idempotency_keys,
    }
    if args.json:
        out_json(data)
        return 0
    counts = ", ".join(f"{s} {n}" for s, n in by_status.items() if n) or "none"
    out(
        f"store             {data['store']}",
        f"size              {_size(found.size_bytes)}",
        f"runs              {data['runs']}  ({counts})",
        f"events            {found.events}",
        f"pending timers    {found.timers}",
        f"idempotency keys  {found.idempotency_keys}",
    )
    return 0


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    size = n / 1024
    for unit in ("KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            break
        size /= 1024
    return f"{size:.1f} {unit}"


# -- replay ------------------------------------------------------------------------------------


def replay(args: argparse.Namespace) -> int:
    if sum([bool(args.run_id), args.all, args.file is not None]) != 1:
        fail("replay takes exactly one of RUN_ID, --all or --file FILE", USAGE)
    if not args.all and (args.target or args.status or args.in_flight or args.since is not None):
        fail("--target, --status, --in-flight and --since go with --all", USAGE)
    app = load_app(args.app, timeout=args.timeout)
    if args.file is not None:
        return _show(args, asyncio.run(app.replayer.areplay(_read_jsonl(args.file))))

    async def one(log: EventLog) -> int:
        return _show(args, await app.replayer.areplay(await _events_or_fail(log, args.run_id)))

    async def many(log: EventLog) -> int:
        statuses = set(args.status or ()) | ({"running", "waiting"} if args.in_flight else set())
        progress = Progress("replaying")
        summary = await app.replayer.areplay_all(
            log, since=args.since, target=args.target, status=statuses or None, progress=progress
        )
        progress.done()
        if args.json:
            out_json(render.summary_dict(summary))
        else:
            out(*render.summary_text(summary))
        return 0 if summary.ok else 1

    return asyncio.run(_with_log(args, many if args.all else one))


def _show(args: argparse.Namespace, result: ReplayResult) -> int:
    if args.json:
        out_json(result.to_dict())
    else:
        out(*render.replay_text(result))
    return 0 if result.ok else 1


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


# -- entry point -------------------------------------------------------------------------------

_READERS: dict[str, Callable[[argparse.Namespace, EventLog], Awaitable[int]]] = {
    "runs_list": runs_list,
    "runs_show": runs_show,
    "events": events,
    "stats": stats,
}


def _dispatch(args: argparse.Namespace) -> int:
    action: str = args.action
    reader = _READERS.get(action)
    if reader is not None:
        try:
            return asyncio.run(_with_log(args, lambda log: reader(args, log)))
        except KeyboardInterrupt:
            if action == "events":
                return 0  # Ctrl-C ends --follow
            raise
    if action == "replay":
        return replay(args)
    if action == "serve" or (action in ("resume", "cancel") and args.url):
        return _gateway(args)
    if action == "resume":
        return asyncio.run(_cli_write.resume(args))
    if action == "send":
        return asyncio.run(_cli_write.send(args))
    if action == "continue":
        return asyncio.run(_cli_write.continue_(args))
    if action == "cancel":
        return asyncio.run(_cli_write.cancel(args))
    if action == "store_check":
        return _cli_store.check(args)
    if action == "store_salvage":
        return _cli_store.salvage(args)
    return _cli_write.demo(args)


def _gateway(args: argparse.Namespace) -> int:
    """``perdure serve``, and ``resume``/``cancel`` with ``--url`` (see `perdure.serve`)."""
    from perdure.serve import _command

    token = os.environ.get("PERDURE_TOKEN") or None
    if args.action == "serve":
        return _command.serve_command(
            app=args.app,
            store=args.store,
            host=args.host,
            port=args.port,
            token_file=args.token_file,
        )
    if args.action == "resume":
        value = parse_json(args.value, "--value")
        return _command.remote_resume(args.url, token, args.run_id, value, args.json)
    return _command.remote_cancel(args.url, token, args.run_id, args.reason, args.json)


def _logging() -> contextlib.AbstractContextManager[None]:
    """Runtime warnings go to stderr (stdout is for results), for the command's duration;
    run ids and error texts in them are escaped like any output."""
    return console_logging(sys.stderr, logging.WARNING, processors=[_escape_log_fields])


def _error(text: str) -> None:
    print(f"perdure: error: {render.safe_text(text)}", file=sys.stderr)


def _escape_log_fields(
    logger: Any, method: str, event_dict: MutableMapping[str, Any]
) -> dict[str, Any]:
    """Runtime warnings on stderr carry run ids and error texts: escape them like any output."""
    return {
        key: render.safe_text(value) if isinstance(value, str) else value
        for key, value in event_dict.items()
    }


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """`parser.parse_args`, its usage errors (which quote the arguments) escaped on stderr."""
    caught = io.StringIO()
    try:
        with contextlib.redirect_stderr(caught):
            return parser.parse_args(argv)
    finally:
        text = caught.getvalue()
        if text:
            sys.stderr.write("\n".join(render.safe_text(line) for line in text.split("\n")))


def main(argv: list[str] | None = None) -> int:
    """Run the command line with `argv` (default ``sys.argv[1:]``); return the exit code."""
    from perdure import __version__

    parser = build_parser(__version__)
    try:
        args = _parse(parser, sys.argv[1:] if argv is None else list(argv))
    except SystemExit as exc:  # --help, --version, or a usage error argparse has printed
        return exc.code if isinstance(exc.code, int) else USAGE
    with _logging():
        try:
            return _dispatch(args)
        except CliError as exc:
            _error(str(exc))
            return exc.code
        except PerdureError as exc:
            _error(f"{type(exc).__name__}: {exc}")
            return 1
        except BrokenPipeError:  # `perdure events RUN_ID | head`
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        except KeyboardInterrupt:
            return 130
        except Exception as exc:
            if os.environ.get("PERDURE_DEBUG"):
                raise
            _error(
                f"internal error: {type(exc).__name__}: {exc} (PERDURE_DEBUG=1 shows a traceback)"
            )
            return 1
