"""Damage a closed LMDB store on purpose (the store-safety and corruption tests)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import lmdb


def damage_row(store: Path, run_id: str, change: Callable[[bytes], bytes]) -> bytes:
    """Replace a run's runs-index row by `change(row)`; return the row as it was."""
    env = lmdb.open(str(store), max_dbs=16)
    try:
        db = env.open_db(b"runs", create=False)
        with env.begin(db=db, write=True) as txn:
            raw = txn.get(run_id.encode())
            assert raw is not None
            assert txn.put(run_id.encode(), change(bytes(raw)))
    finally:
        env.close()
    return bytes(raw)


def flip_a_digit(raw: bytes) -> bytes:
    """A damage JSON parsing cannot see: one digit of the row (its next_seq) changes."""
    where = raw.index(b'"next_seq":') + len(b'"next_seq":')
    return raw[:where] + bytes([raw[where] ^ 0x01]) + raw[where + 1 :]
