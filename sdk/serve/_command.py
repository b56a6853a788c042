"""``perdure serve`` and the CLI's ``--url`` actions, kept apart from the argument parsing.

`serve_command` takes plain values, so a new command-line front end can call
it as it is. It imports the app (``--app``), checks the token rule and runs
the gateway with uvicorn until Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from perdure.cli._app import load_app, store_path
from perdure.cli._output import USAGE, fail, out, out_json
from perdure.eventlog import PerdureError
from perdure.runtime import open_store, store_label
from perdure.serve._security import TokenError, read_token

__all__ = ["remote_cancel", "remote_resume", "serve_command"]


def _missing_extra(exc: ModuleNotFoundError) -> None:
    fail(
        f"perdure serve needs the 'serve' extra ({exc.name} is not installed): "
        "pip install 'perdure[serve]'"
    )


def serve_command(
    *,
    app: str,
    store: str | None,
    host: str = "127.0.0.1",
    port: int = 8080,
    token_file: str | None = None,
    log_level: str = "warning",
) -> int:
    """Serve the runs of `store` with the code of `app` until interrupted; return the exit code."""
    try:
        token = read_token(token_file, host)
    except TokenError as exc:
        fail(str(exc), USAGE)
    try:
        import uvicorn

        from perdure.serve._app import create_app
    except ModuleNotFoundError as exc:
        _missing_extra(exc)
    loaded = load_app(app)
    path = store_path(store)
    try:
        asyncio.run(_probe(path))
    except PerdureError as exc:
        fail(f"cannot serve the store at {store_label(path)!r}: {exc}")
    asgi = create_app(loaded.registry, path=path, token=token)
    where = f"http://{host}:{port}/"
    print(
        f"perdure serve: {len(loaded.registry.names())} target(s) from {app} on store "
        f"{store_label(path)}; "
        f"{where} ({'token required' if token else 'no token: loopback only'})",
        file=sys.stderr,
        flush=True,
    )
    config = uvicorn.Config(
        asgi,
        host=host,
        port=port,
        log_level=log_level,
        lifespan="on",
        timeout_graceful_shutdown=5,
        limit_concurrency=1000,
    )
    server = uvicorn.Server(config)
    server.run()
    # uvicorn returns after a clean stop; a failed start-up (port taken, store locked) is not one
    return 0 if server.started else 1


async def _probe(path: str) -> None:
    """Open the store for writing and close it: a locked or unusable store is reported as one
    line before the server starts (uvicorn would print the lifespan's traceback). A folder
    path opens an LMDB store, a ``postgresql://`` URL a PostgreSQL one."""
    log = open_store(path)
    try:
        await log.next_timer()  # a PostgreSQL store connects on its first use
    finally:
        await log.close()


def _client(url: str, token: str | None) -> Any:
    try:
        from perdure.serve._remote import RemoteClient
    except ModuleNotFoundError as exc:
        _missing_extra(exc)
    return RemoteClient(url=url, token=token)


def remote_resume(url: str, token: str | None, run_id: str, value: Any, as_json: bool) -> int:
    """``perdure resume RUN_ID --value JSON --url URL``: answer through a live gateway."""
    with _client(url, token) as client:
        result = client.resume(run_id, value)
    if as_json:
        out_json({"run_id": run_id, "status": "resumed", "result": result})
    else:
        out(f"run {run_id}: resumed; it settled with {result!r}")
    return 0


def remote_send(
    url: str,
    token: str | None,
    run_id: str,
    message: Any,
    *,
    topic: str,
    idempotency_key: str | None,
    as_json: bool,
) -> int:
    """``perdure send RUN_ID JSON --url URL``: record a message through a live gateway."""
    with _client(url, token) as client:
        client.send(run_id, message, topic=topic, idempotency_key=idempotency_key)
        status = client.status(run_id)
    text = f"message recorded on topic {topic!r}"
    if as_json:
        out_json({"run_id": run_id, "status": status, "message": text})
    else:
        out(f"run {run_id}: {text} ({status})")
    return 0


def remote_continue(url: str, token: str | None, run_id: str, as_json: bool) -> int:
    """``perdure continue RUN_ID --url URL``: reopen a run through a live gateway, which
    drives it; returns once it settles again."""
    with _client(url, token) as client:
        result = client.continue_run(run_id)
    if as_json:
        out_json({"run_id": run_id, "status": "continued", "result": result})
    else:
        out(f"run {run_id}: continued; it settled with {result!r}")
    return 0


def remote_cancel(url: str, token: str | None, run_id: str, reason: str, as_json: bool) -> int:
    """``perdure cancel RUN_ID --url URL``: cancel through a live gateway."""
    with _client(url, token) as client:
        client.cancel(run_id, reason=reason)
        status = client.status(run_id)
    if as_json:
        out_json({"run_id": run_id, "status": status})
    else:
        out(f"run {run_id}: {status}")
    return 0
