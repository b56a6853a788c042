"""An app whose runs carry hostile ids, names and values, for the CLI's escaping tests.

Every string a user or their data controls (run ids, a function's name,
inputs, results, error messages) holds something a terminal would act on:
ESC sequences that clear the screen or recolour it, OSC that retitles the
window, newlines that fake a line of output, C1 controls, bidi overrides that
reverse what follows. `perdure ... --app tests/cli/hostile_app.py:APP` loads it.
"""

from __future__ import annotations

import contextlib
from typing import Any

from perdure import RetryPolicy, Runtime, entrypoint, function, interrupt, task
from perdure.errors import RunFailedError
from perdure.runtime import Registry

APP = Registry()

CLEAR_ID = "run-\x1b[2J\x1b[31mred"  # clear the screen, then red
NEWLINE_ID = "run-fake\nrow  injected  workflow  completed"  # a second table row
BIDI_ID = "run-\u202egnp.exe"  # shows as "run-exe.png"
C1_ID = "run-\x9b31m-c1"  # CSI as one C1 byte
WAIT_ID = "wait-\x1b]0;pwned\x07"  # OSC: set the window title
HOSTILE_IDS = (CLEAR_ID, NEWLINE_ID, BIDI_ID, C1_ID, WAIT_ID)
HOSTILE_INPUT = "in\x1b[0m\u202e\r\x85"
ERROR_TEXT = "line one\nperdure: everything is fine \x1b[32m"


@task(name="hostile_step\x1b[1m")
def hostile_step(text: str) -> str:
    return text + "\x1b[5m"


@entrypoint(name="hostile_flow", registry=APP)
def hostile_flow(value: str) -> str:
    return hostile_step(value).result()


@entrypoint(name="hostile_ask", registry=APP)
def hostile_ask(value: str) -> Any:
    return interrupt({"question\x1b[31m": value})


@function(name="hostile\x1b[1mfn", retries=RetryPolicy(max_attempts=1), registry=APP)
def hostile_fn(text: str) -> str:
    raise ValueError(ERROR_TEXT + text)


async def make(store: str) -> None:
    async with Runtime(path=store, registry=APP) as rt:
        await rt.run(hostile_flow, HOSTILE_INPUT, run_id=CLEAR_ID)
        await rt.run(hostile_flow, "x", run_id=NEWLINE_ID)
        await rt.run(hostile_flow, "y", run_id=BIDI_ID)
        with contextlib.suppress(RunFailedError):
            await rt.run(hostile_fn, {"text": "\x07bell"}, run_id=C1_ID)
        await rt.start(hostile_ask, HOSTILE_INPUT, run_id=WAIT_ID)
        await rt.wait(WAIT_ID)
