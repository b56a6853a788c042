"""Regenerate the web UI's screenshots in docs/assets/ (``python -m tests.serve.screenshots``).

Starts `perdure serve` on a fresh temporary store with tests/serve/serve_app.py,
makes a few runs (one completed after retries, one waiting on an interrupt, one
failed, one sleeping, one that received a message), and photographs each page
with headless Chromium.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from .browser import chromium_path, launch
from .conftest import TOKEN, start_gateway, stop_gateway

ASSETS = Path(__file__).resolve().parents[2] / "docs" / "assets"


def main() -> int:
    path = chromium_path()
    if path is None:
        print("no chromium: apt-get install chromium", file=sys.stderr)
        return 1
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        gateway = start_gateway(Path(tmp) / "store", token=TOKEN)
        try:
            with gateway.http() as http:
                for i in range(3):
                    http.post(
                        "/api/runs",
                        json={"target": "gw_add", "input": {"a": i, "b": 2}, "wait": True},
                    )
                http.post(
                    "/api/runs",
                    json={
                        "target": "gw_flaky",
                        "input": {"fail_times": 2},
                        "run_id": "order-flaky",
                        "wait": True,
                    },
                )
                http.post(
                    "/api/runs",
                    json={"target": "gw_broken", "run_id": "order-broken", "wait": True},
                )
                http.post(
                    "/api/runs",
                    json={"target": "gw_sleepy", "input": 3600, "run_id": "nightly-sleep"},
                )
                http.post(
                    "/api/runs",
                    json={
                        "target": "gw_review",
                        "input": "the Q3 report",
                        "run_id": "review-q3",
                        "wait": True,
                    },
                )
                http.post(
                    "/api/runs",
                    json={
                        "target": "gw_review",
                        "input": "the launch post",
                        "run_id": "review-launch",
                        "wait": True,
                    },
                )
                http.post("/api/runs/review-launch/resume", json={"value": "approve", "wait": True})
                http.post(
                    "/api/runs", json={"target": "gw_inbox", "input": "hello", "run_id": "greeter"}
                )
                http.post("/api/runs/greeter/messages", json={"message": "Ada"})
                http.get("/api/runs/greeter/outcome", params={"timeout": 10})
            with sync_playwright() as playwright:
                browser = launch(playwright, path)
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                page.goto(gateway.url + "/login")
                page.screenshot(path=str(ASSETS / "serve-login.png"))
                page.fill("#token", TOKEN)
                page.click("#login button")
                page.wait_for_selector("#runs tr.run-row")
                page.screenshot(path=str(ASSETS / "serve-runs.png"))
                page.goto(gateway.url + "/runs/order-flaky")
                page.wait_for_selector("#timeline svg")
                page.click("#replay")
                page.wait_for_selector("#verdict")
                page.screenshot(path=str(ASSETS / "serve-run.png"), full_page=True)
                page.goto(gateway.url + "/runs/review-q3")
                page.wait_for_selector(".answer-form")
                page.screenshot(path=str(ASSETS / "serve-interrupt.png"))
                page.goto(gateway.url + "/runs/greeter")
                page.wait_for_selector("#timeline svg")
                page.screenshot(path=str(ASSETS / "serve-messages.png"))
                page.goto(gateway.url + "/stats")
                page.wait_for_selector("#hourly-chart rect.hour-bar")
                page.wait_for_selector("#latency-chart rect.lat-p50")
                page.screenshot(path=str(ASSETS / "serve-stats.png"), full_page=True)
                browser.close()
        finally:
            stop_gateway(gateway)
    print(f"screenshots written to {ASSETS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
