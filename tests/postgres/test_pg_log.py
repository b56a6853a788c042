"""`PostgresEventLog` specifics: opening, layout versions, bad input, two writers on one store."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from perdure.eventlog import (
    Event,
    IdempotencyKeyTakenError,
    LeaseLostError,
    PostgresEventLog,
    ReadOnlyStoreError,
    SchemaVersionError,
    SequenceConflictError,
    StorageError,
    StoreClosedError,
    encode,
)
from perdure.eventlog._postgres_schema import SCHEMA_VERSION
from perdure.testing.events import done, fired, started, steps, timer


@pytest.mark.parametrize(
    ("dsn", "schema", "match"),
    [
        ("/tmp/store", "perdure", "postgresql:// URL"),
        ("mysql://x/y", "perdure", "postgresql:// URL"),
        ("postgresql://localhost/x", "Perdure", "lower-case SQL identifier"),
        ("postgresql://localhost/x", "a; DROP TABLE x", "lower-case SQL identifier"),
        ("postgresql://localhost/x", "", "lower-case SQL identifier"),
    ],
)
def test_bad_arguments_raise_value_error(dsn: str, schema: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        PostgresEventLog(dsn, schema=schema)


async def test_an_unreachable_server_is_a_storage_error_that_names_it_without_password() -> None:
    log = PostgresEventLog("postgresql://me:secret@127.0.0.1:1/none?connect_timeout=2")
    with pytest.raises(StorageError, match=r"me:\*\*\*@127\.0\.0\.1:1") as caught:
        await log.get_run("r")
    assert "secret" not in str(caught.value) and "secret" not in repr(log)
    await log.close()
    with pytest.raises(StoreClosedError):
        await log.get_run("r")


async def test_tables_are_created_on_open_and_events_are_the_json_envelope(
    postgres_url: str, pg_schema: str
) -> None:
    log = PostgresEventLog(postgres_url, schema=pg_schema)
    first = started("r", input={"doc": "a"})
    await log.append("r", 0, [first])
    await log.close()
    with psycopg.connect(postgres_url) as conn:
        version = conn.execute(f"SELECT version FROM {pg_schema}.schema_version").fetchall()
        body = conn.execute(f"SELECT body FROM {pg_schema}.events").fetchall()
    assert version == [(SCHEMA_VERSION,)]
    assert body == [(encode(first),)]  # the same checksummed envelope as the LMDB store


async def test_a_store_from_a_newer_perdure_is_refused(postgres_url: str, pg_schema: str) -> None:
    log = PostgresEventLog(postgres_url, schema=pg_schema)
    await log.append("r", 0, [started("r")])
    await log.close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"UPDATE {pg_schema}.schema_version SET version = 99")
    again = PostgresEventLog(postgres_url, schema=pg_schema)
    with pytest.raises(SchemaVersionError, match="layout version 99"):
        await again.read("r")
    await again.close()


async def test_read_only_creates_nothing_and_refuses_appends(
    postgres_url: str, pg_schema: str
) -> None:
    reader = PostgresEventLog(postgres_url, schema=pg_schema, read_only=True)
    with pytest.raises(StorageError, match="no perdure store"):
        await reader.list_runs()
    await reader.close()
    writer = PostgresEventLog(postgres_url, schema=pg_schema)
    await writer.append("r", 0, [started("r")])
    reader = PostgresEventLog(postgres_url, schema=pg_schema, read_only=True)
    assert [r.run_id for r in await reader.list_runs()] == ["r"]
    with pytest.raises(ReadOnlyStoreError):
        await reader.append("r", 1, steps("r", 1, 1))
    await reader.close()
    await writer.close()


async def test_text_postgres_cannot_hold_is_a_value_error_and_writes_nothing(
    postgres_url: str, pg_schema: str
) -> None:
    log = PostgresEventLog(postgres_url, schema=pg_schema)
    with pytest.raises(ValueError, match="NUL"):
        await log.append("r", 0, [started("r", key="k\x00")])
    assert await log.get_run("r") is None
    assert await log.lookup_idempotency("k\x00") is None
    await log.close()


async def test_two_log_objects_on_one_store_conflict_like_two_processes(
    postgres_url: str, pg_schema: str
) -> None:
    one = PostgresEventLog(postgres_url, schema=pg_schema)
    two = PostgresEventLog(postgres_url, schema=pg_schema)
    await one.append("r", 0, [started("r", key="k")])
    with pytest.raises(SequenceConflictError) as caught:
        await two.append("r", 0, [started("r")])
    assert caught.value.actual == 1
    with pytest.raises(IdempotencyKeyTakenError) as taken:
        await two.append("s", 0, [started("s", key="k")])
    assert taken.value.existing_run_id == "r"
    # `one` holds r's lease (its first append took it): `two` is fenced, nothing lands.
    with pytest.raises(LeaseLostError):
        await two.append("r", 1, [done("r", 1)])
    await one.append("r", 1, [done("r", 1)])
    assert [e.seq for e in await two.read("r")] == [0, 1]
    await one.close()
    await two.close()


def _expire(url: str, schema: str, run_id: str) -> None:
    """Let the run's lease run out (as if its holder had been paused past lease_ttl)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            f"UPDATE {schema}.runs SET lease_until = now() - interval '1 second' WHERE run_id = %s",
            (run_id,),
        )


