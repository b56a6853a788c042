"""How a workflow is run from outside: invoke / ainvoke / stream / astream / get_state.

Async callers inside ``async with Runtime(...)`` use that runtime; everyone
else uses a shared background runtime on the workflow's checkpointer (or the
default embedded store), so plain synchronous scripts work too.
"""

from __future__ import annotations

import asyncio
import queue
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import attrs

from perdure.actors import Command, Interrupt, RunState, TargetSpec, apply
from perdure.eventlog import (
    Event,
    EventLog,
    Interrupted,
    Resumed,
    RunCompleted,
    RunFailed,
    RunStarted,
    TaskCompleted,
)
from perdure.eventlog._json import fresh
from perdure.runtime import (
    INTERRUPT_KEY,
    Outcome,
    Runtime,
    background_runtime,
    default_store_path,
    find_runtime,
)

T = TypeVar("T")
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
        interrupts=tuple(Interrupt(s.question, s.interrupt_id) for s in state.pending_interrupts()),
        tasks=tuple(
            TaskRecord(position=s.position, name=s.name, result=fresh(s.result)) for s in done
        ),
        seq=state.next_seq - 1,
        created_at=state.created_at,
        updated_at=state.updated_at,
    )


def thread_id_of(config: dict[str, Any] | None, *, required: bool) -> str:
    configurable = (config or {}).get("configurable") or {}
    thread_id = configurable.get("thread_id")
    if thread_id is None:
        if required:
            raise ValueError(
                'this call needs a thread: pass config={"configurable": {"thread_id": "..."}}'
            )
        return f"thread-{uuid.uuid4().hex}"
    if not isinstance(thread_id, str) or not thread_id:
        raise ValueError(f"thread_id must be a non-empty string, got {thread_id!r}")
    return thread_id


def _modes(stream_mode: str | list[str] | tuple[str, ...]) -> tuple[tuple[str, ...], bool]:
    many = not isinstance(stream_mode, str)
    modes: tuple[str, ...] = (stream_mode,) if isinstance(stream_mode, str) else tuple(stream_mode)
    for mode in modes:
        if mode not in STREAM_MODES:
            raise ValueError(f"unknown stream_mode {mode!r}; choose from {STREAM_MODES}")
    return modes, many


