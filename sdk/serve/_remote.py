"""`Client(url=...)`: the same calls as the embedded `Client`, sent to a `perdure serve` gateway.

A run's failure arrives as `RunFailedError` with the remote traceback text, an
unknown run as `RunNotFoundError`, a bad input as the error the embedded client
raises: the gateway sends the error's type and fields, and this side rebuilds it
(see `perdure.serve._wire`). The gateway's address and token are the only
state; web workers of any server, scripts and notebooks can each hold one.
"""

from __future__ import annotations

import os
import ssl
from typing import Any

import httpx2

from perdure._bridge import ClientUsageError, in_event_loop
from perdure._client import Client
from perdure._workflow_api import refuse_nested
from perdure.actors import current_scope
from perdure.eventlog import EventLog, check_json, fresh
from perdure.runtime import Outcome, RuntimeClosedError, default_registry
from perdure.serve._wire import CSRF_HEADER, error_from_json, outcome_from_json

__all__ = ["RemoteClient"]

#: Seconds to wait for a gateway that does not answer a call which does not wait on a run.
DEFAULT_TIMEOUT = 30.0
_ANSWER = "the answer to an interrupt cannot be stored"


def _name(target: Any) -> str:
    spec = getattr(target, "__perdure_target__", None)
    name = getattr(spec, "name", None)
    if isinstance(name, str):
        return name
    if isinstance(target, str):
        return target
    raise TypeError(
        f"cannot run {target!r}: pass a registered name, or an object decorated with "
        "@function or @entrypoint"
    )


def _refuse_nested_workflow(target: str, what: str) -> None:
    """As the embedded client: a workflow run from another workflow's body is not recorded
    (`NestedWorkflowError`); functions stay callable. Known when this process has the
    target registered (a target it does not know goes to the gateway)."""
    scope = current_scope.get()
    if scope is None or scope.body is None:
        return
    spec = default_registry.get(target)
    if spec is not None and spec.kind != "function":
        refuse_nested(
            "Client()", what, scope, call=f"Client().arun({spec.name!r}, x, run_id=thread_id)"
        )


def _plain(input: Any, target: str) -> Any:
    """`input` as JSON for the wire: checked as the embedded client checks it, and tagged
    values (dataclasses, datetimes, ...) as their plain JSON, which the gateway's runtime
    rebuilds as the declared types of the target's parameters, as it does a stored input."""
    return fresh(check_json(input, "input", where=f"input of {target!r} cannot be stored"))


def _unwrap(data: dict[str, Any]) -> Any:
    """The outcome's result (rebuilt as its target's declared type when this process has the
    target registered, as the embedded client does), or its error raised."""
    outcome: Outcome = outcome_from_json(data)
    spec = default_registry.get(outcome.target)
    return outcome.unwrap(spec.result_type if spec is not None else None)


