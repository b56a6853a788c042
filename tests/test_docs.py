"""The docs' code runs: every ```python block of the docs pages and README, and every example.

Each Markdown file runs in its own temporary folder (its default store,
``./.perdure``, lands there) as one or more fresh Python processes, so names
registered by one page never meet another's. A marker on the line before a
block changes what happens to it:

- ``<!-- no-test -->``: skipped (e.g. a sketch that needs a real service);
- ``<!-- file: NAME.py -->``: written to ``NAME.py`` in the folder, not run
  (later blocks import it, e.g. from "another process");
- ``<!-- new-process -->``: starts a new process; the blocks after it, up to
  the next marker of this kind, run together in it;
- ``<!-- pytest -->``: written to a test module and run with ``python -m pytest``
  (consecutive pytest blocks share one module).

Unmarked blocks join the current process, so a tutorial's steps build on each
other as the reader's would. A block may include a file of ``docs/examples/``
with a snippet line (``--8<-- "examples/NAME.py"``, pymdownx.snippets): the
included text runs in its place, except that a block made only of includes is
left to the examples test, which runs every file under ``docs/examples/`` on
its own (see `test_example_runs`) — so an example runs once, not twice.

The reference pages are checked for coverage instead: every public name has a
generated entry, every error and event type is described, every CLI command
and option is in the CLI reference.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import attrs
import pytest

import perdure
from perdure.eventlog import EVENT_TYPES

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
EXAMPLES = DOCS / "examples"
PAGES = sorted(
    p for p in DOCS.rglob("*.md") if not p.relative_to(DOCS).parts[0].startswith(("_", "examples"))
)
_FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```", re.M | re.S)
_MARKER = re.compile(r"<!--\s*(no-test|new-process|pytest|file:\s*([\w./-]+))\s*-->\s*$")
_SNIPPET = re.compile(r'^[ \t]*--8<--[ \t]+"([^"]+)"[ \t]*(?:\n|$)', re.M)
_TIMEOUT = 90


@attrs.frozen
class Block:
    code: str
    line: int
    marker: str  # "", "no-test", "new-process", "pytest", "file" or "included"
    filename: str = ""


@attrs.define
class Step:
    kind: str  # "script" or "pytest"
    blocks: list[Block] = attrs.field(factory=list)


def blocks_of(text: str, base: Path = DOCS) -> list[Block]:
    """The file's python blocks with the marker (if any) on the last non-blank line before each.

    Snippet lines are replaced by the file they include (a path relative to `base`).
    """
    found = []
    for match in _FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").splitlines()
        previous = before[-1].strip() if before else ""
        marker = _MARKER.search(previous)
        kind, filename = "", ""
        if marker is not None:
            kind = "file" if marker.group(2) else marker.group(1)
            filename = marker.group(2) or ""
        code = match.group(1)
        if _SNIPPET.search(code):
            if not _SNIPPET.sub("", code).strip() and kind in ("", "new-process"):
                kind = "included"  # only includes: test_example_runs runs the file
            code = _SNIPPET.sub(lambda m: (base / m.group(1)).read_text(encoding="utf-8"), code)
        found.append(Block(code, len(before) + 2, kind, filename))
    return found


def plan(blocks: list[Block]) -> tuple[list[Block], list[Step]]:
    """Split blocks into files to write and steps (processes, pytest runs) to run in order."""
    files = [b for b in blocks if b.marker == "file"]
    steps: list[Step] = []
    for block in blocks:
        if block.marker in ("no-test", "file", "included"):
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


def _runnable() -> list[Path]:
    """The pages (and README) with at least one python block to run (tutorials: see below)."""
    return [
        page
        for page in [*PAGES, ROOT / "README.md"]
        if plan(blocks_of(page.read_text(encoding="utf-8")))[1] and page not in TUTORIALS
    ]


TUTORIALS = sorted((DOCS / "tutorial").glob("*.md"))


def _run_doc(doc: Path, folder: Path) -> None:
    """Run a page's blocks in `folder` as its reader would (files, scripts, pytest runs)."""
    files, steps = plan(blocks_of(doc.read_text(encoding="utf-8")))
    for block in files:
        target = folder / block.filename
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(block.code, encoding="utf-8")
    for number, step in enumerate(steps):
        source = _script(doc, step)
        if step.kind == "pytest":
            path = folder / f"test_doc_{number}.py"
            path.write_text(source, encoding="utf-8")
            cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", path.name]
            _run(cmd, folder, f"{doc.name} pytest block at line {step.blocks[0].line}", source)
        else:
            path = folder / f"doc_step_{number}.py"
            path.write_text(source, encoding="utf-8")
            _run([sys.executable, path.name], folder, f"{doc.name} step {number}", source)


