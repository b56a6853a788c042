"""Snapshots of a folded `RunState`: a long run resumes without decoding and folding its whole log.

The log stays the truth. A snapshot is the state folded from a run's first
``seq`` events, encoded as one JSON document, kept by logs that can
(`LmdbEventLog.write_snapshot`); `load_state` starts from it and applies only
the events after it. It is ignored, and the whole log folded, whenever it does
not fit: the log checks that it was taken from this very log (see
`perdure.eventlog._lmdb_snapshot`), and this module that it was written by the
same fold (`fold_tag`: a digest of the fold's code, so any change to the fold,
or to Python, makes old snapshots ignored) and decodes to a sound state.

A run's actor writes one when the run goes idle before it ends (waiting on an
interrupt, a message, a timer) with at least `SNAPSHOT_AFTER` events past its
last snapshot - and at least a third as many as that snapshot covered, so
that rewriting snapshots of a growing run stays linear in its length.
"""

from __future__ import annotations

import hashlib
import types
from collections.abc import Callable
from typing import Any

import attrs
import orjson

from perdure.actors import _state
from perdure.actors._state import (
    InterruptStep,
    ReceiveStep,
    RunState,
    SetEventStep,
    SleepStep,
    Step,
    TaskStep,
    apply,
    fold,
)
from perdure.eventlog import GC_PAUSE_FROM, Event, EventLog, from_dict, gc_paused, to_dict

#: Events past the last snapshot (or from the start) before an idle run gets a new one.
SNAPSHOT_AFTER = 2000

_STEP_CLASSES: tuple[type[Any], ...] = (
    TaskStep,
    InterruptStep,
    SleepStep,
    ReceiveStep,
    SetEventStep,
)
_EVENT_FIELDS = ("TaskAttemptFailed | None", "TaskFailed | None", "RunFailed | None")
#: RunState fields encoded by hand (containers of steps, tuples, a set)
_SPECIAL = frozenset(
    {"steps", "interrupts", "timers", "messages", "message_keys", "continue_tokens"}
)


def _code_digest(code: types.CodeType, into: Any) -> None:
    into.update(code.co_code)
    into.update(repr(code.co_names).encode())
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _code_digest(const, into)
        elif isinstance(const, frozenset):
            into.update(repr(sorted(map(repr, const))).encode())
        else:
            into.update(repr(const).encode())


_TAG: list[str] = []


def fold_tag() -> str:
    """A digest of the fold's code and of the state's layout: snapshots with another are ignored."""
    if _TAG:
        return _TAG[0]
    digest = hashlib.blake2b(digest_size=12)
    functions = [
        value
        for _, value in sorted(vars(_state).items())
        if isinstance(value, types.FunctionType) and value.__module__ == _state.__name__
    ]
    handlers: list[Any] = [*functions, *_state._APPLY.values()]  # the lambdas among them
    for function in handlers:
        _code_digest(function.__code__, digest)
    classes: list[Any] = [RunState, *_STEP_CLASSES]
    for cls in classes:
        digest.update(repr([(f.name, str(f.type)) for f in attrs.fields(cls)]).encode())
    digest.update(_state.__name__.encode())
    _TAG.append(digest.hexdigest())
    return _TAG[0]


def _encoder(kind: str) -> Callable[[Any], Any] | None:
    if kind in _EVENT_FIELDS:
        return lambda event: None if event is None else to_dict(event)
    return None


def _decoder(kind: str) -> Callable[[Any], Any] | None:
    if kind in _EVENT_FIELDS:
        return lambda data: None if data is None else from_dict(data)
    return None


def _plan(cls: type[Any], skip: frozenset[str] = frozenset()) -> list[tuple[str, Any, Any]]:
    return [
        (f.name, _encoder(str(f.type)), _decoder(str(f.type)))
        for f in attrs.fields(cls)
        if f.name not in skip
    ]


_STEP_PLANS = [_plan(cls) for cls in _STEP_CLASSES]
_STEP_INDEX = {cls: index for index, cls in enumerate(_STEP_CLASSES)}
_STEP_WIDTH = [len(plan) for plan in _STEP_PLANS]
_STATE_PLAN = _plan(RunState, _SPECIAL)


def _row(obj: Any, plan: list[tuple[str, Any, Any]]) -> list[Any]:
    return [
        getattr(obj, name) if encode is None else encode(getattr(obj, name))
        for name, encode, _ in plan
    ]


