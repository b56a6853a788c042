"""The PostgreSQL server the PostgreSQL tests run against (a throwaway cluster or
$PERDURE_TEST_POSTGRES) is a durable one: the store's figures mean something on it."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from perdure.testing.postgres import postgres_unavailable


def test_the_test_server_is_durable_and_recent(postgres_url: str) -> None:
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SHOW fsync").fetchone() == ("on",)
        assert conn.execute("SHOW synchronous_commit").fetchone() == ("on",)
        version = conn.execute("SHOW server_version_num").fetchone()
        assert version is not None and int(version[0]) >= 150000


_OWNER = """
import sys, time
from perdure.testing.postgres import TemporaryPostgres
pg = TemporaryPostgres().start()
print(pg.url, pg._dir, flush=True)
time.sleep(600)
"""


def test_a_cluster_whose_owner_is_killed_is_stopped_and_removed() -> None:
    """A SIGKILLed test session must not leave its throwaway server running."""
    why = postgres_unavailable()
    if why is not None:
        pytest.skip(why)
    argv = [sys.executable, "-c", _OWNER]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            url, folder = proc.stdout.readline().split()
            with psycopg.connect(url) as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
        finally:
            proc.kill()
    deadline = time.monotonic() + 60
    while Path(folder).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(folder).exists(), "the watchdog left the cluster's folder"
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=5).close()
