"""The rules engine: thresholds held for a duration, rates, events, battery, offline,
future timestamps, and state that survives a restart (a JSON round trip)."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from anwang.communities.rules import (
    DEFAULT_RULES,
    DeviceKind,
    DeviceState,
    Reading,
    Rule,
    RuleBook,
    RuleError,
    audience_roles,
    evaluate,
    is_offline,
    merge_rules,
    offline_deadline,
)

T0 = 1_795_850_000.0
NOW = T0 + 86_400.0

OVERHEAT = Rule(id="overheat", type="threshold", alarm="overheat", metric="temperature_c",
                above=80, hold_s=30)
RISE = Rule(id="rise", type="rate", alarm="temperature_rise", metric="temperature_c",
            per_minute=10, window_s=60, min_span_s=20)
BATTERY = Rule(id="battery_low", type="threshold", alarm="maintenance", metric="battery_pct",
               below=20, clear_margin=5)
SMOKE = Rule(id="smoke", type="event", alarm="fire", events=("smoke_alarm",),
             clear_events=("smoke_cleared",))
THROWN = Rule(id="thrown", type="event", alarm="object_thrown", events=("object_thrown",))


def run(rules: list[Rule], readings: list[Reading], state: DeviceState | None = None,
        now: float = NOW) -> tuple[DeviceState, list[tuple[str, str, float]]]:
    ev = evaluate(RuleBook.of(rules), state or DeviceState(), readings, now=now)
    return ev.state, [(t.rule.id, t.action, t.ts) for t in ev.transitions]


def temps(points: list[tuple[float, float]]) -> list[Reading]:
    return [Reading(ts=T0 + t, metrics={"temperature_c": v}) for t, v in points]


# --- thresholds held for a duration ---------------------------------------------------

gaps = st.floats(min_value=0.5, max_value=20, allow_nan=False)
hot_or_not = st.booleans()


@st.composite
def series(draw: st.DrawFn) -> list[tuple[float, float]]:
    n = draw(st.integers(min_value=1, max_value=60))
    t = 0.0
    out = []
    for _ in range(n):
        t += draw(gaps)
        out.append((t, 95.0 if draw(hot_or_not) else 60.0))
    return out


def expected_threshold(points: list[tuple[float, float]], hold: float) -> list[tuple[str, float]]:
    """The alarm as a person would read the chart: it rises at the first reading that
    ends an unbroken stretch of hot readings at least ``hold`` long, and falls at the
    first cool reading after."""
    out: list[tuple[str, float]] = []
    on = False
    run_start: float | None = None
    for t, v in points:
        if v > 80:
            run_start = t if run_start is None else run_start
            if not on and t - run_start >= hold:
                on = True
                out.append(("raise", T0 + t))
        else:
            run_start = None
            if on:
                on = False
                out.append(("clear", T0 + t))
    return out


@given(series())
def test_threshold_fires_after_the_hold_and_clears_when_it_ends(
    points: list[tuple[float, float]],
) -> None:
    _, got = run([OVERHEAT], temps(points))
    assert [(a, t) for _, a, t in got if a != "repeat"] == expected_threshold(points, 30)


@given(series())
def test_repeats_only_while_the_alarm_is_up(points: list[tuple[float, float]]) -> None:
    _, got = run([OVERHEAT], temps(points))
    on = False
    for _, action, _t in got:
        if action == "raise":
            assert not on
            on = True
        elif action == "repeat":
            assert on
        else:
            assert on
            on = False


@given(series(), st.randoms(use_true_random=False))
def test_order_of_arrival_does_not_matter_within_a_batch(
    points: list[tuple[float, float]], rnd: random.Random,
) -> None:
    readings = temps(points)
    shuffled = readings[:]
    rnd.shuffle(shuffled)
    assert run([OVERHEAT, RISE], shuffled)[1] == run([OVERHEAT, RISE], readings)[1]


@given(series(), st.lists(st.integers(min_value=1, max_value=59), max_size=5))
def test_batches_and_restarts_change_nothing(
    points: list[tuple[float, float]], cuts: list[int],
) -> None:
    """Judging a series in one go, or in batches with the state written to JSON and read
    back between them (a restart), gives the same transitions."""
    readings = temps(points)
    _, whole = run([OVERHEAT, RISE, BATTERY], readings)
    state = DeviceState()
    pieces: list[tuple[str, str, float]] = []
    bounds = sorted({c for c in cuts if c < len(readings)} | {0, len(readings)})
    for a, b in zip(bounds, bounds[1:], strict=False):
        state, got = run([OVERHEAT, RISE, BATTERY], readings[a:b], state)
        pieces.extend(got)
        state = DeviceState.from_json(json.loads(json.dumps(state.to_json())))
    assert pieces == whole


def test_a_dip_restarts_the_hold() -> None:
    _, got = run([OVERHEAT], temps([(0, 90), (20, 90), (25, 70), (30, 90), (55, 90), (60, 90)]))
    assert got == [("overheat", "raise", T0 + 60)]


def test_hysteresis_keeps_the_alarm_until_the_margin() -> None:
    rule = OVERHEAT.model_copy(update={"clear_margin": 5, "hold_s": 0})
    _, got = run([rule], temps([(0, 85), (10, 78), (20, 76), (30, 74)]))
    assert got == [("overheat", "raise", T0), ("overheat", "clear", T0 + 30)]


def test_late_readings_do_not_move_thresholds() -> None:
    state, got = run([OVERHEAT], temps([(0, 90), (40, 90)]))
    assert [a for _, a, _ in got] == ["raise"]
    # A redelivery of older readings (and a reading overtaken by a newer one).
    ev = evaluate(RuleBook.of([OVERHEAT]), state, temps([(10, 60), (40, 60)]), now=NOW)
    assert ev.transitions == [] and ev.late == 2
    assert ev.state.to_json() == state.to_json()


def test_the_default_charger_rule_is_80_degrees_for_30_seconds() -> None:
    book = RuleBook.of(DEFAULT_RULES[DeviceKind.CHARGING_PILE])
    overheat = book.get("overheat")
    assert overheat is not None and overheat.above == 80 and overheat.hold_s == 30
    ev = evaluate(book, DeviceState(), temps([(0, 81), (29, 81)]), now=NOW)
    assert "overheat" not in {t.rule.id for t in ev.transitions}
    ev = evaluate(book, ev.state, temps([(30, 81)]), now=NOW)
    assert [(t.rule.id, t.action) for t in ev.transitions] == [("overheat", "raise")]


# --- rates ----------------------------------------------------------------------------


@given(
    slope=st.floats(min_value=-30, max_value=30, allow_nan=False),
    step=st.sampled_from([1.0, 2.0, 5.0, 10.0]),
)
def test_rate_fires_iff_the_rise_per_minute_exceeds_the_limit(slope: float, step: float) -> None:
    assume(abs(slope - 10) > 0.01)
    points = [(i * step, 30 + slope * i * step / 60) for i in range(int(90 / step) + 1)]
    _, got = run([RISE], temps(points))
    raised = [t for _, a, t in got if a == "raise"]
    if slope > 10:
        assert raised, "a steady rise above the limit must raise"
        # ...as soon as the window spans min_span_s.
        assert raised[0] == T0 + min(t for t, _ in points if t >= 20)
    else:
        assert not raised


def test_rate_needs_the_minimum_span() -> None:
    _, got = run([RISE], temps([(0, 30), (5, 40), (10, 50)]))
    assert got == []  # 120 °C/min, but only over 10 s


def test_rate_clears_when_the_rise_stops() -> None:
    pts = [(t, 30 + t / 2) for t in range(0, 61, 5)] + [(t, 60.0) for t in range(65, 200, 5)]
    _, got = run([RISE.model_copy(update={"clear_margin": 5})], temps(pts))
    actions = [a for _, a, _ in got if a != "repeat"]
    assert actions == ["raise", "clear"]


# --- events, battery, offline -----------------------------------------------------------


def test_events_raise_repeat_and_clear() -> None:
    readings = [
        Reading(T0, event="smoke_alarm", detail={"zone": 2}),
        Reading(T0 + 5, event="smoke_alarm"),
        Reading(T0 + 60, event="smoke_cleared"),
        Reading(T0 + 70, event="smoke_cleared"),  # nothing left to clear
        Reading(T0 + 80, event="object_thrown", detail={"floor_estimate": 9}),
        Reading(T0 + 90, event="test"),
    ]
    ev = evaluate(RuleBook.of([SMOKE, THROWN]), DeviceState(), readings, now=NOW)
    assert [(t.rule.id, t.action) for t in ev.transitions] == [
        ("smoke", "raise"), ("smoke", "repeat"), ("smoke", "clear"), ("thrown", "raise"),
    ]
    assert ev.transitions[0].detail == {"event": "smoke_alarm", "zone": 2}
    assert ev.transitions[3].detail == {"event": "object_thrown", "floor_estimate": 9}


def test_forgetting_a_rule_lets_it_fire_anew() -> None:
    state, got = run([THROWN], [Reading(T0, event="object_thrown")])
    state.forget("thrown")  # a person closed the alarm
    _, again = run([THROWN], [Reading(T0 + 5, event="object_thrown")], state)
    assert [a for _, a, _ in again] == ["raise"]


@given(st.lists(st.floats(min_value=0, max_value=100, allow_nan=False), min_size=1,
                max_size=40))
def test_battery_below_20_raises_and_clears_at_25(levels: list[float]) -> None:
    readings = [Reading(T0 + i * 60, metrics={"battery_pct": v}) for i, v in enumerate(levels)]
    _, got = run([BATTERY], readings)
    on = False
    expected = []
    for i, v in enumerate(levels):
        if v < 20 and not on:
            on = True
            expected.append(("raise", T0 + i * 60))
        elif v >= 25 and on:
            on = False
            expected.append(("clear", T0 + i * 60))
    assert [(a, t) for _, a, t in got if a != "repeat"] == expected


@given(
    last=st.floats(min_value=0, max_value=2e9, allow_nan=False),
    heartbeat=st.integers(min_value=10, max_value=86_400),
    missed=st.integers(min_value=1, max_value=10),
    after=st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
)
def test_offline_after_missed_heartbeats(last: float, heartbeat: int, missed: int,
                                          after: float) -> None:
    deadline = offline_deadline(last, heartbeat, missed)
    assert deadline == last + missed * heartbeat
    now = deadline + after
    assert is_offline(last, heartbeat, now, missed) == (now > deadline)


# --- future timestamps ----------------------------------------------------------------


@given(ahead=st.floats(min_value=31, max_value=1e8, allow_nan=False))
def test_future_readings_are_refused_and_leave_no_trace(ahead: float) -> None:
    r = Reading(NOW + ahead, metrics={"temperature_c": 99.0}, event="smoke_alarm")
    ev = evaluate(RuleBook.of([OVERHEAT, SMOKE]), DeviceState(), [r], now=NOW,
                  max_future_s=30)
    assert ev.rejected == [(r, "future_timestamp")]
    assert ev.transitions == [] and ev.state.to_json() == DeviceState().to_json()


def test_nan_timestamps_are_refused() -> None:
    r = Reading(float("nan"), metrics={"temperature_c": 99.0})
    ev = evaluate(RuleBook.of([OVERHEAT]), DeviceState(), [r], now=NOW)
    assert [reason for _, reason in ev.rejected] == ["future_timestamp"]


def test_a_little_clock_skew_is_allowed() -> None:
    r = Reading(NOW + 10, event="smoke_alarm")
    ev = evaluate(RuleBook.of([SMOKE]), DeviceState(), [r], now=NOW, max_future_s=30)
    assert not ev.rejected and len(ev.transitions) == 1


# --- state and rules as data ----------------------------------------------------------


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                 max_size=3),
    max_leaves=10,
)


@given(json_values)
def test_unreadable_state_starts_over_instead_of_failing(raw: object) -> None:
    state = DeviceState.from_json(raw)  # type: ignore[arg-type]
    assert isinstance(state, DeviceState)
    json.dumps(state.to_json())


@settings(max_examples=50)
@given(series())
def test_state_round_trips_through_json(points: list[tuple[float, float]]) -> None:
    state, _ = run([OVERHEAT, RISE], temps(points))
    again = DeviceState.from_json(json.loads(json.dumps(state.to_json())))
    assert again == state


def test_rules_merge_by_id_and_validate() -> None:
    base = DEFAULT_RULES[DeviceKind.CHARGING_PILE]
    merged = merge_rules(base, [{"id": "overheat", "above": 70, "hold_s": 10},
                                {"id": "temperature_rise", "enabled": False}])
    book = RuleBook.of(merged)
    overheat = book.get("overheat")
    assert overheat is not None and (overheat.above, overheat.hold_s) == (70, 10)
    assert book.get("temperature_rise") is None  # disabled
    new = merge_rules(base, [{"id": "hot_cable", "type": "threshold", "alarm": "overheat",
                              "metric": "cable_temperature_c", "above": 60}])
    assert RuleBook.of(new).by_metric["cable_temperature_c"][0].id == "hot_cable"
    with pytest.raises(RuleError) as info:
        merge_rules(base, [{"id": "overheat", "hold_s": -1}])
    assert info.value.field == "hold_s" and info.value.index == 0
    with pytest.raises(RuleError):
        merge_rules(base, [{"id": "new_rule", "above": 3}])  # not a whole rule
    with pytest.raises(RuleError):
        merge_rules(base, [{"id": "overheat", "below": 10}])  # above and below


def test_every_kind_has_offline_and_routes_that_accumulate_roles() -> None:
    for kind in DeviceKind:
        assert RuleBook.of(DEFAULT_RULES[kind]).offline is not None, kind
    assert audience_roles("fire", 0) == ("business", "grid_worker")
    assert audience_roles("fire", 1) == ("business", "grid_worker", "dispatcher")
    assert audience_roles("police", 1) == ("business", "grid_worker", "officer", "dispatcher")
    assert audience_roles("police", 9)[-1] == "commander"
    assert audience_roles("maintenance", 3) == ("business", "grid_worker")
