"""One page of the run list, newest first, without reading every run when the store allows.

On the LMDB store the runs index is ordered by ``status ‖ created ‖ run id``;
a page walks it backwards from the cursor, one cursor per status merged, and
stops after `limit` + 1 matches: a request reads about a page of rows (more
only when a target filter skips rows). A text filter uses the store's word
index (`perdure.eventlog._lmdb_search`): when few runs match, it reads just
those; when many do, the walk above checks each run against the index and soon
fills a page (a run's id, target and key are checked on its row, its error
in the index). Other logs (`MemoryEventLog`, adapters without that index) are
listed whole and sorted; `PostgresEventLog` answers a page with one keyset query
(newest first down its ``(status, created_at, run_id)`` index, the text as an
ILIKE pre-filter), reading about a page of rows unless a text filter skips many.

A text filter finds a run when one of its texts (run id, target, idempotency
key; on the LMDB store also a failed run's error type and message), or a word
in it, starts with the filter, ignoring case.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from typing import Any

from perdure.eventlog import RUN_STATUSES, EventLog, LmdbEventLog, RunInfo
from perdure.eventlog.lmdb_tools import is_ready, matches, query_term, run_has_term, term_hits

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


#: A text filter with more matching runs than this walks the runs in order instead.
DENSE = 2000
#: Rows a text-filtered page asks PostgreSQL for at a time (some may fail the word rule).
SQL_CHUNK = 200


def _matches(info: RunInfo, target: str | None, needle: str | None) -> bool:
    if target is not None and info.target != target:
        return False
    return needle is None or matches((info.run_id, info.target, info.idempotency_key or ""), needle)


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
    elif _pages_in_sql(log):
        page = await _sql_page(
            log,
            status=status,
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


def _pages_in_sql(log: EventLog) -> bool:
    """Whether `log` answers a page itself (`PostgresEventLog.page_runs`)."""
    return callable(getattr(log, "page_runs", None))


async def _sql_page(
    log: Any,
    *,
    status: str | None,
    target: str | None,
    needle: str | None,
    wanted: int,
    after: tuple[float, str] | None,
    since: float | None = None,
) -> list[RunInfo]:
    """A page from the database: rows containing the text, newest first, then the word rule
    checked here (a row that contains the text but not at a word start is skipped)."""
    found: list[RunInfo] = []
    chunk = max(wanted, SQL_CHUNK) if needle is not None else wanted
    while len(found) < wanted:
        rows: list[RunInfo] = await log.page_runs(
            status=status, target=target, contains=needle, before=after, since=since, limit=chunk
        )
        for info in rows:
            if _matches(info, None, needle):
                found.append(info)
                if len(found) >= wanted:
                    break
        if len(rows) < chunk:
            break
        after = (rows[-1].created_at, rows[-1].run_id)
    return found


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
        found: list[RunInfo] = []
        search = dbs.search if needle is not None and is_ready(txn, dbs.meta) else None
        prefix = query_term(needle) if needle is not None else b""
        hits = term_hits(txn, search, prefix, DENSE) if search is not None else None
        if hits is not None:  # few runs have the text: read just those, newest first
            wanted_statuses = set(statuses)
            for suffix in hits:
                if bound is not None and suffix >= bound:
                    continue
                if oldest is not None and suffix[:8] < oldest:
                    break
                run = suffix[8:]
                raw = txn.get(run, db=dbs.runs)
                if raw is None:
                    continue
                info = load_run(run.decode(), raw)
                if info.status in wanted_statuses and (target is None or info.target == target):
                    found.append(info)
                    if len(found) >= wanted:
                        break
            return found
        walks = [backwards(txn, s.encode() + SEP) for s in statuses]
        for suffix in heapq.merge(*walks, reverse=True):
            if oldest is not None and suffix[:8] < oldest:
                break
            run = suffix[8:]
            raw = txn.get(run, db=dbs.runs)
            if raw is None:
                continue  # moved to another status since the walk began: not in this snapshot
            info = load_run(run.decode(), raw)
            if search is not None and not (
                _matches(info, None, needle)
                or (info.status == "failed" and run_has_term(txn, search, run, prefix))
            ):
                continue
            if _matches(info, target, None if search is not None else needle):
                found.append(info)
                if len(found) >= wanted:
                    break
        return found

    result: list[RunInfo] = shared.read(collect)
    return result
