"""`Client`: call durable functions and workflows by name, from sync or async code."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from perdure.eventlog import EventLog, PerdureError
from perdure.runtime import (
    BackgroundRuntime,
    Runtime,
    background_runtime,
    default_store_path,
    find_runtime,
    store_spec,
)

T = TypeVar("T")


class ClientUsageError(PerdureError, RuntimeError):
    """A blocking `Client` method was called from inside a running event loop."""


class Client:
    """Runs registered functions and workflows on the embedded store.

    ``Client()`` uses ``PERDURE_STORE`` (alias ``PERDURE_PATH``) or ``./.perdure``;
    ``Client(store=...)`` (a folder or a ``postgresql://`` URL; ``path=`` is the
    same) or ``Client(log=...)`` picks another. The runtime lives on a background
    thread shared by every client of the same store, so ``client.run(...)``
    works from plain synchronous code; use ``await client.arun(...)`` in async
    code (inside ``async with Runtime(...)`` that runtime is used).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        log: EventLog | None = None,
        store: str | os.PathLike[str] | None = None,
    ) -> None:
        if path is not None and store is not None:
            raise TypeError("Client takes a store or a path (the same thing), not both")
        spec = store if store is not None else path
        self._path = store_spec(spec) if spec is not None else None
        self._log = log

    def __repr__(self) -> str:
        where = "log" if self._log is not None else (self._path or default_store_path())
        return f"Client({where!r})"

    def _background(self) -> BackgroundRuntime:
        if self._log is not None:
            return background_runtime(log=self._log)
        return background_runtime(path=self._path or default_store_path())

    def _local(self) -> Runtime | None:
        return find_runtime(log=self._log, path=self._path)

    def _call(self, make: Callable[[Runtime], Awaitable[T]], what: str) -> T:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return self._background().call(make)
        raise ClientUsageError(
            f"Client.{what}() blocks, and it was called inside a running event loop; "
            f"use `await client.a{what}(...)` instead"
        )

    async def _acall(self, make: Callable[[Runtime], Awaitable[T]]) -> T:
        runtime = self._local()
        if runtime is not None:
            return await make(runtime)
        return await asyncio.wrap_future(self._background().submit(make))

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
        return self._call(
            lambda rt: rt.run(
                name, input, idempotency_key=idempotency_key, timeout=timeout, run_id=run_id
            ),
            "run",
        )

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
        return await self._acall(
            lambda rt: rt.run(
                name, input, idempotency_key=idempotency_key, timeout=timeout, run_id=run_id
            )
        )

    def resume(self, run_id: str, value: Any) -> Any:
        """Answer a paused run's interrupt and wait until it settles again; return its result."""

        async def go(rt: Runtime) -> Any:
            await rt.resume(run_id, value)
            return (await rt.wait(run_id)).unwrap()

        return self._call(go, "resume")

    async def aresume(self, run_id: str, value: Any) -> Any:
        async def go(rt: Runtime) -> Any:
            await rt.resume(run_id, value)
            return (await rt.wait(run_id)).unwrap()

        return await self._acall(go)

    def cancel(self, run_id: str) -> None:
        self._call(lambda rt: rt.cancel(run_id), "cancel")
