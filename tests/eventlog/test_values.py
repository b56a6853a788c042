"""Tagged JSON values: round trips through the log, digests, paths, depth and cycles."""

from __future__ import annotations

import copy
import dataclasses
import datetime
import decimal
import enum
import uuid
from typing import Any

import attrs
import orjson
import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perdure.eventlog import SerializationError, TaskCompleted, check_json, decode, digest, encode
from perdure.eventlog._json import MAX_DEPTH, TAG, fresh
from perdure.eventlog._values import declared_type, declared_types, restore


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Size(enum.IntEnum):
    SMALL = 1
    LARGE = 2


@dataclasses.dataclass
class Record:
    when: datetime.datetime
    day: datetime.date
    at: datetime.time
    id: uuid.UUID
    amount: decimal.Decimal
    color: Color
    tags: tuple[str, ...]
    extra: dict[str, Any]


@attrs.frozen
class Batch:
    records: list[Record]
    owner: uuid.UUID | None = None


class Model(pydantic.BaseModel):
    when: datetime.datetime
    amount: decimal.Decimal
    ids: list[uuid.UUID]


ZONES = st.sampled_from(
    [None, datetime.UTC, datetime.timezone(datetime.timedelta(hours=5, minutes=30))]
)
DATETIMES = st.datetimes(timezones=ZONES)
DECIMALS = st.decimals(allow_nan=False)
PLAIN = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)
RECORDS = st.builds(
    Record,
    when=DATETIMES,
    day=st.dates(),
    at=st.times(),
    id=st.uuids(),
    amount=DECIMALS,
    color=st.sampled_from(Color),
    tags=st.lists(st.text(max_size=3), max_size=3).map(tuple),
    extra=st.dictionaries(st.text(max_size=3), PLAIN, max_size=3),
)
MODELS = st.builds(
    Model,
    when=DATETIMES,
    amount=st.decimals(allow_nan=False, allow_infinity=False),  # pydantic wants finite
    ids=st.lists(st.uuids(), max_size=3),
)

#: (value, the type code would declare for it)
TYPED = st.one_of(
    DATETIMES.map(lambda v: (v, datetime.datetime)),
    st.dates().map(lambda v: (v, datetime.date)),
    st.times().map(lambda v: (v, datetime.time)),
    st.uuids().map(lambda v: (v, uuid.UUID)),
    DECIMALS.map(lambda v: (v, decimal.Decimal)),
    st.sampled_from(Color).map(lambda v: (v, Color)),
    st.sampled_from(Size).map(lambda v: (v, Size)),
    RECORDS.map(lambda v: (v, Record)),
    st.builds(Batch, records=st.lists(RECORDS, max_size=2), owner=st.none() | st.uuids()).map(
        lambda v: (v, Batch)
    ),
    MODELS.map(lambda v: (v, Model)),
    st.lists(RECORDS, max_size=2).map(lambda v: (v, list[Record])),
    st.dictionaries(st.text(max_size=3), st.uuids(), max_size=3).map(
        lambda v: (v, dict[str, uuid.UUID])
    ),
    (st.none() | st.dates()).map(lambda v: (v, datetime.date | None)),
)


def _through_the_log(stored: Any) -> Any:
    event = TaskCompleted(
        run_id="r", seq=3, ts=0.0, position="0", name="t", input_digest="d", result=stored
    )
    decoded = decode("r", 3, encode(event))
    assert isinstance(decoded, TaskCompleted)
    return decoded.result


@settings(max_examples=150, deadline=None)
@given(typed=TYPED)
def test_supported_values_round_trip_as_their_declared_type(typed: tuple[Any, Any]) -> None:
    value, hint = typed
    stored = check_json(value, "value")
    # The stored form is JSON: the encoder needs no help with it.
    assert orjson.loads(orjson.dumps(stored)) == stored
    assert restore(_through_the_log(stored), declared_type(hint)) == value
    # The same value (a copy) has the same digest: task inputs and idempotency keys match.
    assert digest(check_json(copy.deepcopy(value))) == digest(stored)


@settings(max_examples=100, deadline=None)
@given(value=PLAIN)
def test_plain_json_is_stored_as_itself_and_read_back_unchanged(value: Any) -> None:
    assert check_json(value) is value  # no copy, no tags: old logs and digests unchanged
    assert fresh(_through_the_log(value)) == value


def test_without_a_declared_type_values_come_back_as_plain_json() -> None:
    when = datetime.datetime(2024, 1, 2, 3, 4, 5)
    value = {"when": when, "id": uuid.UUID(int=1), "n": decimal.Decimal("1.50"), "c": Color.RED}
    stored = check_json(value)
    assert stored["when"] == {TAG: "datetime", "value": "2024-01-02T03:04:05"}
    assert restore(stored, None) == {
        "when": "2024-01-02T03:04:05",
        "id": "00000000-0000-0000-0000-000000000001",
        "n": "1.50",
        "c": "red",
    }
    # Declared types that need no rebuilding are plain JSON too.
    assert declared_type(dict[str, Any]) is None
    assert declared_type(int | str) is None
    assert declared_type(Any) is None
    assert declared_type(list[Color]) == list[Color]


