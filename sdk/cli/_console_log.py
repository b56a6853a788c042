"""Readable console output of perdure's log, for perdure's own programs (the CLI, the demo).

The library never configures logging: a host application decides. These
programs are their own hosts, so they attach a handler to the ``perdure``
logger for the duration of a command and take it away after.

structlog (its renderer) loads on the first record printed: importing it costs ~70 ms
with rich installed, which ``perdure --help`` and a quiet command should not pay.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from structlog.typing import Processor


@contextlib.contextmanager
def console_logging(
    stream: IO[str],
    level: int,
    *,
    processors: Sequence[Processor] = (),
    skip: Collection[str] = (),
    colors: bool = False,
    pad_event: int | None = None,
) -> Iterator[None]:
    """Print perdure's records of `level` and above to `stream`, one line each with fields.

    Until it ends, this is the ``perdure`` logger's only output.

    processors: structlog processors run on each record's fields before rendering.
    skip: messages not to print ("run started", ...).
    pad_event: the width of the message column (structlog's default if None).
    """
    root = logging.getLogger("perdure")
    handler = logging.StreamHandler(stream)

    def formatter() -> logging.Formatter:
        import structlog.dev
        import structlog.processors
        import structlog.stdlib

        return structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.ExtraAdder(),
                structlog.processors.add_log_level,
                *processors,
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                # Plain tracebacks: with rich installed structlog would draw them with rich,
                # whose console would write raw text outside our escaping.
                structlog.dev.ConsoleRenderer(
                    colors=colors,
                    exception_formatter=structlog.dev.plain_traceback,
                    **_padding(pad_event),
                ),
            ],
        )

    handler.setFormatter(_OnFirstRecord(formatter))
    if skip:
        skipped = frozenset(skip)

        def keep(record: logging.LogRecord) -> bool:
            return record.msg not in skipped

        handler.addFilter(keep)
    # In place of the handlers there were (an inner use, such as the demo inside the CLI, wins
    # until it ends); the program's output only, even if something configured the root logger.
    old = (root.level, root.propagate, root.handlers)
    root.setLevel(level)
    root.propagate = False
    root.handlers = [handler]
    try:
        yield
    finally:
        root.setLevel(old[0])
        root.propagate = old[1]
        root.handlers = old[2]


class _OnFirstRecord(logging.Formatter):
    """A formatter that builds the real one (`build`) when the first record is formatted."""

    def __init__(self, build: Callable[[], logging.Formatter]) -> None:
        super().__init__()
        self._build = build
        self._inner: logging.Formatter | None = None

    def format(self, record: logging.LogRecord) -> str:
        # Called under the handler's lock: the formatter is built once.
        if self._inner is None:
            self._inner = self._build()
        return self._inner.format(record)


def _padding(width: int | None) -> dict[str, Any]:
    """ConsoleRenderer's padding: ``pad_event_to`` (newer structlog) or ``pad_event``."""
    import structlog.dev

    if width is None:
        return {}
    params = inspect.signature(structlog.dev.ConsoleRenderer).parameters
    return {"pad_event_to" if "pad_event_to" in params else "pad_event": width}
