"""The ASGI app of `perdure serve`: a JSON API (with an OpenAPI document), SSE and the web UI.

`create_app(registry, path=...)` returns a Starlette app whose lifespan opens
a `Runtime` on the store (it recovers and drives runs) and closes it on
shutdown. Only targets of `registry` (the loaded ``--app``) ever run: a
request names a target, it never names code to import.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

from perdure.cli._render import run_details, run_row
from perdure.eventlog import RUN_STATUSES, EventLog, to_dict
from perdure.runtime import (
    Closed,
    Committed,
    Custom,
    Registry,
    Replayer,
    RunNotFoundError,
    Runtime,
    Settled,
    Subscription,
)
from perdure.serve._openapi import openapi_document
from perdure.serve._paging import PagingError, list_page
from perdure.serve._security import (
    COOKIE,
    CSRF_HEADER,
    MAX_BODY_BYTES,
    BodyTooLargeError,
    Guard,
    check_size,
)
from perdure.serve._stats import history
from perdure.serve._wire import error_to_json, outcome_to_json

__all__ = ["create_app"]

_PAGE_DEFAULT = 50
_PAGE_MAX = 500
_EVENTS_MAX = 1000
_KEEPALIVE = 15.0
_HISTORY_TTL = 2.0
_STATIC = {
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
#: Headers on every UI response: no framing, no inline script, no sniffing.
_UI_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


class ApiError(Exception):
    """A request the API refuses with `status` (bad paging arguments, a missing field)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _json(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(data, status_code=status, headers={"Cache-Control": "no-store"})


def _problem(status: int, kind: str, message: str) -> JSONResponse:
    return _json({"error": {"type": kind, "message": message, "fields": {}}}, status)


async def read_json(request: Request) -> dict[str, Any]:
    """The request's JSON object body (at most `MAX_BODY_BYTES`; empty body: ``{}``)."""
    check_size(request.headers.get("content-length"))
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise BodyTooLargeError(f"the request body is over {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, f"the request body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return data


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _int(request: Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise ApiError(400, f"{name} must be a whole number, got {text!r}") from None
    if not low <= value <= high:
        raise ApiError(400, f"{name} must be between {low} and {high}, got {value}")
    return value


def _timeout(body: dict[str, Any]) -> float | None:
    value = body.get("timeout")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1e7:
        raise ApiError(400, f"timeout must be a positive number of seconds, got {value!r}")
    return float(value)


def _optional_str(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise ApiError(400, f"{name} must be a string, got {type(value).__name__}")
    return value


# -- the app -------------------------------------------------------------------------------------


def create_app(
    registry: Registry,
    *,
    path: str | None = None,
    log: EventLog | None = None,
    token: str | None = None,
    replay_timeout: float = 30.0,
) -> Starlette:
    """The gateway's ASGI app; its lifespan opens a `Runtime` on `path` (or `log`)."""
    guard = Guard(token)
    runtime = Runtime(path=path, log=log, registry=registry)
    replayer = Replayer.from_registry(registry, timeout=replay_timeout)

    Handler = Callable[[Request], Awaitable[Response]]

    def api(handler: Handler, *, write: bool = False, public: bool = False) -> Handler:
        async def wrapped(request: Request) -> Response:
            refused = guard.host_refusal(request.headers.get("host"))
            if refused is not None:
                return _problem(403, "Forbidden", refused)
            if not public and not guard.allowed(
                request.headers.get("authorization"), request.cookies.get(COOKIE)
            ):
                return _problem(401, "Unauthorized", "a token is required (Authorization: Bearer)")
            if write:
                refusal = Guard.write_refusal(
                    request.headers.get(CSRF_HEADER),
                    request.headers.get("origin"),
                    _origin(request),
                )
                if refusal is not None:
                    return _problem(403, "Forbidden", refusal)
            try:
                return await handler(request)
            except BodyTooLargeError as exc:
                return _problem(413, "PayloadTooLarge", str(exc))
            except ApiError as exc:
                return _problem(exc.status, "BadRequest", str(exc))
            except PagingError as exc:
                return _problem(400, "BadRequest", str(exc))
            except Exception as exc:
                status, body = error_to_json(exc)
                return _json(body, status)

        return wrapped

    def ui(handler: Handler) -> Handler:
        async def wrapped(request: Request) -> Response:
            refused = guard.host_refusal(request.headers.get("host"))
            if refused is not None:
                return Response(refused, status_code=403, media_type="text/plain")
            if not guard.allowed(None, request.cookies.get(COOKIE)):
                return RedirectResponse("/login", status_code=303)
            response = await handler(request)
            response.headers.update(_UI_HEADERS)
            return response

        return wrapped

    # -- runs ---------------------------------------------------------------------------------

    async def start_run(request: Request) -> Response:
        body = await read_json(request)
        target = body.get("target")
        if not isinstance(target, str) or not target:
            raise ApiError(400, "target must be the name of a registered function or workflow")
        run_id = _optional_str(body, "run_id")
        key = _optional_str(body, "idempotency_key")
        timeout = _timeout(body)
        handle = await runtime.start(target, body.get("input"), run_id=run_id, idempotency_key=key)
        if not body.get("wait"):
            return _json({"run_id": handle.run_id, "target": handle.target}, 202)
        return _json(outcome_to_json(await runtime.wait(handle.run_id, timeout=timeout)))

    async def list_runs(request: Request) -> Response:
        params = request.query_params
        page, cursor = await list_page(
            runtime.log,
            status=params.get("status") or None,
            target=params.get("target") or None,
            text=params.get("q") or None,
            limit=_int(request, "limit", _PAGE_DEFAULT, 1, _PAGE_MAX),
            cursor=params.get("cursor") or None,
            since=_float_param(request, "since"),
        )
        return _json({"runs": [run_row(info) for info in page], "next_cursor": cursor})

    async def get_run(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        info = await runtime.get_run(run_id)
        if info is None:
            raise RunNotFoundError(f"no run with id {run_id!r} in this store", run_id=run_id)
        state = await runtime.state(run_id)
        return _json(run_details(state, info, info.next_seq))

    async def run_events(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        start = _int(request, "from", 0, 0, 2**62)
        limit = _int(request, "limit", 200, 1, _EVENTS_MAX)
        if await runtime.get_run(run_id) is None:
            raise RunNotFoundError(f"no run with id {run_id!r} in this store", run_id=run_id)
        found = await runtime.log.read(run_id, start)
        page = found[:limit]
        following = start + len(page) if len(found) > limit else None
        return _json({"events": [to_dict(e) for e in page], "next_from": following})

    async def outcome(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        timeout = _timeout({"timeout": _float_param(request, "timeout")})
        return _json(outcome_to_json(await runtime.wait(run_id, timeout=timeout)))

    async def resume(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        body = await read_json(request)
        if "value" not in body:
            raise ApiError(400, 'resume takes {"value": ANSWER} (the answer to the interrupt)')
        timeout = _timeout(body)
        await runtime.resume(run_id, body["value"])
        if not body.get("wait"):
            return _json({"run_id": run_id, "status": "resumed"}, 202)
        return _json(outcome_to_json(await runtime.wait(run_id, timeout=timeout)))

    async def cancel(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        body = await read_json(request)
        reason = _optional_str(body, "reason") or "cancelled through perdure serve"
        await runtime.cancel(run_id, reason)
        return _json({"run_id": run_id, "status": await runtime.status(run_id)})

    async def send(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        body = await read_json(request)
        if "message" not in body:
            raise ApiError(400, 'send takes {"message": VALUE, "topic": "default"}')
        topic = _optional_str(body, "topic") or "default"
        key = _optional_str(body, "idempotency_key")
        await runtime.send(run_id, body["message"], topic=topic, idempotency_key=key)
        return _json({"run_id": run_id, "status": "sent"}, 202)

    async def get_event(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        key = request.path_params["key"]
        timeout = _timeout({"timeout": _float_param(request, "timeout")})
        value = await runtime.get_event(run_id, key, timeout=timeout)
        return _json({"run_id": run_id, "key": key, "value": value})

    async def continue_run(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        body = await read_json(request)
        timeout = _timeout(body)
        await runtime.continue_run(run_id)
        if body.get("wait"):
            return _json(outcome_to_json(await runtime.wait(run_id, timeout=timeout)))
        return _json({"run_id": run_id, "status": await runtime.status(run_id)})

    async def replay(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        await read_json(request)
        result = await replayer.areplay(run_id, log=runtime.log)
        return _json(result.to_dict())

    async def stats(request: Request) -> Response:
        found = await runtime.log.statistics()
        live = runtime.statistics()
        return _json(
            {
                "runs_by_status": {s: found.runs_by_status.get(s, 0) for s in RUN_STATUSES},
                "runs": sum(found.runs_by_status.values()),
                "events": found.events,
                "pending_timers": found.timers,
                "idempotency_keys": found.idempotency_keys,
                "size_bytes": found.size_bytes,
                "appends": found.appends,
                "batches": found.batches,
                "live_actors": live.live_actors,
                "restarts": live.restarts,
                "parked": live.parked,
                "evicted": live.evicted,
                "targets": registry.names(),
            }
        )

    recent: dict[int, tuple[float, dict[str, Any]]] = {}

    async def stats_history(request: Request) -> Response:
        """Runs by status per hour and step latency; one answer per window serves every
        caller for `_HISTORY_TTL` seconds (each open statistics page asks every 5 s)."""
        hours = _int(request, "hours", 24, 1, 168)
        now = time.monotonic()
        cached = recent.get(hours)
        if cached is None or now - cached[0] > _HISTORY_TTL:
            cached = (now, await history(runtime.log, hours))
            recent[hours] = cached
        return _json(cached[1])

    async def targets(request: Request) -> Response:
        return _json(
            {
                "targets": [
                    {"name": name, "kind": spec.kind}
                    for name in registry.names()
                    if (spec := registry.get(name)) is not None
                ]
            }
        )

    async def stream(request: Request) -> Response:
        """Server-Sent Events: ``events`` (newly committed events), ``settled``, ``closed``."""
        run_id = request.path_params["run_id"]
        subscription = runtime.subscribe(run_id)
        if await runtime.get_run(run_id) is None:
            subscription.close()
            raise RunNotFoundError(f"no run with id {run_id!r} in this store", run_id=run_id)
        start = _int(request, "from", 0, 0, 2**62)
        return StreamingResponse(
            _sse(runtime, run_id, subscription, start),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def openapi(request: Request) -> Response:
        return _json(openapi_document())

    async def health(request: Request) -> Response:
        return _json({"ok": runtime.is_open})

    async def login(request: Request) -> Response:
        body = await read_json(request)
        given = body.get("token")
        session = guard.login(given) if isinstance(given, str) else None
        if guard.token is None:
            return _json({"ok": True})
        if session is None:
            return _problem(401, "Unauthorized", "wrong token")
        response = _json({"ok": True})
        response.set_cookie(
            COOKIE,
            session,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )
        return response

    async def logout(request: Request) -> Response:
        response = _json({"ok": True})
        response.delete_cookie(COOKIE, path="/")
        return response

    # -- the UI -------------------------------------------------------------------------------

    async def index(request: Request) -> Response:
        return Response(_asset("index.html"), media_type="text/html; charset=utf-8")

    async def login_page(request: Request) -> Response:
        response = Response(_asset("login.html"), media_type="text/html; charset=utf-8")
        response.headers.update(_UI_HEADERS)
        return response

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        kind = _STATIC.get(name)
        if kind is None:
            return Response("not found", status_code=404, media_type="text/plain")
        response = Response(_asset(name), media_type=kind)
        response.headers.update(_UI_HEADERS)
        return response

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with runtime:
            app.state.runtime = runtime
            yield

    routes = [
        Route("/", ui(index)),
        Route("/runs/{run_id:path}", ui(index)),
        Route("/stats", ui(index)),
        Route("/login", login_page),
        Route("/static/{name}", static),
        Route("/api/openapi.json", api(openapi)),
        Route("/api/health", api(health)),
        Route("/api/login", api(login, write=True, public=True), methods=["POST"]),
        Route("/api/logout", api(logout, write=True), methods=["POST"]),
        Route("/api/targets", api(targets)),
        Route("/api/stats", api(stats)),
        Route("/api/stats/history", api(stats_history)),
        Route("/api/runs", api(list_runs), methods=["GET"]),
        Route("/api/runs", api(start_run, write=True), methods=["POST"]),
        Route("/api/runs/{run_id}", api(get_run)),
        Route("/api/runs/{run_id}/events", api(run_events)),
        Route("/api/runs/{run_id}/outcome", api(outcome)),
        Route("/api/runs/{run_id}/stream", api(stream)),
        Route("/api/runs/{run_id}/resume", api(resume, write=True), methods=["POST"]),
        Route("/api/runs/{run_id}/cancel", api(cancel, write=True), methods=["POST"]),
        Route("/api/runs/{run_id}/messages", api(send, write=True), methods=["POST"]),
        Route("/api/runs/{run_id}/values/{key}", api(get_event)),
        Route("/api/runs/{run_id}/continue", api(continue_run, write=True), methods=["POST"]),
        Route("/api/runs/{run_id}/replay", api(replay, write=True), methods=["POST"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.runtime = runtime
    return app


def _origin(request: Request) -> str:
    host = request.headers.get("host", "")
    return f"{request.url.scheme}://{host}"


def _float_param(request: Request, name: str) -> float | None:
    text = request.query_params.get(name)
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise ApiError(400, f"{name} must be a number of seconds, got {text!r}") from None


def _asset(name: str) -> bytes:
    return resources.files("perdure.serve").joinpath("static", name).read_bytes()


def _sse_message(kind: str, data: Any) -> bytes:
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=repr)
    return f"event: {kind}\ndata: {text}\n\n".encode()


async def _sse(
    runtime: Runtime, run_id: str, subscription: Subscription, start: int
) -> AsyncIterator[bytes]:
    """The run's events from `start`, then each commit as it happens, until it settles."""
    try:
        past = await runtime.log.read(run_id, start)
        seen = start + len(past)
        yield _sse_message("events", [to_dict(e) for e in past])
        state = await runtime.state(run_id)
        if state.status in ("completed", "failed", "cancelled", "parked", "waiting"):
            yield _sse_message("status", {"status": state.status})
        while True:
            try:
                update = await subscription.get(_KEEPALIVE)
            except TimeoutError:
                yield b": keep-alive\n\n"
                continue
            if type(update) is Committed:
                fresh = [e for e in update.events if e.seq >= seen]
                if fresh:
                    seen = fresh[-1].seq + 1
                    yield _sse_message("events", [to_dict(e) for e in fresh])
            elif type(update) is Settled:
                yield _sse_message("settled", outcome_to_json(update.outcome))
            elif type(update) is Custom:
                yield _sse_message("custom", update.item)
            elif type(update) is Closed:
                yield _sse_message("closed", {"message": str(update.error)})
                return
    finally:
        subscription.close()
