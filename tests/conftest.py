"""Shared fixtures: an in-memory runtime on virtual time, an isolated default store, log capture."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from perdure import MemoryEventLog, Runtime
from perdure.runtime import close_background_runtimes
from perdure.testing import MockClock
from perdure.testing.postgres import (
    PostgresUnavailableError,
    TemporaryPostgres,
    postgres_unavailable,
)
from tests.support.hangs import HangWatch


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server's URL for this test session: $PERDURE_TEST_POSTGRES, or a throwaway
    cluster started here (stopped at the end). Without one, PostgreSQL tests skip with the
    reason - except under CI=true, where they fail: CI must run them."""
    url = os.environ.get("PERDURE_TEST_POSTGRES")
    if url:
        yield url
        return
    why = postgres_unavailable()
    if why is None:
        try:
            server = TemporaryPostgres().start()
        except PostgresUnavailableError as exc:
            why = str(exc)
        else:
            try:
                yield server.url
            finally:
                server.stop()
            return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and no PostgreSQL for the PostgreSQL tests: {why}")
    pytest.skip(f"PostgreSQL tests need a server: {why} (or set PERDURE_TEST_POSTGRES)")


@pytest.fixture(autouse=True)
def _isolated_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own default store (PERDURE_PATH); background runtimes close after."""
    store = tmp_path / "store"
    monkeypatch.setenv("PERDURE_PATH", os.fspath(store))
    monkeypatch.delenv("PERDURE_STORE", raising=False)
    yield store
    close_background_runtimes()


@pytest.fixture(autouse=True)
def _hang_watch(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test still running 5 s before its timeout gets its pending asyncio tasks written."""
    marker = request.node.get_closest_marker("timeout")
    limit = (
        float(marker.args[0])
        if marker and marker.args
        else float(request.config.getini("timeout") or 0)
    )
    if limit <= 10:
        yield
        return
    with HangWatch(request.node.nodeid, limit - 5):
        yield


@pytest.fixture
def clock() -> MockClock:
    return MockClock()


@pytest.fixture
def memlog() -> MemoryEventLog:
    return MemoryEventLog()


@pytest.fixture
async def runtime(memlog: MemoryEventLog, clock: MockClock) -> AsyncIterator[Runtime]:
    """A runtime on an in-memory log with virtual time (autojump)."""
    async with Runtime(log=memlog, clock=clock, idle_timeout=3600) as rt:
        yield rt


#: Attributes every LogRecord has; the rest are a perdure record's fields.
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class LogCapture(logging.Handler):
    """Collects perdure's log records as a host's stdlib handler sees them, fields included."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.entries: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        fields = {k: v for k, v in vars(record).items() if k not in _RECORD_ATTRIBUTES}
        self.entries.append(
            {"event": record.getMessage(), "log_level": record.levelname.lower(), **fields}
        )

    def find(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.entries if e.get("event") == event]


@pytest.fixture
def logs() -> Iterator[LogCapture]:
    capture = LogCapture()
    root = logging.getLogger("perdure")
    old_level = root.level
    root.setLevel(logging.DEBUG)
    root.addHandler(capture)
    try:
        yield capture
    finally:
        root.removeHandler(capture)
        root.setLevel(old_level)
