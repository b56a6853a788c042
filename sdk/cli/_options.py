"""The `perdure` command line's shared options and value types (click).

``--store`` and ``--json`` are accepted before or after the command: each command
declares them with `store_option`/`json_option`, and so does the root group; the
value given last wins. A command receives its parameters, those two included, as
one `Args` namespace.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, TypeVar

import click

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
STORE_HELP = (
    "The store: a folder or a postgresql:// URL (default: $PERDURE_STORE, $PERDURE_PATH "
    "or ./.perdure)."
)
JSON_HELP = "Machine-readable output (stable for scripts)."
URL_HELP = "Act through a running `perdure serve` at URL (token: $PERDURE_TOKEN)."
APP_HELP = "Your code: a workflow, a list of them, a Registry, a Replayer or a module."

F = TypeVar("F", bound=Callable[..., Any])

if TYPE_CHECKING:
    _FloatType = click.ParamType[float]  # generic for type checkers in click 8.3
else:
    _FloatType = click.ParamType


class Args(SimpleNamespace):
    """A command's parameters by name, with ``store`` (str | None) and ``json`` (bool)."""


class Seconds(_FloatType):
    """A positive number of seconds."""

    name = "seconds"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, float):
            return value
        try:
            number = float(value)
        except ValueError:
            self.fail(f"not a number of seconds: {value!r}", param, ctx)
        if not 0 < number < 1e9:
            self.fail(f"must be a positive number of seconds, got {value!r}", param, ctx)
        return number


class Since(_FloatType):
    """A moment: an age like 30s, 10m, 2h, 3d (that long ago), or an ISO 8601 date/time
    (UTC unless it says otherwise). Converts to a unix time."""

    name = "when"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, float):
            return value
        text = str(value).strip()
        unit = _UNITS.get(text[-1:])
        number = text[:-1]
        if unit is not None and number and number.replace(".", "", 1).isdigit():
            return time.time() - float(number) * unit
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            self.fail(
                f"{value!r} is neither an age (30s, 10m, 2h, 3d) nor an ISO date/time "
                "(2026-01-31 or 2026-01-31T09:00:00Z)",
                param,
                ctx,
            )
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


SECONDS = Seconds()
SINCE = Since()
POSITIVE = click.IntRange(min=1)
if TYPE_CHECKING:
    STATUS: click.Choice[str]


def __getattr__(name: str) -> Any:
    """`STATUS` (the run statuses) loads the event log on first use, not at ``perdure --help``."""
    if name == "STATUS":
        from perdure.eventlog import RUN_STATUSES

        globals()[name] = value = click.Choice(RUN_STATUSES)
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def complete_run_id(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Shell completion of a RUN_ID: the ids in the store (``--store`` or the default) that
    start with what is typed, newest first; nothing when the store cannot be read."""
    import asyncio

    from perdure.runtime import default_store_path, open_store

    async def ids() -> list[str]:
        log = open_store(ctx.meta.get("perdure.store") or default_store_path(), read_only=True)
        try:
            found = await log.list_runs()
        finally:
            await log.close()
        found.sort(key=lambda info: info.created_at, reverse=True)
        return [info.run_id for info in found if info.run_id.startswith(incomplete)][:200]

    try:
        return asyncio.run(ids())
    except Exception:  # completion must never print an error into the user's prompt
        return []


def run_id_argument(f: F) -> F:
    """The ``RUN_ID`` argument, completed from the store."""
    return click.argument("run_id", metavar="RUN_ID", shell_complete=complete_run_id)(f)


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Keep ``--store``/``--json`` in the context chain's shared ``meta`` (last one wins)."""
    if value is not None and value is not False:
        ctx.meta[f"perdure.{param.name}"] = value
    return value


def store_option(f: F) -> F:
    return click.option(
        "--store", metavar="STORE", expose_value=False, callback=_remember, help=STORE_HELP
    )(f)


def json_option(f: F) -> F:
    return click.option(
        "--json", "json", is_flag=True, expose_value=False, callback=_remember, help=JSON_HELP
    )(f)


class PipeClosed(Exception):
    """stdout was closed by its reader (``perdure events ID | head``): end quietly, exit 0.

    Not an `OSError`, so that click lets it through to `perdure.cli._main.main` (click
    would exit 1 and swap ``sys.stdout`` for good)."""


def with_args(f: Callable[[Args], int]) -> Callable[..., int]:
    """A command callback taking one `Args` (its parameters, ``store`` and ``json``)."""

    @functools.wraps(f)
    def callback(**params: Any) -> int:
        meta = click.get_current_context().meta
        args = Args(store=meta.get("perdure.store"), json=bool(meta.get("perdure.json")), **params)
        try:
            return f(args)
        except BrokenPipeError as exc:
            raise PipeClosed from exc

    return callback


def common(f: Callable[[Args], int]) -> Callable[..., int]:
    """`with_args` plus ``--store`` and ``--json``: what nearly every command takes."""
    return json_option(store_option(with_args(f)))
