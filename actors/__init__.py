"""perdure.actors: the run actor, the fold of events to state, and replay of user code.

Actors talk to storage only through the `EventLog` protocol and to their host
runtime through `ActorHost`; they know nothing of LMDB or of the sdk.
"""

from perdure.actors._actor import RunActor
from perdure.actors._clock import Clock, SystemClock
from perdure.actors._errors import (
    ActorCrashedError,
    InterruptTimeoutError,
    InvalidResumeError,
    NestedWorkflowError,
    NonDeterminismError,
    NotInWorkflowError,
    RunBusyError,
    RunCancelledError,
    RunExistsError,
    RunFailedError,
    RunParkedError,
    RunSettledError,
    Suspend,
    TaskFailedError,
    TaskTimeoutError,
)
from perdure.actors._host import ActorHost
from perdure.actors._mailbox import Mailbox
from perdure.actors._messages import (
    Cancel,
    Continue,
    FireTimer,
    Resume,
    SendMessage,
    Start,
    Stop,
    Wake,
)
from perdure.actors._observe import Logger, get_logger
from perdure.actors._policy import (
    NO_RETRY,
    BackoffPolicy,
    BackoffType,
    NonRetryableError,
    PolicyError,
    RetryPolicy,
)
from perdure.actors._replay import match_step
from perdure.actors._scope import (
    Received,
    TaskFuture,
    call_task,
    current_body,
    current_scope,
    durable_sleep,
    interrupt,
    interrupt_id,
    publish_event,
    receive_message,
)
from perdure.actors._state import BODY, RunState, Step, apply, fold
from perdure.actors._targets import (
    AttemptInfo,
    BodyInfo,
    Command,
    Final,
    Interrupt,
    TargetSpec,
    TaskSpec,
    body_config,
)

__all__ = [
    "BODY",
    "NO_RETRY",
    "ActorCrashedError",
    "ActorHost",
    "AttemptInfo",
    "BackoffPolicy",
    "BackoffType",
    "BodyInfo",
    "Cancel",
    "Clock",
    "Command",
    "Continue",
    "Final",
    "FireTimer",
    "Interrupt",
    "InvalidResumeError",
    "RunSettledError",
    "Logger",
    "Mailbox",
    "NonDeterminismError",
    "NonRetryableError",
    "NestedWorkflowError",
    "NotInWorkflowError",
    "PolicyError",
    "Resume",
    "SendMessage",
    "RetryPolicy",
    "RunActor",
    "RunBusyError",
    "RunCancelledError",
    "RunExistsError",
    "RunFailedError",
    "RunParkedError",
    "RunState",
    "Start",
    "Step",
    "Stop",
    "Suspend",
    "SystemClock",
    "TargetSpec",
    "TaskFailedError",
    "TaskFuture",
    "TaskSpec",
    "TaskTimeoutError",
    "InterruptTimeoutError",
    "Wake",
    "apply",
    "body_config",
    "call_task",
    "current_body",
    "current_scope",
    "durable_sleep",
    "fold",
    "get_logger",
    "interrupt",
    "interrupt_id",
    "publish_event",
    "receive_message",
    "Received",
    "match_step",
]