@pytest.mark.parametrize("doc", _runnable(), ids=lambda p: os.fspath(p.relative_to(ROOT)))
def test_doc_code_runs(doc: Path, tmp_path: Path) -> None:
    _run_doc(doc, tmp_path)


@pytest.mark.parametrize("doc", TUTORIALS, ids=lambda p: os.fspath(p.relative_to(ROOT)))
def test_tutorial_runs_and_runs_again_in_the_same_folder(doc: Path, tmp_path: Path) -> None:
    """A reader runs a tutorial's script, then runs it again: the second run, in fresh
    processes on the store the first one filled, keeps every promise too."""
    _run_doc(doc, tmp_path)
    _run_doc(doc, tmp_path)


def _example_units() -> list[Path]:
    """Each top-level file of docs/examples/ is one example; each folder is one (run in order)."""
    if not EXAMPLES.is_dir():
        return []
    return sorted(
        p
        for p in EXAMPLES.iterdir()
        if not p.name.startswith(("_", ".")) and (p.is_dir() or p.suffix == ".py")
    )


def _example_steps(unit: Path) -> list[str]:
    """What to run of an example: a file itself; in a folder, its step*.py then test_*.py."""
    if unit.is_file():
        return [unit.name]
    return sorted(p.name for p in unit.glob("*.py") if p.name.startswith(("step", "test_")))


@pytest.mark.parametrize("unit", _example_units(), ids=lambda p: os.fspath(p.relative_to(ROOT)))
def test_example_runs(unit: Path, tmp_path: Path) -> None:
    """Every example under docs/examples/ runs (test_*.py with pytest), in a folder of its own.

    An example checks its own promises with asserts, so running it is the test.
    """
    work = tmp_path / "example"
    if unit.is_dir():
        shutil.copytree(unit, work, ignore=shutil.ignore_patterns("__pycache__"))
    else:
        work.mkdir()
        shutil.copy2(unit, work / unit.name)
    steps = _example_steps(unit)
    assert steps, f"{unit.name}: a folder example needs step*.py or test_*.py files"
    for name in steps:
        source = (work / name).read_text(encoding="utf-8")
        if name.startswith("test_"):
            cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", name]
        else:
            cmd = [sys.executable, name]
        _run(cmd, work, f"docs/examples: {unit.name}/{name}", source)


def test_every_example_is_shown_in_a_page() -> None:
    """An example no page includes is dead weight; an include of a missing file breaks the build."""
    included: set[Path] = set()
    for page in PAGES:
        for target in _SNIPPET.findall(page.read_text(encoding="utf-8")):
            path = (DOCS / target).resolve()
            assert path.is_file(), f"{page.relative_to(ROOT)} includes {target}, which is missing"
            included.add(path)
    examples = {p.resolve() for p in EXAMPLES.rglob("*.py") if "__pycache__" not in p.parts}
    missing = sorted(os.fspath(p.relative_to(ROOT)) for p in examples - included)
    assert not missing, f"examples no page includes: {missing}"


def test_readme_demo_keeps_its_promises_and_runs_again_on_the_same_store(tmp_path: Path) -> None:
    """`perdure demo` (README's first command) exits 0 on a temporary store, writing nothing
    where it runs; with --store it keeps its runs there, and runs again on that store."""
    store = tmp_path / "store"
    project = tmp_path / "project"
    project.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["PERDURE_PATH"] = os.fspath(tmp_path / "service-store")  # a service's: not the demo's
    for round_, extra in ((0, []), (1, ["--store", os.fspath(store)]), (2, ["--store", "store"])):
        done = subprocess.run(
            [sys.executable, "-m", "perdure", "demo", *extra],
            cwd=project if round_ == 0 else tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=_TIMEOUT,
            check=False,
        )
        assert done.returncode == 0, f"round {round_}:\n{done.stdout}\n{done.stderr}"
        if round_ == 0:
            assert list(project.iterdir()) == [], "the demo wrote into the current folder"
            assert not (tmp_path / "service-store").exists()
            assert "temporary store" in done.stdout
        else:
            assert f"perdure runs list --store {extra[1]}" in done.stdout
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