def test_str_and_int_enums_are_stored_as_before() -> None:
    assert check_json({"c": Size.LARGE}) == {"c": Size.LARGE}
    assert digest(check_json([Size.LARGE])) == digest([2])


def test_a_users_own_tag_key_is_escaped() -> None:
    value = {TAG: "uuid", "value": "not a uuid", "more": [{TAG: 1}]}
    stored = check_json(value)
    assert stored[TAG] == "dict"
    assert restore(_through_the_log(stored), None) == value


def test_declared_types_reads_the_annotations() -> None:
    def fn(a: Record, b: int, c: Any, d: list[uuid.UUID] | None = None) -> Batch:
        raise NotImplementedError

    assert declared_types(fn) == ({"a": Record, "d": list[uuid.UUID] | None}, Batch)


def test_a_stored_value_that_does_not_fit_the_declared_type_names_it() -> None:
    with pytest.raises(SerializationError, match="declared type Record"):
        restore({"when": "x"}, Record)


def test_bad_values_inside_objects_name_their_field() -> None:
    @dataclasses.dataclass
    class Holder:
        items: list[Any]

    with pytest.raises(SerializationError) as caught:
        check_json({"h": Holder(items=[1, b"x"])}, "input")
    assert caught.value.path == "input['h'].items[1]"
    assert caught.value.type_name == "bytes"


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 256, 300, 999, 1000, 5000, 100_000])
def test_too_deep_is_refused_with_a_path(levels: int) -> None:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    with pytest.raises(SerializationError, match=f"nested more than {MAX_DEPTH} levels") as caught:
        check_json({"a": value}, "input")
    assert caught.value.path.startswith("input['a'][0][0]")
    assert caught.value.type_name == "depth"
    assert len(str(caught.value)) < 300  # the path is shortened in the message


def test_the_depth_limit_fits_every_event() -> None:
    value: Any = 1
    for _ in range(MAX_DEPTH - 1):
        value = [value]
    stored = check_json([value])  # exactly MAX_DEPTH levels: accepted
    assert _through_the_log([stored, {}]) == [stored, {}]  # as a task's [args, kwargs] digest
    digest([stored, {}])


def test_cycles_are_refused_with_the_path_where_the_value_repeats() -> None:
    inner: list[Any] = [1]
    value = {"a": {"b": inner}}
    inner.append(value["a"])
    with pytest.raises(SerializationError, match="contains a cycle") as caught:
        check_json(value, "result")
    assert caught.value.path == "result['a']['b'][1]"
    assert "is result['a'] itself" in str(caught.value)

    @dataclasses.dataclass
    class Node:
        child: Any = None

    node = Node()
    node.child = node
    with pytest.raises(SerializationError, match="contains a cycle") as caught:
        check_json(node)
    assert caught.value.path == "value.child"


def test_a_float_subclass_is_stored_as_a_float() -> None:
    class Meters(float):
        pass

    stored = check_json({"d": Meters(2.5)})
    assert type(stored["d"]) is float and stored["d"] == 2.5
    assert _through_the_log(stored) == {"d": 2.5}  # the encoder refused it before


def test_subclass_overrides_cannot_hide_a_value_from_the_check() -> None:
    """The encoder reads a subclass's storage, not its methods: so must the check."""

    class Sneaky(dict):  # type: ignore[type-arg]
        def items(self) -> Any:
            return []

    class Text(str):
        def isascii(self) -> bool:
            return True

    with pytest.raises(SerializationError) as caught:
        check_json({"k": Sneaky(hidden=object())}, "result")
    assert caught.value.path == "result['k']['hidden']"
    with pytest.raises(SerializationError, match="lone surrogate"):
        check_json([Text("a\ud800")])
    # Honest subclasses are stored as their base type, with the same digest as before.
    assert digest(check_json(Sneaky(a=1))) == digest({"a": 1})
    assert type(check_json(Size.LARGE)) is int


def test_annotations_naming_a_class_defined_later_are_resolved_on_first_use() -> None:
    def make() -> Later:  # noqa: F821  # defined below, as in a module read top-down
        raise NotImplementedError

    def takes(x: Later) -> int:  # noqa: F821
        raise NotImplementedError

    params, result = declared_types(make)
    assert params == {} and result is not None
    assert declared_types(takes)[0]  # `x` is deferred too
    globals()["Later"] = _Later
    try:
        stored = check_json(_Later(day=datetime.date(2024, 1, 2)))
        assert restore(stored, result) == _Later(day=datetime.date(2024, 1, 2))
    finally:
        del globals()["Later"]


@dataclasses.dataclass
class _Later:
    day: datetime.date


def test_messages_quote_user_text_with_braces_safely() -> None:
    with pytest.raises(SerializationError, match="keys must be strings") as caught:
        check_json({("{path}", "{0}"): 1}, "input")
    assert "('{path}', '{0}')" in str(caught.value)
