"""perdure: durable execution for Python — functions and workflows that survive failures.

Functions (`@function`) retry with backoff, honour idempotency keys and resume
after a crash. Workflows (`@entrypoint` + `@task`) record every task result,
pause for people with `interrupt()` and continue with `Command(resume=...)`,
possibly days later in another process. Everything is an event in a log that
can be replayed.
"""

from __future__ import annotations

import importlib
import warnings

#: `typing.TYPE_CHECKING` without importing `typing` (~10 ms, most of `import perdure`);
#: type checkers read the name itself.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    # What the names below resolve to, for type checkers and editors; at run time each
    # loads on first access (`__getattr__`), so `import perdure` loads none of them.
    from perdure import errors as errors
    from perdure import testing as testing
    from perdure._client import Client as Client
    from perdure._function import DurableFunction as DurableFunction
    from perdure._function import FunctionContext as FunctionContext
    from perdure._function import function as function
    from perdure._workflow import Task as Task
    from perdure._workflow import Workflow as Workflow
    from perdure._workflow import ainterrupt as ainterrupt
    from perdure._workflow import areceive as areceive
    from perdure._workflow import asleep as asleep
    from perdure._workflow import entrypoint as entrypoint
    from perdure._workflow import get_previous_state as get_previous_state
    from perdure._workflow import receive as receive
    from perdure._workflow import set_event as set_event
    from perdure._workflow import sleep as sleep
    from perdure._workflow import task as task
    from perdure._workflow_api import StateSnapshot as StateSnapshot
    from perdure._workflow_api import TaskRecord as TaskRecord
    from perdure.actors import BackoffPolicy as BackoffPolicy
    from perdure.actors import BackoffType as BackoffType
    from perdure.actors import Command as Command
    from perdure.actors import Interrupt as Interrupt
    from perdure.actors import NonRetryableError as NonRetryableError
    from perdure.actors import RetryPolicy as RetryPolicy
    from perdure.actors import TaskFuture as TaskFuture
    from perdure.actors import interrupt as interrupt
    from perdure.errors import ActorCrashedError as ActorCrashedError
    from perdure.errors import ClientUsageError as ClientUsageError
    from perdure.errors import CorruptEventError as CorruptEventError
    from perdure.errors import DuplicateNameError as DuplicateNameError
    from perdure.errors import IdempotencyConflictError as IdempotencyConflictError
    from perdure.errors import InterruptTimeoutError as InterruptTimeoutError
    from perdure.errors import InvalidArgumentsError as InvalidArgumentsError
    from perdure.errors import InvalidIdError as InvalidIdError
    from perdure.errors import InvalidResumeError as InvalidResumeError
    from perdure.errors import NestedWorkflowError as NestedWorkflowError
    from perdure.errors import NonDeterminismError as NonDeterminismError
    from perdure.errors import NotInWorkflowError as NotInWorkflowError
    from perdure.errors import PolicyError as PolicyError
    from perdure.errors import ReadOnlyStoreError as ReadOnlyStoreError
    from perdure.errors import RunBusyError as RunBusyError
    from perdure.errors import RunCancelledError as RunCancelledError
    from perdure.errors import RunExistsError as RunExistsError
    from perdure.errors import RunFailedError as RunFailedError
    from perdure.errors import RunNotFoundError as RunNotFoundError
    from perdure.errors import RunParkedError as RunParkedError
    from perdure.errors import RunSettledError as RunSettledError
    from perdure.errors import RuntimeClosedError as RuntimeClosedError
    from perdure.errors import RunTimeoutError as RunTimeoutError
    from perdure.errors import SchemaVersionError as SchemaVersionError
    from perdure.errors import SerializationError as SerializationError
    from perdure.errors import StorageError as StorageError
    from perdure.errors import StoreClosedError as StoreClosedError
    from perdure.errors import StoreLockedError as StoreLockedError
    from perdure.errors import StorePathError as StorePathError
    from perdure.errors import TaskFailedError as TaskFailedError
    from perdure.errors import TaskTimeoutError as TaskTimeoutError
    from perdure.errors import UnknownTargetError as UnknownTargetError
    from perdure.eventlog import EventLog as EventLog
    from perdure.eventlog import LmdbEventLog as LmdbEventLog
    from perdure.eventlog import MemoryEventLog as MemoryEventLog
    from perdure.eventlog import PerdureError as PerdureError
    from perdure.eventlog import RunInfo as RunInfo
    from perdure.runtime import Replayer as Replayer
    from perdure.runtime import ReplayResult as ReplayResult
    from perdure.runtime import ReplaySummary as ReplaySummary
    from perdure.runtime import RunHandle as RunHandle
    from perdure.runtime import Runtime as Runtime

