"""The functions seed's calls through a gateway: `Client(url=...)` instead of `Client()`.

tests/functions/test_function_seed.py runs the seed's examples on the embedded client;
here the same code (tests/serve/seed_app.py) runs in a live `perdure serve` and the
seed's calls reach it over HTTP, with the same results, the same once-only idempotency
and the same errors. The retry examples wait real seconds between attempts (the
seed's 1 s backoff), so they run only on the embedded client, under a MockClock.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from perdure import Client
from perdure.errors import InvalidArgumentsError, UnknownTargetError
from tests.support.gateway import SharedCalls, shared_dir, start_gateway, stop_gateway

calls = SharedCalls(shared_dir("seed_remote"))  # before the gateway starts: it inherits the folder
SUMMARY = "summary of <contents of https://example.com/paper.pdf>"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    gateway = start_gateway(tmp_path_factory.mktemp("seed-remote") / "store", app="serve.seed_app")
    try:
        with Client(url=gateway.url) as made:
            yield made
    finally:
        stop_gateway(gateway)


def test_basic_call_and_the_idempotency_key(client: Client) -> None:
    before = (calls["fetch"], calls["llm"])
    # Basic call (retries on failure, but no idempotency guarantee)
    result = client.run("summarize_document", {"doc_url": "https://example.com/paper.pdf"})
    assert result == SUMMARY
    # With idempotency key (safe to retry - same key = same result)
    keyed = client.run(
        "summarize_document",
        {"doc_url": "https://example.com/paper.pdf"},
        idempotency_key="summarize-paper-abc123",
    )
    again = client.run(
        "summarize_document",
        {"doc_url": "https://example.com/paper.pdf"},
        idempotency_key="summarize-paper-abc123",
    )
    assert keyed == again == SUMMARY
    assert (calls["fetch"] - before[0], calls["llm"] - before[1]) == (2, 2)


def test_context_example_and_optional_context(client: Client) -> None:
    result = client.run("process_data", {"data": {"a": 1, "b": 2}})
    assert result["processed"] is True and result["run_id"]
    assert client.run("add", {"a": 2, "b": 3}) == 5


def test_retry_policy_example_answers_when_the_api_does(client: Client) -> None:
    assert client.run("call_flaky_api", {"query": "durable execution"}) == {
        "query": "durable execution",
        "hits": 3,
    }


def test_idempotency_example_charges_once(client: Client) -> None:
    before = calls["charge"]
    # First call executes the function
    result = client.run("charge_payment", {"amount": 99.99}, idempotency_key="order-456")
    # Retry with same key returns cached result (no duplicate charge)
    again = client.run("charge_payment", {"amount": 99.99}, idempotency_key="order-456")
    assert result == again == {"charged": 99.99, "charge_number": before + 1}
    assert calls["charge"] == before + 1


async def test_the_async_client_gives_the_same_answers(client: Client) -> None:
    assert await client.arun("add", {"a": 40, "b": 2}) == 42
    before = calls["charge"]
    first = await client.arun("charge_payment", {"amount": 5.0}, idempotency_key="order-789")
    second = await client.arun("charge_payment", {"amount": 5.0}, idempotency_key="order-789")
    assert first == second and calls["charge"] == before + 1


def test_the_same_errors_as_the_embedded_client(client: Client) -> None:
    with pytest.raises(UnknownTargetError):
        client.run("summarise_document", {"doc_url": "x"})  # a typo in the name
    with pytest.raises(InvalidArgumentsError):
        client.run("add", {"a": 2})
