"""The OpenAPI 3.1 document of the gateway's JSON API (served at ``/api/openapi.json``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

_ERROR = {"$ref": "#/components/responses/Error"}
_RUN_ID = {"name": "run_id", "in": "path", "required": True, "schema": {"type": "string"}}
_WRITE = {
    "name": "X-Perdure-Request",
    "in": "header",
    "required": True,
    "schema": {"type": "string"},
}


def _op(
    summary: str,
    *,
    params: Sequence[dict[str, Any]] = (),
    body: dict[str, Any] | None = None,
    ok: str = "200",
    write: bool = False,
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "parameters": [*params, *([_WRITE] if write else [])],
        "responses": {
            ok: {
                "description": "OK",
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
            "400": _ERROR,
            "401": _ERROR,
            "404": _ERROR,
            **({"403": _ERROR, "409": _ERROR, "413": _ERROR} if write else {}),
        },
    }
    if body is not None:
        op["requestBody"] = {"content": {"application/json": {"schema": body}}}
    return op


def _query(name: str, kind: str, text: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": {"type": kind},
        "description": text,
    }


def openapi_document() -> dict[str, Any]:
    from perdure import __version__

    start = {
        "type": "object",
        "required": ["target"],
        "properties": {
            "target": {"type": "string", "description": "a registered function or workflow"},
            "input": {
                "description": "functions: an object of keyword arguments; workflows: any JSON"
            },
            "run_id": {"type": "string"},
            "idempotency_key": {"type": "string"},
            "wait": {"type": "boolean", "description": "answer with the outcome once it settles"},
            "timeout": {"type": "number"},
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "perdure serve", "version": __version__},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {
                "Error": {
                    "description": "an error: its perdure type, message and fields",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "error": {
                                        "type": "object",
                                        "properties": {
                                            "type": {"type": "string"},
                                            "message": {"type": "string"},
                                            "fields": {"type": "object"},
                                        },
                                    }
                                },
                            }
                        }
                    },
                }
            },
        },
        "security": [{"bearer": []}],
        "paths": {
            "/api/runs": {
                "get": _op(
                    "list runs, newest first, one page at a time",
                    params=[
                        _query(
                            "status",
                            "string",
                            "running, waiting, completed, failed, cancelled or parked",
                        ),
                        _query("target", "string", "only runs of this target"),
                        _query(
                            "q",
                            "string",
                            "text at the start of the run id, target, idempotency key or "
                            "error message, or of a word in them (any case)",
                        ),
                        _query("limit", "integer", "page size (1-500, default 50)"),
                        _query("cursor", "string", "next_cursor of the previous page"),
                        _query("since", "number", "only runs created since (epoch seconds)"),
                    ],
                ),
                "post": _op(
                    "start a run (wait=true: run it and answer with its outcome)",
                    body=start,
                    ok="202",
                    write=True,
                ),
            },
            "/api/runs/{run_id}": {
                "get": _op(
                    "a run: status, input, result, steps, timers, interrupts", params=[_RUN_ID]
                )
            },
            "/api/runs/{run_id}/events": {
                "get": _op(
                    "a run's events, paged",
                    params=[
                        _RUN_ID,
                        _query("from", "integer", "first seq"),
                        _query("limit", "integer", "1-1000"),
                    ],
                )
            },
            "/api/runs/{run_id}/outcome": {
                "get": _op(
                    "wait until the run settles; its outcome",
                    params=[_RUN_ID, _query("timeout", "number", "seconds")],
                )
            },
            "/api/runs/{run_id}/stream": {
                "get": _op(
                    "Server-Sent Events: events (new events), settled (outcome), closed",
                    params=[_RUN_ID, _query("from", "integer", "first seq to send")],
                )
            },
            "/api/runs/{run_id}/resume": {
                "post": _op(
                    "answer the run's interrupt (Command(resume=value))",
                    params=[_RUN_ID],
                    write=True,
                    body={
                        "type": "object",
                        "required": ["value"],
                        "properties": {
                            "value": {},
                            "wait": {"type": "boolean"},
                            "timeout": {"type": "number"},
                        },
                    },
                )
            },
            "/api/runs/{run_id}/cancel": {
                "post": _op(
                    "cancel the run",
                    params=[_RUN_ID],
                    write=True,
                    body={"type": "object", "properties": {"reason": {"type": "string"}}},
                )
            },
            "/api/runs/{run_id}/continue": {
                "post": _op(
                    "reopen a failed or parked run (wait=true: answer with its new outcome)",
                    params=[_RUN_ID],
                    write=True,
                    body={
                        "type": "object",
                        "properties": {"wait": {"type": "boolean"}, "timeout": {"type": "number"}},
                    },
                )
            },
            "/api/runs/{run_id}/messages": {
                "post": _op(
                    "send a message to the run (the workflow takes it with receive(topic))",
                    params=[_RUN_ID],
                    write=True,
                    ok="202",
                    body={
                        "type": "object",
                        "required": ["message"],
                        "properties": {
                            "message": {},
                            "topic": {"type": "string"},
                            "idempotency_key": {"type": "string"},
                        },
                    },
                )
            },
            "/api/runs/{run_id}/values/{key}": {
                "get": _op(
                    "the latest value the run published under key (set_event)",
                    params=[
                        _RUN_ID,
                        {
                            "name": "key",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                        _query("timeout", "number", "seconds to wait for a first value"),
                    ],
                )
            },
            "/api/runs/{run_id}/replay": {
                "post": _op("replay the run against the loaded code", params=[_RUN_ID], write=True)
            },
            "/api/stats": {"get": _op("store and runtime statistics")},
            "/api/stats/history": {
                "get": _op(
                    "runs by status per hour (runs_by_hour) and step latency of recent runs "
                    "(steps: attempts, failed, p50_ms, p95_ms, max_ms per step name)",
                    params=[_query("hours", "integer", "hours back from now (1-168, default 24)")],
                )
            },
            "/api/targets": {"get": _op("the functions and workflows of the loaded app")},
            "/api/health": {"get": _op("is the runtime open")},
            "/api/login": {
                "post": _op(
                    "set the UI's session cookie",
                    write=True,
                    body={"type": "object", "properties": {"token": {"type": "string"}}},
                )
            },
            "/api/logout": {"post": _op("clear the session cookie", write=True)},
        },
    }
