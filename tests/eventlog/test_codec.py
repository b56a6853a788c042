"""The event codec and strict JSON values: round trips, checksums, versions, upcasters.

Strategies are derived from each event class's attrs fields, so a new event
type (or a new field type) is covered without editing this file, and a field
type this file does not know fails loudly instead of being skipped.
"""

from __future__ import annotations

import contextlib
import math
import struct
import types
import typing
import zlib
from collections.abc import Callable, Iterator
from typing import Any, Literal

import attrs
import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from perdure.eventlog import (
    BY_WIRE_NAME,
    EVENT_TYPES,
    CorruptEventError,
    Event,
    PerdureError,
    RunStarted,
    SchemaVersionError,
    SerializationError,
    TaskCompleted,
    TimerFired,
    _codec,
    check_json,
    decode,
    digest,
    encode,
    from_dict,
    register_upcaster,
    to_dict,
)

DECODE_ERRORS = (CorruptEventError, SchemaVersionError)
I64 = (-(2**63), 2**63 - 1)

# --- strategies ---------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def strategy_for(tp: Any) -> st.SearchStrategy[Any]:
    """A strategy for one field annotation; unknown annotations are an error, not a skip."""
    if tp is Any:
        return json_values
    if tp is str:
        return st.text(max_size=20)
    if tp is bool:
        return st.booleans()
    if tp is int:
        return st.integers(*I64)
    if tp is float:
        return st.floats(allow_nan=False, allow_infinity=False)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return st.sampled_from(args)
    if origin in (typing.Union, types.UnionType):
        return st.one_of([st.none() if arg is type(None) else strategy_for(arg) for arg in args])
    if origin is dict:
        return st.dictionaries(strategy_for(args[0]), strategy_for(args[1]), max_size=4)
    if origin is list:
        return st.lists(strategy_for(args[0]), max_size=4)
    raise TypeError(f"no strategy for field type {tp!r}: extend strategy_for() in {__file__}")


# The envelope keys run id and seq; seq is stored as an unsigned big-endian u64.
_SPECIAL: dict[str, st.SearchStrategy[Any]] = {
    "run_id": st.text(min_size=1, max_size=20),
    "seq": st.integers(0, 2**64 - 1),
}


def events_of(cls: type[Event]) -> st.SearchStrategy[Event]:
    hints = typing.get_type_hints(cls)
    fields = {
        field.name: _SPECIAL[field.name]
        if field.name in _SPECIAL
        else strategy_for(hints[field.name])
        for field in attrs.fields(cls)
    }
    return st.builds(cls, **fields)


any_event = st.sampled_from(EVENT_TYPES).flatmap(events_of)


def seal(run_id: str, seq: int, body: bytes, envelope: int = 1) -> bytes:
    """A stored record built from the documented format, independently of the codec.

    1 byte envelope version + big-endian CRC32 + body. The CRC runs over (run id,
    u64 seq, body) for envelope 1, and over (version byte, run id, u64 seq, body)
    from envelope 2 on.
    """
    start = zlib.crc32(bytes((envelope,))) if envelope != 1 else 0
    crc = zlib.crc32(body, zlib.crc32(struct.pack(">Q", seq), zlib.crc32(run_id.encode(), start)))
    return struct.pack(">BI", envelope, crc) + body


def assert_same_event(decoded: Event, original: Event) -> None:
    # `==` alone would accept 1 for 1.0 or True; the encoded bytes tell them apart.
    assert type(decoded) is type(original)
    assert decoded == original
    assert encode(decoded) == encode(original)


# --- the event types themselves -------------------------------------------------


def _all_subclasses(cls: type) -> Iterator[type]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _all_subclasses(sub)


def test_every_event_class_is_registered_once() -> None:
    assert set(_all_subclasses(Event)) == set(EVENT_TYPES)
    names = [cls.WIRE_NAME for cls in EVENT_TYPES]
    assert all(names), "every event type needs a wire name"
    assert len(set(names)) == len(names), f"duplicate wire names in {names}"
    assert {cls.WIRE_NAME: cls for cls in EVENT_TYPES} == BY_WIRE_NAME


