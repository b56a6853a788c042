"""The journal in front of an fsync'd LMDB store: one device flush per acknowledged batch.

An fsync'd LMDB commit flushes the device twice (the data pages, then the meta
page that makes them current), and that pair is most of a durable append's
latency. With `durability="fsync"` the writer instead writes each batch's
changes as one *frame* to this preallocated file with ``O_DSYNC`` — one flush —
acknowledges the batch, and only then commits the LMDB transaction, with
``metasync`` off: LMDB flushes the data pages before writing the meta page, so
the store is always consistent, but the meta page of the newest commit is only
flushed by the next commit (or `checkpoint`). That commit's flush overlaps the
caller's next step instead of delaying its acknowledgement.

After an OS crash or power loss LMDB may therefore be a commit (or, after a
failed commit, more) behind what was acknowledged. Every LMDB transaction
records the number of the last frame it contains (`APPLIED_KEY` in ``meta``);
opening the store for writing re-applies the frames past it (`recover`).

Layout: page 0 is the journal's header (magic, format version, the current
*generation*'s random 16-byte salt, CRC32); frames start on page boundaries
from offset `PAGE`. A frame is a header (magic, salt, frame number, payload
length, CRC32 of salt, number, length and payload) and a payload of
operations, each ``db index, kind, key length, value length, key, value``
(kind 1 deletes the key). Frame numbers increase by one; a scan stops at the
first page that is not the next frame of the current generation (a torn
write, zeros, or a frame from an earlier generation).

Frames cannot be forged from data. A payload holds user data (run ids,
inputs, results), so a value can contain bytes that look like a frame header
and land on a page boundary. Every frame carries the generation's salt and
its checksum covers it; the salt is drawn from `os.urandom` each time the
journal starts over (`rewind`: at every wrap, and at a writable open unless LMDB
holds exactly the journal's chain, which an fsync'd writer then continues) and
is written nowhere but in this file, so data cannot carry a frame the
recovery accepts. Starting a new generation invalidates every older frame at
once: none of them is read again.

Before the writer wraps to the start it makes LMDB itself durable
(`checkpoint`), so no frame that LMDB might still need is overwritten. A
frame larger than the whole journal is not journaled: its batch is
committed the old way, LMDB flushing both pages before the acknowledgement.

Journals written by perdure before the salt (format 1: frames from offset 0,
magic ``PDJ1``, no header page) are read once: the frames of their chain
that LMDB lacks are re-applied (a store closed cleanly has none), without
the search for intact frames beyond the chain (which format 1 cannot tell
from data), and the journal is then rewritten in the current format.
"""

from __future__ import annotations

import errno
import mmap
import os
import struct
import zlib
from collections.abc import Iterator, Sequence

import lmdb

from perdure.eventlog._errors import StorageError

JOURNAL_FILE = "journal.wal"
#: Preallocated (zero-filled) size: overwriting written blocks needs no metadata flush.
JOURNAL_BYTES = 2 << 20
PAGE = 4096
#: Key in the ``meta`` database: the number of the last frame LMDB contains (8 bytes).
APPLIED_KEY = b"journal_applied"

#: Page 0: magic, format version, salt of the current generation, CRC32 of the three.
_FILE_HEADER = struct.Struct(">4sI16sI")
_FILE_MAGIC = b"PDJH"
_FORMAT = 2
_SALT_BYTES = 16
#: A frame's header: magic, salt, number, payload length, CRC32 (salt, number, length, payload).
_HEADER = struct.Struct(">4s16sQII")
_MAGIC = b"PDJ2"
_NUMBERS = struct.Struct(">16sQI")
#: Format 1 (before the salt): magic, number, payload length, CRC32 (number, length, payload).
_V1_HEADER = struct.Struct(">4sQII")
_V1_MAGIC = b"PDJ1"
_V1_NUMBERS = struct.Struct(">QI")
_OP = struct.Struct(">BBHI")
_DELETE = 1
_U64 = struct.Struct(">Q")

#: One change to the store: (database index in `DB_NAMES` order, key, value or None to delete).
Op = tuple[int, bytes, bytes | None]


def encode_frame(number: int, ops: Sequence[Op], salt: bytes) -> bytes:
    """One frame of the generation `salt`, padded to whole pages."""
    parts: list[bytes] = [b""]
    pack = _OP.pack
    for db, key, value in ops:
        if value is None:
            parts.append(pack(db, _DELETE, len(key), 0))
            parts.append(key)
        else:
            parts.append(pack(db, 0, len(key), len(value)))
            parts.append(key)
            parts.append(value)
    payload = b"".join(parts)
    crc = zlib.crc32(payload, zlib.crc32(_NUMBERS.pack(salt, number, len(payload))))
    size = _HEADER.size + len(payload)
    padding = -size % PAGE
    return b"".join(
        (_HEADER.pack(_MAGIC, salt, number, len(payload), crc), payload, bytes(padding))
    )


