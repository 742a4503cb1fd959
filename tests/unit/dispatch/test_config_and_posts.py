"""The taxonomy file, staffed hours, demand rows and response-time summaries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from anwang.core.errors import ValidationFailed
from anwang.dispatch.config import DEFAULT_TYPES, load_config, parse_config
from anwang.dispatch.models import Post
from anwang.dispatch.posts import (
    check_demand_row,
    format_staffed,
    parse_demand_csv,
    parse_staffed,
    staffed_at,
)
from anwang.dispatch.stats import _summary


def test_default_taxonomy() -> None:
    cfg = parse_config({})
    codes = {t.code for t in cfg.types}
    assert {"theft", "burglary", "assault", "traffic_accident", "fire", "medical",
            "disturbance", "suspicious_vehicle"} <= codes
    assert all(1 <= t.priority <= 4 and t.unit_kinds for t in DEFAULT_TYPES)
    assert cfg.type("fire").priority == 1
    with pytest.raises(ValidationFailed) as e:
        cfg.type("ufo")
    assert e.value.errors[0].field == "type"


def test_the_file_overrides_and_is_reread(tmp_path: Path) -> None:
    assert load_config(tmp_path).stale_position_minutes == 10
    path = tmp_path / "dispatch.json"
    path.write_text(json.dumps({
        "incident_types": [{"code": "flood", "priority": 2, "unit_kinds": ["swat"]}],
        "stale_position_minutes": 4, "timezone": "Asia/Urumqi"}), encoding="utf-8")
    cfg = load_config(tmp_path)
    assert [t.code for t in cfg.types] == ["flood"] and cfg.stale_position_minutes == 4
    assert str(cfg.tz) == "Asia/Urumqi"
    path.write_text(json.dumps({"incident_types": [
        {"code": "a", "priority": 9, "unit_kinds": ["swat"]},
        {"code": "b", "priority": 1, "unit_kinds": ["tank"]}], "timezone": "Mars/Base"}),
        encoding="utf-8")
    with pytest.raises(ValidationFailed) as e:
        load_config(tmp_path)
    assert [x.field for x in e.value.errors] == [
        "incident_types[0].priority", "incident_types[1].unit_kinds", "timezone"]


@given(st.integers(0, 1439), st.integers(1, 1440))
def test_staffed_hours_round_trip(start: int, end: int) -> None:
    if start == end:
        return
    text = format_staffed(start, end)
    assert parse_staffed(text) == (start, end) or (start, end) == (0, 1440)


@pytest.mark.parametrize("bad", ["7-19", "07:00", "07:00-07:00", "24:30-01:00", "ab:cd-01:00"])
def test_bad_staffed_hours(bad: str) -> None:
    with pytest.raises(ValidationFailed):
        parse_staffed(bad)


def test_staffed_at_wraps_past_midnight() -> None:
    night = Post(staffed_from=22 * 60, staffed_to=6 * 60)
    assert staffed_at(night, 23 * 60) and staffed_at(night, 60) and not staffed_at(night, 12 * 60)
    day = Post(staffed_from=7 * 60, staffed_to=19 * 60)
    assert staffed_at(day, 7 * 60) and not staffed_at(day, 19 * 60)
    assert parse_staffed("") == (0, 1440) and parse_staffed("24h") == (0, 1440)


def test_demand_rows() -> None:
    rows, errors = parse_demand_csv("lat,lon,weight,label\n31.7,119.9,3,a\n31.7,x,1,\n"
                                    "31.7,119.9,-1,\n31.7,119.9,,\n")
    assert [r.weight for r in rows] == [3.0, 1.0]
    assert [(e["line"], e["field"]) for e in errors] == [(3, "lon"), (4, "weight")]
    with pytest.raises(ValidationFailed):
        parse_demand_csv("x,y\n1,2\n")
    with pytest.raises(ValidationFailed):
        check_demand_row(95, 0, 1)


def test_response_summary() -> None:
    s = _summary([30.0, 120.0, 200.0, 400.0])
    assert s["count"] == 4 and s["median_s"] == 160.0
    assert s["within"] == {"1": 0.25, "3": 0.5, "5": 0.75}
    assert _summary([])["median_s"] is None
