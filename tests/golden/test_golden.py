"""Golden logs: runs recorded by earlier perdure versions must still decode and replay.

Each ``*.jsonl`` here was written by `make_golden.py` with the version named in
``manifest.json`` and is committed. A change to the event encoding (field
names, wire names, versions without an upcaster) or to the replay rules
(positions, input digests, matching) that breaks runs already in users'
stores fails here. Fix the change, or add an upcaster; never regenerate the
committed logs to make this pass.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
import pytest

from perdure import Replayer
from perdure.actors import fold
from perdure.eventlog import EVENT_TYPES, RunParked, decode, encode, from_dict, to_dict

from . import golden_app

HERE = Path(__file__).resolve().parent
MANIFEST: dict[str, dict[str, Any]] = json.loads((HERE / "manifest.json").read_text())["logs"]
LOGS = sorted(HERE.glob("*.jsonl"))


def load(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def test_every_golden_log_is_in_the_manifest_and_back() -> None:
    assert LOGS, "no golden logs found"
    assert sorted(p.name for p in LOGS) == sorted(MANIFEST)


def test_golden_logs_cover_every_event_type_but_parking() -> None:
    seen = {record["t"] for path in LOGS for record in load(path)}
    # A parked run needs an actor that crashes past the supervisor's limit; the
    # reliability suite covers parking, and its event is plain data.
    wanted = {cls.WIRE_NAME for cls in EVENT_TYPES} - {RunParked.WIRE_NAME}
    assert wanted <= seen, f"no golden log has {sorted(wanted - seen)}"


@pytest.mark.parametrize("path", LOGS, ids=lambda p: p.stem)
def test_golden_log_decodes_and_round_trips(path: Path) -> None:
    for record in load(path):
        event = from_dict(record)
        now = to_dict(event)
        assert {key: now[key] for key in record} == record  # nothing lost or renamed
        for key in now.keys() - record.keys():  # fields added since: only with their default
            field = attrs.fields_dict(type(event))[key]
            default = (
                field.default.factory()
                if isinstance(field.default, attrs.Factory)
                else field.default
            )  # type: ignore[union-attr]
            assert now[key] == default, f"{key} was added without a default"
        assert decode(event.run_id, event.seq, encode(event)) == event  # storable as today


@pytest.mark.parametrize("path", LOGS, ids=lambda p: p.stem)
async def test_golden_log_replays_against_its_code(path: Path) -> None:
    expected = MANIFEST[path.name]
    events = [from_dict(record) for record in load(path)]
    assert fold(expected["run_id"], events).status == expected["recorded_end"]

    replayer = Replayer(workflows=golden_app.WORKFLOWS, functions=golden_app.FUNCTIONS)
    result = await replayer.areplay(events, raise_on_failure=True)

    assert result.ok
    assert result.divergence is None
    assert (result.run_id, result.target, result.kind) == (
        expected["run_id"],
        expected["target"],
        expected["kind"],
    )
    assert result.recorded_end == expected["recorded_end"]
    assert result.matched == expected["matched"]
    assert result.replayed == expected["replayed"]
    assert result.invocation == expected["invocation"]


async def test_a_golden_log_fails_replay_when_the_code_no_longer_fits() -> None:
    """The guard works: the same log against changed code reports the divergence."""
    from perdure import entrypoint, task
    from perdure.runtime import Registry

    @task
    def golden_draft(topic: str) -> str:  # same task name ...
        return topic

    @entrypoint(registry=Registry(), name="golden_review")
    def changed(topic: str) -> str:
        return golden_draft(topic.upper()).result()  # ... asked with another input

    events = [from_dict(r) for r in load(HERE / "workflow_completed.jsonl")]
    result = await Replayer(workflows=[changed]).areplay(events)
    assert not result.ok
    assert result.divergence is not None
    assert result.divergence.position == "0"
    assert "golden_draft" in result.divergence.recorded
    assert result.recorded_input == [["otters"], {}]
