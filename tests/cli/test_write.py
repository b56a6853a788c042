"""`perdure resume`, `continue` and `cancel`: they open a Runtime on the store, message the run."""

from __future__ import annotations

import asyncio
import json
import math
import sys
from pathlib import Path

import pytest

from perdure import Runtime
from perdure.runtime import Outcome
from perdure.testing import MockClock
from tests.support.cli import APP, cli

from . import cli_app


def status_of(store: str, run_id: str) -> str:
    return str(json.loads(cli("runs", "show", run_id, "--json", "--store", store).out)["status"])


def test_resume_with_app_continues_the_run_here_until_it_settles(store_copy: str) -> None:
    ran = cli(
        "resume", "cli-wait", "--value", '"approve"', "--app", f"{APP}:APP", "--store", store_copy
    )
    assert ran.code == 0, ran.err
    result = '{"verdict":"approve","outcome":"published a draft about badgers"}'
    assert ran.out.strip() == f"run cli-wait: completed with result {result}"
    assert status_of(store_copy, "cli-wait") == "completed"
    assert cli("replay", "cli-wait", "--app", f"{APP}:APP", "--store", store_copy).code == 0


def test_resume_json_output(store_copy: str) -> None:
    ran = cli(
        "resume",
        "cli-wait",
        "--json",
        "--value",
        '"no"',
        "--app",
        f"{APP}:APP",
        "--store",
        store_copy,
    )
    data = json.loads(ran.out)
    assert data["status"] == "completed" and data["result"] == {"verdict": "no", "outcome": "kept"}


def test_resume_without_app_records_the_answer_for_the_service(store_copy: str) -> None:
    ran = cli("resume", "cli-wait", "--value", '"approve"', "--store", store_copy)
    assert ran.code == 0, ran.err
    assert "answer recorded" in ran.out
    # The CLI shows perdure's warnings on stderr (it configures that for itself), not info.
    assert "run target is not registered in this process" in ran.err
    assert "run_id=cli-wait" in ran.err and "target=cli_review" in ran.err
    assert "run started" not in ran.err + ran.out
    # The answer is in the log; the run waits for a process with its code.
    events = cli("events", "cli-wait", "--store", store_copy).out.splitlines()
    assert events[-1].split()[2] == "resumed" and '"value":"approve"' in events[-1]
    assert status_of(store_copy, "cli-wait") == "running"

    # The service, started again with its code, picks the run up and finishes it.
    async def service() -> Outcome:
        async with Runtime(path=store_copy, registry=cli_app.APP) as rt:
            return await rt.wait("cli-wait", timeout=30)

    outcome = asyncio.run(service())
    assert outcome.result == {"verdict": "approve", "outcome": "published a draft about badgers"}


def test_resume_of_a_run_that_is_not_waiting_is_exit_1(store_copy: str) -> None:
    ran = cli("resume", "cli-done", "--value", '"x"', "--store", store_copy)
    assert ran.code == 1 and "no pending interrupt" in ran.err and "Traceback" not in ran.err


@pytest.mark.parametrize("value", ["{bad", "", "NaN", "'single'", "[1,"])
def test_resume_value_that_is_not_json_is_exit_2(store_copy: str, value: str) -> None:
    ran = cli("resume", "cli-wait", "--value", value, "--store", store_copy)
    assert ran.code == 2 and "--value is not valid JSON" in ran.err
    assert status_of(store_copy, "cli-wait") == "waiting"


def test_resume_unknown_run_and_missing_store_are_exit_1(store_copy: str, tmp_path: Path) -> None:
    assert cli("resume", "nope", "--value", "1", "--store", store_copy).code == 1
    missing = cli("resume", "x", "--value", "1", "--store", str(tmp_path / "none"))
    assert missing.code == 1 and "no perdure store" in missing.err
    assert not (tmp_path / "none").exists()  # never creates a store by accident


def test_cancel_a_waiting_run_then_again(store_copy: str) -> None:
    ran = cli("cancel", "cli-wait", "--store", store_copy)
    assert ran.code == 0 and ran.out.strip() == "run cli-wait: cancelled (it was waiting)"
    assert status_of(store_copy, "cli-wait") == "cancelled"
    again = cli("cancel", "cli-wait", "--json", "--store", store_copy)
    assert (
        again.code == 0
        and json.loads(again.out)["message"] == "already cancelled; nothing to cancel"
    )
    shown = json.loads(cli("runs", "show", "cli-wait", "--json", "--store", store_copy).out)
    assert shown["reason"] == "cancelled from the command line"


