"""Errors raised by the event log layer, and the bases of every perdure error.

Every perdure error derives from `PerdureError`, grouped by what the caller can do:

- `UsageError`: the call was wrong (a bad value, an unknown name, the wrong moment);
  fix the call. Nothing was written.
- `RunError`: about one run, named by `run_id`: it failed, was cancelled or parked,
  diverged from its log, or a wait for it timed out; handle the run's outcome.
- `StorageError`: the store could not do what was asked; fix the store (path,
  permissions, disk, another process holding it).

The bases live here, in the lowest layer, so each layer's errors can derive from
them; `perdure.errors` is their public home. Subclasses carry their context (run
id, sequence, path, ...) as attributes so callers can act on them without parsing
messages.
"""

from __future__ import annotations


class PerdureError(Exception):
    """Base class of every error perdure raises on purpose."""


class UsageError(PerdureError):
    """The call was wrong: a bad value, an unknown name, or the wrong moment. Fix the call.

    Raised before anything is written. Each subclass also derives from the builtin
    that fits (`ValueError`, `TypeError`, `LookupError`, `RuntimeError`).
    """


class RunError(PerdureError):
    """About one run, named by `run_id`: how it ended, or why waiting for it stopped."""

    def __init__(self, message: str, *, run_id: str) -> None:
        super().__init__(message)
        self.run_id = run_id


class SerializationError(UsageError, TypeError):
    """A value cannot be stored: it is not plain JSON (dict/list/str/int/float/bool/None).

    Raised before anything is written. `path` points at the offending value,
    e.g. ``input["items"][3]``.
    """

    def __init__(self, message: str, *, path: str, type_name: str) -> None:
        super().__init__(message)
        self.path = path
        self.type_name = type_name


class StorageError(PerdureError):
    """The store could not complete an operation (I/O error, full disk, closed log)."""


class StoreClosedError(StorageError):
    """An operation was attempted on an event log that has been closed."""


class StoreLockedError(StorageError):
    """Another process already holds this store open for writing."""

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path


class StorePathError(StorageError):
    """The store path cannot hold a store: it is a file, cannot be created, is not
    writable, or (for a read-only open) holds no perdure store. `path` is the path given.
    """

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path


class LeaseLostError(StorageError):
    """This process no longer holds the run's lease: another process took the run over
    (or may, its lease having expired), so nothing this process appends to it lands.
    The run's actor stops here; the run goes on where it is driven now."""

    def __init__(self, message: str, *, run_id: str) -> None:
        super().__init__(message)
        self.run_id = run_id


class ReadOnlyStoreError(StorageError):
    """A write was attempted on a store opened read-only."""


class SchemaVersionError(StorageError):
    """The store or an event was written by a newer perdure than this one can read.

    For an event, `run_id` and `seq` name it; for a whole store they are None.
    """

    def __init__(self, message: str, *, run_id: str | None = None, seq: int | None = None) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.seq = seq


class CorruptEventError(StorageError):
    """A stored event failed its checksum or could not be decoded.

    Names the run and sequence number; other runs are unaffected.
    """

    def __init__(self, message: str, *, run_id: str, seq: int) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.seq = seq


class SequenceConflictError(PerdureError):
    """An append named a stale expected sequence: another writer got there first.

    Internal to the runtime (you see it only when you call an `EventLog` directly).
    Nothing was written. `expected` is what the caller passed, `actual` the
    run's real next sequence number.
    """

    def __init__(self, message: str, *, run_id: str, expected: int, actual: int) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.expected = expected
        self.actual = actual


class IdempotencyKeyTakenError(PerdureError):
    """An append tried to claim an idempotency key that another run already holds.

    Internal to the runtime (you see it only when you call an `EventLog` directly).
    Nothing was written. The runtime catches this and attaches the caller to
    `existing_run_id` (or raises `IdempotencyConflictError` if inputs differ).
    """

    def __init__(
        self, message: str, *, key: str, existing_run_id: str, existing_digest: str
    ) -> None:
        super().__init__(message)
        self.key = key
        self.existing_run_id = existing_run_id
        self.existing_digest = existing_digest
