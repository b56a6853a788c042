"""Helpers for the CLI tests: run the CLI in this process or as a subprocess."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from pathlib import Path

import attrs

from perdure.cli import main

#: tests/cli/, where the CLI tests' apps live
HERE = Path(__file__).resolve().parent.parent / "cli"
APP = HERE / "cli_app.py"
APP_V2 = HERE / "cli_app_v2.py"


@attrs.frozen
class Ran:
    code: int
    out: str
    err: str


def cli(*argv: str) -> Ran:
    """Run ``perdure ARGV`` in this process through `perdure.cli.main`."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return Ran(code, out.getvalue(), err.getvalue())


def cli_process(*argv: str, cwd: Path | None = None, timeout: float = 60) -> Ran:
    """Run ``python -m perdure ARGV`` as a subprocess."""
    done = subprocess.run(
        [sys.executable, "-m", "perdure", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        check=False,
    )
    return Ran(done.returncode, done.stdout, done.stderr)
