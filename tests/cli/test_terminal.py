"""The CLI on a terminal (rich tables, colours, ages, human event lines), `runs` as `runs list`,
``--since``, exit codes, shell completion and a start-up that imports no command."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import subprocess
import sys
import time

import pytest

from perdure import Runtime
from tests.support.cli import APP, cli

from .hostile_app import APP as HOSTILE
from .hostile_app import CLEAR_ID, hostile_flow
from .test_hostile_output import raw_controls, shown

MARKUP_ID = "[red]x[/red][link=https://example.com]y[/link]:smile:"
_SGR = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """stdout counts as a 100-column colour terminal (rich honours FORCE_COLOR and COLUMNS)."""
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.delenv("NO_COLOR", raising=False)


@pytest.fixture(scope="module")
def markup_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = os.fspath(tmp_path_factory.mktemp("markup") / "store")

    async def make() -> None:
        async with Runtime(path=path, registry=HOSTILE) as rt:
            await rt.run(hostile_flow, "[bold]value[/bold]", run_id=MARKUP_ID)
            await rt.run(hostile_flow, "x", run_id=CLEAR_ID)

    asyncio.run(make())
    return path


def test_runs_alone_is_runs_list(store: str) -> None:
    alone = cli("runs", "--store", store)
    listed = cli("runs", "list", "--store", store)
    assert alone.code == listed.code == 0
    assert alone.out == listed.out and "cli-wait" in alone.out
    filtered = cli("runs", "--status", "failed", "--json", "--store", store)
    assert [row["run_id"] for row in json.loads(filtered.out)] == ["cli-fail"]


@pytest.mark.parametrize("since", ["1d", "36h", "90m", "3600s", "2020-01-01", "2020-01-01T00:00Z"])
def test_since_takes_ages_and_iso_times(store: str, since: str) -> None:
    ran = cli("runs", "list", "--since", since, "--json", "--store", store)
    assert ran.code == 0, ran.err
    assert len(json.loads(ran.out)) == 4


def test_since_leaves_out_runs_updated_before(store: str) -> None:
    future = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    ran = cli("runs", "list", "--since", future, "--store", store)
    assert ran.code == 0 and ran.out.strip() == "no runs match"
    assert json.loads(cli("runs", "--since", future, "--json", "--store", store).out) == []


@pytest.mark.parametrize("bad", ["yesterday", "5x", "-3h", "2h30", ""])
def test_a_bad_since_is_a_usage_error_that_says_what_is_accepted(store: str, bad: str) -> None:
    ran = cli("runs", "list", "--since", bad, "--store", store)
    assert ran.code == 2
    assert "Invalid value for '--since'" in ran.err and "an age (30s, 10m, 2h, 3d)" in ran.err


def test_runs_list_on_a_terminal_is_a_coloured_table_with_ages(terminal: None, store: str) -> None:
    ran = cli("runs", "--store", store)
    assert ran.code == 0, ran.err
    assert "\x1b[1;31mfailed" in ran.out  # failed in bold red
    assert "\x1b[32mcompleted" in ran.out
    plain = _SGR.sub("", ran.out)
    row = r"cli-fail +cli_broken +function +failed +(just now|\d+[smhd] ago)"
    assert re.search(row, plain), plain
    assert all(len(line) <= 100 for line in plain.splitlines())


def test_no_color_turns_colours_off_on_a_terminal(
    terminal: None, store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    ran = cli("runs", "--store", store)
    assert ran.code == 0 and ("just now" in ran.out or "ago" in ran.out)
    assert not re.search(r"\x1b\[[0-9;]*3[0-7]m", ran.out), ran.out  # no foreground colour


def test_narrow_terminals_drop_columns_not_ids(
    terminal: None, store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "60")
    plain = _SGR.sub("", cli("runs", "--store", store).out)
    assert "KIND" not in plain and "cli-wait" in plain
    assert all(len(line) <= 60 for line in plain.splitlines())


def test_events_on_a_terminal_are_the_demos_human_lines(terminal: None, store: str) -> None:
    ran = cli("events", "cli-fail", "--store", store)
    assert ran.code == 0, ran.err
    plain = _SGR.sub("", ran.out)
    assert "cli_broken attempt=0 ValueError: cannot do 3" in plain
    assert "\x1b[31mtask_attempt_failed" in ran.out
    piped = cli("events", "cli-fail", "--store", store, "--json")
    assert "\x1b" not in piped.out  # --json is exact output, never styled


@pytest.mark.parametrize("command", [("runs",), ("runs", "show", MARKUP_ID), ("events", MARKUP_ID)])
def test_rich_markup_in_a_run_prints_literally(
    terminal: None, markup_store: str, command: tuple[str, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # the id on one line
    ran = cli(*command, "--store", markup_store)
    assert ran.code == 0, ran.err
    plain = _SGR.sub("", ran.out)
    if command[0] == "runs":
        assert MARKUP_ID in plain
    if command != ("runs",):
        assert '"[bold]value[/bold]"' in plain  # the input, in the details or the events
    assert "\x1b]8;" not in ran.out  # no hyperlink from [link=...]


def test_control_characters_are_escaped_on_a_terminal_too(
    terminal: None, markup_store: str
) -> None:
    for command in (("runs",), ("events", CLEAR_ID)):
        ran = cli(*command, "--store", markup_store)
        assert ran.code == 0, ran.err
        plain = _SGR.sub("", ran.out)  # rich's own styles aside
        assert raw_controls(plain) == [], command
        if command == ("runs",):
            assert shown(CLEAR_ID)[:8] in plain


def test_json_output_is_the_same_on_a_terminal(store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    piped = [cli(*argv, "--json", "--store", store).out for argv in _JSON_COMMANDS]
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "40")
    on_terminal = [cli(*argv, "--json", "--store", store).out for argv in _JSON_COMMANDS]
    assert on_terminal == piped


_JSON_COMMANDS = [
    ("runs", "list"),
    ("runs", "show", "cli-done"),
    ("events", "cli-fail"),
    ("stats",),
]


def test_ctrl_c_exits_130(store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from perdure.cli import _stats

    async def interrupted(*_: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(_stats, "_stats", interrupted)
    ran = cli("stats", "--store", store)
    assert ran.code == 130 and "Traceback" not in ran.err


def test_version_and_help() -> None:
    from perdure import __version__

    assert cli("--version").out.strip() == f"perdure {__version__}"
    for argv in (("--help",), ("-h",), ("runs", "list", "--help"), ("replay", "--help")):
        ran = cli(*argv)
        assert ran.code == 0 and "Examples:" in ran.out, argv


def _run(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "perdure", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **env},
    )


def test_shell_completion_completes_commands_and_options() -> None:
    script = _run({"_PERDURE_COMPLETE": "bash_source"})
    assert script.returncode == 0 and "_PERDURE_COMPLETE=bash_complete" in script.stdout
    words = {"COMP_WORDS": "perdure ru", "COMP_CWORD": "1", "_PERDURE_COMPLETE": "bash_complete"}
    assert _run(words).stdout.split() == ["plain,runs"]
    words = {
        "COMP_WORDS": "perdure runs list --st",
        "COMP_CWORD": "3",
        "_PERDURE_COMPLETE": "bash_complete",
    }
    assert set(_run(words).stdout.split()) == {"plain,--status", "plain,--store"}


def test_shell_completion_completes_run_ids_from_the_store(store: str) -> None:
    cases = [
        (f"perdure events --store {store} cli-w", "4", ["plain,cli-wait"]),
        (
            f"perdure --store {store} runs show cli-",
            "5",
            ["plain,cli-add", "plain,cli-fail", "plain,cli-wait", "plain,cli-done"],
        ),
    ]
    for line, cword, expected in cases:
        words = {"COMP_WORDS": line, "COMP_CWORD": cword, "_PERDURE_COMPLETE": "bash_complete"}
        done = _run(words)
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == expected, line
    missing = {
        "COMP_WORDS": "perdure events --store /no/such/store x",
        "COMP_CWORD": "4",
        "_PERDURE_COMPLETE": "bash_complete",
    }
    done = _run(missing)
    assert done.returncode == 0 and done.stdout.strip() == "" and done.stderr == ""


def test_help_imports_no_command_nor_rich_nor_the_gateway() -> None:
    code = (
        "import sys, json, contextlib, io\n"
        "import perdure\n"
        "before = set(sys.modules)\n"
        "from perdure.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    assert main(['--help']) == 0 and main(['--version']) == 0\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    loaded = json.loads(done.stdout)
    heavy = [
        name
        for name in loaded
        if name.split(".")[0] in ("rich", "starlette", "uvicorn", "psycopg", "perdure")
        and name not in _LIGHT
    ]
    assert heavy == [], heavy


_LIGHT = {
    "perdure.cli",
    "perdure.cli._main",
    "perdure.cli._options",
    "perdure.cli._output",
    "perdure.cli._text",
    "perdure.cli._console_log",
}


def test_adding_a_command_is_one_module_and_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """The recipe of the package docstring: a click command in a module, a line in COMMANDS."""
    import perdure.cli
    from perdure.cli import _main

    assert "Adding a command" in (perdure.cli.__doc__ or "")
    monkeypatch.setitem(_main.COMMANDS, "hello", ("tests.cli._hello_command:hello", "Say hello."))
    ran = cli("--help")
    assert "hello     Say hello." in ran.out
    ran = cli("hello", "--json")
    assert ran.code == 0 and json.loads(ran.out) == {"hello": None}


def test_without_rich_a_terminal_gets_the_plain_output(
    terminal: None, store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    piped = cli("runs", "--store", store).out
    for name in [m for m in sys.modules if m == "rich" or m.startswith("rich.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "rich", None)  # as if it were not installed
    ran = cli("runs", "--store", store)
    assert ran.code == 0 and "\x1b" not in ran.out and "cli-wait" in ran.out
    assert "(UTC)" in ran.out
    assert cli("replay", "--all", "--app", f"{APP}:APP", "--store", store).code == 0
    assert piped != ran.out  # (the first one was drawn with rich)


def test_run_details_and_replay_verdicts_are_coloured_on_a_terminal(
    terminal: None, store: str
) -> None:
    shown_run = cli("runs", "show", "cli-fail", "--store", store)
    assert shown_run.code == 0 and "status       \x1b[1;31mfailed\x1b[0m" in shown_run.out
    piped_lines = _SGR.sub("", shown_run.out).splitlines()
    assert piped_lines[0] == "run          cli-fail"
    replayed = cli("replay", "cli-done", "--app", f"{APP}:APP", "--store", store)
    assert replayed.code == 0 and "\x1b[1;32m: OK" in replayed.out


class _ClosedPipe(io.StringIO):
    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_reader_that_closes_the_pipe_ends_the_command_quietly(
    store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`perdure events ID | head`: exit 0, no error, and stdout is left as it was."""
    from perdure.cli import main

    closed = _ClosedPipe()
    monkeypatch.setattr(sys, "stdout", closed)
    assert main(["events", "cli-fail", "--store", store]) == 0
    assert sys.stdout is closed
