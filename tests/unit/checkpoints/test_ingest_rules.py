"""Validating reads one by one, reading batch bodies, and the batch event: no database."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from anwang.checkpoints import events as ev
from anwang.checkpoints.api import parse_read_batch
from anwang.checkpoints.reads import (
    CheckpointInfo,
    Malformed,
    ReadBatch,
    read_id,
    validate_reads,
)
from anwang.checkpoints.schemas import REJECTION_CODES, ReadIn, parse_rfc3339
from anwang.checkpoints.search import parse_near, parse_polygon
from anwang.checkpoints.service import checkpoint_rows_from_csv, checkpoint_rows_from_geojson
from anwang.core.errors import BadRequest, PayloadTooLarge, ValidationFailed

NOW = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)
RETENTION = timedelta(hours=48)
CPS = {
    "C1": CheckpointInfo("One", "police_checkpoint", 31.7, 119.9, "3201"),
    "OLD": CheckpointInfo("Old", "road", 31.7, 119.9, "3201"),
}
ACTIVE = {"C1": True, "OLD": False}


def read(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "checkpoint": "C1", "captured_at": "2026-11-28T15:59:00+08:00", "plate": "苏D12345",
        "plate_color": "blue", "confidence": 0.9, "lane": 2, "direction": "in",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not ...}


def check(*items: Any) -> tuple[list[Any], list[Any]]:
    return validate_reads(list(items), checkpoints=CPS, active=ACTIVE, now=NOW,
                          retention=RETENTION)


def code_of(item: Any) -> str:
    valid, rejected = check(item)
    assert not valid and len(rejected) == 1, (valid, rejected)
    assert rejected[0].code in REJECTION_CODES
    return str(rejected[0].code)


def test_a_valid_read_is_normalised_and_gets_its_id() -> None:
    valid, rejected = check(read(plate=" 苏ｄ·1234５ "))
    assert rejected == []
    (index, r), = valid
    assert index == 0
    assert r.plate == "苏D12345" and r.plate_kind == "ordinary"
    assert r.captured_at == datetime(2026, 11, 28, 7, 59, tzinfo=UTC)
    assert r.id == read_id(checkpoint="C1", captured_at=r.captured_at, plate="苏D12345", lane=2)


def test_a_given_id_is_kept() -> None:
    valid, _ = check(read(id="cam-7:0001"))
    assert valid[0][1].id == "cam-7:0001"


@pytest.mark.parametrize(("changes", "code"), [
    ({"captured_at": "2026-11-28T07:59:00"}, "captured_at_no_offset"),
    ({"captured_at": "2026-11-28 07:59"}, "invalid_captured_at"),
    ({"captured_at": 1764316740}, "invalid_captured_at"),
    ({"captured_at": "2026-02-30T07:59:00Z"}, "invalid_captured_at"),
    ({"captured_at": "2026-11-28T08:05:01Z"}, "captured_at_in_future"),
    ({"captured_at": "2026-11-26T07:59:59Z"}, "captured_at_too_old"),
    ({"plate": ""}, "invalid_plate"),
    ({"plate": "苏D1234"}, "invalid_plate"),
    ({"plate": "XX12345"}, "invalid_plate"),
    ({"plate": 12345}, "invalid_plate"),
    ({"checkpoint": "NOPE"}, "unknown_checkpoint"),
    ({"checkpoint": "OLD"}, "inactive_checkpoint"),
    ({"checkpoint": "bad code!"}, "invalid_checkpoint"),
    ({"confidence": 1.01}, "confidence_out_of_range"),
    ({"confidence": -0.1}, "confidence_out_of_range"),
    ({"confidence": float("nan")}, "confidence_out_of_range"),
    ({"confidence": "high"}, "invalid_confidence"),
    ({"direction": "north"}, "invalid_direction"),
    ({"plate_color": "pink"}, "invalid_plate_color"),
    ({"lane": "2"}, "invalid_lane"),
    ({"lane": 100}, "invalid_lane"),
    ({"vehicle": {"type": "car", "wheels": 4}}, "invalid_vehicle"),
    ({"id": "has space"}, "invalid_id"),
    ({"speed": 50}, "unknown_field"),
    ({"direction": ...}, "missing_field"),
    ({"checkpoint": ...}, "missing_field"),
])
def test_each_rule_rejects_with_its_code(changes: dict[str, Any], code: str) -> None:
    assert code_of(read(**changes)) == code


def test_five_minutes_ahead_is_still_accepted_and_the_window_edge_too() -> None:
    valid, rejected = check(read(captured_at="2026-11-28T08:05:00Z"),
                            read(captured_at="2026-11-26T08:00:00Z"))
    assert rejected == [] and len(valid) == 2


def test_a_mixed_batch_keeps_every_valid_read_and_names_each_bad_one() -> None:
    items = [read(), "not an object", read(plate="nonsense"), Malformed("malformed JSON: x"),
             read(plate="苏E54321"), read(checkpoint="NOPE")]
    valid, rejected = check(*items)
    assert [i for i, _ in valid] == [0, 4]
    assert [(r.index, r.code) for r in rejected] == [
        (1, "not_an_object"), (2, "invalid_plate"), (3, "malformed_json"),
        (5, "unknown_checkpoint"),
    ]
    assert all(r.detail for r in rejected)


def test_an_invalid_plate_is_not_repeated_in_the_detail() -> None:
    _, rejected = check(read(plate="苏D99"))
    assert "苏D99" not in rejected[0].detail


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-11-28T08:00:00Z", datetime(2026, 11, 28, 8, tzinfo=UTC)),
    ("2026-11-28t08:00:00z", datetime(2026, 11, 28, 8, tzinfo=UTC)),
    ("2026-11-28T16:00:00.5+08:00", datetime(2026, 11, 28, 8, 0, 0, 500000, tzinfo=UTC)),
    ("2026-11-28T08:00:00.123456789-00:30",
     datetime(2026, 11, 28, 8, 30, 0, 123456, tzinfo=UTC)),
])
def test_rfc3339_times_become_utc(text: str, expected: datetime) -> None:
    assert parse_rfc3339(text) == expected


@given(st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1)))
def test_any_naive_time_is_refused(naive: datetime) -> None:
    with pytest.raises(ValidationError) as info:
        ReadIn.model_validate(read(captured_at=naive.isoformat()))
    assert info.value.errors()[0]["type"] in ("captured_at_no_offset", "invalid_captured_at")


# --- batch bodies ------------------------------------------------------------------------


def test_a_json_array_is_read() -> None:
    assert parse_read_batch(json.dumps([read(), read()]).encode(), "application/json") == [
        read(), read()
    ]


def test_ndjson_lines_stand_alone() -> None:
    body = (json.dumps(read()) + "\n\n{broken\n" + json.dumps(read(lane=3)) + "\r\n").encode()
    items = parse_read_batch(body, "application/x-ndjson")
    assert len(items) == 3
    assert isinstance(items[1], Malformed) and items[2]["lane"] == 3


def test_malformed_json_is_a_bad_request() -> None:
    with pytest.raises(BadRequest) as info:
        parse_read_batch(b'[{"plate": ', "application/json")
    assert info.value.status == 400


def test_a_json_object_is_not_a_batch() -> None:
    with pytest.raises(ValidationFailed) as info:
        parse_read_batch(json.dumps(read()).encode(), "application/json")
    assert info.value.status == 422 and info.value.code == "anwang.checkpoints.batch_not_array"


@pytest.mark.parametrize("ctype", ["application/json", "application/x-ndjson"])
def test_more_than_ten_thousand_reads_is_too_large(ctype: str) -> None:
    items = [{}] * 10_001
    body = (json.dumps(items) if ctype == "application/json"
            else "\n".join("{}" for _ in items)).encode()
    with pytest.raises(PayloadTooLarge) as info:
        parse_read_batch(body, ctype)
    assert "10000" in info.value.detail
    exactly = [{}] * 10_000
    ok = (json.dumps(exactly) if ctype == "application/json"
          else "\n".join("{}" for _ in exactly)).encode()
    assert len(parse_read_batch(ok, ctype)) == 10_000


# --- the batch event ---------------------------------------------------------------------


def test_a_batch_survives_the_event_payload() -> None:
    valid, _ = check(read(), read(plate="苏E54321", vehicle={"type": "suv", "make": "BYD"}))
    batch = ReadBatch(received_at=NOW, source="apikey:cam", checkpoints={"C1": CPS["C1"]},
                      reads=[r for _, r in valid])
    payload = json.loads(json.dumps(batch.to_payload()))
    assert ReadBatch.from_payload(payload) == batch
    facts = batch.facts()
    assert [f.plate for f in facts] == ["苏D12345", "苏E54321"]
    assert facts[1].vehicle == {"type": "suv", "make": "BYD"}
    assert facts[0].checkpoint_name == "One" and facts[0].jurisdiction_code == "3201"


def test_a_batch_splits_with_only_its_own_checkpoints() -> None:
    valid, _ = check(*[read(lane=i) for i in range(5)])
    batch = ReadBatch(received_at=NOW, source="s", checkpoints=dict(CPS),
                      reads=[r for _, r in valid])
    parts = batch.split(2)
    assert [len(p.reads) for p in parts] == [2, 2, 1]
    assert all(set(p.checkpoints) == {"C1"} for p in parts)


@given(st.lists(st.uuids().map(str), min_size=1, max_size=30, unique=True), st.randoms())
def test_the_batch_event_id_depends_on_the_reads_not_their_order(
    ids: list[str], rnd: Any
) -> None:
    shuffled = list(ids)
    rnd.shuffle(shuffled)
    assert ev.batch_event_id(ids) == ev.batch_event_id(shuffled)
    assert len(ev.batch_event_id(ids)) <= 40
    if len(ids) > 1:
        assert ev.batch_event_id(ids[1:]) != ev.batch_event_id(ids)


# --- files and area terms ----------------------------------------------------------------


def test_checkpoint_csv_rows() -> None:
    text = ("\ufeffcode,name,kind,lat,lon,directions,lanes\n"
            "A1,One,police_checkpoint,31.7,119.9,in;out,4\n"
            "A2,Two,toll_station,31.8,119.8,,\n"
            "A3,Three,road,31.8,119.8,in,2,surplus\n")
    rows = checkpoint_rows_from_csv(text)
    assert rows[0] == (1, {"code": "A1", "name": "One", "kind": "police_checkpoint",
                           "lat": "31.7", "lon": "119.9", "directions": ["in", "out"],
                           "lanes": "4"})
    assert "directions" not in rows[1][1] and "lanes" not in rows[1][1]
    assert "_extra" in rows[2][1]


def test_checkpoint_geojson_rows() -> None:
    doc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [119.9, 31.7]},
         "properties": {"code": "G1", "name": "G", "kind": "road", "directions": "in"}},
        {"type": "Feature", "geometry": {"type": "LineString", "coordinates": []},
         "properties": {"code": "G2"}},
    ]}
    rows = checkpoint_rows_from_geojson(doc)
    assert rows[0][1]["lat"] == 31.7 and rows[0][1]["lon"] == 119.9
    assert rows[0][1]["directions"] == ["in"]
    assert "_geometry" in rows[1][1]
    with pytest.raises(ValidationFailed):
        checkpoint_rows_from_geojson({"type": "Feature"})


def test_area_terms() -> None:
    assert parse_near("31.7,119.9") == (31.7, 119.9)
    for bad in ("31.7", "a,b", "91,0", "nan,1"):
        with pytest.raises(ValidationFailed):
            parse_near(bad)
    assert len(parse_polygon("119.8,31.7;119.9,31.7;119.9,31.8;")) == 3
    for bad in ("119.8,31.7;119.9,31.7", "0,0;1,1;1,0;0,1", "x,y;1,1;2,2"):
        with pytest.raises(ValidationFailed):
            parse_polygon(bad)
