"""The gateway's HTTP API against a live `perdure serve`: every route, auth, CSRF, paging, SSE."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from typing import Any

import httpx2
import pytest

from .conftest import APP, TOKEN, WRITE, Gateway


def ids(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def error_of(response: httpx2.Response) -> dict[str, Any]:
    body = response.json()
    assert "error" in body, body
    return dict(body["error"])


# -- starting and reading runs -------------------------------------------------------------------


def test_openapi_document_names_every_api_route(gateway: Gateway) -> None:
    with gateway.http() as http:
        doc = http.get("/api/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    assert set(doc["paths"]) == {
        "/api/runs",
        "/api/runs/{run_id}",
        "/api/runs/{run_id}/events",
        "/api/runs/{run_id}/outcome",
        "/api/runs/{run_id}/stream",
        "/api/runs/{run_id}/resume",
        "/api/runs/{run_id}/cancel",
        "/api/runs/{run_id}/continue",
        "/api/runs/{run_id}/replay",
        "/api/runs/{run_id}/messages",
        "/api/runs/{run_id}/values/{key}",
        "/api/stats",
        "/api/stats/history",
        "/api/targets",
        "/api/health",
        "/api/login",
        "/api/logout",
    }


def test_run_with_wait_answers_the_outcome_and_without_it_the_run_id(gateway: Gateway) -> None:
    with gateway.http() as http:
        done = http.post(
            "/api/runs", json={"target": "gw_add", "input": {"a": 2, "b": 3}, "wait": True}
        )
        assert done.status_code == 200
        assert done.json()["status"] == "completed" and done.json()["result"] == 5
        started = http.post("/api/runs", json={"target": "gw_add", "input": {"a": 1, "b": 1}})
        assert started.status_code == 202
        run_id = started.json()["run_id"]
        outcome = http.get(f"/api/runs/{run_id}/outcome", params={"timeout": 10}).json()
        assert outcome == {**outcome, "status": "completed", "result": 2}
        info = http.get(f"/api/runs/{run_id}").json()
        assert info["status"] == "completed" and info["input"] == {"a": 1, "b": 1}


def test_idempotency_key_returns_the_first_run_and_refuses_another_input(gateway: Gateway) -> None:
    key = ids("key")
    with gateway.http() as http:
        body = {"target": "gw_add", "input": {"a": 4, "b": 4}, "idempotency_key": key, "wait": True}
        first = http.post("/api/runs", json=body).json()
        again = http.post("/api/runs", json=body).json()
        assert again["run_id"] == first["run_id"] and again["result"] == 8
        other = http.post("/api/runs", json={**body, "input": {"a": 5, "b": 4}})
    assert other.status_code == 409
    assert error_of(other)["type"] == "IdempotencyConflictError"
    assert error_of(other)["fields"]["run_id"] == first["run_id"]


@pytest.mark.parametrize(
    ("body", "status", "kind"),
    [
        ({"target": "gw_nope"}, 404, "UnknownTargetError"),
        ({"target": "os:system", "input": {"command": "true"}}, 404, "UnknownTargetError"),
        ({"target": f"{APP}:gw_add", "input": {"a": 1, "b": 2}}, 404, "UnknownTargetError"),
        ({"target": "gw_add", "input": {"a": 1}}, 422, "InvalidArgumentsError"),
        ({"target": 42}, 400, "BadRequest"),
        ({"target": "gw_add", "input": {"a": 1, "b": 2}, "timeout": -1}, 400, "BadRequest"),
        ({"target": "gw_add", "input": {"a": 1, "b": 2}, "run_id": ""}, 400, "InvalidIdError"),
    ],
)
def test_bad_starts_are_refused_with_the_embedded_error(
    gateway: Gateway, body: dict[str, Any], status: int, kind: str
) -> None:
    with gateway.http() as http:
        response = http.post("/api/runs", json=body)
    assert response.status_code == status, response.text
    assert error_of(response)["type"] == kind


def test_a_request_names_targets_and_never_code_to_import(gateway: Gateway) -> None:
    with gateway.http() as http:
        names = [t["name"] for t in http.get("/api/targets").json()["targets"]]
    assert set(names) >= {"gw_add", "gw_review", "gw_sleepy"}
    assert not any(":" in name or "/" in name for name in names)


def test_body_that_is_not_a_json_object_is_refused(gateway: Gateway) -> None:
    with gateway.http() as http:
        for raw in (b"[1, 2]", b"{not json", b'{"target": NaN}'):
            response = http.post(
                "/api/runs", content=raw, headers={"Content-Type": "application/json"}
            )
            assert response.status_code == 400, raw


def test_an_oversized_body_is_refused_with_413(gateway: Gateway) -> None:
    big = json.dumps({"target": "gw_echo", "input": {"text": "x" * (2 * 1024 * 1024)}})
    with gateway.http() as http:
        response = http.post("/api/runs", content=big, headers={"Content-Type": "application/json"})
        assert response.status_code == 413
        assert error_of(response)["type"] == "PayloadTooLarge"

        def chunks() -> Any:  # no Content-Length: counted while it is read
            for _ in range(40):
                yield b" " * 65536

        response = http.post("/api/runs", content=chunks())
        assert response.status_code == 413


def test_unknown_run_is_404_on_every_run_route(gateway: Gateway) -> None:
    with gateway.http() as http:
        for method, path in [
            ("GET", "/api/runs/no-such-run"),
            ("GET", "/api/runs/no-such-run/events"),
            ("GET", "/api/runs/no-such-run/outcome"),
            ("GET", "/api/runs/no-such-run/stream"),
            ("POST", "/api/runs/no-such-run/resume"),
            ("POST", "/api/runs/no-such-run/cancel"),
            ("POST", "/api/runs/no-such-run/continue"),
            ("POST", "/api/runs/no-such-run/replay"),
        ]:
            body = {"value": 1} if path.endswith("resume") else {}
            response = http.request(method, path, json=body if method == "POST" else None)
            assert response.status_code == 404, (path, response.text)
            assert error_of(response)["type"] == "RunNotFoundError"
            assert error_of(response)["fields"]["run_id"] == "no-such-run"


# -- paging --------------------------------------------------------------------------------------


def test_run_list_pages_newest_first_with_a_cursor(gateway: Gateway) -> None:
    tag = ids("page")
    with gateway.http() as http:
        made = []
        for i in range(7):
            run_id = f"{tag}-{i}"
            http.post(
                "/api/runs",
                json={
                    "target": "gw_add",
                    "input": {"a": i, "b": 0},
                    "run_id": run_id,
                    "wait": True,
                },
            )
            made.append(run_id)
        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            params = {"q": tag, "limit": 3, **({"cursor": cursor} if cursor else {})}
            page = http.get("/api/runs", params=params).json()
            pages += 1
            seen += [run["run_id"] for run in page["runs"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert pages == 3
        assert seen == list(reversed(made))
        only = http.get("/api/runs", params={"q": tag, "status": "completed", "target": "gw_add"})
        assert len(only.json()["runs"]) == 7
        assert http.get("/api/runs", params={"q": tag, "status": "failed"}).json()["runs"] == []
        assert http.get("/api/runs", params={"target": "gw_nope"}).json()["runs"] == []


@pytest.mark.parametrize(
    "params",
    [{"limit": "0"}, {"limit": "501"}, {"limit": "x"}, {"cursor": "nonsense"}, {"status": "done"}],
)
def test_run_list_refuses_bad_paging_arguments(gateway: Gateway, params: dict[str, str]) -> None:
    with gateway.http() as http:
        response = http.get("/api/runs", params=params)
    assert response.status_code == 400
    assert error_of(response)["type"] == "BadRequest"


def test_events_page_by_sequence_number(gateway: Gateway) -> None:
    with gateway.http() as http:
        run_id = http.post(
            "/api/runs", json={"target": "gw_flaky", "input": {"fail_times": 3}, "wait": True}
        ).json()["run_id"]
        whole = http.get(f"/api/runs/{run_id}/events").json()
        assert whole["next_from"] is None
        assert [e["seq"] for e in whole["events"]] == list(range(len(whole["events"])))
        assert whole["events"][0]["t"] == "run_started"
        paged: list[dict[str, Any]] = []
        start: int | None = 0
        while start is not None:
            page = http.get(f"/api/runs/{run_id}/events", params={"from": start, "limit": 2}).json()
            paged += page["events"]
            start = page["next_from"]
        assert paged == whole["events"]
        assert http.get(f"/api/runs/{run_id}/events", params={"limit": 0}).status_code == 400


# -- steering runs -------------------------------------------------------------------------------


def test_resume_answers_an_interrupt_and_replay_checks_the_run(gateway: Gateway) -> None:
    run_id = ids("review")
    with gateway.http() as http:
        paused = http.post(
            "/api/runs",
            json={"target": "gw_review", "input": "owls", "run_id": run_id, "wait": True},
        ).json()
        assert paused["status"] == "waiting"
        assert paused["interrupts"][0]["value"]["question"] == "publish?"
        shown = http.get(f"/api/runs/{run_id}").json()
        assert shown["pending_interrupts"][0]["id"] == paused["interrupts"][0]["id"]
        assert http.post(f"/api/runs/{run_id}/resume", json={}).status_code == 400
        done = http.post(f"/api/runs/{run_id}/resume", json={"value": "ship", "wait": True}).json()
        assert done["status"] == "completed"
        assert done["result"] == {"draft": "a draft about owls", "verdict": "ship"}
        verdict = http.post(f"/api/runs/{run_id}/replay").json()
        assert verdict["ok"] is True and verdict["recorded_end"] == "completed"


def test_replay_check_reports_a_divergence(gateway: Gateway) -> None:
    with gateway.http() as http:
        done = http.post(
            "/api/runs", json={"target": "gw_fickle", "input": ids("topic"), "wait": True}
        ).json()
        verdict = http.post(f"/api/runs/{done['run_id']}/replay").json()
    assert verdict["ok"] is False
    divergence = verdict["divergence"]
    assert "gw_first_way" in divergence["recorded"]
    assert "gw_second_way" in divergence["requested"]


def test_cancel_stops_a_sleeping_workflow(gateway: Gateway) -> None:
    run_id = ids("sleepy")
    with gateway.http() as http:
        http.post("/api/runs", json={"target": "gw_sleepy", "input": 3600, "run_id": run_id})
        cancelled = http.post(f"/api/runs/{run_id}/cancel", json={"reason": "test"}).json()
        assert cancelled == {"run_id": run_id, "status": "cancelled"}
        outcome = http.get(f"/api/runs/{run_id}/outcome").json()
    assert outcome["status"] == "cancelled" and outcome["reason"] == "test"


def test_continue_reopens_a_failed_run(gateway: Gateway) -> None:
    with gateway.http() as http:
        failed = http.post("/api/runs", json={"target": "gw_broken", "wait": True}).json()
        assert failed["status"] == "failed" and failed["error_type"] == "KeyError"
        assert "KeyError" in failed["traceback"]
        run_id = failed["run_id"]
        events_before = http.get(f"/api/runs/{run_id}").json()["events"]
        assert http.post(f"/api/runs/{run_id}/continue").status_code == 200
        again = http.get(f"/api/runs/{run_id}/outcome", params={"timeout": 10}).json()
        assert again["status"] == "failed"
        assert http.get(f"/api/runs/{run_id}").json()["events"] > events_before


def test_stats_count_runs_by_status(gateway: Gateway) -> None:
    with gateway.http() as http:
        http.post("/api/runs", json={"target": "gw_add", "input": {"a": 0, "b": 0}, "wait": True})
        stats = http.get("/api/stats").json()
    assert stats["runs_by_status"]["completed"] >= 1
    assert stats["runs"] == sum(stats["runs_by_status"].values())
    assert "gw_add" in stats["targets"]


def test_stats_history_counts_this_hour_and_measures_steps(gateway: Gateway) -> None:
    with gateway.http() as http:
        # (an answer is shared for 2 s per window: "before" asks for another window)
        before = http.get("/api/stats/history", params={"hours": 3}).json()
        http.post("/api/runs", json={"target": "gw_add", "input": {"a": 1, "b": 1}, "wait": True})
        http.post("/api/runs", json={"target": "gw_broken", "wait": True})
        after = http.get("/api/stats/history", params={"hours": 2}).json()
        assert http.get("/api/stats/history", params={"hours": 0}).status_code == 400
        assert http.get("/api/stats/history", params={"hours": 169}).status_code == 400
    assert after["counted_from"] == "counters"
    assert [len(d["runs_by_hour"]) for d in (before, after)] == [3, 2]
    now, then = after["runs_by_hour"][-1]["counts"], before["runs_by_hour"][-1]["counts"]
    assert now["completed"] - then["completed"] >= 1  # other tests of the module run too
    assert now["failed"] - then["failed"] >= 1
    steps = {s["name"]: s for s in after["steps"]}
    assert steps["gw_broken"]["failed"] >= 3
    assert steps["gw_add"]["p50_ms"] >= 0


def test_text_filter_finds_a_failed_run_by_its_error_message(gateway: Gateway) -> None:
    with gateway.http() as http:
        run_id = f"err-{uuid.uuid4().hex[:8]}"
        http.post("/api/runs", json={"target": "gw_broken", "run_id": run_id, "wait": True})
        found = http.get("/api/runs", params={"q": "answer is not", "status": "failed"}).json()
        assert run_id in [r["run_id"] for r in found["runs"]]
        inside = http.get("/api/runs", params={"q": run_id[1:]}).json()  # not a word start
        assert run_id not in [r["run_id"] for r in inside["runs"]]


# -- Server-Sent Events --------------------------------------------------------------------------


def _sse(lines: Any) -> Any:
    kind, data = None, None
    for line in lines:
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            data = json.loads(line[6:])
        elif line == "" and kind is not None:
            yield kind, data
            kind, data = None, None


def test_stream_sends_past_events_then_new_ones_until_settled(gateway: Gateway) -> None:
    run_id = ids("stream")
    with gateway.http() as http:
        http.post(
            "/api/runs",
            json={"target": "gw_review", "input": "bats", "run_id": run_id, "wait": True},
        )
        with http.stream("GET", f"/api/runs/{run_id}/stream") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            messages = _sse(stream.iter_lines())
            kind, past = next(messages)
            assert kind == "events"
            assert [e["t"] for e in past][:1] == ["run_started"]
            assert next(messages) == ("status", {"status": "waiting"})
            with gateway.http() as other:
                other.post(f"/api/runs/{run_id}/resume", json={"value": "ok"})
            kinds = []
            for kind, data in messages:
                kinds.append(kind)
                if kind == "settled":
                    assert data["status"] == "completed"
                    assert data["result"]["verdict"] == "ok"
                    break
                assert kind == "events"
                assert all(e["seq"] >= len(past) for e in data)
            assert "events" in kinds


# -- security ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/api/runs",
        "/api/runs/x/cancel",
        "/api/runs/x/resume",
        "/api/runs/x/continue",
        "/api/runs/x/replay",
        "/api/login",
        "/api/logout",
    ],
)
def test_writes_without_the_csrf_header_are_refused(gateway: Gateway, path: str) -> None:
    response = httpx2.post(f"{gateway.url}{path}", json={"target": "gw_add"})
    assert response.status_code == 403
    assert "X-Perdure-Request" in error_of(response)["message"]


def test_cross_origin_writes_are_refused(gateway: Gateway) -> None:
    with gateway.http() as http:
        for origin in ("http://evil.example", "null"):
            response = http.post(
                "/api/runs",
                json={"target": "gw_add", "input": {"a": 1, "b": 1}},
                headers={"Origin": origin},
            )
            assert response.status_code == 403, origin
        same = http.post(
            "/api/runs",
            json={"target": "gw_add", "input": {"a": 1, "b": 1}},
            headers={"Origin": gateway.url},
        )
        assert same.status_code == 202


def test_without_a_token_only_loopback_host_names_are_served(gateway: Gateway) -> None:
    """DNS rebinding: a site whose name resolves to 127.0.0.1 is refused by its Host."""
    port = gateway.url.rsplit(":", 1)[1]
    for host in (f"evil.example:{port}", "evil.example", f"10.0.0.1:{port}"):
        for path in ("/api/runs", "/"):
            response = httpx2.get(f"{gateway.url}{path}", headers={"Host": host})
            assert response.status_code == 403, (host, path)
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", "localhost"):
        assert httpx2.get(f"{gateway.url}/api/runs", headers={"Host": host}).status_code == 200


def test_ui_pages_forbid_inline_scripts_and_framing(gateway: Gateway) -> None:
    page = httpx2.get(f"{gateway.url}/")
    assert page.status_code == 200
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "<script>" not in page.text  # the page's only script is /static/app.js
    assert httpx2.get(f"{gateway.url}/static/app.js").status_code == 200
    assert httpx2.get(f"{gateway.url}/static/../_app.py").status_code == 404
    assert httpx2.get(f"{gateway.url}/static/serve_app.py").status_code == 404


def test_a_token_is_required_everywhere_but_the_login_page(locked_gateway: Gateway) -> None:
    url = locked_gateway.url
    with locked_gateway.http(auth=False) as anonymous:
        assert anonymous.get("/api/runs").status_code == 401
        assert anonymous.get("/api/openapi.json").status_code == 401
        assert anonymous.get("/api/runs/x/stream").status_code == 401
        wrong = anonymous.get("/api/runs", headers={"Authorization": "Bearer not-the-token"})
        assert wrong.status_code == 401
        ui = anonymous.get("/")
        assert ui.status_code == 303 and ui.headers["location"] == "/login"
        assert anonymous.get("/runs/abc").status_code == 303
        assert anonymous.get("/login").status_code == 200
        assert anonymous.get("/static/app.js").status_code == 200
        refused = anonymous.post("/api/login", json={"token": "guess"})
        assert refused.status_code == 401
        assert "set-cookie" not in refused.headers
        login = anonymous.post("/api/login", json={"token": TOKEN})
        assert login.status_code == 200
        cookie = login.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
        assert TOKEN not in cookie
        assert anonymous.get("/api/runs").status_code == 200  # the cookie now
        assert anonymous.get("/").status_code == 200
        anonymous.post("/api/logout")
        assert anonymous.get("/api/runs").status_code == 401
    with locked_gateway.http() as bearer:
        assert bearer.get("/api/runs").status_code == 200
        done = bearer.post(
            "/api/runs", json={"target": "gw_add", "input": {"a": 1, "b": 2}, "wait": True}
        )
        assert done.json()["result"] == 3
    assert url


def test_serving_off_loopback_without_a_token_is_refused(tmp_path: Any) -> None:
    env = {k: v for k, v in __import__("os").environ.items() if k != "PERDURE_TOKEN"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "perdure",
            "serve",
            "--app",
            APP,
            "--store",
            str(tmp_path / "s"),
            "--host",
            "0.0.0.0",
            "--port",
            "1",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "token" in done.stderr and "--token-file" in done.stderr
    assert not (tmp_path / "s").exists()
    short = tmp_path / "short"
    short.write_text("abc\n")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "perdure",
            "serve",
            "--app",
            APP,
            "--store",
            str(tmp_path / "s"),
            "--token-file",
            str(short),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and "16 or more" in done.stderr


def test_a_store_held_by_another_gateway_is_reported_in_one_line(gateway: Gateway) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "perdure",
            "serve",
            "--app",
            APP,
            "--store",
            str(gateway.store),
            "--port",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "already open for writing by another process" in done.stderr
    assert "Traceback" not in done.stderr


def test_write_header_constant_matches_the_client() -> None:
    from perdure.serve._wire import CSRF_HEADER

    assert set(WRITE) == {CSRF_HEADER}


def test_import_perdure_loads_no_web_library() -> None:
    code = (
        "import sys, perdure\n"
        "from perdure import Client\n"
        "loaded = sorted(m for m in ('starlette', 'uvicorn', 'httpx2', 'perdure.serve') "
        "if m in sys.modules)\n"
        "print(loaded)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"


def test_messages_and_published_values_go_through_the_gateway(gateway: Gateway) -> None:
    from perdure import Client
    from perdure.errors import RunNotFoundError, RunSettledError

    run_id = ids("inbox")
    with gateway.http() as http:
        started = http.post(
            "/api/runs", json={"target": "gw_inbox", "input": "hello", "run_id": run_id}
        )
        assert started.status_code in (200, 201, 202), started.text
        assert http.post(f"/api/runs/{run_id}/messages", json={}).status_code == 400
    with Client(url=gateway.url) as client:
        assert client.get_event(run_id, "step", timeout=10) == "waiting for a name"
        client.send(run_id, "Ana", idempotency_key="first")
        client.send(run_id, "Bob", idempotency_key="first")  # the same key: a no-op
        assert client.result(run_id, timeout=10) == "hello, Ana"
        assert client.get_event(run_id, "step") == "greeted Ana"
        with pytest.raises(RunSettledError):
            client.send(run_id, "late")
        with pytest.raises(RunNotFoundError):
            client.send(ids("nobody"), "hi")
