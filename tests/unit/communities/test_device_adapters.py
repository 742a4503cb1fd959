"""Each adapter against recorded sample payloads (``samples/<adapter>/``), and the
refusals every adapter shares: not JSON, wrong types, impossible values, bad times."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from anwang.communities import adapters
from anwang.communities.adapters import METRIC_LIMITS, Reason, Rejected
from anwang.communities.rules import Reading

SAMPLES = Path(__file__).parent / "samples"
RECEIVED = datetime(2026, 11, 28, 8, 35, tzinfo=UTC).timestamp()


def ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def parse(adapter: str, sample: str, channel: str = "up") -> list[Reading]:
    payload = (SAMPLES / adapter / sample).read_bytes()
    a = adapters.get(adapter)
    assert a is not None
    return a.parse(channel, payload, received_at=RECEIVED)


def refused(adapter: str, sample: str, channel: str = "up") -> Rejected:
    with pytest.raises(Rejected) as info:
        parse(adapter, sample, channel)
    return info.value


def test_every_adapter_is_registered_with_its_kinds() -> None:
    names = set(adapters.adapters())
    assert names == {"native", "sentry_smoke", "nbiot_smoke", "voltpile", "ocpp16"}
    smoke = [n for n, a in adapters.adapters().items() if "smoke_alarm" in a.KINDS]
    piles = [n for n, a in adapters.adapters().items() if "charging_pile" in a.KINDS]
    assert len(smoke) >= 3 and len(piles) >= 3  # native + two vendors each


# --- anwang's own format --------------------------------------------------------------


def test_native_telemetry() -> None:
    [r] = parse("native", "telemetry_charger.json", "telemetry")
    assert r.ts == ts("2026-11-28T08:30:05+00:00")
    assert r.metrics == {"temperature_c": 41.5, "power_w": 820, "voltage_v": 221.3,
                         "current_a": 3.7}
    assert r.event is None


def test_native_event_keeps_its_detail() -> None:
    [r] = parse("native", "event_object_thrown.json", "events")
    assert r.event == "object_thrown" and r.metrics is None
    assert r.detail is not None and r.detail["floor_estimate"] == 12
    assert r.ts == ts("2026-11-28T08:30:00.250+00:00")


def test_native_buffered_upload_is_one_reading_each() -> None:
    rs = parse("native", "telemetry_buffered.json", "telemetry")
    assert [r.metrics["tilt_deg"] for r in rs if r.metrics] == [2.5, 2.6, 31.0]
    assert rs[2].ts - rs[0].ts == 600


def test_native_heartbeat_empty_or_with_battery() -> None:
    native = adapters.get("native")
    assert native is not None
    assert native.parse("heartbeat", b"", received_at=RECEIVED) == []
    [r] = parse("native", "heartbeat_battery.json", "heartbeat")
    assert r.metrics == {"battery_pct": 18}


@pytest.mark.parametrize(("sample", "reason", "field"), [
    ("bad_wrong_type.json", Reason.WRONG_TYPE, "metrics.temperature_c"),
    ("bad_impossible.json", Reason.IMPOSSIBLE_VALUE, "metrics.temperature_c"),
    ("bad_negative_battery.json", Reason.IMPOSSIBLE_VALUE, "metrics.battery_pct"),
    ("bad_naive_time.json", Reason.BAD_TIMESTAMP, "ts"),
])
def test_native_refusals(sample: str, reason: Reason, field: str) -> None:
    exc = refused("native", sample, "telemetry")
    assert exc.reason == reason
    assert exc.field == field


@pytest.mark.parametrize(("channel", "payload", "reason"), [
    ("telemetry", b"{not json", Reason.NOT_JSON),
    ("telemetry", b"\xff\xfe", Reason.NOT_JSON),
    ("telemetry", b"[1, 2]", Reason.BAD_SHAPE),
    ("telemetry", b'{"metrics": {"temperature_c": 20}}', Reason.BAD_SHAPE),
    ("telemetry", b'{"ts": 1795854600, "metrics": {}}', Reason.WRONG_TYPE),
    ("telemetry", b'{"ts": "2026-11-28T08:00:00Z"}', Reason.BAD_SHAPE),
    ("telemetry", b'{"ts": "2026-11-28T08:00:00Z", "metrics": {"t": true}}',
     Reason.WRONG_TYPE),
    ("telemetry", b'{"ts": "2026-11-28T08:00:00Z", "metrics": {"T-emp": 1}}',
     Reason.BAD_SHAPE),
    ("events", b'{"ts": "2026-11-28T08:00:00Z", "event": 7}', Reason.WRONG_TYPE),
    ("events", b'{"ts": "2026-11-28T08:00:00Z", "event": "DROP TABLE"}',
     Reason.UNKNOWN_EVENT),
    ("events", b'{"ts": "yesterday", "event": "cover_open"}', Reason.BAD_TIMESTAMP),
    ("status", b"{}", Reason.BAD_TOPIC),
    ("telemetry", b" " * (adapters.MAX_PAYLOAD_BYTES + 1), Reason.TOO_LARGE),
])
def test_native_refuses_bad_input(channel: str, payload: bytes, reason: Reason) -> None:
    native = adapters.get("native")
    assert native is not None
    with pytest.raises(Rejected) as info:
        native.parse(channel, payload, received_at=RECEIVED)
    assert info.value.reason == reason


@given(st.binary(max_size=300))
def test_native_never_fails_other_than_by_refusing(payload: bytes) -> None:
    for name in adapters.adapters():
        a = adapters.get(name)
        assert a is not None
        for channel in ("telemetry", "events", "heartbeat", "up"):
            try:
                out = a.parse(channel, payload, received_at=RECEIVED)
            except Rejected:
                continue
            assert isinstance(out, list)


@given(st.sampled_from(sorted(METRIC_LIMITS)), st.floats(allow_nan=False, allow_infinity=False))
def test_known_metrics_are_refused_exactly_outside_their_limits(name: str, value: float) -> None:
    native = adapters.get("native")
    assert native is not None
    body = json.dumps({"ts": "2026-11-28T08:00:00Z", "metrics": {name: value}}).encode()
    lo, hi = METRIC_LIMITS[name]
    if lo <= value <= hi:
        [r] = native.parse("telemetry", body, received_at=RECEIVED)
        assert r.metrics == {name: value}
    else:
        with pytest.raises(Rejected) as info:
            native.parse("telemetry", body, received_at=RECEIVED)
        assert info.value.reason == Reason.IMPOSSIBLE_VALUE


# --- smoke alarms ---------------------------------------------------------------------


def test_sentry_alarm_and_metrics() -> None:
    [r] = parse("sentry_smoke", "alarm.json")
    assert r.event == "smoke_alarm"
    assert r.ts == pytest.approx(1795854600.123)
    assert r.metrics == {"smoke_obscuration_pct_m": 4.2, "temperature_c": 31.5,
                         "battery_pct": 86, "signal_dbm": -71}


def test_sentry_heartbeat_restore_and_removal() -> None:
    [hb] = parse("sentry_smoke", "heartbeat.json")
    assert hb.event is None and hb.metrics is not None and hb.metrics["battery_pct"] == 87
    [restore] = parse("sentry_smoke", "restore.json")
    assert restore.event == "smoke_cleared" and restore.metrics is None
    [removed] = parse("sentry_smoke", "fault_removed.json")
    assert removed.event == "removed" and removed.detail == {"code": "E09"}


def test_sentry_refuses_a_time_sent_as_text() -> None:
    assert refused("sentry_smoke", "bad_seconds_as_string.json").reason == Reason.WRONG_TYPE


def test_nbiot_single_report() -> None:
    [r] = parse("nbiot_smoke", "smoke_alarm.json")
    assert r.event == "smoke_alarm"
    assert r.metrics == {"temperature_c": 29.0}
    assert r.ts == ts("2026-11-28T08:30:00+00:00")


def test_nbiot_buffered_reports_in_order() -> None:
    rs = parse("nbiot_smoke", "buffered.json")
    assert [(r.event, r.metrics) for r in rs] == [
        (None, {"signal_dbm": -97}),
        (None, {"battery_pct": 19}),
        ("tamper", None),
        ("smoke_cleared", None),
    ]
    assert rs[2].detail == {"fault_type": "tamper"}
    assert rs[3].ts - rs[0].ts == 1200


def test_nbiot_refuses_an_impossible_battery() -> None:
    exc = refused("nbiot_smoke", "bad_battery.json")
    assert exc.reason == Reason.IMPOSSIBLE_VALUE and exc.field == "metrics.battery_pct"


# --- charging piles -------------------------------------------------------------------


def test_voltpile_aggregates_the_guns() -> None:
    [r] = parse("voltpile", "report_charging.json")
    assert r.ts == 1795854600
    assert r.metrics == {"temperature_c": 52.0, "power_w": 6800.0, "current_a": 30.9,
                         "voltage_v": 220.4}


def test_voltpile_alarm_codes_become_events() -> None:
    rs = parse("voltpile", "report_alarms.json")
    assert rs[0].metrics is not None and rs[0].metrics["temperature_c"] == 88.5
    events = [(r.event, (r.detail or {}).get("code")) for r in rs[1:]]
    # OVER_TEMP adds no event: the temperature rules judge the measured value.
    assert events == [("ground_fault", "GROUND_FAULT"), ("fault", "E-417")]


def test_voltpile_refuses_power_as_text() -> None:
    exc = refused("voltpile", "bad_power_type.json")
    assert exc.reason == Reason.WRONG_TYPE and exc.field == "guns[0].power"


def test_ocpp_meter_values_convert_units() -> None:
    first, second = parse("ocpp16", "meter_values.json")
    assert first.ts == ts("2026-11-28T08:30:00+00:00")
    assert first.metrics == {"temperature_c": 41.5, "power_w": 7200.0, "current_a": 31.9,
                             "voltage_v": 229.8, "energy_kwh": 12.845}
    assert second.metrics == {"temperature_c": 50.0, "soc_pct": 88.0}


def test_ocpp_status_notifications() -> None:
    [gf] = parse("ocpp16", "status_ground_fault.json")
    assert gf.event == "ground_fault" and gf.ts == ts("2026-11-28T08:32:10+00:00")
    assert gf.detail is not None and gf.detail["error_code"] == "GroundFailure"
    [ok] = parse("ocpp16", "status_available.json")
    assert ok.event == "available" and ok.ts == RECEIVED  # no timestamp: time of receipt
    assert parse("ocpp16", "heartbeat.json") == []


def test_ocpp_refusals() -> None:
    assert refused("ocpp16", "bad_not_a_call.json").reason == Reason.BAD_SHAPE
    assert refused("ocpp16", "bad_value.json").reason == Reason.WRONG_TYPE


# --- JSON as RFC 8259 has it, and where a refusal points ---------------------------------


@pytest.mark.parametrize("payload", [
    b'{"ts": "2026-11-28T08:00:00Z", "metrics": {"temperature_c": NaN}}',
    b'{"ts": "2026-11-28T08:00:00Z", "metrics": {"temperature_c": Infinity}}',
    b'{"ts": "2026-11-28T08:00:00Z", "metrics": {"temperature_c": 1e400}}',
    b'{"ts": "2026-11-28T08:00:00Z", "event": "\\ud800"}',
])
def test_what_is_not_json_is_refused_as_such(payload: bytes) -> None:
    native = adapters.get("native")
    assert native is not None
    with pytest.raises(Rejected) as info:
        native.parse("telemetry", payload, received_at=RECEIVED)
    assert info.value.reason == Reason.NOT_JSON


def test_a_byte_order_mark_is_skipped() -> None:
    native = adapters.get("native")
    assert native is not None
    [r] = native.parse("telemetry", b'\xef\xbb\xbf{"ts": "2026-11-28T08:00:00Z", '
                       b'"metrics": {"battery_pct": 50}}', received_at=RECEIVED)
    assert r.metrics == {"battery_pct": 50.0}
    assert r.ts == ts("2026-11-28T08:00:00+00:00")


@pytest.mark.parametrize(("adapter", "payload", "field"), [
    ("voltpile", {"pileNo": "p", "ts": 1795854600,
                  "guns": [{"gun": 1, "temp": 30}, {"gun": 2, "temp": "hot"}]}, "guns[1].temp"),
    ("voltpile", {"pileNo": "p", "ts": 1795854600, "guns": [{"gun": 1}, 7]}, "guns[1]"),
    ("sentry_smoke", {"msgType": "HEARTBEAT", "time": 1795854600000,
                      "data": {"battery": "full"}}, "data.battery"),
    ("nbiot_smoke", {"notifyType": "deviceDatasChanged", "services": [
        {"serviceId": "Battery", "eventTime": "20261128T083000Z", "data": {"battery_level": 50}},
        {"serviceId": "Battery", "eventTime": "20261128T0830Z", "data": {}}]},
     "services[1].eventTime"),
    ("nbiot_smoke", {"notifyType": "deviceDataChanged", "service": {
        "serviceId": "Smoke", "eventTime": "20261128T083000Z",
        "data": {"smoke_state": 1, "temperature": True}}}, "services[0].data.temperature"),
    ("ocpp16", [2, "x", "MeterValues", {"connectorId": 1, "meterValue": [
        {"timestamp": "2026-11-28T08:00:00Z", "sampledValue": [{"value": "1"}]},
        {"timestamp": "2026-11-28T08:00:10Z", "sampledValue": [
            {"value": "2"}, {"value": "many", "measurand": "Voltage"}]}]}],
     "meterValue[1].sampledValue[1].value"),
    ("ocpp16", [2, "x", "MeterValues", {"connectorId": 1, "meterValue": [
        {"timestamp": "yesterday", "sampledValue": []}]}], "meterValue[0].timestamp"),
    ("native", [{"ts": "2026-11-28T08:00:00Z", "metrics": {"tilt_deg": 1}},
                {"ts": "2026-11-28T08:00:10Z", "metrics": {"tilt_deg": "x"}}],
     "[1]metrics.tilt_deg"),
])
def test_a_refusal_names_the_field(adapter: str, payload: object, field: str) -> None:
    a = adapters.get(adapter)
    assert a is not None
    channel = "telemetry" if adapter == "native" else "up"
    with pytest.raises(Rejected) as info:
        a.parse(channel, json.dumps(payload).encode(), received_at=RECEIVED)
    assert info.value.field == field
    assert field in str(info.value)
