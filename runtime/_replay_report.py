"""What a replay showed: `ReplayResult`, `ReplaySummary`, and the judgement that builds them.

The judgement compares what the replayed body did (returned, raised, or
stopped at a step the log does not settle) with how the recorded invocation
ended. Any mismatch becomes a `NonDeterminismError` naming the position, what
the log recorded and what the code did; position ``"return"`` means the code
ended differently from the recorded run.
"""

from __future__ import annotations

from typing import Any

import attrs

from perdure.actors import (
    Final,
    NonDeterminismError,
    ReceiveStep,
    RunState,
    SleepStep,
    Suspend,
)
from perdure.eventlog import SerializationError, check_json


@attrs.frozen(kw_only=True)
class ReplayResult:
    """What replaying one run showed.

    ok: the code fits the log (and reproduces the recorded end, if any).
    matched: top-level steps the code asked for that the log had recorded.
    divergence: the first mismatch, as a `NonDeterminismError` (position,
        recorded, requested); position ``"return"`` means the code ended
        differently from the recorded run (other result, error, or no error).
    recorded_end: how the recorded invocation stands: completed, failed,
        cancelled, parked, waiting or running; `waiting_on` lists its pending
        interrupt ids.
    stopped_at: the position where replay reached the end of the log (the
        first step the code asked for that the log does not settle).
    replayed: what the code did: returned, raised ..., reached the end of the
        log, not re-executed (function runs), timed out.
    recorded_input: for a divergence at a task, the input the log recorded there.
    location: for a divergence the matcher found, where the code asked
        (``file:line in function``).
    """

    run_id: str
    target: str
    kind: str
    invocation: int
    ok: bool
    matched: int
    divergence: NonDeterminismError | None
    recorded_end: str
    waiting_on: tuple[str, ...] = ()
    stopped_at: str | None = None
    replayed: str = ""
    notes: tuple[str, ...] = ()
    recorded_input: Any = None
    location: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (the CLI's ``--json``)."""
        div = self.divergence
        return {
            "run_id": self.run_id,
            "target": self.target,
            "kind": self.kind,
            "invocation": self.invocation,
            "ok": self.ok,
            "matched": self.matched,
            "divergence": None
            if div is None
            else {
                "position": div.position,
                "recorded": div.recorded,
                "requested": div.requested,
                "recorded_input": self.recorded_input,
                "location": self.location,
                "message": str(div),
            },
            "recorded_end": self.recorded_end,
            "waiting_on": list(self.waiting_on),
            "stopped_at": self.stopped_at,
            "replayed": self.replayed,
            "notes": list(self.notes),
        }


@attrs.frozen(kw_only=True)
class ReplaySummary:
    """What `Replayer.replay_all` found: a result per replayed run, and what was not replayed."""

    results: tuple[ReplayResult, ...]
    #: (run id, target) of runs whose workflow the replayer does not know.
    skipped: tuple[tuple[str, str], ...] = ()
    #: (run id, message) of runs whose events could not be read or replayed.
    errors: tuple[tuple[str, str], ...] = ()

    @property
    def failures(self) -> tuple[ReplayResult, ...]:
        return tuple(r for r in self.results if not r.ok)

    @property
    def ok(self) -> bool:
        return not self.errors and all(r.ok for r in self.results)


def order(position: str) -> tuple[int, ...]:
    """Sort key of a position ("2" < "2.0" < "10")."""
    return tuple(int(part) for part in position.split(".") if part.isdigit())


def user_location(error: BaseException) -> str | None:
    """Where user code was when `error` was raised: its innermost frame outside perdure."""
    found = None
    tb = error.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        module = frame.f_globals.get("__name__", "")
        ours = module in ("perdure", "asyncio") or module.startswith(
            ("perdure.", "asyncio.", "concurrent.futures")
        )
        if not ours:
            found = f"{frame.f_code.co_filename}:{tb.tb_lineno}, in {frame.f_code.co_name}"
        tb = tb.tb_next
    return found


def error_text(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def find_divergence(error: BaseException) -> NonDeterminismError | None:
    """The `NonDeterminismError` behind `error`, even if user code wrapped it in another error."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, NonDeterminismError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def mismatch(
    state: RunState, position: str, recorded: str, requested: str, why: str
) -> NonDeterminismError:
    """A divergence found by comparing ends (the matcher raises the step-by-step ones itself)."""
    action = (
        requested
        if requested.startswith(("returned", "raised", "did not"))
        else f"asked for {requested}"
    )
    return NonDeterminismError(
        f"run {state.run_id!r}, position {position}: the code {action}, "
        f"but the log recorded {recorded} ({why})",
        run_id=state.run_id,
        position=position,
        recorded=recorded,
        requested=requested,
    )


def judge(
    state: RunState, counter: int, asked: list[tuple[str, str]], outcome: tuple[str, Any]
) -> ReplayResult:
    """Compare what the replayed body did with how the recorded invocation ended.

    `counter` is how many top-level steps the body asked for, `asked` the steps
    it asked for that the log does not settle, `outcome` ("returned" | "raised"
    | "suspended", value).
    """
    kind, value = outcome
    end = state.status
    notes: list[str] = []
    divergence: NonDeterminismError | None = None
    stopped_at: str | None = None
    recorded_top = sorted((p for p in state.steps if p.isdigit()), key=order)
    if kind == "raised":
        divergence = find_divergence(value)
    if divergence is None and kind == "suspended":
        stop = _stop_point(state, asked, value)
        if stop is not None:
            stopped_at, requested = stop
            if end in ("completed", "failed"):
                step = state.steps.get(stopped_at)
                recorded = (
                    f"{step.describe()}, never settled"
                    if step
                    else f"nothing (the run {end} first)"
                )
                divergence = mismatch(
                    state, stopped_at, recorded, requested, f"the recorded run {end} without it"
                )
    elif divergence is None:  # the body returned or raised on its own
        missed = [p for p in recorded_top if int(p) >= counter]
        if missed:
            did = "returned" if kind == "returned" else f"raised {error_text(value)}"
            divergence = mismatch(
                state,
                missed[0],
                state.steps[missed[0]].describe(),
                f"did not ask for it ({did} first)",
                "a recorded step was skipped",
            )
        else:
            divergence = _check_end(state, kind, value, notes)
    if state.error is not None and state.error.error_type == "NonDeterminismError":
        notes.append(f"the recorded run failed with NonDeterminismError: {state.error.message}")
    if kind == "returned":
        replayed = "returned"
    elif kind == "raised":
        replayed = f"raised {error_text(value)}"
    else:
        replayed = "reached the end of the log" if stopped_at is not None else "stopped"
    diverged_at = divergence.position if divergence is not None else None
    matched = sum(1 for p in recorded_top if int(p) < counter and p != diverged_at)
    return ReplayResult(
        run_id=state.run_id,
        target=state.target,
        kind=state.kind,
        invocation=state.invocation,
        recorded_end=end,
        waiting_on=tuple(step.interrupt_id for step in state.pending_interrupts()),
        ok=divergence is None,
        matched=matched,
        divergence=divergence,
        stopped_at=stopped_at,
        replayed=replayed,
        notes=tuple(notes),
    )


def _stop_point(
    state: RunState, asked: list[tuple[str, str]], signal: Any
) -> tuple[str, str] | None:
    """The earliest position where the code waited on a step the log does not settle."""
    points = list(asked)
    if isinstance(signal, Suspend) and signal.detail:
        for step in state.steps.values():
            if step.kind == "interrupt":
                waited = step.interrupt_id
            elif isinstance(step, SleepStep | ReceiveStep):
                waited = step.timer_id
            else:
                continue
            if signal.detail == waited:
                points.append((step.position, step.describe()))
    if not points:
        return None
    return min(points, key=lambda point: order(point[0]))


def _check_end(
    state: RunState, kind: str, value: Any, notes: list[str]
) -> NonDeterminismError | None:
    """The body ended (returned/raised) having asked for every recorded step: does the end match?"""
    end = state.status
    recorded_error = (
        f"failure {state.error.error_type}: {state.error.message}" if state.error else ""
    )
    if kind == "raised":
        error: BaseException = value
        if end == "completed":
            return mismatch(
                state,
                "return",
                f"result {state.result!r}",
                f"raised {error_text(error)}",
                "the recorded run completed",
            )
        if (
            end == "failed"
            and state.error is not None
            and state.error.error_type != type(error).__name__
        ):
            return mismatch(
                state, "return", recorded_error, f"raised {error_text(error)}", "a different error"
            )
        if end in ("running", "waiting") and not state.body_failures:
            return mismatch(
                state,
                "return",
                f"a run still {end}",
                f"raised {error_text(error)}",
                "the recorded run did not fail here",
            )
        return None
    result, saved = (value.value, value.save) if isinstance(value, Final) else (value, value)
    try:
        result = check_json(result, "return value")
        saved = check_json(saved, "saved value")
    except SerializationError as exc:
        if end == "failed":
            return None  # the recorded run failed storing this value too
        return mismatch(
            state,
            "return",
            f"a run {end}",
            f"returned a value that cannot be stored ({exc})",
            "the live run could not have stored it",
        )
    if end == "completed":
        if result != state.result or saved != state.previous:
            extra = saved != state.previous
            recorded = f"result {state.result!r}" + (f", saved {state.previous!r}" if extra else "")
            mine = f"returned {result!r}" + (f", saved {saved!r}" if extra else "")
            return mismatch(
                state,
                "return",
                recorded,
                mine,
                "same recorded steps, different result: the body depends on something outside "
                "its tasks (time, randomness, globals)",
            )
    elif end == "failed":
        return mismatch(
            state, "return", recorded_error, f"returned {result!r}", "the recorded run failed"
        )
    elif end in ("running", "waiting"):
        notes.append(
            "the code completes from the recorded steps; the recorded run had not recorded its end"
        )
    return None
