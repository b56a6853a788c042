"""What travels between `perdure serve` and the remote `Client`: outcomes and errors as JSON.

Both sides use this module, so a run's failure, an unknown run or a bad input
raise the same exception on the remote client as on the embedded one.
"""

from __future__ import annotations

from typing import Any

from perdure import errors
from perdure.actors import Failure, Interrupt
from perdure.eventlog import PerdureError
from perdure.runtime import Outcome

#: The header a write request must carry (CSRF: a cross-site form cannot set it).
CSRF_HEADER = "X-Perdure-Request"
#: The largest request body the gateway reads (a run's input, an answer to an interrupt).
MAX_BODY_BYTES = 1024 * 1024

_PLAIN = (str, int, float, bool, type(None))

#: Exceptions a response may name: perdure's own, and the built-in ones for bad input.
ERRORS: dict[str, type[BaseException]] = {
    name: value
    for name in errors.__all__
    if isinstance(value := getattr(errors, name), type) and issubclass(value, Exception)
}
ERRORS.update({"ValueError": ValueError, "TypeError": TypeError, "LookupError": LookupError})

#: HTTP status of each error the API reports (others: 400 for bad input, 500 otherwise).
STATUS: dict[str, int] = {
    "RunNotFoundError": 404,
    "UnknownTargetError": 404,
    "IdempotencyConflictError": 409,
    "RunExistsError": 409,
    "RunBusyError": 409,
    "InvalidResumeError": 409,
    "RunSettledError": 409,
    "RunTimeoutError": 504,
    "RuntimeClosedError": 503,
    "InvalidArgumentsError": 422,
    "SerializationError": 422,
}


def outcome_to_json(outcome: Outcome) -> dict[str, Any]:
    failure = outcome.failure
    return {
        "run_id": outcome.run_id,
        "target": outcome.target,
        "status": outcome.status,
        "result": outcome.result,
        "interrupts": [{"id": i.id, "value": i.value} for i in outcome.interrupts],
        "error_type": failure.error_type if failure else "",
        "error_message": failure.message if failure else "",
        "traceback": failure.traceback if failure else "",
        "attempts": outcome.attempts,
        "reason": outcome.reason,
        "details": dict(failure.details) if failure else {},
    }


def outcome_from_json(data: dict[str, Any]) -> Outcome:
    return Outcome(
        run_id=data["run_id"],
        target=data["target"],
        status=data["status"],
        result=data.get("result"),
        interrupts=tuple(
            Interrupt(value=i.get("value"), id=i["id"]) for i in data.get("interrupts", ())
        ),
        failure=Failure(
            error_type=data.get("error_type", ""),
            message=data.get("error_message", ""),
            traceback=data.get("traceback", ""),
            run_id=data["run_id"],
            attempts=data.get("attempts", 0),
            target=data["target"],
            details=dict(data.get("details") or {}),
        )
        if data["status"] == "failed"
        else None,
        attempts=data.get("attempts", 0),
        reason=data.get("reason", ""),
    )


def error_to_json(exc: BaseException) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body) for an error raised while serving a request."""
    name = type(exc).__name__
    if name not in ERRORS:
        base = next((b for b in type(exc).__mro__ if b.__name__ in ERRORS), None)
        name = base.__name__ if base is not None else "PerdureError"
    fields = {
        key: list(value) if isinstance(value, tuple) else value
        for key, value in vars(exc).items()
        if not key.startswith("_")
        and (
            isinstance(value, _PLAIN)
            or (isinstance(value, tuple) and all(isinstance(v, _PLAIN) for v in value))
        )
    }
    status = STATUS.get(
        name, 400 if isinstance(exc, (PerdureError, ValueError, TypeError)) else 500
    )
    return status, {"error": {"type": name, "message": str(exc), "fields": fields}}


def error_from_json(body: Any, status: int) -> BaseException:
    """The exception a response's ``{"error": ...}`` stands for (PerdureError if unknown)."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return PerdureError(f"the gateway answered HTTP {status}: {str(body)[:200]}")
    cls = ERRORS.get(str(error.get("type")), PerdureError)
    message = str(error.get("message", ""))
    exc = cls.__new__(cls)
    Exception.__init__(exc, message)
    for key, value in (error.get("fields") or {}).items():
        setattr(exc, key, tuple(value) if isinstance(value, list) else value)
    return exc
