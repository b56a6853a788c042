"""Every error perdure raises, in one place, grouped by what the caller can do.

::

    PerdureError
        UsageError                the call was wrong: fix it (nothing was written)
            SerializationError        (also TypeError)
            InvalidArgumentsError     (also TypeError)
            UnknownTargetError        (also LookupError)
            RunNotFoundError          (also LookupError)
            DuplicateNameError        (also ValueError)
            PolicyError               (also ValueError)
            IdempotencyConflictError  (also ValueError)
            InvalidResumeError        (also ValueError)
            RunExistsError            (also ValueError)
            RunBusyError
            RunSettledError           (also ValueError)
            NotInWorkflowError        (also RuntimeError)
            ClientUsageError          (also RuntimeError)
            NestedWorkflowError       (also RuntimeError)
            InvalidIdError            (also ValueError)
            RuntimeClosedError        (also RuntimeError)
        RunError                  about one run, `run_id`: handle its outcome
            RunFailedError
            RunCancelledError
            RunParkedError
            ActorCrashedError         (also RuntimeError)
            TaskFailedError
            NonDeterminismError
            RunTimeoutError           (also TimeoutError)
            TaskTimeoutError          (also TimeoutError)
            InterruptTimeoutError     (also TimeoutError)
        StorageError              the store could not do it: fix the store
            StoreLockedError
            StorePathError
            ReadOnlyStoreError
            StoreClosedError
            SchemaVersionError
            CorruptEventError
        SequenceConflictError     internal to the runtime: raised only by an
        IdempotencyKeyTakenError  `EventLog` that your code calls directly

`NonRetryableError` is not a `PerdureError`: your code raises it to fail a
function or task at once, without retries.

`Failure` is not an error either: it is the structured record of a recorded
failure (type name, message, traceback, run id, task and position, attempts)
that `RunFailedError.failure` and `TaskFailedError.failure` return.
"""

from perdure._client import ClientUsageError
from perdure.actors import (
    ActorCrashedError,
    Failure,
    InterruptTimeoutError,
    InvalidResumeError,
    NestedWorkflowError,
    NonDeterminismError,
    NonRetryableError,
    NotInWorkflowError,
    PolicyError,
    RunBusyError,
    RunCancelledError,
    RunExistsError,
    RunFailedError,
    RunParkedError,
    RunSettledError,
    TaskFailedError,
    TaskTimeoutError,
)
from perdure.eventlog import (
    CorruptEventError,
    IdempotencyKeyTakenError,
    PerdureError,
    ReadOnlyStoreError,
    RunError,
    SchemaVersionError,
    SequenceConflictError,
    SerializationError,
    StorageError,
    StoreClosedError,
    StoreLockedError,
    StorePathError,
    UsageError,
)
from perdure.runtime import (
    DuplicateNameError,
    IdempotencyConflictError,
    InvalidArgumentsError,
    InvalidIdError,
    RunNotFoundError,
    RuntimeClosedError,
    RunTimeoutError,
    UnknownTargetError,
)

__all__ = [
    "PerdureError",
    # fix the call
    "UsageError",
    "ClientUsageError",
    "DuplicateNameError",
    "IdempotencyConflictError",
    "InvalidArgumentsError",
    "InvalidIdError",
    "NestedWorkflowError",
    "InvalidResumeError",
    "NotInWorkflowError",
    "PolicyError",
    "RunBusyError",
    "RunExistsError",
    "RunNotFoundError",
    "RuntimeClosedError",
    "SerializationError",
    "UnknownTargetError",
    # handle the run's outcome
    "RunError",
    "NonDeterminismError",
    "RunCancelledError",
    "RunFailedError",
    "RunParkedError",
    "RunSettledError",
    "ActorCrashedError",
    "RunTimeoutError",
    "TaskFailedError",
    "TaskTimeoutError",
    "InterruptTimeoutError",
    # fix the store
    "StorageError",
    "CorruptEventError",
    "ReadOnlyStoreError",
    "SchemaVersionError",
    "StoreClosedError",
    "StoreLockedError",
    "StorePathError",
    # raised by your code
    "NonRetryableError",
    # what a failure recorded
    "Failure",
    # internal to the runtime (an EventLog used directly)
    "IdempotencyKeyTakenError",
    "SequenceConflictError",
]
