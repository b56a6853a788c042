"""perdure.eventlog: event types, their JSON codec, and the durable logs that store them.

This layer knows nothing of user code or of actors. `EventLog` is the port;
`MemoryEventLog`, `LmdbEventLog` and `PostgresEventLog` are its adapters
(`PostgresEventLog` is imported on first use: it needs the ``postgres`` extra;
`LmdbEventLog` too, so that a program that never opens a store does not load it).
"""

import sys
from typing import TYPE_CHECKING, Any, TypeGuard

from perdure.eventlog._codec import (
    GC_PAUSE_FROM,
    decode,
    encode,
    from_dict,
    gc_paused,
    register_upcaster,
    to_dict,
)
from perdure.eventlog._errors import (
    CorruptEventError,
    IdempotencyKeyTakenError,
    LeaseLostError,
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
from perdure.eventlog._events import (
    BY_WIRE_NAME,
    EVENT_TYPES,
    Event,
    EventPublished,
    InterruptCancelled,
    Interrupted,
    MessageDelivered,
    MessageReceived,
    ReceiveCancelled,
    ReceiveWaiting,
    Resumed,
    RunCancelled,
    RunCompleted,
    RunContinued,
    RunFailed,
    RunKind,
    RunParked,
    RunStarted,
    TaskAttemptFailed,
    TaskAttemptStarted,
    TaskCompleted,
    TaskFailed,
    TaskSuspended,
    TimerCancelled,
    TimerFired,
    TimerPurpose,
    TimerSet,
)
from perdure.eventlog._json import check_json, digest, fresh
from perdure.eventlog._memory import MemoryEventLog
from perdure.eventlog._postgres_schema import is_postgres_url, redact
from perdure.eventlog._protocol import (
    RUN_STATUSES,
    SETTLED_STATUSES,
    Durability,
    EventLog,
    IdempotencyRecord,
    LogStatistics,
    RunInfo,
    RunStatus,
    TimerEntry,
)
from perdure.eventlog._values import declared_types, rebuild, restore

if TYPE_CHECKING:
    from perdure.eventlog._lmdb import LmdbEventLog
    from perdure.eventlog._postgres import PostgresEventLog


def is_lmdb_log(log: object) -> TypeGuard["LmdbEventLog"]:
    """True for an `LmdbEventLog`, without loading the LMDB store to ask (none exists before)."""
    module = sys.modules.get(f"{__name__}._lmdb")
    return module is not None and isinstance(log, module.LmdbEventLog)


def __getattr__(name: str) -> Any:
    if name == "LmdbEventLog":
        from perdure.eventlog._lmdb import LmdbEventLog

        globals()[name] = LmdbEventLog
        return LmdbEventLog
    if name == "PostgresEventLog":
        try:
            from perdure.eventlog._postgres import PostgresEventLog
        except ImportError as exc:
            raise ImportError(
                f"PostgresEventLog needs the PostgreSQL driver: pip install 'perdure[postgres]' "
                f"({exc})"
            ) from exc
        return PostgresEventLog
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "GC_PAUSE_FROM",
    "declared_types",
    "fresh",
    "rebuild",
    "redact",
    "restore",
    "BY_WIRE_NAME",
    "EVENT_TYPES",
    "RUN_STATUSES",
    "SETTLED_STATUSES",
    "CorruptEventError",
    "Durability",
    "Event",
    "EventLog",
    "IdempotencyKeyTakenError",
    "IdempotencyRecord",
    "LeaseLostError",
    "Interrupted",
    "LmdbEventLog",
    "LogStatistics",
    "MemoryEventLog",
    "PostgresEventLog",
    "PerdureError",
    "ReadOnlyStoreError",
    "RunError",
    "Resumed",
    "EventPublished",
    "MessageDelivered",
    "MessageReceived",
    "ReceiveCancelled",
    "InterruptCancelled",
    "ReceiveWaiting",
    "RunCancelled",
    "RunCompleted",
    "RunContinued",
    "RunFailed",
    "RunInfo",
    "RunKind",
    "RunParked",
    "RunStarted",
    "RunStatus",
    "SchemaVersionError",
    "SequenceConflictError",
    "SerializationError",
    "StorageError",
    "StoreClosedError",
    "StoreLockedError",
    "StorePathError",
    "TaskAttemptFailed",
    "TaskAttemptStarted",
    "TaskCompleted",
    "TaskFailed",
    "TaskSuspended",
    "TimerCancelled",
    "TimerEntry",
    "TimerFired",
    "TimerPurpose",
    "TimerSet",
    "UsageError",
    "check_json",
    "decode",
    "digest",
    "encode",
    "from_dict",
    "gc_paused",
    "is_lmdb_log",
    "is_postgres_url",
    "register_upcaster",
    "to_dict",
]
