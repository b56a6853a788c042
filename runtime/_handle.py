"""`RunHandle`: what `Runtime.start` and `Runtime.handle` return: one run, and its calls."""

from __future__ import annotations

from typing import Any, Protocol

from perdure.eventlog import RunStatus
from perdure.runtime._outcome import Outcome
from perdure.runtime._registry import Registry


class RunCalls(Protocol):
    """What a handle calls: the `Runtime` that made it (a port, so this module needs no Runtime)."""

    @property
    def registry(self) -> Registry: ...

    async def wait(self, run_id: str, timeout: float | None = None) -> Outcome: ...

    async def status(self, run_id: str) -> RunStatus: ...

    async def resume(self, run_id: str, value: Any) -> None: ...

    async def cancel(self, run_id: str, reason: str = ...) -> None: ...

    async def continue_run(self, run_id: str, *, strict: bool = ...) -> None: ...

    async def send(
        self,
        run_id: str,
        message: Any,
        *,
        topic: str = ...,
        idempotency_key: str | None = ...,
    ) -> None: ...

    async def get_event(self, run_id: str, key: str, *, timeout: float | None = ...) -> Any: ...


class RunHandle:
    """A run: its id and target, and the runtime's calls for it (status, result, resume,
    cancel, continue, messages). Each method delegates to the `Runtime` with this run's id.
    """

    def __init__(self, runtime: RunCalls, run_id: str, target: str) -> None:
        #: The `Runtime` this handle calls.
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
        """The run's status as stored (running, waiting, completed, failed, cancelled, parked).

        Reads the store's runs index: it answers at once, even while the run is busy.
        """
        return await self.runtime.status(self.run_id)

    async def resume(self, value: Any) -> None:
        """Answer the run's pending interrupt(s) (see `Runtime.resume`); returns once the
        answer is recorded: ``await handle.result()`` waits for the run to settle again."""
        await self.runtime.resume(self.run_id, value)

    async def cancel(self, reason: str = "cancelled by request") -> None:
        """Cancel the run (see `Runtime.cancel`); a settled run is left as it is."""
        await self.runtime.cancel(self.run_id, reason)

    async def continue_(self) -> None:
        """Reopen a failed, parked or cancelled run from its last completed step (see
        `Runtime.continue_run`); ``await handle.result()`` waits for its new outcome."""
        await self.runtime.continue_run(self.run_id)

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
