"""The wheel: built from a clean copy of the source, installed into a fresh venv, importable.

No network is needed when the build requirements are installed here (the dev
extra pins them); otherwise pip builds in an isolated environment from the
index. The fresh venv sees this environment's dependency folders through a
plain path ``.pth`` (which does not run the editable-install hook), so
``perdure`` itself can only come from the wheel.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from email.parser import Parser
from pathlib import Path

import attrs
import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
_COPY_IGNORE = shutil.ignore_patterns(
    ".git",
    "build",
    "dist",
    "*.egg-info",
    ".venv",
    "__pycache__",
    ".*_cache",
    ".hypothesis",
    ".perdure",
)


@attrs.frozen
class Installed:
    wheel: Path
    names: list[str]
    python: Path
    site: Path
    cwd: Path

    def run(self, code: str) -> str:
        """Run `code` in the venv, isolated from this process's environment and cwd."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        done = subprocess.run(
            [str(self.python), "-I", "-c", code],
            check=False,
            cwd=self.cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, f"{code!r} failed:\n{done.stdout}\n{done.stderr}"
        return done.stdout


def _pyproject() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        return tomllib.load(file)


def _installed_satisfies(requirement: str) -> bool:
    req = Requirement(requirement)
    try:
        return req.specifier.contains(importlib.metadata.version(req.name), prereleases=True)
    except importlib.metadata.PackageNotFoundError:
        return False


def _pip(*args: str, cwd: Path) -> None:
    env = {**os.environ, "PIP_NO_INPUT": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "pip", *args],
        check=False,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"pip {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    base = tmp_path_factory.mktemp("packaging")
    # Build from a copy: an in-tree build would leave build/ in the repo, and a stale
    # build/lib can smuggle deleted modules into the wheel.
    source = base / "source"
    shutil.copytree(ROOT, source, ignore=_COPY_IGNORE)
    build_requires: list[str] = _pyproject()["build-system"]["requires"]  # type: ignore[index]
    offline = all(_installed_satisfies(req) for req in build_requires)
    isolation = ["--no-build-isolation", "--no-index"] if offline else []
    dist = base / "dist"
    _pip("wheel", "--no-deps", *isolation, "--wheel-dir", str(dist), str(source), cwd=base)
    (wheel,) = dist.glob("perdure-*.whl")

    venv = base / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120
    )
    python = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-I", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    _pip("--python", str(python), "install", "--no-deps", "--no-index", str(wheel), cwd=base)

    # Dependencies come from this environment, as plain path entries: site.addsitedir would
    # also run this environment's .pth hooks, including the editable finder for the repo.
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = Parser().parsestr(archive.read(_dist_info(wheel) + "/METADATA").decode())
    dep_dirs = {
        str(importlib.metadata.distribution(Requirement(dep).name).locate_file(""))
        for dep in metadata.get_all("Requires-Dist") or []
        if "extra ==" not in dep
    }
    (site / "_perdure_test_deps.pth").write_text("".join(f"{d}\n" for d in sorted(dep_dirs)))

    cwd = base / "elsewhere"
    cwd.mkdir()
    yield Installed(wheel=wheel, names=names, python=python, site=site, cwd=cwd)


def _dist_info(wheel: Path) -> str:
    name, version = wheel.name.split("-")[:2]
    return f"{name}-{version}.dist-info"


def _source_modules() -> set[str]:
    """Paths (inside the wheel) of every product .py file, via pyproject's package-dir."""
    mapping: dict[str, str] = _pyproject()["tool"]["setuptools"]["package-dir"]  # type: ignore[index]
    found = set()
    for package, folder in mapping.items():
        for path in (ROOT / folder).rglob("*.py"):
            if "__pycache__" not in path.parts:
                rel = path.relative_to(ROOT / folder).as_posix()
                found.add(f"{package.replace('.', '/')}/{rel}")
    return found


def test_wheel_contents(installed: Installed) -> None:
    names = installed.names
    assert "perdure/py.typed" in names
    tops = {name.split("/")[0] for name in names}
    assert tops == {"perdure", _dist_info(installed.wheel)}, f"unexpected top-level: {tops}"
    assert not [n for n in names if "/tests/" in n or "/bench/" in n or n.startswith("tests/")]
    wheel_modules = {name for name in names if name.endswith(".py")}
    assert wheel_modules == _source_modules(), (
        "the wheel and the source folders differ (a subpackage missing from "
        "[tool.setuptools] packages?): "
        f"only in source {sorted(_source_modules() - wheel_modules)}, "
        f"only in wheel {sorted(wheel_modules - _source_modules())}"
    )


def test_wheel_imports_from_its_own_install(installed: Installed) -> None:
    out = installed.run(
        "import perdure, perdure.eventlog, perdure.actors, perdure.runtime\n"
        "for m in (perdure, perdure.eventlog, perdure.actors, perdure.runtime):\n"
        "    print(m.__file__)\n"
    )
    files = [Path(line) for line in out.splitlines()]
    assert len(files) == 4
    for file in files:
        assert file.is_relative_to(installed.site), f"{file} is not from the installed wheel"


def test_console_scripts_resolve(installed: Installed) -> None:
    entry_points = installed.run(
        "import importlib.metadata as m\n"
        "for ep in m.distribution('perdure').entry_points:\n"
        "    if ep.group == 'console_scripts':\n"
        "        print(ep.name, ep.value)\n"
    )
    scripts = dict(line.split(" ", 1) for line in entry_points.splitlines())
    assert scripts == _pyproject()["project"]["scripts"]  # type: ignore[index]
    for value in scripts.values():
        module, attr = value.split(":")
        installed.run(f"import {module}; assert callable({module}.{attr})")


def test_the_replay_tools_load_on_first_use() -> None:
    """`import perdure` leaves the replayer out (a service that never replays does not
    pay for it); `perdure.Replayer` works by name and with `*`, its result types by name."""
    code = (
        "import sys, perdure\n"
        "assert 'perdure.runtime._replayer' not in sys.modules\n"
        "assert perdure.Replayer.__name__ == 'Replayer'\n"
        "from perdure import ReplayResult, ReplaySummary\n"
        "from perdure.runtime import Replayer\n"
        "assert Replayer is perdure.Replayer\n"
        "ns = {}\n"
        "exec('from perdure import *', ns)\n"
        "assert ns['Replayer'] is Replayer and 'ReplaySummary' not in ns\n"
        "try:\n"
        "    perdure.Nope\n"
        "except AttributeError as exc:\n"
        "    assert 'Nope' in str(exc)\n"
        "else:\n"
        "    raise SystemExit('no AttributeError')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