@pytest.mark.parametrize("cls", EVENT_TYPES, ids=lambda cls: cls.WIRE_NAME)
def test_event_classes_are_frozen_slotted_and_versioned(cls: type[Event]) -> None:
    assert attrs.has(cls)
    assert "__slots__" in cls.__dict__
    assert isinstance(cls.VERSION, int) and cls.VERSION >= 1
    field_names = {field.name for field in attrs.fields(cls)}
    assert {"run_id", "seq", "ts"} <= field_names
    assert not field_names & {"t", "v"}, "'t' and 'v' are reserved by the envelope"


# --- round trips ---------------------------------------------------------------


@pytest.mark.parametrize("cls", EVENT_TYPES, ids=lambda cls: cls.WIRE_NAME)
@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_round_trip(cls: type[Event], data: st.DataObject) -> None:
    event = data.draw(events_of(cls))
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        event.ts = 0.0  # type: ignore[misc]
    record = encode(event)
    assert_same_event(decode(event.run_id, event.seq, record), event)

    as_dict = to_dict(event)
    assert as_dict["t"] == cls.WIRE_NAME and as_dict["v"] == cls.VERSION
    assert_same_event(from_dict(as_dict), event)
    # An exported dict survives a trip through JSON text too.
    assert_same_event(from_dict(orjson.loads(orjson.dumps(as_dict))), event)


def test_record_body_is_readable_json_without_key_fields() -> None:
    event = TimerFired(run_id="run-1", seq=7, ts=1.5, timer_id="t1")
    body = orjson.loads(encode(event)[5:])
    assert body == {"t": "timer_fired", "v": 1, "ts": 1.5, "timer_id": "t1"}


@settings(max_examples=200)
@given(events=st.lists(any_event, min_size=1, max_size=4))
def test_record_bytes_are_the_fields_in_declaration_order_then_wire_name_and_version(
    events: list[Event],
) -> None:
    """The stored bytes stay exactly what they always were: the body is the event's
    fields (as `to_dict` lists them, less run id and seq) encoded by orjson."""
    records = _codec.encode_all("run-x", events)
    for event, record in zip(events, records, strict=True):
        fields = {k: v for k, v in to_dict(event).items() if k not in ("run_id", "seq")}
        assert record[5:] == orjson.dumps(fields)
        assert record == encode(attrs.evolve(event, run_id="run-x"))


def test_golden_record_stays_readable() -> None:
    # Written by perdure 0.1.0. Changing the format must keep this decoding.
    record = (
        b"\x01\x08\x41\x10\x58"
        b'{"ts":1700000000.25,"target":"summarize","kind":"function","input":{"doc":[1,2.5,null]},'
        b'"input_digest":"abc","idempotency_key":"k1","trace_context":{"traceparent":"00-x"},'
        b'"invocation":0,"t":"run_started","v":1}'
    )
    assert decode("golden-run", 0, record) == RunStarted(
        run_id="golden-run",
        seq=0,
        ts=1700000000.25,
        target="summarize",
        kind="function",
        input={"doc": [1, 2.5, None]},
        input_digest="abc",
        idempotency_key="k1",
        trace_context={"traceparent": "00-x"},
        invocation=0,
    )


# --- checksums and corrupt records -------------------------------------------------


