"""A command added the documented way (test_terminal.py registers it for one test)."""

from __future__ import annotations

import click

from perdure.cli._options import Args, common
from perdure.cli._output import out_json


@click.command()
@common
def hello(args: Args) -> int:
    """Say hello."""
    out_json({"hello": args.store})
    return 0