def test_snippet_includes_are_left_to_the_examples_test_unless_mixed_with_code(
    tmp_path: Path,
) -> None:
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "ex.py").write_text("X = 1\n", encoding="utf-8")
    text = (
        '```python\n--8<-- "examples/ex.py"\n```\n'
        '<!-- file: mod.py -->\n```python\n--8<-- "examples/ex.py"\n```\n'
        '```python\n--8<-- "examples/ex.py"\nprint(X)\n```\n'
    )
    included, as_file, mixed = blocks_of(text, base=tmp_path)
    assert included.marker == "included"
    assert (as_file.marker, as_file.filename, as_file.code) == ("file", "mod.py", "X = 1\n")
    assert (mixed.marker, mixed.code) == ("", "X = 1\nprint(X)\n")
    files, steps = plan([included, as_file, mixed])
    assert [f.filename for f in files] == ["mod.py"]
    assert [[b.code for b in step.blocks] for step in steps] == [["X = 1\nprint(X)\n"]]


def test_every_runnable_doc_has_code() -> None:
    """A how-to or tutorial page without a single tested block has drifted from the harness."""
    exempt = {"debug-a-run.md"}  # its commands are shell, exercised by the CLI tests
    guides = [p for p in PAGES if p.parent.name in ("tutorial", "how-to")]
    empty = [
        p.name
        for p in guides
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


def test_every_public_name_has_an_entry_generated_from_its_docstring() -> None:
    """Each name of `perdure.__all__`, `perdure.testing.__all__` and `perdure.errors.__all__`
    has one mkdocstrings entry."""
    import perdure.errors
    import perdure.testing

    directives = re.compile(r"^::: ([\w.]+)\s*$", re.M)
    rendered: list[str] = []
    for page in (DOCS / "reference").glob("*.md"):
        rendered += directives.findall(page.read_text(encoding="utf-8"))
    wanted = {f"perdure.{name}" for name in perdure.__all__ if name != "__version__"}
    wanted |= {
        f"perdure.testing.{name}"
        for name in perdure.testing.__all__
        if getattr(perdure.testing, name) is not getattr(perdure, name, None)
    }
    wanted |= {
        f"perdure.errors.{name}" for name in perdure.errors.__all__ if name not in perdure.__all__
    }
    missing = sorted(wanted - set(rendered))
    twice = sorted({name for name in rendered if rendered.count(name) > 1})
    assert not missing, f"public names without a ::: entry in docs/reference/: {missing}"
    assert not twice, f"rendered more than once (their anchors would clash): {twice}"


def test_cli_reference_covers_every_command_and_option() -> None:
    import click

    from perdure.cli._main import cli

    text = _reference("cli.md")
    missing: list[str] = []

    def walk(command: click.Command, words: list[str]) -> None:
        ctx = click.Context(command, info_name=" ".join(words) or "perdure")
        for param in command.params:
            for option in getattr(param, "opts", []):
                if option.startswith("--") and option not in ("--help",) and option not in text:
                    missing.append(f"{' '.join(words)} {option}".strip())
        if isinstance(command, click.Group):
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                assert sub is not None, name
                if f"perdure {' '.join([*words, name])}" not in text:
                    missing.append(" ".join([*words, name]))
                walk(sub, [*words, name])

    walk(cli, [])
    assert not missing, f"docs/reference/cli.md does not mention {sorted(set(missing))}"


def test_errors_reference_lists_every_public_error() -> None:
    import perdure.errors

    text = _reference("errors.md")
    errors = [
        name
        for name in perdure.__all__
        if isinstance(getattr(perdure, name), type)
        and issubclass(getattr(perdure, name), BaseException)
    ]
    assert set(errors) <= set(perdure.errors.__all__), "perdure.errors misses a top-level error"
    missing = [name for name in perdure.errors.__all__ if f"`{name}`" not in text]
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
