"""The `Replayer`: re-execute a run's workflow code against its recorded events, side-effect free.

Tasks return their recorded results and are never called, interrupts return
their recorded answers, durable sleeps that fired return at once. The body
runs in a `Scope` whose "actor" is a stand-in answering only from the folded
state; when the code asks for a step the log does not settle, the stand-in
stops the body there (that is where the recorded run stops, or a divergence if
the recorded run had finished). The first `NonDeterminismError` from the
matcher is the first divergence. Only the latest invocation of a thread is
replayed. What the replay showed is judged in `_replay_report.py`.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

import attrs

from perdure.actors import (
    BodyInfo,
    ExecuteTask,
    InterruptRequest,
    PublishEvent,
    ReceiveRequest,
    RunState,
    Scope,
    SleepRequest,
    Suspend,
    TargetSpec,
    body_config,
    current_scope,
    fold,
)
from perdure.eventlog import Event, EventLog, RunStarted, TaskAttemptStarted, fresh
from perdure.runtime._errors import RunNotFoundError, RunTimeoutError, UnknownTargetError
from perdure.runtime._registry import Registry, default_registry
from perdure.runtime._replay_report import (
    ReplayResult,
    ReplaySummary,
    error_text,
    judge,
    user_location,
)

#: A body waiting on unfired sleeps that asks for nothing in this many polls is blocked.
_BLOCKED_POLL = 0.01
_BLOCKED_POLLS = 3
_FUNCTION_NOTE = "a function run has no workflow code to replay: its body is one recorded task"
_DECORATOR = {"workflow": "@entrypoint", "function": "@function"}


class _ReplayActor:
    """What scope code reads from an actor, answered from a folded state; it never runs anything."""

    def __init__(self, state: RunState, loop: asyncio.AbstractEventLoop) -> None:
        self.state = state
        self.run_id = state.run_id
        self.loop = loop
        self.thread_id = threading.get_ident()
        self.incarnation = 0
        self.alive = True
        self.durable_seq = sys.maxsize  # every recorded outcome counts as durable
        self.waits_in_threads = False  # a sync body stops at a receive the log does not settle
        self.body_generation = 0
        #: Steps the code asked for that the log does not settle: (position, description).
        self.asked: list[tuple[str, str]] = []
        #: Child tasks of the body waiting on sleeps the log does not settle (never done).
        self.waiting: list[asyncio.Future[None]] = []

    def step_waiter(self, position: str) -> asyncio.Future[None]:
        """A child task of the body waits on a sleep that never fired in the log: it stays
        pending (another side of its race may win); if nothing else can, the replay ends."""
        if all(asked != position for asked, _ in self.asked):
            step = self.state.steps.get(position)
            self.asked.append((position, step.describe() if step else "a durable sleep"))
        return self.stall()

    def receive_waiter(self, position: str) -> asyncio.Future[Any]:
        """A child task of the body waits on a receive the log does not settle: it stays
        pending (another side of its race may win); if nothing else can, the replay ends."""
        if all(asked != position for asked, _ in self.asked):
            step = self.state.steps.get(position)
            self.asked.append((position, step.describe() if step else "a receive()"))
        return self.stall()

    def park_receive(self, position: str) -> asyncio.Future[Any] | None:
        """The body's own `receive()` the log does not settle: the replay ends there."""
        return None

    #: It runs nothing, so no task runs in the body's thread either.
    inline_tasks = False

    def run_inline(self, call: Any) -> None:
        self.post(call)

    def interrupt_waiter(self, position: str, *, park: bool) -> asyncio.Future[Any] | None:
        """An `ainterrupt()` the log does not settle: in a task the body started it stays
        pending (another side of its race may win); the body's own one ends the replay."""
        if park:
            return None
        if all(asked != position for asked, _ in self.asked):
            step = self.state.steps.get(position)
            self.asked.append((position, step.describe() if step else "an interrupt()"))
        return self.stall()

    def stall(self) -> asyncio.Future[None]:
        """A future that never completes, for a child task waiting on what the log lacks."""
        fut: asyncio.Future[None] = self.loop.create_future()
        self.waiting.append(fut)
        return fut

    def post(self, message: object) -> None:
        """Scope code asks for a step the log does not settle: note it and stop the body there."""
        if isinstance(message, ExecuteTask):
            self.asked.append(
                (message.position, f"task {message.spec.name!r} with input digest {message.digest}")
            )
            if not message.future.done():
                message.future.set_exception(Suspend("replay end", self.stall))
                message.future.exception()  # retrieved: no "never retrieved" warning
        elif isinstance(message, InterruptRequest):
            if any(asked == message.position for asked, _ in self.asked):
                return  # a child task's `ainterrupt()`: noted by `interrupt_waiter`
            self.asked.append((message.position, f"interrupt() with value {message.value!r}"))
        elif isinstance(message, SleepRequest):
            self.asked.append((message.position, f"a durable sleep of {message.seconds:g} s"))
        elif isinstance(message, ReceiveRequest):
            if any(asked == message.position for asked, _ in self.asked):
                return  # a child task's `areceive()`: noted by `receive_waiter`
            self.asked.append((message.position, f"receive() on topic {message.topic!r}"))
        elif isinstance(message, PublishEvent):
            self.asked.append((message.position, f"set_event({message.key!r})"))


