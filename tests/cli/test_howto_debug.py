"""docs/how-to/debug-a-run.md shows real output: run its shell sessions and compare.

The page's ``file:`` blocks are written to a fresh folder, its plain Python
block records the runs, then every ``$ perdure ...`` line of its ``console``
blocks runs there in order, and its output must match the page's, up to
what differs between machines (times, durations, paths, store size).
tests/test_docs.py runs the page's Python and pytest blocks; this module
covers its commands.

To refresh the page's output after a deliberate change:
``python -m tests.cli.test_howto_debug`` prints every command's real output.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import attrs

DOC = Path(__file__).resolve().parents[2] / "docs" / "how-to" / "debug-a-run.md"
_BLOCK = re.compile(
    r"(?:<!--\s*file:\s*([\w./-]+)\s*-->\n)?```(python|console)\n(.*?)^```", re.M | re.S
)
_NORMALISE = [
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"), "<time>"),
    (re.compile(r"\(\d+(\.\d+)? s\)"), "(<seconds> s)"),
    (re.compile(r"at \S*/([\w.]+\.py):(\d+)"), r"at <dir>/\1:\2"),
    (re.compile(r"\S*/\.perdure"), "<dir>/.perdure"),
    (re.compile(r"\d+(\.\d+)? (B|KiB|MiB|GiB)\b"), "<size>"),
]


@attrs.frozen
class Command:
    line: str
    expected: str


@attrs.frozen
class Page:
    files: dict[str, str]
    setup: list[str]
    commands: list[Command]


def parse(text: str) -> Page:
    files: dict[str, str] = {}
    setup: list[str] = []
    commands: list[Command] = []
    for match in _BLOCK.finditer(text):
        name, kind, body = match.groups()
        if kind == "python" and name:
            files[name] = body
        elif kind == "python" and not text[: match.start()].rstrip().endswith("<!-- pytest -->"):
            setup.append(body)
        elif kind == "console":
            for chunk in re.split(r"^\$ ", body, flags=re.M)[1:]:
                line, _, output = chunk.partition("\n")
                commands.append(Command(line, output))
    return Page(files, setup, commands)


def normalise(text: str) -> str:
    for pattern, replacement in _NORMALISE:
        text = pattern.sub(replacement, text)
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


def prepare(folder: Path, page: Page) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["PERDURE_PATH"] = os.fspath(folder / ".perdure")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.fspath(folder), env.get("PYTHONPATH")]))
    for name, body in page.files.items():
        (folder / name).write_text(body, encoding="utf-8")
    (folder / "tests").mkdir(exist_ok=True)
    for number, code in enumerate(page.setup):
        script = folder / f"setup_{number}.py"
        script.write_text(code, encoding="utf-8")
        done = subprocess.run(
            [sys.executable, script.name],
            check=False,
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
    return env


def run(folder: Path, env: dict[str, str], line: str) -> str:
    """One shell line, with `perdure` meaning this interpreter's ``-m perdure``."""
    python = shlex.quote(sys.executable)
    shell_line = re.sub(r"(^|\|\s*)perdure ", lambda m: f"{m.group(1)}{python} -m perdure ", line)
    done = subprocess.run(
        ["bash", "-c", shell_line],
        check=False,
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.stdout + done.stderr


def test_the_page_has_commands_to_check() -> None:
    page = parse(DOC.read_text(encoding="utf-8"))
    assert {"shop.py", "shop_v2.py", "shop_v3.py"} <= set(page.files)
    assert len(page.setup) == 1 and len(page.commands) >= 10


def test_every_command_on_the_page_prints_what_the_page_shows(tmp_path: Path) -> None:
    page = parse(DOC.read_text(encoding="utf-8"))
    env = prepare(tmp_path, page)
    for command in page.commands:
        actual = run(tmp_path, env, command.line)
        assert normalise(actual) == normalise(command.expected), f"$ {command.line}\n{actual}"


if __name__ == "__main__":  # print real output to refresh the page: ... [EMPTY_FOLDER]
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        here = Path(sys.argv[1] if len(sys.argv) > 1 else tmp)
        page = parse(DOC.read_text(encoding="utf-8"))
        environment = prepare(here, page)
        for command in page.commands:
            print(f"$ {command.line}\n{run(here, environment, command.line)}", end="")
