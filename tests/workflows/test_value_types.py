"""Everyday Python values (datetime, UUID, Decimal, Enum, dataclasses, attrs, pydantic).

They are stored as tagged JSON and come back as the declared type (type hints),
as plain JSON otherwise; the same in a live run and in its replay.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import decimal
import enum
import uuid
from collections.abc import Iterator
from typing import Any

import attrs
import pydantic
import pytest

from perdure import Command, Interrupt, Replayer, Runtime, entrypoint, function, interrupt, task
from perdure.errors import IdempotencyConflictError, RunFailedError
from perdure.eventlog import RunCompleted, RunStarted, TaskCompleted
from tests.support import Calls, cfg, events_of, of_type

CALLS = Calls()
WHEN = datetime.datetime(2024, 5, 17, 9, 30, 15, 123456, tzinfo=datetime.UTC)
DAY = datetime.date(2024, 5, 17)
ID = uuid.UUID("12345678-1234-5678-1234-567812345678")


@pytest.fixture(autouse=True)
def _reset() -> None:
    CALLS.counts.clear()
    CALLS.order.clear()


class Priority(enum.Enum):
    LOW = 1
    HIGH = 2


@dataclasses.dataclass(frozen=True)
class Order:
    id: uuid.UUID
    total: decimal.Decimal
    placed: datetime.datetime
    priority: Priority
    lines: tuple[str, ...] = ()


@attrs.frozen
class Receipt:
    order: Order
    paid_on: datetime.date


class Approval(pydantic.BaseModel):
    approved: bool
    at: datetime.datetime


ORDER = Order(
    id=ID, total=decimal.Decimal("19.90"), placed=WHEN, priority=Priority.HIGH, lines=("a", "b")
)


# --- workflows: typed tasks, typed input and result, interrupts ------------------------------


@task
def vt_pay(order: Order) -> Receipt:
    CALLS.hit("pay")
    assert isinstance(order, Order)  # the task gets the values the workflow passed
    return Receipt(order=order, paid_on=DAY)


@task
async def vt_apay(order: Order) -> Receipt:
    CALLS.hit("pay")
    assert isinstance(order, Order)
    return Receipt(order=order, paid_on=DAY)


@task
def vt_when_untyped():  # type: ignore[no-untyped-def]  # no annotation: plain JSON back
    CALLS.hit("when")
    return {"at": WHEN, "id": ID}


SEEN: list[Any] = []


@entrypoint()
def vt_flow(order: Order) -> Receipt:
    SEEN.append(order)
    receipt = vt_pay(order).result()
    assert isinstance(receipt, Receipt) and receipt.order == order
    SEEN.append(vt_when_untyped().result())
    answer = interrupt({"ask": "approve?", "due": receipt.paid_on, "ref": order.id})
    SEEN.append(answer)
    return receipt


@entrypoint()
async def vt_aflow(order: Order) -> Receipt:
    SEEN.append(order)
    receipt = await vt_apay(order)
    assert isinstance(receipt, Receipt) and receipt.order == order
    SEEN.append(await vt_when_untyped())
    answer = interrupt({"ask": "approve?", "due": receipt.paid_on, "ref": order.id})
    SEEN.append(answer)
    return receipt


@pytest.mark.parametrize("flow", [vt_flow, vt_aflow], ids=["sync", "async"])
async def test_a_workflow_round_trips_everyday_types(runtime: Runtime, flow: Any) -> None:
    SEEN.clear()
    config = cfg(f"vt-{flow.name}")
    paused = await flow.ainvoke(ORDER, config)
    [question] = paused["__interrupt__"]
    assert isinstance(question, Interrupt)
    # The question has no declared type: plain JSON, as a web client would get it.
    assert question.value == {"ask": "approve?", "due": "2024-05-17", "ref": str(ID)}
    assert [ORDER, {"at": WHEN.isoformat(), "id": str(ID)}] == SEEN

    approval = Approval(approved=True, at=WHEN)
    result = await flow.ainvoke(Command(resume=approval), config)
    # The declared return type comes back; the replay rebuilt the same values.
    assert result == Receipt(order=ORDER, paid_on=DAY)
    assert SEEN[2:] == [
        ORDER,  # the replayed body gets the declared input type again
        {"at": WHEN.isoformat(), "id": str(ID)},  # undeclared: plain JSON, live and replayed
        {"approved": True, "at": WHEN.isoformat().replace("+00:00", "Z")},  # resume: plain
    ]
    assert CALLS["pay"] == 1 and CALLS["when"] == 1
    assert (await flow.aget_state(config)).values == {
        "order": {
            "id": str(ID),
            "total": "19.90",
            "placed": WHEN.isoformat(),
            "priority": 2,
            "lines": ["a", "b"],
        },
        "paid_on": "2024-05-17",
    }

    # The log is readable, tagged JSON.
    events = await events_of(runtime.log, config["configurable"]["thread_id"])
    [started] = of_type(events, RunStarted)
    assert isinstance(started, RunStarted)
    assert started.input["__perdure__"] == "dataclass"
    assert started.input["value"]["placed"] == {
        "__perdure__": "datetime",
        "value": WHEN.isoformat(),
    }
    assert started.input["value"]["total"] == {"__perdure__": "decimal", "value": "19.90"}
    assert started.input["value"]["priority"] == {"__perdure__": "enum", "value": 2}
    paid = [e for e in of_type(events, TaskCompleted) if e.name.endswith("pay")]
    assert isinstance(paid[0], TaskCompleted) and paid[0].result["__perdure__"] == "attrs"
    [done] = of_type(events, RunCompleted)
    assert isinstance(done, RunCompleted) and done.result["__perdure__"] == "attrs"

    # The deploy check replays it to the same end, typed values and all.
    thread = config["configurable"]["thread_id"]
    replayed = await Replayer(workflows=[flow]).areplay(thread, log=runtime.log)
    assert replayed.ok and replayed.divergence is None, replayed


def test_a_workflow_round_trips_everyday_types_through_sync_invoke() -> None:
    SEEN.clear()
    config = cfg("vt-sync-invoke")
    paused = vt_flow.invoke(ORDER, config)
    assert paused["__interrupt__"][0].value["due"] == "2024-05-17"
    assert vt_flow.invoke(Command(resume="yes"), config) == Receipt(order=ORDER, paid_on=DAY)
    chunks = list(vt_flow.stream(ORDER, cfg("vt-sync-stream"), stream_mode="updates"))
    assert chunks[0]["vt_pay"]["paid_on"] == "2024-05-17"  # a task update: plain JSON
    resumed = vt_flow.stream(Command(resume="ok"), cfg("vt-sync-stream"), stream_mode="values")
    assert list(resumed) == [Receipt(order=ORDER, paid_on=DAY)]  # the declared result type


# --- functions: typed parameters and result ------------------------------------------------------


@function(name="vt_ship")
def vt_ship(order: Order, when: datetime.date, note: Any = None) -> Receipt:
    CALLS.hit("ship")
    assert isinstance(order, Order) and isinstance(when, datetime.date)
    SEEN.append(note)
    return Receipt(order=order, paid_on=when)


@function(name="vt_aship")
async def vt_aship(order: Order, when: datetime.date, note: Any = None) -> Receipt:
    CALLS.hit("ship")
    assert isinstance(order, Order) and isinstance(when, datetime.date)
    SEEN.append(note)
    return Receipt(order=order, paid_on=when)


@pytest.mark.parametrize("fn", [vt_ship, vt_aship], ids=["sync", "async"])
async def test_a_function_round_trips_everyday_types(runtime: Runtime, fn: Any) -> None:
    SEEN.clear()
    inputs = {"order": ORDER, "when": DAY, "note": {"at": WHEN}}
    first = await runtime.run(fn, inputs, idempotency_key=f"ship-{fn.name}")
    assert first == Receipt(order=ORDER, paid_on=DAY)
    assert [{"at": WHEN.isoformat()}] == SEEN  # `note: Any`: plain JSON
    # The same values give the same digest: the key finds the first run.
    again = await runtime.run(fn, dict(inputs), idempotency_key=f"ship-{fn.name}")
    assert again == first and CALLS["ship"] == 1
    other = dataclasses.replace(ORDER, total=decimal.Decimal("20.00"))
    with pytest.raises(IdempotencyConflictError):
        await runtime.run(fn, {**inputs, "order": other}, idempotency_key=f"ship-{fn.name}")
    handle = await runtime.start(fn, inputs)
    assert await handle.result() == first
    # Inside a workflow, the function is a task: its declared result comes back too.
    assert await vt_calls_ship.ainvoke(None, cfg(f"vt-calls-{fn.name}")) == first


@entrypoint()
async def vt_calls_ship(_: Any) -> Receipt:
    receipt = await vt_aship(ORDER, DAY)
    assert isinstance(receipt, Receipt)
    return receipt


def test_an_interrupt_result_is_served_by_fastapi() -> None:
    """A route returning ``await wf.ainvoke(...)`` serialises the ``__interrupt__`` result."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    app = FastAPI()

    @app.post("/orders/{thread}")
    async def start(thread: str) -> Any:
        return await vt_aflow.ainvoke(ORDER, cfg(thread))

    @app.post("/sync/{thread}")
    def start_sync(thread: str) -> Any:
        return vt_flow.invoke(ORDER, cfg(thread))

    with TestClient(app) as client:
        for path in ("/orders/api-1", "/sync/api-2"):
            response = client.post(path)
            assert response.status_code == 200, response.text
            [item] = response.json()["__interrupt__"]
            assert item["value"] == {"ask": "approve?", "due": "2024-05-17", "ref": str(ID)}
            assert isinstance(item["id"], str) and item["id"]
    # pydantic serialises it as returned, too.
    adapter = pydantic.TypeAdapter(Any)
    dumped = adapter.dump_python({"__interrupt__": [Interrupt({"a": 1}, "i1")]}, mode="json")
    assert dumped == {"__interrupt__": [{"value": {"a": 1}, "id": "i1"}]}


