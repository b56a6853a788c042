"""Version 2 of `cli_app`: `cli_review` drafts with another task now, which old runs do not fit."""

from __future__ import annotations

from typing import Any

from perdure import entrypoint, interrupt, task
from perdure.runtime import Registry

APP = Registry()


@task
def cli_outline(topic: str) -> str:
    return f"an outline about {topic}"


@entrypoint(registry=APP)
def cli_review(topic: str) -> dict[str, Any]:
    outline = cli_outline(topic).result()
    verdict = interrupt({"question": "publish?", "draft": outline})
    return {"verdict": verdict, "outcome": "kept"}
