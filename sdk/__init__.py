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
from perdure._client import Client, ClientUsageError
from perdure._function import DurableFunction, FunctionContext, function
from perdure._workflow import (
    Task,
    Workflow,
    areceive,
    asleep,
    entrypoint,
    get_previous_state,
    receive,
    set_event,
    sleep,
    task,
)
from perdure._workflow_api import StateSnapshot, TaskRecord
from perdure.actors import (
    ActorCrashedError,
    BackoffPolicy,
    BackoffType,
    Command,
    Interrupt,
    InterruptTimeoutError,
    InvalidResumeError,
    NestedWorkflowError,
    NonDeterminismError,
    NonRetryableError,
    NotInWorkflowError,
    PolicyError,
    RetryPolicy,
    RunBusyError,
    RunCancelledError,
    RunExistsError,
    RunFailedError,
    RunParkedError,
    RunSettledError,
    TaskFailedError,
    TaskFuture,
    TaskTimeoutError,
    interrupt,
)
from perdure.eventlog import (
    CorruptEventError,
    EventLog,
    LmdbEventLog,
    MemoryEventLog,
    PerdureError,
    ReadOnlyStoreError,
    RunInfo,
    SchemaVersionError,
    SerializationError,
    StorageError,
    StoreClosedError,
    StoreLockedError,
    StorePathError,
)
from perdure.runtime import (
    DuplicateNameError,
    IdempotencyConflictError,
    InvalidArgumentsError,
    InvalidIdError,
    RunHandle,
    RunNotFoundError,
    Runtime,
    RuntimeClosedError,
    RunTimeoutError,
    UnknownTargetError,
)

if TYPE_CHECKING:
    from perdure.runtime import Replayer, ReplayResult, ReplaySummary

_LAZY = frozenset({"Replayer", "ReplayResult", "ReplaySummary"})
#: Names that left the top level, and their new home (still importable from here, with a warning).
_MOVED = {
    "IdempotencyKeyTakenError": "perdure.errors",
    "SequenceConflictError": "perdure.errors",
}


def __getattr__(name: str) -> Any:
    """The replay tools load on first use (see `perdure.runtime`); moved names warn."""
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
    value = getattr(importlib.import_module("perdure.runtime"), name)
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
    "StateSnapshot",
    "TaskRecord",
    # runtime and storage
    "Runtime",
    "RunHandle",
    "RunInfo",
    "EventLog",
    "LmdbEventLog",
    "MemoryEventLog",
    # replay and debugging
    "Replayer",
    "ReplayResult",
    "ReplaySummary",
    # errors
    "PerdureError",
    "ActorCrashedError",
    "ClientUsageError",
    "CorruptEventError",
    "DuplicateNameError",
    "IdempotencyConflictError",
    "InvalidArgumentsError",
    "InvalidIdError",
    "InvalidResumeError",
    "NonDeterminismError",
    "NestedWorkflowError",
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
    "RunTimeoutError",
    "RuntimeClosedError",
    "SchemaVersionError",
    "SerializationError",
    "StorageError",
    "StoreClosedError",
    "StoreLockedError",
    "StorePathError",
    "TaskFailedError",
    "TaskTimeoutError",
    "InterruptTimeoutError",
    "UnknownTargetError",
    "__version__",
]
