"""Start and stop a live `perdure serve` on 127.0.0.1 (a real process, a free port).

Used by tests/serve/conftest.py and by the behaviour tests elsewhere that run once
with the embedded `Client` and once with `Client(url=...)` through a gateway serving
their own test module (`app`: a module name importable from tests/, or a file).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2

APP = str(Path(__file__).with_name("serve_app.py"))
TESTS = str(Path(__file__).parent.parent)
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


def start_gateway(store: Path, *, token: str | None = None, app: str = APP) -> Gateway:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PERDURE_TOKEN"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [TESTS, env.get("PYTHONPATH")]))
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
                app,
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


# -- state shared with the gateway's copy of a test module ---------------------------------------


def shared_dir(name: str) -> Path:
    """A folder shared by this test process and the gateways it starts (through the environment:
    the first import makes it, the gateway's import of the same module finds it)."""
    key = f"PERDURE_TEST_SHARED_{name.upper()}"
    found = os.environ.get(key)
    if found is None:
        found = tempfile.mkdtemp(prefix=f"perdure-{name}-")
        os.environ[key] = found
    return Path(found)


class SharedCalls:
    """Executions of bodies counted in files: a body may run here or in a gateway process."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def hit(self, key: str = "body") -> None:
        fd = os.open(self.folder / key, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            os.write(fd, b".")  # one byte per call; O_APPEND keeps concurrent writers apart
        finally:
            os.close(fd)

    def __getitem__(self, key: str) -> int:
        try:
            return (self.folder / key).stat().st_size
        except FileNotFoundError:
            return 0


class SharedFlag:
    """A boolean both processes see: set when its file exists."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __bool__(self) -> bool:
        return self.path.exists()

    def set(self, value: bool) -> None:
        if value:
            self.path.touch()
        else:
            self.path.unlink(missing_ok=True)
