"""A live `perdure serve` on 127.0.0.1 and a free port (the gateway tests' and PostgreSQL's).

Started with `start_gateway`, stopped with `stop_gateway`: SIGINT (uvicorn's clean
shutdown), then a kill if it does not stop in time.
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

#: the gateway tests' app
APP = str(Path(__file__).resolve().parent.parent / "serve" / "serve_app.py")
#: tests/, on the gateway's PYTHONPATH
TESTS = str(Path(__file__).resolve().parent.parent)
TOKEN = "test-token-0123456789abcdef"
WRITE = {"X-Perdure-Request": "1"}


class Gateway:
    def __init__(
        self,
        url: str,
        store: Path | str,
        process: subprocess.Popen[bytes],
        token: str | None,
        errors: Path,
    ) -> None:
        self.url = url
        self.store = store
        self.process = process
        self.token = token
        #: the process's stderr
        self.errors = errors

    def http(self, *, auth: bool = True) -> httpx2.Client:
        headers = dict(WRITE)
        if auth and self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return httpx2.Client(base_url=self.url, headers=headers, timeout=30)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_command(store: Path | str, port: int, *, app: str = APP) -> list[str]:
    """The argv of ``perdure serve`` for `app` on `store` and `port`."""
    cmd = [sys.executable, "-m", "perdure", "serve", "--app", app]
    return [*cmd, "--store", str(store), "--port", str(port)]


def start_gateway(
    store: Path | str, *, token: str | None = None, cwd: Path | None = None, app: str = APP
) -> Gateway:
    """`perdure serve` of `app` on `store` (a folder or a database URL), once it answers.

    `app` is a file or a module name importable from tests/ (the gateway's
    PYTHONPATH starts with tests/).

    Its stderr goes to ``<store>.stderr`` next to a folder store, or to
    ``<cwd>/serve.stderr`` when `cwd` is given (a URL names no folder).
    """
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PERDURE_TOKEN"}
    paths = [TESTS, str(Path(TESTS).parent), env.get("PYTHONPATH")]  # tests/, then the root
    env["PYTHONPATH"] = os.pathsep.join(filter(None, paths))
    if token is not None:
        env["PERDURE_TOKEN"] = token
    if cwd is not None:
        errors = cwd / "serve.stderr"
    else:
        assert isinstance(store, Path), "a store named by a URL needs a cwd for its stderr"
        errors = store.with_name(store.name + ".stderr")
    with errors.open("wb") as sink:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            serve_command(store, port, app=app),
            env=env,
            cwd=cwd,
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
                return Gateway(url, store, process, token, errors)
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