def test_cancel_unknown_run_is_exit_1(store_copy: str) -> None:
    ran = cli("cancel", "nope", "--store", store_copy)
    assert ran.code == 1 and "no run with id 'nope'" in ran.err


def test_demo_missing_is_a_readable_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "perdure.cli._demo", None)  # as if it were not installed
    ran = cli("demo", "--store", str(tmp_path / "demo"))
    assert ran.code == 1 and "demo is not part of this perdure installation" in ran.err


def test_resume_with_an_app_that_lacks_the_workflow_records_nothing(
    store_copy: str, tmp_path: Path
) -> None:
    other = tmp_path / "other_app.py"
    other.write_text("from perdure.runtime import Registry\nAPP = Registry()\n")
    ran = cli(
        "resume", "cli-wait", "--value", '"approve"', "--app", f"{other}:APP", "--store", store_copy
    )
    assert ran.code == 2 and "has no workflow 'cli_review'" in ran.err
    assert status_of(store_copy, "cli-wait") == "waiting"


def test_resume_with_app_drives_only_the_run_it_names(store_copy: str) -> None:
    """Other unfinished runs - one answered and ready to go on, one with a retry long due -
    are left for the service: the CLI process runs the named run and nothing else."""

    async def prepare() -> None:
        clock = MockClock(autojump=False)  # its timers are long due on the CLI's wall clock
        async with Runtime(path=store_copy, registry=cli_app.APP, clock=clock) as rt:
            await rt.start(cli_app.cli_review, "moles", run_id="other-answered")
            await rt.wait("other-answered")
            await rt.start(cli_app.cli_broken, {"n": 1}, run_id="other-retrying")
            for _ in range(500):
                if any(t.run_id == "other-retrying" for t in await rt.log.due_timers(math.inf)):
                    break
                await asyncio.sleep(0.01)
            else:
                raise AssertionError("the retry timer was never set")

    asyncio.run(prepare())
    answered = cli("resume", "other-answered", "--value", '"approve"', "--store", store_copy)
    assert answered.code == 0 and "answer recorded" in answered.out
    others = ("other-answered", "other-retrying")
    before = {run: cli("events", run, "--store", store_copy).out for run in others}

    ran = cli(
        "resume", "cli-wait", "--value", '"approve"', "--app", f"{APP}:APP", "--store", store_copy
    )
    assert ran.code == 0, ran.err
    assert "completed" in ran.out and "other-" not in ran.out
    assert status_of(store_copy, "cli-wait") == "completed"
    for run in others:
        assert cli("events", run, "--store", store_copy).out == before[run], f"{run} was driven"
        assert status_of(store_copy, run) == "running"


def test_continue_reopens_a_cancelled_run_and_refuses_a_settled_one(store_copy: str) -> None:
    refused = cli("continue", "cli-wait", "--store", store_copy)
    assert refused.code == 1
    assert refused.out.strip() == (
        "run cli-wait: waiting: nothing to continue; only a failed, parked or cancelled run "
        "can be continued (answer it with `perdure resume`)"
    )
    assert cli("cancel", "cli-wait", "--store", store_copy).code == 0
    ran = cli("continue", "cli-wait", "--app", f"{APP}:APP", "--store", store_copy)
    assert ran.code == 0, ran.err
    assert ran.out.strip().startswith("run cli-wait: waiting again on interrupt ")
    assert status_of(store_copy, "cli-wait") == "waiting"
    events = cli("events", "cli-wait", "--store", store_copy).out.splitlines()
    assert [line.split()[2] for line in events].count("run_continued") == 1


def test_continue_without_app_reopens_for_the_service(store_copy: str) -> None:
    assert cli("cancel", "cli-wait", "--store", store_copy).code == 0
    ran = cli("continue", "cli-wait", "--json", "--store", store_copy)
    assert ran.code == 0, ran.err
    data = json.loads(ran.out)
    # Reopened: it waits on its interrupt again (a cancelled run's questions stay asked).
    assert data["status"] == "waiting" and "reopened (it was cancelled)" in data["message"]
    assert cli("continue", "nope", "--store", store_copy).code == 1
