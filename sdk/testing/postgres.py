"""A throwaway PostgreSQL cluster for tests and benchmarks.

`TemporaryPostgres` runs the server binaries found through ``pg_config
--bindir`` (or ``initdb`` on ``PATH``): ``initdb`` into a fresh temporary
folder, then ``pg_ctl start`` on a private port of 127.0.0.1 and a Unix
socket in that folder, with ``fsync`` and ``synchronous_commit`` on (the
figures measured on it are those of a durable server). PostgreSQL refuses to
run as root: as root, the folder is handed to the ``postgres`` user and the
binaries run as that user (``runuser``). `stop` shuts the server down and
removes the folder. A watchdog process (in a session of its own) does the
same if the process that started the cluster dies without stopping it (a
SIGKILLed or timed-out test session), so no server outlives its tests.

`postgres_unavailable` says, in one line, why no cluster can be started here
(or returns None): tests skip with that line.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from types import TracebackType

__all__ = ["PostgresUnavailableError", "TemporaryPostgres", "postgres_unavailable"]

_UNPRIVILEGED = "postgres"


class PostgresUnavailableError(RuntimeError):
    """No PostgreSQL cluster can be started on this machine (the message says why)."""


def _bindir() -> Path | None:
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True, timeout=30
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out = ""
        if out and (Path(out) / "initdb").exists() and (Path(out) / "pg_ctl").exists():
            return Path(out)
    initdb = shutil.which("initdb")
    if initdb is not None and shutil.which("pg_ctl") is not None:
        return Path(initdb).parent
    return None


def _run_as() -> list[str]:
    """The command prefix that runs a binary as an unprivileged user ([] when not root)."""
    if os.geteuid() != 0:
        return []
    runuser = shutil.which("runuser")
    if runuser is not None:
        return [runuser, "-u", _UNPRIVILEGED, "--"]
    return [shutil.which("sudo") or "sudo", "-u", _UNPRIVILEGED, "--"]


def postgres_unavailable() -> str | None:
    """Why `TemporaryPostgres` cannot start here, in one line; None if it can."""
    if _bindir() is None:
        return "no PostgreSQL server binaries (initdb, pg_ctl: neither pg_config --bindir nor PATH)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(_UNPRIVILEGED)
        except KeyError:
            return f"running as root and there is no {_UNPRIVILEGED!r} user to run the server as"
    return None


#: Run by the watchdog: ``python -c _WATCHDOG OWNER_PID FOLDER COMMAND...``. It waits
#: until the owner is gone or the folder was removed (a normal stop), then stops the
#: server at once and removes the folder.
_WATCHDOG = """
import os, shutil, subprocess, sys, time
owner, folder, stop = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
def alive():
    try:
        os.kill(owner, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
while alive() and os.path.isdir(folder):
    time.sleep(0.2)
if os.path.isdir(folder):
    subprocess.run(stop, capture_output=True, timeout=60, check=False)
    shutil.rmtree(folder, ignore_errors=True)
"""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class TemporaryPostgres:
    """A PostgreSQL cluster in a temporary folder: ``with TemporaryPostgres() as pg: pg.url``."""

    def __init__(self) -> None:
        self._dir: Path | None = None
        self._port = 0
        self._bindir: Path | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """A ``postgresql://`` URL of the running server's ``postgres`` database."""
        if self._dir is None:
            raise PostgresUnavailableError("the temporary PostgreSQL server is not running")
        return f"postgresql://{self._user()}@127.0.0.1:{self._port}/postgres"

    def _user(self) -> str:
        return _UNPRIVILEGED if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name

    def _run(self, *argv: str) -> None:
        assert self._bindir is not None
        command = [*_run_as(), str(self._bindir / argv[0]), *argv[1:]]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise PostgresUnavailableError(
                f"{argv[0]} failed (exit {done.returncode}): {(done.stderr or done.stdout).strip()}"
            )

    def start(self) -> TemporaryPostgres:
        why = postgres_unavailable()
        if why is not None:
            raise PostgresUnavailableError(why)
        self._bindir = _bindir()
        folder = Path(tempfile.mkdtemp(prefix="perdure-pg-"))
        if os.geteuid() == 0:
            user = pwd.getpwnam(_UNPRIVILEGED)
            os.chown(folder, user.pw_uid, user.pw_gid)
        self._dir = folder
        self._port = _free_port()
        data = folder / "data"
        try:
            # --no-sync only skips initdb's own final flush (the cluster is thrown away);
            # the server below runs with fsync and synchronous_commit on.
            self._run("initdb", "-D", str(data), "-U", self._user(), "-A", "trust", "-E", "UTF8",
                      "--no-sync", "--locale=C")  # fmt: skip
            options = (
                f"-p {self._port} -k {folder} -c listen_addresses=127.0.0.1 "
                "-c fsync=on -c synchronous_commit=on -c max_connections=200"
            )
            self._run("pg_ctl", "-D", str(data), "-o", options, "-l", str(folder / "server.log"),
                      "-w", "-t", "60", "start")  # fmt: skip
        except BaseException:
            self._remove()
            raise
        self._start_watchdog(folder, data)
        return self

    def _start_watchdog(self, folder: Path, data: Path) -> None:
        assert self._bindir is not None
        stop = [*_run_as(), str(self._bindir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                "-w", "stop"]  # fmt: skip
        self._watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(folder), *stop],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a kill of the caller's process group spares it
        )

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its folder. Idempotent."""
        if self._dir is None:
            return
        try:
            self._run("pg_ctl", "-D", str(self._dir / "data"), "-m", "fast", "-w", "stop")
        finally:
            self._remove()
            if self._watchdog is not None:  # it sees the folder gone and exits
                try:
                    self._watchdog.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._watchdog.kill()
                    self._watchdog.wait()
                self._watchdog = None

    def _remove(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> TemporaryPostgres:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
