"""The web UI in real headless Chromium, against a live `perdure serve`.

Run list and filters, a run's page and timeline, answering an interrupt through
the form until the run completes, cancelling, the login form, statistics, and a
run whose input is ``<script>alert(1)</script>`` showing as text.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from .browser import expect, launch, require_chromium
from .conftest import TOKEN, Gateway

XSS = "<script>alert(1)</script>"
WAIT_MS = 15_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    path = require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        found = launch(playwright, path)
        yield found
        found.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    dialogs: list[str] = []

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.accept()

    opened.on("dialog", on_dialog)
    opened.dialogs = dialogs
    opened.set_default_timeout(WAIT_MS)
    yield opened
    context.close()


def tag() -> str:
    return uuid.uuid4().hex[:8]


def start(gateway: Gateway, target: str, input: Any, run_id: str, wait: bool = True) -> Any:
    with gateway.http() as http:
        response = http.post(
            "/api/runs", json={"target": target, "input": input, "run_id": run_id, "wait": wait}
        )
        assert response.status_code in (200, 202), response.text
        return response.json()


def test_run_list_filters_and_opens_a_run_with_its_timeline(gateway: Gateway, page: Any) -> None:
    t = tag()
    start(gateway, "gw_flaky", {"fail_times": 2}, f"ui-flaky-{t}")
    start(gateway, "gw_review", "voles", f"ui-review-{t}")
    page.goto(gateway.url + "/")
    page.wait_for_selector(f'tr[data-run-id="ui-flaky-{t}"]')
    page.fill("#f-text", t)
    expect(page.locator("#runs tr.run-row")).to_have_count(2)
    page.select_option("#f-status", "waiting")
    expect(page.locator("#runs tr.run-row")).to_have_count(1)
    assert page.locator("#runs tr.run-row").get_attribute("data-run-id") == f"ui-review-{t}"
    assert "status=waiting" in page.url
    page.select_option("#f-since", "3600")
    expect(page.locator("#runs tr.run-row")).to_have_count(1)
    page.select_option("#f-status", "")
    expect(page.locator("#runs tr.run-row")).to_have_count(2)
    page.click(f'tr[data-run-id="ui-flaky-{t}"] a')
    page.wait_for_selector("#timeline svg")
    assert page.text_content("#run-id") == f"ui-flaky-{t}"
    assert page.locator(".badge[data-status=completed]").count() >= 1
    # two failed attempts and the completed one are bars; the retry backoffs are dashed bars
    bars = page.locator("#timeline .tl-bar")
    assert bars.count() >= 5
    titles = [bars.nth(i).text_content() for i in range(bars.count())]
    assert any("failed: ConnectionError" in text for text in titles)
    assert any("retry timer" in text for text in titles)
    assert page.locator("#events tr[data-event=task_attempt_failed]").count() == 2
    page.click("#replay")
    page.wait_for_selector("#verdict")
    assert page.get_attribute("#verdict", "data-ok") == "true"


def test_answering_an_interrupt_through_the_form_completes_the_run(
    gateway: Gateway, page: Any
) -> None:
    run_id = f"ui-answer-{tag()}"
    start(gateway, "gw_review", "otters", run_id)
    page.goto(f"{gateway.url}/runs/{run_id}")
    page.wait_for_selector(".answer-form textarea")
    assert "a draft about otters" in page.text_content(".interrupt .question")
    page.fill(".answer-form textarea", '"ship it"')
    page.click(".answer-form button")
    page.wait_for_selector(".run-head .badge[data-status=completed]")
    assert '"verdict": "ship it"' in page.text_content("#run-result")
    assert page.locator("#interrupts").count() == 0


def test_replay_check_shows_a_divergence_side_by_side(gateway: Gateway, page: Any) -> None:
    run_id = f"ui-fickle-{tag()}"
    start(gateway, "gw_fickle", run_id, run_id)
    page.goto(f"{gateway.url}/runs/{run_id}")
    page.click("#replay")
    page.wait_for_selector("#verdict[data-ok=false]")
    sides = page.locator("#verdict .side pre")
    assert "gw_first_way" in sides.nth(0).text_content()
    assert "gw_second_way" in sides.nth(1).text_content()


def test_cancel_button_cancels_a_running_run(gateway: Gateway, page: Any) -> None:
    run_id = f"ui-cancel-{tag()}"
    start(gateway, "gw_sleepy", 3600, run_id, wait=False)
    page.goto(f"{gateway.url}/runs/{run_id}")
    page.wait_for_selector("#cancel")
    page.click("#cancel")
    page.wait_for_selector(".run-head .badge[data-status=cancelled]")
    assert page.dialogs == [f"Cancel run {run_id}?"]
    assert page.locator("#cancel").count() == 0


def test_a_run_input_with_a_script_tag_renders_as_text(gateway: Gateway, page: Any) -> None:
    run_id = f"ui-xss-{tag()}"
    start(gateway, "gw_echo", {"text": XSS}, run_id)
    for path in (f"/?q={run_id}", f"/runs/{run_id}"):
        page.goto(gateway.url + path)
        page.wait_for_selector("#run-id" if "runs/" in path else f'tr[data-run-id="{run_id}"]')
    assert XSS in page.text_content("#run-input")
    assert XSS in page.text_content("#run-result")
    assert page.locator("#main script").count() == 0
    assert page.evaluate("document.querySelectorAll('script').length") == 1  # /static/app.js
    assert page.dialogs == []  # alert(1) never ran


def test_statistics_page(gateway: Gateway, page: Any) -> None:
    start(gateway, "gw_add", {"a": 1, "b": 1}, f"ui-stats-{tag()}")
    start(gateway, "gw_broken", None, f"ui-stats-broken-{tag()}")
    page.goto(gateway.url + "/stats")
    page.wait_for_selector("#status-chart rect")
    assert "runs" in page.text_content("#stats")
    assert "gw_add" in page.text_content("main")
    # runs by status per hour: stacked bars, one per status present in this hour
    bars = page.locator("#hourly-chart rect.hour-bar")
    expect(bars.first).to_be_visible()
    titles = [bars.nth(i).text_content() for i in range(bars.count())]
    assert any(t.endswith(" completed") for t in titles), titles
    assert any(t.endswith(" failed") for t in titles), titles
    # step latency: a p50 and a p95 bar per step, with the figures written next to them
    assert page.locator("#latency-chart rect.lat-p50").count() >= 2
    assert "gw_broken" in page.text_content("#latency-chart")
    assert "attempts" in page.text_content("#latency-chart")
    page.select_option("#stats-hours", "6")
    expect(page.locator("#hourly-chart rect.hour-bar").first).to_be_visible()
    assert page.locator("#stats-hours").input_value() == "6"


def test_timeline_shows_messages_and_published_values(gateway: Gateway, page: Any) -> None:
    run_id = f"ui-inbox-{tag()}"
    start(gateway, "gw_inbox", "hello", run_id, wait=False)
    with gateway.http() as http:
        answer = http.post(f"/api/runs/{run_id}/messages", json={"message": "Ada"})
        assert answer.status_code == 202, answer.text
        assert (
            http.get(f"/api/runs/{run_id}/outcome", params={"timeout": 10}).json()["result"]
            == "hello, Ada"
        )
    page.goto(f"{gateway.url}/runs/{run_id}")
    page.wait_for_selector("#timeline svg")
    text = page.text_content("#timeline svg")
    assert "messages" in text and "published values" in text
    marks = page.locator("#timeline .tl-mark")
    titles = [marks.nth(i).text_content() for i in range(marks.count())]
    assert any(t.startswith("message on default: Ada") for t in titles), titles
    assert any("set_event step: greeted Ada" in t for t in titles), titles
    bars = page.locator("#timeline .tl-bar")
    assert any("receive(default)" in bars.nth(i).text_content() for i in range(bars.count()))


def test_login_form_lets_the_ui_in(locked_gateway: Gateway, page: Any) -> None:
    page.goto(locked_gateway.url + "/")
    page.wait_for_selector("#login")
    assert page.url.endswith("/login")
    page.fill("#token", "not-the-token")
    page.click("#login button")
    expect(page.locator("#login-error")).to_have_text("That token is not right.")
    page.fill("#token", TOKEN)
    page.click("#login button")
    page.wait_for_selector("#filters")
    cookies = page.context.cookies()
    assert [c["httpOnly"] for c in cookies if c["name"] == "perdure_session"] == [True]
    assert page.evaluate("document.cookie") == ""  # HttpOnly: scripts cannot read it
