"""The multi-worker recipe: `uvicorn --workers 2` web workers share one `perdure serve`.

Each worker process holds a `Client(url=...)`; the gateway is the only process
that opens the LMDB store. Requests spread over both workers all succeed, and
an idempotency key used from two workers names one run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2

from .conftest import Gateway, free_port

WEB = """
import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from perdure import Client

client = Client(url=os.environ["GATEWAY_URL"])


async def add(request: Request) -> JSONResponse:
    body = await request.json()
    result = await client.arun("gw_add", body["input"], idempotency_key=body.get("key"))
    return JSONResponse({"result": result, "pid": os.getpid()})


app = Starlette(routes=[Route("/add", add, methods=["POST"])])
"""


def test_two_uvicorn_workers_share_one_gateway(gateway: Gateway, tmp_path: Path) -> None:
    (tmp_path / "web.py").write_text(WEB)
    port = free_port()
    env = {**os.environ, "GATEWAY_URL": gateway.url, "PYTHONPATH": str(tmp_path)}
    with (tmp_path / "uvicorn.log").open("wb") as sink:
        web = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--workers",
                "2",
                "--port",
                str(port),
                "--log-level",
                "warning",
                "web:app",
            ],
            cwd=tmp_path,
            env=env,
            stdout=sink,
            stderr=sink,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}/add"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # two worker processes starting: bounded polling
            try:
                if httpx2.post(url, json={"input": {"a": 0, "b": 0}}, timeout=5).status_code == 200:
                    break
            except httpx2.TransportError:
                time.sleep(0.1)

        def call(i: int) -> tuple[int, int]:
            answer = httpx2.post(url, json={"input": {"a": i, "b": 1}}, timeout=30).json()
            return answer["result"], answer["pid"]

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(call, range(80)))
        assert [result for result, _ in answers] == [i + 1 for i in range(80)]
        assert len({pid for _, pid in answers}) == 2, "both workers served requests"
        keyed = {"input": {"a": 5, "b": 5}, "key": "order-42"}
        with ThreadPoolExecutor(8) as pool:
            results = list(
                pool.map(lambda _: httpx2.post(url, json=keyed, timeout=30).json(), range(16))
            )
        assert {r["result"] for r in results} == {10}
        with gateway.http() as http:
            runs = http.get("/api/runs", params={"q": "order-42"}).json()["runs"]
        assert len(runs) == 1 and runs[0]["idempotency_key"] == "order-42"
    finally:
        os.killpg(web.pid, signal.SIGTERM)
        try:
            web.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(web.pid, signal.SIGKILL)
            web.wait()
