"""The Hypothesis model of tests/eventlog/test_model.py, run on `PostgresEventLog`."""

from __future__ import annotations

import secrets
import sys
from pathlib import Path

import psycopg
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from perdure.eventlog import EventLog, PostgresEventLog

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "eventlog"))
from test_model import LogMachine


def test_postgres_log_matches_the_model(postgres_url: str) -> None:
    schemas: list[str] = []

    class PostgresMachine(LogMachine):
        def open_log(self) -> EventLog:
            if not hasattr(self, "schema"):
                self.schema = f"m_{secrets.token_hex(6)}"
                schemas.append(self.schema)
            return PostgresEventLog(postgres_url, schema=self.schema)

    try:
        run_state_machine_as_test(
            PostgresMachine,
            settings=settings(
                max_examples=25,
                stateful_step_count=25,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            for schema in schemas:
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
