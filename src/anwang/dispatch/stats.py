"""Response times (received → first unit on scene) against the 1/3/5-minute targets.

Counted over the incidents that reached the scene in the period and lie in the
caller's jurisdiction, per district and per local hour of receipt (the configured time
zone). For each group: how many, the median and 90th percentile in seconds, and the
share within each target. Incidents still waiting are counted apart (``pending``), as
the targets are missed for them too.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from anwang.auth import service as auth_service
from anwang.dispatch.config import RESPONSE_TARGETS_MIN, IncidentStatus
from anwang.dispatch.models import Incident


def _summary(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"count": 0, "median_s": None, "p90_s": None,
                "within": {str(m): None for m in RESPONSE_TARGETS_MIN}}
    a = np.asarray(values, dtype=np.float64)
    return {
        "count": int(a.size),
        "median_s": round(float(np.median(a)), 1),
        "p90_s": round(float(np.percentile(a, 90)), 1),
        "within": {str(m): round(float((a <= m * 60).mean()), 4) for m in RESPONSE_TARGETS_MIN},
    }


def response_times(
    session: Session, *, since: datetime, until: datetime, tz: ZoneInfo
) -> dict[str, Any]:
    rows = session.execute(
        select(Incident.district_code, Incident.received_at, Incident.response_s,
               Incident.status)
        .where(Incident.received_at >= since, Incident.received_at < until)
    ).all()
    by_district: dict[str, list[float]] = defaultdict(list)
    by_hour: dict[int, list[float]] = defaultdict(list)
    every: list[float] = []
    pending = 0
    for district, received, response, status in rows:
        if response is None:
            if status in (IncidentStatus.RECEIVED, IncidentStatus.DISPATCHED,
                          IncidentStatus.EN_ROUTE):
                pending += 1
            continue
        by_district[district or ""].append(float(response))
        by_hour[received.astimezone(tz).hour].append(float(response))
        every.append(float(response))
    names = {j.code: j.name for j in auth_service.list_jurisdictions(session, level="district")}
    return {
        "since": since.isoformat(),
        "until": until.isoformat(),
        "timezone": str(tz.key),
        "targets_min": list(RESPONSE_TARGETS_MIN),
        "overall": {**_summary(every), "pending": pending},
        "districts": [
            {"code": code, "name": names.get(code, code or "—"), **_summary(v)}
            for code, v in sorted(by_district.items())
        ],
        "hours": [{"hour": h, **_summary(by_hour.get(h, []))} for h in range(24)],
    }
