"""The CLI as users run it: ``python -m perdure`` in its own process, beside a live service."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import entry_points

from perdure.cli import main
from tests.support.cli import APP, APP_V2, cli_process


def test_console_script_points_at_main() -> None:
    (script,) = [ep for ep in entry_points(group="console_scripts") if ep.name == "perdure"]
    assert script.load() is main


def test_python_m_perdure_lists_runs(store: str) -> None:
    ran = cli_process("runs", "list", "--store", store)
    assert ran.code == 0, ran.err
    assert "cli-wait" in ran.out and "cli_review" in ran.out and "waiting" in ran.out


def test_changed_code_fails_replay_naming_position_and_both_sides(store: str) -> None:
    ran = cli_process("replay", "cli-done", "--app", f"{APP_V2}:APP", "--store", store)
    assert ran.code == 1
    assert "DIVERGED at position 0" in ran.out
    assert "recorded:  task 'cli_draft'" in ran.out
    assert "requested: task 'cli_outline'" in ran.out
    fits = cli_process("replay", "cli-done", "--app", f"{APP}:APP", "--store", store)
    assert fits.code == 0 and ": OK" in fits.out


def test_errors_are_one_readable_line_without_traceback(store: str, tmp_path: object) -> None:
    missing = cli_process("runs", "list", "--store", os.path.join(str(tmp_path), "nope"))
    assert missing.code == 1 and missing.err.startswith("perdure: error: no perdure store at")
    unknown = cli_process("runs", "show", "nope", "--store", store)
    assert unknown.code == 1 and "no run with id 'nope'" in unknown.err
    bad_app = cli_process("replay", "cli-done", "--app", "no_such_mod_q:flow", "--store", store)
    assert bad_app.code == 2 and "cannot import 'no_such_mod_q'" in bad_app.err
    usage = cli_process("runs", "frobnicate")
    assert usage.code == 2 and "Usage: perdure runs" in usage.err
    for ran in (missing, unknown, bad_app, usage):
        assert "Traceback" not in ran.err


def test_read_commands_work_beside_a_live_writer(store_copy: str) -> None:
    """A service holds the store for writing; the CLI reads it, follows a run, and may not write."""
    service = subprocess.Popen(
        [sys.executable, os.fspath(APP), "serve", store_copy],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert service.stdout is not None
        assert service.stdout.readline().strip() == "ready"
        follow = cli_process(
            "events", "cli-live", "--follow", "--interval", "0.05", "--store", store_copy
        )
        assert follow.code == 0, follow.err
        kinds = [line.split()[2] for line in follow.out.splitlines()]
        assert kinds[0] == "run_started" and "timer_fired" in kinds and kinds[-1] == "run_completed"
        assert service.stdout.readline().strip() == "done"

        listed = cli_process("runs", "list", "--status", "completed", "--store", store_copy)
        assert listed.code == 0 and "cli-live" in listed.out

        locked = cli_process("cancel", "cli-wait", "--store", store_copy)
        assert locked.code == 1
        assert "open for writing by another process" in locked.err and "Traceback" not in locked.err
    finally:
        service.communicate(input="", timeout=60)
    assert service.returncode == 0, service.stderr


def test_demo_runs_and_leaves_its_runs_to_look_at(tmp_path: object) -> None:
    demo_store = os.path.join(str(tmp_path), "demo")
    ran = cli_process("demo", "--store", demo_store, timeout=90)
    assert ran.code == 0, ran.out + ran.err
    assert "All four behaved as promised" in ran.out
    # The demo shows perdure's log on stdout, readable and tidied (it configures that itself).
    assert ran.out.count("attempt failed") == 2 and "weather API answered" in ran.out
    assert "run started" not in ran.out and "run_id=" not in ran.out
    listed = cli_process("runs", "list", "--store", demo_store)
    assert (
        listed.code == 0 and "demo_review_flow" in listed.out and "demo_build_report" in listed.out
    )
