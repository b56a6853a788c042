"""``perdure serve``: host a runtime and serve its runs (HTTP API and web UI, see `perdure.serve`).

The gateway's web stack (starlette, uvicorn) is imported only when the command runs.
"""

from __future__ import annotations

import click

from perdure.cli._options import Args, common

_EPILOG = """\b
Examples:
  perdure serve --app myapp.workflows                      http://127.0.0.1:8080
  perdure serve --app myapp.workflows --store postgresql://localhost/app --port 9000
  PERDURE_TOKEN=... perdure serve --app myapp.workflows --host 0.0.0.0
"""


@click.command(epilog=_EPILOG)
@click.option("--app", required=True, metavar="MODULE[:ATTR]", help="Your code.")
@click.option("--host", default="127.0.0.1", show_default=True, help="The address to bind.")
@click.option("--port", type=int, default=8080, show_default=True, help="The port.")
@click.option(
    "--token-file",
    metavar="FILE",
    help="The API token (else $PERDURE_TOKEN); required off loopback.",
)
@common
def serve(args: Args) -> int:
    """Host a runtime and serve its runs: HTTP API and web UI."""
    from perdure.serve import _command

    return _command.serve_command(
        app=args.app, store=args.store, host=args.host, port=args.port, token_file=args.token_file
    )
