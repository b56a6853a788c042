"""The supervisor: owns the run actors, restarts crashed ones, parks runs that keep crashing.

Each run has a cell: a mailbox that outlives actor incarnations, so messages
queued when an actor crashes reach its successor, which rebuilds the run from
the log. Past `max_restarts` crashes within `restart_window` seconds the run is
parked (a `RunParked` event with the reason) and the rest of the runtime goes on.
If the store refuses that event too, the run is kept aside ("parking") and
parking is tried again by each sweep and before any message reaches the run,
until the store takes it: then the run's status is "parked" and its waiters
are told. Idle actors are evicted after `idle_timeout` seconds and rebuilt on
demand.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Callable
from typing import Any

import attrs

from perdure.actors import (
    ActorCrashedError,
    ActorHost,
    Mailbox,
    RunActor,
    RunParkedError,
    Stop,
    Wake,
    describe,
    fold,
    logger,
)
from perdure.eventlog import LeaseLostError, RunParked, TimerCancelled
from perdure.eventlog.tasks import cancel_and_wait


@attrs.define(eq=False)
class Cell:
    run_id: str
    mailbox: Mailbox = attrs.field(factory=Mailbox)
    actor: RunActor | None = None
    task: asyncio.Task[None] | None = None
    incarnations: int = 0
    crashes: collections.deque[float] = attrs.field(factory=collections.deque)
    #: On a store that leases runs: the log's count of the run's lease losses when the
    #: live actor started (a different count now: the actor is stale).
    losses: int | None = None


@attrs.frozen
class SupervisorStatistics:
    live_actors: int
    restarts: int
    parked: int
    evicted: int
    #: runs to park whose `RunParked` the store refused so far (parking is retried)
    parking: int = 0


class Supervisor:
    def __init__(
        self,
        host: ActorHost,
        *,
        max_restarts: int,
        restart_window: float,
        idle_timeout: float,
        on_restart: Any = None,
        on_unavailable: Any = None,
        on_claimed: Any = None,
    ) -> None:
        self._host = host
        #: called with the run id once this process holds the run's lease (PostgreSQL)
        self._on_claimed = on_claimed
        self._max_restarts = max_restarts
        self._window = restart_window
        self._idle_timeout = idle_timeout
        self._on_restart = on_restart
        #: called with (run_id, error) when a run can neither run nor be parked
        self._on_unavailable = on_unavailable
        self.cells: dict[str, Cell] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._closing = False
        self.restarts = 0
        self.parked = 0
        self.evicted = 0
        #: run id -> why it is to be parked, for runs whose `RunParked` could not be written
        self.unparked: dict[str, str] = {}
        self._parking: set[str] = set()
        #: Actors stopped because another process took their run's lease.
        self.leases_lost = 0
        #: Actors stopped because this process re-leased their run since they started.
        self.stale_replaced = 0
        #: How often the log lost a run's lease (stores that lease runs to processes).
        self._lease_losses: Callable[[str], int] | None = getattr(host.log, "lease_losses", None)

    def start(self) -> None:
        self._sweeper = asyncio.get_running_loop().create_task(
            self._sweep(), name="perdure-sweeper"
        )

    def statistics(self) -> SupervisorStatistics:
        return SupervisorStatistics(
            live_actors=sum(1 for c in self.cells.values() if c.task is not None),
            restarts=self.restarts,
            parked=self.parked,
            evicted=self.evicted,
            parking=len(self.unparked),
        )

    def post(self, run_id: str, message: object) -> None:
        """Deliver a message to a run's actor, starting (rehydrating) it if needed."""
        cell = self.cells.get(run_id)
        if cell is None:
            cell = self.cells[run_id] = Cell(run_id)
        elif cell.losses is not None:
            self._replace_if_stale(cell)
        cell.mailbox.put_nowait(message)
        if cell.task is None and not self._closing:
            if run_id in self.unparked:
                self._retry_parking(cell)  # park first; the messages then go to the parked run
            else:
                self._spawn(cell)

    def _replace_if_stale(self, cell: Cell) -> None:
        """Stop the run's actor if the run's lease was lost since it started.

        This process stalled past its lease, another process drove the run (and maybe
        left, its lease expiring), and a message now comes here again (this process
        took the run back claiming its due timers or a hand-over): the live actor's
        state misses what the other process wrote, so a timer that process set would be
        unknown to it and never fire. The actor stops; the next incarnation claims the
        run and rebuilds it from the log, and gets the message.
        """
        if self._lease_losses is None or cell.task is None:
            return
        if self._lease_losses(cell.run_id) != cell.losses:
            cell.losses = None
            self.stale_replaced += 1
            cell.mailbox.put_nowait(Stop(force=True))

    def live_actor(self, run_id: str) -> RunActor | None:
        cell = self.cells.get(run_id)
        return (
            cell.actor if cell is not None and cell.actor is not None and cell.actor.alive else None
        )

    def _spawn(self, cell: Cell) -> None:
        cell.incarnations += 1
        actor = RunActor(cell.run_id, self._host, cell.mailbox, cell.incarnations)
        cell.actor = actor
        cell.task = asyncio.get_running_loop().create_task(
            self._supervise(cell, actor), name=f"perdure-actor-{cell.run_id}"
        )

    async def _supervise(self, cell: Cell, actor: RunActor) -> None:
        log = self._host.log
        # A store shared by processes (PostgreSQL) leases each run to one process: take
        # the lease before the actor reads the log, give it back when the actor stops.
        claim = getattr(log, "claim_run", None)
        try:
            if claim is not None:
                await claim(cell.run_id)
                if self._lease_losses is not None:
                    cell.losses = self._lease_losses(cell.run_id)
                if self._on_claimed is not None:
                    self._on_claimed(cell.run_id)
            await actor.main()
        except asyncio.CancelledError:
            cell.task = None
            raise
        except LeaseLostError as exc:
            cell.task = None
            self._lease_lost(cell, exc)
            return
        except Exception as exc:
            cell.task = None
            try:
                if actor.start_lost() and self._on_unavailable is not None:
                    # Its start was soft and is gone with the failed commit: the rebuilt
                    # actor will not know this invocation, so its waiters learn it here.
                    self._on_unavailable(cell.run_id, exc)
                await self._crashed(cell, exc)
            except Exception as failure:
                self._abandon(cell, exc, failure)
            return
        cell.task = None
        cell.actor = None
        release = getattr(log, "release_run", None)
        if release is not None and not self._closing:
            released = await release(cell.run_id)
            if _has_successor(cell):  # a message came meanwhile and started one
                return
            if released is False:  # messages from other processes wait: take them here
                self.post(cell.run_id, Wake())
                return
        if self._closing:
            return
        if not cell.mailbox.empty():
            self._spawn(cell)
        elif self.cells.get(cell.run_id) is cell:
            del self.cells[cell.run_id]

    def _lease_lost(self, cell: Cell, error: LeaseLostError) -> None:
        """Another process drives the run now: stop here, and tell whoever waits on it here."""
        logger.warning("run lease lost: another process drives the run", run_id=cell.run_id)
        self.leases_lost += 1
        if self._on_unavailable is not None:
            self._on_unavailable(cell.run_id, error)
        while not cell.mailbox.empty():
            message = cell.mailbox.get_nowait()
            reply = getattr(message, "reply", None) or getattr(message, "future", None)
            if isinstance(reply, asyncio.Future) and not reply.done():
                reply.set_exception(error)
        cell.actor = None
        if self.cells.get(cell.run_id) is cell:
            del self.cells[cell.run_id]

    async def _crashed(self, cell: Cell, error: Exception) -> None:
        now = asyncio.get_running_loop().time()
        cell.crashes.append(now)
        while cell.crashes and now - cell.crashes[0] > self._window:
            cell.crashes.popleft()
        reason = f"{type(error).__name__}: {error}"
        logger.error(
            "run actor crashed", run_id=cell.run_id, error=reason, crashes=len(cell.crashes)
        )
        if self._closing:
            return
        if len(cell.crashes) <= self._max_restarts:
            self.restarts += 1
            if self._on_restart is not None:
                self._on_restart(cell.run_id)
            self._spawn(cell)
            return
        text = (
            f"the run's actor crashed {len(cell.crashes)} times within {self._window:g} s; "
            f"last error: {reason}"
        )
        await self._park(cell, text)

    def _abandon(self, cell: Cell, crash: Exception, failure: Exception) -> None:
        """Handling a crash failed too: fail everyone waiting on the run rather than strand them.

        The cell is dropped; the next message to the run starts a fresh actor,
        which rebuilds the run from its log.
        """
        error = ActorCrashedError(
            f"run {cell.run_id!r}: its actor crashed ({describe(crash)}) and could not be "
            f"restarted ({describe(failure)}); what the run committed stays - ask again to "
            "rebuild it from its log",
            run_id=cell.run_id,
        )
        error.__cause__ = failure
        logger.error(
            "run actor could not be restarted",
            run_id=cell.run_id,
            error=describe(crash),
            failure=describe(failure),
        )
        while not cell.mailbox.empty():
            message = cell.mailbox.get_nowait()
            reply = getattr(message, "reply", None) or getattr(message, "future", None)
            if isinstance(reply, asyncio.Future) and not reply.done():
                reply.set_exception(error)
        cell.actor = None
        if self.cells.get(cell.run_id) is cell:
            del self.cells[cell.run_id]
        if self._on_unavailable is not None:
            with contextlib.suppress(Exception):
                self._on_unavailable(cell.run_id, error)

    def _retry_parking(self, cell: Cell) -> None:
        if cell.run_id in self._parking:
            return
        self._parking.add(cell.run_id)
        cell.task = asyncio.get_running_loop().create_task(
            self._park(cell, self.unparked[cell.run_id]), name=f"perdure-park-{cell.run_id}"
        )

    async def _park(self, cell: Cell, text: str) -> None:
        """Record `RunParked`; if the store refuses it, keep the run aside and try again later."""
        try:
            await self._write_park(cell, text)
        finally:
            self._parking.discard(cell.run_id)
            if cell.task is asyncio.current_task():
                cell.task = None

    async def _write_park(self, cell: Cell, text: str) -> None:
        retry = cell.run_id in self.unparked
        parked = False
        unavailable: RunParkedError | None = None
        try:
            state = fold(cell.run_id, await self._host.log.read(cell.run_id))
            if state.started and state.terminal is None:
                events: list[Any] = []
                now = self._host.clock.now()
                for timer_id in state.timers:
                    events.append(
                        TimerCancelled(
                            run_id=cell.run_id,
                            seq=state.next_seq + len(events),
                            ts=now,
                            timer_id=timer_id,
                        )
                    )
                events.append(
                    RunParked(
                        run_id=cell.run_id, seq=state.next_seq + len(events), ts=now, reason=text
                    )
                )
                await self._host.log.append(cell.run_id, state.next_seq, events, status="parked")
                self.parked += 1
                parked = True
                logger.error("run parked", run_id=cell.run_id, reason=text)
            self.unparked.pop(cell.run_id, None)
        except Exception as exc:
            self.unparked[cell.run_id] = text
            unavailable = RunParkedError(
                f"run {cell.run_id!r} crashed repeatedly ({text}) and could not be "
                f"parked either ({type(exc).__name__}: {exc}); its log is as it was — "
                "parking is retried until the store takes it; then continue the run",
                run_id=cell.run_id,
                reason=text,
            )
            if not retry:
                logger.error(
                    "could not park run; parking is retried until the store takes it",
                    run_id=cell.run_id,
                    error=f"{type(exc).__name__}: {exc}",
                )
                if self._on_unavailable is not None:
                    self._on_unavailable(cell.run_id, unavailable)
        cell.crashes.clear()
        cell.actor = None
        if retry and cell.run_id not in self.unparked and not self._closing:
            # Parked (or found settled) at last: messages sent meanwhile go to a fresh
            # incarnation, which rebuilds the parked run and tells its waiters.
            if parked:
                logger.info("run parked after the store recovered", run_id=cell.run_id)
            cell.mailbox.put_nowait(Wake())
            self._spawn(cell)
            return
        error = unavailable or RunParkedError(
            f"run {cell.run_id!r} is parked: {text}", run_id=cell.run_id, reason=text
        )
        while not cell.mailbox.empty():
            message = cell.mailbox.get_nowait()
            reply = getattr(message, "reply", None) or getattr(message, "future", None)
            if isinstance(reply, asyncio.Future) and not reply.done():
                reply.set_exception(error)
        if self.cells.get(cell.run_id) is cell:
            del self.cells[cell.run_id]
        if parked and not self._closing:
            # The RunParked event bypassed the actors: a fresh incarnation rebuilds the
            # parked run and tells callers already waiting on it (else they wait forever).
            self.post(cell.run_id, Wake())

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        interval = max(min(self._idle_timeout / 2, 5.0), 0.01)
        while True:
            await asyncio.sleep(interval)
            now = loop.time()
            for run_id in list(self.unparked):
                if run_id not in self.cells and not self._closing:
                    cell = self.cells[run_id] = Cell(run_id)
                    self._retry_parking(cell)
            for cell in list(self.cells.values()):
                actor = cell.actor
                if (
                    actor is not None
                    and cell.task is not None
                    and actor.idle()
                    and now - actor.last_active >= self._idle_timeout
                ):
                    self.evicted += 1
                    cell.mailbox.put_nowait(Stop())

    async def stop_all(self, timeout: float = 30.0) -> None:
        """Graceful stop: actors commit what they have; running attempts are recorded suspended."""
        self._closing = True
        sweeper, self._sweeper = self._sweeper, None
        await cancel_and_wait(sweeper)
        tasks = []
        for cell in self.cells.values():
            if cell.task is not None:
                cell.mailbox.put_nowait(Stop(force=True))
                tasks.append(cell.task)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                task.cancel()
        self.cells.clear()


def _has_successor(cell: Cell) -> bool:
    """Whether a new incarnation was started for the cell (while its last one was stopping)."""
    return cell.task is not None
