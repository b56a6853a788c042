"""`perdure replay`: one run, --all, --file; divergence reports; --app forms and their errors."""

from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path

import pytest

from perdure.cli import main
from tests.support.cli import APP, APP_V2, cli


def test_replay_of_a_fitting_run_is_exit_0(store: str) -> None:
    ran = cli("replay", "cli-wait", "--app", f"{APP}:APP", "--store", store)
    assert ran.code == 0, ran.err
    assert ran.out.splitlines()[0] == "run cli-wait (workflow cli_review, invocation 0): OK"
    assert "2 step(s) matched; replay reached the end of the log at position 1" in ran.out
    assert "recorded run: waiting on interrupt " in ran.out


def test_replay_of_changed_code_is_exit_1_and_names_position_and_both_sides(store: str) -> None:
    ran = cli("replay", "cli-done", "--app", f"{APP_V2}:APP", "--store", store)
    assert ran.code == 1
    lines = ran.out.splitlines()
    assert lines[0] == "run cli-done (workflow cli_review, invocation 0): DIVERGED at position 0"
    assert lines[1].startswith("  recorded:  task 'cli_draft' with input digest ")
    assert lines[2] == '             input [["otters"],{}]'
    assert lines[3].startswith("  requested: task 'cli_outline' with input digest ")
    assert "cli_app_v2.py" in lines[4] and "in cli_review" in lines[4]
    assert "the recorded run is completed" in ran.out


def test_replay_json_shape(store: str) -> None:
    data = json.loads(
        cli("replay", "cli-done", "--json", "--app", f"{APP_V2}:APP", "--store", store).out
    )
    assert data["ok"] is False and data["recorded_end"] == "completed"
    assert data["divergence"]["position"] == "0"
    assert set(data["divergence"]) == {
        "position",
        "recorded",
        "requested",
        "recorded_input",
        "location",
        "message",
    }
    assert set(data) == {
        "run_id", "target", "kind", "invocation", "ok", "matched", "divergence", "recorded_end",
        "waiting_on", "stopped_at", "replayed", "notes",
    }  # fmt: skip
    ok = json.loads(
        cli("replay", "cli-done", "--json", "--app", f"{APP}:APP", "--store", store).out
    )
    assert ok["ok"] is True and ok["divergence"] is None and ok["matched"] == 3


def test_replay_all_summarises_and_fails_if_any_diverged(store: str) -> None:
    good = cli("replay", "--all", "--app", f"{APP}:APP", "--store", store)
    assert good.code == 0
    assert (
        good.out.splitlines()[-1] == "replayed 4 run(s): 4 ok, 0 diverged, 0 unreadable, 0 skipped"
    )
    bad = cli("replay", "--all", "--in-flight", "--app", f"{APP_V2}:APP", "--store", store)
    assert bad.code == 1
    assert bad.out.splitlines()[0].startswith("DIVERGED  cli-wait  cli_review  position 0")
    assert "replayed 1 run(s): 0 ok, 1 diverged" in bad.out
    data = json.loads(
        cli(
            "replay",
            "--all",
            "--json",
            "--target",
            "cli_review",
            "--app",
            f"{APP}:APP",
            "--store",
            store,
        ).out
    )
    assert data["ok"] and data["replayed"] == 2 and data["skipped"] == [] and data["errors"] == []


def test_replay_all_lists_runs_of_workflows_the_app_does_not_have(
    store: str, tmp_path: Path
) -> None:
    empty = tmp_path / "other_app.py"
    empty.write_text("from perdure.runtime import Registry\nAPP = Registry()\n")
    ran = cli("replay", "--all", "--app", f"{empty}:APP", "--store", store)
    assert ran.code == 0  # nothing diverged; skipped runs are reported, not failed
    assert (
        "2 skipped" in ran.out and "skipped: runs of workflows not in --app: cli_review" in ran.out
    )


def test_replay_since_filters_by_update_time(store: str) -> None:
    ran = cli("replay", "--all", "--since", "2999-01-01", "--app", f"{APP}:APP", "--store", store)
    assert ran.code == 0 and "replayed 0 run(s)" in ran.out
    assert (
        "replayed 4 run(s)"
        in cli("replay", "--all", "--since", "1000d", "--app", f"{APP}:APP", "--store", store).out
    )


