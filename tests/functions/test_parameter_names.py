"""Any parameter name works: the runtime's own argument names never collide with the user's.

A run's input is a dict of arguments by name. Before, sync functions ran via
``run_sync(kind, fn, *args, **kwargs)``, so a parameter called ``kind`` or
``fn`` (or a ``**kwargs`` given such a key) could never run. The property test
builds functions with random signatures (positional-only, positional-or-
keyword, keyword-only, ``*args``, ``**kwargs``, defaults, a context first),
with names drawn mostly from the ones the runtime itself uses, and checks that
each parameter receives exactly its value.
"""

from __future__ import annotations

import asyncio
import keyword
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perdure import FunctionContext, MemoryEventLog, Runtime, entrypoint, function, task
from perdure.errors import InvalidArgumentsError
from perdure.runtime import Registry
from perdure.testing import MockClock

#: Names the runtime, its executors and its decorators use themselves, and the usual suspects.
TRICKY = [
    "kind",
    "fn",
    "func",
    "args",
    "kwargs",
    "self",
    "cls",
    "input",
    "info",
    "lead",
    "call",
    "value",
    "name",
    "target",
    "run_id",
    "idempotency_key",
    "timeout",
    "retries",
    "registry",
    "loop",
    "context",
    "ctx_",
    "_",
    "__",
]
identifiers = st.one_of(
    st.sampled_from(TRICKY),
    st.from_regex(r"[a-z_][a-z0-9_]{0,6}", fullmatch=True).filter(
        lambda n: not keyword.iskeyword(n) and n != "ctx"
    ),
)
#: Keys a ``**kwargs`` parameter may collect: any text JSON can hold, not only identifiers.
extra_keys = st.one_of(
    identifiers,
    st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=6),
)

POSITIONAL_ONLY = "positional_only"
POSITIONAL = "positional"
KEYWORD_ONLY = "keyword_only"


@attrs.frozen
class Param:
    name: str
    kind: str
    default: int | None  # None: required


@attrs.frozen
class Shape:
    params: tuple[Param, ...]
    var_args: str | None
    var_kwargs: str | None
    with_ctx: bool
    is_async: bool


@st.composite
def shapes(draw: st.DrawFn) -> Shape:
    names = draw(st.lists(identifiers, min_size=0, max_size=7, unique=True))
    var_args = draw(st.one_of(st.none(), identifiers))
    var_kwargs = draw(st.one_of(st.none(), identifiers))
    taken = set(names)
    if var_args in taken:
        var_args = None
    taken |= {var_args} if var_args else set()
    if var_kwargs in taken:
        var_kwargs = None
    cut1 = draw(st.integers(0, len(names)))
    cut2 = draw(st.integers(cut1, len(names)))
    params: list[Param] = []
    defaulted = False  # among positional parameters, defaults must come last
    for index, name in enumerate(names):
        kind = POSITIONAL_ONLY if index < cut1 else POSITIONAL if index < cut2 else KEYWORD_ONLY
        wants_default = draw(st.booleans())
        if kind != KEYWORD_ONLY:
            wants_default = wants_default or defaulted
            defaulted = wants_default
        params.append(Param(name, kind, 1000 + index if wants_default else None))
    return Shape(
        params=tuple(params),
        var_args=var_args,
        var_kwargs=var_kwargs,
        with_ctx=draw(st.booleans()),
        is_async=draw(st.booleans()),
    )


def _source(shape: Shape, fname: str) -> str:
    """The function's source: ``def f(ctx, a, /, b, *args, c, **kw): return {...}``."""
    positional_only = [p for p in shape.params if p.kind == POSITIONAL_ONLY]
    positional = [p for p in shape.params if p.kind == POSITIONAL]
    keyword_only = [p for p in shape.params if p.kind == KEYWORD_ONLY]

    def spell(p: Param) -> str:
        return p.name if p.default is None else f"{p.name}={p.default}"

    parts: list[str] = ["ctx"] if shape.with_ctx else []
    parts += [spell(p) for p in positional_only]
    if positional_only:
        parts.append("/")
    parts += [spell(p) for p in positional]
    if shape.var_args is not None:
        parts.append(f"*{shape.var_args}")
    elif keyword_only:
        parts.append("*")
    parts += [spell(p) for p in keyword_only]
    if shape.var_kwargs is not None:
        parts.append(f"**{shape.var_kwargs}")
    fields = [f"{p.name!r}: {p.name}" for p in shape.params]
    if shape.var_args is not None:
        fields.append(f"'*': list({shape.var_args})")
    if shape.var_kwargs is not None:
        fields.append(f"'**': dict({shape.var_kwargs})")
    if shape.with_ctx:
        fields.append("'ctx': type(ctx).__name__")
    prefix = "async def" if shape.is_async else "def"
    return f"{prefix} {fname}({', '.join(parts)}):\n    return {{{', '.join(fields)}}}\n"


