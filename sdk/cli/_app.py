"""What the `perdure` commands need around them: the store (opened read-only), the user's app.

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
import pkgutil
import sys
import types
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import attrs

from perdure.actors import TargetSpec
from perdure.cli._output import USAGE, CliError, fail
from perdure.eventlog import Event, EventLog, PerdureError, is_postgres_url
from perdure.runtime import (
    InvalidIdError,
    Registry,
    Replayer,
    check_id,
    default_registry,
    default_store_path,
    open_store,
    store_label,
)

T = TypeVar("T")

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


async def with_log(store: str | None, use: Callable[[EventLog], Awaitable[T]]) -> T:
    """`use` the store opened read-only, closed after."""
    log = open_read_only(store_path(store))
    try:
        return await use(log)
    finally:
        await log.close()


async def events_or_fail(log: EventLog, run_id: str) -> list[Event]:
    """The run's events; a usage error for an id that is not valid text, exit 1 for none."""
    try:
        check_id("RUN_ID", run_id)  # e.g. bytes that are not UTF-8 in the argument
    except InvalidIdError as exc:
        fail(str(exc), USAGE)
    events = await log.read(run_id)
    if not events:
        fail(f"no run with id {run_id!r} in the store (see `perdure runs list`)")
    return events


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
    """What ``--app`` names: ``module:attr``, ``module``, ``pkg.module.attr`` (resolved by
    `pkgutil.resolve_name`, from the current folder first like ``python -m``), or a file
    ``path/app.py[:attr]``."""
    module_part, colon, attr = spec.partition(":")
    if not module_part or (colon and not attr.strip(".")):
        fail(f"--app {spec!r}: give module:attr, e.g. --app myapp.workflows:review_flow", USAGE)
    if module_part.endswith(".py") or os.sep in module_part or "/" in module_part:
        try:
            obj: Any = _import_file(Path(module_part))
        except CliError:
            raise
        except Exception as exc:  # the user's module raised while importing
            _raised(spec, module_part, exc)
        for part in filter(None, attr.split(".")):
            if not hasattr(obj, part):
                fail(f"--app {spec!r}: {module_part!r} has no attribute {attr!r}", USAGE)
            obj = getattr(obj, part)
        return obj
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`: the current folder's modules
    if colon:  # import it apart, so an error inside the module is not taken for a bad name
        _import_module(spec, module_part)
    try:
        return pkgutil.resolve_name(spec)
    except ModuleNotFoundError as exc:
        fail(f"--app {spec!r}: cannot import {module_part!r}: {exc}", USAGE)
    except AttributeError as exc:
        fail(f"--app {spec!r}: {exc}", USAGE)
    except ValueError as exc:
        if not str(exc).startswith("invalid format"):
            _raised(spec, module_part, exc)
        fail(f"--app {spec!r} is not module:attr; e.g. --app myapp.workflows:review_flow", USAGE)
    except Exception as exc:  # the user's module raised while importing
        _raised(spec, module_part, exc)


def _import_module(spec: str, name: str) -> None:
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:
        fail(f"--app {spec!r}: cannot import {name!r}: {exc}", USAGE)
    except Exception as exc:  # the user's module raised while importing
        _raised(spec, name, exc)


def _raised(spec: str, module_part: str, exc: BaseException) -> NoReturn:
    fail(f"--app {spec!r}: importing {module_part!r} raised {type(exc).__name__}: {exc}", USAGE)


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
