"""How a store is named: what a folder path or a URL opens, and when two names are one store.

A store spec is a folder path (the embedded LMDB store) or a ``postgresql://``
URL (a PostgreSQL database, shared by many processes). `Runtime(store)`,
`Client(store=...)`, ``entrypoint(checkpointer=...)`` and the CLI's
``--store`` all go through `open_store`; without one, `default_store` reads
``PERDURE_STORE`` (``PERDURE_PATH`` is its older alias), else ``./.perdure``.

`store_key` is the one place that decides "is this the same store?": a second
`Runtime` on a store is refused by it, sync callers find the runtime open on
their store by it, and the background runtimes are keyed by it.
"""

from __future__ import annotations

import os
from typing import Any, TypeAlias

from perdure.eventlog import Durability, EventLog, is_lmdb_log, is_postgres_url

DEFAULT_PATH = "./.perdure"
STORE_ENV = "PERDURE_STORE"
PATH_ENV = "PERDURE_PATH"


def default_store() -> str:
    """``PERDURE_STORE``, else ``PERDURE_PATH``, else ``./.perdure``."""
    return os.environ.get(STORE_ENV) or os.environ.get(PATH_ENV) or DEFAULT_PATH


def store_spec(spec: str | os.PathLike[str] | None) -> str:
    """The spec as a string (the default store for None); a bad type is a `TypeError`."""
    if spec is None:
        return default_store()
    if not isinstance(spec, str | os.PathLike):
        raise TypeError(
            f"a store is a folder path or a postgresql:// URL, got {type(spec).__name__} {spec!r}"
        )
    text = os.fspath(spec)
    if not text:
        raise ValueError("a store is a folder path or a postgresql:// URL, got ''")
    return text


def is_url(spec: str) -> bool:
    """True when `spec` names a PostgreSQL store."""
    return is_postgres_url(spec)


StoreKey: TypeAlias = tuple[str, Any]


def store_key(
    *, log: EventLog | None = None, path: str | os.PathLike[str] | None = None
) -> StoreKey:
    """Which store a runtime or a caller means: the one place that decides "same store".

    The store is the real path of `path` (default: `default_store`) or of an
    `LmdbEventLog`'s directory, so ``./.perdure``, an absolute spelling, a
    symlink to it and ``LmdbEventLog("./.perdure")`` are one store; a
    PostgreSQL store is the URL it was given (a `PostgresEventLog` the URL it
    was opened on); any other log object is its own store (compared by identity).
    """
    if is_lmdb_log(log):
        return ("path", os.path.realpath(log.path))
    if log is not None:
        dsn = getattr(log, "dsn", None)  # a PostgresEventLog is the store its URL names
        return ("path", _spec_key(dsn)) if isinstance(dsn, str) else ("log", id(log))
    return ("path", _spec_key(os.fspath(path) if path is not None else default_store()))


def same_store(a: str | os.PathLike[str] | EventLog, b: str | os.PathLike[str] | EventLog) -> bool:
    """True when `a` and `b` (store specs or log objects) name the same store (see `store_key`)."""

    def key(x: str | os.PathLike[str] | EventLog) -> StoreKey:
        return store_key(path=x) if isinstance(x, str | os.PathLike) else store_key(log=x)

    return key(a) == key(b)


def _spec_key(spec: str) -> str:
    """What two specs of the same store have in common (the URL, or the resolved folder)."""
    return spec if is_postgres_url(spec) else os.path.realpath(spec)


def store_label(spec: str) -> str:
    """The store for messages: the absolute folder, or the URL without its password."""
    if is_postgres_url(spec):
        from perdure.eventlog import redact

        return redact(spec)
    return os.path.abspath(spec)


def open_store(
    spec: str | os.PathLike[str] | None = None,
    *,
    durability: Durability = "fsync",
    read_only: bool = False,
    lease_ttl: float | None = None,
) -> EventLog:
    """The event log a store spec names: `PostgresEventLog` for a ``postgresql://`` URL,
    `LmdbEventLog` for a folder path (None: `default_store`).

    `durability` is the LMDB store's choice; a PostgreSQL store is as durable as its
    server makes a commit (``"process"`` is refused there rather than ignored).
    `lease_ttl` (seconds, default 10) is how long a PostgreSQL store's run leases last
    without renewal; an LMDB store has one writing process and no leases.
    """
    text = store_spec(spec)
    if is_postgres_url(text):
        if durability != "fsync":
            raise ValueError(
                f"durability={durability!r} applies to LMDB stores; a PostgreSQL store's "
                "commits are as durable as the server's settings (synchronous_commit) make them"
            )
        from perdure.eventlog import PostgresEventLog

        if lease_ttl is None:
            return PostgresEventLog(text, read_only=read_only)
        return PostgresEventLog(text, read_only=read_only, lease_ttl=lease_ttl)
    from perdure.eventlog import LmdbEventLog

    return LmdbEventLog(text, durability=durability, read_only=read_only)
