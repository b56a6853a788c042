"""CLI test fixtures: a store written by a separate "service" process, and private copies of it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import APP


@pytest.fixture(scope="session")
def made_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding cli-done (completed), cli-wait (waiting), cli-fail (failed), cli-add."""
    path = tmp_path_factory.mktemp("cli") / "store"
    done = subprocess.run(
        [sys.executable, os.fspath(APP), "make", os.fspath(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return path


@pytest.fixture
def store(made_store: Path) -> str:
    """The made store, read only by the test (do not write to it)."""
    return os.fspath(made_store)


@pytest.fixture
def store_copy(made_store: Path, tmp_path: Path) -> Iterator[str]:
    """A private copy of the made store, for commands that write (no process has it open)."""
    copy = tmp_path / "store-copy"
    shutil.copytree(made_store, copy)
    yield os.fspath(copy)
