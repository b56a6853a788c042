"""Errors raised by the runtime: bad requests (unknown names, bad input, conflicts), waits."""

from __future__ import annotations

from perdure.eventlog import RunError, UsageError


class UnknownTargetError(UsageError, LookupError):
    """No function or workflow is registered under that name; `suggestions` lists close names."""

    def __init__(self, message: str, *, name: str, suggestions: tuple[str, ...]) -> None:
        super().__init__(message)
        self.name = name
        self.suggestions = suggestions


class DuplicateNameError(UsageError, ValueError):
    """Two different functions or workflows were registered under one name."""

    def __init__(self, message: str, *, name: str) -> None:
        super().__init__(message)
        self.name = name


class InvalidArgumentsError(UsageError, TypeError):
    """The input does not fit the target's signature (missing, unexpected or extra arguments)."""

    def __init__(self, message: str, *, target: str) -> None:
        super().__init__(message)
        self.target = target


class IdempotencyConflictError(UsageError, ValueError):
    """An idempotency key was reused with a different input than the run that holds it."""

    def __init__(self, message: str, *, key: str, run_id: str) -> None:
        super().__init__(message)
        self.key = key
        self.run_id = run_id


class RunNotFoundError(UsageError, LookupError):
    """No run with that id exists in the store."""

    def __init__(self, message: str, *, run_id: str) -> None:
        super().__init__(message)
        self.run_id = run_id


class RuntimeClosedError(UsageError, RuntimeError):
    """The runtime is not open (not started yet, or already closed)."""


class RunTimeoutError(RunError, TimeoutError):
    """Waiting for a run's result timed out. The run itself carries on; its id is attached."""

    def __init__(self, message: str, *, run_id: str, timeout: float) -> None:
        super().__init__(message, run_id=run_id)
        self.timeout = timeout


class InvalidIdError(UsageError, ValueError):
    """A run id, thread id, idempotency key or name is not usable text; `parameter` names it.

    Ids and keys must be non-empty strings of at most 200 characters, without
    NUL, that UTF-8 can encode (no lone surrogates, which ``json.loads`` makes
    from a ``"\\ud800"`` escape).
    """

    def __init__(self, message: str, *, parameter: str) -> None:
        super().__init__(message)
        self.parameter = parameter
