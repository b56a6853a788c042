"""Bad input gets a specific exception before anything is recorded in the log."""

from __future__ import annotations

import math
from typing import Any

import pytest

from perdure import (
    DuplicateNameError,
    FunctionContext,
    InvalidArgumentsError,
    RunExistsError,
    RunFailedError,
    Runtime,
    SerializationError,
    UnknownTargetError,
    function,
)
from perdure.runtime import Registry
from perdure.testing import MemoryEventLog
from tests.support import Calls

calls = Calls()


@function(name="errs_summarize_document")
async def errs_summarize_document(ctx: FunctionContext, doc_url: str) -> str:
    calls.hit("summarize")
    return doc_url


@function(name="errs_summarize_documents")
async def errs_summarize_documents(urls: list[str]) -> int:
    return len(urls)


@function(name="errs_process")
async def errs_process(items: list[Any], *, label: str = "") -> int:
    calls.hit("process")
    return len(items)


async def assert_nothing_recorded(log: MemoryEventLog) -> None:
    assert await log.list_runs() == []
    stats = await log.statistics()
    assert (stats.events, stats.idempotency_keys) == (0, 0)


async def test_unknown_name_lists_close_matches(runtime: Runtime, memlog: MemoryEventLog) -> None:
    with pytest.raises(UnknownTargetError) as info:
        await runtime.run("errs_summarise_document", {"doc_url": "u"})
    error = info.value
    assert error.name == "errs_summarise_document"
    assert "errs_summarize_document" in error.suggestions
    assert "errs_summarize_document" in str(error)
    assert "Did you mean" in str(error)
    assert isinstance(error, LookupError)
    await assert_nothing_recorded(memlog)


async def test_unknown_name_without_close_matches(runtime: Runtime, memlog: MemoryEventLog) -> None:
    with pytest.raises(UnknownTargetError) as info:
        await runtime.start("zzzzqqqq", {})
    assert info.value.suggestions == ()
    assert "'zzzzqqqq'" in str(info.value)
    await assert_nothing_recorded(memlog)


async def test_unknown_name_with_an_idempotency_key(
    runtime: Runtime, memlog: MemoryEventLog
) -> None:
    with pytest.raises(UnknownTargetError):
        await runtime.run("errs_nope", {}, idempotency_key="k-unknown")
    await assert_nothing_recorded(memlog)


@pytest.mark.parametrize(
    ("value", "path", "type_name"),
    [
        ({"items": [1, 2, 3, {1, 2}]}, "input['items'][3]", "set"),
        ({"items": [1, 2, (3, 4)]}, "input['items'][2]", "tuple"),
        ({"items": [object()]}, "input['items'][0]", "object"),
        ({"items": [math.nan]}, "input['items'][0]", "float"),
        ({"items": [{"when": b"bytes"}]}, "input['items'][0]['when']", "bytes"),
        ({"items": [], "label": 10**30}, "input['label']", "int"),
    ],
)
async def test_non_json_input_names_the_path_of_the_bad_value(
    runtime: Runtime, memlog: MemoryEventLog, value: Any, path: str, type_name: str
) -> None:
    before = calls["process"]
    with pytest.raises(SerializationError) as info:
        await runtime.run(errs_process, value, idempotency_key="k-json")
    error = info.value
    assert error.path == path
    assert error.type_name == type_name
    assert path in str(error)
    assert "errs_process" in str(error)
    assert isinstance(error, TypeError)
    assert calls["process"] == before
    await assert_nothing_recorded(memlog)


