"""A live `perdure serve` for the gateway tests: a real process on 127.0.0.1 and a free port.

`gateway` serves without a token (loopback); `locked_gateway` requires `TOKEN`.
Both serve tests/serve/serve_app.py on a fresh store and are shared by a test
module (starting one costs an interpreter start-up). Each is stopped with SIGINT
(uvicorn's clean shutdown), then killed if it does not stop in time.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.gateway import (
    APP,
    TOKEN,
    WRITE,
    Gateway,
    free_port,
    start_gateway,
    stop_gateway,
)

__all__ = ["APP", "TOKEN", "WRITE", "Gateway", "free_port", "start_gateway", "stop_gateway"]


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
