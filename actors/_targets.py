"""What an actor executes: specs of tasks and run targets, built by the sdk's decorators.

The actor layer never inspects user signatures; the sdk turns a decorated
function into a spec whose `call`/`run` adapter injects contexts and runs sync
code in a thread.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import attrs

from perdure.actors._policy import RetryPolicy
from perdure.eventlog import RunKind, fresh

ValueT = TypeVar("ValueT")
SaveT = TypeVar("SaveT")


@attrs.frozen(kw_only=True)
class AttemptInfo:
    """Facts about the running attempt, given to a task's adapter (becomes `FunctionContext`)."""

    run_id: str
    name: str
    position: str
    attempt: int
    idempotency_key: str
    target: str


@attrs.frozen(kw_only=True)
class TaskSpec:
    """A unit of work with its own retry policy; a function's body is one too."""

    name: str
    call: Callable[[list[Any], dict[str, Any], AttemptInfo], Awaitable[Any]]
    retry: RetryPolicy
    timeout: float | None = None
    #: Whether the attempt's input is recorded in TaskAttemptStarted (not for
    #: function runs, whose input is already in RunStarted).
    record_input: bool = True
    #: The declared type workflow code gets the result back as (None: plain JSON);
    #: see `perdure.eventlog._values.declared_type`.
    result_type: Any = None
    #: The plain sync function (None for async tasks): sync code that waits on the call
    #: right away runs it in its own thread (see `Execution.run_inline`).
    inline: Callable[..., Any] | None = None


@attrs.frozen(kw_only=True)
class BodyInfo:
    """What a workflow body gets: its input, the previous saved value, config and a writer."""

    run_id: str
    input: Any
    previous: Any
    config: dict[str, Any]
    writer: Callable[[Any], None]


def body_config(base: dict[str, Any], recorded: dict[str, Any]) -> dict[str, Any]:
    """The `config` a workflow body gets: the host's `base` (the thread id) with the caller's
    `recorded` config of the invocation (other ``configurable`` keys, ``tags``, ``metadata``)
    merged in; a fresh copy each time, so a body changing it changes nothing recorded."""
    if not recorded:
        return base
    config: dict[str, Any] = fresh(recorded)
    config["configurable"] = {**config.get("configurable", {}), **base.get("configurable", {})}
    return config


@attrs.frozen(kw_only=True)
class TargetSpec:
    """A named thing a run executes: a function (one task) or a workflow (a body)."""

    name: str
    kind: RunKind
    #: Raises an `InvalidArgumentsError`-like error if the input does not fit.
    validate_input: Callable[[Any], None]
    #: For workflows: run the body once. For functions: None (the actor calls `task`).
    run: Callable[[BodyInfo], Awaitable[Any]] | None = None
    #: For functions: the function as a task.
    task: TaskSpec | None = None
    #: Retries of the whole body (workflows); task attempts are never multiplied by it.
    retry: RetryPolicy | None = None
    #: The decorated user object, for lookups by identity.
    source: Any = None
    #: The declared type callers get the run's result back as (None: plain JSON).
    result_type: Any = None
    #: Seconds an invocation may take in all (a durable deadline set when it starts;
    #: past it the run is cancelled), or None.
    timeout_total: float | None = None


@attrs.frozen
class Final(Generic[ValueT, SaveT]):
    """`entrypoint.final(value=..., save=...)`: return `value`, save `save` as next `previous`.

    Generic in both: a body annotated ``-> entrypoint.final[str, int]`` makes a
    ``Workflow[..., str]`` whose next invocation sees an ``int`` as ``previous``.
    """

    value: ValueT
    save: SaveT


@dataclasses.dataclass(frozen=True, slots=True)
class Interrupt:
    """A pending question from `interrupt(value)`; answer it with `Command(resume=...)`.

    A dataclass whose `value` is plain JSON, so web frameworks (FastAPI, pydantic)
    serialise a returned ``{"__interrupt__": [...]}`` as ``{"value": ..., "id": ...}``.
    """

    value: Any
    id: str


@attrs.frozen
class Command:
    """A message to a paused run. `resume` answers its pending interrupt.

    With several interrupts pending, pass ``{interrupt_id: answer, ...}``; any
    subset may be answered at a time.
    """

    resume: Any = None
