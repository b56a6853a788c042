"""The `perdure` commands that write: ``resume``, ``send``, ``continue`` and ``cancel``.

They open a `Runtime` on the store, which works only while no other process
holds it for writing. ``resume`` without ``--app`` records the answer only: the
run continues when a process that has its code opens the store (a runtime
resumes unfinished runs at start-up). With ``--app`` the run continues here,
with that code, until it settles again or ``--timeout`` passes; ``continue``
(reopen a failed, parked or cancelled run) works the same way. ``cancel``
needs no code. The runtime is opened with ``recover=False`` so other
unfinished runs are not started in this short-lived process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import click

from perdure.actors import InvalidResumeError, RunSettledError
from perdure.cli._app import load_app, open_read_only, parse_json, store_path
from perdure.cli._options import SECONDS, URL_HELP, Args, F, common, run_id_argument
from perdure.cli._output import USAGE, fail, out, out_json
from perdure.cli._text import compact
from perdure.eventlog import SETTLED_STATUSES, PerdureError, StoreLockedError
from perdure.runtime import Registry, Runtime, RunTimeoutError, store_label


@contextlib.asynccontextmanager
async def _runtime(args: Args, registry: Registry) -> AsyncIterator[Runtime]:
    path = store_path(args.store)
    probe = open_read_only(path)  # an existing store, or a readable error: never create one
    try:
        await probe.list_runs(limit=0)  # a PostgreSQL store is only looked at on first use
    except PerdureError as exc:
        fail(f"cannot open the store at {store_label(path)!r}: {exc}")
    finally:
        await probe.close()
    runtime = Runtime(path=path, registry=registry, recover=False)
    try:
        await runtime.open()
    except StoreLockedError:
        fail(
            f"the store at {path!r} is open for writing by another process (a running "
            "service?); send the message through that process (Runtime.resume, Runtime.cancel) "
            "or stop it first"
        )
    try:
        if await runtime.get_run(args.run_id) is None:
            fail(f"no run with id {args.run_id!r} in the store (see `perdure runs list`)")
        yield runtime
    finally:
        await runtime.close()


def report(args: Args, status: str, text: str, **extra: Any) -> None:
    if args.json:
        out_json({"run_id": args.run_id, "status": status, "message": text, **extra})
    else:
        out(f"run {args.run_id}: {text}")


async def _resume(args: Args) -> int:
    value = parse_json(args.value, "--value")
    app = load_app(args.app) if args.app else None
    async with _runtime(args, app.registry if app is not None else Registry()) as rt:
        await _check_app(args, rt, app)
        await rt.resume(args.run_id, value)
        if app is None:
            report(
                args,
                "resumed",
                "answer recorded; the run continues when a process that has its code opens the "
                "store (or pass --app to continue it here)",
            )
            return 0
        return await _settle_here(args, rt)


async def _send(args: Args) -> int:
    """Record a message for a run (`Runtime.send`); the run takes it with ``receive()``
    when a process that has its code runs it."""
    value = parse_json(args.value, "JSON")
    async with _runtime(args, Registry()) as rt:
        try:
            await rt.send(
                args.run_id, value, topic=args.topic, idempotency_key=args.idempotency_key
            )
        except RunSettledError as exc:
            report(args, exc.status, f"{exc.status}: a settled run takes no messages")
            return 1
        report(
            args,
            await rt.status(args.run_id),
            f"message recorded on topic {args.topic!r}; the run receives it when a process "
            "that has its code runs it",
        )
        return 0


async def _continue(args: Args) -> int:
    """Reopen a failed, parked or cancelled run from its last completed step."""
    app = load_app(args.app) if args.app else None
    async with _runtime(args, app.registry if app is not None else Registry()) as rt:
        await _check_app(args, rt, app)
        status = await rt.status(args.run_id)
        try:
            await rt.continue_run(args.run_id)
        except InvalidResumeError:
            hint = " (answer it with `perdure resume`)" if status == "waiting" else ""
            report(
                args,
                status,
                f"{status}: nothing to continue; only a failed, parked or cancelled run can "
                f"be continued{hint}",
            )
            return 1
        if app is None:
            report(
                args,
                await rt.status(args.run_id),
                f"reopened (it was {status}); it continues when a process that has its code "
                "opens the store (or pass --app to continue it here)",
            )
            return 0
        return await _settle_here(args, rt)


async def _check_app(args: Args, rt: Runtime, app: Any) -> None:
    info = await rt.get_run(args.run_id)
    if app is not None and info is not None and app.registry.get(info.target) is None:
        fail(
            f"--app {app.spec!r} has no {info.kind} {info.target!r}, which run "
            f"{args.run_id!r} runs; nothing was recorded",
            USAGE,
        )


async def _settle_here(args: Args, rt: Runtime) -> int:
    """With --app: drive the run here until it settles again (or --timeout passes), report."""
    try:
        outcome = await rt.wait(args.run_id, timeout=args.timeout)
    except RunTimeoutError:
        status = await rt.status(args.run_id)
        report(
            args,
            status,
            f"still {status} after {args.timeout:g} s; it continues when a process that has "
            "its code opens the store",
        )
        return 0
    if outcome.status == "completed":
        text = f"completed with result {compact(outcome.result, None)}"
        report(args, "completed", text, result=outcome.result)
        return 0
    if outcome.status == "waiting":
        asks = [{"id": i.id, "value": i.value} for i in outcome.interrupts]
        text = "; ".join(f"interrupt {a['id']}: {compact(a['value'])}" for a in asks)
        report(args, "waiting", f"waiting again on {text}", interrupts=asks)
        return 0
    failure = outcome.failure
    why = (
        f"{failure.error_type}: {failure.message}"
        if failure and failure.error_type
        else outcome.reason
    )
    report(args, outcome.status, f"{outcome.status}: {why}")
    return 1


async def _cancel(args: Args) -> int:
    async with _runtime(args, Registry()) as rt:
        status = await rt.status(args.run_id)
        if status in SETTLED_STATUSES:
            report(args, status, f"already {status}; nothing to cancel")
            return 0
        await rt.cancel(args.run_id, args.reason)
        report(args, "cancelled", f"cancelled (it was {status})")
        return 0


# -- the commands ------------------------------------------------------------------------------

_APP_HERE = "Continue the run here with this code (until it settles or --timeout)."


def _gateway(args: Args, action: str) -> int:
    """``resume``/``send``/``continue``/``cancel`` with ``--url``: through a running
    `perdure serve`."""
    from perdure.serve import _command

    token = os.environ.get("PERDURE_TOKEN") or None
    if action == "resume":
        value = parse_json(args.value, "--value")
        return _command.remote_resume(args.url, token, args.run_id, value, args.json)
    if action == "send":
        message = parse_json(args.value, "JSON")
        return _command.remote_send(
            args.url,
            token,
            args.run_id,
            message,
            topic=args.topic,
            idempotency_key=args.idempotency_key,
            as_json=args.json,
        )
    if action == "continue":
        return _command.remote_continue(args.url, token, args.run_id, args.json)
    return _command.remote_cancel(args.url, token, args.run_id, args.reason, args.json)


def _drive_here_options(f: F) -> F:
    """``--app`` and ``--timeout``: drive the run here, with that code, until it settles."""
    f = click.option(
        "--timeout",
        type=SECONDS,
        default=60.0,
        show_default=True,
        metavar="S",
        help="How long to wait with --app.",
    )(f)
    return click.option("--app", metavar="MODULE:ATTR", help=_APP_HERE)(f)


def _url_option(f: F) -> F:
    """``--url``: act through a live ``perdure serve`` instead of opening the store."""
    return click.option("--url", metavar="URL", help=URL_HELP)(f)


def _here_or_gateway(
    args: Args, action: str, here: Callable[[Args], Coroutine[Any, Any, int]]
) -> int:
    """Through the gateway at ``--url`` if one is named, else on the store in this process."""
    if args.url:
        return _gateway(args, action)
    return asyncio.run(here(args))


@click.command(
    epilog="""\b