def _lease(url: str, schema: str, run_id: str) -> tuple[str | None, int]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            f"SELECT owner, epoch FROM {schema}.runs WHERE run_id = %s", (run_id,)
        ).fetchone()
    assert row is not None
    return row[0], row[1]


async def test_a_takeover_fences_the_former_owner_in_the_same_transaction(
    postgres_url: str, pg_schema: str
) -> None:
    one = PostgresEventLog(postgres_url, schema=pg_schema)
    two = PostgresEventLog(postgres_url, schema=pg_schema)
    await one.append("r", 0, [started("r"), done("r", 1)])
    assert _lease(postgres_url, pg_schema, "r") == (one.owner, 1)
    with pytest.raises(LeaseLostError, match="driven by another process"):
        await two.claim_run("r")  # the lease is live
    _expire(postgres_url, pg_schema, "r")
    await two.claim_run("r")
    assert _lease(postgres_url, pg_schema, "r") == (two.owner, 2)
    assert two.held_leases() == {"r": 2}
    # The former owner comes back with the right seq: fenced, and nothing of it lands.
    with pytest.raises(LeaseLostError):
        await one.append("r", 2, [done("r", 2, result="late")])
    with pytest.raises(LeaseLostError):  # and it knows without asking again
        await one.append("r", 2, [done("r", 2, result="later")])
    await two.append("r", 2, [done("r", 2, result="mine")])
    assert [e.result for e in (await one.read("r"))[1:]] == [None, "mine"]  # type: ignore[attr-defined]
    await one.close()
    await two.close()


async def test_renewal_extends_held_leases_in_one_update_and_notices_a_lost_one(
    postgres_url: str, pg_schema: str
) -> None:
    one = PostgresEventLog(postgres_url, schema=pg_schema)
    two = PostgresEventLog(postgres_url, schema=pg_schema)
    for run_id in ("a", "b"):
        await one.append(run_id, 0, [started(run_id)])

    def until(run_id: str) -> float:
        with psycopg.connect(postgres_url) as conn:
            row = conn.execute(
                f"SELECT extract(epoch FROM lease_until - now()) FROM {pg_schema}.runs "
                "WHERE run_id = %s",
                (run_id,),
            ).fetchone()
        assert row is not None
        return float(row[0])

    _expire(postgres_url, pg_schema, "b")
    await two.claim_run("b")
    before = until("a")
    await one.renew_leases()
    assert until("a") >= before and until("a") > 9.0  # lease_ttl is 10 s by default
    assert one.held_leases() == {"a": 1}  # b was taken over: lost at once
    with pytest.raises(LeaseLostError):
        await one.append("b", 1, [done("b", 1)])
    await one.close()  # hands "a" back at once
    assert _lease(postgres_url, pg_schema, "a") == (one.owner, 1)  # expired, not released
    await two.claim_run("a")
    await two.append("a", 1, [done("a", 1)])
    await two.close()