def encode_state(state: RunState) -> bytes | None:
    """The snapshot payload of `state`; None if it cannot be snapshotted faithfully."""
    kinds: list[int] = []
    steps: list[list[Any]] = []
    for step in state.steps.values():
        index = _STEP_INDEX[type(step)]
        kinds.append(index)
        steps.append(_row(step, _STEP_PLANS[index]))
    interrupts = []
    for interrupt_id, step in state.interrupts.items():
        if state.steps.get(step.position) is not step:
            return None  # not the shared object the fold makes: keep to the log
        interrupts.append([interrupt_id, step.position])
    document = {
        "tag": fold_tag(),
        "state": _row(state, _STATE_PLAN),
        "kinds": kinds,
        "steps": steps,
        "interrupts": interrupts,
        "timers": {key: list(value) for key, value in state.timers.items()},
        "messages": {
            topic: [list(item) for item in items] for topic, items in state.messages.items()
        },
        "message_keys": sorted(state.message_keys),
        "continue_tokens": sorted(state.continue_tokens),
    }
    try:
        return orjson.dumps(document)
    except (TypeError, orjson.JSONEncodeError):
        return None


def _build(cls: type[Any], plan: list[tuple[str, Any, Any]], values: list[Any]) -> Any:
    if len(values) != len(plan):
        raise ValueError(f"{cls.__name__}: {len(values)} values for {len(plan)} fields")
    return cls(
        **{
            name: value if decode is None else decode(value)
            for (name, _, decode), value in zip(plan, values, strict=True)
        }
    )


def decode_state(run_id: str, payload: bytes) -> RunState | None:
    """The state a snapshot payload holds; None if it is not one of this fold's, or unsound."""
    with gc_paused():  # tens of thousands of objects, none in cycles
        state: RunState | None = _decode_state(run_id, payload)
    return state


def _decode_state(run_id: str, payload: bytes) -> RunState | None:
    try:
        document = orjson.loads(payload)
        if document["tag"] != fold_tag():
            return None
        state: RunState = _build(RunState, _STATE_PLAN, document["state"])
        if state.run_id != run_id:
            return None
        steps: dict[str, Step] = {}
        kinds, rows = document["kinds"], document["steps"]
        if len(kinds) != len(rows):
            return None
        classes = _STEP_CLASSES
        for index, row in zip(kinds, rows, strict=True):  # positional: the hot loop of a long run
            if index < 0 or len(row) != _STEP_WIDTH[index]:
                return None
            cls = classes[index]
            step = cls(*row)
            if index == 0 and (step.last_error is not None or step.failed is not None):
                step = _build(TaskStep, _STEP_PLANS[0], row)
            steps[step.position] = step
        interrupts: dict[str, InterruptStep] = {}
        for interrupt_id, position in document["interrupts"]:
            asked = steps[position]
            if not isinstance(asked, InterruptStep):
                return None
            interrupts[interrupt_id] = asked
        state.steps = steps
        state.interrupts = interrupts
        state.timers = {
            key: (float(due), str(purpose), str(position))
            for key, (due, purpose, position) in document["timers"].items()
        }
        state.messages = {
            topic: [(int(seq), value) for seq, value in items]
            for topic, items in document["messages"].items()
        }
        state.message_keys = {str(key) for key in document["message_keys"]}
        state.continue_tokens = frozenset(str(t) for t in document["continue_tokens"])
    except Exception:  # any malformed snapshot: fold the log instead
        return None
    return state


def _fold(run_id: str, events: list[Event], state: RunState | None = None) -> RunState:
    """`fold` (onto `state`, if given), with the cyclic GC paused for a long history."""
    if len(events) < GC_PAUSE_FROM:
        if state is None:
            return fold(run_id, events)
        for event in events:
            apply(state, event)
        return state
    with gc_paused():
        if state is None:
            return fold(run_id, events)
        for event in events:
            apply(state, event)
        return state


async def load_state(log: EventLog, run_id: str) -> tuple[RunState, int]:
    """The run's state, from its snapshot and the events after it when the log keeps a
    snapshot that fits, else folded from all its events; and the seq the snapshot
    covered (0 without one)."""
    reader = getattr(log, "read_with_snapshot", None)
    if reader is None:
        return _fold(run_id, await log.read(run_id)), 0
    payload, events = await reader(run_id)
    if payload is not None:
        state = decode_state(run_id, payload)
        if state is not None and (not events or events[0].seq == state.next_seq):
            covered = state.next_seq
            return _fold(run_id, events, state), covered
        events = await log.read(run_id)  # a snapshot this fold cannot use: the log decides
    return _fold(run_id, events), 0


def snapshot_due(state: RunState, covered: int) -> bool:
    """Whether a run whose last snapshot covered `covered` events deserves a new one now."""
    grown = state.next_seq - covered
    return grown >= SNAPSHOT_AFTER and grown * 3 >= covered


async def save_state(log: EventLog, state: RunState) -> bool:
    """Write `state`'s snapshot to `log` if it keeps them; True if written."""
    writer = getattr(log, "write_snapshot", None)
    if writer is None:
        return False
    payload = encode_state(state)
    if payload is None:
        return False
    written: bool = await writer(state.run_id, state.next_seq, payload)
    return written
