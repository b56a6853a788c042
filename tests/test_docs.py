"""The docs' code runs: every ```python block of the tutorials, how-to guides and README.

Each Markdown file runs in its own temporary folder (its default store,
``./.perdure``, lands there) as one or more fresh Python processes, so names
registered by one page never meet another's. A marker on the line before a
block changes what happens to it:

- ``<!-- no-test -->``: skipped (e.g. needs a web framework that is not installed);
- ``<!-- file: NAME.py -->``: written to ``NAME.py`` in the folder, not run
  (later blocks import it, e.g. from "another process");
- ``<!-- new-process -->``: starts a new process; the blocks after it, up to
  the next marker of this kind, run together in it;
- ``<!-- pytest -->``: written to a test module and run with ``python -m pytest``
  (consecutive pytest blocks share one module).

Unmarked blocks join the current process, so a tutorial's steps build on each
other as the reader's would. The reference pages are checked for coverage
instead: every public name, error and event type must be documented.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import attrs
import pytest

import perdure
from perdure.eventlog import EVENT_TYPES

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
RUNNABLE = sorted(
    [*(DOCS / "tutorial").glob("*.md"), *(DOCS / "how-to").glob("*.md"), ROOT / "README.md"]
)
_FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```", re.M | re.S)
_MARKER = re.compile(r"<!--\s*(no-test|new-process|pytest|file:\s*([\w./-]+))\s*-->\s*$")
_TIMEOUT = 90


@attrs.frozen
class Block:
    code: str
    line: int
    marker: str  # "", "no-test", "new-process", "pytest" or "file"
    filename: str = ""


@attrs.define
class Step:
    kind: str  # "script" or "pytest"
    blocks: list[Block] = attrs.field(factory=list)


def blocks_of(text: str) -> list[Block]:
    """The file's python blocks with the marker (if any) on the last non-blank line before each."""
    found = []
    for match in _FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").splitlines()
        previous = before[-1].strip() if before else ""
        marker = _MARKER.search(previous)
        kind, filename = "", ""
        if marker is not None:
            kind = "file" if marker.group(2) else marker.group(1)
            filename = marker.group(2) or ""
        found.append(Block(match.group(1), len(before) + 2, kind, filename))
    return found


def plan(blocks: list[Block]) -> tuple[list[Block], list[Step]]:
    """Split blocks into files to write and steps (processes, pytest runs) to run in order."""
    files = [b for b in blocks if b.marker == "file"]
    steps: list[Step] = []
    for block in blocks:
        if block.marker in ("no-test", "file"):
            continue
        if block.marker == "pytest":
            if steps and steps[-1].kind == "pytest":
                steps[-1].blocks.append(block)  # one test module per run of pytest blocks
            else:
                steps.append(Step("pytest", [block]))
        elif block.marker == "new-process" or not steps or steps[-1].kind != "script":
            steps.append(Step("script", [block]))
        else:
            steps[-1].blocks.append(block)
    return files, steps


def _script(doc: Path, step: Step) -> str:
    """The blocks of one step, each preceded by a line pointing back at the Markdown."""
    parts = [f"# {doc.name}:{block.line}\n{block.code}" for block in step.blocks]
    return "\n".join(parts)


def _run(cmd: list[str], cwd: Path, what: str, source: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["PERDURE_PATH"] = os.fspath(cwd / ".perdure")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.fspath(cwd), env.get("PYTHONPATH")]))
    done = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=_TIMEOUT, check=False
    )
    if done.returncode != 0:
        numbered = "\n".join(f"{n:4} {line}" for n, line in enumerate(source.splitlines(), 1))
        pytest.fail(
            f"{what} failed with exit code {done.returncode}\n--- code ---\n{numbered}\n"
            f"--- stdout ---\n{done.stdout[-4000:]}\n--- stderr ---\n{done.stderr[-6000:]}",
            pytrace=False,
        )


@pytest.mark.parametrize("doc", RUNNABLE, ids=lambda p: os.fspath(p.relative_to(ROOT)))
def test_doc_code_runs(doc: Path, tmp_path: Path) -> None:
    files, steps = plan(blocks_of(doc.read_text(encoding="utf-8")))
    if not steps:
        pytest.skip(f"{doc.name} has no runnable python block")
    for block in files:
        target = tmp_path / block.filename
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(block.code, encoding="utf-8")
    for number, step in enumerate(steps):
        source = _script(doc, step)
        if step.kind == "pytest":
            path = tmp_path / f"test_doc_{number}.py"
            path.write_text(source, encoding="utf-8")
            cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", path.name]
            _run(cmd, tmp_path, f"{doc.name} pytest block at line {step.blocks[0].line}", source)
        else:
            path = tmp_path / f"doc_step_{number}.py"
            path.write_text(source, encoding="utf-8")
            _run([sys.executable, path.name], tmp_path, f"{doc.name} step {number}", source)


