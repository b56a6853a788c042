"""A live `perdure serve` for the gateway tests: a real process on 127.0.0.1 and a free port.

`gateway` serves without a token (loopback); `locked_gateway` requires `TOKEN`.
Both serve tests/serve/serve_app.py on a fresh store and are shared by a test
module (starting one costs an interpreter start-up). Each is stopped with SIGINT
(uvicorn's clean shutdown), then killed if it does not stop in time.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

APP = str(Path(__file__).with_name("serve_app.py"))
TOKEN = "test-token-0123456789abcdef"
WRITE = {"X-Perdure-Request": "1"}


class Gateway:
    def __init__(
        self, url: str, store: Path, process: subprocess.Popen[bytes], token: str | None
    ) -> None:
        self.url = url
        self.store = store
        self.process = process
        self.token = token

    def http(self, *, auth: bool = True) -> httpx2.Client:
        headers = dict(WRITE)
        if auth and self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return httpx2.Client(base_url=self.url, headers=headers, timeout=30)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_gateway(store: Path, *, token: str | None = None) -> Gateway:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PERDURE_TOKEN"}
    if token is not None:
        env["PERDURE_TOKEN"] = token
    errors = store.with_name(store.name + ".stderr")
    with errors.open("wb") as sink:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "perdure",
                "serve",
                "--app",
                APP,
                "--store",
                str(store),
                "--port",
                str(port),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # a real process starting up: bounded polling
        if process.poll() is not None:
            raise AssertionError(f"perdure serve exited: {errors.read_text()}")
        try:
            if httpx2.get(f"{url}/api/health", timeout=1).status_code in (200, 401):
                return Gateway(url, store, process, token)
        except httpx2.TransportError:
            time.sleep(0.05)
    process.kill()
    raise AssertionError("perdure serve did not answer within 30 s")


def stop_gateway(gateway: Gateway) -> None:
    gateway.process.send_signal(signal.SIGINT)
    try:
        gateway.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        gateway.process.kill()
        gateway.process.wait()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    found = start_gateway(tmp_path_factory.mktemp("gateway") / "store")
    yield found
    stop_gateway(found)


@pytest.fixture(scope="module")
def locked_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    found = start_gateway(tmp_path_factory.mktemp("locked") / "store", token=TOKEN)
    yield found
    stop_gateway(found)
