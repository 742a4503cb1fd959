"""Simulated community devices: what ``anwang simulate devices`` publishes.

:class:`DeviceTraffic` is the pure generator (seeded, no clock of its own, no I/O): each
call to :meth:`DeviceTraffic.next` picks a device and says what it sends now, as the
topic and the payload *in the device's own format* (anwang's native one or a vendor's,
:mod:`anwang.communities.adapters`), so the demo exercises every adapter.

What devices say:

* smoke alarms: a heartbeat report with battery and room temperature;
* charging piles: telemetry — temperature drifting with the load, power, current;
* manhole covers and gate sensors: a heartbeat with battery (covers: tilt);
* falling-object cameras: a heartbeat;

and, for ``fault_share`` of the messages, something happens: smoke (cleared a few
messages later), a charger overheating (a ramp past 80 °C held long enough to raise the
alarm), a cover lifted (closed again later), an object thrown with a floor estimate, a
gate forced open, a battery running low, or a device fault.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from anwang.communities.intake import TOPIC_PREFIX


@dataclass(frozen=True)
class SimDevice:
    id: str
    kind: str
    adapter: str
    floor: int | None = None


@dataclass
class _Memory:
    """What a simulated device is in the middle of."""

    temperature: float = 35.0
    battery: float = 90.0
    #: Remaining messages of an overheating ramp, or of an open cover / smoke.
    episode: int = 0
    episode_kind: str | None = None


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


@dataclass
class DeviceTraffic:
    devices: list[SimDevice]
    seed: int = 7
    fault_share: float = 0.002
    rnd: random.Random = field(init=False)
    _mem: dict[str, _Memory] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        if not self.devices:
            raise ValueError("no devices to simulate")
        self.rnd = random.Random(self.seed)

    def _memory(self, d: SimDevice) -> _Memory:
        m = self._mem.get(d.id)
        if m is None:
            m = self._mem[d.id] = _Memory(temperature=self.rnd.uniform(25, 45),
                                          battery=self.rnd.uniform(35, 100))
        return m

    def next(self, now: float) -> tuple[str, bytes]:
        """The next message: (topic, payload), stamped ``now`` (epoch seconds)."""
        d = self.devices[self.rnd.randrange(len(self.devices))]
        return self.message(d, now)

    def message(self, d: SimDevice, now: float) -> tuple[str, bytes]:
        m = self._memory(d)
        event: str | None = None
        detail: dict[str, Any] | None = None
        m.battery = max(1.0, m.battery - self.rnd.uniform(0, 0.01))
        if m.episode > 0:
            m.episode -= 1
            if m.episode == 0:
                event = {"smoke": "smoke_cleared", "cover": "cover_closed",
                         "gate": "closed"}.get(m.episode_kind or "")
                if m.episode_kind == "heat":
                    m.temperature = 45.0
                m.episode_kind = None
        elif self.rnd.random() < self.fault_share:
            event, detail = self._incident(d, m)
        if m.episode_kind == "heat":
            m.temperature = min(120.0, m.temperature + self.rnd.uniform(2.0, 4.0))
        else:
            m.temperature += self.rnd.uniform(-0.4, 0.4)
            m.temperature = min(60.0, max(15.0, m.temperature))
        return self._encode(d, m, now, event, detail)

    def _incident(self, d: SimDevice, m: _Memory) -> tuple[str | None, dict[str, Any] | None]:
        r = self.rnd.random()
        if r < 0.15:
            m.battery = self.rnd.uniform(5, 19)
            return None, None
        if r < 0.25:
            return "fault", {"code": "E0" + str(self.rnd.randint(1, 8))}
        if d.kind == "smoke_alarm":
            m.episode, m.episode_kind = self.rnd.randint(3, 10), "smoke"
            return "smoke_alarm", None
        if d.kind == "charging_pile":
            m.episode, m.episode_kind = 40, "heat"
            return None, None
        if d.kind == "manhole_cover":
            m.episode, m.episode_kind = self.rnd.randint(5, 30), "cover"
            return "cover_open", None
        if d.kind == "throw_camera":
            return "object_thrown", {"floor_estimate": self.rnd.randint(3, 28),
                                     "confidence": round(self.rnd.uniform(0.6, 0.98), 2)}
        if d.kind == "gate_sensor":
            m.episode, m.episode_kind = self.rnd.randint(3, 20), "gate"
            return "forced_open", None
        return None, None

    # --- formats ----------------------------------------------------------------------

    def _encode(self, d: SimDevice, m: _Memory, now: float, event: str | None,
                detail: dict[str, Any] | None) -> tuple[str, bytes]:
        topic = f"{TOPIC_PREFIX}{d.id}/"
        if d.adapter == "sentry_smoke":
            kinds = {None: "HEARTBEAT", "smoke_alarm": "ALARM", "smoke_cleared": "RESTORE",
                     "fault": "FAULT"}
            body: Any = {"devId": d.id.upper(), "msgType": kinds.get(event, "HEARTBEAT"),
                         "time": int(now * 1000),
                         "data": {"temp": round(m.temperature * 0.6, 1),
                                  "battery": round(m.battery),
                                  "smokeDensity": 3.5 if event == "smoke_alarm" else 0.02,
                                  "rssi": -self.rnd.randint(60, 95)}}
            if event == "fault":
                body["data"]["faultCode"] = (detail or {}).get("code", "E01")
            return topic + "up", _dump(body)
        if d.adapter == "nbiot_smoke":
            stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%SZ")
            if event in ("smoke_alarm", "smoke_cleared"):
                svc = {"serviceId": "Smoke", "data": {"smoke_state": int(event == "smoke_alarm")}}
            elif event == "fault":
                svc = {"serviceId": "Fault", "data": {"fault_type": "sensor", "fault_state": 1}}
            else:
                svc = {"serviceId": "Battery", "data": {"battery_level": round(m.battery)}}
            svc["serviceType"] = svc["serviceId"]
            svc["eventTime"] = stamp
            return topic + "up", _dump({"notifyType": "deviceDataChanged", "deviceId": d.id,
                                        "service": svc})
        if d.adapter == "voltpile":
            power = round(self.rnd.uniform(0, 7.0), 2)
            body = {"pileNo": d.id, "ts": int(now),
                    "guns": [{"gun": 1, "status": "charging" if power > 0.5 else "idle",
                              "temp": round(m.temperature, 1), "power": power,
                              "voltage": round(self.rnd.uniform(215, 232), 1),
                              "current": round(power * 1000 / 220, 1)}],
                    "alarms": ["GROUND_FAULT"] if event == "fault" else []}
            return topic + "up", _dump(body)
        if d.adapter == "ocpp16":
            if event == "fault":
                return topic + "up", _dump([2, _mid(self.rnd), "StatusNotification",
                                            {"connectorId": 1, "errorCode": "GroundFailure",
                                             "status": "Faulted", "timestamp": _iso(now)}])
            power = round(self.rnd.uniform(0, 7200))
            return topic + "up", _dump([2, _mid(self.rnd), "MeterValues", {
                "connectorId": 1, "meterValue": [{"timestamp": _iso(now), "sampledValue": [
                    {"value": f"{m.temperature:.1f}", "measurand": "Temperature",
                     "unit": "Celsius"},
                    {"value": str(power), "measurand": "Power.Active.Import", "unit": "W"},
                ]}]}])
        # anwang's own format
        if event is not None:
            body = {"ts": _iso(now), "event": event}
            if detail:
                body["detail"] = detail
            return topic + "events", _dump(body)
        if d.kind == "charging_pile":
            power = round(self.rnd.uniform(0, 7000))
            return topic + "telemetry", _dump({"ts": _iso(now), "metrics": {
                "temperature_c": round(m.temperature, 1), "power_w": power,
                "current_a": round(power / 220, 1)}})
        metrics: dict[str, float] = {"battery_pct": round(m.battery, 1)}
        if d.kind == "manhole_cover":
            metrics["tilt_deg"] = round(self.rnd.uniform(0, 3), 1)
        if d.kind == "throw_camera":
            metrics = {}
        return topic + "heartbeat", _dump({"ts": _iso(now), **({"metrics": metrics}
                                                               if metrics else {})})


def _dump(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _mid(rnd: random.Random) -> str:
    return f"{rnd.getrandbits(32):08x}"
