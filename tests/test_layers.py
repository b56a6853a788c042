"""Layering: imports between perdure's layers only point down, never into another layer's
private modules, never in a circle; and nothing imports pickle.

sdk (perdure) -> runtime -> actors -> eventlog. A module may import its own
layer or any lower one, and from a lower layer only what that layer makes public
(its package, or a module whose name has no leading underscore): runtime may
import `perdure.actors`, not `perdure.actors._observe`. No two modules import
each other, directly or through others. Every import is checked, including
imports under ``if TYPE_CHECKING:``, imports inside functions, relative
imports, and ``importlib.import_module("...")`` calls with a literal name: a
type-only import is still a dependency.
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Layer rank of each package; a module may import only ranks <= its own.
RANKS: dict[str, int] = {
    "perdure": 3,  # sdk/
    "perdure.runtime": 2,
    "perdure.actors": 1,
    "perdure.eventlog": 0,
}
#: Serialisers that can run code while loading: a log must never be able to.
FORBIDDEN = frozenset({"pickle", "_pickle", "cPickle", "dill", "cloudpickle", "marshal", "shelve"})


@attrs.frozen
class Violation:
    file: str
    line: int
    module: str
    imported: str
    why: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.module} imports {self.imported} ({self.why})"


def package_dirs(root: Path) -> dict[str, Path]:
    """Package name -> source folder, as pyproject.toml maps them."""
    with (root / "pyproject.toml").open("rb") as file:
        config = tomllib.load(file)
    mapping: dict[str, str] = config["tool"]["setuptools"]["package-dir"]
    return {package: root / folder for package, folder in mapping.items()}


def layer_of(module: str) -> str | None:
    """The layer package owning `module` (longest prefix), or None if it is not perdure's."""
    best = None
    for package in RANKS:
        if (module == package or module.startswith(package + ".")) and (
            best is None or len(package) > len(best)
        ):
            best = package
    return best


def product_modules(root: Path) -> Iterator[tuple[str, Path]]:
    """(module name, path) of every .py file in the layer folders."""
    for package, folder in package_dirs(root).items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if "__pycache__" in parts:
                continue
            if parts[-1] == "__init__":
                parts.pop()
            yield ".".join([package, *parts]), path


def _imports(tree: ast.AST, module: str, is_package: bool) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) for every import in `tree`.

    ``from X import Y`` yields ``X.Y`` (Y may be a submodule: ``from perdure import
    runtime`` imports the runtime layer); `layer_of` still places ``X.Y`` in X's
    layer when Y is just a name.
    """
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                if node.level - 1 >= len(parts):
                    yield node.lineno, "<relative import beyond the top-level package>"
                    continue
                base = ".".join(parts[: len(parts) - (node.level - 1)])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            for alias in node.names:
                yield node.lineno, base if alias.name == "*" else f"{base}.{alias.name}"
                yield node.lineno, base
        elif (
            isinstance(node, ast.Call)
            and _call_name(node.func) in {"importlib.import_module", "import_module", "__import__"}
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.lineno, node.args[0].value


def _private_part(imported: str, layer: str) -> str | None:
    """The first private (``_x``, not dunder) component of `imported` below `layer`, if any."""
    for part in imported[len(layer) :].split(".")[1:]:
        if part.startswith("_") and not part.startswith("__"):
            return part
    return None


def _call_name(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        return f"{func.value.id}.{func.attr}"
    return ""


def check_tree(root: Path) -> tuple[list[Violation], int]:
    """All layering and forbidden-import violations under `root`, and how many files were read."""
    violations: list[Violation] = []
    count = 0
    for module, path in product_modules(root):
        count += 1
        rel = path.relative_to(root).as_posix()
        own = layer_of(module)
        assert own is not None, module
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=rel)
        seen: set[tuple[int, str]] = set()
        for line, imported in _imports(tree, module, path.name == "__init__.py"):
            if (line, imported) in seen:
                continue
            seen.add((line, imported))
            if imported.startswith("<"):
                violations.append(Violation(rel, line, module, imported, "cannot resolve"))
                continue
            if imported.split(".")[0] in FORBIDDEN:
                violations.append(
                    Violation(rel, line, module, imported, "serialiser that can run code")
                )
                continue
            target = layer_of(imported)
            if target is not None and RANKS[target] > RANKS[own]:
                violations.append(
                    Violation(rel, line, module, imported, f"upward: {own} -> {target}")
                )
            elif target is not None and target != own and _private_part(imported, target):
                violations.append(
                    Violation(rel, line, module, imported, f"private module of {target}")
                )
    # A name imported from a package (`from perdure.x import y`) yields both X.y and X;
    # keep one report per line and layer.
    unique: dict[tuple[str, int, str], Violation] = {}
    for violation in violations:
        unique.setdefault((violation.file, violation.line, violation.why), violation)
    return sorted(unique.values(), key=lambda v: (v.file, v.line)), count


def _module_edges(tree: ast.AST, module: str, is_package: bool, known: set[str]) -> set[str]:
    """The product modules `module` imports when it is loaded or type-checked (by any of
    the means `_imports` reads, outside function bodies).

    ``from X import y`` depends on the module X.y when there is one, else on X
    itself. Importing X.y also runs the package X's ``__init__``, but that is
    no dependency of its own: each module of X depends on X's ``__init__`` only
    if it imports a name from it.
    """
    package = module if is_package else module.rpartition(".")[0]
    targets: list[str] = []
    for node in _import_time_nodes(tree):
        if isinstance(node, ast.Import):
            targets.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                if node.level - 1 >= len(parts):
                    continue  # reported by `check_tree`
                base = ".".join(parts[: len(parts) - (node.level - 1)])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                targets.append(sub if sub in known else base)
        elif (
            isinstance(node, ast.Call)
            and _call_name(node.func) in {"importlib.import_module", "import_module", "__import__"}
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            targets.append(node.args[0].value)
    edges: set[str] = set()
    for name in targets:
        target = name
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != module:
            edges.add(target)
    return edges


def _import_time_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """The nodes of `tree` that run when the module is imported (or type-checked): all but
    function bodies. A function-level import is the deliberate way to load something
    on first use (`PostgresEventLog`, the remote `Client`): it is no import cycle."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                todo.append(child)


