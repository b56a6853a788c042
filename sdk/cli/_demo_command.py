"""``perdure demo``: the demo (`perdure.cli._demo`) on a temporary store unless ``--store``
is given. The demo's module registers its functions and workflow, so it is imported only
when the command runs."""

from __future__ import annotations

import importlib

import click

from perdure.cli._options import Args, common
from perdure.cli._output import fail


@click.command(
    epilog="\b\nExamples:\n  perdure demo\n  perdure demo --store ./demo-store && "
    "perdure runs --store ./demo-store"
)
@common
def demo(args: Args) -> int:
    """Retries, crash recovery and interrupts, live, in a few seconds."""
    try:
        module = importlib.import_module("perdure.cli._demo")
    except ModuleNotFoundError as exc:
        if exc.name != "perdure.cli._demo":
            raise
        fail("the demo is not part of this perdure installation")
    # Only an explicit --store keeps the demo's runs: by default it writes to a temporary
    # store, never into the current folder (nor $PERDURE_PATH, a service's store).
    return int(module.main(args.store) or 0)
