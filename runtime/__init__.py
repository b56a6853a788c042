"""perdure.runtime: the Runtime, its supervisor, scheduler, registry and executors.

The replay tools (`Replayer`, `ReplayResult`, `ReplaySummary`) load on first
use: a service that never replays does not pay for importing them.
"""

import importlib
from typing import TYPE_CHECKING, Any

from perdure.runtime._background import (
    BackgroundRuntime,
    background_runtime,
    close_background_runtimes,
    is_background,
    lease_background,
    release_background,
    retain_background,
)
from perdure.runtime._discovery import (
    DEFAULT_PATH,
    check_id,
    current_runtime,
    default_store_path,
    find_runtime,
    new_run_id,
)
from perdure.runtime._errors import (
    DuplicateNameError,
    IdempotencyConflictError,
    InvalidArgumentsError,
    InvalidIdError,
    RunNotFoundError,
    RuntimeClosedError,
    RunTimeoutError,
    UnknownTargetError,
)
from perdure.runtime._executors import lend_while_blocked, run_sync
from perdure.runtime._handle import RunHandle
from perdure.runtime._mockclock import MockClock
from perdure.runtime._outcome import INTERRUPT_KEY, Outcome, settled_outcome
from perdure.runtime._registry import Registry, default_registry
from perdure.runtime._runtime import MISSING, Runtime
from perdure.runtime._scheduler import Scheduler
from perdure.runtime._store import (
    StoreKey,
    open_store,
    same_store,
    store_key,
    store_label,
    store_spec,
)
from perdure.runtime._supervisor import Supervisor, SupervisorStatistics
from perdure.runtime._updates import Closed, Committed, Custom, Settled, Subscription, Update
from perdure.runtime._worker import import_app, run_worker, serve_worker

if TYPE_CHECKING:
    from perdure.runtime._replay_report import ReplayResult, ReplaySummary
    from perdure.runtime._replayer import Replayer

_LAZY = {
    "Replayer": "perdure.runtime._replayer",
    "ReplayResult": "perdure.runtime._replay_report",
    "ReplaySummary": "perdure.runtime._replay_report",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "MISSING",
    "import_app",
    "run_worker",
    "serve_worker",
    "DEFAULT_PATH",
    "open_store",
    "same_store",
    "store_label",
    "store_spec",
    "INTERRUPT_KEY",
    "BackgroundRuntime",
    "Closed",
    "Committed",
    "Custom",
    "Settled",
    "Subscription",
    "Update",
    "DuplicateNameError",
    "IdempotencyConflictError",
    "InvalidArgumentsError",
    "InvalidIdError",
    "MockClock",
    "Outcome",
    "Registry",
    "ReplayResult",
    "ReplaySummary",
    "Replayer",
    "RunHandle",
    "RunNotFoundError",
    "RunTimeoutError",
    "Runtime",
    "RuntimeClosedError",
    "Scheduler",
    "StoreKey",
    "Supervisor",
    "SupervisorStatistics",
    "UnknownTargetError",
    "background_runtime",
    "check_id",
    "close_background_runtimes",
    "current_runtime",
    "default_registry",
    "default_store_path",
    "find_runtime",
    "is_background",
    "lease_background",
    "new_run_id",
    "release_background",
    "retain_background",
    "run_sync",
    "lend_while_blocked",
    "settled_outcome",
    "store_key",
]