class Replayer:
    """Replays runs of known workflows against their logs to check that the code still fits them.

    ``Replayer(workflows=[...], functions=[...])`` knows the given targets;
    ``Replayer(registry=reg)`` or `Replayer.from_registry` knows a registry's;
    ``Replayer()`` with neither uses the default registry (everything
    decorated in this process). `timeout` bounds one body's replay in seconds
    (a body waiting on something outside perdure would otherwise hang).
    """

    def __init__(
        self,
        workflows: Iterable[Any] = (),
        functions: Iterable[Any] = (),
        registry: Registry | None = None,
        *,
        timeout: float = 30.0,
    ) -> None:
        self._targets: dict[str, TargetSpec] = {}
        for kind, items in (("workflow", workflows), ("function", functions)):
            for item in items:
                spec = (
                    item
                    if isinstance(item, TargetSpec)
                    else getattr(item, "__perdure_target__", None)
                )
                if not isinstance(spec, TargetSpec) or spec.kind != kind:
                    raise TypeError(
                        f"{kind}s=[...] takes objects decorated with {_DECORATOR[kind]}, "
                        f"got {item!r}"
                    )
                self._targets[spec.name] = spec
        if registry is None and not self._targets:
            registry = default_registry
        self._registry = registry
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"Replayer(targets={self.names()!r})"

    @classmethod
    def from_registry(cls, registry: Registry, *, timeout: float = 30.0) -> Replayer:
        """A replayer that knows every target of `registry` (e.g. ``runtime.registry``)."""
        return cls(registry=registry, timeout=timeout)

    def resolve(self, name: str) -> TargetSpec | None:
        """The target this replayer runs for `name`, if it knows one."""
        spec = self._targets.get(name)
        if spec is None and self._registry is not None:
            spec = self._registry.get(name)
        return spec

    def names(self) -> list[str]:
        """Names of the targets this replayer knows."""
        names = set(self._targets)
        if self._registry is not None:
            names.update(self._registry.names())
        return sorted(names)

    # -- one run -----------------------------------------------------------------------

    def replay(
        self,
        events_or_run_id: str | Iterable[Event],
        *,
        log: EventLog | None = None,
        raise_on_failure: bool = False,
    ) -> ReplayResult:
        """Replay one run, given its id and `log` or its events; see `areplay`. Sync code only."""
        _no_loop("replay")
        return asyncio.run(
            self.areplay(events_or_run_id, log=log, raise_on_failure=raise_on_failure)
        )

    async def areplay(
        self,
        events_or_run_id: str | Iterable[Event],
        *,
        log: EventLog | None = None,
        raise_on_failure: bool = False,
    ) -> ReplayResult:
        """Replay the latest invocation of one run and report whether the code still fits its log.

        Raises `RunNotFoundError` for an unknown run id, `UnknownTargetError`
        if the run's workflow is not known to this replayer, and, with
        `raise_on_failure`, the divergence (`NonDeterminismError`), or
        `RunTimeoutError` when the body neither finished nor reached the end of
        the log within `timeout`.
        """
        events = await _events(events_or_run_id, log)
        result = await self._replay_events(events)
        if raise_on_failure and not result.ok:
            if result.divergence is not None:
                raise result.divergence
            raise RunTimeoutError(
                f"replay of run {result.run_id!r}: " + "; ".join(result.notes),
                run_id=result.run_id,
                timeout=self.timeout,
            )
        return result

    async def _replay_events(self, events: Sequence[Event]) -> ReplayResult:
        run_id = events[0].run_id
        starts = [i for i, event in enumerate(events) if isinstance(event, RunStarted)]
        if not starts:
            raise ValueError(f"the events of run {run_id!r} hold no RunStarted event")
        state = fold(run_id, events)
        if state.kind == "function":
            return _unreplayed(state, ok=True, replayed="not re-executed", note=_FUNCTION_NOTE)
        spec = self.resolve(state.target)
        if spec is None or spec.run is None:
            known = ", ".join(self.names()) or "none"
            raise UnknownTargetError(
                f"run {run_id!r} is a run of workflow {state.target!r}, which this replayer does "
                f"not know; pass it in workflows=[...] (known: {known})",
                name=state.target,
                suggestions=(),
            )
        loop = asyncio.get_running_loop()
        actor = _ReplayActor(state, loop)
        info = BodyInfo(
            run_id=run_id,
            input=fresh(state.input),
            previous=fresh(fold(run_id, events[: starts[-1]]).previous),
            config=body_config({"configurable": {"thread_id": run_id}}, state.config),
            writer=lambda item: None,
        )
        scope = Scope(actor, "", info)
        try:
            body = loop.create_task(_run_body(spec, info, scope))
            outcome = await self._drive(body, actor, scope)
        except TimeoutError:
            note = (
                f"the workflow body neither finished nor reached the end of the log within "
                f"{self.timeout:g} s: does it wait on something outside perdure?"
            )
            return _unreplayed(state, ok=False, replayed="timed out", note=note)
        finally:
            actor.alive = False  # a sync body still in its thread stops at its next step
            for fut in actor.waiting:
                fut.cancel()
        result = judge(state, scope.counter, actor.asked, outcome)
        divergence = result.divergence
        if divergence is None:
            return result
        return attrs.evolve(
            result,
            recorded_input=_recorded_input(events[starts[-1] :], divergence.position),
            location=user_location(divergence),
        )

    async def _drive(
        self, body: asyncio.Task[tuple[str, Any]], actor: _ReplayActor, scope: Scope
    ) -> tuple[str, Any]:
        """Wait for the replayed body; stop it where it can only wait on what the log lacks.

        A body whose child tasks wait on sleeps that never fired in the log, and
        that asks for nothing more while polled a few times, is where the
        recorded run stopped (it was waiting in a race): that is the replay's end.
        """
        deadline = actor.loop.time() + self.timeout
        last: tuple[int, int] | None = None
        still = 0
        while True:
            done, _ = await asyncio.wait({body}, timeout=_BLOCKED_POLL)
            if done:
                return body.result()
            mark = (scope.counter, len(actor.asked))
            still = still + 1 if (actor.waiting or scope.holding()) and mark == last else 0
            last = mark
            if still >= _BLOCKED_POLLS and scope.holding():
                # Code changed since the log no longer asks for the steps an outcome was
                # held for: hand everything out rather than wait for them.
                scope.holdback.release_until(sys.maxsize)
                still = 0
            elif still >= _BLOCKED_POLLS or actor.loop.time() >= deadline:
                body.cancel()
                await asyncio.wait({body})
                if still >= _BLOCKED_POLLS:
                    return "suspended", Suspend("replay end")
                raise TimeoutError

    # -- many runs ---------------------------------------------------------------------

    def replay_all(
        self,
        log: EventLog,
        *,
        since: float | datetime | None = None,
        target: str | None = None,
        status: str | Iterable[str] | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> ReplaySummary:
        """Replay many runs of `log`; see `areplay_all`. Sync code only."""
        _no_loop("replay_all")
        return asyncio.run(
            self.areplay_all(log, since=since, target=target, status=status, progress=progress)
        )

    async def areplay_all(
        self,
        log: EventLog,
        *,
        since: float | datetime | None = None,
        target: str | None = None,
        status: str | Iterable[str] | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> ReplaySummary:
        """Replay every run of `log` updated at or after `since`, of `target`, with a `status`.

        A deploy check: ``status=("running", "waiting")`` replays the runs
        still in flight against the new code. Runs of workflows this replayer
        does not know are listed in `skipped`; `progress(done, total)` is
        called after each run.
        """
        wanted = (
            {status} if isinstance(status, str) else set(status) if status is not None else None
        )
        cutoff = since.timestamp() if isinstance(since, datetime) else since
        runs = [
            info
            for info in await log.list_runs(target=target)
            if (wanted is None or info.status in wanted)
            and (cutoff is None or info.updated_at >= cutoff)
        ]
        results: list[ReplayResult] = []
        skipped: list[tuple[str, str]] = []
        errors: list[tuple[str, str]] = []
        for done, info in enumerate(runs, 1):
            if info.kind != "function" and self.resolve(info.target) is None:
                skipped.append((info.run_id, info.target))
            else:
                try:
                    results.append(await self._replay_events(await _events(info.run_id, log)))
                except Exception as exc:  # one unreadable run must not hide the others
                    errors.append((info.run_id, error_text(exc)))
            if progress is not None:
                progress(done, len(runs))
        return ReplaySummary(results=tuple(results), skipped=tuple(skipped), errors=tuple(errors))


def _unreplayed(state: RunState, *, ok: bool, replayed: str, note: str) -> ReplayResult:
    return ReplayResult(
        run_id=state.run_id,
        target=state.target,
        kind=state.kind,
        invocation=state.invocation,
        recorded_end=state.status,
        waiting_on=tuple(step.interrupt_id for step in state.pending_interrupts()),
        ok=ok,
        matched=0,
        divergence=None,
        replayed=replayed,
        notes=(note,),
    )


def _recorded_input(events: Sequence[Event], position: str) -> Any:
    """The input the log recorded for the task at `position` ([args, kwargs]), if any."""
    for event in events:
        if isinstance(event, TaskAttemptStarted) and event.position == position and event.input:
            return fresh(event.input)
    return None


def _no_loop(what: str) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(
        f"Replayer.{what}() was called inside a running event loop; "
        f"use `await replayer.a{what}(...)`"
    )


async def _events(events_or_run_id: str | Iterable[Event], log: EventLog | None) -> list[Event]:
    if isinstance(events_or_run_id, str):
        if log is None:
            raise TypeError("replay(run_id) needs the log to read it from: replay(run_id, log=...)")
        events = await log.read(events_or_run_id)
        if not events:
            raise RunNotFoundError(
                f"no run with id {events_or_run_id!r} in this store", run_id=events_or_run_id
            )
        return events
    events = list(events_or_run_id)
    if not events:
        raise ValueError("replay() got no events")
    run_ids = {event.run_id for event in events}
    if len(run_ids) != 1:
        raise ValueError(f"replay() takes the events of one run, got runs {sorted(run_ids)}")
    for index, event in enumerate(events):
        if event.seq != index:
            raise ValueError(
                f"the events of run {events[0].run_id!r} must be complete and in order: "
                f"event {index} has seq {event.seq}"
            )
    return events


async def _run_body(spec: TargetSpec, info: BodyInfo, scope: Scope) -> tuple[str, Any]:
    """Run the body once in its own task (so the scope variable stays in that task's context)."""
    assert spec.run is not None
    scope.root = asyncio.current_task()
    current_scope.set(scope)
    try:
        return "returned", await spec.run(info)
    except Suspend as signal:
        return "suspended", signal
    except Exception as exc:
        return "raised", exc
