"""`LmdbEventLog` against a plain dict model, under random operation sequences with reopens.

tests/postgres/test_pg_model.py runs the same machine on `PostgresEventLog`.

The model is written from the protocol's rules, independently of `_index.py`,
so a shared mistake in the index logic shows up here too.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from perdure.eventlog import (
    Event,
    EventLog,
    IdempotencyKeyTakenError,
    IdempotencyRecord,
    LmdbEventLog,
    Resumed,
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunParked,
    RunStarted,
    SequenceConflictError,
    TimerCancelled,
    TimerEntry,
    TimerFired,
    TimerSet,
)
from perdure.testing.events import cancelled, done, fired, started, timer

T = TypeVar("T")

RUNS = st.sampled_from(["a", "b", "ab", "é"])
KEYS = st.sampled_from([None, "k1", "k2"])
TIMER_IDS = st.sampled_from(["t1", "t2"])
DUES = st.sampled_from([-1.0, 0.0, 2.5, 2.5, 7.0, 1e9])
STATUSES = st.sampled_from([None, None, "waiting", "running", "parked"])
DERIVED = {
    RunStarted: "running",
    Resumed: "running",
    RunCompleted: "completed",
    RunFailed: "failed",
    RunCancelled: "cancelled",
    RunParked: "parked",
}


class Model:
    """What the log must contain: streams, run rows, keys and timers, kept by hand."""

    def __init__(self) -> None:
        self.streams: dict[str, list[Event]] = {}
        self.status: dict[str, str] = {}
        self.created: dict[str, float] = {}
        self.target: dict[str, str] = {}
        self.run_key: dict[str, str | None] = {}
        self.keys: dict[str, tuple[str, str]] = {}
        self.timers: dict[tuple[str, str], float] = {}

    def next_seq(self, run_id: str) -> int:
        return len(self.streams.get(run_id, []))

    def apply(self, run_id: str, events: list[Event], status: str | None) -> None:
        derived = None
        for event in events:
            if isinstance(event, RunStarted):
                self.created.setdefault(run_id, event.ts)
                self.target[run_id] = event.target
                self.run_key[run_id] = event.idempotency_key
                if event.idempotency_key is not None:
                    self.keys[event.idempotency_key] = (run_id, event.input_digest)
            elif isinstance(event, TimerSet):
                self.timers[(run_id, event.timer_id)] = event.due_at
            elif isinstance(event, TimerFired | TimerCancelled):
                self.timers.pop((run_id, event.timer_id), None)
            derived = DERIVED.get(type(event), derived)
        new = status or derived
        if new is not None:
            self.status[run_id] = new
        self.streams.setdefault(run_id, []).extend(events)


class LogMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="perdure-model-"))
        self.loop = asyncio.new_event_loop()
        self.log = self.open_log()
        self.model = Model()
        self.tick = 0.0

    def open_log(self) -> EventLog:
        """A log on this machine's store (the same store every time)."""
        return LmdbEventLog(self.dir / "store")

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def ts(self) -> float:
        self.tick += 1.0
        return self.tick

    def teardown(self) -> None:
        self.run(self.log.close())
        self.loop.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def append(self, run_id: str, events: list[Event], status: str | None = None) -> None:
        """Append at the model's next seq; expect exactly the error the model predicts."""
        model = self.model
        first = events[0]
        holder = None
        if isinstance(first, RunStarted) and first.idempotency_key is not None:
            holder = model.keys.get(first.idempotency_key, (run_id, ""))[0]
        try:
            self.run(self.log.append(run_id, model.next_seq(run_id), events, status=status))  # type: ignore[arg-type]
        except IdempotencyKeyTakenError as exc:
            assert holder not in (None, run_id) and exc.existing_run_id == holder
            return
        except ValueError as exc:
            assert run_id not in model.streams and not isinstance(first, RunStarted), exc
            return
        assert holder in (None, run_id)
        assert run_id in model.streams or isinstance(first, RunStarted)
        model.apply(run_id, events, status)

    @rule(run_id=RUNS, key=KEYS, created=st.sampled_from([1.0, 2.0]), name=st.sampled_from("xy"))
    def start(self, run_id: str, key: str | None, created: float, name: str) -> None:
        seq = self.model.next_seq(run_id)
        event = started(run_id, seq, ts=created, key=key, target=name, digest=f"d-{run_id}")
        self.append(run_id, [event])

    def known(self, data: st.DataObject) -> str:
        return data.draw(st.sampled_from(sorted(self.model.streams)), label="run_id")

    @rule(run_id=RUNS, data=st.data())
    def append_to_unknown_run(self, run_id: str, data: st.DataObject) -> None:
        """Without a RunStarted first, an unknown run refuses (a known one accepts)."""
        seq = self.model.next_seq(run_id)
        self.append(run_id, [done(run_id, seq, ts=self.ts())])

    @precondition(lambda self: self.model.streams)
    @rule(data=st.data(), count=st.integers(1, 4), status=STATUSES)
    def steps(self, data: st.DataObject, count: int, status: str | None) -> None:
        run_id = self.known(data)
        seq = self.model.next_seq(run_id)
        self.append(run_id, [done(run_id, seq + n, ts=self.ts()) for n in range(count)], status)

    @precondition(lambda self: self.model.streams)
    @rule(data=st.data(), timer_id=TIMER_IDS, due=DUES, then_fire=st.booleans())
    def set_timer(self, data: st.DataObject, timer_id: str, due: float, then_fire: bool) -> None:
        run_id = self.known(data)
        seq = self.model.next_seq(run_id)
        events: list[Event] = [timer(run_id, seq, timer_id, due)]
        if then_fire:  # set and fire in one batch: nothing stays pending
            events.append(fired(run_id, seq + 1, timer_id))
        self.append(run_id, events)

    @precondition(lambda self: self.model.timers)
    @rule(data=st.data(), cancel=st.booleans(), reset=st.booleans())
    def end_timer(self, data: st.DataObject, cancel: bool, reset: bool) -> None:
        run_id, timer_id = data.draw(st.sampled_from(sorted(self.model.timers)), label="timer")
        seq = self.model.next_seq(run_id)
        end = cancelled if cancel else fired
        events: list[Event] = [end(run_id, seq, timer_id)]
        if reset:  # fire then set again in one batch: the new due time stays pending
            events.append(timer(run_id, seq + 1, timer_id, 3.0))
        self.append(run_id, events)

    @precondition(lambda self: self.model.streams)
    @rule(
        data=st.data(),
        timer_id=TIMER_IDS,
        kind=st.sampled_from([RunCompleted, RunFailed, RunCancelled, RunParked]),
    )
    def settle(self, data: st.DataObject, timer_id: str, kind: type[Event]) -> None:
        run_id = self.known(data)
        seq = self.model.next_seq(run_id)
        fields: dict[str, Any] = {
            RunCompleted: {"result": seq},
            RunFailed: {"error_type": "E", "message": "m"},
            RunCancelled: {},
            RunParked: {"reason": "r"},
        }[kind]
        events = [
            cancelled(run_id, seq, timer_id),
            kind(run_id=run_id, seq=seq + 1, ts=self.ts(), **fields),
        ]
        self.append(run_id, events)

    @precondition(lambda self: self.model.streams)
    @rule(data=st.data())
    def stale_append(self, data: st.DataObject) -> None:
        run_id = self.known(data)
        actual = self.model.next_seq(run_id)
        expected = data.draw(
            st.sampled_from([s for s in (actual - 1, actual + 1, 0) if s >= 0 and s != actual])
        )
        try:
            self.run(self.log.append(run_id, expected, [done(run_id, expected)]))
        except SequenceConflictError as exc:
            assert (exc.expected, exc.actual) == (expected, actual)
        else:
            raise AssertionError("a stale append was accepted")

    @rule(runs=st.lists(RUNS, min_size=2, max_size=6))
    def concurrent(self, runs: list[str]) -> None:
        """Several appends in flight at once; a second one on the same seq must conflict."""
        known = [r for r in runs if r in self.model.streams]

        async def together() -> list[BaseException | None]:
            calls = [
                self.log.append(r, self.model.next_seq(r), [done(r, self.model.next_seq(r))])
                for r in known
            ]
            return await asyncio.gather(*calls, return_exceptions=True)

        outcomes = self.run(together())
        seen: set[str] = set()
        for run_id, outcome in zip(known, outcomes, strict=True):
            if run_id in seen:
                assert isinstance(outcome, SequenceConflictError), outcome
                continue
            assert outcome is None, outcome  # the first submitted append of a run wins
            seen.add(run_id)
            self.model.apply(run_id, [done(run_id, self.model.next_seq(run_id))], None)

    @rule()
    def reopen(self) -> None:
        self.run(self.log.close())
        self.log = self.open_log()

    @invariant()
    def log_matches_model(self) -> None:
        model, log = self.model, self.log
        for run_id in ("a", "b", "ab", "é"):
            assert self.run(log.read(run_id)) == model.streams.get(run_id, [])
            info = self.run(log.get_run(run_id))
            if run_id not in model.streams:
                assert info is None
                continue
            assert info is not None
            stream = model.streams[run_id]
            assert (info.status, info.next_seq, info.created_at, info.updated_at) == (
                model.status[run_id],
                len(stream),
                model.created[run_id],
                stream[-1].ts,
            )
            assert (info.target, info.idempotency_key) == (
                model.target[run_id],
                model.run_key[run_id],
            )
        runs = self.run(log.list_runs())
        assert [r.run_id for r in runs] == sorted(
            model.streams, key=lambda r: (model.created[r], r)
        )
        for key in ("k1", "k2"):
            held = model.keys.get(key)
            expected = (
                None
                if held is None
                else IdempotencyRecord(key=key, run_id=held[0], input_digest=held[1])
            )
            assert self.run(log.lookup_idempotency(key)) == expected
        timers = sorted(
            TimerEntry(due_at=d, run_id=r, timer_id=t) for (r, t), d in model.timers.items()
        )
        assert self.run(log.due_timers(float("inf"), limit=100)) == timers
        assert self.run(log.next_timer()) == (timers[0] if timers else None)
        stats = self.run(log.statistics())
        assert stats.events == sum(len(s) for s in model.streams.values())
        assert stats.timers == len(timers)


LogMachine.TestCase.settings = settings(
    max_examples=50,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_lmdb_log_matches_the_model = LogMachine.TestCase
