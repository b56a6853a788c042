"""The physical limit, measured in the same run as the systems: synchronous 4 KiB writes.

``python bench/peers/disk_w.py raw --dir D --n 200``: `n` writes of one 4 KiB
page with ``O_DSYNC`` (plus ``O_DIRECT`` where the filesystem has it) from an
aligned buffer into a preallocated file on the same disk as the stores — what
one frame of perdure's journal costs, one device flush each. No durable step
can be faster than one of these. Prints one JSON line (seconds for all `n`).
"""

from __future__ import annotations

import mmap
import os
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _worker import Stopwatch, emit, parse


def raw_writes(directory: str, n: int) -> dict[str, Any]:
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "flush.bin")
    with open(path, "wb") as f:
        f.write(bytes((n + 1) * 4096))
        f.flush()
        os.fsync(f.fileno())
    flags = os.O_RDWR | os.O_DSYNC
    try:
        fd = os.open(path, flags | getattr(os, "O_DIRECT", 0))
    except OSError:
        fd = os.open(path, flags)
    buffer = mmap.mmap(-1, 4096)
    buffer.write(b"r" * 4096)
    out: dict[str, Any] = {}
    with memoryview(buffer) as page:
        os.pwrite(fd, page, n * 4096)  # warm-up
        watch = Stopwatch()
        for i in range(n):
            os.pwrite(fd, page, i * 4096)
        watch.stop(out)
    os.close(fd)
    buffer.close()
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.workload == "version":
        return emit({"version": f"Linux {os.uname().release}"})
    return emit(raw_writes(args.dir, args.n))


if __name__ == "__main__":
    raise SystemExit(main())
