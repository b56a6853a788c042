"""Worker processes: serve the runs of the functions and workflows an application defines.

A process is a worker for the targets registered in it: its `Runtime` (recovering,
on a store shared by processes) records them in the store, takes over the runs of
those targets that nobody drives, and executes the runs clients hand it (a client
is a process without the target's code: it records the run's start and waits).
`serve_worker` is that loop as a library call; ``perdure worker`` wraps it.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import signal
import sys
from collections.abc import Callable, Sequence

from perdure.actors import logger
from perdure.runtime._registry import Registry, default_registry
from perdure.runtime._runtime import Runtime


def import_app(app: str | Sequence[str]) -> list[str]:
    """Import the application module(s) (``myapp`` or ``myapp.flows``; several with
    commas), from the current folder first like ``python -m``; returns their names.
    A module that cannot be imported raises `ImportError` naming it."""
    names = [app] if isinstance(app, str) else list(app)
    modules = [m.strip() for name in names for m in name.split(",") if m.strip()]
    if not modules:
        raise ValueError("serve_worker: name at least one application module (app='myapp')")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ImportError(
                f"cannot import the application module {module!r}: {exc}", name=module
            ) from exc
    return modules


async def serve_worker(
    app: str | Sequence[str] | None,
    store: str | None = None,
    *,
    registry: Registry | None = None,
    lease_ttl: float | None = None,
    stop: asyncio.Event | None = None,
    ready: Callable[[Runtime], None] | None = None,
) -> None:
    """Import `app` (None: nothing to import, `registry` has the code), then serve
    `store` as a worker for every target registered (in `registry`, default the
    process's) until `stop` is set (or the task is cancelled).

    `ready` is called with the open runtime once the worker is recorded in the store.
    """
    if app is not None:
        import_app(app)
    registry = registry or default_registry
    if not registry.names():
        raise ValueError(
            f"the application {app!r} registers no function or workflow: a worker would "
            "have nothing to serve"
        )
    stop = stop or asyncio.Event()
    async with Runtime(store, registry=registry, lease_ttl=lease_ttl) as runtime:
        logger.info("worker serving", store=runtime.path, targets=registry.names())
        if ready is not None:
            ready(runtime)
        await stop.wait()
        logger.info("worker stopping", store=runtime.path)


def run_worker(
    app: str | Sequence[str] | None,
    store: str | None = None,
    *,
    registry: Registry | None = None,
    lease_ttl: float | None = None,
    ready: Callable[[Runtime], None] | None = None,
) -> None:
    """`serve_worker` in a new event loop, until SIGINT or SIGTERM: then the runs in
    flight commit what they have and the leases are handed back at once."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, stop.set)
        await serve_worker(
            app, store, registry=registry, lease_ttl=lease_ttl, stop=stop, ready=ready
        )

    asyncio.run(main())
