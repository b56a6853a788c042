"""The FastAPI example of the docs (docs/examples/fastapi_service.py) served by two
``uvicorn --workers 2`` servers (four processes) on one PostgreSQL store; requests of
one operation go to both servers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _call(port: int, method: str, path: str) -> tuple[int, object]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _up(port: int, proc: subprocess.Popen[bytes], limit: float = 60) -> None:
    started = time.monotonic()
    while time.monotonic() - started < limit:
        assert proc.poll() is None, "uvicorn exited"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/openapi.json", timeout=5):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"uvicorn on port {port} did not answer within {limit} s")


@pytest.fixture
def servers(pg_store: str) -> Iterator[list[int]]:
    ports = [_free_port(), _free_port()]
    env = {**os.environ, "PERDURE_STORE": pg_store}
    env.pop("PERDURE_PATH", None)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "fastapi_service:app",
                "--workers",
                "2",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            cwd=EXAMPLES,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for port in ports
    ]
    try:
        for port, proc in zip(ports, procs, strict=True):
            _up(port, proc)
        yield ports
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.mark.timeout(180)
def test_two_uvicorn_servers_of_two_workers_share_the_runs(servers: list[int]) -> None:
    a, b = servers
    first = _call(a, "POST", "/invoices/inv-9/charge?cents=500")
    again = _call(b, "POST", "/invoices/inv-9/charge?cents=500")
    assert first == again == (200, {"invoice_id": "inv-9", "charged": 500})  # charged once

    status, started = _call(a, "POST", "/refunds/inv-9")
    assert status == 200
    assert started["questions"][0]["draft"] == "refund for inv-9"  # type: ignore[index]
    assert _call(b, "GET", "/refunds/inv-9") == (
        200,
        {"status": "waiting", "questions": started["questions"]},  # type: ignore[index]
    )
    # The decision reaches the run from the other server, whichever process drives it.
    done = _call(b, "POST", "/refunds/inv-9/decision?decision=approved")
    assert done == (200, {"invoice_id": "inv-9", "decision": "approved"})
    twice = _call(a, "POST", "/refunds/inv-9/decision?decision=approved")
    assert twice[0] == 409
