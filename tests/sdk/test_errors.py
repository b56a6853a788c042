"""`perdure.errors`: every public error in one module, under `PerdureError`, in three groups.

The groups say what the caller can do: `UsageError` (fix the call), `RunError`
(handle the run's outcome; carries `run_id`), `StorageError` (fix the store).
Every name that used to be importable from `perdure` still is.
"""

from __future__ import annotations

import inspect
import warnings

import pytest

import perdure
import perdure.errors
from perdure.errors import (
    IdempotencyKeyTakenError,
    NonRetryableError,
    PerdureError,
    RunError,
    SequenceConflictError,
    StorageError,
    TaskTimeoutError,
    UsageError,
)

GROUPS = (UsageError, RunError, StorageError)
INTERNAL = {"SequenceConflictError", "IdempotencyKeyTakenError"}
#: `perdure.__all__`'s errors before perdure.errors existed: each must stay importable.
OLD_TOP_LEVEL = [
    "PerdureError",
    "ClientUsageError",
    "CorruptEventError",
    "DuplicateNameError",
    "IdempotencyConflictError",
    "IdempotencyKeyTakenError",
    "InvalidArgumentsError",
    "InvalidResumeError",
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
    "RunTimeoutError",
    "RuntimeClosedError",
    "SchemaVersionError",
    "SequenceConflictError",
    "SerializationError",
    "StorageError",
    "StoreClosedError",
    "StoreLockedError",
    "StorePathError",
    "TaskFailedError",
    "TaskTimeoutError",
    "UnknownTargetError",
    "NonRetryableError",
]


def _errors() -> list[type[BaseException]]:
    """Every name of `perdure.errors` but `Failure` (the record, not an error)."""
    return [getattr(perdure.errors, name) for name in perdure.errors.__all__ if name != "Failure"]


def test_the_failure_record_is_the_only_name_that_is_not_an_exception() -> None:
    others = [
        name
        for name in perdure.errors.__all__
        if not issubclass(getattr(perdure.errors, name), BaseException)
    ]
    assert others == ["Failure"]


def test_every_error_is_a_perdure_error_in_exactly_one_group() -> None:
    for error in _errors():
        assert isinstance(error, type) and issubclass(error, BaseException), error
        if error is NonRetryableError:  # raised by user code, not by perdure
            assert not issubclass(error, PerdureError)
            continue
        assert issubclass(error, PerdureError), error
        if error is PerdureError or error in GROUPS or error.__name__ in INTERNAL:
            continue
        groups = [group.__name__ for group in GROUPS if issubclass(error, group)]
        assert len(groups) == 1, f"{error.__name__} is in {groups}"


def test_internal_errors_are_in_no_group() -> None:
    for error in (SequenceConflictError, IdempotencyKeyTakenError):
        assert issubclass(error, PerdureError)
        assert not issubclass(error, GROUPS)


def test_run_errors_carry_the_run_id() -> None:
    run_errors = [e for e in _errors() if issubclass(e, RunError)]
    assert len(run_errors) == 10
    for error in run_errors:
        params = inspect.signature(error).parameters
        assert params["run_id"].kind is inspect.Parameter.KEYWORD_ONLY, error
        kwargs = {
            name: "x"
            for name, p in params.items()
            if p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is inspect.Parameter.empty
        }
        made = error("it happened", **kwargs)
        assert made.run_id == "x"
        assert str(made) == "it happened"


def test_task_timeout_is_a_perdure_run_error_and_a_timeout() -> None:
    error = TaskTimeoutError("too slow", run_id="r-1", task="fetch", timeout=2.5)
    assert isinstance(error, RunError) and isinstance(error, TimeoutError)
    assert (error.run_id, error.task, error.timeout) == ("r-1", "fetch", 2.5)
    with pytest.raises(PerdureError):
        raise error


def test_usage_errors_keep_their_builtin() -> None:
    """`except ValueError` and friends still catch what they caught before the groups."""
    expected = {
        "SerializationError": TypeError,
        "InvalidArgumentsError": TypeError,
        "UnknownTargetError": LookupError,
        "RunNotFoundError": LookupError,
        "DuplicateNameError": ValueError,
        "PolicyError": ValueError,
        "IdempotencyConflictError": ValueError,
        "InvalidResumeError": ValueError,
        "RunExistsError": ValueError,
        "NotInWorkflowError": RuntimeError,
        "ClientUsageError": RuntimeError,
        "RuntimeClosedError": RuntimeError,
        "RunTimeoutError": TimeoutError,
    }
    for name, builtin in expected.items():
        assert issubclass(getattr(perdure.errors, name), builtin), name


def test_every_old_top_level_name_is_still_importable() -> None:
    moved = INTERNAL
    for name in OLD_TOP_LEVEL:
        assert name in perdure.errors.__all__, name
        if name in moved:
            assert name not in perdure.__all__
            with pytest.warns(DeprecationWarning, match=f"perdure.errors import {name}"):
                value = getattr(perdure, name)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                value = getattr(perdure, name)
        assert value is getattr(perdure.errors, name), name


def test_from_import_of_a_moved_name_warns() -> None:
    with pytest.warns(DeprecationWarning, match="moved to perdure.errors"):
        from perdure import SequenceConflictError as Old
    assert Old is SequenceConflictError
