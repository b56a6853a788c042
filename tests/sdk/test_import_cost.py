"""What importing perdure loads: heavy libraries wait until a program uses them (issues 17, 18).

`import perdure` resolves its names on first use; `from perdure import entrypoint, task`
(or `Runtime`, `Client`) loads the runtime but not structlog (rich, through
``structlog.dev``), OpenTelemetry, the LMDB store, the PostgreSQL driver, the web
stack or the CLI; ``perdure --help`` and ``--version`` load no runtime at all. Each
case runs in a fresh interpreter and reads `sys.modules`; no timing is asserted (the
figures are bench/bench_import.py's).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

#: Never loaded by importing perdure's names: each loads when a program uses it.
DEFERRED = (
    "structlog",  # a Runtime or a log line, once logging sends perdure's records somewhere
    "rich",  # through structlog.dev; the CLI's views
    "opentelemetry",  # only a program that loads it (to configure tracing) loads it
    "lmdb",  # the first LMDB store opened
    "perdure.eventlog._lmdb",
    "psycopg",  # the first PostgreSQL store
    "starlette",  # perdure serve, Client(url=...)
    "uvicorn",
    "click",  # the CLI
    "perdure.cli",
    "perdure.serve",
)
#: What `import perdure` alone must not load either: the whole runtime waits for a name.
RUNTIME = ("asyncio", "attrs", "perdure.eventlog", "perdure.actors", "perdure.runtime")


def _loaded_after(code: str) -> list[str]:
    """The modules (top-level names and perdure's own) that `code` loads in a fresh process."""
    probe = (
        "import sys, json\n"
        "before = set(sys.modules)\n"
        f"{code}\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout.strip().splitlines()[-1]))


def _heavy(loaded: list[str], names: tuple[str, ...]) -> list[str]:
    return sorted(
        {name for name in names for mod in loaded if mod == name or mod.startswith(name + ".")}
    )


def test_import_perdure_loads_nothing_heavy() -> None:
    loaded = _loaded_after("import perdure\nassert perdure.__version__")
    assert _heavy(loaded, DEFERRED + RUNTIME) == []


@pytest.mark.parametrize(
    "code",
    [
        "from perdure import entrypoint, task",
        "from perdure import Runtime",
        "from perdure import function, Client, MemoryEventLog, errors",
    ],
)
def test_importing_the_api_defers_logging_tracing_storage_and_the_cli(code: str) -> None:
    loaded = _loaded_after(code)
    assert "perdure.runtime" in loaded  # the names are real, the runtime is there
    assert _heavy(loaded, DEFERRED) == []


def test_creating_and_opening_a_runtime_loads_neither_logging_nor_tracing() -> None:
    """Without logging configured (no handler would get perdure's records) nor OpenTelemetry
    loaded by the program, a `Runtime` opened on a store loads neither structlog nor
    OpenTelemetry (~0.1 s a fresh process that resumes one run would pay)."""
    code = (
        "import asyncio\n"
        "from perdure import MemoryEventLog, Runtime\n"
        "async def main():\n"
        "    async with Runtime(log=MemoryEventLog()):\n"
        "        pass\n"
        "asyncio.run(main())\n"
    )
    loaded = _loaded_after(code)
    assert "perdure.runtime" in loaded
    assert _heavy(loaded, ("structlog", "rich", "opentelemetry")) == []


@pytest.mark.parametrize("flag", ["--help", "--version"])
def test_cli_help_and_version_load_no_runtime(flag: str) -> None:
    code = (
        "import contextlib, io\n"
        "from perdure.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    assert main([{flag!r}]) == 0\n"
    )
    loaded = _loaded_after(code)
    assert "click" in loaded
    heavy = ("structlog", "rich", "opentelemetry", "lmdb", "asyncio", "attrs", "perdure.eventlog")
    assert _heavy(loaded, heavy + RUNTIME[2:]) == []


def test_names_load_on_first_use_and_old_spellings_still_resolve() -> None:
    """`dir()` lists every public name before it loads; ``perdure.runtime`` (a subpackage
    `import perdure` used to load) still resolves as an attribute."""
    code = (
        "import perdure\n"
        "assert set(perdure.__all__) <= set(dir(perdure))\n"
        "from perdure.runtime import Runtime\n"
        "assert perdure.Runtime is Runtime\n"
        "import perdure as p2\n"
        "assert p2.eventlog.MemoryEventLog is perdure.MemoryEventLog\n"
        "assert perdure.actors.RetryPolicy is perdure.RetryPolicy\n"
        "assert perdure.errors.RunFailedError is perdure.RunFailedError\n"
        "assert perdure.testing.MockClock is not None\n"
    )
    _loaded_after(code)


def test_a_run_with_logging_configured_still_logs_through_structlog() -> None:
    """structlog loads with the runtime, not at import: the run's records carry their fields."""
    code = (
        "import logging, sys\n"
        "records = []\n"
        "class Keep(logging.Handler):\n"
        "    def emit(self, record): records.append(record)\n"
        "logging.getLogger('perdure').addHandler(Keep())\n"
        "logging.getLogger('perdure').setLevel(logging.INFO)\n"
        "from perdure import MemoryEventLog, entrypoint, task\n"
        "assert 'structlog' not in sys.modules\n"
        "@task\n"
        "def double(x: int) -> int:\n"
        "    return 2 * x\n"
        "@entrypoint(checkpointer=MemoryEventLog())\n"
        "def wf(x: int) -> int:\n"
        "    return double(x).result()\n"
        "assert wf.invoke(21, {'configurable': {'thread_id': 'r1'}}) == 42\n"
        "assert 'structlog' in sys.modules\n"
        "started = [r for r in records if r.getMessage() == 'run started']\n"
        "assert started and started[0].run_id == 'r1', [r.getMessage() for r in records]\n"
    )
    _loaded_after(code)