async def test_a_layout_1_store_is_migrated_on_open(postgres_url: str, pg_schema: str) -> None:
    from perdure.eventlog._postgres_schema import create_statements

    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {pg_schema}")
        conn.execute(f"CREATE TABLE {pg_schema}.schema_version (version integer NOT NULL)")
        conn.execute(f"INSERT INTO {pg_schema}.schema_version VALUES (1)")
        for statement in create_statements(pg_schema):
            conn.execute(statement)
        conn.execute(
            f"INSERT INTO {pg_schema}.runs VALUES ('old', 'work', 'function', 'running', "
            "1.0, 1.0, 1, NULL)"
        )
        conn.execute(
            f"INSERT INTO {pg_schema}.events VALUES ('old', 0, %s)", (encode(started("old")),)
        )
    log = PostgresEventLog(postgres_url, schema=pg_schema)
    assert [e.seq for e in await log.read("old")] == [0]
    await log.append("old", 1, [done("old", 1)])  # a run without a lease: taken on append
    assert _lease(postgres_url, pg_schema, "old") == (log.owner, 1)
    await log.close()
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute(f"SELECT version FROM {pg_schema}.schema_version").fetchall() == [
            (SCHEMA_VERSION,)
        ]


async def test_leases_are_renewed_while_every_pooled_connection_is_busy(
    postgres_url: str, pg_schema: str
) -> None:
    """Renewals have a connection of their own: a pool saturated by appends (1,000 runs
    in flight) must not let this process's own leases expire and its runs stop."""
    log = PostgresEventLog(postgres_url, schema=pg_schema, pool_size=1, lease_ttl=0.3)
    await log.append("busy", 0, [started("busy")])
    pool = await log._connections()
    async with pool.connection():  # the only pooled connection, held past two ttls
        await asyncio.sleep(0.8)
    await log.append("busy", 1, [done("busy", 1)])  # still the holder: it lands
    assert log.held_leases() == {"busy": 1}
    await log.close()


async def test_a_lease_that_expired_but_was_not_taken_over_is_renewed(
    postgres_url: str, pg_schema: str
) -> None:
    log = PostgresEventLog(postgres_url, schema=pg_schema)
    await log.append("late", 0, [started("late")])
    _expire(postgres_url, pg_schema, "late")  # (a renewal came late: nobody took it)
    await log.renew_leases()
    assert log.held_leases() == {"late": 1}
    await log.append("late", 1, [done("late", 1)])
    await log.close()


