"""Messages an actor's mailbox carries. Replies travel back through asyncio futures.

Messages posted by user code (task calls, interrupts, sleeps, body/attempt
results) carry the actor incarnation that produced them; a rebuilt actor drops
messages from an earlier incarnation, whose body and attempts are gone.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any

import attrs

from perdure.actors._targets import TargetSpec, TaskSpec


@attrs.define(slots=True, kw_only=True)
class Start:
    spec: TargetSpec
    input: Any
    input_digest: str
    idempotency_key: str | None
    trace_context: dict[str, str]
    reply: asyncio.Future[None]
    new_invocation: bool = False
    #: Commit `RunStarted` before the body runs and before `reply` (a `start()` handle
    #: promises a recorded run). Otherwise it is soft: it goes out with the run's first
    #: hard event (or after the linger), one commit fewer for `run()` and `invoke`.
    durable: bool = True
    #: The caller's config for a workflow invocation (recorded in `RunStarted`).
    config: dict[str, Any] = attrs.field(factory=dict)
    #: When the invocation must be done by (clock seconds), besides `spec.timeout_total`.
    deadline: float | None = None


@attrs.define(slots=True, kw_only=True)
class ExecuteTask:
    incarnation: int
    position: str
    spec: TaskSpec
    args: list[Any]
    kwargs: dict[str, Any]
    digest: str
    future: asyncio.Future[Any]
    #: The stored form ([args, kwargs]) when it differs from the values the task is
    #: called with (tagged types such as datetime); None when they are the same.
    stored: list[Any] | None = None
    #: the scope's view of the log when the code asked (see `Scope.seen`)
    seen_seq: int = -1
    #: The caller's thread runs the first attempt itself (`Execution.run_inline`): the
    #: actor records its start and waits for its `AttemptDone`, starting nothing.
    inline: bool = False


@attrs.define(slots=True, kw_only=True)
class AttemptDone:
    incarnation: int
    position: str
    attempt: int
    outcome: str  # "ok" | "error" | "suspended"
    value: Any = None
    error: BaseException | None = None
    #: From an attempt run in its caller's thread (`Execution.run_inline`): with its
    #: call, whose start may come with it (or after it, sent by the watchdog meanwhile).
    inline: bool = False
    call: ExecuteTask | None = None


@attrs.define(slots=True, kw_only=True)
class InterruptRequest:
    incarnation: int
    position: str
    interrupt_id: str
    value: Any
    digest: str
    seen_seq: int = -1
    #: seconds before the interrupt times out (`InterruptTimeoutError`), or None
    timeout: float | None = None


@attrs.define(slots=True, kw_only=True)
class SleepRequest:
    incarnation: int
    position: str
    seconds: float
    seen_seq: int = -1


@attrs.define(slots=True, kw_only=True)
class BodyDone:
    incarnation: int
    generation: int
    outcome: str  # "returned" | "raised" | "suspended" | "cancelled"
    value: Any = None
    error: BaseException | None = None


@attrs.define(slots=True, kw_only=True)
class Resume:
    value: Any
    reply: asyncio.Future[None]
    #: the store inbox message's token (a resume sent from another process), else ""
    token: str = ""


@attrs.define(slots=True, kw_only=True)
class Continue:
    reply: asyncio.Future[None]
    #: Refuse (InvalidResumeError) a run that is not failed, parked or cancelled;
    #: otherwise (``invoke(None)`` on a thread) leave it as it is.
    strict: bool = True
    #: The inbox message's token when it came from another process (see `RunContinued`).
    token: str = ""


@attrs.define(slots=True, kw_only=True)
class Cancel:
    reason: str
    reply: asyncio.Future[None]


@attrs.define(slots=True, kw_only=True)
class FireTimer:
    timer_id: str


@attrs.define(slots=True)
class Flush:
    """Commit deferred events (attempt starts that outlived the linger)."""


@attrs.define(slots=True)
class Wake:
    """Rehydrate and carry on (crash recovery at start-up)."""


@attrs.define(slots=True, kw_only=True)
class Stop:
    """Stop this incarnation (eviction or shutdown) once it is idle or at once if `force`."""

    force: bool = False


@attrs.define(slots=True, kw_only=True)
class ReceiveRequest:
    incarnation: int
    position: str
    topic: str
    timeout: float | None
    seen_seq: int = -1
    #: A sync body's thread waits on this for the message (see `Execution.park_thread`).
    thread_waiter: concurrent.futures.Future[Any] | None = None


@attrs.define(slots=True, kw_only=True)
class UnparkReceive:
    """A sync body's thread stops waiting in `receive()` (it gives its thread back): unless
    the message is on its way to `waiter`, it is cancelled and the body stops there."""

    incarnation: int
    position: str
    waiter: concurrent.futures.Future[Any]


@attrs.define(slots=True, kw_only=True)
class PublishEvent:
    incarnation: int
    position: str
    key: str
    value: Any


@attrs.define(slots=True, kw_only=True)
class SendMessage:
    topic: str
    value: Any
    idempotency_key: str | None
    reply: asyncio.Future[None]


@attrs.define(slots=True, kw_only=True)
class CancelReceive:
    """An `areceive()` waiting in a child task of the body was cancelled (it lost a race)."""

    incarnation: int
    position: str


@attrs.define(slots=True, kw_only=True)
class CancelInterrupt:
    """An `ainterrupt()` waiting in the body was cancelled (it lost a race)."""

    incarnation: int
    position: str
