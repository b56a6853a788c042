"""Snapshots of a run's folded state, kept beside the LMDB store's log (a cache, never the truth).

A snapshot is opaque bytes (the actors layer encodes its folded state) tied to
one point of one run's log: the seq it was taken at (the state covers events
``0 .. seq-1``) and the checksum of the stored record at ``seq - 1``. It lives
in ``<store>/snapshots/<digest of the run id>``, written to a temporary file
and renamed (readers see an old or a new snapshot, never half of one); it is
never flushed to disk: a snapshot lost in a crash is rebuilt from the log.

Read back, it counts only if every check holds: the file's own checksum, its
format, the run id, and the record at ``seq - 1`` still being the record it was
taken after. Anything else (missing, truncated, corrupt, written for another
log, an unknown format) and the reader folds the whole log instead: a snapshot
can make a resume faster, never different.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import struct
import zlib

#: File layout version; a file with another one is ignored (and replaced by the next write).
SNAPSHOT_FORMAT = 1
SNAPSHOT_DIR = "snapshots"
_MAGIC = b"PDSN"
#: magic, format, CRC of the record at seq - 1, seq, run id length, CRC of all that follows
_HEAD = struct.Struct(">4sBIQII")


def snapshot_file(store: str, run_id: str) -> str:
    """Where the snapshot of `run_id` lives in the store at `store`."""
    name = hashlib.blake2b(run_id.encode(), digest_size=16).hexdigest()
    return os.path.join(store, SNAPSHOT_DIR, name)


def record_crc(record: bytes) -> int:
    """The checksum field of a stored event record (see `perdure.eventlog._codec`)."""
    return int.from_bytes(record[1:5], "big")


def pack(run_id: str, seq: int, after_crc: int, payload: bytes) -> bytes:
    run = run_id.encode()
    body = run + payload
    return _HEAD.pack(_MAGIC, SNAPSHOT_FORMAT, after_crc, seq, len(run), zlib.crc32(body)) + body


def unpack(run_id: str, data: bytes) -> tuple[int, int, bytes] | None:
    """(seq, CRC of the record at seq - 1, payload) if `data` is a sound snapshot of
    `run_id`, else None."""
    if len(data) < _HEAD.size:
        return None
    magic, version, after_crc, seq, run_len, crc = _HEAD.unpack_from(data)
    if magic != _MAGIC or version != SNAPSHOT_FORMAT or seq < 1:
        return None
    body = memoryview(data)[_HEAD.size :]
    if zlib.crc32(body) != crc or bytes(body[:run_len]) != run_id.encode():
        return None
    return seq, after_crc, bytes(body[run_len:])


def load(path: str) -> bytes | None:
    """The file's bytes, or None if it is missing or unreadable (never follows a link)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as file:
            return file.read()
    except OSError:
        return None


def save(path: str, data: bytes) -> bool:
    """Write `data` to `path` through a temporary file and a rename; False if that failed
    (a snapshot is a cache: failing to write one is not an error)."""
    folder = os.path.dirname(path)
    try:
        os.mkdir(folder, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return False
    if os.path.islink(folder):
        return False
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        fd = os.open(
            tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600
        )
    except OSError:
        return False
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        return False
    return True
