"""`Client`: call durable functions and workflows by name, from sync or async code."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Self, TypeVar

from perdure._bridge import Bridge, ClientUsageError
from perdure._workflow_api import refuse_nested
from perdure.actors import current_scope
from perdure.eventlog import EventLog
from perdure.runtime import MISSING, Outcome, Runtime, store_spec

T = TypeVar("T")

__all__ = ["Client", "ClientUsageError"]


class Client:
    """Runs registered functions and workflows on the embedded store.

    ``Client()`` uses ``PERDURE_STORE`` (alias ``PERDURE_PATH``) or ``./.perdure``;
    ``Client(store=...)`` (a folder or a ``postgresql://`` URL; ``path=`` is the
    same) or ``Client(log=...)`` picks another. Calls go to the runtime open on
    that store in this process, wherever it runs: inside ``async with
    Runtime(...)`` that runtime; from a thread (a web framework's ``def``
    handler) the runtime its app opened on another event loop; otherwise a
    runtime on a background thread shared by every client of the store, so
    ``client.run(...)`` works from plain synchronous code. Use ``await
    client.arun(...)`` in async code.

    The background runtime holds the store until `close()` (or the end of a
    ``with Client(...) as client:`` / ``async with`` block, or interpreter
    exit); closing the last client of a store releases it, so a `Runtime` can
    open it in this process afterwards.
    """

    def __new__(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        log: EventLog | None = None,
        url: str | None = None,
        token: str | None = None,
        **options: Any,
    ) -> Client:
        """``Client(url="http://host:port", token=...)`` is a client of a `perdure serve`
        gateway (`perdure.serve.RemoteClient`, the ``serve`` extra); otherwise of the store."""
        if url is not None and cls is Client:
            from perdure.serve._remote import RemoteClient

            return super().__new__(RemoteClient)
        return super().__new__(cls)

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        log: EventLog | None = None,
        store: str | os.PathLike[str] | None = None,
        url: str | None = None,
        token: str | None = None,
    ) -> None:
        if url is not None or token is not None:
            raise ClientUsageError("token=... goes with url=... (a gateway's address)")
        if path is not None and store is not None:
            raise TypeError("Client takes a store or a path (the same thing), not both")
        spec = store if store is not None else path
        self._path = store_spec(spec) if spec is not None else None
        self._log = log
        self._bridge = Bridge(log=log, path=self._path, hold=True)
        self._bridge.closed_message = (
            f"{self!r} is closed; make a new Client to call the store again"
        )

    def __repr__(self) -> str:
        return f"Client({self._bridge.where()!r})"

    def close(self) -> None:
        """Release the store: later calls raise `ClientUsageError`. Closing twice is fine.

        The shared background runtime closes when no other client of the store
        uses it (calls still running finish first); a `Runtime` the
        application opened itself is not affected.
        """
        self._bridge.close()

    async def aclose(self) -> None:
        """Async `close` (the background runtime is closed off this event loop)."""
        await asyncio.to_thread(self._bridge.close)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _call(
        self,
        make: Callable[[Runtime], Awaitable[T]],
        what: str,
        peek: Callable[[Runtime], Any] | None = None,
    ) -> T:
        return self._bridge.call(
            make,
            f"Client.{what}() blocks, and it was called inside a running event loop; "
            f"use `await client.a{what}(...)` instead",
            peek,
        )

    async def _acall(self, make: Callable[[Runtime], Awaitable[T]]) -> T:
        return await self._bridge.acall(make)

    def run(
        self,
        name: Any,
        input: Any = None,
        *,
        idempotency_key: str | None = None,
        timeout: float | None = None,
        run_id: str | None = None,
    ) -> Any:
        """Run a function (input: dict of keyword arguments) or workflow by name; return its result.

        With `idempotency_key`, the same key returns the first call's result
        (or raises its final error) without running the body again. A workflow
        that pauses returns ``{"__interrupt__": [...]}``: give it a `run_id`
        (its thread id) to answer it later with `resume(run_id, value)`.
        """
        scope = current_scope.get()  # the caller's: the call runs on the runtime's loop

        async def go(rt: Runtime) -> Any:
            _refuse_nested_workflow(rt, name, "run", scope)
            return await rt.run(
                name, input, idempotency_key=idempotency_key, timeout=timeout, run_id=run_id
            )

        def peek(rt: Runtime) -> Any:
            """A used key whose run completed: its result, read in this thread."""
            _refuse_nested_workflow(rt, name, "run", scope)
            return rt.keyed_now(name, input, idempotency_key) if idempotency_key else MISSING

        return self._call(go, "run", peek if run_id is None else None)

    async def arun(
        self,
        name: Any,
        input: Any = None,
        *,
        idempotency_key: str | None = None,
        timeout: float | None = None,
        run_id: str | None = None,
    ) -> Any:
        """Async `run`."""
        scope = current_scope.get()

        async def go(rt: Runtime) -> Any:
            _refuse_nested_workflow(rt, name, "arun", scope)
            return await rt.run(
                name, input, idempotency_key=idempotency_key, timeout=timeout, run_id=run_id
            )

        return await self._acall(go)

    def resume(self, run_id: str, value: Any) -> Any:
        """Answer a paused run's interrupt and wait until it settles again; return its result."""

        async def go(rt: Runtime) -> Any:
            await rt.resume(run_id, value)
            return _result(rt, await rt.wait(run_id))

        return self._call(go, "resume")

    async def aresume(self, run_id: str, value: Any) -> Any:
        async def go(rt: Runtime) -> Any:
            await rt.resume(run_id, value)
            return _result(rt, await rt.wait(run_id))

        return await self._acall(go)

    def continue_run(self, run_id: str) -> Any:
        """Reopen a failed, parked or cancelled run from its last completed step (see
        `Runtime.continue_run`), wait until it settles again and return its result.

        A run with nothing to continue (running, waiting, completed) raises
        `InvalidResumeError`.
        """

        async def go(rt: Runtime) -> Any:
            await rt.continue_run(run_id)
            return (await rt.wait(run_id)).unwrap()

        return self._call(go, "continue_run")

    async def acontinue_run(self, run_id: str) -> Any:
        """Async `continue_run`."""

        async def go(rt: Runtime) -> Any:
            await rt.continue_run(run_id)
            return (await rt.wait(run_id)).unwrap()

        return await self._acall(go)

    def send(
        self,
        run_id: str,
        message: Any,
        *,
        topic: str = "default",
        idempotency_key: str | None = None,
    ) -> None:
        """Send `message` to a run; it is in the run's log when this returns (see
        `Runtime.send`). The workflow takes it with ``receive(topic)``."""
        self._call(
            lambda rt: rt.send(run_id, message, topic=topic, idempotency_key=idempotency_key),
            "send",
        )

    async def asend(
        self,
        run_id: str,
        message: Any,
        *,
        topic: str = "default",
        idempotency_key: str | None = None,
    ) -> None:
        """Async `send`."""
        await self._acall(
            lambda rt: rt.send(run_id, message, topic=topic, idempotency_key=idempotency_key)
        )

    def get_event(self, run_id: str, key: str, *, timeout: float | None = None) -> Any:
        """The latest value the run published under `key` with ``set_event`` (None if none
        yet); with `timeout`, wait up to that many seconds for the first one."""
        return self._call(lambda rt: rt.get_event(run_id, key, timeout=timeout), "get_event")

    async def aget_event(self, run_id: str, key: str, *, timeout: float | None = None) -> Any:
        """Async `get_event`."""
        return await self._acall(lambda rt: rt.get_event(run_id, key, timeout=timeout))

    def cancel(self, run_id: str) -> None:
        self._call(lambda rt: rt.cancel(run_id), "cancel")


def _refuse_nested_workflow(rt: Runtime, name: Any, what: str, scope: Any) -> None:
    """A workflow run from another workflow's body is not recorded: `NestedWorkflowError`.
    Functions stay callable there, and anything from a @task or @function body."""
    if scope is None or scope.body is None:
        return
    spec = rt.registry.get(name)
    if spec is not None and spec.kind != "function":
        refuse_nested(
            "Client()",
            what,
            scope,
            call=f"Client().arun({spec.name!r}, x, run_id=thread_id)",
        )


def _result(rt: Runtime, outcome: Outcome) -> Any:
    """`outcome.unwrap()`, with the result rebuilt as its target's declared type."""
    spec = rt.registry.get(outcome.target)
    return outcome.unwrap(spec.result_type if spec is not None else None)
