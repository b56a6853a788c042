"""Failures as the log records them, and back: an exception to stored text, a record to an error.

Both directions live here so the attempt runner, the body runner and the scope
code (which hands a recorded `TaskFailed` to the code that called the task)
agree on one format.
"""

from __future__ import annotations

import traceback

from perdure.actors import _observe
from perdure.actors._errors import NonDeterminismError, NotInWorkflowError, TaskFailedError
from perdure.eventlog import SerializationError, TaskFailed

#: How much of a traceback (its end) an attempt failure keeps.
TRACEBACK_LIMIT = 8000
#: Errors no retry can fix: the code or its values are wrong, not the world.
NEVER_RETRY: tuple[type[BaseException], ...] = (
    SerializationError,
    NonDeterminismError,
    NotInWorkflowError,
)


def format_error(error: BaseException) -> tuple[str, str, str]:
    """Type name, message and traceback of `error`, as text the log can always store.

    A message with a lone surrogate (or a ``__str__`` that raises) must fail the
    attempt like any other error, not the commit that records it.
    """
    try:
        message = str(error)
    except Exception:
        message = f"<{type(error).__name__} whose str() raised>"
    text = "".join(traceback.format_exception(error))
    return (
        _observe.printable(type(error).__name__),
        _observe.printable(message),
        _observe.printable(text[-TRACEBACK_LIMIT:]),
    )


def failure_error(run_id: str, failed: TaskFailed) -> TaskFailedError:
    """The error a task's calling code gets for its recorded final failure."""
    return TaskFailedError(
        f"task {failed.name!r} (run {run_id!r}, position {failed.position}) failed after "
        f"{failed.attempts} attempt(s): {failed.error_type}: {failed.message}",
        run_id=run_id,
        task=failed.name,
        position=failed.position,
        error_type=failed.error_type,
        error_message=failed.message,
        attempts=failed.attempts,
    )
