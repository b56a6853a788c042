"""`perdure serve --store postgresql://...`: the gateway serves a PostgreSQL store."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2

APP = str(Path(__file__).parent.parent / "serve" / "serve_app.py")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_perdure_serve_serves_a_postgresql_store(pg_store: str, tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "PERDURE_TOKEN"}
    errors = tmp_path / "serve.stderr"
    with errors.open("wb") as sink:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "perdure",
                "serve",
                "--app",
                APP,
                "--store",
                pg_store,
                "--port",
                str(port),
            ],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:  # a real process starting up: bounded polling
            assert process.poll() is None, f"perdure serve exited: {errors.read_text()}"
            assert time.monotonic() < deadline, "perdure serve did not answer within 30 s"
            try:
                if httpx2.get(f"{url}/api/health", timeout=1).status_code == 200:
                    break
            except httpx2.TransportError:
                time.sleep(0.05)
        with httpx2.Client(base_url=url, headers={"X-Perdure-Request": "1"}, timeout=30) as http:
            done = http.post(
                "/api/runs", json={"target": "gw_add", "input": {"a": 1, "b": 2}, "wait": True}
            )
            assert done.status_code == 200, done.text
            assert done.json()["result"] == 3
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    # the store is the database: nothing was made on disk (an LMDB folder "postgresql:/...")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["serve.stderr"]
    said = errors.read_text()
    assert "perdure serve:" in said
    password = pg_store.split("://", 1)[1].split("@", 1)[0].partition(":")[2]
    if password:
        assert password not in said  # the store is named without its password


def test_an_unreachable_postgresql_store_is_reported_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "perdure",
            "serve",
            "--app",
            APP,
            "--store",
            f"postgresql://nobody:sesame@127.0.0.1:{_free_port()}/x",
            "--port",
            "1",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "cannot open the PostgreSQL store" in done.stderr
    assert "Traceback" not in done.stderr and "sesame" not in done.stderr
    assert list(tmp_path.iterdir()) == []
