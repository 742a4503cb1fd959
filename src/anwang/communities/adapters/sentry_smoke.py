""""Sentry" S-series smoke detectors, as their vendor cloud forwards them.

One JSON object per message, on any channel::

    {"devId": "S3-00A1F2", "msgType": "ALARM", "time": 1795853872123,
     "data": {"smokeDensity": 0.42, "temp": 27.5, "battery": 86, "rssi": -71,
              "faultCode": "E04"}}

``time`` is epoch **milliseconds**. ``msgType``: ``HEARTBEAT`` (periodic report),
``ALARM`` (smoke), ``RESTORE`` (smoke gone), ``FAULT`` (``faultCode`` says which;
``E09`` is the detector removed from its base), ``FAULT_RESTORE``, ``TEST`` (button).
``data`` is optional; each field in it becomes a metric: ``smokeDensity`` (%/m) →
``smoke_obscuration_pct_m``, ``temp`` → ``temperature_c``, ``battery`` →
``battery_pct``, ``rssi`` → ``signal_dbm``. ``devId`` is the vendor's serial; the topic
says which anwang device sent it.
"""

from __future__ import annotations

from anwang.communities.adapters import (
    Reason,
    Rejected,
    check_metric,
    epoch,
    load_json,
    need_object,
    number,
)
from anwang.communities.rules import Reading

NAME = "sentry_smoke"
KINDS = frozenset({"smoke_alarm"})

_EVENTS = {
    "HEARTBEAT": None,
    "ALARM": "smoke_alarm",
    "RESTORE": "smoke_cleared",
    "FAULT": "fault",
    "FAULT_RESTORE": "fault_cleared",
    "TEST": "test",
}
_METRICS = {
    "smokeDensity": "smoke_obscuration_pct_m",
    "temp": "temperature_c",
    "battery": "battery_pct",
    "rssi": "signal_dbm",
}
#: The fault code of a detector taken off its base.
REMOVED = "E09"


def parse(channel: str, payload: bytes, *, received_at: float) -> list[Reading]:
    obj = need_object(load_json(payload), "payload")
    kind = obj.get("msgType")
    if not isinstance(kind, str):
        raise Rejected(Reason.BAD_SHAPE, "msgType is missing", field="msgType")
    if kind not in _EVENTS:
        raise Rejected(Reason.UNKNOWN_EVENT, kind[:40], field="msgType")
    if "time" not in obj:
        raise Rejected(Reason.BAD_SHAPE, "time is missing", field="time")
    ts = epoch(obj["time"], "time", millis=True)
    data = need_object(obj.get("data") or {}, "data")
    metrics = {
        name: check_metric(name, number(data[key], "data.%s", key))
        for key, name in _METRICS.items() if key in data and data[key] is not None
    }
    event = _EVENTS[kind]
    detail = None
    if kind in ("FAULT", "FAULT_RESTORE"):
        code = data.get("faultCode")
        if code is not None and not isinstance(code, str):
            raise Rejected(Reason.WRONG_TYPE, "faultCode must be a string", field="data.faultCode")
        if code is not None:
            detail = {"code": code[:20]}
            if kind == "FAULT" and code == REMOVED:
                event = "removed"
    return [Reading(ts, metrics or None, event, detail)]
