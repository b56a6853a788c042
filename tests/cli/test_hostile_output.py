"""The CLI never prints a user's control characters raw: ids and values cannot drive the terminal.

Runs whose ids, names, inputs, results and errors hold ESC/OSC sequences,
newlines, C1 controls and bidi overrides (see hostile_app.py) are listed,
shown, streamed and replayed. Human-readable output shows them as ``\\x1b``
escapes, one table row per run; ``--json`` output carries them exactly.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import unicodedata
from pathlib import Path

import pytest

from tests.support.cli import HERE, cli

from .hostile_app import (
    BIDI_ID,
    C1_ID,
    CLEAR_ID,
    ERROR_TEXT,
    HOSTILE_IDS,
    HOSTILE_INPUT,
    NEWLINE_ID,
    WAIT_ID,
    make,
)

HOSTILE_APP = f"{HERE / 'hostile_app.py'}:APP"
_BIDI = {chr(c) for c in (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))}


def raw_controls(text: str) -> list[str]:
    """The characters in `text` that a terminal would act on (newlines between lines aside)."""
    return [
        repr(ch)
        for ch in text
        if ch != "\n" and (unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp") or ch in _BIDI)
    ]


def shown(text: str) -> str:
    """How `text` must appear in human-readable output."""
    return text.encode("unicode_escape").decode("ascii").replace("\\\\", "\\")


@pytest.fixture(scope="module")
def hostile_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("hostile") / "store"
    asyncio.run(make(os.fspath(path)))
    return os.fspath(path)


def test_runs_list_escapes_ids_and_keeps_one_row_per_run(hostile_store: str) -> None:
    ran = cli("runs", "list", "--store", hostile_store)
    assert ran.code == 0, ran.err
    assert raw_controls(ran.out) == []
    lines = ran.out.splitlines()
    assert len(lines) == 1 + len(HOSTILE_IDS)  # the newline id did not make a row of its own
    for run_id in HOSTILE_IDS:
        assert sum(line.startswith(shown(run_id) + " ") for line in lines[1:]) == 1, run_id
    assert "run-\\x1b[2J\\x1b[31mred" in ran.out
    assert "run-fake\\nrow  injected" in ran.out
    assert "run-\\u202egnp.exe" in ran.out
    assert "run-\\x9b31m-c1" in ran.out
    # The columns still line up: every row's TARGET starts where the header's does.
    column = lines[0].index("TARGET")
    assert all(line[column - 2 : column] == "  " for line in lines[1:])
    assert "hostile\\x1b[1mfn" in ran.out


def test_runs_list_json_is_exact(hostile_store: str) -> None:
    rows = json.loads(cli("--json", "runs", "list", "--store", hostile_store).out)
    assert sorted(r["run_id"] for r in rows) == sorted(HOSTILE_IDS)
    assert "hostile\x1b[1mfn" in {r["target"] for r in rows}


@pytest.mark.parametrize("run_id", HOSTILE_IDS)
def test_runs_show_escapes_every_field(hostile_store: str, run_id: str) -> None:
    ran = cli("runs", "show", run_id, "--store", hostile_store)
    assert ran.code == 0, ran.err
    assert raw_controls(ran.out) == []
    assert ran.out.splitlines()[0] == f"run          {shown(run_id)}"


def test_runs_show_keeps_a_multi_line_error_on_its_line(hostile_store: str) -> None:
    ran = cli("runs", "show", C1_ID, "--store", hostile_store)
    assert raw_controls(ran.out) == []
    assert not any(line.startswith("perdure:") for line in ran.out.splitlines())
    assert shown(ERROR_TEXT) in ran.out


def test_runs_show_json_is_exact(hostile_store: str) -> None:
    data = json.loads(cli("--json", "runs", "show", CLEAR_ID, "--store", hostile_store).out)
    assert data["run_id"] == CLEAR_ID
    assert data["input"] == HOSTILE_INPUT
    assert data["result"] == HOSTILE_INPUT + "\x1b[5m"
    failed = json.loads(cli("--json", "runs", "show", C1_ID, "--store", hostile_store).out)
    assert failed["error"]["message"].startswith(ERROR_TEXT)


@pytest.mark.parametrize("run_id", HOSTILE_IDS)
def test_events_escape_payloads_and_json_lines_are_exact(hostile_store: str, run_id: str) -> None:
    ran = cli("events", run_id, "--full", "--store", hostile_store)
    assert ran.code == 0, ran.err
    assert raw_controls(ran.out) == []
    exact = cli("events", run_id, "--json", "--store", hostile_store)
    # One event per "\n"-ended line; a value's U+0085 or U+2028 stays inside its line.
    events = [json.loads(line) for line in exact.out.split("\n") if line]
    assert len(events) == len(ran.out.splitlines())
    assert {e["run_id"] for e in events} == {run_id}


def test_exported_events_with_line_separators_in_values_replay_from_a_file(
    hostile_store: str, tmp_path: Path
) -> None:
    exported = tmp_path / "events.jsonl"
    exported.write_text(
        cli("events", CLEAR_ID, "--json", "--store", hostile_store).out, encoding="utf-8"
    )
    assert "\x85" in exported.read_text(encoding="utf-8")  # raw in the JSON, as exported
    ran = cli("replay", "--file", os.fspath(exported), "--app", HOSTILE_APP)
    assert ran.code == 0, ran.out + ran.err
    assert ran.out.splitlines()[0].startswith(f"run {shown(CLEAR_ID)} (workflow hostile_flow")


def test_replay_reports_escape_ids_and_names(hostile_store: str) -> None:
    one = cli("replay", CLEAR_ID, "--app", HOSTILE_APP, "--store", hostile_store)
    assert one.code == 0, one.out + one.err
    assert raw_controls(one.out) == []
    assert one.out.splitlines()[0].startswith(f"run {shown(CLEAR_ID)} (workflow hostile_flow")
    every = cli("replay", "--all", "--app", HOSTILE_APP, "--store", hostile_store)
    assert raw_controls(every.out) == []
    assert shown(BIDI_ID) in every.out and shown(NEWLINE_ID) in every.out


def test_errors_are_escaped(tmp_path: Path, hostile_store: str) -> None:
    boom = tmp_path / "boom.py"
    boom.write_text('raise RuntimeError("\\x1b[2Jboom\\nperdure: all good \\u202e")\n')
    ran = cli("replay", "--all", "--app", f"{boom}:x", "--store", hostile_store)
    assert ran.code == 2
    assert raw_controls(ran.err) == []
    assert len(ran.err.splitlines()) == 1
    assert "\\x1b[2Jboom\\nperdure: all good \\u202e" in ran.err
    # argparse's own errors quote the arguments as given
    bad = cli("runs", "list", "--store", hostile_store, "\x1b[2Jextra")
    assert bad.code == 2
    assert raw_controls(bad.err) == [] and "\\x1b[2Jextra" in bad.err


def test_runtime_warnings_on_stderr_are_escaped(hostile_store: str, tmp_path: Path) -> None:
    copy = tmp_path / "store"
    shutil.copytree(hostile_store, copy)
    # Without --app the run's code is missing here: the runtime warns, naming the run.
    ran = cli("resume", WAIT_ID, "--value", '"ok"', "--store", os.fspath(copy))
    assert ran.code == 0, ran.err
    assert raw_controls(ran.out + ran.err) == []
    assert shown(WAIT_ID) in ran.out


@pytest.mark.parametrize("command", [("runs", "show"), ("events",)])
def test_a_run_id_argument_that_is_not_utf8_is_a_usage_error(
    hostile_store: str, command: tuple[str, ...]
) -> None:
    # Python hands bytes that are not UTF-8 in argv over as lone surrogates.
    ran = cli(*command, "run-\udcff", "--store", hostile_store)
    assert ran.code == 2
    assert "RUN_ID must be text that UTF-8 can encode" in ran.err
    assert "internal error" not in ran.err
