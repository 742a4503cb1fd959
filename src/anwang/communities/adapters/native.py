"""anwang's own device format (``docs/devices.md``), by channel:

``telemetry``
    ``{"ts": "<RFC 3339>", "metrics": {"temperature_c": 41.5, "power_w": 820}}``
``events``
    ``{"ts": "<RFC 3339>", "event": "smoke_alarm", "detail": {...}}``
``heartbeat``
    empty, or ``{"ts": "<RFC 3339>"}`` with optional ``"metrics"`` (say, the battery).

Any of them may instead carry a list of such objects (a buffered upload). Unknown keys
are ignored so that devices can add fields without being refused.
"""

from __future__ import annotations

from typing import Any

from anwang.communities.adapters import (
    Reason,
    Rejected,
    is_name,
    load_json,
    metrics_of,
    need_object,
    rfc3339,
)
from anwang.communities.rules import Reading

NAME = "native"
KINDS = frozenset({"smoke_alarm", "charging_pile", "manhole_cover", "throw_camera",
                   "gate_sensor"})
CHANNELS = frozenset({"telemetry", "events", "heartbeat"})
#: Most readings in one buffered upload.
MAX_BATCH = 1000


def parse(channel: str, payload: bytes, *, received_at: float) -> list[Reading]:
    if channel not in CHANNELS:
        raise Rejected(Reason.BAD_TOPIC, f"channel {channel[:30]!r}")
    if channel == "heartbeat" and not payload.strip():
        return []
    doc = load_json(payload)
    if not isinstance(doc, list):
        return [_one(channel, doc, None)]
    if len(doc) > MAX_BATCH:
        raise Rejected(Reason.BAD_SHAPE, f"more than {MAX_BATCH} readings in one message")
    return [_one(channel, item, i) for i, item in enumerate(doc)]


def _one(channel: str, raw: Any, index: int | None) -> Reading:
    where = "" if index is None else f"[{index}]"
    obj = need_object(raw, "payload%s", where)
    if "ts" not in obj:
        raise Rejected(Reason.BAD_SHAPE, "ts is missing", field=f"{where}ts")
    ts = rfc3339(obj["ts"], "%sts", where)
    if channel == "events":
        event = obj.get("event")
        if not isinstance(event, str):
            raise Rejected(Reason.BAD_SHAPE if event is None else Reason.WRONG_TYPE,
                           "event must be a name", field=f"{where}event")
        if not is_name(event):
            raise Rejected(Reason.UNKNOWN_EVENT, event[:40], field=f"{where}event")
        detail = obj.get("detail")
        if detail is not None:
            need_object(detail, "%sdetail", where)
        return Reading(ts, None, event, detail or None)
    if channel == "telemetry":
        if "metrics" not in obj:
            raise Rejected(Reason.BAD_SHAPE, "metrics is missing", field=f"{where}metrics")
        return Reading(ts, metrics_of(obj["metrics"], "%smetrics", where))
    metrics = metrics_of(obj["metrics"], "%smetrics", where) if "metrics" in obj else None
    return Reading(ts, metrics or None)
