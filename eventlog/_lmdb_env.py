"""Opening, sharing and closing LMDB stores; short read transactions.

py-lmdb refuses to open one environment twice in a process, so every
`LmdbEventLog` on the same directory shares one `SharedEnv` (registry keyed by
the directory's device and inode, with a reference count); the writer thread
belongs to the shared environment. Across processes, a store has at most one
writer: an exclusive, non-blocking `flock` on ``perdure.lock`` in the store
directory, and another on the data file ``data.mdb`` itself (a cleaner that
deletes ``perdure.lock`` cannot delete that one without deleting the store).
Read-only opens take no lock and see the writer's commits live; only a reader
that finds acknowledged batches in the journal that LMDB lacks (after a crash,
with no writer running) takes the writer's lock, briefly, to re-apply them,
and a writer starting at that moment waits for it instead of failing.

Store files are opened without following symbolic links, and a writable open
refuses a store folder owned by another user or writable by group or others
(whoever can write there could swap a store file for a link to another file).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import lmdb

from perdure.eventlog._errors import (
    SchemaVersionError,
    StorageError,
    StoreLockedError,
    StorePathError,
)
from perdure.eventlog._lmdb_journal import JOURNAL_FILE, Journal, applied_frame, recover
from perdure.eventlog._lmdb_keys import (
    DB_NAMES,
    MAX_DBS,
    META,
    SCHEMA_KEY,
    SCHEMA_VERSION,
    SEARCH,
    Databases,
)
from perdure.eventlog._lmdb_search import backfill
from perdure.eventlog._lmdb_tickets import ResizeGuard
from perdure.eventlog._lmdb_writer import Writer
from perdure.eventlog._protocol import Durability

_T = TypeVar("_T")

LOCK_FILE = "perdure.lock"
DATA_FILE = "data.mdb"
LMDB_LOCK_FILE = "lock.mdb"
#: The files of a store; none of them may be a symbolic link.
STORE_FILES = (DATA_FILE, LMDB_LOCK_FILE, LOCK_FILE, JOURNAL_FILE)
#: Seconds a starting writer waits for a reader re-applying the journal under its lock.
LOCK_WAIT = 10.0
_READER_MARK = "reader"
#: Attempts to re-read after another process grew the map (`MapResizedError`).
_RESIZE_RETRIES = 8

_registry_lock = threading.Lock()
_open_stores: dict[tuple[int, int], SharedEnv] = {}
#: Stores inherited through fork(): kept referenced so the child never closes them.
_forked: list[SharedEnv] = []


class SharedEnv:
    """One open LMDB environment, its databases, and (if writable) its writer thread."""

    def __init__(
        self,
        path: str,
        key: tuple[int, int],
        env: lmdb.Environment,
        dbs: Databases,
        *,
        durability: Durability,
        lock: WriterLock | None,
    ) -> None:
        self.path = path
        self.key = key
        self.env = env
        self.dbs = dbs
        self.durability = durability
        self.lock = lock
        self.refs = 1
        self.forked = False
        self.guard = ResizeGuard()
        self.writer: Writer | None = None
        self.journal: Journal | None = None
        if lock is not None:
            journal = Journal(path)
            try:
                next_frame, flush_first = recover(
                    env, dbs.in_order(), dbs.meta, journal, continuing=durability == "fsync"
                )
                _index_for_search(env, dbs, path)
            except BaseException:
                journal.close()
                raise
            if durability == "fsync":
                self.journal = journal
            else:  # recovered (a crash may have left frames), but not written to
                journal.close()
            self.writer = Writer(
                env,
                dbs,
                self.guard,
                path,
                journal=self.journal,
                next_frame=next_frame,
                flush_first=flush_first,
            )
            self.writer.start()

    async def caught_up(self, *, run_id: str | None = None, key: str | None = None) -> None:
        """Wait until reads see every batch acknowledged to this process (see `Writer`)."""
        if self.writer is not None:
            await self.writer.caught_up(run_id=run_id, key=key)

    def read(self, fn: Callable[[lmdb.Transaction[bytes]], _T]) -> _T:
        """Run `fn` in a fresh read transaction, ended (and dropped) before returning."""
        for _ in range(_RESIZE_RETRIES):
            with self.guard.reading():
                try:
                    with self.env.begin(buffers=False) as txn:
                        return fn(txn)
                except lmdb.MapResizedError:
                    pass  # the writer process grew the map; adopt its size below
                except lmdb.Error as exc:
                    raise StorageError(
                        f"reading the LMDB store at {self.path} failed: {exc}"
                    ) from None
            with self.guard.resizing():
                try:
                    self.env.set_mapsize(0)
                except lmdb.Error as exc:
                    raise StorageError(f"cannot follow the growth of {self.path}: {exc}") from None
        raise StorageError(f"the LMDB store at {self.path} keeps growing; retry the read")

    def data_size(self) -> int:
        return os.stat(os.path.join(self.path, DATA_FILE)).st_size

    def copy_to(self, dest: str) -> None:
        """A consistent, compacted hot copy of the store into `dest`, a new or empty directory."""
        if os.path.exists(dest) and (not os.path.isdir(dest) or os.listdir(dest)):
            raise StorePathError(
                f"the backup destination {dest} must be a new or empty directory", path=dest
            )
        try:
            os.makedirs(dest, mode=0o700, exist_ok=True)
            os.chmod(dest, 0o700)
            with self.guard.reading():
                self.env.copy(dest, compact=True)
            os.chmod(os.path.join(dest, DATA_FILE), 0o600)
        except (OSError, lmdb.Error) as exc:
            raise StorageError(f"copying the store at {self.path} to {dest} failed: {exc}") from exc

    def shutdown(self) -> None:
        """Stop the writer (after it commits what is queued), close the env, drop the lock."""
        if self.writer is not None:
            self.writer.stop()
        if self.journal is not None:
            with contextlib.suppress(lmdb.Error):
                self.env.sync(True)  # LMDB alone is complete and durable after a clean close
            self.journal.close()
        self.env.close()
        if self.lock is not None:
            self.lock.release()
            self.lock = None


def acquire(path: str, *, durability: Durability, read_only: bool, map_size: int) -> SharedEnv:
    """The shared environment of the store at `path`, opening it if this process has not."""
    with _registry_lock:
        real = _prepare_dir(path, create=not read_only)
        st = os.stat(real)
        key = (st.st_dev, st.st_ino)
        shared = _open_stores.get(key)
        if shared is not None:
            if not read_only and shared.writer is None:
                raise StorageError(
                    f"the store at {path} is already open read-only in this process; close "
                    "those read-only logs before opening it for writing"
                )
            if not read_only and shared.durability != durability:
                raise ValueError(
                    f"the store at {path} is already open in this process with "
                    f"durability={shared.durability!r}; open it with the same durability"
                )
            shared.refs += 1
            return shared
        shared = _open(real, key, durability=durability, read_only=read_only, map_size=map_size)
        _open_stores[key] = shared
        return shared


def release(shared: SharedEnv) -> None:
    """Drop one reference; the last one shuts the environment down."""
    with _registry_lock:
        if shared.forked:
            return
        shared.refs -= 1
        if shared.refs > 0:
            return
        _open_stores.pop(shared.key, None)
        shared.shutdown()


def _prepare_dir(path: str, *, create: bool) -> str:
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        st = None
    except PermissionError:
        raise _denied(path) from None
    except OSError as exc:
        raise StorePathError(
            f"cannot reach the store path {path}: {exc.strerror or exc}", path=path
        ) from exc
    if st is not None and not stat.S_ISDIR(st.st_mode):
        raise StorePathError(
            f"the store path {path} is a file, not a directory; pass a directory path "
            "(perdure creates it and keeps its files inside)",
            path=path,
        )
    if st is None:
        if not create:
            raise StorePathError(
                f"there is no store at {path}; a read-only open needs an existing store "
                "(open it once for writing to create it)",
                path=path,
            )
        try:
            os.makedirs(path, mode=0o700, exist_ok=True)
            os.chmod(path, 0o700)  # makedirs' mode is filtered by the umask
        except OSError as exc:
            raise StorePathError(
                f"cannot create the store directory {path}: {exc.strerror or exc}; "
                "choose a writable location",
                path=path,
            ) from exc
    if create:
        _check_owner(path)
    if create and not os.access(path, os.W_OK | os.X_OK):
        raise StorePathError(
            f"the store directory {path} is not writable by this user; fix its permissions "
            "or choose another path",
            path=path,
        )
    _refuse_links(path)
    if not create:
        try:
            os.lstat(os.path.join(path, DATA_FILE))
        except FileNotFoundError:
            raise StorePathError(
                f"{path} holds no perdure store (no {DATA_FILE}); open it once for writing to "
                "create one",
                path=path,
            ) from None
        except PermissionError:
            raise _denied(path) from None
    return os.path.realpath(path)


def _denied(path: str) -> StorePathError:
    return StorePathError(
        f"permission denied: this user ({_user()}) cannot enter the store directory {path} "
        "(or a directory above it); run as the store's owner or fix its permissions",
        path=path,
    )


def _user() -> str:
    return f"uid {os.geteuid()}"


def _check_owner(path: str) -> None:
    """Refuse to write in a folder another user owns or that group or others can write."""
    st = os.stat(path)
    if st.st_uid != os.geteuid():
        raise StorePathError(
            f"the store directory {path} belongs to another user (uid {st.st_uid}, this is "
            f"{_user()}); perdure writes only to stores of its own user: run as that user, "
            "or open the store with read_only=True",
            path=path,
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise StorePathError(
            f"the store directory {path} is writable by group or others (mode "
            f"{stat.S_IMODE(st.st_mode):o}): they could replace its files; "
            f"make it private first (chmod go-w {path})",
            path=path,
        )


def _refuse_links(path: str) -> None:
    for name in STORE_FILES:
        target = os.path.join(path, name)
        try:
            st = os.lstat(target)
        except FileNotFoundError:
            continue
        except PermissionError:
            raise _denied(path) from None
        if stat.S_ISLNK(st.st_mode):
            raise StorePathError(
                f"{target} is a symbolic link; perdure does not follow links to store files "
                "(writing through it would overwrite another file). Replace it with the "
                "real file",
                path=path,
            )


class WriterLock:
    """The writer's locks on a store: ``perdure.lock`` and the data file (see module doc)."""

    def __init__(self, fds: list[int]) -> None:
        self.fds = fds

    def release(self) -> None:
        """Close the descriptors (which releases the flocks)."""
        fds, self.fds = self.fds, []
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)