class RemoteClient(Client):
    """`Client(url="http://host:port", token=...)`: calls go to a `perdure serve` gateway.

    token: the gateway's token (default ``PERDURE_TOKEN``), sent as a bearer header.
    timeout: seconds to wait for an answer to a call that does not wait on a
        run (a run's own `timeout` bounds the calls that do).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        log: EventLog | None = None,
        url: str | None = None,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if path is not None or log is not None:
            raise ClientUsageError(
                "Client(url=...) talks to a gateway; it takes no path or log "
                "(the gateway's `perdure serve --store` chooses the store)"
            )
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(f"Client(url=...) takes an http:// or https:// address, got {url!r}")
        self.url = url.rstrip("/")
        token = token if token is not None else (os.environ.get("PERDURE_TOKEN") or None)
        self._headers = {CSRF_HEADER: "1", "Accept": "application/json"}
        if token is not None:
            self._headers["Authorization"] = f"Bearer {token}"
        self._timeout = timeout
        # One TLS context for every connection: building one costs ~30 ms of CPU, and the
        # async calls open a client each (none for http://, where no TLS is spoken).
        self._verify: ssl.SSLContext | bool = (
            httpx2.create_ssl_context() if self.url.startswith("https://") else False
        )
        self._sync: httpx2.Client | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"Client(url={self.url!r})"

    # -- transport -------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ClientUsageError(f"{self!r} is closed; make a new Client to call the gateway")

    def _timeouts(self, wait: float | None, waits: bool) -> httpx2.Timeout:
        if not waits:
            return httpx2.Timeout(self._timeout)
        return httpx2.Timeout(self._timeout, read=None if wait is None else wait + self._timeout)

    def _answer(self, response: httpx2.Response) -> Any:
        try:
            body = response.json()
        except ValueError:
            body = response.text
        if response.status_code >= 400:
            raise error_from_json(body, response.status_code)
        return body

    def _unreachable(self, exc: Exception) -> RuntimeClosedError:
        return RuntimeClosedError(f"cannot reach the gateway at {self.url}: {exc}")

    def _request(
        self,
        method: str,
        path: str,
        what: str,
        body: dict[str, Any] | None = None,
        *,
        wait: float | None = None,
        waits: bool = False,
    ) -> Any:
        self._check_open()
        if in_event_loop():
            raise ClientUsageError(
                f"Client.{what}() blocks, and it was called inside a running event loop; "
                f"use `await client.a{what}(...)` instead"
            )
        if self._sync is None:
            self._sync = httpx2.Client(
                base_url=self.url, headers=self._headers, verify=self._verify
            )
        try:
            response = self._sync.request(
                method, path, json=body, timeout=self._timeouts(wait, waits)
            )
        except httpx2.TransportError as exc:
            raise self._unreachable(exc) from exc
        return self._answer(response)

    async def _arequest(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        wait: float | None = None,
        waits: bool = False,
    ) -> Any:
        self._check_open()
        # One async HTTP client per call: a pooled one would belong to one event loop, and
        # its connections would outlive `asyncio.run` (loopback connections are cheap).
        try:
            async with httpx2.AsyncClient(
                base_url=self.url, headers=self._headers, verify=self._verify
            ) as http:
                response = await http.request(
                    method, path, json=body, timeout=self._timeouts(wait, waits)
                )
        except httpx2.TransportError as exc:
            raise self._unreachable(exc) from exc
        return self._answer(response)

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connections: later calls raise `ClientUsageError`. Closing twice is fine."""
        self._closed = True
        if self._sync is not None:
            self._sync.close()
            self._sync = None

    async def aclose(self) -> None:
        self.close()

    # -- calls -----------------------------------------------------------------------------

    @staticmethod
    def _start_body(
        name: Any,
        input: Any,
        *,
        idempotency_key: str | None,
        run_id: str | None,
        wait: bool,
        timeout: float | None,
        what: str,
    ) -> dict[str, Any]:
        target = _name(name)
        _refuse_nested_workflow(target, what)
        body: dict[str, Any] = {"target": target, "input": _plain(input, target), "wait": wait}
        if idempotency_key is not None:
            body["idempotency_key"] = idempotency_key
        if run_id is not None:
            body["run_id"] = run_id
        if timeout is not None:
            body["timeout"] = timeout
        return body

    def run(
        self,
        name: Any,
        input: Any = None,
        *,
        idempotency_key: str | None = None,
        timeout: float | None = None,
        run_id: str | None = None,
    ) -> Any:
        """Run a function or workflow on the gateway; return its result (see `Client.run`)."""
        body = self._start_body(
            name,
            input,
            idempotency_key=idempotency_key,
            run_id=run_id,
            wait=True,
            timeout=timeout,
            what="run",
        )
        data = self._request("POST", "/api/runs", "run", body, wait=timeout, waits=True)
        return _unwrap(data)

    async def arun(
        self,
        name: Any,
        input: Any = None,
        *,
        idempotency_key: str | None = None,
        timeout: float | None = None,
        run_id: str | None = None,
    ) -> Any:
        body = self._start_body(
            name,
            input,
            idempotency_key=idempotency_key,
            run_id=run_id,
            wait=True,
            timeout=timeout,
            what="arun",
        )
        data = await self._arequest("POST", "/api/runs", body, wait=timeout, waits=True)
        return _unwrap(data)

    def start(
        self,
        name: Any,
        input: Any = None,
        *,
        idempotency_key: str | None = None,
        run_id: str | None = None,
    ) -> str:
        """Start a run on the gateway without waiting for it; return its run id."""
        body = self._start_body(
            name,
            input,
            idempotency_key=idempotency_key,
            run_id=run_id,
            wait=False,
            timeout=None,
            what="start",
        )
        return str(self._request("POST", "/api/runs", "start", body)["run_id"])

    async def astart(
        self,
        name: Any,
        input: Any = None,
        *,
        idempotency_key: str | None = None,
        run_id: str | None = None,
    ) -> str:
        body = self._start_body(
            name,
            input,
            idempotency_key=idempotency_key,
            run_id=run_id,
            wait=False,
            timeout=None,
            what="astart",
        )
        return str((await self._arequest("POST", "/api/runs", body))["run_id"])

    def result(self, run_id: str, timeout: float | None = None) -> Any:
        """Wait until the run settles; its result (or interrupts), or its error raised."""
        query = "" if timeout is None else f"?timeout={timeout}"
        data = self._request(
            "GET", f"/api/runs/{_quote(run_id)}/outcome{query}", "result", wait=timeout, waits=True
        )
        return _unwrap(data)

    async def aresult(self, run_id: str, timeout: float | None = None) -> Any:
        query = "" if timeout is None else f"?timeout={timeout}"
        data = await self._arequest(
            "GET", f"/api/runs/{_quote(run_id)}/outcome{query}", wait=timeout, waits=True
        )
        return _unwrap(data)

    def resume(self, run_id: str, value: Any) -> Any:
        """Answer a paused run's interrupt and wait until it settles again; return its result."""
        value = fresh(check_json(value, "value", where=_ANSWER))
        data = self._request(
            "POST",
            f"/api/runs/{_quote(run_id)}/resume",
            "resume",
            {"value": value, "wait": True},
            waits=True,
        )
        return _unwrap(data)

    async def aresume(self, run_id: str, value: Any) -> Any:
        value = fresh(check_json(value, "value", where=_ANSWER))
        data = await self._arequest(
            "POST", f"/api/runs/{_quote(run_id)}/resume", {"value": value, "wait": True}, waits=True
        )
        return _unwrap(data)

    def continue_run(self, run_id: str) -> Any:
        """Reopen a failed, parked or cancelled run from its last completed step, wait until
        it settles again and return its result (see `Client.continue_run`)."""
        data = self._request(
            "POST",
            f"/api/runs/{_quote(run_id)}/continue",
            "continue_run",
            {"wait": True},
            waits=True,
        )
        return _unwrap(data)

    async def acontinue_run(self, run_id: str) -> Any:
        data = await self._arequest(
            "POST", f"/api/runs/{_quote(run_id)}/continue", {"wait": True}, waits=True
        )
        return _unwrap(data)

    def cancel(self, run_id: str, reason: str | None = None) -> None:
        body = {} if reason is None else {"reason": reason}
        self._request("POST", f"/api/runs/{_quote(run_id)}/cancel", "cancel", body)

    async def acancel(self, run_id: str, reason: str | None = None) -> None:
        body = {} if reason is None else {"reason": reason}
        await self._arequest("POST", f"/api/runs/{_quote(run_id)}/cancel", body)

    def _send_body(self, message: Any, topic: str, idempotency_key: str | None) -> dict[str, Any]:
        stored = check_json(message, "message", where="a message cannot be stored")
        body: dict[str, Any] = {"message": fresh(stored), "topic": topic}
        if idempotency_key is not None:
            body["idempotency_key"] = idempotency_key
        return body

    def send(
        self,
        run_id: str,
        message: Any,
        *,
        topic: str = "default",
        idempotency_key: str | None = None,
    ) -> None:
        """Send `message` to a run through the gateway (recorded before this returns)."""
        body = self._send_body(message, topic, idempotency_key)
        self._request("POST", f"/api/runs/{_quote(run_id)}/messages", "send", body)

    async def asend(
        self,
        run_id: str,
        message: Any,
        *,
        topic: str = "default",
        idempotency_key: str | None = None,
    ) -> None:
        body = self._send_body(message, topic, idempotency_key)
        await self._arequest("POST", f"/api/runs/{_quote(run_id)}/messages", body)

    def _value_path(self, run_id: str, key: str, timeout: float | None) -> str:
        query = "" if timeout is None else f"?timeout={timeout}"
        return f"/api/runs/{_quote(run_id)}/values/{_quote(key)}{query}"

    def get_event(self, run_id: str, key: str, *, timeout: float | None = None) -> Any:
        """The latest value the run published under `key` (None if none), as the embedded
        `Client.get_event`."""
        path = self._value_path(run_id, key, timeout)
        return self._request("GET", path, "get_event", wait=timeout, waits=True)["value"]

    async def aget_event(self, run_id: str, key: str, *, timeout: float | None = None) -> Any:
        path = self._value_path(run_id, key, timeout)
        data = await self._arequest("GET", path, wait=timeout, waits=True)
        return data["value"]

    def status(self, run_id: str) -> str:
        """The run's status (running, waiting, completed, failed, cancelled or parked)."""
        return str(self.get_run(run_id)["status"])

    def get_run(self, run_id: str) -> dict[str, Any]:
        """What the gateway tells about a run (as ``GET /api/runs/{run_id}``)."""
        data: dict[str, Any] = self._request("GET", f"/api/runs/{_quote(run_id)}", "get_run")
        return data


def _quote(run_id: str) -> str:
    from urllib.parse import quote

    if not isinstance(run_id, str) or not run_id:
        raise ValueError(f"run_id must be a non-empty string, got {run_id!r}")
    return quote(run_id, safe="")