def _file_header(salt: bytes) -> bytes:
    head = _FILE_HEADER.pack(_FILE_MAGIC, _FORMAT, salt, 0)[:-4]
    return head + struct.pack(">I", zlib.crc32(head)) + bytes(PAGE - _FILE_HEADER.size)


def decode_ops(payload: bytes) -> list[Op]:
    """The operations of a frame's payload (whose CRC has been checked)."""
    ops: list[Op] = []
    view = memoryview(payload)
    offset = 0
    end = len(payload)
    while offset < end:
        db, kind, key_len, value_len = _OP.unpack_from(view, offset)
        offset += _OP.size
        key = bytes(view[offset : offset + key_len])
        offset += key_len
        if kind == _DELETE:
            ops.append((db, key, None))
        else:
            ops.append((db, key, bytes(view[offset : offset + value_len])))
            offset += value_len
    if offset != end:
        raise ValueError("a journal frame's operations overrun its payload")
    return ops


class Journal:
    """The preallocated journal file of one store, written by its writer thread only.

    Frames are written with ``O_DSYNC`` and, where the filesystem allows it,
    ``O_DIRECT`` from a page-aligned buffer: the write then goes to the device
    without a page-cache copy (measured here: 92 instead of 107 µs per frame).
    The file is opened with ``O_NOFOLLOW``: a symlink in its place is refused.

    `read_only` opens an existing journal to look at its frames (`frames`)
    without changing it; such a journal cannot be written or rewound.
    """

    def __init__(
        self, directory: str, capacity: int = JOURNAL_BYTES, *, read_only: bool = False
    ) -> None:
        self.path = os.path.join(directory, JOURNAL_FILE)
        self.capacity = capacity
        self.offset = PAGE
        self.scan_end = PAGE
        self.salt: bytes | None = None
        #: The file holds a format-1 journal (see the module docstring).
        self.legacy = False
        self._buffer: mmap.mmap | None = None
        self._view: memoryview | None = None
        self._sync_fd = -1
        flags = os.O_RDONLY if read_only else os.O_RDWR | os.O_CREAT
        try:
            existed = os.path.lexists(self.path)
            self._fd = os.open(self.path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StorageError(f"cannot open the journal {self.path}: {_reason(exc)}") from exc
        try:
            self._read_header()
            if read_only:
                return
            size = os.fstat(self._fd).st_size
            if size < capacity:
                os.pwrite(self._fd, bytes(capacity - size), size)
                os.fsync(self._fd)
            if not existed:
                _fsync_dir(directory)
            self._sync_fd = self._open_sync()
        except OSError as exc:
            os.close(self._fd)
            raise StorageError(f"cannot prepare the journal {self.path}: {exc}") from exc
        except BaseException:
            os.close(self._fd)
            raise

    def _read_header(self) -> None:
        page = os.pread(self._fd, PAGE, 0)
        if page[:4] == _V1_MAGIC:
            self.legacy = True
            self.scan_end = 0
            return
        if not page.strip(b"\0"):
            return  # new (zero-filled) or empty: no frames
        magic, version, salt, crc = _FILE_HEADER.unpack_from(page.ljust(_FILE_HEADER.size, b"\0"))
        head = page[: _FILE_HEADER.size - 4]
        if magic != _FILE_MAGIC or zlib.crc32(head) != crc:
            raise StorageError(
                f"the journal {self.path} has a damaged header (or is not a perdure journal); "
                f"keep a copy of the directory; if the store was closed cleanly, removing "
                f"{JOURNAL_FILE} opens it with nothing lost"
            )
        if version != _FORMAT:
            raise StorageError(
                f"the journal {self.path} has format {version}, which this perdure does not "
                "know (it was written by a newer perdure); upgrade perdure to open the store"
            )
        self.salt = salt

    def _open_sync(self) -> int:
        """The descriptor frames are written through: each pwrite returns once it is on disk."""
        flags = os.O_RDWR | os.O_DSYNC | os.O_CLOEXEC | os.O_NOFOLLOW
        direct = getattr(os, "O_DIRECT", 0)
        if direct:
            try:
                fd = os.open(self.path, flags | direct)
            except OSError as exc:
                if exc.errno != errno.EINVAL:  # EINVAL: this filesystem has no O_DIRECT
                    raise
            else:
                self._buffer = mmap.mmap(-1, self.capacity)  # page-aligned, as O_DIRECT needs
                self._view = memoryview(self._buffer)
                return fd
        return os.open(self.path, flags)

    def frames(self) -> Iterator[tuple[int, bytes]]:
        """(number, payload) of each valid frame of the chain, while numbers follow on.

        Afterwards `scan_end` is the offset where the chain of frames stopped.
        """
        if self.legacy:
            offset = self.scan_end = 0
        elif self.salt is None:
            return
        else:
            offset = self.scan_end = PAGE
        expected: int | None = None
        while True:
            found = self._frame_at(offset)
            if found is None or (expected is not None and found[0] != expected):
                return
            number, payload, end = found
            yield number, payload
            expected = number + 1
            offset = self.scan_end = end

    def later_frame(self, offset: int, above: int) -> int | None:
        """The number of a valid frame past `offset` numbered above `above`, if any.

        After the chain of frames ends there should be only zeros, a torn frame
        or frames of earlier generations (another salt). A valid frame of this
        generation numbered higher means a frame in between is damaged. A
        format-1 journal is not searched: its frames cannot be told from data.
        """
        if self.legacy or self.salt is None:
            return None
        end = min(self.capacity, os.fstat(self._fd).st_size)
        if end - offset < _HEADER.size:
            return None
        marker = _MAGIC + self.salt
        # Mapped, not read: each page's first bytes are compared where they lie, instead of
        # copying the rest of the file (2 MiB) at every open (~0.3 ms against 1.5-4 here).
        with mmap.mmap(self._fd, end, access=mmap.ACCESS_READ) as view:
            for start in range(offset, end - _HEADER.size + 1, PAGE):
                if view[start : start + len(marker)] != marker:  # most: zeros or payload
                    continue
                found = self._frame_at(start)
                if found is not None and found[0] > above:
                    return found[0]
        return None

    def _frame_at(self, offset: int) -> tuple[int, bytes, int] | None:
        """(number, payload, offset of the next frame) of a valid frame at `offset`."""
        if self.legacy:
            return self._v1_frame_at(offset)
        if offset + _HEADER.size > self.capacity:
            return None
        magic, salt, number, length, crc = _HEADER.unpack(os.pread(self._fd, _HEADER.size, offset))
        end = offset + _HEADER.size + length
        if magic != _MAGIC or salt != self.salt or end > self.capacity:
            return None
        payload = os.pread(self._fd, length, offset + _HEADER.size)
        if zlib.crc32(payload, zlib.crc32(_NUMBERS.pack(salt, number, length))) != crc:
            return None
        return number, payload, end + (-end % PAGE)

    def _v1_frame_at(self, offset: int) -> tuple[int, bytes, int] | None:
        if offset + _V1_HEADER.size > self.capacity:
            return None
        magic, number, length, crc = _V1_HEADER.unpack(os.pread(self._fd, _V1_HEADER.size, offset))
        end = offset + _V1_HEADER.size + length
        if magic != _V1_MAGIC or end > self.capacity:
            return None
        payload = os.pread(self._fd, length, offset + _V1_HEADER.size)
        if zlib.crc32(payload, zlib.crc32(_V1_NUMBERS.pack(number, length))) != crc:
            return None
        return number, payload, end + (-end % PAGE)

    @property
    def room(self) -> int:
        """Bytes a frame may take at most (the journal after its header page)."""
        return self.capacity - PAGE

    def fits(self, frame: bytes) -> bool:
        """Whether `frame` fits after the frames written since the last `rewind`."""
        return self.offset + len(frame) <= self.capacity

    def write(self, frame: bytes) -> None:
        """Append `frame` (whole pages); durable when this returns. Raises OSError."""
        self._write_at(frame, self.offset)
        self.offset += len(frame)

    def _write_at(self, data: bytes, offset: int) -> None:
        size = len(data)
        if self._view is not None:
            self._view[:size] = data
            refused = False
            with self._view[:size] as chunk:
                try:
                    written = os.pwrite(self._sync_fd, chunk, offset)
                except OSError as exc:
                    if exc.errno != errno.EINVAL:
                        raise
                    refused = True  # opened, but this filesystem refuses direct writes
            if refused:
                self._drop_direct()
                written = os.pwrite(self._sync_fd, data, offset)
        else:
            written = os.pwrite(self._sync_fd, data, offset)
        if written != size:
            raise OSError(f"short write to the journal ({written} of {size} bytes)")

    def _drop_direct(self) -> None:
        os.close(self._sync_fd)
        self._release_buffer()
        self._sync_fd = os.open(self.path, os.O_RDWR | os.O_DSYNC | os.O_CLOEXEC | os.O_NOFOLLOW)

    def _release_buffer(self) -> None:
        if self._view is not None:
            self._view.release()
            self._view = None
        if self._buffer is not None:
            self._buffer.close()
            self._buffer = None

    def rewind(self) -> None:
        """Start a new generation (only once LMDB holds everything durably). Raises OSError.

        A new salt goes into the header page, durably, before any frame of the
        generation is written: every frame written before is invalid from now on.
        """
        salt = os.urandom(_SALT_BYTES)
        self._write_at(_file_header(salt), 0)
        self.salt = salt
        self.legacy = False
        self.offset = self.scan_end = PAGE

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            if self._sync_fd >= 0:
                os.close(self._sync_fd)
            self._fd = self._sync_fd = -1
            self._release_buffer()


def _reason(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "it is a symbolic link (perdure opens its files only directly)"
    return str(exc.strerror or exc)


def applied_frame(txn: lmdb.Transaction[bytes], meta: lmdb._Database) -> int:
    """The number of the last frame this transaction's view of LMDB contains (0: none)."""
    raw = txn.get(APPLIED_KEY, db=meta)
    return 0 if raw is None else int(_U64.unpack(raw)[0])


def applied_value(number: int) -> bytes:
    return _U64.pack(number)


def apply_ops(
    txn: lmdb.Transaction[bytes], handles: Sequence[lmdb._Database], ops: Sequence[Op]
) -> None:
    """Redo a frame's operations in `txn` (exactly what the acknowledged batch wrote)."""
    for db, key, value in ops:
        if value is None:
            txn.delete(key, db=handles[db])
        elif not txn.put(key, value, db=handles[db]):
            raise StorageError(f"LMDB refused to store key {key!r} while re-applying the journal")


def recover(
    env: lmdb.Environment,
    handles: Sequence[lmdb._Database],
    meta: lmdb._Database,
    journal: Journal,
    *,
    continuing: bool = False,
) -> tuple[int, bool]:
    """Re-apply the frames LMDB lacks (after an OS crash or power loss): the next frame
    number, and whether LMDB is still to be flushed before that frame is written.

    Runs before the writer starts, with LMDB opened for writing. LMDB is then
    flushed completely and the journal started over (`Journal.rewind`), its frames
    being all in LMDB. With `continuing` (the writer of an fsync'd store), if LMDB
    holds exactly the journal's chain of frames (a store closed cleanly, or a crash
    after which nothing was lost), neither is done here: the writer continues that
    chain as if it had written it (the next wrap starts a new generation) and flushes
    LMDB first, in its own thread, before its first frame, so that frame never lies
    on changes LMDB has not made durable (a session with ``durability="process"``
    leaves some), while the opening process goes on: two device flushes less before
    a fresh process's first read.
    """
    with env.begin() as txn:
        applied = applied_frame(txn, meta)
    chain = list(journal.frames())
    last_valid = chain[-1][0] if chain else applied
    beyond = journal.later_frame(journal.scan_end, max(applied, last_valid))
    if beyond is not None:
        raise StorageError(
            f"the journal {journal.path} is damaged at offset {journal.scan_end}: batch "
            f"{beyond} is intact after it, so acknowledged batches in between cannot be "
            f"re-applied (the store holds batches up to {applied}). Keep a copy of the "
            f"directory; removing {JOURNAL_FILE} opens the store without those batches"
        )
    missing = [(number, payload) for number, payload in chain if number > applied]
    if missing and missing[0][0] != applied + 1:
        raise StorageError(
            f"the journal of the store at {os.path.dirname(journal.path)} continues at batch "
            f"{missing[0][0]} but the store holds batches up to {applied} only: batches in "
            "between are lost (was data.mdb replaced by an older copy? restore the matching "
            f"{JOURNAL_FILE} too, or remove {JOURNAL_FILE} to accept the loss)"
        )
    last = applied
    if missing:
        try:
            with env.begin(write=True) as txn:
                for number, payload in missing:
                    apply_ops(txn, handles, decode_ops(payload))
                    last = number
                txn.put(APPLIED_KEY, applied_value(last), db=meta)
        except (lmdb.Error, ValueError, struct.error) as exc:
            raise StorageError(
                f"re-applying the journal {journal.path} to the store failed: {exc}"
            ) from exc
    if (
        continuing
        and not missing
        and journal.salt is not None
        and not journal.legacy
        and (not chain or chain[-1][0] == applied)
    ):
        journal.offset = journal.scan_end  # the next frame follows the chain (or opens it)
        return applied + 1, True
    env.sync(True)
    try:
        journal.rewind()
    except OSError as exc:
        raise StorageError(f"cannot start the journal {journal.path} over: {exc}") from exc
    return last + 1, False


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
