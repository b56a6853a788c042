"""What the `perdure` command line needs around the commands: the store, the user's app, errors.

`--app` names the user's code as ``module:attr`` (or ``path/to/file.py:attr``):
a workflow, a function, a list of them, a `Registry`, a `Replayer`, or a
module (everything it registers). Importing it registers the targets, so a
runtime opened by the CLI can continue the user's runs.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
import types
from pathlib import Path
from typing import Any, NoReturn

import attrs

from perdure._cli_render import safe_text
from perdure.actors import TargetSpec
from perdure.eventlog import EventLog, PerdureError, is_postgres_url
from perdure.runtime import (
    Registry,
    Replayer,
    default_registry,
    default_store_path,
    open_store,
    store_label,
)

USAGE = 2
FAILED = 1


class CliError(Exception):
    """A problem to report on stderr as one readable line, with the exit code to return."""

    def __init__(self, message: str, code: int = FAILED) -> None:
        super().__init__(message)
        self.code = code


def fail(message: str, code: int = FAILED) -> NoReturn:
    raise CliError(message, code)


# -- output ------------------------------------------------------------------------------------


def out(*lines: str) -> None:
    """Human-readable results to stdout, control characters escaped (see `safe_text`).

    Errors and progress go to stderr; exact output (``--json``) goes through
    `out_exact` or `out_json`.
    """
    for line in lines:
        print(safe_text(line))


def out_exact(*lines: str) -> None:
    """Lines printed exactly as given: machine-readable output (JSON) only."""
    for line in lines:
        print(line)


def out_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False, default=repr))


class Progress:
    """`label done/total` on stderr, only when stderr is a terminal (quiet when piped)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.live = sys.stderr.isatty()
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        self.note(f"{self.label} {done}/{total}")

    def note(self, text: str) -> None:
        if self.live:
            sys.stderr.write(f"\r{text}\x1b[K")
            sys.stderr.flush()
            self.shown = True

    def done(self) -> None:
        if self.shown:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


# -- the store ---------------------------------------------------------------------------------


def store_path(option: str | None) -> str:
    return option or default_store_path()


def check_store(path: str) -> None:
    if is_postgres_url(path):
        return  # a missing PostgreSQL store is reported by its first read
    try:
        os.stat(path)
    except PermissionError:
        fail(
            f"permission denied: this user cannot reach the store at {path!r} (a directory "
            "on its path cannot be entered); run as the store's owner or fix its permissions"
        )
    except OSError:
        fail(
            f"no perdure store at {path!r}; pass --store PATH|URL or set PERDURE_STORE "
            "(a store is created by the first Runtime that opens it)"
        )


def open_read_only(path: str) -> EventLog:
    """The store opened read-only: works while a runtime in another process writes to it."""
    check_store(path)
    where = store_label(path)
    try:
        return open_store(path, read_only=True)
    except PerdureError as exc:
        fail(f"cannot open the store at {where!r}: {exc}")
    except ImportError as exc:  # a postgresql:// store without the driver installed
        fail(f"cannot open the store at {where!r}: {exc}")
    except Exception as exc:  # lmdb raises its own errors for a path that is not a store
        fail(f"cannot open the store at {where!r}: {type(exc).__name__}: {exc}")


# -- values ------------------------------------------------------------------------------------


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def parse_json(text: str, option: str) -> Any:
    """A JSON value given on the command line (strict: no NaN/Infinity)."""
    try:
        return json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        fail(
            f"{option} is not valid JSON ({exc}); "
            f"e.g. {option} '\"approve\"' or {option} '{{\"ok\": true}}'",
            USAGE,
        )


# -- the user's app ----------------------------------------------------------------------------


@attrs.frozen
class App:
    """The targets named by ``--app``: a registry for a runtime and a replayer for replays."""

    spec: str
    registry: Registry
    replayer: Replayer


def _import(spec: str) -> Any:
    module_part, _, attr = spec.partition(":")
    if not module_part:
        fail(f"--app {spec!r}: give module:attr, e.g. --app myapp.workflows:review_flow", USAGE)
    try:
        if module_part.endswith(".py") or os.sep in module_part or "/" in module_part:
            module = _import_file(Path(module_part))
        else:
            if os.getcwd() not in sys.path:
                sys.path.insert(0, os.getcwd())  # like `python -m`: the current folder's modules
            module = importlib.import_module(module_part)
    except CliError:
        raise
    except ModuleNotFoundError as exc:
        fail(f"--app {spec!r}: cannot import {module_part!r}: {exc}", USAGE)
    except Exception as exc:  # the user's module raised while importing
        fail(f"--app {spec!r}: importing {module_part!r} raised {type(exc).__name__}: {exc}", USAGE)
    obj: Any = module
    for part in filter(None, attr.split(".")):
        if not hasattr(obj, part):
            fail(f"--app {spec!r}: {module_part!r} has no attribute {attr!r}", USAGE)
        obj = getattr(obj, part)
    return obj


def _import_file(path: Path) -> types.ModuleType:
    if not path.is_file():
        fail(f"--app: no such file {os.fspath(path)!r}", USAGE)
    name = f"perdure_app_{path.stem}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        fail(f"--app: cannot import {os.fspath(path)!r} as Python", USAGE)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    module_spec.loader.exec_module(module)
    return module


def _targets(obj: Any) -> list[TargetSpec] | None:
    spec = getattr(obj, "__perdure_target__", None)
    if isinstance(spec, TargetSpec):
        return [spec]
    if isinstance(obj, (list, tuple)):
        found = [getattr(item, "__perdure_target__", None) for item in obj]
        if found and all(isinstance(s, TargetSpec) for s in found):
            return found  # type: ignore[return-value]
    return None


def _merged(chosen: list[TargetSpec]) -> Registry:
    """The default registry, or a copy of it with the app's own targets when it lacks them."""
    if all(default_registry.get(s.name) is s for s in chosen):
        return default_registry
    registry = Registry()
    for name in default_registry.names():
        found = default_registry.get(name)
        if found is not None and all(s.name != name for s in chosen):
            registry.register(found)
    for target in chosen:
        registry.register(target)
    return registry


def load_app(spec: str, timeout: float = 30.0) -> App:
    """Import ``--app`` and build the registry and replayer for what it names."""
    obj = _import(spec)
    if isinstance(obj, Replayer):
        return App(spec, default_registry, obj)
    if isinstance(obj, Registry):
        return App(spec, obj, Replayer.from_registry(obj, timeout=timeout))
    if isinstance(obj, types.ModuleType):
        found = [getattr(v, "__perdure_target__", None) for v in vars(obj).values()]
        registry = _merged([s for s in found if isinstance(s, TargetSpec)])
        return App(spec, registry, Replayer.from_registry(registry, timeout=timeout))
    chosen = _targets(obj)
    if chosen is None:
        fail(
            f"--app {spec!r} names a {type(obj).__name__}, not a workflow, a function, a list "
            "of them, a Registry, a Replayer or a module",
            USAGE,
        )
    replayer = Replayer(
        workflows=[s for s in chosen if s.kind == "workflow"],
        functions=[s for s in chosen if s.kind == "function"],
        timeout=timeout,
    )
    return App(spec, _merged(chosen), replayer)
