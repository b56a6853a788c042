"""Load on `perdure serve`: N concurrent HTTP clients running short runs; run list latency.

    python bench/bench_serve.py [--clients 50] [--runs 2000] [--rounds 1] [--prefill 0]

Starts `perdure serve` on 127.0.0.1 (a free port) over a fresh store, with the
test app's functions; `--prefill N` first writes N completed runs into the store
(a Runtime in this process, before the gateway opens it) so the run list is
timed on a big store. Then `--clients` async `Client(url=...)`s run `--runs`
`gw_add` calls in total through the gateway, `--rounds` times. Prints runs/s,
latency percentiles, errors, the gateway's RSS before and after each round, and
the run list's latency (first page, a filtered page, a deep page, text filters
matching no run, one run, and every run). With `--prefill`, the text filter is
also timed in this process before the gateway starts: through the store's word
index (`list_page`) and as a walk of every run (what the filter did before the
index), on the same store. Loopback only; bounded in count; stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "tests" / "serve" / "serve_app.py"
WRITE = {"X-Perdure-Request": "1"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    """The process's resident memory in MiB: all of it (``VmRSS``), or only its anonymous
    part (``RssAnon``: the heap; the rest is mostly LMDB's file pages the map has touched,
    which grow with the store and which the kernel can drop)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def prefill(store: Path, count: int) -> float:
    sys.path.insert(0, str(APP.parent))
    import logging

    import serve_app  # noqa: F401 - registers gw_add
    import structlog

    from perdure import Runtime

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    started = time.perf_counter()
    async with Runtime(store, durability="process") as rt:
        done = 0
        while done < count:
            batch = min(500, count - done)
            await asyncio.gather(*(rt.run("gw_add", {"a": done + i, "b": 1}) for i in range(batch)))
            done += batch
    return time.perf_counter() - started


async def load(url: str, clients: int, runs: int) -> tuple[list[float], int, float]:
    from perdure import Client

    latencies: list[float] = []
    errors = 0
    todo = iter(range(runs))

    async def worker() -> None:
        nonlocal errors
        async with Client(url=url) as client:
            for i in todo:
                start = time.perf_counter()
                try:
                    result = await client.arun("gw_add", {"a": i, "b": 1}, timeout=60)
                    if result != i + 1:
                        errors += 1
                except Exception:
                    errors += 1
                latencies.append(time.perf_counter() - start)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    return latencies, errors, time.perf_counter() - started


async def text_search_in_process(store: Path) -> list[tuple[str, float, float, int]]:
    """(query, ms through the index, ms walking every run, runs found) on the prefilled store."""
    from perdure import LmdbEventLog
    from perdure.eventlog.lmdb_tools import matches
    from perdure.serve._paging import list_page

    log = LmdbEventLog(store)
    try:
        runs = await log.list_runs()
        some = runs[len(runs) // 2].run_id
        rows = []
        for query in ("no-such-text", some, some.rsplit("-", 1)[-1][:4], "gw_add"):
            start = time.perf_counter()
            for _ in range(5):
                page, _ = await list_page(
                    log, status=None, target=None, text=query, limit=50, cursor=None
                )
            indexed = (time.perf_counter() - start) / 5 * 1000
            start = time.perf_counter()
            walked = [
                r
                for r in reversed(await log.list_runs())
                if matches((r.run_id, r.target, r.idempotency_key or ""), query)
            ][:50]
            scanned = (time.perf_counter() - start) * 1000
            assert [r.run_id for r in walked] == [r.run_id for r in page], query
            rows.append((query, indexed, scanned, len(page)))
        return rows
    finally:
        await log.close()


def list_latency(
    url: str, params: dict[str, str], repeats: int = 20, path: str = "/api/runs"
) -> float:
    with httpx2.Client(base_url=url, timeout=60) as http:
        http.get(path, params=params)  # warm
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            response = http.get(path, params=params)
            times.append(time.perf_counter() - start)
            assert response.status_code == 200, response.text
    return statistics.median(times) * 1000


def deep_cursor(url: str, pages: int) -> str | None:
    cursor = None
    with httpx2.Client(base_url=url, timeout=60) as http:
        for _ in range(pages):
            params = {"limit": "500", **({"cursor": cursor} if cursor else {})}
            cursor = http.get("/api/runs", params=params).json()["next_cursor"]
    return cursor


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--prefill", type=int, default=0)
    args = parser.parse_args()
    errors = 0
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        some_run = ""
        if args.prefill:
            secs = asyncio.run(prefill(store, args.prefill))
            print(f"prefilled {args.prefill} runs in {secs:.1f} s")
            print("\ntext filter in this process, first page of 50 (ms):")
            print("| query | word index | walk every run | ratio | runs on the page |")
            print("|---|---|---|---|---|")
            for query, indexed, scanned, found in asyncio.run(text_search_in_process(store)):
                some_run = some_run or (query if found == 1 else "")
                print(
                    f"| {query[:20]} | {indexed:.2f} | {scanned:.0f} | "
                    f"{scanned / indexed:.0f}x | {found} |"
                )
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if k != "PERDURE_TOKEN"}
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "perdure",
                "serve",
                "--app",
                str(APP),
                "--store",
                str(store),
                "--port",
                str(port),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    httpx2.get(f"{url}/api/health", timeout=1)
                    break
                except httpx2.TransportError:
                    time.sleep(0.1)
            print(
                "\n| round | clients | runs | errors | wall s | runs/s | p50 ms | p95 ms | "
                "p99 ms | gateway RSS MiB before → after | of it anonymous (heap) |"
            )
            print("|---|---|---|---|---|---|---|---|---|---|---|")
            for round_ in range(1, args.rounds + 1):
                rss_before = rss_mib(server.pid)
                anon_before = rss_mib(server.pid, "RssAnon")
                latencies, failed, wall = asyncio.run(load(url, args.clients, args.runs))
                errors += failed
                rss_after = rss_mib(server.pid)
                anon_after = rss_mib(server.pid, "RssAnon")
                print(
                    f"| {round_} | {args.clients} | {args.runs} | {failed} | {wall:.1f} | "
                    f"{args.runs / wall:.0f} | {pct(latencies, 0.5):.1f} | "
                    f"{pct(latencies, 0.95):.1f} | {pct(latencies, 0.99):.1f} | "
                    f"{rss_before:.0f} → {rss_after:.0f} | {anon_before:.0f} → {anon_after:.0f} |"
                )
            total = args.prefill + args.runs * args.rounds
            deep = deep_cursor(url, 4)
            print(f"\nrun list on a store of {total} runs (median of 20, ms):")
            print(f"- first page of 50: {list_latency(url, {'limit': '50'}):.1f}")
            completed = list_latency(url, {"limit": "50", "status": "completed"})
            print(f"- status=completed, 50: {completed:.1f}")
            if deep:
                print(
                    f"- page of 50 after 2,000 rows: "
                    f"{list_latency(url, {'limit': '50', 'cursor': deep}):.1f}"
                )
            for label, query in (
                ("matching no run", "no-such-text"),
                ("matching one run", some_run),
                ("matching every run", "gw_add"),
            ):
                if query:
                    took = list_latency(url, {"limit": "50", "q": query})
                    print(f"- text filter {label} ({query[:20]!r}): {took:.1f}")
            history = list_latency(url, {}, path="/api/stats/history")
            print(f"- statistics history (24 h): {history:.1f}")
        finally:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
