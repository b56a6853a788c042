"""PostgreSQL test helpers: a fresh schema (a fresh store) per test on the session's server."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import psycopg
import pytest


@pytest.fixture
def pg_schema(postgres_url: str) -> Iterator[str]:
    """A schema name no other test uses; dropped (with everything in it) after the test."""
    schema = f"t_{secrets.token_hex(6)}"
    yield schema
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture
def pg_store(postgres_url: str) -> Iterator[str]:
    """The URL of a fresh database (a store named by its URL alone); dropped after the test."""
    name = f"db_{secrets.token_hex(6)}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield postgres_url.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
