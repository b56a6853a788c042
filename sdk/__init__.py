"""perdure: durable execution for Python — functions and workflows that survive failures.

Functions (`@function`) retry with backoff, honour idempotency keys and resume
after a crash. Workflows (`@entrypoint` + `@task`) record every task result,
pause for people with `interrupt()` and continue with `Command(resume=...)`,
possibly days later in another process. Everything is an event in a log that
can be replayed.
"""

import importlib
import warnings
from typing import TYPE_CHECKING, Any

from perdure import errors as errors
from perdure._client import Client
from perdure._function import DurableFunction, FunctionContext, function
from perdure._workflow import (
    Task,
    Workflow,
    ainterrupt,
    areceive,
    asleep,
    entrypoint,
    get_previous_state,
    receive,
    set_event,
    sleep,
    task,
)
from perdure.actors import (
    BackoffPolicy,
    BackoffType,
    Command,
    Interrupt,
    NonRetryableError,
    RetryPolicy,
    TaskFuture,
    interrupt,
)
from perdure.eventlog import EventLog, LmdbEventLog, MemoryEventLog, PerdureError
from perdure.runtime import RunHandle, Runtime

if TYPE_CHECKING:
    from perdure import testing as testing
    from perdure._workflow_api import StateSnapshot as StateSnapshot
    from perdure._workflow_api import TaskRecord as TaskRecord
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
    from perdure.eventlog import RunInfo as RunInfo
    from perdure.runtime import Replayer
    from perdure.runtime import ReplayResult as ReplayResult
    from perdure.runtime import ReplaySummary as ReplaySummary

#: Loaded on first use: the replay tools (see `perdure.runtime`) and the test helpers.
_LAZY = {
    "Replayer": "perdure.runtime",
    "testing": "perdure.testing",
}
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
    """The replay tools and `testing` load on first use; old names resolve; moved names warn."""
    if name in _OLD:
        return getattr(importlib.import_module(_OLD[name]), name)
    if name in _MOVED:
        home = _MOVED[name]
        warnings.warn(
            f"perdure.{name} is internal to the runtime and moved to {home}; "
            f"import it from there (from {home} import {name})",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(home), name)
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(_LAZY[name])
    value = module if name == "testing" else getattr(module, name)
    globals()[name] = value
    return value


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
