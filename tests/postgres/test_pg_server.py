"""The PostgreSQL server the PostgreSQL tests run against (a throwaway cluster or
$PERDURE_TEST_POSTGRES) is a durable one: the store's figures mean something on it."""

from __future__ import annotations

import psycopg


def test_the_test_server_is_durable_and_recent(postgres_url: str) -> None:
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SHOW fsync").fetchone() == ("on",)
        assert conn.execute("SHOW synchronous_commit").fetchone() == ("on",)
        version = conn.execute("SHOW server_version_num").fetchone()
        assert version is not None and int(version[0]) >= 150000
