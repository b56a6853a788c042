"""Every example of the functions seed (seeds/000_6f7a4c0f126aa528.txt), `agnt5` -> `perdure`.

The seed's code is kept as written; only the helpers it leaves undefined
(`fetch_document`, `call_llm`, `external_api`, `charge_payment`) are fakes here.
`Client()` uses the default store, which the autouse fixture points at a temp
folder through PERDURE_PATH. Examples whose retries would wait real seconds on
the background runtime run inside ``async with Runtime(clock=MockClock())`` on
that same default store, where ``await client.arun(...)`` uses the local runtime.
"""

from __future__ import annotations

from typing import Any

import pytest

from perdure import Runtime
from perdure.eventlog import TaskAttemptFailed
from perdure.testing import MockClock
from tests.support import Calls, of_type

# --- fakes for what the seed leaves undefined --------------------------------------------

seen = Calls()
fail_fetches = {"left": 0}  # fetch_document raises this many times before it answers


async def fetch_document(url: str) -> str:
    seen.hit("fetch")
    if fail_fetches["left"] > 0:
        fail_fetches["left"] -= 1
        raise ConnectionError(f"could not fetch {url}")
    return f"<contents of {url}>"


async def call_llm(prompt: str) -> str:
    seen.hit("llm")
    assert prompt.startswith("Summarize this:\n\n")
    return "summary of " + prompt.splitlines()[-1]


class FakeSearchApi:
    def __init__(self) -> None:
        self.failures_left = 0

    async def search(self, query: str) -> dict[str, Any]:
        seen.hit("search")
        if self.failures_left > 0:
            self.failures_left -= 1
            raise ConnectionError("429 Too Many Requests")
        return {"query": query, "hits": 3}


external_api = FakeSearchApi()
SUMMARY = "summary of <contents of https://example.com/paper.pdf>"
charges: list[float] = []


@pytest.fixture(autouse=True)
def reset_fakes() -> None:
    seen.counts.clear()
    fail_fetches["left"] = 0
    external_api.failures_left = 0
    charges.clear()


# --- the seed's code, as written (import line changed) ---------------------------------------

from perdure import FunctionContext, function  # noqa: E402


@function(retries=3, backoff="exponential")
async def summarize_document(ctx: FunctionContext, doc_url: str) -> str:
    ctx.log("Fetching document", url=doc_url)
    content = await fetch_document(doc_url)
    summary = await call_llm(f"Summarize this:\n\n{content}")
    return summary  # noqa: RET504 - the seed's code, as written


@function()
async def process_data(ctx: FunctionContext, data: dict) -> dict:  # type: ignore[type-arg]
    ctx.log("Processing", item_count=len(data))  # Structured logging
    if ctx.attempt > 0:
        ctx.log("Retry attempt", attempt=ctx.attempt)
    return {"processed": True, "run_id": ctx.run_id}


@function()
async def add(a: int, b: int) -> int:
    return a + b


from perdure import BackoffPolicy, BackoffType, RetryPolicy  # noqa: E402


@function(
    retries=RetryPolicy(max_attempts=5, initial_interval_ms=1000),
    backoff=BackoffPolicy(type=BackoffType.EXPONENTIAL, multiplier=2.0),
)
async def call_flaky_api(query: str) -> dict:  # type: ignore[type-arg]
    return await external_api.search(query)


@function()
async def charge_payment(amount: float) -> dict:  # type: ignore[type-arg]  # the seed's example name
    charges.append(amount)
    return {"charged": amount, "charge_number": len(charges)}


# --- the seed's calls -------------------------------------------------------------------------


def test_basic_call_via_the_client(logs: Any) -> None:
    from perdure import Client

    client = Client()

    # Basic call (retries on failure, but no idempotency guarantee)
    result = client.run("summarize_document", {"doc_url": "https://example.com/paper.pdf"})
    assert result == SUMMARY
    assert (seen["fetch"], seen["llm"]) == (1, 1)
    (entry,) = logs.find("Fetching document")
    assert entry["url"] == "https://example.com/paper.pdf"
    assert entry["function"] == "summarize_document"
    assert {"run_id", "attempt", "trace_id"} <= entry.keys()