def _build(shape: Shape, fname: str) -> Any:
    namespace: dict[str, Any] = {}
    exec(_source(shape, fname), namespace)  # the signature under test, spelled as a user would
    return namespace[fname]


@st.composite
def cases(draw: st.DrawFn) -> tuple[Shape, dict[str, Any], dict[str, Any]]:
    """A shape, an input that fits it, and what the function must return for it."""
    shape = draw(shapes())
    given_: dict[str, Any] = {}
    expected: dict[str, Any] = {}
    for index, p in enumerate(shape.params):
        if p.default is None or draw(st.booleans()):
            given_[p.name] = index
            expected[p.name] = index
        else:
            expected[p.name] = p.default
    if shape.var_args is not None:
        expected["*"] = []
    if shape.var_kwargs is not None:
        named = {p.name for p in shape.params} | {"ctx"}
        extras = draw(
            st.dictionaries(
                extra_keys.filter(lambda key: key not in named), st.integers(-999, 999), max_size=4
            )
        )
        given_.update(extras)
        expected["**"] = extras
    if shape.with_ctx:
        expected["ctx"] = "FunctionContext"
    return shape, given_, expected


async def _run_one(shape: Shape, given_: dict[str, Any]) -> tuple[Any, Any]:
    """The function's result as a run of its own, and as a task a workflow calls by keyword."""
    registry = Registry()
    target = function(name="params_under_test", registry=registry, retries=1)(
        _build(shape, "user_function")
    )

    def call_it(value: dict[str, Any]) -> Any:
        return target(**value).result()

    flow = entrypoint(name="params_flow", registry=registry)(call_it)
    async with Runtime(log=MemoryEventLog(), clock=MockClock(), registry=registry) as rt:
        alone = await asyncio.wait_for(rt.run(target, given_), 10)
        if any(p.kind == POSITIONAL_ONLY for p in shape.params):
            return alone, None  # Python itself refuses those by keyword in a plain call
        in_flow = await asyncio.wait_for(rt.run(flow, given_, run_id="flow"), 10)
        return alone, in_flow


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(case=cases())
def test_every_parameter_gets_its_value_whatever_it_is_called(
    case: tuple[Shape, dict[str, Any], dict[str, Any]],
) -> None:
    shape, given_, expected = case
    alone, in_flow = asyncio.run(_run_one(shape, given_))
    assert alone == expected, _source(shape, "user_function")
    if in_flow is not None:
        assert in_flow == expected, _source(shape, "user_function")


# -- the cases the issue names, spelled out ---------------------------------------------------


@function(name="names_kind_fn", retries=1)
def names_kind_fn(kind: str, fn: str) -> str:
    return f"{kind}/{fn}"


@function(name="names_var_kwargs", retries=1)
def names_var_kwargs(**kwargs: Any) -> dict[str, Any]:
    return kwargs


@function(name="names_positional_only", retries=1)
def names_positional_only(kind: str, fn: str = "-", /, *, args: int = 0) -> list[Any]:
    return [kind, fn, args]


@function(name="names_ctx_kwargs", retries=1)
def names_ctx_kwargs(ctx: FunctionContext, **kwargs: Any) -> dict[str, Any]:
    return kwargs


@task(name="names_task")
def names_task(kind: str, fn: int) -> str:
    return f"{kind}:{fn}"


@entrypoint(name="names_flow")
def names_flow(value: str) -> list[Any]:
    return [
        names_task(kind=value, fn=1).result(),
        names_kind_fn(kind=value, fn="f").result(),
        names_var_kwargs(kind=value, fn=2, self=3).result(),
    ]


async def test_parameters_named_kind_and_fn_run(runtime: Runtime) -> None:
    assert await runtime.run(names_kind_fn, {"kind": "k", "fn": "f"}) == "k/f"


async def test_var_kwargs_collect_any_key(runtime: Runtime) -> None:
    given_ = {"kind": 1, "fn": 2, "args": 3, "self": 4, "a b": 5}
    assert await runtime.run(names_var_kwargs, given_) == given_


async def test_positional_only_parameters_are_given_by_name(runtime: Runtime) -> None:
    assert await runtime.run(names_positional_only, {"kind": "k"}) == ["k", "-", 0]
    assert await runtime.run(names_positional_only, {"kind": "k", "fn": "f", "args": 2}) == [
        "k",
        "f",
        2,
    ]


async def test_a_key_that_collides_with_the_context_is_refused_up_front(runtime: Runtime) -> None:
    with pytest.raises(InvalidArgumentsError, match="multiple values for argument 'ctx'"):
        await runtime.run(names_ctx_kwargs, {"ctx": 1})
    assert await runtime.run(names_ctx_kwargs, {"kind": 1}) == {"kind": 1}


async def test_tasks_and_functions_in_a_workflow_take_kind_and_fn(runtime: Runtime) -> None:
    result = await names_flow.ainvoke("v", {"configurable": {"thread_id": "names-1"}})
    assert result == ["v:1", "v/f", {"kind": "v", "fn": 2, "self": 3}]