def _in_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class WorkflowApi:
    """The run-it-from-outside half of `Workflow`."""

    def __init__(self, spec: TargetSpec, checkpointer: EventLog | str | None) -> None:
        self.__perdure_target__ = spec
        self.name = spec.name
        #: An event log, a store spec (folder or postgresql:// URL), or None (the default).
        self.checkpointer = checkpointer

    # -- choosing a runtime -------------------------------------------------------------

    def _local_runtime(self) -> Runtime | None:
        if isinstance(self.checkpointer, str):
            return find_runtime(path=self.checkpointer)
        return find_runtime(log=self.checkpointer)

    def _background(self) -> Any:
        if isinstance(self.checkpointer, str):
            return background_runtime(path=self.checkpointer)
        if self.checkpointer is not None:
            return background_runtime(log=self.checkpointer)
        return background_runtime(path=default_store_path())

    async def _on_runtime(self, make: Callable[[Runtime], Awaitable[T]]) -> T:
        runtime = self._local_runtime()
        if runtime is not None:
            return await make(runtime)
        return await asyncio.wrap_future(self._background().submit(make))

    def _sync(self, make: Callable[[Runtime], Awaitable[T]], what: str) -> T:
        if _in_loop():
            raise RuntimeError(
                f"{self.name}.{what}() blocks and was called inside a running event loop; "
                f"use `await {self.name}.a{what}(...)` instead"
            )
        result: T = self._background().call(make)
        return result

    # -- invoke -----------------------------------------------------------------------------

    async def _kick(self, runtime: Runtime, input: Any, thread_id: str) -> None:
        """Start, resume or continue the thread according to `input`."""
        if isinstance(input, Command):
            await runtime.resume(thread_id, input.resume)
        elif input is None and await runtime.get_run(thread_id) is not None:
            await runtime.continue_run(thread_id)
        else:
            # The caller waits for the outcome: the start needs no commit of its own.
            await runtime._start(self, input, run_id=thread_id, idempotency_key=None, durable=False)

    async def _invoke(self, runtime: Runtime, input: Any, thread_id: str) -> Outcome:
        await self._kick(runtime, input, thread_id)
        return await runtime.wait(thread_id)

    def invoke(self, input: Any, config: dict[str, Any] | None = None) -> Any:
        """Run (or resume with a `Command`, or continue with None) and return the result.

        Returns ``{"__interrupt__": [Interrupt, ...]}`` when the run pauses.
        """
        thread_id = thread_id_of(config, required=isinstance(input, Command))
        return self._sync(lambda rt: self._invoke(rt, input, thread_id), "invoke").unwrap()

    async def ainvoke(self, input: Any, config: dict[str, Any] | None = None) -> Any:
        """Async `invoke`."""
        thread_id = thread_id_of(config, required=isinstance(input, Command))
        outcome = await self._on_runtime(lambda rt: self._invoke(rt, input, thread_id))
        return outcome.unwrap()

    # -- stream -------------------------------------------------------------------------------

    async def _astream_on(
        self, runtime: Runtime, input: Any, thread_id: str, modes: tuple[str, ...], many: bool
    ) -> AsyncIterator[Any]:
        listener = runtime.listen(thread_id)

        def out(mode: str, chunk: Any) -> Any:
            return (mode, chunk) if many else chunk

        try:
            await self._kick(runtime, input, thread_id)
            waiter = asyncio.ensure_future(runtime.wait(thread_id))
            waiter.add_done_callback(
                lambda f: (
                    listener.put_nowait(("settled", f.result()))
                    if not f.cancelled() and f.exception() is None
                    else None
                )
            )
            try:
                while True:
                    kind, payload = await listener.get()
                    if kind == "events":
                        for event in payload:
                            for chunk in self._event_chunks(event, modes, out):
                                yield chunk
                    elif kind == "custom":
                        if "custom" in modes:
                            yield out("custom", payload)
                    elif kind == "settled":
                        outcome: Outcome = payload
                        if outcome.status == "waiting":
                            marker = {INTERRUPT_KEY: tuple(outcome.interrupts)}
                            for mode in ("updates", "values"):
                                if mode in modes:
                                    yield out(mode, marker)
                        else:
                            outcome.unwrap()  # raises the run's error, if any
                        return
                    elif payload is not None:  # "closed": the run cannot go on
                        raise payload
                    else:
                        return
            finally:
                waiter.cancel()
        finally:
            runtime.unlisten(thread_id, listener)

    def _event_chunks(
        self, event: Event, modes: tuple[str, ...], out: Callable[[str, Any], Any]
    ) -> Iterator[Any]:
        if type(event) is TaskCompleted and "updates" in modes:
            yield out("updates", {event.name: fresh(event.result)})
        elif type(event) is RunCompleted:
            if "updates" in modes:
                yield out("updates", {self.name: fresh(event.result)})
            if "values" in modes:
                yield out("values", fresh(event.result))

    async def astream(
        self,
        input: Any,
        config: dict[str, Any] | None = None,
        *,
        stream_mode: str | list[str] | tuple[str, ...] = "updates",
    ) -> AsyncIterator[Any]:
        """Async `stream`."""
        modes, many = _modes(stream_mode)
        thread_id = thread_id_of(config, required=isinstance(input, Command))
        runtime = self._local_runtime()
        if runtime is not None:
            async for chunk in self._astream_on(runtime, input, thread_id, modes, many):
                yield chunk
            return
        bridge: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        async def pump(rt: Runtime) -> None:
            try:
                async for chunk in self._astream_on(rt, input, thread_id, modes, many):
                    loop.call_soon_threadsafe(bridge.put_nowait, ("item", chunk))
            except BaseException as exc:
                loop.call_soon_threadsafe(bridge.put_nowait, ("error", exc))
                return
            loop.call_soon_threadsafe(bridge.put_nowait, ("end", None))

        self._background().submit(pump)
        while True:
            kind, value = await bridge.get()
            if kind == "item":
                yield value
            elif kind == "error":
                raise value
            else:
                return

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
        if _in_loop():
            raise RuntimeError(
                f"{self.name}.stream() blocks; use `async for ... in {self.name}.astream(...)`"
            )
        modes, many = _modes(stream_mode)
        thread_id = thread_id_of(config, required=isinstance(input, Command))
        bridge: queue.Queue[tuple[str, Any]] = queue.Queue()

        async def pump(rt: Runtime) -> None:
            try:
                async for chunk in self._astream_on(rt, input, thread_id, modes, many):
                    bridge.put(("item", chunk))
            except BaseException as exc:
                bridge.put(("error", exc))
                return
            bridge.put(("end", None))

        self._background().submit(pump)
        while True:
            kind, value = bridge.get()
            if kind == "item":
                yield value
            elif kind == "error":
                raise value
            else:
                return

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
        thread_id = thread_id_of(config, required=True)
        return self._sync(lambda rt: self._state(rt, thread_id), "get_state")

    async def aget_state(self, config: dict[str, Any]) -> StateSnapshot:
        thread_id = thread_id_of(config, required=True)
        return await self._on_runtime(lambda rt: self._state(rt, thread_id))

    def get_state_history(self, config: dict[str, Any]) -> list[StateSnapshot]:
        """Snapshots after each task result, interrupt, answer and invocation end; newest first."""
        thread_id = thread_id_of(config, required=True)
        return self._sync(lambda rt: self._history(rt, thread_id), "get_state_history")

    async def aget_state_history(self, config: dict[str, Any]) -> list[StateSnapshot]:
        thread_id = thread_id_of(config, required=True)
        return await self._on_runtime(lambda rt: self._history(rt, thread_id))
