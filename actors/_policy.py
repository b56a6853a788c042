"""Retry and backoff policies: how many attempts a task gets and how long to wait between them."""

from __future__ import annotations

import enum
import random
from collections.abc import Iterable
from typing import Any

import attrs

from perdure.eventlog import UsageError


class NonRetryableError(Exception):
    """Raise (or subclass) this in a function or task to fail at once, without retries."""


class PolicyError(UsageError, ValueError):
    """A retry or backoff policy is invalid; raised when the decorator is applied."""


class BackoffType(enum.Enum):
    """How the delay grows between attempts."""

    EXPONENTIAL = "exponential"
    LINEAR = "linear"
    CONSTANT = "constant"


def _positive_multiplier(_: Any, attribute: Any, value: float) -> None:
    if not value > 0:
        raise PolicyError(f"BackoffPolicy.{attribute.name} must be > 0, got {value!r}")


@attrs.frozen(kw_only=True)
class BackoffPolicy:
    """Backoff shape: exponential initial*multiplier^n, linear initial*(n+1), constant initial."""

    type: BackoffType = BackoffType.EXPONENTIAL
    multiplier: float = attrs.field(default=2.0, validator=_positive_multiplier)

    @classmethod
    def parse(cls, value: BackoffPolicy | BackoffType | str | None) -> BackoffPolicy:
        """Accept a policy, a BackoffType, or its name in any case ("Exponential")."""
        if value is None:
            return cls()
        if isinstance(value, BackoffPolicy):
            return value
        if isinstance(value, BackoffType):
            return cls(type=value)
        if isinstance(value, str):
            try:
                return cls(type=BackoffType(value.strip().lower()))
            except ValueError:
                pass
        choices = ", ".join(repr(t.value) for t in BackoffType)
        raise PolicyError(f"backoff must be one of {choices} or a BackoffPolicy, got {value!r}")


def _to_backoff(value: BackoffPolicy | BackoffType | str | None) -> BackoffPolicy:
    return BackoffPolicy.parse(value)


def _to_exceptions(value: Iterable[type[BaseException]]) -> tuple[type[BaseException], ...]:
    return tuple(value)


def _check_attempts(_: Any, __: Any, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PolicyError(
            f"RetryPolicy.max_attempts must be an int >= 1 (it counts the first attempt), "
            f"got {value!r}"
        )


def _check_lost(_: Any, __: Any, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PolicyError(f"RetryPolicy.max_lost_attempts must be an int >= 0, got {value!r}")


def _check_non_negative(_: Any, attribute: Any, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise PolicyError(f"RetryPolicy.{attribute.name} must be a number >= 0, got {value!r}")


def _check_jitter(_: Any, __: Any, value: float) -> None:
    if not 0 <= value <= 1:
        raise PolicyError(f"RetryPolicy.jitter must be between 0 and 1, got {value!r}")


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How often to attempt a task and how long to wait in between.

    `max_attempts` counts the first attempt (1 = no retries). Delays start at
    `initial_interval_ms`, grow per `backoff`, are capped at `max_interval_ms`,
    and are spread by up to ±`jitter` (a fraction) when jitter > 0. Exceptions
    that are instances of `non_retryable` (or of `NonRetryableError`) fail at once.

    Attempts lost with their process (`AttemptLost`: a crash or kill while the
    attempt ran) do not count against `max_attempts`; a step fails only once
    more than `max_lost_attempts` of its attempts were lost, so a task that
    brings its process down every time cannot crash-loop the service for ever.
    """

    max_attempts: int = attrs.field(default=3, validator=_check_attempts)
    initial_interval_ms: float = attrs.field(default=1000, validator=_check_non_negative)
    max_interval_ms: float = attrs.field(default=60_000, validator=_check_non_negative)
    backoff: BackoffPolicy = attrs.field(default=BackoffPolicy(), converter=_to_backoff)
    jitter: float = attrs.field(default=0.0, validator=_check_jitter)
    non_retryable: tuple[type[BaseException], ...] = attrs.field(
        default=(), converter=_to_exceptions
    )
    max_lost_attempts: int = attrs.field(default=10, validator=_check_lost)

    def __attrs_post_init__(self) -> None:
        if self.max_interval_ms < self.initial_interval_ms:
            raise PolicyError(
                f"RetryPolicy.max_interval_ms ({self.max_interval_ms}) is below "
                f"initial_interval_ms ({self.initial_interval_ms})"
            )
        for exc in self.non_retryable:
            if not (isinstance(exc, type) and issubclass(exc, BaseException)):
                raise PolicyError(
                    f"RetryPolicy.non_retryable must hold exception classes, got {exc!r}"
                )

    def delay(self, failures: int) -> float:
        """Seconds to wait after the `failures`-th failed attempt (1-based) before the next."""
        n = failures - 1
        base = self.initial_interval_ms
        kind = self.backoff.type
        if kind is BackoffType.EXPONENTIAL:
            try:
                ms = base * self.backoff.multiplier**n
            except OverflowError:  # a very long series: it is at the cap anyway
                ms = self.max_interval_ms
        elif kind is BackoffType.LINEAR:
            ms = base * (n + 1)
        else:
            ms = base
        ms = min(ms, self.max_interval_ms)
        if self.jitter:
            ms *= 1 + random.uniform(-self.jitter, self.jitter)
        return ms / 1000.0

    def is_retryable(self, error: BaseException) -> bool:
        if isinstance(error, NonRetryableError):
            return False
        return not (self.non_retryable and isinstance(error, self.non_retryable))


NO_RETRY = RetryPolicy(max_attempts=1)
