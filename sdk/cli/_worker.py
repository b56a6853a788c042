"""``perdure worker``: a worker process, executing the runs of the app's functions and
workflows on a store shared by processes (see `perdure.runtime.run_worker`)."""

from __future__ import annotations

import click

from perdure.cli._options import Args, common

_EPILOG = """\b
Examples:
  perdure worker --app myapp --store postgresql://app@db.internal/app
  PERDURE_STORE=postgresql://... perdure worker --app myapp.flows:REGISTRY --lease-ttl 5
"""


@click.command(epilog=_EPILOG)
@click.option("--app", required=True, metavar="MODULE[:ATTR]", help="Your code: what it serves.")
@click.option(
    "--lease-ttl",
    type=click.FloatRange(0.1, 3600),
    default=None,
    metavar="SECONDS",
    help="How long a run's lease lasts without renewal (PostgreSQL; default 10).",
)
@common
def worker(args: Args) -> int:
    """Execute the runs of your functions and workflows (a worker process)."""
    from perdure.cli._app import load_app, store_path
    from perdure.cli._output import fail, out
    from perdure.eventlog import PerdureError
    from perdure.runtime import Runtime, run_worker, store_label

    app = load_app(args.app)
    store = store_path(args.store)
    names = app.registry.names()
    if not names:
        fail(f"--app {args.app!r} registers no function or workflow: nothing to serve", 2)

    def ready(runtime: Runtime) -> None:
        out(f"worker serving {store_label(store)}: {', '.join(names)}")

    try:
        run_worker(None, store, registry=app.registry, lease_ttl=args.lease_ttl, ready=ready)
    except PerdureError as exc:
        fail(f"worker on {store_label(store)}: {exc}")
    return 0
