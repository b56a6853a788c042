"""How the `perdure` command line shows things: tables, run details, event lines, replay reports.

Every function returns plain data (for ``--json``) or text lines; none prints,
so the command module decides where output goes.
"""

from __future__ import annotations

from typing import Any

from perdure.actors import RunState, Step
from perdure.cli._text import PAYLOAD_WIDTH, compact, iso, safe_text
from perdure.eventlog import (
    Event,
    EventLog,
    RunCompleted,
    RunInfo,
    RunStarted,
    TaskAttemptFailed,
    TaskAttemptStarted,
    TaskCompleted,
    TimerFired,
    TimerSet,
    to_dict,
)
from perdure.runtime import ReplayResult, ReplaySummary

_HIDDEN = ("run_id", "seq", "ts", "t", "v")


def table(headers: list[str], rows: list[list[str]]) -> list[str]:
    rows = [[safe_text(cell) for cell in row] for row in rows]  # escapes count in the widths
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return lines


# -- runs --------------------------------------------------------------------------------------


def run_row(info: RunInfo) -> dict[str, Any]:
    return {
        "run_id": info.run_id,
        "target": info.target,
        "kind": info.kind,
        "status": info.status,
        "created_at": iso(info.created_at),
        "updated_at": iso(info.updated_at),
        "created_ts": info.created_at,
        "updated_ts": info.updated_at,
        "events": info.next_seq,
        "idempotency_key": info.idempotency_key,
    }


def runs_table(runs: list[RunInfo]) -> list[str]:
    rows = [
        [
            r.run_id,
            r.target,
            r.kind,
            r.status,
            iso(r.created_at),
            iso(r.updated_at),
            str(r.next_seq),
        ]
        for r in runs
    ]
    return table(
        ["RUN ID", "TARGET", "KIND", "STATUS", "CREATED (UTC)", "UPDATED (UTC)", "EVENTS"], rows
    )


def _step_status(step: Step, state: RunState) -> str:
    if step.kind == "task":
        if step.done:
            return "completed"
        if step.failed is not None:
            return "failed"
        if step.open_attempt is not None:
            return f"running (attempt {step.open_attempt})"
        if step.retry_timer is not None:
            due = state.timers.get(step.retry_timer)
            return f"retry due {iso(due[0])}" if due else "retrying"
        return "pending"
    if step.kind == "interrupt":
        if step.answered:
            return "answered"
        if step.fired:
            return "timed out"
        return "cancelled" if step.cancelled else "waiting for an answer"
    if step.kind == "set_event":  # no timer: shown as the timer steps were before
        return "cancelled"
    if step.fired:
        return "fired"
    return f"sleeping until {iso(step.due_at)}" if step.timer_id in state.timers else "cancelled"


def _step_row(step: Step, state: RunState) -> dict[str, Any]:
    row: dict[str, Any] = {
        "position": step.position,
        "kind": step.kind,
        "status": _step_status(step, state),
    }
    if step.kind == "task":
        attempts = (
            step.failures + (1 if step.done else 0) + (1 if step.open_attempt is not None else 0)
        )
        row.update(name=step.name, attempts=attempts)
        if step.done:
            row["result"] = step.result
        if step.last_error is not None:
            row["last_error"] = f"{step.last_error.error_type}: {step.last_error.message}"
    elif step.kind == "interrupt":
        row.update(interrupt_id=step.interrupt_id, question=step.question)
        if step.answered:
            row["answer"] = step.answer
    elif step.kind == "set_event":
        row.update(timer_id="", due_at=iso(0.0))
    else:
        row.update(timer_id=step.timer_id, due_at=iso(step.due_at))
    return row


def _order(position: str) -> tuple[int, ...]:
    return tuple(int(p) for p in position.split(".") if p.isdigit())


def _traceback(state: RunState) -> str:
    """The failure's traceback; for a function, its last attempt's (the user's code, not ours)."""
    step = state.task_at("0")
    if state.kind == "function" and step is not None and step.last_error is not None:
        return step.last_error.traceback
    return state.error.traceback if state.error is not None else ""


def run_details(state: RunState, info: RunInfo | None, events: int) -> dict[str, Any]:
    """Everything `perdure runs show` tells about a run, folded from its events."""
    error = state.error
    steps = [_step_row(state.steps[p], state) for p in sorted(state.steps, key=_order)]
    return {
        "run_id": state.run_id,
        "target": state.target,
        "kind": state.kind,
        "status": state.status,
        "invocation": state.invocation,
        "idempotency_key": state.idempotency_key,
        "input": state.input,
        "result": state.result if state.terminal == "completed" else None,
        "error": None
        if error is None
        else {"type": error.error_type, "message": error.message, "traceback": _traceback(state)},
        "reason": state.reason or None,
        "task_attempts": state.attempts,
        "body_failures": state.body_failures,
        "pending_interrupts": [
            {"id": s.interrupt_id, "position": s.position, "value": s.question}
            for s in state.pending_interrupts()
        ],
        "timers": [
            {"id": tid, "purpose": purpose, "position": pos, "due_at": iso(due), "due_ts": due}
            for tid, (due, purpose, pos) in sorted(state.timers.items(), key=lambda kv: kv[1][0])
        ],
        "steps": steps,
        "created_at": iso(state.created_at),
        "updated_at": iso(state.updated_at),
        "duration_s": round(state.updated_at - state.created_at, 3) if state.created_at else None,
        "events": events,
        "index_status": info.status if info is not None else None,
    }


