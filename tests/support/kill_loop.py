"""The SIGKILL campaigns' one harness: start a child, watch it, kill it at a seeded moment, restart.

Every crash campaign (tests/crash, tests/eventlog/test_crash.py and
tests/postgres/test_pg_failover.py) drives real processes the same way:

- `Child`: one child process; its stdout and stderr go to a log file of its
  own (or its stdout lines are collected, for children that report on stdout),
  and a failure report shows the end of that log;
- `Journal`: the complete lines the children append to a file, read
  incrementally (a kill may cut the last line short: it is left for later);
- `wait_until`: bounded polling of a condition while a child runs;
- `KillLoop`: the campaign's seed (``$PERDURE_CRASH_SEED`` replays one) and its
  random generator, the children started and killed (pids, times), and
  `KillLoop.run`, the loop "start a child, wait for the moment, SIGKILL it,
  start the next one, until a child finishes", with a time budget and a cap
  on children; `KillLoop.report` makes an assertion message that names the
  seed and shows the last child's log tail.

What a campaign checks afterwards stays in the campaign.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Protocol

import attrs

#: how often the harness polls a file or a process (real processes: real time)
POLL = 0.001
#: how much of a child's log a failure report shows
TAIL = 3000


def campaign_seed(default: int | None = None) -> int:
    """``$PERDURE_CRASH_SEED`` if set, else `default`, else a fresh random seed."""
    given = os.environ.get("PERDURE_CRASH_SEED")
    if given:
        return int(given)
    return default if default is not None else random.randrange(2**32)


class Process(Protocol):
    """What the loop needs of a child: `Child` (a subprocess) or `Forked` (from a fork server)."""

    @property
    def pid(self) -> int: ...

    killed_at: float | None

    def alive(self) -> bool: ...

    def kill(self) -> bool: ...

    def run_for(self, seconds: float) -> bool: ...

    def wait(self, timeout: float = 90.0) -> int: ...

    def log_tail(self, chars: int = TAIL) -> str: ...


class Child:
    """One child process. Its stderr (and stdout, unless `read_stdout`) go to `log`.

    With `read_stdout`, a thread collects its complete stdout lines in `lines`
    (a kill may cut the last one short: it is dropped).
    """

    def __init__(
        self,
        argv: Sequence[str],
        log: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        read_stdout: bool = False,
        stdin: int | IO[Any] | None = subprocess.DEVNULL,
    ) -> None:
        self.argv = list(argv)
        self.log = log
        self.lines: list[str] = []
        self.killed = False
        self.killed_at: float | None = None
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as sink:  # the child keeps its own copy of the descriptor
            self.proc: subprocess.Popen[str] = subprocess.Popen(
                self.argv,
                stdin=stdin,
                stdout=subprocess.PIPE if read_stdout else sink,
                stderr=sink,
                env=None if env is None else dict(env),
                cwd=cwd,
                text=True,
            )
        self._reader: threading.Thread | None = None
        if read_stdout:
            self._reader = threading.Thread(target=self._read, daemon=True)
            self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.endswith("\n"):
                self.lines.append(line[:-1])

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> bool:
        """SIGKILL the child if it still runs (then reap it); True if this killed it."""
        if not self.alive():
            self.wait()
            return False
        self.proc.send_signal(signal.SIGKILL)
        self.killed, self.killed_at = True, time.time()
        self.wait()
        return True

    def run_for(self, seconds: float) -> bool:
        """Let the child run for up to `seconds`; True if it exited meanwhile."""
        try:
            self.proc.wait(seconds)
        except subprocess.TimeoutExpired:
            return False
        return True

    def wait(self, timeout: float = 90.0) -> int:
        """Wait for the child to exit (killing it if it hangs: that fails the campaign)."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(
                f"child {self.pid} hung for {timeout} s\n{self.log_tail()}"
            ) from None
        if self._reader is not None:
            self._reader.join(10)
            self._reader = None
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return code

    def log_tail(self, chars: int = TAIL) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except FileNotFoundError:
            text = ""
        lines = "\n".join(self.lines[-20:])
        shown = f"--- {self.log} (last {chars} characters) ---\n{text[-chars:]}"
        return f"{shown}\n--- its stdout lines ---\n{lines}" if self.lines else shown


