"""The `perdure` root command: the command table, the global options, exit codes and errors.

Commands are loaded only when used (or listed for completion): ``perdure --help``
imports none of them, nor rich, nor the gateway's web stack.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pkgutil
import sys
from collections.abc import MutableMapping
from typing import Any

import click

from perdure.cli._options import PipeClosed, json_option, store_option
from perdure.cli._output import CliError
from perdure.cli._text import safe_text

#: The commands, in the order ``--help`` lists them: name -> ("module:attr", one-line help).
#: Adding a command is one module defining a click command and one line here.
COMMANDS: dict[str, tuple[str, str]] = {
    "runs": ("perdure.cli._runs:runs", "List runs (the default), or show one."),
    "events": ("perdure.cli._events:events", "A run's events, one per line."),
    "replay": ("perdure.cli._replay:replay", "Re-execute workflow code against recorded runs."),
    "resume": ("perdure.cli._write:resume", "Answer a run's pending interrupt."),
    "send": ("perdure.cli._write:send", "Send a message to a workflow run."),
    "continue": ("perdure.cli._write:continue_", "Reopen a failed, parked or cancelled run."),
    "cancel": ("perdure.cli._write:cancel", "Cancel a run."),
    "stats": ("perdure.cli._stats:stats", "Store size, runs by status, events."),
    "store": ("perdure.cli._store:store", "Check a store for damage, or salvage its runs."),
    "serve": ("perdure.cli._serve:serve", "Host a runtime and serve its runs: HTTP API, web UI."),
    "worker": ("perdure.cli._worker:worker", "Execute your code's runs (a worker process)."),
    "demo": ("perdure.cli._demo_command:demo", "Retries, crash recovery and interrupts, live."),
}

_EPILOG = """\b
Examples:
  perdure runs                          the newest runs of ./.perdure
  perdure runs list --status failed --since 2h
  perdure runs show RUN_ID
  perdure events RUN_ID --follow
  perdure replay --all --app myapp.workflows --since 7d
  perdure resume RUN_ID --value '"approve"' --app myapp.workflows

\b
Exit codes: 0 ok; 1 a replay diverged, a run was not found, or a command
failed; 2 usage (bad arguments, a bad --app, --value that is not JSON);
130 interrupted (Ctrl-C).

\b
Shell completion (bash; zsh_source and fish_source for the others):
  eval "$(_PERDURE_COMPLETE=bash_source perdure)"
"""


class _Commands(click.Group):
    """A group whose commands are imported when first needed (see `COMMANDS`)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        command = pkgutil.resolve_name(entry[0])
        assert isinstance(command, click.Command), entry
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # The one-line helps come from the table: listing commands imports none of them.
        with formatter.section("Commands"):
            formatter.write_dl([(name, help) for name, (_, help) in COMMANDS.items()])


def _version() -> str:
    from perdure import __version__

    return __version__


@click.group(
    cls=_Commands,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=_EPILOG,
)
@store_option
@json_option
@click.version_option(_version(), "--version", prog_name="perdure", message="%(prog)s %(version)s")
def cli() -> None:
    """Look at, replay and nudge the runs in a perdure store.

    Read commands (runs, events, replay, stats) open the store read-only, so
    they work beside a running service; each takes --json.
    """


def _logging() -> contextlib.AbstractContextManager[None]:
    """Runtime warnings go to stderr (stdout is for results), for the command's duration;
    run ids and error texts in them are escaped like any output."""
    from perdure.cli._console_log import console_logging

    return console_logging(sys.stderr, logging.WARNING, processors=[_escape_log_fields])


def _escape_log_fields(
    logger: Any, method: str, event_dict: MutableMapping[str, Any]
) -> dict[str, Any]:
    """Runtime warnings on stderr carry run ids and error texts: escape them like any output."""
    return {
        key: safe_text(value) if isinstance(value, str) else value
        for key, value in event_dict.items()
    }


def _error(text: str) -> None:
    print(f"perdure: error: {safe_text(text)}", file=sys.stderr)


def _usage_error(exc: click.ClickException) -> int:
    """click's message for a usage error on stderr, its quoted arguments escaped (not dropped:
    click's own printing strips escape sequences, and the user should see what they typed)."""
    ctx = getattr(exc, "ctx", None)
    if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
        lines = [ctx.get_help()]  # `perdure` alone, or a group without its subcommand
    else:
        lines = []
        if ctx is not None:
            lines.append(ctx.get_usage())
            if ctx.command.get_help_option(ctx) is not None:
                lines.append(f"Try '{ctx.command_path} --help' for help.")
            lines.append("")
        lines.append(f"Error: {exc.format_message()}")
    text = "\n".join(lines)
    sys.stderr.write("\n".join(safe_text(line) for line in text.split("\n")) + "\n")
    return exc.exit_code


def main(argv: list[str] | None = None) -> int:
    """Run the command line with `argv` (default ``sys.argv[1:]``); return the exit code."""
    args = sys.argv[1:] if argv is None else list(argv)
    with _logging():
        try:
            code = cli.main(args, prog_name="perdure", standalone_mode=False)
            return code if isinstance(code, int) else 0
        except click.exceptions.Abort:  # Ctrl-C (click turns KeyboardInterrupt into Abort)
            return 130
        except KeyboardInterrupt:
            return 130
        except click.ClickException as exc:
            return _usage_error(exc)
        except click.exceptions.Exit as exc:
            return exc.exit_code
        except CliError as exc:
            _error(str(exc))
            return exc.code
        except (PipeClosed, BrokenPipeError):  # `perdure events RUN_ID | head`
            with contextlib.suppress(OSError, ValueError):
                fd = sys.stdout.fileno()  # later writes (at exit) go nowhere
                os.dup2(os.open(os.devnull, os.O_WRONLY), fd)
            return 0
        except Exception as exc:
            # Not imported up front: `perdure --help` loads no store code. A PerdureError
            # has loaded it already, and no clause above catches one.
            from perdure.eventlog import PerdureError

            if isinstance(exc, PerdureError):
                _error(f"{type(exc).__name__}: {exc}")
                return 1
            if os.environ.get("PERDURE_DEBUG"):
                raise
            _error(
                f"internal error: {type(exc).__name__}: {exc} (PERDURE_DEBUG=1 shows a traceback)"
            )
            return 1
