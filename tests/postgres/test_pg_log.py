"""`PostgresEventLog` specifics: opening, layout versions, bad input, two writers on one store."""

from __future__ import annotations

import psycopg
import pytest

from perdure.eventlog import (
    IdempotencyKeyTakenError,
    PostgresEventLog,
    ReadOnlyStoreError,
    SchemaVersionError,
    SequenceConflictError,
    StorageError,
    StoreClosedError,
    encode,
)
from perdure.testing.events import done, started, steps


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
    assert version == [(1,)]
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
    await two.append("r", 1, [done("r", 1)])
    with pytest.raises(SequenceConflictError):
        await one.append("r", 1, [done("r", 1)])
    assert [e.seq for e in await one.read("r")] == [0, 1]
    await one.close()
    await two.close()
