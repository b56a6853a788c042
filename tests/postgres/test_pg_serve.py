"""`perdure serve --store postgresql://...`: the gateway serves a PostgreSQL store."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.gateway import free_port, serve_command, start_gateway, stop_gateway


def test_perdure_serve_serves_a_postgresql_store(pg_store: str, tmp_path: Path) -> None:
    gateway = start_gateway(pg_store, cwd=tmp_path)
    try:
        with gateway.http() as http:
            done = http.post(
                "/api/runs", json={"target": "gw_add", "input": {"a": 1, "b": 2}, "wait": True}
            )
            assert done.status_code == 200, done.text
            assert done.json()["result"] == 3
    finally:
        stop_gateway(gateway)
    # the store is the database: nothing was made on disk (an LMDB folder "postgresql:/...")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["serve.stderr"]
    said = gateway.errors.read_text()
    assert "perdure serve:" in said
    password = pg_store.split("://", 1)[1].split("@", 1)[0].partition(":")[2]
    if password:
        assert password not in said  # the store is named without its password


def test_an_unreachable_postgresql_store_is_reported_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        serve_command(f"postgresql://nobody:sesame@127.0.0.1:{free_port()}/x", 1),
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
