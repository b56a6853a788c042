"""`PostgresEventLog` passes the shipped `EventLog` contract suite unchanged."""

from __future__ import annotations

import pytest

from perdure.eventlog import EventLog, PostgresEventLog
from perdure.testing.contract import EventLogContract


class TestPostgresEventLog(EventLogContract):
    @pytest.fixture(autouse=True)
    def _store(self, postgres_url: str, pg_schema: str) -> None:
        self.url = postgres_url
        self.schema = pg_schema

    def open_log(self) -> EventLog:
        return PostgresEventLog(self.url, schema=self.schema)
