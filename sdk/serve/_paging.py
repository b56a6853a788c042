"""One page of the run list, newest first, without reading every run when the store allows.

On the LMDB store the runs index is ordered by ``status ‖ created ‖ run id``;
a page walks it backwards from the cursor, one cursor per status merged, and
stops after `limit` + 1 matches: a request reads about a page of rows (more
only when a target or text filter skips rows). Other logs (`MemoryEventLog`,
adapters without that index) are listed whole and sorted.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from typing import Any

from perdure.eventlog import RUN_STATUSES, EventLog, LmdbEventLog, RunInfo

__all__ = ["PagingError", "decode_cursor", "encode_cursor", "list_page", "uses_index"]


class PagingError(ValueError):
    """A bad paging argument (unknown status, a cursor this API did not hand out)."""


def encode_cursor(info: RunInfo) -> str:
    return f"{info.created_at!r}|{info.run_id}"


def decode_cursor(text: str) -> tuple[float, str]:
    ts, _, run_id = text.partition("|")
    try:
        return float(ts), run_id
    except ValueError:
        raise PagingError(f"cursor {text!r} is not one this API handed out") from None


def _matches(info: RunInfo, target: str | None, needle: str | None) -> bool:
    if target is not None and info.target != target:
        return False
    return needle is None or any(
        needle in field.lower() for field in (info.run_id, info.target, info.idempotency_key or "")
    )


def uses_index(log: EventLog) -> bool:
    """Whether `list_page` walks `log`'s ordered runs index (else it lists the log whole)."""
    return isinstance(log, LmdbEventLog) and hasattr(log, "_open_env")


async def list_page(
    log: EventLog,
    *,
    status: str | None,
    target: str | None,
    text: str | None,
    limit: int,
    cursor: str | None,
    since: float | None = None,
) -> tuple[list[RunInfo], str | None]:
    """`limit` runs after `cursor`, newest first, and the cursor of the next page (or None).

    since: only runs created at or after this time (seconds since the epoch); the walk
    stops at the first older run.
    """
    if status is not None and status not in RUN_STATUSES:
        raise PagingError(f"status must be one of {', '.join(RUN_STATUSES)}, got {status!r}")
    after = decode_cursor(cursor) if cursor else None
    needle = text.lower() if text else None
    statuses = RUN_STATUSES if status is None else (status,)
    if uses_index(log):
        assert isinstance(log, LmdbEventLog)
        page = await _lmdb_page(
            log,
            statuses=statuses,
            target=target,
            needle=needle,
            wanted=limit + 1,
            after=after,
            since=since,
        )
    else:
        runs = await log.list_runs(status=status, target=target)
        page = []
        for info in reversed(runs):  # the log lists oldest first
            if after is not None and (info.created_at, info.run_id) >= after:
                continue
            if since is not None and info.created_at < since:
                break
            if _matches(info, None, needle):
                page.append(info)
                if len(page) > limit:
                    break
    more = len(page) > limit
    page = page[:limit]
    return page, (encode_cursor(page[-1]) if more and page else None)


async def _lmdb_page(
    log: LmdbEventLog,
    *,
    statuses: tuple[str, ...],
    target: str | None,
    needle: str | None,
    wanted: int,
    after: tuple[float, str] | None,
    since: float | None,
) -> list[RunInfo]:
    from perdure.eventlog.lmdb_tools import SEP, load_run, sortable_float

    shared = log._open_env()
    await shared.caught_up()
    dbs = shared.dbs
    bound = sortable_float(after[0]) + after[1].encode() if after is not None else None
    oldest = sortable_float(since) if since is not None else None

    def backwards(txn: Any, prefix: bytes) -> Iterator[bytes]:
        """Suffixes (created ‖ run) of keys with `prefix`, below `bound`, descending."""
        cursor = txn.cursor(db=dbs.run_order)
        start = prefix + bound if bound is not None else prefix[:-1] + b"\x01"
        positioned = cursor.prev() if cursor.set_range(start) else cursor.last()
        while positioned:
            key: bytes = cursor.key()
            if not key.startswith(prefix):
                return
            yield key[len(prefix) :]
            positioned = cursor.prev()

    def collect(txn: Any) -> list[RunInfo]:
        walks = [backwards(txn, s.encode() + SEP) for s in statuses]
        found: list[RunInfo] = []
        for suffix in heapq.merge(*walks, reverse=True):
            if oldest is not None and suffix[:8] < oldest:
                break
            run = suffix[8:]
            raw = txn.get(run, db=dbs.runs)
            if raw is None:
                continue  # moved to another status since the walk began: not in this snapshot
            info = load_run(run.decode(), raw)
            if _matches(info, target, needle):
                found.append(info)
                if len(found) >= wanted:
                    break
        return found

    result: list[RunInfo] = shared.read(collect)
    return result
