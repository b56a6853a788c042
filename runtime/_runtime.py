"""The `Runtime`: what a long-lived service embeds to run durable functions and workflows.

It opens the event log, starts the supervisor and the scheduler, resumes every
run left unfinished by an earlier process, and routes requests to run actors.
On exit it stops taking work, lets actors commit what they have, and closes the
log it opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import json
import math
import os
import secrets
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, cast

from perdure.actors import (
    Cancel,
    Clock,
    Command,
    Continue,
    FireTimer,
    GlobalTracer,
    InvalidResumeError,
    Resume,
    RunActor,
    SendMessage,
    Start,
    SystemClock,
    TargetSpec,
    Wake,
    caller_context,
    describe,
    fold,
    load_logging,
    logger,
)
from perdure.eventlog import (
    Durability,
    EventLog,
    IdempotencyKeyTakenError,
    LeaseLostError,
    PerdureError,
    RunInfo,
    RunStarted,
    RunStatus,
    SequenceConflictError,
    StoreLockedError,
    TimerEntry,
    check_json,
    digest,
)
from perdure.eventlog.tasks import cancel_and_wait
from perdure.runtime._errors import (
    IdempotencyConflictError,
    RunNotFoundError,
    RuntimeClosedError,
    RunTimeoutError,
)
from perdure.runtime._handle import RunHandle
from perdure.runtime._host import RunHost
from perdure.runtime._ids import check_id, new_run_id
from perdure.runtime._outcome import Outcome, live_outcome, settled_outcome
from perdure.runtime._registry import Registry, default_registry
from perdure.runtime._scheduler import Scheduler
from perdure.runtime._store import default_store, open_store, store_key, store_spec
from perdure.runtime._supervisor import Supervisor, SupervisorStatistics
from perdure.runtime._updates import Subscription

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer, TracerProvider

#: The runtime of the enclosing ``async with Runtime(...)``.
current_runtime: contextvars.ContextVar[Runtime | None] = contextvars.ContextVar(
    "perdure_runtime", default=None
)
#: Open runtimes, so code running in another context on the same loop (a web
#: framework's request handlers, after its lifespan opened the runtime) finds them
#: (`perdure.runtime.find_runtime`), and a second runtime on one store is refused.
open_runtimes: list[Runtime] = []

#: `Runtime.keyed_now`'s "not answered here" (None is a result like any other).
MISSING: Final = object()

#: On a store shared by processes, how often (seconds) a wait on a run driven elsewhere
#: reads the run's log, in case the notice that it settled was missed.
SETTLED_POLL = 2.0


class Runtime:
    """Runs durable functions and workflows on one event log. Use as ``async with Runtime(...)``.

    path: the store: a folder (the embedded LMDB store) or a ``postgresql://`` URL
        (default ``PERDURE_STORE``, alias ``PERDURE_PATH``, else ``./.perdure``);
        ignored when `log` is given.
    log: an `EventLog` to use instead (e.g. `MemoryEventLog()` in tests). A log
        passed in is not closed by the runtime.
    clock: time source for timers (`perdure.testing.MockClock` in tests).
    idle_timeout: seconds after which an idle actor is evicted from memory.
    max_restarts / restart_window: supervisor intensity; past it a run is parked.
    attempt_linger: seconds the start record of a workflow task's first attempt
        may wait to share a commit with its result (0: committed before the
        task's body, like every other attempt start).
    task_concurrency: task attempts of one run that may run at once.
    recover: at start-up, resume every unfinished run whose code is registered,
        and fire every due timer (the default: the process that serves the
        store). With ``recover=False`` (a short-lived tool, like the CLI's
        ``resume`` and ``cancel``) the runtime drives only the runs it starts
        or sends a message to; other runs' timers wait for a process that
        recovers.
    lease_ttl: on a PostgreSQL store, seconds a run's lease lasts without renewal
        (default 10; renewed in the background every third of it). A process that
        stops renewing (dead, paused) loses its runs after this long; every append
        is fenced by the lease. Not used by LMDB stores (one writing process).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        log: EventLog | None = None,
        registry: Registry | None = None,
        clock: Clock | None = None,
        tracer_provider: TracerProvider | None = None,
        durability: Durability = "fsync",
        idle_timeout: float = 60.0,
        max_restarts: int = 5,
        restart_window: float = 60.0,
        attempt_linger: float = 0.005,
        task_concurrency: int = 64,
        recover: bool = True,
        lease_ttl: float | None = None,
    ) -> None:
        self.path = store_spec(path) if path is not None else default_store()
        self._given_log = log
        self._log: EventLog | None = log
        self._durability: Durability = durability
        self._clock: Clock = clock or SystemClock()
        self._idle_timeout = idle_timeout
        self._max_restarts = max_restarts
        self._restart_window = restart_window
        self._recover = recover
        self._lease_ttl = lease_ttl
        #: Without recovery: the runs this runtime was asked to drive (only their timers fire).
        self._driven: set[str] = set()
        self._supervisor: Supervisor | None = None
        self._scheduler: Scheduler | None = None
        # structlog (~70 ms), if perdure's records go somewhere: here, not at import nor in
        # a run's first step (a process that logs nothing never loads it).
        load_logging()

        #: What the actors call back, and who waits on which run.
        self._host = RunHost(
            registry=registry or default_registry,
            clock=self._clock,
            # Without a provider given: the global one's, once the program loads OpenTelemetry
            # (not here: ~10 ms that a process which traces nothing would pay at start).
            tracer=(
                tracer_provider.get_tracer("perdure")
                if tracer_provider is not None
                else cast("Tracer", GlobalTracer("perdure"))
            ),
            attempt_linger=attempt_linger,
            task_concurrency=task_concurrency,
        )
        self._open = False
        self._token: contextvars.Token[Runtime | None] | None = None
        self._recovery: asyncio.Task[None] | None = None
        #: token -> the caller of a resume/cancel sent to a run another process drives
        self._remote_replies: dict[str, asyncio.Future[None]] = {}
        self._background_tasks: set[asyncio.Task[None]] = set()
        #: Runs handed to the workers were announced / are being claimed (see `_claim_work`).
        self._work_waiting = False
        #: Runs `work` notices named, to claim by key (`_claim_work`).
        self._work_named: list[str] = []
        self._claiming_work = False
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Which store this is (see `store_key`); fixed when the runtime opens.
        self.store_key = store_key(log=log, path=self.path)

    @property
    def registry(self) -> Registry:
        """The functions and workflows this runtime can run (default: the process-wide one)."""
        return self._host.registry

    @registry.setter
    def registry(self, registry: Registry) -> None:
        self._host.registry = registry

    @property
    def log(self) -> EventLog:
        """The event log (the one given, or the one opened on `path`)."""
        if self._log is None:
            raise RuntimeClosedError("the runtime is not open; use `async with Runtime(...)`")
        return self._log

    @property
    def clock(self) -> Clock:
        return self._clock

    # -- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> Runtime:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def open(self) -> None:
        """Open the log, start supervisor and scheduler, and resume unfinished runs."""
        if self._open:
            return
        self._refuse_a_second_writer()
        self._loop = asyncio.get_running_loop()
        if self._log is None:
            self._log = open_store(
                self.path, durability=self._durability, lease_ttl=self._lease_ttl
            )
        self._host.opened_log = self._log
        self._host.loop = self._loop
        self._supervisor = Supervisor(
            self._host,
            max_restarts=self._max_restarts,
            restart_window=self._restart_window,
            idle_timeout=self._idle_timeout,
            on_restart=self._actor_restarted,
            on_unavailable=self._run_unavailable,
            on_claimed=self._claimed,
        )
        self._supervisor.start()
        self._scheduler = Scheduler(
            self.log,
            self._clock,
            self._deliver_timer,
            accept=None if self._recover else self._driven.__contains__,
            scope=self._timer_scope,
            poll=min(float(getattr(self._log, "lease_ttl", 2.0)) / 2, 1.0),
        )
        self._host.scheduler = self._scheduler
        listen = getattr(self._log, "listen", None)
        if listen is not None:  # a store shared by processes: messages and settled runs
            await listen(self._notice)
        register = getattr(self._log, "register_worker", None)
        if register is not None and self._recover and not self._log.read_only:
            # A worker for the targets registered here: clients without their code
            # hand such runs to this process (or another worker that has them).
            await register(
                {name: self.registry.resolve(name).kind for name in self.registry.names()}
            )
        self._open = True
        # Started once open: a timer it delivered before would be dropped (the runtime
        # takes no message until open), and on a shared store its run would stay leased here.
        self._scheduler.start()
        self._token = current_runtime.set(self)
        open_runtimes.append(self)
        if self._recover:
            self._recovery = asyncio.get_running_loop().create_task(self._resume_unfinished())

    def _refuse_a_second_writer(self) -> None:
        """Two runtimes on one store would both drive its runs: refuse the second one."""
        self.store_key = store_key(log=self._given_log, path=self.path)
        for other in open_runtimes:
            if other is not self and other.is_open and other.store_key == self.store_key:
                where = self.path if self._given_log is None else repr(self._given_log)
                raise StoreLockedError(
                    f"the store {where} is already open in this process by another Runtime; "
                    "use that one (Client and workflow calls, sync or async, find it), "
                    "or close it first (a Client: `client.close()`)",
                    path=self.path,
                )

    async def _resume_unfinished(self) -> None:
        """Wake every unfinished run. The log skips (and logs) runs-index rows it cannot
        read; whatever else fails is logged, never lost with this task.

        A store shared by processes (PostgreSQL) names the runs nobody drives: those are
        resumed, then the runtime keeps watching for runs whose process stopped renewing
        its leases.
        """
        orphaned = getattr(self.log, "orphaned_runs", None)
        try:
            if orphaned is None:
                runs = await self.log.list_runs(status="running")
            else:
                runs = await orphaned(include_released=True)
        except Exception as exc:
            logger.error(
                "recovery could not list the unfinished runs; none was resumed",
                error=f"{type(exc).__name__}: {exc}",
            )
            return
        resumed = 0
        for info in runs:
            if self.registry.get(info.target) is None or self._supervisor is None:
                continue
            try:
                self._supervisor.post(info.run_id, Wake())
            except Exception as exc:  # one run must not stop the others
                logger.error(
                    "recovery could not resume a run",
                    run_id=info.run_id,
                    error=f"{type(exc).__name__}: {exc}",
                )
            else:
                resumed += 1
        if runs:
            logger.info("resuming unfinished runs", count=resumed)
        if orphaned is not None:
            interval = float(getattr(self.log, "lease_ttl", 10.0)) / 2
            while True:
                await asyncio.sleep(interval)
                claim = getattr(self.log, "claim_handed_over", None)
                try:
                    if claim is not None:  # leased here atomically: no race with others
                        taken = list(await claim(self.registry.names(), 256))
                    else:
                        runs = await orphaned(targets=self.registry.names())
                        taken = [r.run_id for r in runs if self.registry.get(r.target)]
                except Exception as exc:  # the store is away for a moment: watch on
                    logger.warning("lease watch failed; retrying", error=describe(exc))
                    continue
                for run_id in taken:
                    if self._supervisor is not None:
                        self._supervisor.post(run_id, Wake())
                    if self._scheduler is not None:  # a due timer tried earlier goes again
                        self._scheduler.forget_run(run_id)
                if taken:
                    logger.info("taking over runs whose lease expired", count=len(taken))

    async def close(self) -> None:
        """Stop taking work, let actors commit what they have, close the log if we opened it."""
        if not self._open:
            return
        self._open = False
        if self in open_runtimes:
            open_runtimes.remove(self)
        # Awaited: a lease watch left running would poll a closed log for ever.
        with contextlib.suppress(Exception):
            await cancel_and_wait(self._recovery)
        if self._scheduler is not None:
            await self._scheduler.stop()
        if self._supervisor is not None:
            await self._supervisor.stop_all()
        closed = RuntimeClosedError("the runtime closed before the run settled")
        self._host.close(closed)
        for reply in self._remote_replies.values():
            if not reply.done():
                reply.set_exception(closed)
        self._remote_replies.clear()
        for task in list(self._background_tasks):
            task.cancel()
        if self._given_log is None and self._log is not None:
            await self._log.close()
            self._log = None
        self._host.opened_log = self._log
        if self._token is not None:
            try:
                current_runtime.reset(self._token)
            except ValueError:
                current_runtime.set(None)
            self._token = None

    @property
    def is_open(self) -> bool:
        return self._open

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop the runtime was opened on (calls from other threads go there)."""
        return self._loop

    def _require_open(self) -> Supervisor:
        if not self._open or self._supervisor is None:
            raise RuntimeClosedError("the runtime is not open; use `async with Runtime(...)`")
        return self._supervisor

    def _drive(self, run_id: str) -> None:
        """Without recovery, take `run_id` on: its timers fire here from now on."""
        if not self._recover and run_id not in self._driven:
            self._driven.add(run_id)
            if self._scheduler is not None:
                self._scheduler.forget_run(run_id)  # a timer skipped so far is due again

    def _timer_scope(self) -> tuple[list[str], list[str] | None]:
        """Whose due timers this runtime claims on a shared store: runs of the targets it
        has code for (without recovery, only among the runs it was asked to drive)."""
        return self.registry.names(), None if self._recover else list(self._driven)

    def _deliver_timer(self, entry: TimerEntry) -> None:
        if self._supervisor is not None and self._open:
            self._supervisor.post(entry.run_id, FireTimer(timer_id=entry.timer_id))
        elif self._scheduler is not None:  # not delivered: not in flight either
            self._scheduler.settled(entry.run_id, entry.timer_id)

    # -- messages between processes (a store shared by processes) ------------------------

    def _in_background(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background_tasks.add(task)
        task.add_done_callback(self._background_tasks.discard)

    def _claimed(self, run_id: str) -> None:
        """This process drives the run now: messages queued for it elsewhere come here."""
        self._in_background(self._take_messages(run_id))

    def _notice(self, kind: str, payload: str) -> None:
        if not self._open:
            return
        if kind == "inbox":
            held = getattr(self.log, "held_leases", None)
            if held is not None and payload in held():
                self._in_background(self._take_messages(payload))
        elif kind == "work":
            target, runs = _work_notice(payload)
            if self._recover and self.registry.get(target) is not None:
                if runs is None:
                    self._work_waiting = True  # look for them all
                else:
                    self._work_named.extend(runs)
                if not self._claiming_work:
                    self._claiming_work = True
                    self._in_background(self._claim_work())
        elif kind == "settled":
            if payload in self._host.settle_waiters and self._rebuilt_actor(payload) is None:
                self._in_background(self._settled_elsewhere(payload))
        elif kind == "reply":
            try:
                answer = json.loads(payload)
                reply = self._remote_replies.get(str(answer["token"]))
            except (ValueError, KeyError, TypeError):
                return
            if reply is None or reply.done():
                return
            if answer.get("error") is None:
                reply.set_result(None)
            else:
                reply.set_exception(_remote_error(answer, payload))

    async def _claim_work(self) -> None:
        """Take runs handed to the workers, a batch at a time, while notices come: each
        is leased to one worker (``SKIP LOCKED``), so workers do not race for them. The
        runs a notice named are claimed by key; a notice that names none (sent by an
        older perdure) has the store looked through."""
        claim = getattr(self.log, "claim_handed_over", None)
        try:
            while claim is not None and self._open and (self._work_waiting or self._work_named):
                named = self._work_named[:64]
                del self._work_named[:64]
                if not named:
                    self._work_waiting = False
                try:
                    if named:
                        taken = await claim(self.registry.names(), len(named), named)
                    else:
                        taken = await claim(self.registry.names())
                except Exception as exc:
                    logger.warning("could not claim handed-over runs", error=describe(exc))
                    return
                for run_id in taken:
                    if self._supervisor is not None:
                        self._supervisor.post(run_id, Wake())
                if not named and len(taken) >= 64:
                    self._work_waiting = True  # a full batch: there may be more
        finally:
            self._claiming_work = False

    async def _settled_elsewhere(self, run_id: str) -> None:
        """Another process settled a run waited on here: its waiters get the outcome."""
        try:
            outcome = settled_outcome(fold(run_id, await self.log.read(run_id)))
        except Exception as exc:
            logger.warning(
                "could not read a run settled elsewhere", run_id=run_id, error=describe(exc)
            )
            return
        if outcome is not None:
            self._host.settled(run_id, outcome)

    async def _take_messages(self, run_id: str) -> None:
        take = getattr(self.log, "take_messages", None)
        if take is None or self._supervisor is None:
            return
        try:
            messages = await take(run_id)
        except Exception as exc:
            logger.warning("could not take a run's messages", run_id=run_id, error=describe(exc))
            return
        loop = asyncio.get_running_loop()
        for message in messages:
            reply: asyncio.Future[None] = loop.create_future()
            token = str(message.get("token", ""))
            if message.get("kind") == "resume":
                resume = Resume(value=message.get("value"), reply=reply, token=token)
                self._supervisor.post(run_id, resume)
            elif message.get("kind") == "cancel":
                reason = str(message.get("reason", "cancelled by request"))
                self._supervisor.post(run_id, Cancel(reason=reason, reply=reply))
            elif message.get("kind") == "continue":
                strict = message.get("strict") is not False
                self._supervisor.post(run_id, Continue(reply=reply, strict=strict, token=token))
            else:
                continue
            inbox_id = message.get("inbox_id")
            reply.add_done_callback(functools.partial(self._answer, token, run_id, inbox_id))

    def _answer(self, token: str, run_id: str, inbox_id: Any, done: asyncio.Future[None]) -> None:
        """Tell the process that sent a message how it went, and remove the message (until
        then, a process that takes the run over after this one died applies it)."""
        error = None if done.cancelled() else done.exception()
        if isinstance(error, LeaseLostError):
            return  # not applied here: the process that took the run over answers it
        answer: dict[str, Any] = {"token": token, "run_id": run_id, "error": None}
        if done.cancelled() or error is not None:
            answer["error"] = "cancelled" if error is None else type(error).__name__
            answer["message"] = "the runtime closed" if error is None else str(error)
        notify = getattr(self.log, "notify", None)
        if notify is not None and self._open:
            self._in_background(notify("reply", json.dumps(answer)))
            ack = getattr(self.log, "ack_message", None)
            if ack is not None and isinstance(inbox_id, int) and not done.cancelled():
                self._in_background(ack(inbox_id))

    def _run_unavailable(self, run_id: str, error: BaseException) -> None:
        """Nobody can run or park this run now: callers waiting on it get `error`.

        Its actor was dropped with its mailbox, timer deliveries included: those are
        due again, or the run would never fire them when this process drives it next.
        """
        self._host.unavailable(run_id, error)
        if self._scheduler is not None:
            self._scheduler.forget_run(run_id)

    def _actor_restarted(self, run_id: str) -> None:
        if self._scheduler is not None:
            self._scheduler.forget_run(run_id)

    def statistics(self) -> SupervisorStatistics:
        """Live actors, restarts, parked and evicted runs since open; `parking`: runs to park
        whose `run_parked` record the store refused so far (parking is retried)."""
        return self._require_open().statistics()

    # -- starting runs ---------------------------------------------------------------------

    async def run(
        self,
        target: Any,
        input: Any = None,
        *,
        idempotency_key: str | None = None,
        timeout: float | None = None,
        run_id: str | None = None,
    ) -> Any:
        """Start a run and return its result (raising its error). See `start`.

        Unlike `start`, the run's start is not committed on its own before the
        body runs: it goes out with the run's first result (one commit instead
        of two). Nobody holds a handle in between, so nothing is promised that
        a crash could break; with an idempotency key it is committed first.
        """
        handle = await self._start(
            target, input, idempotency_key=idempotency_key, run_id=run_id, durable=False
        )
        return await handle.result(timeout=timeout)

    async def start(
        self,
        target: Any,
        input: Any = None,
        *,
        run_id: str | None = None,
        idempotency_key: str | None = None,
        config: dict[str, Any] | None = None,
        commit_start: bool = True,
        deadline: datetime | float | None = None,
    ) -> RunHandle:
        """Start a run of a function (input: dict of keyword arguments) or a workflow (any JSON).

        With `idempotency_key`, a key already used returns a handle to that
        run instead (same result, body not run again); the same key with a
        different input raises `IdempotencyConflictError`. With the `run_id`
        of a settled workflow thread, a new invocation starts on that thread.

        config: a workflow invocation's caller config besides the thread id
            (``configurable`` keys, ``tags``, ``metadata``): the body's `config`
            sees it, and it is recorded with the invocation.
        commit_start: with False, the start is committed with the run's first
            result instead of before the body runs (one commit instead of two),
            as `run` does; only for a caller that waits for the run's outcome
            right away, since a crash before that commit leaves no trace of the
            run. An idempotency key always commits the start first.
        deadline: a timezone-aware `datetime`, or unix seconds on the runtime's
            clock: the run is cancelled if it is not done by then (a durable
            timer; the earlier of it and the target's own timeout wins).
        """
        return await self._start(
            target,
            input,
            run_id=run_id,
            idempotency_key=idempotency_key,
            durable=commit_start,
            config=config,
            deadline=_deadline(deadline),
        )

    async def _start(
        self,
        target: Any,
        input: Any,
        *,
        run_id: str | None,
        idempotency_key: str | None,
        durable: bool,
        config: dict[str, Any] | None = None,
        deadline: float | None = None,
    ) -> RunHandle:
        """`start`; with `durable=False` the start is committed with the run's first result.

        config: a workflow invocation's caller config (see `RunStarted.config`).
        """
        supervisor = self._require_open()
        if isinstance(target, str) and self.registry.get(target) is None:
            served = getattr(self.log, "served_kind", None)
            kind = await served(check_id("target", target)) if served is not None else None
            if kind is not None:
                return await self._start_elsewhere(
                    target,
                    kind,
                    input,
                    run_id=run_id,
                    idempotency_key=idempotency_key,
                    config=config,
                )
        spec = self.registry.resolve(target)
        if input is None and spec.kind == "function":
            input = {}
        spec.validate_input(input)
        input = check_json(input, "input", where=f"input of {spec.name!r} cannot be stored")
        if config:
            check_json(config, "config", where=f"config of {spec.name!r} cannot be stored")
        input_digest = digest(input)
        if idempotency_key is not None:
            check_id("idempotency_key", idempotency_key)
            held = await self.log.lookup_idempotency(idempotency_key)
            if held is not None:
                return await self._attach(
                    idempotency_key, held.run_id, held.input_digest, input_digest, spec
                )
        run_id = check_id("run_id", run_id) if run_id is not None else new_run_id()
        reply: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._drive(run_id)
        supervisor.post(
            run_id,
            Start(
                spec=spec,
                input=input,
                input_digest=input_digest,
                idempotency_key=idempotency_key,
                trace_context=caller_context(),
                reply=reply,
                new_invocation=True,
                durable=durable or idempotency_key is not None,
                config=config or {},
                deadline=deadline,
            ),
        )
        try:
            await reply
        except IdempotencyKeyTakenError as exc:
            assert idempotency_key is not None
            return await self._attach(
                idempotency_key, exc.existing_run_id, exc.existing_digest, input_digest, spec
            )
        return RunHandle(self, run_id, spec.name)

    async def _start_elsewhere(
        self,
        target: str,
        kind: str,
        input: Any,
        *,
        run_id: str | None,
        idempotency_key: str | None,
        config: dict[str, Any] | None,
    ) -> RunHandle:
        """Start a run of a target this process has no code for, on a store shared by
        processes: its start is recorded here and the run handed to the worker processes
        that serve the target (see `PostgresEventLog.register_worker`)."""
        if kind == "function" and input is None:
            input = {}
        if kind == "function" and not isinstance(input, dict):
            raise TypeError(
                f"function {target!r} takes a dict of keyword arguments as input, "
                f"got {type(input).__name__}"
            )
        input = check_json(input, "input", where=f"input of {target!r} cannot be stored")
        if config:
            check_json(config, "config", where=f"config of {target!r} cannot be stored")
        input_digest = digest(input)
        if idempotency_key is not None:
            check_id("idempotency_key", idempotency_key)
            held = await self.log.lookup_idempotency(idempotency_key)
            if held is not None:
                return await self._attach(
                    idempotency_key, held.run_id, held.input_digest, input_digest, target
                )
        run_id = check_id("run_id", run_id) if run_id is not None else new_run_id()
        started = RunStarted(
            run_id=run_id,
            seq=0,
            ts=self._clock.now(),
            target=target,
            kind=kind,  # type: ignore[arg-type]
            input=input,
            input_digest=input_digest,
            idempotency_key=idempotency_key,
            trace_context=caller_context(),
            config=config or {},
        )
        try:
            await self.log.append(run_id, 0, [started])
        except IdempotencyKeyTakenError as exc:
            assert idempotency_key is not None
            return await self._attach(
                idempotency_key, exc.existing_run_id, exc.existing_digest, input_digest, target
            )
        except SequenceConflictError:
            raise InvalidResumeError(
                f"run {run_id!r} already exists; a new invocation of an existing thread "
                f"needs the code of {target!r} in this process",
                run_id=run_id,
            ) from None
        await self.log.hand_over(run_id, target)  # type: ignore[attr-defined]
        return RunHandle(self, run_id, target)

    async def _attach(
        self, key: str, run_id: str, held: str, wanted: str, spec: TargetSpec | str
    ) -> RunHandle:
        name = spec if isinstance(spec, str) else spec.name
        info = await self.log.get_run(run_id)
        if info is not None and info.target != name:
            raise IdempotencyConflictError(
                f"idempotency key {key!r} is held by run {run_id!r} of {info.target!r}, "
                f"not {name!r}; a key names one operation — use a new key",
                key=key,
                run_id=run_id,
            )
        if held != wanted:
            raise IdempotencyConflictError(
                f"idempotency key {key!r} was first used by run {run_id!r} with a different "
                f"input; a key names one operation — use a new key for a different input",
                key=key,
                run_id=run_id,
            )
        return RunHandle(self, run_id, name)

    async def handle(self, run_id: str) -> RunHandle:
        """A `RunHandle` for a run already in the store (started here, elsewhere, or earlier).

        An id that is not a usable id raises `InvalidIdError`; an unknown run `RunNotFoundError`.
        """
        info = await self.log.get_run(check_id("run_id", run_id))
        if info is None:
            raise RunNotFoundError(f"no run with id {run_id!r} in this store", run_id=run_id)
        return RunHandle(self, run_id, info.target)

    # -- talking to runs ---------------------------------------------------------------------

    async def _ask(self, run_id: str, make: Any, remote: dict[str, Any] | None = None) -> None:
        supervisor = self._require_open()
        check_id("run_id", run_id)
        if await self.log.get_run(run_id) is None:
            raise RunNotFoundError(f"no run with id {run_id!r} in this store", run_id=run_id)
        send = getattr(self.log, "send_to_owner", None)
        if remote is not None and send is not None and supervisor.live_actor(run_id) is None:
            # Another process may drive the run (a shared store): the message goes to the
            # store's inbox, that process applies it and answers through a notice.
            token = secrets.token_hex(12)
            answer: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._remote_replies[token] = answer
            try:
                if await send(run_id, {**remote, "token": token}):
                    wait = float(getattr(self.log, "lease_ttl", 10.0))
                    try:
                        await asyncio.wait_for(asyncio.shield(answer), wait)
                    except TimeoutError:
                        if await self.log.withdraw_message(run_id, token):  # type: ignore[attr-defined]
                            raise LeaseLostError(
                                f"run {run_id!r} is driven by another process, which did not "
                                f"take the message within {wait:g} s",
                                run_id=run_id,
                            ) from None
                        # Taken: its answer comes, unless the taker died before it
                        # answered. Never wait for ever: say so, and let the caller check.
                        try:
                            await asyncio.wait_for(asyncio.shield(answer), 3 * wait)
                        except TimeoutError:
                            raise LeaseLostError(
                                f"run {run_id!r}: the process driving it took the message but "
                                f"did not answer within {3 * wait:g} s (it may have stopped); "
                                "check the run's status, and send the message again if need be",
                                run_id=run_id,
                            ) from None
                    return
            finally:
                self._remote_replies.pop(token, None)
        reply: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._drive(run_id)
        supervisor.post(run_id, make(reply))
        await reply

    async def send(
        self,
        run_id: str,
        message: Any,
        *,
        topic: str = "default",
        idempotency_key: str | None = None,
    ) -> None:
        """Send `message` to a run: it is in the run's log (a ``message_received`` event)
        when this returns, whatever the run is doing, and the workflow body takes it
        with ``receive(topic)``. A `Command(resume=...)` answers the run's interrupt instead.

        Sending again with an `idempotency_key` already used for this run does nothing.
        An unknown run raises `RunNotFoundError`; a settled run `RunSettledError`.
        """
        if isinstance(message, Command):
            await self.resume(run_id, message.resume)
            return
        if not isinstance(topic, str) or not topic:
            raise TypeError(f"send(): topic must be a non-empty string, got {topic!r}")
        if idempotency_key is not None:
            check_id("idempotency_key", idempotency_key)
        value = check_json(message, "message", where=f"send() to run {run_id!r}")
        await self._ask(
            run_id,
            lambda reply: SendMessage(
                topic=topic, value=value, idempotency_key=idempotency_key, reply=reply
            ),
        )

    async def get_event(self, run_id: str, key: str, *, timeout: float | None = None) -> Any:
        """The latest value the run published under `key` with ``set_event`` (None if none).

        With `timeout`, wait up to that many seconds for the first value; without, answer
        at once. Reads the stored log: it never waits for a busy run.
        """
        if not isinstance(key, str) or not key:
            raise TypeError(f"get_event(): key must be a non-empty string, got {key!r}")
        check_id("run_id", run_id)
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        event_waiters = self._host.event_waiters
        while True:
            fut: asyncio.Future[None] = loop.create_future()
            if deadline is not None:
                event_waiters.setdefault(run_id, []).append(fut)
            try:
                state = await self.state(run_id)
                if not state.started:
                    raise RunNotFoundError(
                        f"no run with id {run_id!r} in this store", run_id=run_id
                    )
                if key in state.events:
                    return state.events[key]
                if deadline is None or state.terminal is not None:
                    return None
                left = deadline - loop.time()
                if left <= 0:
                    return None
                try:
                    await asyncio.wait_for(fut, left)
                except TimeoutError:
                    return None
            finally:
                waiters = event_waiters.get(run_id)
                if waiters is not None and fut in waiters:
                    waiters.remove(fut)
                    if not waiters:
                        del event_waiters[run_id]

    async def resume(self, run_id: str, value: Any) -> None:
        """Answer the run's pending interrupt(s); see `Command`."""
        remote = {"kind": "resume", "value": value}
        check_json(value, "value", where="resume() cannot send this value to another process")
        await self._ask(run_id, lambda reply: Resume(value=value, reply=reply), remote)

    async def continue_run(self, run_id: str, *, strict: bool = True) -> None:
        """Reopen a failed, parked or cancelled run from its last completed step.

        Completed steps stay (their bodies do not run again); failed steps, and
        attempts a cancel cut short, get fresh attempts; durable sleeps keep their
        original deadline. Any other run raises `InvalidResumeError` (nothing to
        continue: answer a waiting run with ``Command(resume=...)``), unless
        ``strict=False`` (what a workflow's ``invoke(None)`` does): then it is
        left as it is.
        """
        remote = {"kind": "continue", "strict": strict}
        await self._ask(run_id, lambda reply: Continue(reply=reply, strict=strict), remote)

    async def cancel(self, run_id: str, reason: str = "cancelled by request") -> None:
        """Cancel a run; a settled run is left as it is. `continue_run` can reopen it later."""
        if not isinstance(reason, str):
            raise TypeError(f"cancel(): reason must be a string, got {type(reason).__name__}")
        check_json(reason, "reason", where="cancel() cannot record this reason")
        remote = {"kind": "cancel", "reason": reason}
        await self._ask(run_id, lambda reply: Cancel(reason=reason, reply=reply), remote)

    # -- reading runs -------------------------------------------------------------------------

    async def get_run(self, run_id: str) -> RunInfo | None:
        return await self.log.get_run(check_id("run_id", run_id))

    # -- answers already in the store, for sync callers on other threads ---------------------

    def completed_now(self, run_id: str) -> Outcome | None:
        """The outcome of a run the store already holds as completed, or None.

        Callable from any thread and never waits: it reads the store directly
        (stores that can, LMDB; others give None), so a sync caller whose
        answer is durable already need not cross into the runtime's loop. None
        means "ask the usual way" (the run is unknown, not completed, or its
        latest acknowledged events are not readable yet).
        """
        peek = getattr(self.log, "completed_now", None)
        if not self._open or peek is None or not isinstance(run_id, str):
            return None
        found = peek(run_id)
        if found is None:
            return None
        info, event = found
        return Outcome(run_id=run_id, target=info.target, status="completed", result=event.result)

    def keyed_now(self, target: Any, input: Any, idempotency_key: str) -> Any:
        """`run(target, input, idempotency_key=...)` answered from the store, or `MISSING`.

        Like `completed_now`: any thread, no waiting. Only a key whose run
        completed, with the same target and input, is answered here; everything
        else (a new key, a conflict, a failed or running run, bad input) returns
        `MISSING` so that `run` decides and raises as usual.
        """
        peek = getattr(self.log, "keyed_completed_now", None)
        if not self._open or peek is None or not isinstance(idempotency_key, str):
            return MISSING
        # Read-only lookups here (this is not the loop's thread): a target that `run` would
        # have to register or refuse goes the usual way.
        name = target if isinstance(target, str) else getattr(target, "__perdure_target__", None)
        spec = self.registry.get(name if isinstance(name, str) else getattr(name, "name", ""))
        if spec is None or (not isinstance(target, str) and spec is not name):
            return MISSING
        try:
            if input is None and spec.kind == "function":
                input = {}
            spec.validate_input(input)
            wanted = digest(check_json(input, "input"))
        except Exception:  # bad input: `run` raises it with its own message
            return MISSING
        found = peek(idempotency_key)
        if found is None:
            return MISSING
        held, info, event = found
        if held.input_digest != wanted or info.target != spec.name:
            return MISSING
        completed = Outcome(
            run_id=held.run_id, target=info.target, status="completed", result=event.result
        )
        return completed.unwrap(spec.result_type)

    async def list_runs(
        self,
        *,
        status: RunStatus | None = None,
        target: str | None = None,
        limit: int | None = None,
    ) -> list[RunInfo]:
        return await self.log.list_runs(status=status, target=target, limit=limit)

    async def status(self, run_id: str) -> RunStatus:
        info = await self.log.get_run(check_id("run_id", run_id))
        if info is None:
            raise RunNotFoundError(f"no run with id {run_id!r} in this store", run_id=run_id)
        return info.status

    async def state(self, run_id: str) -> Any:
        """The run's current state (`perdure.actors.RunState`), folded from its log."""
        check_id("run_id", run_id)
        actor = self._rebuilt_actor(run_id)
        if actor is not None and actor.durable_seq == actor.state.next_seq:
            return actor.state
        # Not live, or its latest events are not durable yet: the log is the truth.
        return fold(run_id, await self.log.read(run_id))

    def _rebuilt_actor(self, run_id: str) -> RunActor | None:
        """The run's live actor, unless it is still rebuilding (its state is empty until then)."""
        actor = self._require_open().live_actor(run_id)
        return actor if actor is not None and actor.state.started else None

    async def wait(self, run_id: str, timeout: float | None = None) -> Outcome:
        """Wait until the run settles (finished, or paused on an interrupt)."""
        self._require_open()
        check_id("run_id", run_id)
        fut: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        settle_waiters = self._host.settle_waiters
        settle_waiters.setdefault(run_id, []).append(fut)
        try:
            actor = self._rebuilt_actor(run_id)
            if actor is not None:
                outcome = live_outcome(actor, [])
            else:
                exists, outcome = await self._stored_outcome(run_id)
                if not exists:
                    raise RunNotFoundError(
                        f"no run with id {run_id!r} in this store", run_id=run_id
                    )
            if outcome is not None:
                return outcome
            if timeout is None and not self._shared_store():
                return await fut
            try:
                return await self._settled(run_id, fut, timeout)
            except TimeoutError:
                if timeout is None:
                    raise
                raise RunTimeoutError(
                    f"run {run_id!r} did not settle within {timeout} s; it keeps running — "
                    f"wait on it again with its id",
                    run_id=run_id,
                    timeout=timeout,
                ) from None
        finally:
            waiters = settle_waiters.get(run_id)
            if waiters is not None and fut in waiters:
                waiters.remove(fut)
                if not waiters:
                    del settle_waiters[run_id]

    def _shared_store(self) -> bool:
        return hasattr(self._log, "listen")

    async def _stored_outcome(self, run_id: str) -> tuple[bool, Outcome | None]:
        """(whether the run exists, its outcome if it settled) as the store has it. On a
        store shared by processes the run's row is looked at first: a run still running
        (what a client waiting on the runs it handed to workers mostly finds) is not read
        and folded."""
        if self._shared_store():
            info = await self.log.get_run(run_id)
            if info is None:
                return False, None
            if info.status == "running":
                return True, None
        state = fold(run_id, await self.log.read(run_id))
        return state.started, settled_outcome(state)

    async def _settled(
        self, run_id: str, fut: asyncio.Future[Outcome], timeout: float | None
    ) -> Outcome:
        """`fut`'s outcome, within `timeout` (None: no limit). On a store shared by
        processes the run's log is also read every `SETTLED_POLL` seconds while no live
        actor here drives it: a waiter that missed the notice of another process (the
        listening connection dropped, the notifier died after its commit) still learns
        that the run settled."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                raise TimeoutError
            slice_ = left
            if self._shared_store():
                slice_ = SETTLED_POLL if left is None else min(left, SETTLED_POLL)
            try:
                return await asyncio.wait_for(asyncio.shield(fut), slice_)
            except TimeoutError:
                if not self._shared_store() or self._rebuilt_actor(run_id) is not None:
                    continue
                _, outcome = await self._stored_outcome(run_id)
                if outcome is not None:
                    return outcome

    def subscribe(self, run_id: str) -> Subscription:
        """The run's updates from now on, as a `Subscription` (see `perdure.runtime.Update`).

        Subscribe before starting, resuming or continuing the run, so that no update
        is missed; close the subscription when done (``with runtime.subscribe(id) as sub:``).
        It does not check that the run exists (it may be about to start).
        """
        self._require_open()
        return self._host.subscribe(check_id("run_id", run_id))


def _work_notice(payload: str) -> tuple[str, list[str] | None]:
    """A `work` notice's target and the runs it names: a JSON array (target, run ids),
    or, from an older perdure, the target, a newline and one run id (None: look)."""
    if payload.startswith("["):
        try:
            named = json.loads(payload)
        except ValueError:
            named = None
        if isinstance(named, list) and named and all(isinstance(n, str) for n in named):
            return named[0], named[1:]
    return payload.partition("\n")[0], None


def _remote_error(answer: dict[str, Any], payload: str) -> PerdureError:
    """The error another process met applying a message, as the nearest local class."""
    message = str(answer.get("message", payload))
    name = str(answer.get("error"))
    if name == "InvalidResumeError":
        return InvalidResumeError(message, run_id=str(answer.get("run_id", "")))
    return PerdureError(f"{name}: {message}")


def _deadline(value: datetime | float | None) -> float | None:
    """A `start(deadline=...)` as unix seconds (None: no deadline)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(
                f"deadline={value!r} has no timezone: pass an aware datetime "
                "(e.g. datetime.now(UTC) + timedelta(minutes=5))"
            )
        return value.timestamp()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise TypeError(
            f"deadline must be a timezone-aware datetime or unix seconds, got {value!r}"
        )
    return float(value)
