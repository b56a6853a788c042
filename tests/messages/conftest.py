"""Stores for the messages tests: memory, LMDB and PostgreSQL (a module may narrow it)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from perdure.eventlog import MemoryEventLog


@pytest.fixture(params=["memory", "lmdb", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Runtime keyword arguments for a store that outlives one runtime."""
    if request.param == "memory":
        yield {"log": MemoryEventLog()}
    elif request.param == "lmdb":
        yield {"path": str(tmp_path / "store")}
    else:
        import psycopg

        server: str = request.getfixturevalue("postgres_url")
        name = f"db_{secrets.token_hex(6)}"
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        yield {"path": server.rsplit("/", 1)[0] + "/" + name}
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