def test_replay_of_an_exported_file(store: str, tmp_path: Path) -> None:
    exported = tmp_path / "run.jsonl"
    exported.write_text(cli("events", "cli-done", "--json", "--store", store).out)
    assert cli("replay", "--file", str(exported), "--app", f"{APP}:APP").code == 0
    assert cli("replay", "--file", str(exported), "--app", f"{APP_V2}:APP").code == 1
    exported.write_text("not json\n")
    bad = cli("replay", "--file", str(exported), "--app", f"{APP}:APP")
    assert bad.code == 1 and "line 1" in bad.err


def test_app_may_name_a_workflow_a_list_or_a_module(
    store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(APP.parent))
    monkeypatch.delitem(sys.modules, "cli_app", raising=False)
    forms = (f"{APP}:cli_review", f"{APP}:APP", "cli_app:cli_review", "cli_app", "cli_app.APP")
    for app in (*forms, "cli_app.cli_review"):  # the dotted form: pkgutil.resolve_name's
        ran = cli("replay", "cli-done", "--app", app, "--store", store)
        assert ran.code == 0, (app, ran.out, ran.err)
    for app, message in (
        ("cli_app.no_such_attr", "has no attribute 'no_such_attr'"),
        ("cli_app:no_such_attr", "has no attribute 'no_such_attr'"),
        ("my-app:flow", "cannot import 'my-app'"),
    ):
        ran = cli("replay", "cli-done", "--app", app, "--store", store)
        assert ran.code == 2 and message in ran.err and "Traceback" not in ran.err, (app, ran.err)


@pytest.mark.parametrize(
    ("app", "message"),
    [
        ("no_such_module_xyz:flow", "cannot import 'no_such_module_xyz'"),
        (f"{APP}:no_such_attr", "has no attribute 'no_such_attr'"),
        (f"{APP}:NOT_A_TARGET", "names a int"),
        ("/no/such/file.py:APP", "no such file"),
        (":flow", "give module:attr"),
    ],
)
def test_bad_app_is_exit_2_with_a_readable_error(store: str, app: str, message: str) -> None:
    ran = cli("replay", "cli-done", "--app", app, "--store", store)
    assert ran.code == 2
    assert message in ran.err and "Traceback" not in ran.err


def test_app_that_raises_on_import_is_a_readable_error(store: str, tmp_path: Path) -> None:
    broken = tmp_path / "broken_app.py"
    broken.write_text("raise RuntimeError('config missing')\n")
    ran = cli("replay", "cli-done", "--app", f"{broken}:APP", "--store", store)
    assert ran.code == 2 and "RuntimeError: config missing" in ran.err


def test_unknown_workflow_and_unknown_run_are_exit_1(store: str, tmp_path: Path) -> None:
    empty = tmp_path / "empty_app.py"
    empty.write_text("from perdure.runtime import Registry\nAPP = Registry()\n")
    ran = cli("replay", "cli-done", "--app", f"{empty}:APP", "--store", store)
    assert ran.code == 1 and "cli_review" in ran.err and "Traceback" not in ran.err
    missing = cli("replay", "nope", "--app", f"{APP}:APP", "--store", store)
    assert missing.code == 1 and "no run with id 'nope'" in missing.err


@pytest.mark.parametrize(
    "argv",
    [
        ("replay", "--app", "x:y"),  # neither a run nor --all
        ("replay", "cli-done", "--all", "--app", "x:y"),
        ("replay", "cli-done", "--target", "t", "--app", "x:y"),
        ("replay", "cli-done"),  # --app is required
        ("replay", "--all", "--since", "yesterday-ish", "--app", "x:y"),
    ],
)
def test_replay_usage_errors_are_exit_2(store: str, argv: tuple[str, ...]) -> None:
    ran = cli(*argv, "--store", store)
    assert ran.code == 2 and "Traceback" not in ran.err


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_replay_all_shows_progress_on_a_terminal_only(store: str) -> None:
    piped = cli("replay", "--all", "--app", f"{APP}:APP", "--store", store)
    assert piped.code == 0 and piped.err == ""
    terminal = FakeTerminal()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(terminal):
        assert main(["replay", "--all", "--app", f"{APP}:APP", "--store", store]) == 0
    shown = terminal.getvalue()
    assert "replaying" in shown and "4/4" in shown  # a progress bar (rich)
    assert shown.endswith("\x1b[2K")  # the bar is cleared before the report


def test_stats_says_what_it_is_doing_on_a_terminal_only(store: str) -> None:
    assert cli("stats", "--store", store).err == ""
    terminal = FakeTerminal()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(terminal):
        assert main(["stats", "--store", store]) == 0
    assert "reading store statistics" in terminal.getvalue()
