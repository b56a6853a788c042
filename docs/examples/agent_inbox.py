"""An agent that waits for its user's messages, driven from a FastAPI app.

Each chat is a workflow run. The app sends the user's messages into it
(`Runtime.send`, recorded before the request returns) and reads its progress
(`Runtime.get_event`, without waiting for the busy run). The agent waits for the
next message durably: with a process restart in between, it carries on where it
was, and after 15 minutes of silence (a stored timer) it ends the chat.

Run it with `uvicorn agent_inbox:app`, or as a script: `python agent_inbox.py`
drives it through FastAPI's TestClient with a mock clock, so the 15 minutes pass
at once.
"""

import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.testclient import TestClient

import perdure
from perdure import Runtime, entrypoint, task
from perdure.errors import RunBusyError, RunSettledError
from perdure.testing import MockClock

IDLE = 15 * 60  # seconds of silence that end a chat


@task
async def answer(user: str, text: str) -> str:
    """Stands in for a model call: a task, so its answer is recorded once."""
    return f"{user}, you said {text!r}"


@entrypoint(timeout=24 * 3600)  # no chat lasts more than a day
async def chat(user: str) -> dict:
    turns = 0
    perdure.set_event("progress", {"state": "waiting", "turns": turns})
    while True:
        text = await perdure.areceive(timeout=IDLE)  # None after 15 minutes of silence
        if text is None or text == "/bye":
            break
        perdure.set_event("progress", {"state": "thinking", "turns": turns})
        reply = await answer(user, text)
        turns += 1
        perdure.set_event("reply", {"turn": turns, "text": reply})
        perdure.set_event("progress", {"state": "waiting", "turns": turns})
    ended = "idle" if text is None else "bye"
    perdure.set_event("progress", {"state": "ended", "turns": turns, "why": ended})
    return {"user": user, "turns": turns, "ended": ended}


def make_app(clock: Any = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with Runtime(clock=clock) as runtime:  # the store: PERDURE_PATH, or ./.perdure
            app.state.runtime = runtime
            yield

    app = FastAPI(lifespan=lifespan)

    def runtime_of(request: Request) -> Runtime:
        return request.app.state.runtime

    @app.post("/chats/{user}")
    async def open_chat(user: str, request: Request) -> dict:
        # A thread whose chat ended gets a new one (a new invocation); RunBusyError says
        # its chat is still going on: the same one goes on.
        with contextlib.suppress(RunBusyError):
            await runtime_of(request).start(chat, user, run_id=f"chat-{user}")
        return {"chat": f"chat-{user}"}

    @app.post("/chats/{user}/messages", status_code=202)
    async def say(user: str, text: str, message_id: str, request: Request) -> dict:
        try:
            # Recorded before this returns; a retried request (same message_id) is a no-op.
            await runtime_of(request).send(f"chat-{user}", text, idempotency_key=message_id)
        except RunSettledError as exc:
            raise HTTPException(status_code=409, detail="this chat has ended") from exc
        return {"accepted": message_id}

    @app.get("/chats/{user}")
    async def progress(user: str, request: Request) -> dict:
        rt = runtime_of(request)
        run_id = f"chat-{user}"
        status = await rt.status(run_id)  # first: a settled run's events are its last ones
        return {
            "progress": await rt.get_event(run_id, "progress", timeout=5),
            "reply": await rt.get_event(run_id, "reply"),
            "status": status,
        }

    return app


app = make_app()


def wait_for(client: TestClient, user: str, check: Any) -> dict:
    for _ in range(1000):
        seen = client.get(f"/chats/{user}").json()
        if check(seen):
            return seen
        time.sleep(0.01)
    raise AssertionError(f"never got there: {seen}")


if __name__ == "__main__":
    clock = MockClock(autojump=False)  # virtual time: the 15 minutes pass at once
    with TestClient(make_app(clock)) as client:
        client.post("/chats/ana")
        client.post("/chats/ana")  # opening it again is harmless
        client.post("/chats/ana/messages", params={"text": "hello", "message_id": "m1"})
        client.post("/chats/ana/messages", params={"text": "hello", "message_id": "m1"})  # retry
        client.post("/chats/ana/messages", params={"text": "book a table", "message_id": "m2"})
        seen = wait_for(client, "ana", lambda s: s["progress"]["turns"] == 2)
        print(seen["reply"])  # {'turn': 2, 'text': "ana, you said 'book a table'"}
        assert seen["reply"] == {"turn": 2, "text": "ana, you said 'book a table'"}
        assert seen["status"] in ("waiting", "running")

        clock.advance(IDLE)  # nobody writes for 15 minutes
        seen = wait_for(client, "ana", lambda s: s["status"] == "completed")
        print(seen["progress"])  # {'state': 'ended', 'turns': 2, 'why': 'idle'}
        assert seen["progress"] == {"state": "ended", "turns": 2, "why": "idle"}
        late = client.post("/chats/ana/messages", params={"text": "hi?", "message_id": "m3"})
        assert late.status_code == 409
