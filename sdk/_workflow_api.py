"""How a workflow is run from outside: invoke / ainvoke / stream / astream / get_state.

Calls reach the runtime open on the workflow's checkpointer (or the default
embedded store) through the sdk's `Bridge`: the enclosing ``async with
Runtime(...)``, a runtime open on another thread's loop, or else a shared
background runtime, so plain synchronous scripts work too.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, Generic, TypeVar

import attrs

from perdure._bridge import Bridge
from perdure.actors import (
    NO_RETRY,
    AttemptInfo,
    Command,
    Interrupt,
    NestedWorkflowError,
    NotInWorkflowError,
    RunBusyError,
    RunExistsError,
    RunState,
    TargetSpec,
    TaskFuture,
    TaskSpec,
    apply,
    call_task,
    current_scope,
)
from perdure.eventlog import (
    Event,
    EventLog,
    Interrupted,
    Resumed,
    RunCompleted,
    RunFailed,
    RunStarted,
    TaskCompleted,
    fresh,
    restore,
)
from perdure.runtime import (
    INTERRUPT_KEY,
    MISSING,
    Closed,
    Committed,
    Custom,
    Outcome,
    Runtime,
    Settled,
    check_id,
)

T = TypeVar("T")
InputT = TypeVar("InputT")
OutputT = TypeVar("OutputT")
STREAM_MODES = ("updates", "values", "custom")


@attrs.frozen(kw_only=True)
class TaskRecord:
    """A recorded task result in a `StateSnapshot`."""

    position: str
    name: str
    result: Any


@attrs.frozen(kw_only=True)
class StateSnapshot:
    """A workflow thread's state at one point of its log."""

    thread_id: str
    status: str
    values: Any
    input: Any
    invocation: int
    interrupts: tuple[Interrupt, ...]
    tasks: tuple[TaskRecord, ...]
    seq: int
    created_at: float
    updated_at: float

    @property
    def config(self) -> dict[str, Any]:
        return {"configurable": {"thread_id": self.thread_id}}


def _snapshot(state: RunState) -> StateSnapshot:
    done = [s for s in state.steps.values() if s.kind == "task" and s.done]
    return StateSnapshot(
        thread_id=state.run_id,
        status=state.status if state.started else "new",
        values=fresh(state.result if state.terminal == "completed" else state.previous),
        input=fresh(state.input),
        invocation=state.invocation,
        interrupts=tuple(
            Interrupt(fresh(s.question), s.interrupt_id) for s in state.pending_interrupts()
        ),
        tasks=tuple(
            TaskRecord(position=s.position, name=s.name, result=fresh(s.result)) for s in done
        ),
        seq=state.next_seq - 1,
        created_at=state.created_at,
        updated_at=state.updated_at,
    )


_SHAPE = '{"configurable": {"thread_id": "..."}}'


@attrs.frozen
class CallConfig:
    """A caller's config, checked: the thread, and what else the body's `config` gets."""

    thread_id: str
    #: ``configurable`` keys but the thread id, ``tags`` and ``metadata`` (only those given).
    extra: dict[str, Any]


def call_config(config: Any, what: str) -> CallConfig:
    """Check a caller's config: a thread id is required, `checkpoint_id` is refused.

    `what` names the call for the messages, e.g. ``"essay.invoke()"``.
    """
    if config is None:
        raise ValueError(
            f"{what} needs a thread id: pass config={_SHAPE} (the thread keeps the run, its "
            "interrupts and state; without one you could never resume or look at it)"
        )
    if not isinstance(config, dict):
        raise TypeError(f"{what}: config must be a dict like {_SHAPE}, got {config!r}")
    configurable = config.get("configurable")
    if configurable is None:
        configurable = {}
    if not isinstance(configurable, dict):
        raise TypeError(
            f'{what}: config["configurable"] must be a dict like {{"thread_id": "..."}}, '
            f"got {configurable!r}"
        )
    thread_id = configurable.get("thread_id")
    if thread_id is None:
        if "thread_id" in config:
            raise ValueError(
                f'{what}: thread_id goes inside "configurable": pass config='
                f'{{"configurable": {{"thread_id": {config["thread_id"]!r}}}}}, '
                f"not {{'thread_id': {config['thread_id']!r}}}"
            )
        raise ValueError(f"{what} needs a thread id: pass config={_SHAPE}")
    thread_id = check_id("thread_id", thread_id)
    if configurable.get("checkpoint_id") is not None:
        raise ValueError(
            f"{what}: checkpoint_id is not supported: perdure runs a thread from its latest "
            "state only (running from an earlier checkpoint does not exist yet); drop "
            '"checkpoint_id" from config["configurable"]'
        )
    extra: dict[str, Any] = {}
    rest = {k: v for k, v in configurable.items() if k != "thread_id"}
    if rest:
        extra["configurable"] = rest
    tags = config.get("tags")
    if tags is not None:
        if not isinstance(tags, list | tuple) or not all(isinstance(t, str) for t in tags):
            raise TypeError(f'{what}: config["tags"] must be a list of strings, got {tags!r}')
        extra["tags"] = list(tags)
    metadata = config.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise TypeError(f'{what}: config["metadata"] must be a dict, got {metadata!r}')
        extra["metadata"] = metadata
    return CallConfig(thread_id, extra)


