"""Charging points that speak OCPP 1.6J, relayed onto MQTT by a charging gateway.

Each message is one OCPP-J CALL frame as the charge point sent it
(``[2, "<unique id>", "<action>", {payload}]``; OCPP-J 1.6 §4.2.1). Actions used:

``MeterValues``
    ``{"connectorId": 1, "meterValue": [{"timestamp": "<RFC 3339>", "sampledValue":
    [{"value": "41.5", "measurand": "Temperature", "unit": "Celsius"}, ...]}]}`` — each
    ``meterValue`` is one reading (a charge point sends several after being offline).
    Values are decimal strings (OCPP 1.6 §7.45). Measurands: ``Temperature`` (Celsius,
    Fahrenheit or K) → ``temperature_c``; ``Power.Active.Import`` (W or kW) →
    ``power_w``; ``Current.Import`` (A) → ``current_a``; ``Voltage`` (V) →
    ``voltage_v``; ``SoC`` (Percent) → ``soc_pct``; ``Energy.Active.Import.Register``
    (Wh or kWh) → ``energy_kwh``. Others are skipped. A ``sampledValue`` without a
    measurand is the energy register, as the standard says.
``StatusNotification``
    ``{"connectorId": 1, "errorCode": "GroundFailure", "status": "Faulted",
    "timestamp": "..."}`` — ``GroundFailure`` → ``ground_fault``,
    ``OverCurrentFailure`` → ``overcurrent``, any other error with ``Faulted`` →
    ``fault``; ``Charging`` → ``charging_started``; ``Available`` / ``Finishing`` with
    ``NoError`` → ``available`` (which clears a fault). ``timestamp`` is optional in
    OCPP; without it the time of receipt is used.
``Heartbeat``, ``BootNotification``, any other action
    Heartbeats: nothing to judge.
"""

from __future__ import annotations

from typing import Any

from anwang.communities.adapters import (
    Reason,
    Rejected,
    check_metric,
    load_json,
    need_object,
    numeric_text,
    rfc3339,
)
from anwang.communities.rules import Reading

NAME = "ocpp16"
KINDS = frozenset({"charging_pile"})
MAX_METER_VALUES = 500

#: Where a sampled value is, for messages (made only when one is refused).
_SAMPLE = "meterValue[%d].sampledValue[%d]"
_ERRORS = {"GroundFailure": "ground_fault", "OverCurrentFailure": "overcurrent"}


def _temperature(v: float, unit: str | None) -> float:
    if unit in (None, "Celsius"):
        return v
    if unit == "Fahrenheit":
        return (v - 32.0) * 5.0 / 9.0
    if unit == "K":
        return v - 273.15
    raise Rejected(Reason.BAD_SHAPE, f"temperature unit {unit[:20]!r}")


def _scaled(v: float, unit: str | None, base: str) -> float:
    """``v`` in the base unit (W, Wh, A, V): a ``k`` prefix multiplies by 1000."""
    if unit in (None, base):
        return v
    if unit == "k" + base:
        return v * 1000.0
    raise Rejected(Reason.BAD_SHAPE, f"unit {unit[:20]!r} for {base}")


def _sample(sv: Any, i: int, j: int) -> tuple[str, float] | None:
    """Sampled value ``j`` of meter value ``i``: (metric, value), or None to skip."""
    obj = need_object(sv, _SAMPLE, i, j)
    measurand = obj.get("measurand", "Energy.Active.Import.Register")
    unit = obj.get("unit")
    if unit is not None and not isinstance(unit, str):
        raise Rejected(Reason.WRONG_TYPE, "unit must be a string",
                       field=f"{_SAMPLE % (i, j)}.unit")
    if "value" not in obj:
        raise Rejected(Reason.BAD_SHAPE, "value is missing", field=f"{_SAMPLE % (i, j)}.value")
    v = numeric_text(obj["value"], _SAMPLE + ".value", i, j)
    if measurand == "Temperature":
        return "temperature_c", round(_temperature(v, unit), 3)
    if measurand == "Power.Active.Import":
        return "power_w", _scaled(v, unit, "W")
    if measurand == "Current.Import":
        return "current_a", _scaled(v, unit, "A")
    if measurand == "Voltage":
        return "voltage_v", _scaled(v, unit, "V")
    if measurand == "SoC":
        return "soc_pct", v
    if measurand == "Energy.Active.Import.Register":
        return "energy_kwh", _scaled(v, unit, "Wh") / 1000.0
    return None


def _meter_values(body: dict[str, Any]) -> list[Reading]:
    mvs = body.get("meterValue")
    if not isinstance(mvs, list) or not mvs:
        raise Rejected(Reason.BAD_SHAPE, "meterValue must be a non-empty list",
                       field="meterValue")
    if len(mvs) > MAX_METER_VALUES:
        raise Rejected(Reason.BAD_SHAPE, f"more than {MAX_METER_VALUES} meter values",
                       field="meterValue")
    out = []
    for i, raw in enumerate(mvs):
        mv = need_object(raw, "meterValue[%d]", i)
        ts = rfc3339(mv.get("timestamp"), "meterValue[%d].timestamp", i)
        samples = mv.get("sampledValue")
        if not isinstance(samples, list):
            raise Rejected(Reason.BAD_SHAPE, "sampledValue must be a list",
                           field=f"meterValue[{i}].sampledValue")
        metrics: dict[str, float] = {}
        for j, sv in enumerate(samples):
            got = _sample(sv, i, j)
            if got is not None:
                name, value = got
                metrics[name] = check_metric(name, value)
        out.append(Reading(ts, metrics or None))
    return out


def _status(body: dict[str, Any], received_at: float) -> list[Reading]:
    ts = rfc3339(body["timestamp"], "timestamp") if "timestamp" in body else received_at
    error = body.get("errorCode")
    status = body.get("status")
    if not isinstance(error, str) or not isinstance(status, str):
        raise Rejected(Reason.BAD_SHAPE, "errorCode and status are required")
    detail = {"connector": body.get("connectorId"), "error_code": error[:40],
              "status": status[:30]}
    if error in _ERRORS:
        event: str | None = _ERRORS[error]
    elif error != "NoError" and status == "Faulted":
        event = "fault"
    elif status == "Charging":
        event = "charging_started"
    elif status in ("Available", "Finishing") and error == "NoError":
        event = "available"
    else:
        event = None
    return [Reading(ts, None, event, detail)] if event else []


def parse(channel: str, payload: bytes, *, received_at: float) -> list[Reading]:
    frame = load_json(payload)
    if (not isinstance(frame, list) or len(frame) != 4 or frame[0] != 2
            or not isinstance(frame[2], str)):
        raise Rejected(Reason.BAD_SHAPE, "not an OCPP-J CALL frame [2, id, action, payload]")
    action = frame[2]
    body = need_object(frame[3], "payload")
    if action == "MeterValues":
        return _meter_values(body)
    if action == "StatusNotification":
        return _status(body, received_at)
    return []
