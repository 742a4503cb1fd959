"""The demo city's watch list: a few approved entries that the traffic simulator's
vehicles carry, so that the demo shows alerts.

:data:`DEMO_ENTRIES` is the contract with the simulator: a simulated vehicle with one of
these plates (:func:`demo_plates` gives plates that match each entry) raises an alert
when a checkpoint reads it. All are fictitious.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from anwang.core.events import utcnow
from anwang.watchlist import service
from anwang.watchlist.models import WatchEntry

SOURCE = "demo"
LEGAL_BASIS = "Demonstration data: fictitious entries of the anwang demo city"


@dataclass(frozen=True)
class DemoEntry:
    pattern: str
    reason: str
    priority: int
    case_ref: str
    vehicle: dict[str, str]
    #: A plate that matches the pattern (the pattern itself for exact entries).
    example_plate: str


DEMO_ENTRIES: tuple[DemoEntry, ...] = (
    DemoEntry("苏D8A2K7", "stolen_vehicle", 1, "DEMO-2026-0101",
              {"colour": "白色", "make": "丰田", "model": "凯美瑞", "type": "轿车"},
              "苏D8A2K7"),
    DemoEntry("苏DD12345", "hit_and_run", 1, "DEMO-2026-0102",
              {"colour": "灰色", "make": "比亚迪", "model": "秦", "type": "轿车",
               "notes": "右前保险杠受损"}, "苏DD12345"),
    DemoEntry("皖B7Q351", "stolen_plate", 2, "DEMO-2026-0103",
              {"colour": "蓝色", "type": "轻型货车"}, "皖B7Q351"),
    DemoEntry("沪A3C926", "missing_person", 1, "DEMO-2026-0104",
              {"colour": "黑色", "make": "大众", "model": "帕萨特"}, "沪A3C926"),
    DemoEntry("苏D?58*", "wanted_case", 2, "DEMO-2026-0105",
              {"colour": "红色", "type": "SUV", "notes": "目击者只记得部分号牌"},
              "苏DQ5808"),
)


def demo_plates() -> list[str]:
    """One plate per demo entry that the entry matches (for the traffic simulator)."""
    return [e.example_plate for e in DEMO_ENTRIES]


def load_demo_entries(
    session: Session, *, owner: str, approver: str, days: int = 90,
    now: datetime | None = None,
) -> int:
    """Create and approve the demo entries that are not live yet; returns how many.

    ``owner`` (an analyst) proposes, ``approver`` (a commander) approves — the same two
    steps as for any entry, audited the same way. Safe to run again.
    """
    now = now or utcnow()
    live = set(session.scalars(
        select(WatchEntry.pattern).where(
            WatchEntry.source == SOURCE,
            WatchEntry.status.in_([s.value for s in service.LIVE]),
        )
    ))
    made = 0
    for demo in DEMO_ENTRIES:
        pattern, _ = service.normalise_pattern(demo.pattern)
        if pattern in live:
            continue
        entry = service.create_entry(
            session, pattern=demo.pattern, reason=demo.reason, legal_basis=LEGAL_BASIS,
            case_ref=demo.case_ref, priority=demo.priority,
            expires_at=now + timedelta(days=days), vehicle=demo.vehicle, actor=owner,
            actor_role="analyst", max_days=days, now=now,
        )
        entry.source = SOURCE
        service.approve_entry(session, entry_id=entry.id, actor=approver,
                              actor_role="commander", now=now)
        made += 1
    return made