async def test_appends_of_many_runs_share_commits_each_fenced_and_checked_alone(
    postgres_url: str, pg_schema: str
) -> None:
    """Group commit: appends of runs made at once go in few transactions, and one that
    is fenced, conflicts or finds its idempotency key taken fails alone, writing nothing,
    while the others in its transaction land."""
    one = PostgresEventLog(postgres_url, schema=pg_schema)
    two = PostgresEventLog(postgres_url, schema=pg_schema)
    await two.append("held", 0, [started("held", key="k")])  # two holds it, and key k
    for run_id in ("late", "stale"):
        await one.append(run_id, 0, [started(run_id)])
    _expire(postgres_url, pg_schema, "late")
    await two.claim_run("late")  # one is fenced on it now
    before = one.commits
    runs = [f"r{i}" for i in range(30)]
    results = await asyncio.gather(
        *(one.append(r, 0, [started(r), done(r, 1)]) for r in runs[:15]),
        one.append("late", 1, [done("late", 1, result="late")]),
        one.append("stale", 5, [done("stale", 5)]),
        one.append("keyed", 0, [started("keyed", key="k")]),
        one.append("held", 1, [done("held", 1)]),
        *(one.append(r, 0, [started(r), done(r, 1)]) for r in runs[15:]),
        return_exceptions=True,
    )
    assert results[:15] == [None] * 15 and results[19:] == [None] * 15
    assert isinstance(results[15], LeaseLostError)
    assert isinstance(results[16], SequenceConflictError) and results[16].actual == 1
    assert isinstance(results[17], IdempotencyKeyTakenError)
    assert results[17].existing_run_id == "held"
    assert isinstance(results[18], LeaseLostError)
    assert one.commits - before < 34 / 2  # shared: not one transaction per append
    for run_id in runs:
        assert [e.seq for e in await one.read(run_id)] == [0, 1]
    assert len(await one.read("late")) == 1 and len(await one.read("held")) == 1
    assert await one.get_run("keyed") is None
    record = await one.lookup_idempotency("k")
    assert record is not None and record.run_id == "held"
    await two.append("late", 1, [done("late", 1, result="mine")])
    await one.close()
    await two.close()


async def test_a_group_commit_sets_and_removes_each_runs_own_timers(
    postgres_url: str, pg_schema: str
) -> None:
    """Each append of a group commit is a slice of the shared arrays: its events, the
    timers it sets and those it removes stay its own run's."""
    log = PostgresEventLog(postgres_url, schema=pg_schema)
    runs = [f"r{i}" for i in range(12)]

    def first(i: int, r: str) -> list[Event]:
        return [started(r), *(timer(r, 1 + k, f"t{k}", 100.0 + i + k / 10) for k in range(i % 3))]

    await asyncio.gather(*(log.append(r, 0, first(i, r)) for i, r in enumerate(runs)))
    # Then, at once: runs with timers fire their first one, and every run adds a step.
    second = []
    for i, r in enumerate(runs):
        seq = 1 + i % 3
        batch: list[Event] = [fired(r, seq, "t0")] if i % 3 else []
        batch.append(done(r, seq + len(batch), result=r))
        second.append(log.append(r, seq, batch))
    await asyncio.gather(*second)
    expected = sorted(
        (100.0 + i + k / 10, r, f"t{k}") for i, r in enumerate(runs) for k in range(1, i % 3)
    )
    assert [(t.due_at, t.run_id, t.timer_id) for t in await log.due_timers(1e9)] == expected
    for i, r in enumerate(runs):
        events = await log.read(r)
        assert len(events) == 2 + i % 3 + (1 if i % 3 else 0)
        assert events[-1].result == r  # type: ignore[attr-defined]
    await log.close()


async def test_the_read_after_a_claim_is_the_whole_log_short_or_long(
    postgres_url: str, pg_schema: str
) -> None:
    """`claim_run` reads a short run's events with the claim, for the rebuild's `read`:
    that read, and any later one, is the log as it is, for short and long runs alike,
    and for a run that does not exist yet."""
    one = PostgresEventLog(postgres_url, schema=pg_schema)
    two = PostgresEventLog(postgres_url, schema=pg_schema)
    await one.append("short", 0, [started("short"), *steps("short", 1, 3)])
    await one.append("long", 0, [started("long"), *steps("long", 1, 99)])
    for run_id in ("short", "long"):
        _expire(postgres_url, pg_schema, run_id)
    for run_id, length in (("short", 4), ("long", 100)):
        await two.claim_run(run_id)
        assert [e.seq for e in await two.read(run_id)] == list(range(length))
        await two.append(run_id, length, [done(run_id, length)])
        assert len(await two.read(run_id)) == length + 1
        assert [e.seq for e in await two.read(run_id, 2)] == list(range(2, length + 1))
    await two.claim_run("new")
    assert await two.read("new") == []
    await one.append("new", 0, [started("new")])  # another process starts it meanwhile
    assert [e.seq for e in await two.read("new")] == [0]
    await one.close()
    await two.close()