class ForkServer:
    """A child that imports once and forks the campaign's children on request.

    A kill cycle then takes milliseconds instead of a fresh interpreter's
    import. The server reads commands on stdin, one per line, and answers one
    line each: ``spawn ARGS...`` (fork a child; answer its pid) and ``reap PID``
    (wait for it; answer its exit code, -9 after a SIGKILL). The server's and
    its children's stderr go to `log`.
    """

    def __init__(self, argv: Sequence[str], log: Path) -> None:
        self.log = log
        with log.open("ab") as sink:
            self.proc = subprocess.Popen(
                list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=sink
            )

    def ask(self, line: str) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{line}\n".encode())
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        if not answer:
            raise AssertionError(f"the fork server died:\n{self.log.read_text()[-TAIL:]}")
        return int(answer)

    def spawn(self, *args: str) -> Forked:
        return Forked(self, self.ask(" ".join(("spawn", *args))))

    def close(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        self.proc.wait(30)
        self.proc.stdout.close()

    def __enter__(self) -> ForkServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Forked:
    """A child forked by a `ForkServer` (its log is the server's)."""

    def __init__(self, server: ForkServer, pid: int) -> None:
        self.server = server
        self.pid = pid
        self.code: int | None = None
        self.killed = False
        self.killed_at: float | None = None

    def alive(self) -> bool:
        """Until reaped (the server is its parent: only a reap tells that it exited)."""
        return self.code is None

    def kill(self) -> bool:
        if not self.alive():
            return False
        os.kill(self.pid, signal.SIGKILL)
        killed_at = time.time()
        if self.wait() != -signal.SIGKILL:
            return False  # it had exited by itself: `wait` tells how
        self.killed, self.killed_at = True, killed_at
        return True

    def run_for(self, seconds: float) -> bool:
        """Let the child run for `seconds` (only a reap would tell that it exited)."""
        time.sleep(seconds)
        return False

    def wait(self, timeout: float = 90.0) -> int:
        if self.code is None:
            self.code = self.server.ask(f"reap {self.pid}")
        return self.code

    def log_tail(self, chars: int = TAIL) -> str:
        text = self.server.log.read_text(errors="replace")
        return f"--- {self.server.log} (last {chars} characters) ---\n{text[-chars:]}"


class Journal:
    """The complete lines appended to `path` (by children), read incrementally."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        #: every complete line read so far
        self.lines: list[str] = []
        self._entries: list[dict[str, Any]] = []

    def new_lines(self) -> list[str]:
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n") + 1
        self.offset += end
        new = data[:end].decode().splitlines()
        self.lines.extend(new)
        return new

    def entries(self) -> list[dict[str, Any]]:
        """Every complete line so far, as JSON (for journals of JSON lines; each parsed once)."""
        self._entries.extend(json.loads(line) for line in self.new_lines())
        return self._entries

    def count(self) -> int:
        self.new_lines()
        return len(self.lines)


def wait_until(
    condition: Callable[[], bool],
    seconds: float,
    child: Process | None = None,
    *,
    interval: float = POLL,
) -> bool:
    """Poll `condition` every `interval` for up to `seconds` (less if `child` exits).

    True if it held.
    """
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline or (child is not None and not child.alive()):
            return condition()
        time.sleep(interval)
    return True


#: what a campaign's `moment` callback returns: kill the child now, or let it run to its end
KILL, SPARE = True, False


@attrs.define
class KillLoop:
    """One campaign of SIGKILLs on one store: its seed, its children, what was killed."""

    seed: int
    name: str = "crash campaign"
    rng: random.Random = attrs.field(init=False)
    children: list[Process] = attrs.field(factory=list)
    kills: int = 0
    killed_pids: set[int] = attrs.field(factory=set)
    kill_times: list[float] = attrs.field(factory=list)
    started_at: float = attrs.field(factory=time.monotonic)
    #: how long a child may run after its moment before it counts as hung
    child_timeout: float = 90.0

    def __attrs_post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    @property
    def starts(self) -> int:
        return len(self.children)

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started_at

    def start(self, argv: Sequence[str], log: Path, **options: Any) -> Child:
        child = Child(argv, log, **options)
        self.children.append(child)
        return child

    def adopt(self, child: Process) -> Process:
        """Count a child started otherwise (e.g. by a `ForkServer`) as this loop's."""
        self.children.append(child)
        return child

    def kill(self, child: Process) -> bool:
        """SIGKILL `child` if it still runs; count it. True if this killed it."""
        if not child.kill():
            return False
        self.kills += 1
        self.killed_pids.add(child.pid)
        assert child.killed_at is not None
        self.kill_times.append(child.killed_at)
        return True

    def report(self, message: str, child: Process | None = None) -> str:
        """An assertion message: `message`, the seed to replay, the child's log tail."""
        child = child if child is not None else (self.children[-1] if self.children else None)
        where = (
            f"{self.name}: seed {self.seed} (PERDURE_CRASH_SEED={self.seed}), "
            f"{self.starts} children, {self.kills} kills, {self.seconds:.1f} s"
        )
        tail = f"\n{child.log_tail()}" if child is not None else ""
        return f"{message}\n{where}{tail}"

    def run(
        self,
        spawn: Callable[[int], Any],
        moment: Callable[[Any], bool],
        finished: Callable[[Any, int], bool],
        *,
        budget: float,
        max_children: int = 400,
        after_kill: Callable[[Any], None] | None = None,
        kills: int | None = None,
    ) -> Any:
        """Start children until one finishes (or `kills` kills are done); return the last.

        ``spawn(n)`` starts child number n (through `start`); ``moment(child)``
        waits for the seeded moment and returns `KILL` (the harness SIGKILLs
        the child, if it still runs) or `SPARE` (it runs to its end).
        ``finished(child, exit_code)`` is asked about every child that exited by
        itself: True ends the loop, False starts the next one (a campaign checks
        the exit code there). A SIGKILLed child is passed to `after_kill` (checks
        of the store after each kill), then followed by another, unless that
        was the `kills`-th kill (for campaigns whose children never finish).
        """
        while True:
            assert self.seconds < budget, self.report(f"no finish within {budget} s")
            assert self.starts < max_children, self.report(f"no finish in {max_children} children")
            child = spawn(self.starts)
            try:
                if moment(child) is KILL and self.kill(child):
                    if after_kill is not None:
                        after_kill(child)
                    if kills is not None and self.kills >= kills:
                        return child
                    continue
                code = child.wait(self.child_timeout)
            except BaseException:
                child.kill()  # a failed check leaves no child behind
                raise
            if code == -signal.SIGKILL:
                raise AssertionError(self.report("a child died of a SIGKILL not ours", child))
            if finished(child, code):
                return child