def _lock(path: str, *, reader: bool = False) -> WriterLock:
    """Take the writer's locks; `StoreLockedError` if another process holds them.

    A writer waits (up to `LOCK_WAIT` seconds) while the holder is a reader
    re-applying the journal; a reader never waits.
    """
    lock_path = os.path.join(path, LOCK_FILE)
    fds: list[int] = []
    try:
        fd = _open_nofollow(lock_path, path)
        fds.append(fd)
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
                if reader or not _may_wait(holder) or time.monotonic() >= deadline:
                    raise _locked(path, holder) from None
                time.sleep(0.002)
        data_fd = _open_nofollow(os.path.join(path, DATA_FILE), path)
        fds.append(data_fd)
        try:
            fcntl.flock(data_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _locked(path, "") from None
        os.ftruncate(fd, 0)
        mark = f"{_READER_MARK} {os.getpid()}" if reader else str(os.getpid())
        os.pwrite(fd, f"{mark}\n".encode(), 0)
    except BaseException:
        WriterLock(fds).release()
        raise
    return WriterLock(fds)


def _open_nofollow(file: str, path: str) -> int:
    try:
        return os.open(file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise StorePathError(
                f"{file} is a symbolic link; perdure does not follow links to store files",
                path=path,
            ) from None
        if exc.errno == errno.EACCES:
            raise _denied(path) from None
        raise StorePathError(f"cannot open {file}: {exc.strerror or exc}", path=path) from exc


def _may_wait(holder: str) -> bool:
    """Whether a writer should wait for the lock's holder: a reader re-applying the journal,
    or a holder that has not written its pid yet (the file still names a dead process)."""
    if holder.startswith(_READER_MARK) or not holder:
        return True
    if not holder.isdigit():
        return False
    try:
        os.kill(int(holder), 0)
    except ProcessLookupError:
        return True  # the named writer is gone; the holder is someone else, just starting
    except OSError:
        return False  # alive (another user's process)
    return False


def _locked(path: str, holder: str) -> StoreLockedError:
    who = f" (pid {holder})" if holder.isdigit() else ""
    return StoreLockedError(
        f"the store at {path} is already open for writing by another process{who}; "
        "close that process's runtime first, or open this one with read_only=True",
        path=path,
    )


def _open(
    path: str, key: tuple[int, int], *, durability: Durability, read_only: bool, map_size: int
) -> SharedEnv:
    lock = None if read_only else _lock(path)
    try:
        # With fsync, acknowledged batches are made durable by the journal; LMDB
        # flushes its data pages per commit but leaves the meta page to the next
        # flush, which keeps it consistent after a power loss (`_lmdb_journal`).
        sync = durability == "fsync"
        env = _open_checked(path, map_size, read_only=read_only, sync=sync)
        try:
            env.reader_check()  # free reader slots left by dead processes (they pin pages)
            dbs = _open_databases(env, path, read_only=read_only)
            if read_only and _journal_ahead(env, dbs, path):
                # A crash left acknowledged batches in the journal only: re-apply them
                # (if no writer owns the store), then look again.
                env.close()
                _recover_unowned(path, map_size)
                env = _open_checked(path, map_size, read_only=True, sync=sync)
                dbs = _open_databases(env, path, read_only=True)
            return SharedEnv(path, key, env, dbs, durability=durability, lock=lock)
        except BaseException:
            env.close()
            raise
    except BaseException:
        if lock is not None:
            lock.release()
        raise


def _open_checked(path: str, map_size: int, *, read_only: bool, sync: bool) -> lmdb.Environment:
    try:
        env = _lmdb_open(path, map_size, read_only=read_only, create=not read_only, sync=sync)
    except lmdb.Error as exc:
        raise StorageError(f"cannot open the LMDB store at {path}: {exc}") from exc
    try:
        check_data_size(env, path)
    except BaseException:
        env.close()
        raise
    return env


def check_data_size(env: lmdb.Environment, path: str) -> None:
    """Refuse a data file shorter than the environment's last page (reading it would SIGBUS).

    LMDB reads its pages through a memory map: a page past the end of a
    truncated file kills the process with SIGBUS instead of raising.
    """
    try:
        last_page = int(env.info()["last_pgno"])
        page_size = int(env.stat()["psize"])
        size = os.stat(os.path.join(path, DATA_FILE)).st_size
    except (lmdb.Error, OSError) as exc:
        raise StorageError(f"cannot inspect the LMDB store at {path}: {exc}") from exc
    needed = (last_page + 1) * page_size
    if size < needed:
        raise StorageError(
            f"the data file {os.path.join(path, DATA_FILE)} is truncated: it holds {size} bytes "
            f"but the store's last page ends at byte {needed}. perdure refuses to read it "
            "(reading a missing page would crash the process). Restore a backup; "
            "`perdure store salvage` exports the runs that can still be read"
        )


def _lmdb_open(
    path: str, map_size: int, *, read_only: bool, create: bool, sync: bool
) -> lmdb.Environment:
    """LMDB with perdure's settings (see `_open` for `sync`; `metasync` is always off)."""
    return lmdb.open(
        path,
        map_size=map_size,
        subdir=True,
        readonly=read_only,
        create=create,
        sync=sync,
        metasync=False,
        writemap=False,  # a full disk under writemap kills the process with SIGBUS
        mode=0o600,
        max_dbs=MAX_DBS,
        lock=True,
    )


def _journal_ahead(env: lmdb.Environment, dbs: Databases, path: str) -> bool:
    """Whether the journal holds frames LMDB lacks (read without any lock).

    After a clean close (or while a writer runs and LMDB has caught up) it holds
    none, and a reader opens without touching the writer's lock.
    """
    if not os.path.exists(os.path.join(path, JOURNAL_FILE)):
        return False
    with env.begin() as txn:
        applied = applied_frame(txn, dbs.meta)
    try:
        journal = Journal(path, read_only=True)
    except StorageError:
        return True  # unreadable (or caught mid-write): let the recovery decide, under the lock
    try:
        return any(number > applied for number, _ in journal.frames())
    except OSError:
        return True
    finally:
        journal.close()


def _recover_unowned(path: str, map_size: int) -> None:
    """For a read-only open: re-apply the journal's tail if no process owns the store.

    A writer killed between a batch's journal flush and its LMDB commit leaves
    that acknowledged batch in the journal only; its next writable open puts it
    into LMDB. A reader arriving first does the same under the writer's lock
    (a writer starting meanwhile waits for it), so it sees everything that was
    acknowledged. Without the lock (a live writer, or no write permission, or a
    store of another user) the reader reads LMDB as it is, which can lack the
    batches acknowledged last before a crash.
    """
    journal_path = os.path.join(path, JOURNAL_FILE)
    if not all(
        os.access(target, os.W_OK) for target in (path, journal_path, os.path.join(path, DATA_FILE))
    ):
        return  # a reader without write access (or a read-only filesystem) reads LMDB as is
    try:
        _check_owner(path)
        lock = _lock(path, reader=True)
    except (StoreLockedError, StorePathError):
        return
    try:
        env = _open_checked(path, map_size, read_only=False, sync=True)
        try:
            dbs = _open_databases(env, path, read_only=False)
            journal = Journal(path)
            try:
                recover(env, dbs.in_order(), dbs.meta, journal)
            finally:
                journal.close()
        finally:
            env.close()
    except lmdb.ReadonlyError:
        return  # no permission to write: read what LMDB holds
    except lmdb.Error as exc:
        raise StorageError(f"cannot re-apply the journal of the store at {path}: {exc}") from exc
    finally:
        lock.release()


def _index_for_search(env: lmdb.Environment, dbs: Databases, path: str) -> None:
    """Build the search database of a store written before it existed (once; see
    `perdure.eventlog._lmdb_search`). After `recover`, so re-applied frames are indexed."""
    assert dbs.search is not None
    for _ in range(8):
        try:
            with env.begin(write=True) as txn:
                backfill(txn, dbs.search, dbs.runs, dbs.events, dbs.meta)
            return
        except lmdb.MapFullError:  # a big store: grow the map (no transaction is open here)
            env.set_mapsize(env.info()["map_size"] * 2)
        except lmdb.Error as exc:
            raise StorageError(
                f"cannot build the search index of the store at {path}: {exc}"
            ) from exc
    raise StorageError(f"cannot build the search index of the store at {path}: the map is full")


def _check_schema(raw: bytes | None, path: str) -> None:
    if raw is None:
        return
    try:
        version = int(raw)
    except ValueError:
        raise StorageError(
            f"the store at {path} has an unreadable schema version {raw!r}"
        ) from None
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"the store at {path} has schema version {version}, newer than this perdure "
            f"supports ({SCHEMA_VERSION}); upgrade perdure to open it"
        )


def _open_databases(env: lmdb.Environment, path: str, *, read_only: bool) -> Databases:
    try:
        if read_only:
            meta = env.open_db(META, create=False)
            with env.begin(db=meta) as txn:
                _check_schema(txn.get(SCHEMA_KEY), path)
            handles = {}
            for name in DB_NAMES:
                try:
                    handles[name] = env.open_db(name, create=False)
                except lmdb.NotFoundError:
                    if name != SEARCH:  # a store written before it existed
                        raise
        else:
            with env.begin(write=True) as txn:
                meta = env.open_db(META, txn=txn)
                raw = txn.get(SCHEMA_KEY, db=meta)
                _check_schema(raw, path)  # before creating anything in a newer store
                current = str(SCHEMA_VERSION).encode()
                if raw != current and not txn.put(SCHEMA_KEY, current, db=meta):
                    raise StorageError(f"cannot write the schema version of {path}")
                handles = {name: env.open_db(name, txn=txn) for name in DB_NAMES}
    except lmdb.NotFoundError:
        raise StorePathError(
            f"{path} is an LMDB store but not a perdure one (a database is missing)", path=path
        ) from None
    except lmdb.Error as exc:
        raise StorageError(f"cannot open the databases of the LMDB store at {path}: {exc}") from exc
    return Databases(**{name.decode(): handle for name, handle in handles.items()})


def _after_fork_in_child() -> None:
    """An LMDB environment must not cross fork(): disown every store in the child."""
    global _registry_lock  # noqa: PLW0603 - another thread may have held it at fork()
    _registry_lock = threading.Lock()
    for shared in _open_stores.values():
        shared.forked = True
        if shared.lock is not None:
            shared.lock.release()  # the parent's flocks stay (they belong to its descriptors too)
            shared.lock = None
        _forked.append(shared)
    _open_stores.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)
