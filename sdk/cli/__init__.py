"""The `perdure` command line (also ``python -m perdure``): look at runs, replay them, nudge them.

Noun-verb commands built on the public API (``perdure COMMAND --help`` shows each
one's options and examples; docs/reference/cli.md is the reference):

    perdure runs [list] [--status S] [--target NAME] [--since 2h] [--limit N]
    perdure runs show RUN_ID
    perdure events RUN_ID [--follow]
    perdure replay RUN_ID --app module:attr      (or --all, or --file FILE)
    perdure resume RUN_ID --value JSON [--app module:attr]
    perdure send RUN_ID JSON [--topic T] [--idempotency-key KEY]
    perdure continue RUN_ID [--app module:attr]
    perdure cancel RUN_ID
    perdure stats
    perdure store check
    perdure store salvage RUN_ID... --to NEWSTORE      (or --all)
    perdure serve --app module:attr [--host H] [--port P] [--token-file F]
    perdure demo

Read commands (``runs``, ``events``, ``replay``, ``stats``) open the store
read-only, so they work beside a running service; each takes ``--json``.
Exit codes: 0 ok; 1 a replay diverged, a run was not found, or a command
failed; 2 usage (bad arguments, a bad ``--app``, ``--value`` that is not JSON);
130 interrupted.

Built on click (parsing, help, shell completion) and rich (terminal tables,
colours, progress bars; only when the output is a terminal).

The modules, one concept each:

- ``_main``: the root group, the command table (`COMMANDS`), exit codes and errors;
- ``_options``: ``--store``/``--json`` and the value types (``--since``, seconds);
- ``_output``: stdout/stderr, `CliError`/`fail`, the rich console, progress bars;
- ``_text``: escaping of untrusted text (`safe_text`), times, compact JSON;
- ``_render``: plain data and lines (``--json`` and pipes); ``_views``: rich views;
- ``_app``: the store and the user's ``--app``;
- one module per command group: ``_runs``, ``_events``, ``_stats``, ``_replay``,
  ``_write`` (resume, send, continue, cancel), ``_store``, ``_serve``,
  ``_demo_command`` (the demo itself is ``_demo``).

Adding a command
----------------
1. Write a module ``perdure/cli/_NAME.py`` defining a click command (or group)::

       import click
       from perdure.cli._options import Args, common

       @click.command(epilog="Example: perdure NAME RUN_ID")
       @click.argument("run_id")
       @common                                  # --store, --json; the callback gets Args
       def NAME(args: Args) -> int:
           \"\"\"One line of help.\"\"\"
           ...                                  # import heavy things here, not at the top
           return 0                             # the exit code

   Raise `perdure.cli._output.CliError` (or call ``fail(message, code)``) for a
   readable error; print with ``out``/``out_json`` (``out`` escapes untrusted text).
2. Add one line to ``COMMANDS`` in ``perdure/cli/_main.py``:
   ``"NAME": ("perdure.cli._NAME:NAME", "One line of help."),``
3. Document it in docs/reference/cli.md (tests/test_docs.py checks every command
   and option is there), and re-run the editable install for the new module.
"""

from __future__ import annotations

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run the command line with `argv` (default ``sys.argv[1:]``); return the exit code."""
    from perdure.cli._main import main as run

    return run(argv)