async def test_an_append_the_server_refuses_fails_alone_in_its_group_commit(
    postgres_url: str, pg_schema: str
) -> None:
    """A statement error rolls the whole group commit back; each of its appends is then
    tried alone, so only the refused one fails (a trigger refuses run "bad" here)."""
    log = PostgresEventLog(postgres_url, schema=pg_schema)
    runs = [f"r{i}" for i in range(10)]
    await asyncio.gather(*(log.append(r, 0, [started(r)]) for r in [*runs, "bad"]))
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(
            f"CREATE FUNCTION {pg_schema}.refuse() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN IF NEW.run_id = 'bad' THEN RAISE EXCEPTION 'refused'; END IF; "
            "RETURN NEW; END $$"
        )
        conn.execute(
            f"CREATE TRIGGER refuse BEFORE INSERT ON {pg_schema}.events "
            f"FOR EACH ROW EXECUTE FUNCTION {pg_schema}.refuse()"
        )
    results = await asyncio.gather(
        *(log.append(r, 1, [done(r, 1)]) for r in [*runs[:5], "bad", *runs[5:]]),
        return_exceptions=True,
    )
    assert results[:5] == [None] * 5 and results[6:] == [None] * 5
    assert isinstance(results[5], StorageError) and "refused" in str(results[5])
    for run_id in runs:
        assert len(await log.read(run_id)) == 2
    assert len(await log.read("bad")) == 1
    await log.close()


async def test_claims_made_at_once_go_together_and_each_gets_its_own_answer(
    postgres_url: str, pg_schema: str
) -> None:
    """Claims queued while one is in flight are sent in one statement; each run still
    gets its own answer: its own or an expired lease is taken (epoch + 1), a live lease
    of another process refuses, a run that does not exist needs none."""
    one = PostgresEventLog(postgres_url, schema=pg_schema)
    two = PostgresEventLog(postgres_url, schema=pg_schema)
    await two.append("own", 0, [started("own")])
    for run_id in ("expired", "live"):
        await one.append(run_id, 0, [started(run_id), done(run_id, 1)])
    _expire(postgres_url, pg_schema, "expired")
    results = await asyncio.gather(
        *(two.claim_run(run_id) for run_id in ("live", "own", "missing", "expired", "live")),
        return_exceptions=True,
    )
    assert isinstance(results[0], LeaseLostError) and one.owner in str(results[0])
    assert results[1:4] == [None, None, None] and isinstance(results[4], LeaseLostError)
    assert two.held_leases() == {"own": 2, "expired": 2}
    assert [e.seq for e in await two.read("expired")] == [0, 1]
    assert await two.read("missing") == []
    with pytest.raises(LeaseLostError):
        await one.append("expired", 2, [done("expired", 2)])
    await one.close()
    await two.close()


async def test_close_commits_the_appends_queued_for_a_group_commit(
    postgres_url: str, pg_schema: str
) -> None:
    """Appends begun before the log closes (waiting for the next group commit, or for
    an earlier append of their run) are committed before it hands its leases back and
    closes its connections, not fenced or failed."""
    log = PostgresEventLog(postgres_url, schema=pg_schema)
    runs = [f"r{i}" for i in range(40)]
    await asyncio.gather(*(log.append(r, 0, [started(r)]) for r in runs))
    # Each run's second append waits for its first: none of them is queued yet when
    # the close begins.
    appends = [
        asyncio.ensure_future(log.append(r, seq, [done(r, seq)])) for r in runs for seq in (1, 2)
    ]
    for _ in range(3):  # the first commits are on their way, the rest queued behind them
        await asyncio.sleep(0)
    await log.close()
    assert await asyncio.gather(*appends) == [None] * len(appends)
    again = PostgresEventLog(postgres_url, schema=pg_schema)
    assert [len(await again.read(r)) for r in runs] == [3] * len(runs)
    await again.close()
