"""The functions seed's code (seeds/000_6f7a4c0f126aa528.txt, `agnt5` -> `perdure`), served by
a gateway for tests/serve/test_seed_remote.py.

Only the gateway imports this module (the test process never does, so the seed's target
names stay free there): its fakes count their calls in files the test reads.
"""

from __future__ import annotations

from typing import Any

from perdure import BackoffPolicy, BackoffType, FunctionContext, RetryPolicy, function
from tests.support.gateway import SharedCalls, shared_dir

calls = SharedCalls(shared_dir("seed_remote"))


async def fetch_document(url: str) -> str:
    calls.hit("fetch")
    return f"<contents of {url}>"


async def call_llm(prompt: str) -> str:
    calls.hit("llm")
    return "summary of " + prompt.splitlines()[-1]


class FakeSearchApi:
    async def search(self, query: str) -> dict[str, Any]:
        calls.hit("search")
        return {"query": query, "hits": 3}


external_api = FakeSearchApi()


# --- the seed's code, as written (import line changed) ---------------------------------------


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


@function(
    retries=RetryPolicy(max_attempts=5, initial_interval_ms=1000),
    backoff=BackoffPolicy(type=BackoffType.EXPONENTIAL, multiplier=2.0),
)
async def call_flaky_api(query: str) -> dict:  # type: ignore[type-arg]
    return await external_api.search(query)


@function()
async def charge_payment(amount: float) -> dict:  # type: ignore[type-arg]
    calls.hit("charge")
    return {"charged": amount, "charge_number": calls["charge"]}
