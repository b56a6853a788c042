"""The caller's config: a thread id is required, and the rest reaches the body's `config`.

Without a thread id a run would be an orphan (nobody could resume or look at
it), so every call refuses it with the right shape. Other ``configurable``
keys, ``tags`` and ``metadata`` are recorded with the invocation and given to
the body, the same after a resume, a rebuild and in the Replayer.
"""

from __future__ import annotations

from typing import Any

import pytest

from perdure import (
    Command,
    MemoryEventLog,
    Replayer,
    Runtime,
    SerializationError,
    entrypoint,
    interrupt,
    task,
)
from perdure.testing import MockClock
from tests.support import cfg

LOG = MemoryEventLog()
SEEN: list[dict[str, Any]] = []


@task
def conf_step(x: str) -> str:
    return x.upper()


@entrypoint(checkpointer=LOG, name="conf_flow")
def conf_flow(text: str, *, config: dict[str, Any]) -> dict[str, Any]:
    SEEN.append(config)
    step = conf_step(text).result()
    answer = interrupt({"ask": step, "user": config["configurable"].get("user_id")})
    return {"answer": answer, "config": config}


@entrypoint(checkpointer=LOG, name="conf_plain")
def conf_plain(text: str) -> str:
    return text


def test_invoke_without_a_thread_id_is_refused_with_the_config_shape() -> None:
    for bad in (None, {}, {"configurable": {}}, {"configurable": {"user_id": "u"}}):
        with pytest.raises(
            ValueError, match=r'config=\{"configurable": \{"thread_id": "\.\.\."\}\}'
        ):
            conf_plain.invoke("x", bad)
    with pytest.raises(ValueError, match=r"conf_plain\.invoke\(\) needs a thread id"):
        conf_plain.invoke("x")


async def test_thread_id_outside_configurable_is_caught() -> None:
    with pytest.raises(ValueError, match='thread_id goes inside "configurable"') as info:
        await conf_plain.ainvoke("x", {"thread_id": "t1"})
    assert '{"configurable": {"thread_id": \'t1\'}}' in str(info.value)
    with pytest.raises(ValueError, match='thread_id goes inside "configurable"'):
        [c async for c in conf_plain.astream("x", {"thread_id": "t1"})]
    with pytest.raises(ValueError, match="needs a thread id"):
        await conf_plain.aget_state({})
    assert await LOG.list_runs() == []  # nothing was started


def test_a_config_that_is_not_a_dict_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="config must be a dict"):
        conf_plain.invoke("x", "t1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="configurable"):
        conf_plain.invoke("x", {"configurable": "t1"})


async def test_checkpoint_id_is_refused_until_running_from_a_checkpoint_exists() -> None:
    config = {"configurable": {"thread_id": "cp-1", "checkpoint_id": "abc"}}
    with pytest.raises(ValueError, match="checkpoint_id is not supported"):
        await conf_plain.ainvoke("x", config)
    assert await LOG.get_run("cp-1") is None


async def test_configurable_keys_tags_and_metadata_reach_the_body_and_survive_resume() -> None:
    SEEN.clear()
    config = {
        "configurable": {"thread_id": "conf-1", "user_id": "u-7", "model": "small"},
        "tags": ["beta"],
        "metadata": {"source": "test"},
    }
    expected = {
        "configurable": {"user_id": "u-7", "model": "small", "thread_id": "conf-1"},
        "tags": ["beta"],
        "metadata": {"source": "test"},
    }
    async with Runtime(log=LOG, clock=MockClock(), idle_timeout=0.01) as rt:
        paused = await conf_flow.ainvoke("hi", config)
        assert paused["__interrupt__"][0].value == {"ask": "HI", "user": "u-7"}
        assert [expected] == SEEN
        # The actor is evicted meanwhile: the resumed body is rebuilt from the log and
        # gets the config recorded with the invocation (only the thread id given here).
        done = await conf_flow.ainvoke(Command(resume="ok"), cfg("conf-1"))
        assert done == {"answer": "ok", "config": expected}
        assert SEEN[-1] == expected
        # A resume passing a *different* config is refused, not silently dropped.
        await conf_flow.ainvoke("again", config)
        changed = {"configurable": {"thread_id": "conf-1", "user_id": "someone-else"}}
        with pytest.raises(ValueError, match="keeps it"):
            await conf_flow.ainvoke(Command(resume="no"), changed)
        same = await conf_flow.ainvoke(Command(resume="yes"), config)  # the same keys: fine
        assert same["answer"] == "yes"
        events = await rt.log.read("conf-1")
    # The replayer hands the body the recorded config too.
    result = await Replayer(workflows=[conf_flow]).areplay(events, raise_on_failure=True)
    assert result.ok


async def test_a_thread_without_extra_config_gets_only_its_thread_id() -> None:
    SEEN.clear()
    async with Runtime(log=LOG, clock=MockClock()):
        await conf_flow.ainvoke("x", cfg("conf-plain"))
    assert SEEN == [{"configurable": {"thread_id": "conf-plain"}}]


async def test_config_that_is_not_json_fails_before_anything_is_written() -> None:
    config = {"configurable": {"thread_id": "conf-bad", "when": object()}}
    async with Runtime(log=LOG, clock=MockClock()):
        with pytest.raises(SerializationError, match="config"):
            await conf_flow.ainvoke("x", config)
        with pytest.raises(TypeError, match="tags"):
            await conf_flow.ainvoke("x", {**cfg("conf-bad"), "tags": "beta"})
    assert await LOG.get_run("conf-bad") is None