async def test_non_string_keys_are_refused(runtime: Runtime, memlog: MemoryEventLog) -> None:
    with pytest.raises(SerializationError) as info:
        await runtime.run(errs_process, {"items": [{1: "a"}]})
    assert info.value.path == "input['items'][0][1]"
    await assert_nothing_recorded(memlog)


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ({}, ["missing", "doc_url"]),
        ({"doc_url": "u", "extra": 1}, ["extra"]),
        ({"url": "u"}, ["url"]),
        (["u"], ["dict", "list"]),
        ("u", ["dict", "str"]),
    ],
)
async def test_arguments_that_do_not_fit_the_signature(
    runtime: Runtime, memlog: MemoryEventLog, value: Any, words: list[str]
) -> None:
    before = calls["summarize"]
    with pytest.raises(InvalidArgumentsError) as info:
        await runtime.run("errs_summarize_document", value)
    error = info.value
    assert error.target == "errs_summarize_document"
    for word in words:
        assert word in str(error), str(error)
    assert "doc_url" in str(error)  # the message shows the expected parameters
    assert isinstance(error, TypeError)
    assert calls["summarize"] == before
    await assert_nothing_recorded(memlog)


async def test_keyword_only_and_defaults_are_respected(runtime: Runtime) -> None:
    assert await runtime.run(errs_process, {"items": [1, 2]}) == 2
    assert await runtime.run(errs_process, {"items": [1], "label": "x"}) == 1


async def test_none_input_means_no_arguments(runtime: Runtime, memlog: MemoryEventLog) -> None:
    @function(name="errs_no_args")
    async def no_args() -> str:
        return "fine"

    assert await runtime.run(no_args) == "fine"
    assert await runtime.run(no_args, None) == "fine"
    with pytest.raises(InvalidArgumentsError):
        await runtime.run(errs_summarize_document)


async def test_a_result_that_is_not_json_fails_the_run_without_retries(runtime: Runtime) -> None:
    local = Calls()

    @function(name="errs_bad_result", retries=5)
    async def returns_a_set() -> Any:
        local.hit()
        return {"ids": {1, 2}}

    with pytest.raises(RunFailedError) as info:
        await runtime.run(returns_a_set)
    assert info.value.error_type == "SerializationError"
    assert "errs_bad_result" in info.value.error_message
    assert "['ids']" in info.value.error_message
    assert local["body"] == 1  # retrying cannot help: the same code returns the same value


async def test_a_taken_run_id_is_refused(runtime: Runtime) -> None:
    await runtime.run(errs_summarize_document, {"doc_url": "a"}, run_id="errs-fixed-id")
    before = calls["summarize"]
    with pytest.raises(RunExistsError) as info:
        await runtime.run(errs_summarize_document, {"doc_url": "a"}, run_id="errs-fixed-id")
    assert info.value.run_id == "errs-fixed-id"
    assert calls["summarize"] == before


def test_duplicate_name_from_another_module() -> None:
    async def fetch(url: str) -> str:
        return url

    async def other_fetch(url: str) -> str:
        return url

    fetch.__module__ = "errs_app.billing"
    other_fetch.__module__ = "errs_app.search"
    function(name="errs_dup_fetch")(fetch)
    with pytest.raises(DuplicateNameError) as info:
        function(name="errs_dup_fetch")(other_fetch)
    error = info.value
    assert error.name == "errs_dup_fetch"
    assert "errs_app.billing" in str(error)
    assert "name=" in str(error)
    assert isinstance(error, ValueError)


async def test_the_first_registration_survives_a_duplicate(runtime: Runtime) -> None:
    async def first(x: int) -> str:
        return f"first {x}"

    async def second(x: int) -> str:
        return f"second {x}"

    first.__module__ = "errs_app.one"
    second.__module__ = "errs_app.two"
    function(name="errs_dup_kept")(first)
    with pytest.raises(DuplicateNameError):
        function(name="errs_dup_kept")(second)
    assert await runtime.run("errs_dup_kept", {"x": 1}) == "first 1"


def test_redefining_in_the_same_module_replaces() -> None:
    """A notebook cell run twice, or a function defined inside a test, is not a duplicate."""
    registry = Registry()

    @function(name="errs_redefined", registry=registry)
    async def v1() -> int:
        return 1

    @function(name="errs_redefined", registry=registry)
    async def v2() -> int:
        return 2

    spec = registry.get("errs_redefined")
    assert spec is not None and spec.source is v2.__wrapped__


def test_duplicate_names_across_separate_registries_are_fine() -> None:
    async def a() -> None:
        return None

    a.__module__ = "errs_app.elsewhere"
    function(name="errs_summarize_document", registry=Registry())(a)