#: The name prefix of the step a parent's body records for a child workflow (see
#: `perdure.Workflow.__call__`): its input is ``[[child run id, child input], {}]``.
CHILD_STEP = "child:"


def child_runs(events: list[Event]) -> list[dict[str, str]]:
    """The child workflow runs a run's log records (every invocation's), in start order."""
    seen: dict[tuple[int, str], dict[str, str]] = {}
    invocation = 0
    for event in events:
        if type(event) is RunStarted:
            invocation = event.invocation
        elif type(event) is TaskAttemptStarted and event.name.startswith(CHILD_STEP):
            args = event.input[0] if isinstance(event.input, list) and event.input else None
            if isinstance(args, list) and args and isinstance(args[0], str):
                seen.setdefault(
                    (invocation, event.position),
                    {
                        "position": event.position,
                        "run_id": args[0],
                        "workflow": event.name[len(CHILD_STEP) :],
                        "invocation": str(invocation),
                    },
                )
    return list(seen.values())


async def with_statuses(log: EventLog, children: list[dict[str, str]]) -> list[dict[str, str]]:
    """`children` (from `child_runs`), each with its run's status as the store's index has it."""
    for child in children:
        info = await log.get_run(child["run_id"])
        child["status"] = info.status if info is not None else "not started"
    return children


def children_text(children: list[dict[str, str]]) -> list[str]:
    """A run's child workflows, one line each (`runs show`, `events`)."""
    if not children:
        return []
    return ["children:"] + [
        f"  {child['run_id']}  {child['workflow']}  {child['status']}  "
        f"(position {child['position']})"
        for child in children
    ]


def run_details_text(d: dict[str, Any]) -> list[str]:
    def field(name: str, value: Any) -> str:
        return f"{name:<12} {value}"

    lines = [
        field("run", d["run_id"]),
        field("target", f"{d['target']} ({d['kind']})"),
        field("status", d["status"] + (f" ({d['reason']})" if d["reason"] else "")),
        field("invocation", d["invocation"]),
    ]
    if d["idempotency_key"]:
        lines.append(field("idem. key", d["idempotency_key"]))
    lines.append(field("input", compact(d["input"], None)))
    if d["status"] == "completed":
        lines.append(field("result", compact(d["result"], None)))
    if d["error"]:
        lines.append(field("error", f"{d['error']['type']}: {d['error']['message']}"))
    attempts = f"{d['task_attempts']} task attempt(s)"
    if d["body_failures"]:
        attempts += f", {d['body_failures']} body failure(s)"
    lines += [
        field("attempts", attempts),
        field("created", d["created_at"]),
        field(
            "updated",
            d["updated_at"] + (f"  ({d['duration_s']:g} s)" if d["duration_s"] is not None else ""),
        ),
        field("events", d["events"]),
    ]
    if d["pending_interrupts"]:
        lines.append("pending interrupts:")
        for item in d["pending_interrupts"]:
            lines.append(f"  {item['id']}  position {item['position']}: {compact(item['value'])}")
    if d["timers"]:
        lines.append("timers:")
        for t in d["timers"]:
            where = t["position"] or "body"
            lines.append(f"  {t['id']}  {t['purpose']}  due {t['due_at']}  (position {where})")
    lines += children_text(d.get("children") or [])
    if d["steps"]:
        lines.append("steps:")
        rows = []
        for s in d["steps"]:
            what = f"task {s['name']}" if s["kind"] == "task" else s["kind"]
            extra = ""
            if "result" in s:
                extra = f"-> {compact(s['result'], 60)}"
            elif "answer" in s:
                extra = f"answer {compact(s['answer'], 60)}"
            elif "last_error" in s:
                extra = s["last_error"][:80]
            attempts = f"{s['attempts']} attempt(s)" if s["kind"] == "task" else ""
            rows.append([f"  {s['position']}", what, s["status"], attempts, extra])
        lines += table(["  POS", "STEP", "STATUS", "ATTEMPTS", "OUTCOME"], rows)
    if d["error"] and d["error"]["traceback"]:
        lines.append("traceback (last lines):")
        lines += ["  " + line for line in d["error"]["traceback"].rstrip().splitlines()[-8:]]
    return lines


# -- events ------------------------------------------------------------------------------------


