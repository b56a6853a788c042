"""The top level of `perdure`: what an application touches, and nothing else.

Everything else stays importable from its home (`perdure.errors` for every
error) and, for code written against the old, wider top level, from `perdure`
itself, without being listed by `dir()` or `from perdure import *`.
"""

from __future__ import annotations

import subprocess
import sys
import warnings

import perdure
import perdure.errors
import perdure.eventlog
import perdure.runtime

TOP_LEVEL = [
    "function",
    "FunctionContext",
    "DurableFunction",
    "RetryPolicy",
    "BackoffPolicy",
    "BackoffType",
    "NonRetryableError",
    "Client",
    "entrypoint",
    "task",
    "interrupt",
    "ainterrupt",
    "Command",
    "Interrupt",
    "sleep",
    "asleep",
    "receive",
    "areceive",
    "set_event",
    "get_previous_state",
    "Workflow",
    "Task",
    "TaskFuture",
    "Runtime",
    "RunHandle",
    "EventLog",
    "LmdbEventLog",
    "MemoryEventLog",
    "Replayer",
    "PerdureError",
    "errors",
    "testing",
    "__version__",
]
#: Names the top level listed before issue 14, with where they live now.
OLD_HOMES = {
    **{
        name: perdure.errors
        for name in perdure.errors.__all__
        if name not in ("PerdureError", "NonRetryableError", "UsageError", "RunError", "Failure")
        and name not in ("SequenceConflictError", "IdempotencyKeyTakenError")
    },
    "RunInfo": perdure.eventlog,
    "ReplayResult": perdure.runtime,
    "ReplaySummary": perdure.runtime,
}


def test_the_top_level_lists_what_applications_touch() -> None:
    assert perdure.__all__ == TOP_LEVEL


def test_every_listed_name_resolves() -> None:
    for name in perdure.__all__:
        assert getattr(perdure, name) is not None, name
    assert perdure.errors.PerdureError is perdure.PerdureError
    assert perdure.testing.MemoryEventLog is perdure.MemoryEventLog


def test_old_names_still_import_from_the_top_level_without_being_listed() -> None:
    listed = set(dir(perdure))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name, home in OLD_HOMES.items():
            assert getattr(perdure, name) is getattr(home, name), name
            assert name not in perdure.__all__, name
            assert name not in listed, name
        from perdure import RunFailedError, StateSnapshot, TaskRecord  # noqa: F401
    assert perdure.StateSnapshot.__name__ == "StateSnapshot"


def test_star_import_gives_the_listed_names_only() -> None:
    code = (
        "from perdure import *\n"
        "names = sorted(n for n in dir() if not n.startswith('__') or n == '__version__')\n"
        "print(','.join(names))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out.split(",") == sorted(TOP_LEVEL)
