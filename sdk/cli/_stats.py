"""``perdure stats``: the store's size, runs by status, events, timers and keys."""

from __future__ import annotations

import asyncio

import click

from perdure.cli._app import store_path, with_log
from perdure.cli._options import Args, common
from perdure.cli._output import Progress, out, out_json
from perdure.eventlog import RUN_STATUSES, EventLog


@click.command(
    epilog="\b\nExamples:\n  perdure stats\n  perdure stats --json --store postgresql://..."
)
@common
def stats(args: Args) -> int:
    """Store size, runs by status, events."""
    return asyncio.run(with_log(args.store, lambda log: _stats(args, log)))


async def _stats(args: Args, log: EventLog) -> int:
    from perdure.runtime import store_label

    where = store_label(store_path(args.store))
    progress = Progress("reading store statistics…")
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
