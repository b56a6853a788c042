"""Event builders shared by the event log tests (they live in `perdure.testing.events`)."""

from perdure.testing.events import (
    cancelled,
    done,
    fired,
    interrupted,
    resumed,
    started,
    steps,
    timer,
)

__all__ = ["cancelled", "done", "fired", "interrupted", "resumed", "started", "steps", "timer"]