@entrypoint()
async def vt_plain_ask(doc: str) -> Any:
    return interrupt({"approve": doc})


def test_a_plain_interrupt_result_is_served_by_fastapi() -> None:
    """The 500 of issue 12: `Interrupt` was an attrs class FastAPI could not encode."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    app = FastAPI()

    @app.post("/docs/{thread}")
    async def start(thread: str) -> Any:
        return await vt_plain_ask.ainvoke("doc-1", cfg(thread))

    with TestClient(app) as client:
        response = client.post("/docs/plain-1")
    assert response.status_code == 200, response.text
    [item] = response.json()["__interrupt__"]
    assert item["value"] == {"approve": "doc-1"} and item["id"]


@pytest.fixture(scope="module")
def gateway_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from tests.support.gateway import start_gateway, stop_gateway

    gateway = start_gateway(
        tmp_path_factory.mktemp("value-types") / "store", app="workflows.test_value_types"
    )
    yield gateway.url
    stop_gateway(gateway)


@pytest.mark.parametrize("kind", ["embedded", "remote"])
def test_client_resume_returns_the_declared_type(kind: str, request: pytest.FixtureRequest) -> None:
    from perdure import Client

    # The same calls through `Client(url=...)` and a gateway serving this module.
    client = Client() if kind == "embedded" else Client(url=request.getfixturevalue("gateway_url"))
    request.addfinalizer(client.close)
    paused = client.run("vt_flow", ORDER, run_id="vt-client")
    assert paused["__interrupt__"][0].value["ref"] == str(ID)
    assert client.resume("vt-client", "yes") == Receipt(order=ORDER, paid_on=DAY)
    assert client.run("vt_ship", {"order": ORDER, "when": DAY}) == Receipt(order=ORDER, paid_on=DAY)


# A task annotated with a class the module defines further down (postponed annotations):
# the type is resolved when first needed, not dropped.
@task
def vt_later() -> LaterThing:
    return LaterThing(when=DAY)


@entrypoint()
def vt_later_flow(_: Any) -> LaterThing:
    thing = vt_later().result()
    assert isinstance(thing, LaterThing), thing
    return thing


@dataclasses.dataclass
class LaterThing:
    when: datetime.date


async def test_a_type_defined_after_the_task_is_rebuilt(runtime: Runtime) -> None:
    assert await vt_later_flow.ainvoke(None, cfg("vt-later")) == LaterThing(when=DAY)


@task
def vt_mislabelled() -> Receipt:
    CALLS.hit("mislabelled")
    return {"nope": 1}  # type: ignore[return-value]  # not what it declares


@entrypoint()
async def vt_mislabelled_flow(_: Any) -> Any:
    return await vt_mislabelled()


async def test_a_result_that_does_not_fit_its_declared_type_fails_the_run_clearly(
    runtime: Runtime, logs: Any
) -> None:
    with pytest.raises(RunFailedError) as info:
        await asyncio.wait_for(vt_mislabelled_flow.ainvoke(None, cfg("vt-mislabelled")), 30)
    assert info.value.error_type == "SerializationError"
    assert "declared type Receipt" in info.value.error_message
    assert CALLS["mislabelled"] == 1  # recorded once; the replay would fail the same way
    events = await events_of(runtime.log, "vt-mislabelled")
    assert [e.result for e in of_type(events, TaskCompleted)] == [{"nope": 1}]
    assert logs.find("run actor crashed") == []  # the waiting code got the error, not the actor