def test_call_with_an_idempotency_key() -> None:
    from perdure import Client

    client = Client()

    # With idempotency key (safe to retry - same key = same result)
    result = client.run(
        "summarize_document",
        {"doc_url": "https://example.com/paper.pdf"},
        idempotency_key="summarize-paper-abc123",
    )
    again = client.run(
        "summarize_document",
        {"doc_url": "https://example.com/paper.pdf"},
        idempotency_key="summarize-paper-abc123",
    )
    assert result == again == SUMMARY
    assert (seen["fetch"], seen["llm"]) == (1, 1), "the second call ran the body again"


async def test_failures_retry_automatically_with_exponential_backoff(logs: Any) -> None:
    from perdure import Client

    fail_fetches["left"] = 2  # the LLM pipeline's document fetch fails twice, then works
    async with Runtime(clock=MockClock()) as runtime:
        result = await Client().arun(
            "summarize_document", {"doc_url": "https://example.com/paper.pdf"}
        )
        assert result == SUMMARY
        (run,) = await runtime.list_runs()
        failed = of_type(await runtime.log.read(run.run_id), TaskAttemptFailed)
    assert [f.next_retry_at - f.ts for f in failed] == [1.0, 2.0]
    assert [f.error_type for f in failed] == ["ConnectionError", "ConnectionError"]
    assert seen["fetch"] == 3
    assert [e["attempt"] for e in logs.find("Fetching document")] == [0, 1, 2]


def test_function_context_example(logs: Any) -> None:
    from perdure import Client

    result = Client().run("process_data", {"data": {"a": 1, "b": 2}})
    assert result["processed"] is True
    (entry,) = logs.find("Processing")
    assert entry["item_count"] == 2
    assert result["run_id"] == entry["run_id"]
    assert logs.find("Retry attempt") == []  # first attempt succeeded


def test_context_is_optional() -> None:
    from perdure import Client

    assert Client().run("add", {"a": 2, "b": 3}) == 5


async def test_retry_policy_example_backs_off_1_2_4_8_seconds() -> None:
    from perdure import Client

    external_api.failures_left = 4
    async with Runtime(clock=MockClock()) as runtime:
        result = await Client().arun("call_flaky_api", {"query": "durable execution"})
        (run,) = await runtime.list_runs()
        failed = of_type(await runtime.log.read(run.run_id), TaskAttemptFailed)
    assert result == {"query": "durable execution", "hits": 3}
    # The seed's table: Exponential 1s -> 2s -> 4s -> 8s.
    assert [f.next_retry_at - f.ts for f in failed] == [1.0, 2.0, 4.0, 8.0]
    assert seen["search"] == 5


@pytest.mark.parametrize(
    ("strategy", "pattern"),
    [
        ("exponential", [1.0, 2.0, 4.0, 8.0]),
        ("linear", [1.0, 2.0, 3.0, 4.0]),
        ("constant", [1.0] * 4),
    ],
)
async def test_backoff_strategy_table(strategy: str, pattern: list[float]) -> None:
    from perdure import Client

    @function(name=f"seed_table_{strategy}", retries=5, backoff=strategy)
    async def flaky(ctx: FunctionContext) -> int:
        if ctx.attempt < 4:
            raise ConnectionError("overloaded")
        return ctx.attempt

    async with Runtime(clock=MockClock()) as runtime:
        assert await Client().arun(f"seed_table_{strategy}") == 4
        (run,) = await runtime.list_runs()
        failed = of_type(await runtime.log.read(run.run_id), TaskAttemptFailed)
    assert [f.next_retry_at - f.ts for f in failed] == pattern


def test_idempotency_example_charges_once() -> None:
    from perdure import Client

    client = Client()
    # First call executes the function
    result = client.run("charge_payment", {"amount": 99.99}, idempotency_key="order-456")
    # Retry with same key returns cached result (no duplicate charge)
    again = client.run("charge_payment", {"amount": 99.99}, idempotency_key="order-456")
    assert result == again == {"charged": 99.99, "charge_number": 1}
    assert charges == [99.99]