Examples:
  perdure resume RUN_ID --value '"approve"'                answer only; code runs later
  perdure resume RUN_ID --value '{"ok": true}' --app myapp.workflows
  perdure resume RUN_ID --value '"approve"' --url http://127.0.0.1:8080
"""
)
@run_id_argument
@click.option("--value", required=True, metavar="JSON", help="The answer, as JSON.")
@_drive_here_options
@_url_option
@common
def resume(args: Args) -> int:
    """Answer a run's pending interrupt."""
    return _here_or_gateway(args, "resume", _resume)


@click.command(
    epilog="""\b
Examples:
  perdure send RUN_ID '{"amount": 12}'
  perdure send RUN_ID '"stop"' --topic control --idempotency-key stop-1
  perdure send RUN_ID '"stop"' --url http://127.0.0.1:8080
"""
)
@run_id_argument
@click.argument("value", metavar="JSON")
@click.option("--topic", default="default", show_default=True, metavar="T", help="The topic.")
@click.option("--idempotency-key", metavar="KEY", help="Send at most once with this key.")
@_url_option
@common
def send(args: Args) -> int:
    """Send a message (JSON) to a workflow run."""
    return _here_or_gateway(args, "send", _send)


@click.command(
    "continue",
    epilog="""\b
Examples:
  perdure continue RUN_ID                       reopen; code runs when a service opens the store
  perdure continue RUN_ID --app myapp.workflows  reopen and drive it here
  perdure continue RUN_ID --url http://127.0.0.1:8080   through a live service
""",
)
@run_id_argument
@_drive_here_options
@_url_option
@common
def continue_(args: Args) -> int:
    """Reopen a failed, parked or cancelled run from its last completed step."""
    return _here_or_gateway(args, "continue", _continue)


@click.command(
    epilog="""\b
Examples:
  perdure cancel RUN_ID --reason "duplicate order"
  perdure cancel RUN_ID --url http://127.0.0.1:8080
"""
)
@run_id_argument
@click.option(
    "--reason",
    default="cancelled from the command line",
    show_default=True,
    help="Recorded with the cancellation.",
)
@_url_option
@common
def cancel(args: Args) -> int:
    """Cancel a run."""
    return _here_or_gateway(args, "cancel", _cancel)
