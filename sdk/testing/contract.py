"""The `EventLog` contract as a reusable test suite: every log must pass it unchanged.

Subclass `EventLogContract` in a test module (its name starts with ``Test``),
implement `open_log` to open a log on the test's store (called again on the
same store by the reopen test), and pytest runs every contract test against
it::

    class TestMyLog(EventLogContract):
        @pytest.fixture(autouse=True)
        def _store(self, tmp_path: Path) -> None:
            self.path = tmp_path / "store"

        def open_log(self) -> EventLog:
            return LmdbEventLog(self.path)

Needs pytest and pytest-asyncio. Set ``durable = False`` for a log that does
not outlive its object (the reopen test is then skipped). Every log the suite
opens is closed after its test.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio

from perdure.eventlog import (
    Event,
    EventLog,
    IdempotencyKeyTakenError,
    IdempotencyRecord,
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunInfo,
    RunParked,
    SequenceConflictError,
    StoreClosedError,
    TaskAttemptStarted,
    TimerEntry,
)
from perdure.testing.events import (
    cancelled,
    done,
    fired,
    interrupted,
    resumed,
    started,
    steps,
    timer,
)

__all__ = ["EventLogContract"]


def info(
    run_id: str,
    next_seq: int,
    *,
    status: str = "running",
    created: float = 1.0,
    updated: float | None = None,
    target: str = "work",
    key: str | None = None,
) -> RunInfo:
    return RunInfo(
        run_id=run_id,
        target=target,
        kind="function",
        status=status,  # type: ignore[arg-type]
        created_at=created,
        updated_at=created if updated is None else updated,
        next_seq=next_seq,
        idempotency_key=key,
    )


@pytest.mark.asyncio
class EventLogContract:
    """The contract suite; subclass it and implement `open_log` (see the module's docs)."""

    #: False for a log that does not outlive its object (the reopen test is skipped).
    durable: bool = True

    def open_log(self) -> EventLog:
        """A new log object on this test's store (the same store on every call in a test)."""
        raise NotImplementedError(f"{type(self).__name__} must implement open_log()")

    def reopen(self) -> EventLog:
        """`open_log`, remembered so the log is closed after the test."""
        log = self.open_log()
        self._contract_opened.append(log)
        return log

    @pytest_asyncio.fixture(autouse=True)
    async def _contract_logs(self) -> AsyncIterator[None]:
        self._contract_opened: list[EventLog] = []
        yield
        for opened in self._contract_opened:
            await opened.close()

    @pytest.fixture
    def log(self) -> EventLog:
        return self.reopen()

    # -- append and read -----------------------------------------------------------------------

    async def test_append_then_read_returns_the_events_in_order(self, log: EventLog) -> None:
        first: list[Event] = [started("r", input={"doc": "a"}), *steps("r", 1, 2)]
        second = steps("r", 3, 3)
        await log.append("r", 0, first)
        await log.append("r", 3, second)
        assert await log.read("r") == first + second
        assert await log.read("r", 2) == (first + second)[2:]
        assert await log.read("r", 6) == []
        assert await log.read("r", 60) == []
        assert await log.read("unknown") == []
        assert await log.get_run("r") == info("r", 6, updated=2.0)
        assert await log.get_run("unknown") is None

    async def test_runs_are_independent_streams(self, log: EventLog) -> None:
        # "a" is a prefix of "ab": the streams must not bleed into each other.
        for run_id in ("ab", "a", "a-1"):
            await log.append(run_id, 0, [started(run_id), *steps(run_id, 1, 2)])
        for run_id in ("ab", "a", "a-1"):
            events = await log.read(run_id)
            assert [(e.run_id, e.seq) for e in events] == [(run_id, 0), (run_id, 1), (run_id, 2)]

    async def test_on_durable_runs_once_before_the_appender_resumes_and_never_on_failure(
        self,
        log: EventLog,
    ) -> None:
        """Every log takes `on_durable` (`EventLog.append`; the actors use it to wake
        waiting code sooner): once per batch, when the batch is durable, before the
        appender resumes; never for a batch that is refused."""
        seen: list[str] = []
        await log.append("r", 0, [started("r")], on_durable=lambda: seen.append("durable"))
        seen.append("resumed")
        assert seen == ["durable", "resumed"]
        batch = steps("r", 1, 2)
        await log.append("r", 1, batch, on_durable=lambda: seen.append("batch"))
        assert seen == ["durable", "resumed", "batch"]
        assert await log.read("r", 1) == batch  # what it announced is there
        with pytest.raises(SequenceConflictError):
            await log.append("r", 5, steps("r", 5, 1), on_durable=lambda: seen.append("wrong"))
        assert seen == ["durable", "resumed", "batch"]

    async def test_an_on_durable_that_raises_fails_the_append_but_the_batch_is_stored(
        self,
        log: EventLog,
    ) -> None:
        def broken() -> None:
            raise RuntimeError("bug in the caller's callback")

        with pytest.raises(RuntimeError, match="bug in the caller"):
            await log.append("r", 0, [started("r")], on_durable=broken)
        assert [e.seq for e in await log.read("r")] == [0]
        await log.append("r", 1, steps("r", 1, 1))

    async def test_a_stale_expected_seq_raises_and_writes_nothing(self, log: EventLog) -> None:
        await log.append("r", 0, [started("r"), done("r", 1)])
        before = await log.statistics()
        for expected in (0, 1, 5):
            with pytest.raises(SequenceConflictError) as caught:
                await log.append("r", expected, steps("r", expected, 1))
            assert (caught.value.run_id, caught.value.expected, caught.value.actual) == (
                "r",
                expected,
                2,
            )
        assert await log.read("r") == [started("r"), done("r", 1)]
        assert (await log.get_run("r")) == info("r", 2, updated=2.0)
        after = await log.statistics()  # nothing written is nothing committed
        assert (
            (after.appends, after.batches, after.events)
            == (2, 1, 2)
            == (
                before.appends,
                before.batches,
                before.events,
            )
        )
        with pytest.raises(SequenceConflictError):  # unknown run: its next seq is 0
            await log.append("new", 3, [started("new", 3)])
        assert await log.get_run("new") is None

    @pytest.mark.parametrize(
        ("run_id", "expected_seq", "events", "status", "match"),
        [
            ("r", 0, [started("other")], None, "belongs to run 'other'"),
            ("r", 0, [started("r"), done("r", 2)], None, "has seq 2, expected 1"),
            ("r", 1, [done("r", 0)], None, "has seq 0, expected 1"),
            ("r", 0, [], None, "empty"),
            ("r", -1, [done("r", -1)], None, "expected_seq"),
            ("", 0, [started("")], None, "non-empty"),
            ("r\x00x", 0, [started("r\x00x")], None, "NUL"),
            ("r", 0, [started("r")], "sleeping", "unknown status"),
            ("r", 0, [started("r", ts=float("nan"))], None, "non-finite"),
            ("r", 0, [started("r"), timer("r", 1, "t", float("inf"))], None, "non-finite"),
        ],
        ids=[
            "wrong-run",
            "gap",
            "wrong-start",
            "empty",
            "negative",
            "empty-id",
            "nul",
            "status",
            "nan-ts",
            "inf-due",
        ],
    )
    async def test_a_malformed_batch_raises_value_error_and_writes_nothing(  # noqa: PLR0917
        self,
        log: EventLog,
        run_id: str,
        expected_seq: int,
        events: list[Event],
        status: str | None,
        match: str,
    ) -> None:
        with pytest.raises(ValueError, match=match):
            await log.append(run_id, expected_seq, events, status=status)  # type: ignore[arg-type]
        assert await log.list_runs() == []
        assert (await log.statistics()).events == 0

    async def test_the_first_event_of_a_new_run_must_be_run_started(self, log: EventLog) -> None:
        attempt = TaskAttemptStarted(
            run_id="r", seq=0, ts=1.0, position="0", name="s", input_digest="d", attempt=0
        )
        with pytest.raises(ValueError, match="first event must be RunStarted"):
            await log.append("r", 0, [attempt])
        with pytest.raises(ValueError, match="first event must be RunStarted"):
            await log.append("r", 0, [done("r", 0), started("r", 1)])
        assert await log.get_run("r") is None
        assert await log.read("r") == []
        assert (await log.statistics()).events == 0

    async def test_a_value_that_cannot_be_encoded_fails_its_append_only(
        self, log: EventLog
    ) -> None:
        await log.append("r", 0, [started("r")])
        with pytest.raises(TypeError):
            await log.append("r", 1, [done("r", 1, result=object())])
        with pytest.raises(SequenceConflictError):  # a stale seq is reported first, as everywhere
            await log.append("r", 5, [done("r", 5, result=object())])
        assert [e.seq for e in await log.read("r")] == [0]
        await log.append("r", 1, [done("r", 1, result=[1, 2])])
        assert (await log.read("r", 1))[0].result == [1, 2]  # type: ignore[attr-defined]

    # -- concurrency ---------------------------------------------------------------------------

    async def test_200_concurrent_appenders_on_200_runs(self, log: EventLog) -> None:
        async def work(n: int) -> None:
            run_id = f"run-{n:03}"
            await log.append(run_id, 0, [started(run_id, ts=float(n))])
            for seq in range(1, 7, 2):
                await log.append(run_id, seq, steps(run_id, seq, 2))

        await asyncio.gather(*(work(n) for n in range(200)))
        for n in range(200):
            events = await log.read(f"run-{n:03}")
            assert [e.seq for e in events] == list(range(7))
            assert events[1:] == steps(f"run-{n:03}", 1, 6)
        runs = await log.list_runs()
        assert [r.run_id for r in runs] == [f"run-{n:03}" for n in range(200)]
        stats = await log.statistics()
        assert (stats.events, stats.appends, stats.runs_by_status) == (1400, 1400, {"running": 200})

    async def test_200_appenders_on_one_run_each_land_exactly_once_by_retrying(
        self, log: EventLog
    ) -> None:
        await log.append("hot", 0, [started("hot")])
        conflicts = 0

        async def work(n: int) -> None:
            nonlocal conflicts
            while True:
                run = await log.get_run("hot")
                assert run is not None
                await asyncio.sleep(0)  # let others read the same next_seq
                try:
                    await log.append("hot", run.next_seq, [done("hot", run.next_seq, result=n)])
                except SequenceConflictError:
                    conflicts += 1
                    continue
                return

        await asyncio.gather(*(work(n) for n in range(200)))
        events = await log.read("hot")
        assert [e.seq for e in events] == list(range(201))
        assert sorted(e.result for e in events[1:]) == list(range(200))  # type: ignore[attr-defined]
        assert conflicts > 0  # the race really happened

    async def test_an_idempotency_key_race_has_exactly_one_winner(self, log: EventLog) -> None:
        contenders = [f"c{n}" for n in range(20)]
        outcomes = await asyncio.gather(
            *(log.append(r, 0, [started(r, key="k", digest=f"in-{r}")]) for r in contenders),
            return_exceptions=True,
        )
        winners = [r for r, out in zip(contenders, outcomes, strict=True) if out is None]
        assert len(winners) == 1
        winner = winners[0]
        for run_id, outcome in zip(contenders, outcomes, strict=True):
            if run_id == winner:
                continue
            assert isinstance(outcome, IdempotencyKeyTakenError)
            assert (outcome.key, outcome.existing_run_id) == ("k", winner)
            assert outcome.existing_digest == f"in-{winner}"
            assert await log.get_run(run_id) is None
            assert await log.read(run_id) == []
        assert await log.lookup_idempotency("k") == IdempotencyRecord(
            key="k", run_id=winner, input_digest=f"in-{winner}"
        )
        assert [r.run_id for r in await log.list_runs()] == [winner]
        assert (await log.statistics()).idempotency_keys == 1

    async def test_a_run_may_reclaim_its_own_key_in_a_new_invocation(self, log: EventLog) -> None:
        await log.append(
            "r", 0, [started("r", key="k"), RunCompleted(run_id="r", seq=1, ts=2.0, result=1)]
        )
        await log.append("r", 2, [started("r", 2, ts=5.0, key="k", target="again")])
        assert await log.get_run("r") == info(
            "r", 3, created=1.0, updated=5.0, target="again", key="k"
        )
        assert await log.lookup_idempotency("missing") is None

    # -- runs index ----------------------------------------------------------------------------

    @pytest.mark.parametrize(
        ("make", "status"),
        [
            (lambda seq: RunCompleted(run_id="r", seq=seq, ts=3.0, result=1), "completed"),
            (
                lambda seq: RunFailed(run_id="r", seq=seq, ts=3.0, error_type="E", message="m"),
                "failed",
            ),
            (lambda seq: RunCancelled(run_id="r", seq=seq, ts=3.0), "cancelled"),
            (lambda seq: RunParked(run_id="r", seq=seq, ts=3.0, reason="crashed"), "parked"),
        ],
        ids=["completed", "failed", "cancelled", "parked"],
    )
    async def test_terminal_events_set_the_run_status(
        self, log: EventLog, make: Callable[[int], Event], status: str
    ) -> None:
        await log.append("r", 0, [started("r"), done("r", 1)])
        await log.append("r", 2, [make(2)])
        assert await log.get_run("r") == info("r", 3, status=status, updated=3.0)
        assert [r.run_id for r in await log.list_runs(status=status)] == ["r"]  # type: ignore[arg-type]
        assert await log.list_runs(status="running") == []
        assert (await log.statistics()).runs_by_status == {status: 1}

    async def test_explicit_status_and_derived_status(self, log: EventLog) -> None:
        await log.append("r", 0, [started("r")])
        await log.append("r", 1, [interrupted("r", 1)], status="waiting")
        assert (await log.get_run("r")).status == "waiting"  # type: ignore[union-attr]
        await log.append("r", 2, [done("r", 2)])  # no status change
        assert (await log.get_run("r")).status == "waiting"  # type: ignore[union-attr]
        await log.append("r", 3, [resumed("r", 3)])  # derived: running again
        assert (await log.get_run("r")).status == "running"  # type: ignore[union-attr]
        completed = RunCompleted(run_id="r", seq=4, ts=4.0, result=None)
        await log.append("r", 4, [completed], status="parked")  # explicit beats derived
        assert await log.get_run("r") == info("r", 5, status="parked", updated=4.0)
        assert [r.run_id for r in await log.list_runs(status="parked")] == ["r"]
        for other in ("running", "waiting", "completed"):
            assert await log.list_runs(status=other) == []

    async def test_a_new_invocation_reopens_a_settled_run(self, log: EventLog) -> None:
        await log.append(
            "r", 0, [started("r", key="k1"), RunCompleted(run_id="r", seq=1, ts=2, result=1)]
        )
        await log.append("r", 2, [started("r", 2, ts=9.0, target="next", key=None)])
        assert await log.get_run("r") == info("r", 3, created=1.0, updated=9.0, target="next")
        assert [r.run_id for r in await log.list_runs(status="running")] == ["r"]
        assert await log.list_runs(status="completed") == []
        assert (await log.lookup_idempotency("k1")).run_id == "r"  # type: ignore[union-attr]

    async def test_list_runs_orders_oldest_first_and_filters(self, log: EventLog) -> None:
        # (run id, created, target, final status); "b"/"a" tie on created and order by id.
        runs = [
            ("c", 3.0, "x", "running"),
            ("b", 1.0, "y", "completed"),
            ("a", 1.0, "x", "completed"),
            ("d", 2.0, "x", "waiting"),
            ("e", 0.5, "y", "running"),
        ]
        for run_id, created, target, status in runs:
            await log.append(run_id, 0, [started(run_id, ts=created, target=target)])
            if status != "running":
                await log.append(run_id, 1, [done(run_id, 1)], status=status)  # type: ignore[arg-type]

        async def ids(**filters: object) -> list[str]:
            return [r.run_id for r in await log.list_runs(**filters)]  # type: ignore[arg-type]

        assert await ids() == ["e", "a", "b", "d", "c"]
        assert await ids(limit=2) == ["e", "a"]
        assert await ids(limit=0) == []
        assert await ids(limit=50) == ["e", "a", "b", "d", "c"]
        assert await ids(status="completed") == ["a", "b"]
        assert await ids(status="running") == ["e", "c"]
        assert await ids(status="failed") == []
        assert await ids(target="x") == ["a", "d", "c"]
        assert await ids(target="x", limit=2) == ["a", "d"]
        assert await ids(target="y", status="completed") == ["b"]
        assert await ids(target="nobody") == []
        with pytest.raises(ValueError):
            await log.list_runs(limit=-1)

    # -- timers --------------------------------------------------------------------------------

    async def test_timers_set_fire_cancel_and_come_due_in_order(self, log: EventLog) -> None:
        await log.append(
            "a", 0, [started("a"), timer("a", 1, "late", 5.0), timer("a", 2, "soon", 3.0)]
        )
        await log.append("b", 0, [started("b"), timer("b", 1, "t", 4.0)])
        await log.append("c", 0, [started("c"), timer("c", 1, "t", 4.0)])  # ties order by run id
        entry = TimerEntry
        assert await log.next_timer() == entry(due_at=3.0, run_id="a", timer_id="soon")
        assert await log.due_timers(2.9) == []
        assert await log.due_timers(4.0) == [
            entry(due_at=3.0, run_id="a", timer_id="soon"),
            entry(due_at=4.0, run_id="b", timer_id="t"),
            entry(due_at=4.0, run_id="c", timer_id="t"),
        ]
        assert await log.due_timers(100.0, limit=2) == [
            entry(due_at=3.0, run_id="a", timer_id="soon"),
            entry(due_at=4.0, run_id="b", timer_id="t"),
        ]
        assert await log.due_timers(100.0, limit=0) == []
        assert (await log.statistics()).timers == 4

        await log.append("a", 3, [fired("a", 3, "soon")])
        await log.append("b", 2, [cancelled("b", 2, "t")])
        await log.append("c", 2, [fired("c", 2, "never-set")])  # harmless
        assert await log.due_timers(100.0) == [
            entry(due_at=4.0, run_id="c", timer_id="t"),
            entry(due_at=5.0, run_id="a", timer_id="late"),
        ]
        await log.append("a", 4, [fired("a", 4, "late")])
        await log.append("c", 3, [cancelled("c", 3, "t")])
        assert await log.due_timers(100.0) == []
        assert await log.next_timer() is None
        assert (await log.statistics()).timers == 0

    async def test_setting_a_timer_again_replaces_it(self, log: EventLog) -> None:
        await log.append("r", 0, [started("r"), timer("r", 1, "t", 5.0)])
        await log.append("r", 2, [timer("r", 2, "t", 7.0)])
        assert await log.due_timers(100.0) == [TimerEntry(due_at=7.0, run_id="r", timer_id="t")]
        await log.append("r", 3, [fired("r", 3, "t")])
        assert await log.due_timers(100.0) == []
        # Within one batch, the last word wins: set+fire leaves nothing, fire+set leaves the set.
        await log.append("r", 4, [timer("r", 4, "u", 1.0), fired("r", 5, "u")])
        assert await log.next_timer() is None
        await log.append("r", 6, [timer("r", 6, "v", 1.0)])
        await log.append("r", 7, [fired("r", 7, "v"), timer("r", 8, "v", 2.0)])
        assert await log.due_timers(100.0) == [TimerEntry(due_at=2.0, run_id="r", timer_id="v")]
        assert (await log.statistics()).timers == 1

    async def test_timers_before_the_epoch_and_far_ahead_order_numerically(
        self, log: EventLog
    ) -> None:
        dues = [1e12, -5.0, 0.0, 2.5, -1e-9, 1.0]
        await log.append(
            "r", 0, [started("r")] + [timer("r", n + 1, f"t{n}", d) for n, d in enumerate(dues)]
        )
        assert [t.due_at for t in await log.due_timers(float("inf"))] == sorted(dues)
        assert [t.due_at for t in await log.due_timers(0.0)] == [-5.0, -1e-9, 0.0]

    # -- statistics, reopen, close -------------------------------------------------------------

    async def test_statistics_count_what_is_stored_and_what_was_appended(
        self, log: EventLog
    ) -> None:
        empty = await log.statistics()
        assert (empty.events, empty.timers, empty.idempotency_keys, empty.runs_by_status) == (
            0,
            0,
            0,
            {},
        )
        assert (empty.appends, empty.batches, empty.last_batch_size) == (0, 0, 0)
        await log.append("a", 0, [started("a", key="ka"), timer("a", 1, "t", 9.0)])
        await log.append("b", 0, [started("b")])
        await log.append(
            "b", 1, [*steps("b", 1, 2), RunCompleted(run_id="b", seq=3, ts=3, result=0)]
        )
        stats = await log.statistics()
        assert stats.runs_by_status == {"running": 1, "completed": 1}
        assert (stats.events, stats.timers, stats.idempotency_keys) == (6, 1, 1)
        assert (stats.appends, stats.batches, stats.last_batch_size) == (6, 3, 3)
        assert stats.size_bytes > 0

    async def test_reopening_a_store_finds_everything(self) -> None:
        if not self.durable:
            pytest.skip("this log does not outlive its object")
        log = self.reopen()
        await log.append(
            "r", 0, [started("r", key="k"), timer("r", 1, "t", 5.0), *steps("r", 2, 3)]
        )
        await log.append("s", 0, [started("s", ts=2.0)], status="waiting")
        before = (await log.read("r"), await log.list_runs(), await log.due_timers(10.0))
        await log.close()
        again = self.reopen()
        assert (
            await again.read("r"),
            await again.list_runs(),
            await again.due_timers(10.0),
        ) == before
        assert (await again.lookup_idempotency("k")).run_id == "r"  # type: ignore[union-attr]
        await again.append("r", 5, steps("r", 5, 1))
        assert [e.seq for e in await again.read("r")] == list(range(6))

    async def test_every_operation_after_close_raises_store_closed(self, log: EventLog) -> None:
        await log.append("r", 0, [started("r")])
        await log.close()
        await log.close()  # idempotent
        calls = [
            log.append("r", 1, steps("r", 1, 1)),
            log.read("r"),
            log.get_run("r"),
            log.list_runs(),
            log.lookup_idempotency("k"),
            log.due_timers(1.0),
            log.next_timer(),
            log.statistics(),
        ]
        for call in calls:
            with pytest.raises(StoreClosedError):
                await call
