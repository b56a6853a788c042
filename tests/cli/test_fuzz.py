"""Light fuzzing of the CLI's input parsing: any argv gives exit code 0, 1 or 2 and no traceback.

Argument lists mix the CLI's own words (so examples reach deep into commands)
with random text. Left out: ``demo`` (it runs for seconds) and ``--follow``
(it waits for a run to settle, which a waiting run never does by itself).
Writes go to a private copy of the store, and the working directory is a
temporary one, so nothing outside the test's folder can be touched.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.cli import APP, cli

WORDS = [
    "runs", "list", "show", "events", "replay", "resume", "cancel", "stats",
    "--json", "--status", "waiting", "running", "parked", "bogus", "--limit", "0", "3", "-1",
    "--target", "cli_review", "--all", "--in-flight", "--since", "2h", "2024-01-01", "--app",
    f"{APP}:APP", "no_such_module_fz:x", f"{APP}:NOT_A_TARGET", f"{APP}", "--file", "--value",
    '"approve"', "{", "null", "NaN", "[1, 2]", "--reason", "--timeout", "0.5", "nan", "--full",
    "--interval", "--help", "-h", "--version", "cli-done", "cli-wait", "cli-fail", "nope", "",
    "--store",
]  # fmt: skip
FORBIDDEN = {"demo", "--follow", "-f"}


def safe_text() -> st.SearchStrategy[str]:
    """Random argv-like text: no NUL or surrogates (argv has none), no leading dash."""
    return st.text(
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30
    ).filter(lambda s: not s.startswith("-") and s not in FORBIDDEN)


COMMANDS = [
    ["runs", "list"], ["runs", "show"], ["events"], ["stats"], ["cancel"], ["resume"],
    ["replay", "--app", f"{APP}:APP"], ["replay", "--all", "--app", f"{APP}:APP"],
]  # fmt: skip
PIECES = st.lists(st.one_of(st.sampled_from(WORDS), safe_text()), max_size=8)
#: Either anything, or a real command followed by anything (to get past the first word).
ARGV = st.one_of(
    PIECES, st.builds(lambda head, tail: head + tail, st.sampled_from(COMMANDS), PIECES)
)


@pytest.fixture
def sandbox(store_copy: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PERDURE_PATH", store_copy)
    return store_copy


def check(argv: list[str]) -> None:
    ran = cli(*argv)
    assert ran.code in (0, 1, 2), (argv, ran)
    assert "Traceback" not in ran.err, (argv, ran.err)
    assert "internal error" not in ran.err, (argv, ran.err)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(argv=ARGV)
def test_random_argv_exits_0_1_or_2_without_traceback(sandbox: str, argv: list[str]) -> None:
    check(argv)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    value=st.one_of(
        safe_text(), st.sampled_from(["1e999", "9" * 30, "[" * 5000, '{"a": NaN}', '"\\ud800"'])
    )
)
def test_random_resume_values_exit_0_1_or_2_without_traceback(sandbox: str, value: str) -> None:
    check(["resume", "cli-wait", "--value", value, "--store", sandbox])
