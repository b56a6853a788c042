"""`perdure runs list|show`, `perdure events`, `perdure stats`: output, --json shapes, errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from perdure.eventlog import from_dict
from tests.support.cli import cli


def test_runs_list_is_a_table_newest_first(store: str) -> None:
    ran = cli("runs", "list", "--store", store)
    assert ran.code == 0, ran.err
    lines = ran.out.splitlines()
    assert lines[0].split() == [
        "RUN",
        "ID",
        "TARGET",
        "KIND",
        "STATUS",
        "CREATED",
        "(UTC)",
        "UPDATED",
        "(UTC)",
        "EVENTS",
    ]
    rows = [line.split() for line in lines[1:]]
    assert [row[0] for row in rows] == ["cli-add", "cli-fail", "cli-wait", "cli-done"]
    assert rows[2][:4] == ["cli-wait", "cli_review", "workflow", "waiting"]
    assert rows[1][3] == "failed"


def test_runs_list_filters_limits_and_takes_options_before_the_command(store: str) -> None:
    assert (
        cli("--store", store, "runs", "list", "--status", "waiting")
        .out.splitlines()[1]
        .startswith("cli-wait")
    )
    by_target = cli("runs", "list", "--target", "cli_review", "--store", store).out
    assert "cli-done" in by_target and "cli-add" not in by_target
    limited = cli("runs", "list", "--limit", "1", "--store", store).out.splitlines()
    assert len(limited) == 3 and "newest 1 of 4" in limited[-1]
    assert (
        cli("runs", "list", "--status", "parked", "--store", store).out.strip() == "no runs match"
    )


def test_runs_list_json_shape(store: str) -> None:
    ran = cli("--json", "runs", "list", "--store", store)
    rows = json.loads(ran.out)
    assert [r["run_id"] for r in rows] == ["cli-add", "cli-fail", "cli-wait", "cli-done"]
    assert set(rows[0]) == {
        "run_id", "target", "kind", "status", "created_at", "updated_at",
        "created_ts", "updated_ts", "events", "idempotency_key",
    }  # fmt: skip
    assert rows[0]["idempotency_key"] == "add-1-2" and rows[0]["events"] == 4
    assert rows[0]["created_at"].endswith("Z")


def test_runs_show_a_waiting_workflow(store: str) -> None:
    ran = cli("runs", "show", "cli-wait", "--store", store)
    assert ran.code == 0
    text = ran.out
    assert "status       waiting" in text
    assert 'input        "badgers"' in text
    assert "pending interrupts:" in text and '"question":"publish?"' in text
    assert "task cli_draft" in text and "waiting for an answer" in text


def test_runs_show_a_failed_function_names_its_error_and_traceback(store: str) -> None:
    text = cli("runs", "show", "cli-fail", "--store", store).out
    assert "error        ValueError: cannot do 3" in text
    assert "2 task attempt(s)" in text
    assert 'raise ValueError(f"cannot do {n}")' in text  # the user's line, not perdure's


def test_runs_show_json_shape(store: str) -> None:
    done = json.loads(cli("runs", "show", "cli-done", "--json", "--store", store).out)
    assert done["status"] == "completed" and done["kind"] == "workflow"
    assert done["result"] == {"verdict": "approve", "outcome": "published a draft about otters"}
    assert [s["position"] for s in done["steps"]] == ["0", "1", "2"]
    assert done["steps"][1] == {
        "position": "1",
        "kind": "interrupt",
        "status": "answered",
        "interrupt_id": done["steps"][1]["interrupt_id"],
        "question": {"question": "publish?", "draft": "a draft about otters"},
        "answer": "approve",
    }
    assert done["error"] is None and done["pending_interrupts"] == [] and done["timers"] == []
    assert done["events"] == 8 and done["duration_s"] >= 0
    waiting = json.loads(cli("runs", "show", "cli-wait", "--json", "--store", store).out)
    assert (
        len(waiting["pending_interrupts"]) == 1
        and waiting["pending_interrupts"][0]["position"] == "1"
    )
    failed = json.loads(cli("runs", "show", "cli-fail", "--json", "--store", store).out)
    assert failed["error"]["type"] == "ValueError" and "Traceback" in failed["error"]["traceback"]


def test_events_one_line_each_in_order(store: str) -> None:
    ran = cli("events", "cli-done", "--store", store)
    lines = ran.out.splitlines()
    assert len(lines) == 8
    assert [line.split()[0] for line in lines] == [str(n) for n in range(8)]
    assert [line.split()[2] for line in lines] == [
        "run_started", "task_attempt_started", "task_completed", "interrupted",
        "resumed", "task_attempt_started", "task_completed", "run_completed",
    ]  # fmt: skip
    assert lines[0].split()[1].endswith("Z")
    assert '"value":"approve"' in lines[4]


def test_events_shortens_payloads_unless_full(store: str) -> None:
    short = cli("events", "cli-fail", "--store", store).out
    full = cli("events", "cli-fail", "--full", "--store", store).out
    assert "…" in short and "…" not in full
    assert "<" in full and "lines>" in full  # tracebacks are summarised, never dumped inline


def test_events_json_lines_round_trip(store: str) -> None:
    lines = cli("events", "cli-wait", "--json", "--store", store).out.splitlines()
    events = [from_dict(json.loads(line)) for line in lines]
    assert [e.seq for e in events] == [0, 1, 2, 3]
    assert type(events[-1]).WIRE_NAME == "interrupted"


def test_events_follow_on_a_settled_run_ends_at_once(store: str) -> None:
    ran = cli("events", "cli-done", "--follow", "--store", store)
    assert ran.code == 0 and len(ran.out.splitlines()) == 8


def test_stats(store: str) -> None:
    ran = cli("stats", "--store", store)
    assert ran.code == 0
    assert "runs              4  (waiting 1, completed 2, failed 1)" in ran.out
    data = json.loads(cli("stats", "--json", "--store", store).out)
    assert data["runs"] == 4 and data["events"] == 8 + 4 + 9 + 4
    assert data["runs_by_status"]["completed"] == 2 and data["runs_by_status"]["parked"] == 0
    assert data["idempotency_keys"] == 1 and data["size_bytes"] > 0
    assert data["store"] == os.path.abspath(store)


@pytest.mark.parametrize(
    "argv",
    [("runs", "show", "nope"), ("events", "nope"), ("runs", "show", "nope", "--json")],
)
def test_unknown_run_id_is_exit_1_with_a_readable_error(store: str, argv: tuple[str, ...]) -> None:
    ran = cli(*argv, "--store", store)
    assert ran.code == 1
    assert "no run with id 'nope'" in ran.err and "Traceback" not in ran.err
    assert ran.out == ""


@pytest.mark.parametrize(
    "argv", [("runs", "list"), ("stats",), ("events", "x"), ("runs", "show", "x")]
)
def test_missing_store_is_exit_1_with_a_readable_error(
    tmp_path: Path, argv: tuple[str, ...]
) -> None:
    ran = cli(*argv, "--store", str(tmp_path / "nothing-here"))
    assert ran.code == 1
    assert "no perdure store at" in ran.err and "PERDURE_STORE" in ran.err
    assert "Traceback" not in ran.err


def test_a_folder_that_is_not_a_store_is_a_readable_error(tmp_path: Path) -> None:
    ran = cli("runs", "list", "--store", str(tmp_path))
    assert ran.code == 1 and "no perdure store" in ran.err and "Traceback" not in ran.err


def test_store_defaults_to_perdure_path(store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERDURE_PATH", store)
    assert "cli-wait" in cli("runs", "list").out


@pytest.mark.parametrize(
    "argv",
    [
        (),
        ("runs", "lists"),
        ("runs", "list", "--limit", "0"),
        ("runs", "list", "--status", "sleepy"),
        ("nope",),
    ],
)
def test_usage_errors_are_exit_2(argv: tuple[str, ...]) -> None:
    ran = cli(*argv)
    assert ran.code == 2 and "Usage: perdure" in ran.err


def test_help_is_exit_0() -> None:
    ran = cli("--help")
    assert ran.code == 0 and "runs" in ran.out and "replay" in ran.out