def import_cycles(root: Path) -> list[list[str]]:
    """Every circle of imports between product modules: one list of modules per circle
    (a strongly connected component of the import graph), each sorted."""
    paths = dict(product_modules(root))
    known = set(paths)
    graph = {
        module: _module_edges(
            ast.parse(path.read_text(encoding="utf-8")), module, path.name == "__init__.py", known
        )
        for module, path in paths.items()
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        # Tarjan's algorithm, iteratively: (module, its remaining successors).
        work: list[tuple[str, Iterator[str]]] = []

        def visit(node: str, work: list[tuple[str, Iterator[str]]] = work) -> None:
            index[node] = low[node] = len(index)
            stack.append(node)
            on_stack.add(node)
            work.append((node, iter(sorted(graph[node]))))

        visit(start)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    visit(successor)
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component: list[str] = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        cycles.append(sorted(component))
    return sorted(cycles)


def test_layer_table_matches_pyproject() -> None:
    assert set(package_dirs(ROOT)) == set(RANKS), (
        "pyproject's package-dir and RANKS disagree: give every layer a rank"
    )
    for folder in package_dirs(ROOT).values():
        assert (folder / "__init__.py").is_file(), folder


def test_imports_point_down_and_nothing_imports_pickle() -> None:
    violations, count = check_tree(ROOT)
    assert count >= len(RANKS)
    assert not violations, "layering violations:\n" + "\n".join(map(str, violations))


#: Cycles tolerated for the time being (exact module lists); none are left.
KNOWN_CYCLES: list[list[str]] = []


def test_no_module_imports_itself_back_through_others() -> None:
    cycles = [cycle for cycle in import_cycles(ROOT) if cycle not in KNOWN_CYCLES]
    assert not cycles, "import cycles (TYPE_CHECKING imports count):\n" + "\n".join(
        " <-> ".join(cycle) for cycle in cycles
    )


# --- the checker itself can fail -------------------------------------------------


def _write(root: Path, files: dict[str, str]) -> None:
    (root / "pyproject.toml").write_text(
        "[tool.setuptools.package-dir]\n"
        '"perdure" = "sdk"\n"perdure.runtime" = "runtime"\n'
        '"perdure.actors" = "actors"\n"perdure.eventlog" = "eventlog"\n'
    )
    for folder in ("sdk", "runtime", "actors", "eventlog"):
        (root / folder).mkdir()
        (root / folder / "__init__.py").write_text("")
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def test_checker_flags_upward_and_forbidden_imports(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "eventlog/_a.py": "from perdure.runtime import Runtime\n",
            "eventlog/_b.py": "import perdure.actors._mailbox\n",
            "eventlog/_c.py": "from perdure import runtime\n",
            "eventlog/_d.py": "from perdure import __version__\n",
            "actors/_e.py": "from ..runtime import _supervisor\n",
            "actors/_f.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n"
                "    from perdure.runtime._runtime import Runtime\n"
            ),
            "actors/_g.py": "import importlib\nimportlib.import_module('perdure.runtime')\n",
            "runtime/_h.py": "import pickle\n",
            "runtime/_i.py": "from cloudpickle import dumps\n",
            "runtime/sub/__init__.py": "from ... import Client\n",
            "runtime/sub/_j.py": "from .... import x\n",
            "eventlog/_k.py": "def f():\n    import perdure.actors\n",
        },
    )
    violations, count = check_tree(tmp_path)
    found = {(v.file, v.line, v.why) for v in violations}
    assert found == {
        ("eventlog/_a.py", 1, "upward: perdure.eventlog -> perdure.runtime"),
        ("eventlog/_b.py", 1, "upward: perdure.eventlog -> perdure.actors"),
        ("eventlog/_c.py", 1, "upward: perdure.eventlog -> perdure.runtime"),
        ("eventlog/_c.py", 1, "upward: perdure.eventlog -> perdure"),
        ("eventlog/_d.py", 1, "upward: perdure.eventlog -> perdure"),
        ("actors/_e.py", 1, "upward: perdure.actors -> perdure.runtime"),
        ("actors/_f.py", 3, "upward: perdure.actors -> perdure.runtime"),
        ("actors/_g.py", 2, "upward: perdure.actors -> perdure.runtime"),
        ("runtime/_h.py", 1, "serialiser that can run code"),
        ("runtime/_i.py", 1, "serialiser that can run code"),
        ("runtime/sub/__init__.py", 1, "upward: perdure.runtime -> perdure"),
        ("runtime/sub/_j.py", 1, "cannot resolve"),
        ("eventlog/_k.py", 2, "upward: perdure.eventlog -> perdure.actors"),
    }
    assert count == 4 + 12
    assert "eventlog/_a.py:1: perdure.eventlog._a imports perdure.runtime.Runtime" in str(
        violations[[v.file for v in violations].index("eventlog/_a.py")]
    )


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("sdk/_x.py", "from perdure.runtime import Runtime\nfrom perdure.eventlog import Event\n"),
        ("sdk/_x.py", "from .runtime import Runtime\nfrom . import _other\n"),
        ("runtime/_x.py", "from perdure.actors import RunActor\nfrom . import _y\n"),
        ("runtime/_x.py", "from ..actors import RunActor\nfrom ..eventlog import Event\n"),
        ("actors/_x.py", "from perdure.eventlog import EventLog\nimport perdure.actors._y\n"),
        ("actors/__init__.py", "from ._x import y\nfrom ..eventlog import Event\n"),
        ("eventlog/_x.py", "import json, orjson\nfrom perdure.eventlog._codec import encode\n"),
        ("eventlog/__init__.py", "from perdure.eventlog import _codec\nimport pickletools\n"),
    ],
)
def test_checker_allows_downward_and_sideways_imports(tmp_path: Path, path: str, text: str) -> None:
    _write(tmp_path, {path: text})
    violations, _ = check_tree(tmp_path)
    assert violations == []


