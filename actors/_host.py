"""What an actor needs from the runtime that hosts it (a port, so actors never import runtime)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from opentelemetry.trace import Tracer

from perdure.actors._clock import Clock
from perdure.actors._targets import TargetSpec
from perdure.eventlog import Event, EventLog

if TYPE_CHECKING:
    from perdure.actors._actor import RunActor


class ActorHost(Protocol):
    @property
    def log(self) -> EventLog: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def tracer(self) -> Tracer: ...

    @property
    def attempt_linger(self) -> float:
        """Seconds an attempt-start event may wait to share a commit with the attempt's result."""
        ...

    @property
    def task_concurrency(self) -> int:
        """How many task attempts of one run may run at once."""
        ...

    def resolve_target(self, name: str) -> TargetSpec | None: ...

    def committed(self, actor: RunActor, events: list[Event]) -> None:
        """Called after each durable append: wake waiters, feed streams, tell the scheduler."""
        ...

    def publish_custom(self, run_id: str, item: Any) -> None:
        """A workflow's `writer(item)`: forward to `stream(mode="custom")` listeners."""
        ...

    def body_config(self, run_id: str) -> dict[str, Any]:
        """The `config` a workflow body is given."""
        ...