def test_readme_demo_keeps_its_promises_and_runs_again_on_the_same_store(tmp_path: Path) -> None:
    """`perdure demo` (README's first command) exits 0, and again on the store it filled."""
    store = tmp_path / "store"
    for round_ in (1, 2):
        done = subprocess.run(
            [sys.executable, "-m", "perdure", "demo", "--store", os.fspath(store)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=_TIMEOUT,
            check=False,
        )
        assert done.returncode == 0, f"round {round_}:\n{done.stdout}\n{done.stderr}"
        for promise in (
            "succeeded on attempt 3",
            "card charged 1 time(s): the result came from the log",
            "AttemptLost",
            "Command(resume='approve')",
            "All four behaved as promised",
        ):
            assert promise in done.stdout, f"round {round_}: {promise!r} missing:\n{done.stdout}"


# -- the harness itself ------------------------------------------------------------------------


def test_markers_split_blocks_into_files_processes_and_pytest_runs() -> None:
    text = (
        "intro\n```python\na = 1\n```\n\n```python\nb = a\n```\n"
        "<!-- no-test -->\n```python\nboom()\n```\n"
        "<!-- file: mod.py -->\n```python\nX = 1\n```\n"
        "<!-- new-process -->\n\n```python\nimport mod\n```\n"
        "<!-- pytest -->\n```python\ndef test_x(): pass\n```\n"
        "<!-- pytest -->\n```python\ndef test_y(): pass\n```\n"
        "```python\nc = 3\n```\n"
    )
    files, steps = plan(blocks_of(text))
    assert [f.filename for f in files] == ["mod.py"]
    assert [(s.kind, [b.code for b in s.blocks]) for s in steps] == [
        ("script", ["a = 1\n", "b = a\n"]),
        ("script", ["import mod\n"]),
        ("pytest", ["def test_x(): pass\n", "def test_y(): pass\n"]),
        ("script", ["c = 3\n"]),
    ]
    assert steps[0].blocks[0].line == 3


def test_every_runnable_doc_has_code() -> None:
    """A how-to or tutorial page without a single tested block has drifted from the harness."""
    exempt = {"debug-a-run.md"}  # its commands are shell, exercised by the CLI tests
    empty = [
        p.name
        for p in RUNNABLE
        if p.name not in exempt
        and not [b for b in blocks_of(p.read_text(encoding="utf-8")) if b.marker != "no-test"]
    ]
    assert not empty, f"pages with no tested python block: {empty}"


# -- the reference covers the public surface ---------------------------------------------------


def _reference(name: str) -> str:
    return (DOCS / "reference" / name).read_text(encoding="utf-8")


def test_api_reference_documents_every_public_name() -> None:
    text = _reference("api.md")
    missing = [name for name in perdure.__all__ if f"`{name}" not in text]
    assert not missing, f"docs/reference/api.md does not document {missing}"


def test_errors_reference_lists_every_public_error() -> None:
    text = _reference("errors.md")
    errors = [
        name
        for name in perdure.__all__
        if isinstance(getattr(perdure, name), type)
        and issubclass(getattr(perdure, name), BaseException)
    ]
    missing = [name for name in errors if f"`{name}`" not in text]
    assert not missing, f"docs/reference/errors.md does not list {missing}"


def test_events_reference_lists_every_event_type_and_field() -> None:
    text = _reference("events.md")
    missing = []
    for cls in EVENT_TYPES:
        if f"`{cls.WIRE_NAME}`" not in text:
            missing.append(cls.WIRE_NAME)
        for field in attrs.fields(cls):
            if f"`{field.name}`" not in text:
                missing.append(f"{cls.WIRE_NAME}.{field.name}")
    assert not missing, f"docs/reference/events.md does not describe {missing}"


def test_docs_links_point_at_files_that_exist() -> None:
    broken = []
    for page in [*DOCS.rglob("*.md"), ROOT / "README.md", ROOT / "CHANGELOG.md"]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not broken, "broken links:\n" + "\n".join(broken)
