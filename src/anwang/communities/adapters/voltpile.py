""""VoltPile" AC/DC charging piles (e-bike and car), as the pile's controller reports.

One JSON object per report, on any channel::

    {"pileNo": "VP-0012", "ts": 1795853872,
     "guns": [{"gun": 1, "status": "charging", "temp": 45.2, "power": 6.8,
               "voltage": 220.4, "current": 30.9},
              {"gun": 2, "status": "idle", "temp": 31.0}],
     "boardTemp": 52.0, "alarms": ["GROUND_FAULT"]}

``ts`` is epoch **seconds**. A pile has one or more guns (sockets); anwang watches the
pile as one device, so the metrics are the pile's worst or total: ``temperature_c`` is
the hottest of the guns and the control board, ``power_w`` the sum of the guns' kW ×
1000, ``current_a`` the sum, ``voltage_v`` the highest. The per-gun figures are kept in
the reading's detail when there is an event.

``alarms`` lists the controller's alarm codes: ``SMOKE`` → ``smoke_alarm``,
``GROUND_FAULT`` → ``ground_fault``, ``ARC_FAULT`` → ``arc_fault``, ``OVER_CURRENT`` →
``overcurrent``; ``OVER_TEMP`` adds nothing (the temperature rules judge the measured
temperature themselves); any other code is a ``fault`` with the code in the detail.
"""

from __future__ import annotations

from typing import Any

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

NAME = "voltpile"
KINDS = frozenset({"charging_pile"})
MAX_GUNS = 16
_CODES = {
    "SMOKE": "smoke_alarm",
    "GROUND_FAULT": "ground_fault",
    "ARC_FAULT": "arc_fault",
    "OVER_CURRENT": "overcurrent",
    "OVER_TEMP": None,
}


def parse(channel: str, payload: bytes, *, received_at: float) -> list[Reading]:
    obj = need_object(load_json(payload), "payload")
    if "ts" not in obj:
        raise Rejected(Reason.BAD_SHAPE, "ts is missing", field="ts")
    ts = epoch(obj["ts"], "ts")
    guns = obj.get("guns", [])
    if not isinstance(guns, list):
        raise Rejected(Reason.WRONG_TYPE, "guns must be a list", field="guns")
    if len(guns) > MAX_GUNS:
        raise Rejected(Reason.BAD_SHAPE, f"more than {MAX_GUNS} guns", field="guns")
    temps: list[float] = []
    power = current = 0.0
    volts: list[float] = []
    seen_power = seen_current = False
    for i, raw in enumerate(guns):
        gun = need_object(raw, "guns[%d]", i)
        if gun.get("temp") is not None:
            temps.append(check_metric("temperature_c", number(gun["temp"], "guns[%d].temp", i)))
        if gun.get("power") is not None:
            p = number(gun["power"], "guns[%d].power", i) * 1000.0
            power += check_metric("power_w", p)
            seen_power = True
        if gun.get("current") is not None:
            current += check_metric("current_a", number(gun["current"], "guns[%d].current", i))
            seen_current = True
        if gun.get("voltage") is not None:
            volts.append(check_metric("voltage_v",
                                      number(gun["voltage"], "guns[%d].voltage", i)))
    if obj.get("boardTemp") is not None:
        temps.append(check_metric("temperature_c", number(obj["boardTemp"], "boardTemp")))
    metrics: dict[str, float] = {}
    if temps:
        metrics["temperature_c"] = max(temps)
    if seen_power:
        metrics["power_w"] = check_metric("power_w", round(power, 3))
    if seen_current:
        metrics["current_a"] = check_metric("current_a", round(current, 3))
    if volts:
        metrics["voltage_v"] = max(volts)
    readings = [Reading(ts, metrics or None)]
    alarms = obj.get("alarms", [])
    if not isinstance(alarms, list) or not all(isinstance(a, str) for a in alarms):
        raise Rejected(Reason.WRONG_TYPE, "alarms must be a list of codes", field="alarms")
    for code in dict.fromkeys(alarms):  # each code once, in order
        event = _CODES.get(code, "fault")
        if event is None:
            continue
        detail: dict[str, Any] = {"code": code[:30], "guns": guns}
        readings.append(Reading(ts, None, event, detail))
    return readings