def thread_id_of(config: Any, what: str) -> str:
    """The thread id of a caller's config (see `call_config`)."""
    return call_config(config, what).thread_id


def _modes(stream_mode: str | list[str] | tuple[str, ...]) -> tuple[tuple[str, ...], bool]:
    many = not isinstance(stream_mode, str)
    modes: tuple[str, ...] = (stream_mode,) if isinstance(stream_mode, str) else tuple(stream_mode)
    for mode in modes:
        if mode not in STREAM_MODES:
            raise ValueError(f"unknown stream_mode {mode!r}; choose from {STREAM_MODES}")
    return modes, many


def refuse_nested(name: str, what: str, scope: Any = None, *, call: str | None = None) -> None:
    """Refuse to start or drive a workflow from another workflow's body (it is not recorded).

    scope: the caller's `current_scope`, when the check runs in another context.
    call: how the fix calls it from a task (default: the workflow's own ``ainvoke``).
    """
    if scope is None:
        scope = current_scope.get()
    if scope is None or scope.body is None:
        return  # not in a workflow body: a caller outside perdure, or a task (recorded)
    run_id = scope.actor.run_id
    if call is None:
        call = f'{name}.ainvoke(x, {{"configurable": {{"thread_id": thread_id}}}})'
    raise NestedWorkflowError(
        f"{name}.{what}() was called in the body of workflow run {run_id!r}: a workflow "
        "started from another workflow's body is not recorded in that run's log, so it would "
        "run again, side effects and all, each time the outer run resumes. Call it from a "
        f"@task instead (the task's result is recorded once and returned on replay), with a "
        f"thread id of its own, e.g. derived from the outer thread's id: "
        f"`@task async def step(x, thread_id): return await {call}`",
        run_id=run_id,
        workflow=name,
    )


def in_body() -> bool:
    """Whether the caller is a workflow body (not a task, not code outside perdure)."""
    scope = current_scope.get()
    return scope is not None and scope.body is not None


def child_run_id(parent: str, invocation: int, position: str) -> str:
    """The id of the child run a parent's body starts at `position` of an invocation."""
    run_id = f"{parent}/{invocation}.{position}"
    if len(run_id) > 200:  # ids are at most 200 characters: keep it unique and stable
        tail = hashlib.blake2b(run_id.encode(), digest_size=8).hexdigest()
        run_id = f"{parent[:150]}~{tail}/{invocation}.{position}"
    return run_id


#: The name prefix of the step a parent's body records for a child workflow (the CLI's
#: `perdure runs show` finds children by it).
CHILD_STEP = "child:"