def event_payload(event: Event) -> dict[str, Any]:
    """The event's own fields, minus the line's columns and empty defaults (None, {})."""
    data = {k: v for k, v in to_dict(event).items() if v is not None and v != {}}
    for key in _HIDDEN:
        data.pop(key, None)
    if data.get("traceback"):
        data["traceback"] = f"<{len(data['traceback'].splitlines())} lines>"
    return data


def describe(event: Event) -> str:
    """A short human summary of an event ("" when its payload says it better): the demo's
    history and ``perdure events`` on a terminal."""
    if isinstance(event, RunStarted):
        return f"target={event.target} input={compact(event.input, 80)}"
    if isinstance(event, TaskAttemptStarted):
        return f"{event.name} attempt={event.attempt}"
    if isinstance(event, TaskAttemptFailed):
        return f"{event.name} attempt={event.attempt} {event.error_type}: {event.message}"
    if isinstance(event, TimerSet):
        return f"{event.purpose} timer due in {event.due_at - event.ts:.1f}s"
    if isinstance(event, TimerFired):
        return event.timer_id
    if isinstance(event, TaskCompleted):
        return f"{event.name} -> {compact(event.result, 80)}"
    if isinstance(event, RunCompleted):
        return f"result={compact(event.result, 80)}"
    return ""


def event_line(event: Event, *, full: bool = False) -> str:
    payload = compact(event_payload(event), None if full else PAYLOAD_WIDTH)
    return f"{event.seq:>5}  {iso(event.ts)}  {type(event).WIRE_NAME:<20}  {payload}"


# -- replay ------------------------------------------------------------------------------------


def recorded_end_text(result: ReplayResult) -> str:
    if result.recorded_end == "waiting":
        if result.waiting_on:
            return "waiting on interrupt " + ", ".join(result.waiting_on)
        return "waiting on a durable sleep"
    return result.recorded_end


_FIX_HINT = (
    "fix: keep the old code path for runs started before the change (branch on the run's "
    "input, or start new threads for the new code), or cancel those runs"
)


def replay_text(result: ReplayResult) -> list[str]:
    head = f"run {result.run_id} ({result.kind} {result.target}, invocation {result.invocation})"
    div = result.divergence
    if div is not None:
        lines = [f"{head}: DIVERGED at position {div.position}", f"  recorded:  {div.recorded}"]
        if result.recorded_input is not None:
            lines.append(f"             input {compact(result.recorded_input)}")
        lines.append(f"  requested: {div.requested}")
        if result.location:
            lines.append(f"             at {result.location}")
        lines += [
            f"  {result.matched} step(s) matched before it; the recorded run is "
            f"{recorded_end_text(result)}",
            f"  {_FIX_HINT}",
        ]
    elif not result.ok:
        lines = [f"{head}: FAILED ({result.replayed})"]
    else:
        lines = [f"{head}: OK"]
        if result.kind == "workflow":
            where = (
                f"replay reached the end of the log at position {result.stopped_at}"
                if result.stopped_at is not None
                else f"the code {result.replayed}"
            )
            lines.append(f"  {result.matched} step(s) matched; {where}")
        lines.append(f"  recorded run: {recorded_end_text(result)}")
    lines += [f"  note: {note}" for note in result.notes]
    return lines


def summary_line(result: ReplayResult) -> str:
    if result.ok:
        end = recorded_end_text(result)
        what = (
            "a function: nothing to replay"
            if result.kind == "function"
            else f"{result.matched} matched"
        )
        return f"ok        {result.run_id}  {result.target}  {end}  ({what})"
    div = result.divergence
    if div is None:
        return f"FAILED    {result.run_id}  {result.target}  {result.replayed}"
    return (
        f"DIVERGED  {result.run_id}  {result.target}  position {div.position}: "
        f"recorded {div.recorded}; requested {div.requested}"
    )


def summary_text(summary: ReplaySummary) -> list[str]:
    lines = [summary_line(r) for r in summary.results]
    lines += [f"ERROR     {run_id}  {message}" for run_id, message in summary.errors]
    total, failed = len(summary.results), len(summary.failures)
    lines.append(
        f"replayed {total} run(s): {total - failed} ok, {failed} diverged, "
        f"{len(summary.errors)} unreadable, {len(summary.skipped)} skipped"
    )
    if summary.skipped:
        names = sorted({target for _, target in summary.skipped})
        lines.append(f"skipped: runs of workflows not in --app: {', '.join(names)}")
    return lines


def summary_dict(summary: ReplaySummary) -> dict[str, Any]:
    return {
        "ok": summary.ok,
        "replayed": len(summary.results),
        "diverged": len(summary.failures),
        "results": [r.to_dict() for r in summary.results],
        "skipped": [{"run_id": r, "target": t} for r, t in summary.skipped],
        "errors": [{"run_id": r, "message": m} for r, m in summary.errors],
    }
