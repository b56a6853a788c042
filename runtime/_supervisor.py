"""The supervisor: owns the run actors, restarts crashed ones, parks runs that keep crashing.

Each run has a cell: a mailbox that outlives actor incarnations, so messages
queued when an actor crashes reach its successor, which rebuilds the run from
the log. Past `max_restarts` crashes within `restart_window` seconds the run is
parked (a `RunParked` event with the reason) and the rest of the runtime goes on.
Idle actors are evicted after `idle_timeout` seconds and rebuilt on demand.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from typing import Any

import attrs

from perdure.actors import ActorHost, Mailbox, RunActor, RunParkedError, Stop, Wake, fold
from perdure.actors._observe import logger
from perdure.eventlog import LeaseLostError, RunParked, TimerCancelled


@attrs.define(eq=False)
class Cell:
    run_id: str
    mailbox: Mailbox = attrs.field(factory=Mailbox)
    actor: RunActor | None = None
    task: asyncio.Task[None] | None = None
    incarnations: int = 0
    crashes: collections.deque[float] = attrs.field(factory=collections.deque)


@attrs.frozen
class SupervisorStatistics:
    live_actors: int
    restarts: int
    parked: int
    evicted: int


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
    ) -> None:
        self._host = host
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
        #: Actors stopped because another process took their run's lease.
        self.leases_lost = 0

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
        )

    def post(self, run_id: str, message: object) -> None:
        """Deliver a message to a run's actor, starting (rehydrating) it if needed."""
        cell = self.cells.get(run_id)
        if cell is None:
            cell = self.cells[run_id] = Cell(run_id)
        cell.mailbox.put_nowait(message)
        if cell.task is None and not self._closing:
            self._spawn(cell)

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
            if actor.start_lost() and self._on_unavailable is not None:
                # Its start was soft and is gone with the failed commit: the rebuilt
                # actor will not know this invocation, so its waiters learn it here.
                self._on_unavailable(cell.run_id, exc)
            await self._crashed(cell, exc)
            return
        cell.task = None
        cell.actor = None
        release = getattr(log, "release_run", None)
        if release is not None and not self._closing:
            await release(cell.run_id)
            if _has_successor(cell):  # a message came meanwhile and started one
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
        await self._park(cell, reason)

    async def _park(self, cell: Cell, reason: str) -> None:
        text = (
            f"the run's actor crashed {len(cell.crashes)} times within {self._window:g} s; "
            f"last error: {reason}"
        )
        parked = False
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
        except Exception as exc:
            logger.error(
                "could not park run", run_id=cell.run_id, error=f"{type(exc).__name__}: {exc}"
            )
            if self._on_unavailable is not None:
                self._on_unavailable(
                    cell.run_id,
                    RunParkedError(
                        f"run {cell.run_id!r} crashed repeatedly ({text}) and could not be "
                        f"parked either ({type(exc).__name__}: {exc}); its log is as it was — "
                        "fix the store, then continue the run",
                        run_id=cell.run_id,
                        reason=text,
                    ),
                )
        error = RunParkedError(
            f"run {cell.run_id!r} is parked: {text}", run_id=cell.run_id, reason=text
        )
        while not cell.mailbox.empty():
            message = cell.mailbox.get_nowait()
            reply = getattr(message, "reply", None) or getattr(message, "future", None)
            if isinstance(reply, asyncio.Future) and not reply.done():
                reply.set_exception(error)
        cell.crashes.clear()
        cell.actor = None
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
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
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