#: Where each name of `__all__` lives. `import perdure` loads none of them (it stays a few
#: milliseconds); a name loads its module on first access, `from perdure import task`
#: included, and is then cached in this module's namespace.
_HOMES = {
    **dict.fromkeys(("function", "FunctionContext", "DurableFunction"), "perdure._function"),
    "Client": "perdure._client",
    **dict.fromkeys(
        (
            "entrypoint",
            "task",
            "sleep",
            "asleep",
            "receive",
            "areceive",
            "ainterrupt",
            "set_event",
            "get_previous_state",
            "Workflow",
            "Task",
        ),
        "perdure._workflow",
    ),
    **dict.fromkeys(
        (
            "RetryPolicy",
            "BackoffPolicy",
            "BackoffType",
            "NonRetryableError",
            "interrupt",
            "Command",
            "Interrupt",
            "TaskFuture",
        ),
        "perdure.actors",
    ),
    **dict.fromkeys(("Runtime", "RunHandle", "Replayer"), "perdure.runtime"),
    **dict.fromkeys(
        ("EventLog", "LmdbEventLog", "MemoryEventLog", "PerdureError"), "perdure.eventlog"
    ),
}
#: Subpackages that resolve as attributes, loaded on first access: ``perdure.runtime.X``
#: after a bare `import perdure` worked while it loaded everything, and still does.
_SUBMODULES = frozenset(("errors", "testing", "actors", "eventlog", "runtime", "cli", "serve"))
#: The errors `__all__` listed before `perdure.errors` held them.
_OLD_ERRORS = (
    "ActorCrashedError",
    "ClientUsageError",
    "CorruptEventError",
    "DuplicateNameError",
    "IdempotencyConflictError",
    "InterruptTimeoutError",
    "InvalidArgumentsError",
    "InvalidIdError",
    "InvalidResumeError",
    "NestedWorkflowError",
    "NonDeterminismError",
    "NotInWorkflowError",
    "PolicyError",
    "ReadOnlyStoreError",
    "RunBusyError",
    "RunCancelledError",
    "RunExistsError",
    "RunFailedError",
    "RunNotFoundError",
    "RunParkedError",
    "RunSettledError",
    "RuntimeClosedError",
    "RunTimeoutError",
    "SchemaVersionError",
    "SerializationError",
    "StorageError",
    "StoreClosedError",
    "StoreLockedError",
    "StorePathError",
    "TaskFailedError",
    "TaskTimeoutError",
    "UnknownTargetError",
)
#: Names that left the top level's `__all__`, with their home. They stay importable from
#: here for old code (not listed by `dir()` or `*`); new code imports them from their home.
_OLD = {
    **dict.fromkeys(_OLD_ERRORS, "perdure.errors"),
    "RunInfo": "perdure.eventlog",
    "ReplayResult": "perdure.runtime",
    "ReplaySummary": "perdure.runtime",
    "StateSnapshot": "perdure._workflow_api",
    "TaskRecord": "perdure._workflow_api",
}
#: Names that left the top level, and their new home (still importable from here, with a warning).
_MOVED = {
    "IdempotencyKeyTakenError": "perdure.errors",
    "SequenceConflictError": "perdure.errors",
}


def __getattr__(name: str) -> Any:
    """Load a public name on first use; old names resolve; moved names warn."""
    if name in _HOMES:
        value = getattr(importlib.import_module(_HOMES[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"{__name__}.{name}")
    elif name in _OLD:
        return getattr(importlib.import_module(_OLD[name]), name)
    elif name in _MOVED:
        home = _MOVED[name]
        warnings.warn(
            f"perdure.{name} is internal to the runtime and moved to {home}; "
            f"import it from there (from {home} import {name})",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(home), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The listed names (loaded or not) and what this module holds already."""
    return sorted(set(globals()) | set(__all__))


__version__ = "0.1.0"

__all__ = [
    # functions
    "function",
    "FunctionContext",
    "DurableFunction",
    "RetryPolicy",
    "BackoffPolicy",
    "BackoffType",
    "NonRetryableError",
    "Client",
    # workflows
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
    # runtime and storage
    "Runtime",
    "RunHandle",
    "EventLog",
    "LmdbEventLog",
    "MemoryEventLog",
    # replay and debugging
    "Replayer",
    # errors: the root here, every error in perdure.errors
    "PerdureError",
    "errors",
    # test helpers
    "testing",
    "__version__",
]