@settings(max_examples=300)
@given(event=any_event, bit=st.integers(min_value=0))
def test_any_single_bit_flip_is_detected(event: Event, bit: int) -> None:
    record = bytearray(encode(event))
    bit %= len(record) * 8
    record[bit // 8] ^= 1 << (bit % 8)
    expected: type[Exception] = CorruptEventError  # the CRC covers the version byte too
    with pytest.raises(DECODE_ERRORS) as caught:
        decode(event.run_id, event.seq, bytes(record))
    assert type(caught.value) is expected
    assert f"{event.run_id}#{event.seq}" in str(caught.value)
    if isinstance(caught.value, CorruptEventError):
        assert (caught.value.run_id, caught.value.seq) == (event.run_id, event.seq)


@given(event=any_event)
def test_record_under_another_key_is_detected(event: Event) -> None:
    record = encode(event)
    with pytest.raises(CorruptEventError):
        decode(event.run_id, event.seq ^ 1, record)
    with pytest.raises(CorruptEventError):
        decode(event.run_id + "x", event.seq, record)


@pytest.mark.parametrize("cut", [0, 1, 4, 5])
def test_truncated_record(cut: int) -> None:
    record = encode(TimerFired(run_id="r", seq=0, ts=0.0, timer_id="t"))
    with pytest.raises(CorruptEventError, match="r#0"):
        decode("r", 0, record[:cut])


@settings(max_examples=300)
@given(record=st.binary(max_size=64))
@example(record=b"")
@example(record=b"\x00\x00\x00\x00\x00")
@example(record=b"\xff\x00\x00\x00\x00{}")
def test_random_bytes_raise_only_decode_errors(record: bytes) -> None:
    with contextlib.suppress(DECODE_ERRORS):
        decode("run", 3, record)


@settings(max_examples=300)
@given(body=st.binary(max_size=64) | json_values.map(orjson.dumps))
@example(body=b"{}")
@example(body=b"[]")
@example(body=b'{"t":"timer_fired"}')
@example(body=b'{"t":"timer_fired","v":1}')
@example(body=b'{"t":"timer_fired","v":"1","ts":0,"timer_id":"x"}')
@example(body=b'{"t":["timer_fired"],"v":1}')
@example(
    body=b'{"t":"timer_set","v":1,"ts":0,"timer_id":"x","due_at":1,"purpose":"nap","position":"0"}'
)
def test_well_sealed_garbage_raises_only_decode_errors(body: bytes) -> None:
    # A valid envelope around an arbitrary body reaches the JSON and cattrs stages.
    with contextlib.suppress(DECODE_ERRORS):
        decode("run", 3, seal("run", 3, body))


@settings(max_examples=200)
@given(event=any_event, data=st.data())
def test_mutated_fields_decode_or_raise_decode_errors(event: Event, data: st.DataObject) -> None:
    fields = to_dict(event)
    del fields["run_id"], fields["seq"]
    key = data.draw(st.sampled_from(sorted(fields)))
    if data.draw(st.booleans()):
        del fields[key]
    else:
        fields[key] = data.draw(json_values)
    try:
        decoded = decode("run", 3, seal("run", 3, orjson.dumps(fields)))
    except DECODE_ERRORS:
        return
    assert isinstance(decoded, Event)


def test_unknown_type_is_corrupt() -> None:
    record = seal("r", 2, b'{"t":"no_such_event","v":1,"ts":0}')
    with pytest.raises(CorruptEventError, match="no_such_event") as caught:
        decode("r", 2, record)
    assert (caught.value.run_id, caught.value.seq) == ("r", 2)


@pytest.mark.parametrize("version", [0, -1, "1", None, 1.0])
def test_invalid_schema_version_is_corrupt(version: Any) -> None:
    body = orjson.dumps({"t": "timer_fired", "v": version, "ts": 0.0, "timer_id": "x"})
    with pytest.raises(CorruptEventError, match="schema version"):
        decode("r", 0, seal("r", 0, body))


def test_newer_event_schema_version_is_refused() -> None:
    body = orjson.dumps({"t": "timer_fired", "v": TimerFired.VERSION + 1, "ts": 0, "timer_id": "x"})
    with pytest.raises(SchemaVersionError, match="newer perdure"):
        decode("r", 0, seal("r", 0, body))


def test_newer_envelope_version_is_refused() -> None:
    body = encode(TimerFired(run_id="r", seq=0, ts=0.0, timer_id="x"))[5:]
    with pytest.raises(SchemaVersionError, match="envelope version"):
        decode("r", 0, seal("r", 0, body, envelope=_codec.ENVELOPE_VERSION + 1))
    with pytest.raises(CorruptEventError, match="envelope version"):
        decode("r", 0, seal("r", 0, body, envelope=0))


def test_schema_version_error_is_a_perdure_error() -> None:
    assert issubclass(SchemaVersionError, PerdureError)
    assert issubclass(CorruptEventError, PerdureError)


# --- upcasters -----------------------------------------------------------------


@pytest.fixture
def fresh_upcasters(monkeypatch: pytest.MonkeyPatch) -> dict[tuple[str, int], Any]:
    """An empty upcaster registry for one test; the real one is restored afterwards."""
    registry: dict[tuple[str, int], Any] = {}
    monkeypatch.setattr(_codec, "UPCASTERS", registry)
    return registry


def _rename(old: str, new: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def upcast(fields: dict[str, Any]) -> dict[str, Any]:
        fields = dict(fields)
        fields[new] = fields.pop(old)
        return fields

    return upcast


def test_upcaster_turns_old_version_into_current(
    monkeypatch: pytest.MonkeyPatch, fresh_upcasters: dict[tuple[str, int], Any]
) -> None:
    # Pretend TimerFired v1 called the field "timer" and v2 renamed it to "timer_id".
    monkeypatch.setattr(TimerFired, "VERSION", 2)
    register_upcaster("timer_fired", 1, _rename("timer", "timer_id"))
    assert ("timer_fired", 1) in fresh_upcasters

    old = seal("r", 4, b'{"t":"timer_fired","v":1,"ts":2.0,"timer":"tm"}')
    assert decode("r", 4, old) == TimerFired(run_id="r", seq=4, ts=2.0, timer_id="tm")

    current = TimerFired(run_id="r", seq=5, ts=3.0, timer_id="tm")
    record = encode(current)
    assert orjson.loads(record[5:])["v"] == 2
    assert decode("r", 5, record) == current  # current records bypass the upcaster
    assert from_dict(
        {"t": "timer_fired", "v": 1, "run_id": "r", "seq": 4, "ts": 2.0, "timer": "tm"}
    ) == TimerFired(run_id="r", seq=4, ts=2.0, timer_id="tm")


def test_upcasters_chain_in_order(
    monkeypatch: pytest.MonkeyPatch, fresh_upcasters: dict[tuple[str, int], Any]
) -> None:
    monkeypatch.setattr(TimerFired, "VERSION", 3)
    register_upcaster("timer_fired", 1, _rename("a", "b"))
    register_upcaster("timer_fired", 2, _rename("b", "timer_id"))
    old = seal("r", 0, b'{"t":"timer_fired","v":1,"ts":0.0,"a":"tm"}')
    assert decode("r", 0, old).timer_id == "tm"  # type: ignore[attr-defined]
    middle = seal("r", 0, b'{"t":"timer_fired","v":2,"ts":0.0,"b":"tm"}')
    assert decode("r", 0, middle).timer_id == "tm"  # type: ignore[attr-defined]


def test_missing_upcaster_is_reported(
    monkeypatch: pytest.MonkeyPatch, fresh_upcasters: dict[tuple[str, int], Any]
) -> None:
    monkeypatch.setattr(TimerFired, "VERSION", 3)
    register_upcaster("timer_fired", 1, _rename("a", "timer_id"))
    old = seal("r", 0, b'{"t":"timer_fired","v":1,"ts":0.0,"a":"tm"}')
    with pytest.raises(CorruptEventError, match="no upcaster to v3"):
        decode("r", 0, old)


def test_upcaster_failure_on_a_bad_old_record_is_corrupt(
    monkeypatch: pytest.MonkeyPatch, fresh_upcasters: dict[tuple[str, int], Any]
) -> None:
    monkeypatch.setattr(TimerFired, "VERSION", 2)
    register_upcaster("timer_fired", 1, _rename("timer", "timer_id"))
    old = seal("r", 4, b'{"t":"timer_fired","v":1,"ts":2.0}')  # no "timer" to rename
    with pytest.raises(CorruptEventError):
        decode("r", 4, old)


# --- strict JSON values ------------------------------------------------------------


@given(value=json_values)
def test_check_json_accepts_plain_json(value: Any) -> None:
    check_json(value)


def test_check_json_names_the_path() -> None:
    value = {"items": [1, 2, 3, (4, 5)]}
    with pytest.raises(SerializationError) as caught:
        check_json(value, "input")
    assert caught.value.path == "input['items'][3]"
    assert caught.value.type_name == "tuple"
    assert "input['items'][3]" in str(caught.value)
    assert "use a list" in str(caught.value)


def test_check_json_default_path_and_first_offender() -> None:
    with pytest.raises(SerializationError) as caught:
        check_json([{"a": {"b": [None, {1, 2}]}}, object()])
    assert caught.value.path == "value[0]['a']['b'][1]"
    assert caught.value.type_name == "set"


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_check_json_refuses_non_finite_floats(bad: float) -> None:
    with pytest.raises(SerializationError) as caught:
        check_json({"x": [0.5, bad]}, "result")
    assert caught.value.path == "result['x'][1]"
    assert caught.value.type_name == "float"


@pytest.mark.parametrize("bad", [(), (1,), [1, (2,)]])
def test_check_json_refuses_tuples(bad: Any) -> None:
    with pytest.raises(SerializationError, match="tuple"):
        check_json(bad)


@pytest.mark.parametrize("key", [1, 1.5, True, None, (1, 2), b"k"])
def test_check_json_refuses_non_str_keys(key: Any) -> None:
    with pytest.raises(SerializationError, match="keys must be strings") as caught:
        check_json({"ok": {key: 1}}, "input")
    assert caught.value.path == f"input['ok'][{key!r}]"
    assert caught.value.type_name == type(key).__name__


@pytest.mark.parametrize("bad", [b"bytes", bytearray(b"x"), {1, 2}, frozenset(), object(), 1j])
def test_check_json_refuses_other_types(bad: Any) -> None:
    with pytest.raises(SerializationError) as caught:
        check_json(bad)
    assert caught.value.type_name == type(bad).__name__


def test_serialization_error_types() -> None:
    with pytest.raises(TypeError):
        check_json((1,))
    with pytest.raises(PerdureError):
        check_json((1,))


@pytest.mark.parametrize("bad", [2**64, -(2**63) - 1, 10**30, {"k": [-(2**70)]}])
def test_check_json_refuses_ints_beyond_64_bits(bad: Any) -> None:
    with pytest.raises(SerializationError) as caught:
        check_json(bad)
    assert caught.value.type_name == "int"


@pytest.mark.parametrize("bad", ["\ud800", ["ok", "a\udfffb"], {"\udfff": 1}])
def test_check_json_refuses_lone_surrogates(bad: Any) -> None:
    with pytest.raises(SerializationError):
        check_json(bad)


@pytest.mark.parametrize("value", [2**64 - 1, -(2**63), 2**63, [0, -1, 1]])
def test_ints_at_the_64_bit_limits_round_trip(value: Any) -> None:
    check_json(value)
    event = TaskCompleted(
        run_id="r", seq=0, ts=0.0, position="0", name="n", input_digest=digest(value), result=value
    )
    assert decode("r", 0, encode(event)) == event


@given(value=json_values)
def test_values_check_json_accepts_are_encodable(value: Any) -> None:
    event = TaskCompleted(
        run_id="r", seq=0, ts=0.0, position="0", name="n", input_digest=digest(value), result=value
    )
    decoded = decode("r", 0, encode(event))
    assert orjson.dumps(decoded.result) == orjson.dumps(value)  # type: ignore[attr-defined]


def _reorder(value: Any, rnd: Callable[[list[Any]], None]) -> Any:
    if isinstance(value, dict):
        items = list(value.items())
        rnd(items)
        return {key: _reorder(item, rnd) for key, item in items}
    if isinstance(value, list):
        return [_reorder(item, rnd) for item in value]
    return value


@given(value=json_values, rnd=st.randoms(use_true_random=False))
def test_digest_ignores_dict_key_order(value: Any, rnd: Any) -> None:
    shuffled = _reorder(value, rnd.shuffle)
    assert shuffled == value
    assert digest(shuffled) == digest(value)


def test_digest_is_stable_across_versions() -> None:
    # Digests are stored in logs and compared on replay: they must never change.
    assert digest({"a": 1}) == "1f8c00645b7df6ce"
    assert digest({"b": {"y": 1, "x": 2}, "a": [1.0, True, None, "s"]}) == "0e21756c21967e62"
    assert digest({"a": [1.0, True, None, "s"], "b": {"x": 2, "y": 1}}) == "0e21756c21967e62"


def test_digest_distinguishes_json_types() -> None:
    values = [1, 1.0, True, "1", [1], {"1": 1}, None, 0, False, ""]
    assert len({digest(value) for value in values}) == len(values)


def test_a_run_continued_written_before_it_had_a_token_reads_with_none() -> None:
    # Logs written before `RunContinued.token` existed; the fold keeps no token for them.
    from perdure.actors import fold
    from perdure.eventlog import RunContinued, RunStarted, from_dict

    old = from_dict(
        {"run_id": "r", "seq": 1, "ts": 1.0, "reason": "x", "t": "run_continued", "v": 1}
    )
    assert old == RunContinued(run_id="r", seq=1, ts=1.0, reason="x", token="")
    started = RunStarted(
        run_id="r", seq=0, ts=0.0, target="t", kind="workflow", input=None, input_digest=""
    )
    assert fold("r", [started, old]).continue_tokens == frozenset()
