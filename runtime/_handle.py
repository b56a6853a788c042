"""`RunHandle`: what `Runtime.start` returns — a run's id, status and result."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from perdure.eventlog import RunStatus

if TYPE_CHECKING:
    from perdure.runtime._runtime import Runtime


class RunHandle:
    """A started run: its id, its status, and a way to wait for its result."""

    def __init__(self, runtime: Runtime, run_id: str, target: str) -> None:
        self.runtime = runtime
        self.run_id = run_id
        self.target = target

    def __repr__(self) -> str:
        return f"RunHandle(run_id={self.run_id!r}, target={self.target!r})"

    async def result(self, timeout: float | None = None) -> Any:
        """Wait until the run settles; return its result (or its interrupts), or raise its error."""
        outcome = await self.runtime.wait(self.run_id, timeout=timeout)
        spec = self.runtime.registry.get(self.target)
        return outcome.unwrap(spec.result_type if spec is not None else None)

    async def status(self) -> RunStatus:
        return await self.runtime.status(self.run_id)

    async def send(
        self,
        message: Any,
        *,
        topic: str = "default",
        idempotency_key: str | None = None,
    ) -> None:
        """Send `message` to this run (see `Runtime.send`)."""
        await self.runtime.send(self.run_id, message, topic=topic, idempotency_key=idempotency_key)

    async def get_event(self, key: str, *, timeout: float | None = None) -> Any:
        """The latest value this run published under `key` (see `Runtime.get_event`)."""
        return await self.runtime.get_event(self.run_id, key, timeout=timeout)
