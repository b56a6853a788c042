"""A FastAPI service that embeds perdure: one Runtime, opened in the app's lifespan.

Run it with `uvicorn fastapi_service:app` (one worker process on the default LMDB
store; on a PostgreSQL store, `PERDURE_STORE=postgresql://...`, any number of worker
processes and servers: `uvicorn fastapi_service:app --workers 2`), or
as a script: `python fastapi_service.py` drives it through FastAPI's
TestClient, which runs the lifespan exactly as a server does.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient

from perdure import Client, Command, Runtime, entrypoint, function, interrupt, task
from perdure.errors import InvalidResumeError, RunTimeoutError


@function(retries=3)
async def charge_invoice(invoice_id: str, cents: int) -> dict:
    return {"invoice_id": invoice_id, "charged": cents}


@task
async def draft_refund(invoice_id: str) -> str:
    return f"refund for {invoice_id}"


@entrypoint()
async def refund_flow(invoice_id: str) -> dict:
    draft = await draft_refund(invoice_id)
    decision = interrupt({"draft": draft, "ask": "approve the refund?"})
    return {"invoice_id": invoice_id, "decision": decision}


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Opened once for the life of the process: resumes what an earlier process left
    # unfinished; on shutdown, attempts still running are suspended and the store closed.
    async with Runtime() as runtime:  # the store: PERDURE_STORE, or ./.perdure
        app.state.runtime = runtime
        yield


app = FastAPI(lifespan=lifespan)


def runtime_of(request: Request) -> Runtime:
    """Handlers use the lifespan's runtime explicitly (they may run in another context)."""
    return request.app.state.runtime


@app.post("/invoices/{invoice_id}/charge")
async def charge(invoice_id: str, cents: int, request: Request) -> JSONResponse:
    rt = runtime_of(request)
    try:
        result = await rt.run(
            charge_invoice,
            {"invoice_id": invoice_id, "cents": cents},
            idempotency_key=f"charge-{invoice_id}",  # a retried request charges once
            timeout=10,
        )
    except RunTimeoutError as slow:  # the run carries on: tell the client where to look
        return JSONResponse({"accepted": slow.run_id}, status_code=202)
    return JSONResponse(result)


@app.post("/refunds/{invoice_id}")
async def start_refund(invoice_id: str, request: Request) -> dict:
    rt = runtime_of(request)
    thread = f"refund-{invoice_id}"
    await rt.start(refund_flow, invoice_id, run_id=thread)
    outcome = await rt.wait(thread, timeout=10)  # settles when it pauses on interrupt()
    return {"thread": thread, "questions": [i.value for i in outcome.interrupts]}


@app.get("/refunds/{invoice_id}")
def refund_status(invoice_id: str) -> dict:
    # A `def` handler runs on a worker thread. Its sync calls (workflow.invoke,
    # get_state, stream, Client().run) reach the lifespan's runtime on its loop.
    state = refund_flow.get_state({"configurable": {"thread_id": f"refund-{invoice_id}"}})
    return {"status": state.status, "questions": [i.value for i in state.interrupts]}


@app.post("/invoices/{invoice_id}/charge-sync")
def charge_from_sync_code(invoice_id: str, cents: int) -> dict:
    return Client().run(
        "charge_invoice",
        {"invoice_id": invoice_id, "cents": cents},
        idempotency_key=f"charge-{invoice_id}",  # the same key as the async route
    )


@app.post("/refunds/{invoice_id}/decision")
async def decide(invoice_id: str, decision: str, request: Request) -> dict:
    rt = runtime_of(request)
    thread = f"refund-{invoice_id}"
    try:
        await rt.send(thread, Command(resume=decision))
    except InvalidResumeError as exc:  # nothing pending: a double-submitted form
        raise HTTPException(status_code=409, detail=str(exc)) from exc
    outcome = await rt.wait(thread, timeout=10)
    return outcome.result


if __name__ == "__main__":
    with TestClient(app) as client:  # runs the lifespan: the runtime opens here
        first = client.post("/invoices/inv-9/charge", params={"cents": 500})
        again = client.post("/invoices/inv-9/charge", params={"cents": 500})
        assert first.json() == again.json() == {"invoice_id": "inv-9", "charged": 500}

        started = client.post("/refunds/inv-9").json()
        print(started)  # {'thread': 'refund-inv-9', 'questions': [{'draft': ..., 'ask': ...}]}
        assert started["questions"][0]["draft"] == "refund for inv-9"

        status = client.get("/refunds/inv-9").json()  # from a `def` handler
        assert status["status"] == "waiting" and status["questions"] == started["questions"]
        synced = client.post("/invoices/inv-9/charge-sync", params={"cents": 500})
        assert synced.json() == first.json()  # the same key: charged once

        done = client.post("/refunds/inv-9/decision", params={"decision": "approved"})
        print(done.json())  # {'invoice_id': 'inv-9', 'decision': 'approved'}
        assert done.json() == {"invoice_id": "inv-9", "decision": "approved"}

        twice = client.post("/refunds/inv-9/decision", params={"decision": "approved"})
        assert twice.status_code == 409
    # the lifespan has ended: the runtime is closed, the store released