class WorkflowApi(Generic[InputT, OutputT]):
    """The run-it-from-outside half of `Workflow`: input ``InputT``, output ``OutputT``."""

    def __init__(self, spec: TargetSpec, checkpointer: EventLog | str | None) -> None:
        self.__perdure_target__ = spec
        self.name = spec.name
        #: The recorded step a parent's body takes to run this workflow as its child.
        self._child_task = TaskSpec(
            name=f"{CHILD_STEP}{spec.name}",
            call=self._run_child,
            retry=NO_RETRY,
            result_type=spec.result_type,
        )
        #: An event log, a store spec (folder or postgresql:// URL), or None (the default).
        self.checkpointer = checkpointer
        self._bridge = (
            Bridge(path=checkpointer) if isinstance(checkpointer, str) else Bridge(log=checkpointer)
        )

    # -- choosing a runtime -------------------------------------------------------------

    async def _on_runtime(self, make: Callable[[Runtime], Awaitable[T]]) -> T:
        return await self._bridge.acall(make)

    def _sync(
        self,
        make: Callable[[Runtime], Awaitable[T]],
        what: str,
        peek: Callable[[Runtime], Any] | None = None,
    ) -> T:
        return self._bridge.call(
            make,
            f"{self.name}.{what}() blocks, and it was called inside a running event loop; "
            f"use `await {self.name}.a{what}(...)` instead",
            peek,
        )

    def _finished(self, runtime: Runtime, config: CallConfig) -> Any:
        """`invoke(None, config)` on a thread this workflow completed, answered from the store
        in the caller's thread; `MISSING` for anything else (the runtime decides)."""
        if config.extra:  # a config to compare with the recorded one: the usual path
            return MISSING
        outcome = runtime.completed_now(config.thread_id)
        if outcome is None or outcome.target != self.name:
            return MISSING
        return outcome

    # -- as a child of another workflow's body ---------------------------------------------

    def _child(self, input: Any, config: dict[str, Any] | None, what: str) -> TaskFuture[OutputT]:
        """Start this workflow as a child of the calling body: a recorded step of the parent.

        The child run's id is the config's thread id, if given, else derived from the
        parent's id, invocation and the step's position (`child_run_id`).
        """
        scope = current_scope.get()
        assert scope is not None
        if isinstance(input, Command) or input is None:
            raise TypeError(
                f"{self.name}.{what}() in a workflow body starts a child run: pass its input "
                f"(resuming or continuing another thread from a body is not supported)"
            )
        if config is not None:
            child_id = call_config(config, f"{self.name}.{what}()").thread_id
        else:
            actor = scope.actor
            position = f"{scope.prefix}.{scope.counter}" if scope.prefix else str(scope.counter)
            child_id = child_run_id(actor.run_id, actor.state.invocation, position)
        future: TaskFuture[OutputT] = call_task(self._child_task, (child_id, input), {})
        return future

    async def _run_child(self, args: list[Any], kwargs: dict[str, Any], info: AttemptInfo) -> Any:
        """The child step's attempt: start the child run (or find it started), wait for its end.

        A parent cancelled while it waits cancels the child too; a child that fails or is
        cancelled fails the step (`TaskFailedError` in the parent's body, not retried).
        """
        child_id, value = args
        scope = current_scope.get()
        parent = scope.actor if scope is not None else None

        async def run(rt: Runtime) -> Outcome:
            if await rt.get_run(child_id) is None:
                with contextlib.suppress(RunExistsError, RunBusyError):
                    await rt.start(self, value, run_id=child_id)
            return await self._child_outcome(rt, child_id)

        try:
            outcome = await self._on_runtime(run)
        except asyncio.CancelledError:
            if parent is not None and parent.state.terminal == "cancelled":
                reason = f"its parent run {info.run_id!r} was cancelled: {parent.state.reason}"
                await self._on_runtime(lambda rt: rt.cancel(child_id, reason))
            raise
        return outcome.unwrap()

    async def _child_outcome(self, runtime: Runtime, child_id: str) -> Outcome:
        """Wait until the child run ends (a pause on an interrupt is not an end)."""
        with runtime.subscribe(child_id) as updates:
            while True:
                outcome = await runtime.wait(child_id)
                if outcome.status != "waiting":
                    return outcome
                while True:  # paused: wait for its next events (an answer, a cancel)
                    update = await updates.get()
                    if type(update) is Committed or type(update) is Closed:
                        break

    def __call__(self, input: InputT, config: dict[str, Any] | None = None) -> TaskFuture[OutputT]:
        """In a workflow body: start this workflow as a child run and return its future
        (``await`` it, or ``.result()`` in sync code), like a task call.

        The child is a recorded step of the parent: a replay gets its result without
        starting it again. Outside a workflow body use `invoke` / `ainvoke`.
        """
        if not in_body():
            raise NotInWorkflowError(
                f"calling {self.name}(...) starts a child run and only works in a workflow "
                f"body; elsewhere use {self.name}.invoke(x, config) or "
                f"`await {self.name}.ainvoke(x, config)`"
            )
        return self._child(input, config, "__call__")

    # -- invoke -----------------------------------------------------------------------------

    async def _kick(self, runtime: Runtime, input: Any, config: CallConfig) -> None:
        """Start, resume or continue the thread according to `input`."""
        thread_id = config.thread_id
        if isinstance(input, Command):
            if config.extra:
                await self._same_config(runtime, config)
            await runtime.resume(thread_id, input.resume)
            return
        if input is None and await runtime.get_run(thread_id) is not None:
            if config.extra:
                await self._same_config(runtime, config)
            await runtime.continue_run(thread_id, strict=False)
            return
        # The caller waits for the outcome: the start needs no commit of its own.
        await runtime.start(self, input, run_id=thread_id, config=config.extra, commit_start=False)

    async def _same_config(self, runtime: Runtime, config: CallConfig) -> None:
        """A resumed or continued invocation keeps the config it started with (its replay
        must see the same values): refuse a different one rather than drop it."""
        state = await runtime.state(config.thread_id)
        recorded = state.config
        if state.started and recorded != config.extra:
            raise ValueError(
                f"thread {config.thread_id!r}: its invocation started with config {recorded!r} "
                f"(besides the thread id), and a resume or continue keeps it; this call passed "
                f"{config.extra!r} — pass the same keys, or only the thread id"
            )

    async def _invoke(self, runtime: Runtime, input: Any, config: CallConfig) -> Outcome:
        await self._kick(runtime, input, config)
        return await runtime.wait(config.thread_id)

    def invoke(
        self, input: InputT | Command | None, config: dict[str, Any] | None = None
    ) -> OutputT:
        """Run (or resume with a `Command`, or continue with None) and return the result.

        config: ``{"configurable": {"thread_id": "..."}}``, required (`ValueError`
        otherwise). Other ``configurable`` keys, ``tags`` and ``metadata`` reach
        the body's `config` and are recorded with the invocation; a resume or
        continue keeps the config its invocation started with.
        Returns ``{"__interrupt__": [Interrupt, ...]}`` when the run pauses (the
        static type says ``OutputT``: check for the key in workflows that pause).
        Inside a running event loop it raises `ClientUsageError`: use `ainvoke`.
        In another workflow's body it starts a child run (see `__call__`): its result
        is recorded in the parent's log, and `config` is optional there.
        """
        if in_body():
            return self._child(input, config, "invoke").result()
        checked = call_config(config, f"{self.name}.invoke()")
        peek = (lambda rt: self._finished(rt, checked)) if input is None else None
        outcome = self._sync(lambda rt: self._invoke(rt, input, checked), "invoke", peek)
        result: OutputT = outcome.unwrap(self.__perdure_target__.result_type)
        return result

    async def ainvoke(
        self, input: InputT | Command | None, config: dict[str, Any] | None = None
    ) -> OutputT:
        """Async `invoke` (in another workflow's body: a child run, see `__call__`)."""
        if in_body():
            return await self._child(input, config, "ainvoke")
        checked = call_config(config, f"{self.name}.ainvoke()")
        outcome = await self._on_runtime(lambda rt: self._invoke(rt, input, checked))
        result: OutputT = outcome.unwrap(self.__perdure_target__.result_type)
        return result

    # -- stream -------------------------------------------------------------------------------

    async def _astream_on(
        self, runtime: Runtime, input: Any, config: CallConfig, modes: tuple[str, ...], many: bool
    ) -> AsyncIterator[Any]:
        thread_id = config.thread_id
        subscription = runtime.subscribe(thread_id)

        def out(mode: str, chunk: Any) -> Any:
            return (mode, chunk) if many else chunk

        try:
            await self._kick(runtime, input, config)
            # Anything settled before the kick returned is the thread's earlier state (an
            # actor rebuilt from the log reports the last invocation's end, or the pause a
            # resume answers): only outcomes after this mark end the stream.
            kicked = subscription.received
            taken = 0
            waiter = asyncio.ensure_future(runtime.wait(thread_id))
            waiter.add_done_callback(
                lambda f: (
                    subscription.add(Settled(run_id=thread_id, outcome=f.result()))
                    if not f.cancelled() and f.exception() is None
                    else None
                )
            )
            try:
                while True:
                    update = await subscription.get()
                    taken += 1
                    if type(update) is Committed:
                        for event in update.events:
                            for chunk in self._event_chunks(event, modes, out):
                                yield chunk
                    elif type(update) is Custom:
                        if "custom" in modes:
                            yield out("custom", update.item)
                    elif type(update) is Settled:
                        if taken <= kicked:
                            continue
                        outcome = update.outcome
                        if outcome.status == "waiting":
                            marker = {INTERRUPT_KEY: tuple(outcome.interrupts)}
                            for mode in ("updates", "values"):
                                if mode in modes:
                                    yield out(mode, marker)
                        else:
                            outcome.unwrap()  # raises the run's error, if any
                        return
                    elif type(update) is Closed:  # the run cannot go on
                        raise update.error
            finally:
                waiter.cancel()
        finally:
            subscription.close()

    def _event_chunks(
        self, event: Event, modes: tuple[str, ...], out: Callable[[str, Any], Any]
    ) -> Iterator[Any]:
        if type(event) is TaskCompleted and "updates" in modes:
            yield out("updates", {event.name: fresh(event.result)})
        elif type(event) is RunCompleted:
            result_type = self.__perdure_target__.result_type
            if "updates" in modes:
                yield out("updates", {self.name: restore(event.result, result_type)})
            if "values" in modes:
                yield out("values", restore(event.result, result_type))

    async def astream(
        self,
        input: Any,
        config: dict[str, Any] | None = None,
        *,
        stream_mode: str | list[str] | tuple[str, ...] = "updates",
    ) -> AsyncIterator[Any]:
        """Async `stream`."""
        refuse_nested(self.name, "astream")
        modes, many = _modes(stream_mode)
        checked = call_config(config, f"{self.name}.astream()")
        async for chunk in self._bridge.aiterate(
            lambda rt: self._astream_on(rt, input, checked, modes, many)
        ):
            yield chunk

    def stream(
        self,
        input: Any,
        config: dict[str, Any] | None = None,
        *,
        stream_mode: str | list[str] | tuple[str, ...] = "updates",
    ) -> Iterator[Any]:
        """Run like `invoke`, yielding progress: ``"updates"`` ({task: result} per task, then
        {workflow: result}), ``"values"`` (the return value), ``"custom"`` (items from
        `writer`), or a list of modes yielding ``(mode, chunk)`` pairs."""
        refuse_nested(self.name, "stream")
        modes, many = _modes(stream_mode)
        checked = call_config(config, f"{self.name}.stream()")
        yield from self._bridge.iterate(
            lambda rt: self._astream_on(rt, input, checked, modes, many),
            f"{self.name}.stream() blocks, and it was called inside a running event loop; "
            f"use `async for ... in {self.name}.astream(...)` instead",
        )

    # -- state -------------------------------------------------------------------------------------

    async def _state(self, runtime: Runtime, thread_id: str) -> StateSnapshot:
        return _snapshot(await runtime.state(thread_id))

    async def _history(self, runtime: Runtime, thread_id: str) -> list[StateSnapshot]:
        state = RunState(run_id=thread_id)
        snapshots = []
        marks = (RunStarted, TaskCompleted, Interrupted, Resumed, RunCompleted, RunFailed)
        for event in await runtime.log.read(thread_id):
            apply(state, event)
            if type(event) in marks:
                snapshots.append(_snapshot(state))
        snapshots.reverse()
        return snapshots

    def get_state(self, config: dict[str, Any]) -> StateSnapshot:
        """The thread's current state: status, saved values, pending interrupts, task results."""
        thread_id = thread_id_of(config, f"{self.name}.get_state()")
        return self._sync(lambda rt: self._state(rt, thread_id), "get_state")

    async def aget_state(self, config: dict[str, Any]) -> StateSnapshot:
        thread_id = thread_id_of(config, f"{self.name}.aget_state()")
        return await self._on_runtime(lambda rt: self._state(rt, thread_id))

    def get_state_history(self, config: dict[str, Any]) -> list[StateSnapshot]:
        """Snapshots after each task result, interrupt, answer and invocation end; newest first."""
        thread_id = thread_id_of(config, f"{self.name}.get_state_history()")
        return self._sync(lambda rt: self._history(rt, thread_id), "get_state_history")

    async def aget_state_history(self, config: dict[str, Any]) -> list[StateSnapshot]:
        thread_id = thread_id_of(config, f"{self.name}.aget_state_history()")
        return await self._on_runtime(lambda rt: self._history(rt, thread_id))