def test_checker_flags_private_modules_of_other_layers(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "runtime/_a.py": "from perdure.actors._observe import logger\n",
            "runtime/_b.py": "import perdure.eventlog._json\n",
            "runtime/_c.py": "from perdure.actors import _observe\n",
            "sdk/_d.py": "def f():\n    from .eventlog._lmdb_keys import SEP\n",
            "runtime/_ok.py": (
                "from perdure.runtime._a import x\n"  # its own layer's private module
                "from perdure.eventlog import fresh\n"
                "from perdure.eventlog.lmdb_tools import SEP\n"
                "from perdure.actors import __version__\n"
            ),
        },
    )
    violations, _ = check_tree(tmp_path)
    assert {(v.file, v.line, v.why) for v in violations} == {
        ("runtime/_a.py", 1, "private module of perdure.actors"),
        ("runtime/_b.py", 1, "private module of perdure.eventlog"),
        ("runtime/_c.py", 1, "private module of perdure.actors"),
        ("sdk/_d.py", 2, "private module of perdure.eventlog"),
    }


def test_cycle_finder_sees_type_only_and_package_cycles_but_not_lazy_imports(
    tmp_path: Path,
) -> None:
    _write(
        tmp_path,
        {
            "actors/_a.py": "from perdure.actors._b import B\n",
            "actors/_b.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n"
                "    from perdure.actors import _a\n"
            ),
            "actors/_c.py": "from perdure.actors._d import D\n",
            "actors/_d.py": "def later():\n    from perdure.actors._c import C\n",
            "runtime/__init__.py": "from perdure.runtime._e import E\n",
            "runtime/_e.py": "from perdure.runtime import F\n",
            "runtime/_f.py": "from perdure.runtime import _g\n",
            "runtime/_g.py": "from . import _h\n",
            "runtime/_h.py": "import perdure.runtime._f\n",
            "eventlog/_i.py": "from perdure.eventlog import _j\n",
            "eventlog/_j.py": "X = 1\n",
        },
    )
    assert import_cycles(tmp_path) == [
        ["perdure.actors._a", "perdure.actors._b"],
        ["perdure.runtime", "perdure.runtime._e"],
        ["perdure.runtime._f", "perdure.runtime._g", "perdure.runtime._h"],
    ]
