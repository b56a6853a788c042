"""The `perdure` commands that write: ``resume``, ``send``, ``continue`` and ``cancel``
(and ``demo``, on a temporary store unless ``--store`` is given).

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

import argparse
import contextlib
import importlib
from collections.abc import AsyncIterator
from typing import Any

from perdure import _cli_render as render
from perdure._cli_app import (
    USAGE,
    fail,
    load_app,
    open_read_only,
    out,
    out_json,
    parse_json,
    store_path,
)
from perdure.actors import InvalidResumeError, RunSettledError
from perdure.eventlog import SETTLED_STATUSES, PerdureError, StoreLockedError
from perdure.runtime import Registry, Runtime, RunTimeoutError, store_label


@contextlib.asynccontextmanager
async def _runtime(args: argparse.Namespace, registry: Registry) -> AsyncIterator[Runtime]:
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


def report(args: argparse.Namespace, status: str, text: str, **extra: Any) -> None:
    if args.json:
        out_json({"run_id": args.run_id, "status": status, "message": text, **extra})
    else:
        out(f"run {args.run_id}: {text}")


async def resume(args: argparse.Namespace) -> int:
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


async def send(args: argparse.Namespace) -> int:
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


async def continue_(args: argparse.Namespace) -> int:
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


async def _check_app(args: argparse.Namespace, rt: Runtime, app: Any) -> None:
    info = await rt.get_run(args.run_id)
    if app is not None and info is not None and app.registry.get(info.target) is None:
        fail(
            f"--app {app.spec!r} has no {info.kind} {info.target!r}, which run "
            f"{args.run_id!r} runs; nothing was recorded",
            USAGE,
        )


async def _settle_here(args: argparse.Namespace, rt: Runtime) -> int:
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
        text = f"completed with result {render.compact(outcome.result, None)}"
        report(args, "completed", text, result=outcome.result)
        return 0
    if outcome.status == "waiting":
        asks = [{"id": i.id, "value": i.value} for i in outcome.interrupts]
        text = "; ".join(f"interrupt {a['id']}: {render.compact(a['value'])}" for a in asks)
        report(args, "waiting", f"waiting again on {text}", interrupts=asks)
        return 0
    why = f"{outcome.error_type}: {outcome.error_message}" if outcome.error_type else outcome.reason
    report(args, outcome.status, f"{outcome.status}: {why}")
    return 1


async def cancel(args: argparse.Namespace) -> int:
    async with _runtime(args, Registry()) as rt:
        status = await rt.status(args.run_id)
        if status in SETTLED_STATUSES:
            report(args, status, f"already {status}; nothing to cancel")
            return 0
        await rt.cancel(args.run_id, args.reason)
        report(args, "cancelled", f"cancelled (it was {status})")
        return 0


def demo(args: argparse.Namespace) -> int:
    try:
        module = importlib.import_module("perdure._demo")
    except ModuleNotFoundError as exc:
        if exc.name != "perdure._demo":
            raise
        fail("the demo is not part of this perdure installation")
    # Only an explicit --store keeps the demo's runs: by default it writes to a temporary
    # store, never into the current folder (nor $PERDURE_PATH, a service's store).
    return int(module.main(args.store) or 0)
