"""MkDocs hooks for perdure's docs site: give griffe a ``perdure`` package it can read.

The repository's folders install as one package through setuptools'
package-dir mapping (``sdk/`` is ``perdure``, ``runtime/`` is
``perdure.runtime``, ...). griffe, which mkdocstrings uses to read the code,
finds a package by walking folders, so it would see ``sdk/`` as ``perdure`` and
nothing under it. Before each build this hook lays the mapping out as a link
tree under ``build/docs-src/`` (gitignored), the way setuptools' strict editable
mode does; mkdocs.yml points mkdocstrings at it.

It also fills the performance page with the peer benchmark's results
(``bench/peers/results.md``, ``docs/assets/peers.png``) when they exist, so the
site builds, strictly, before and after the benchmark has been run.
"""

from __future__ import annotations

import os
import re
import shutil
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TREE = ROOT / "build" / "docs-src"


def package_dirs() -> dict[str, Path]:
    """The package-dir mapping of pyproject.toml: import name -> source folder."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    mapping = project["tool"]["setuptools"]["package-dir"]
    return {name: ROOT / folder for name, folder in mapping.items()}


def build_tree(tree: Path = TREE) -> Path:
    """(Re)create the link tree: one real folder per package, a symlink per source file."""
    if tree.exists():
        shutil.rmtree(tree)
    for name, folder in sorted(package_dirs().items()):
        _link_package(folder, tree.joinpath(*name.split(".")))
    return tree


def _link_package(folder: Path, target: Path) -> None:
    """Link a package's source files, and its subpackages' (folders with an __init__.py)."""
    target.mkdir(parents=True, exist_ok=True)
    for entry in folder.iterdir():
        if entry.is_file() and entry.suffix in (".py", ".pyi", ".typed"):
            (target / entry.name).symlink_to(entry)
        elif entry.is_dir() and (entry / "__init__.py").is_file():
            _link_package(entry, target / entry.name)


# At import: MkDocs imports hooks while it reads mkdocs.yml, before any plugin starts, and
# mkdocstrings drops a search path that does not exist when it sets up its handler.
build_tree()


# -- the performance page shows the peer benchmark's results when they exist ------------------

PEERS_RESULTS = ROOT / "bench" / "peers" / "results.md"
PEERS_CHART = ROOT / "docs" / "assets" / "peers.png"
_FENCE = re.compile(r"^\s*(```|~~~)")


def peers_results() -> str:
    """bench/peers/results.md with its headings moved under the page's, or a note that it is due."""
    if not PEERS_RESULTS.is_file():
        return (
            '!!! note "No results yet"\n'
            "    `bench/peers/results.md` has not been generated in this checkout: run\n"
            "    `python -m bench.peers` (see below) and build the site again.\n"
        )
    lines, fenced = [], False
    for line in PEERS_RESULTS.read_text(encoding="utf-8").splitlines():
        if _FENCE.match(line):
            fenced = not fenced
        lines.append("##" + line if not fenced and line.startswith("#") else line)
    return "\n".join(lines) + "\n"


def peers_chart(page_dir: str) -> str:
    """The chart as an image, if the benchmark has drawn one."""
    if not PEERS_CHART.is_file():
        return ""
    relative = os.path.relpath(PEERS_CHART, ROOT / "docs" / page_dir)
    alt = "how many times faster perdure is than each peer, one panel per workload"
    return f"![{alt}]({relative})\n"


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    if "<!-- peers-" not in markdown:
        return markdown
    page_dir = os.path.dirname(page.file.src_uri)
    markdown = markdown.replace("<!-- peers-results -->", peers_results())
    return markdown.replace("<!-- peers-chart -->", peers_chart(page_dir))
