"""Factories of the transparency tests (not a test module): a city with checkpoints,
stored and purged reads, watch-list entries, alerts, searches and an export — every kind
of figure the report counts — built through the owning packages' services, so that the
audit trail is the real one.

The identifying strings used here (plates, case references, user names, legal bases)
are collected in :data:`SECRETS`; no report may contain any of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from anwang.alerts import service as alerts
from anwang.alerts.models import Alert
from anwang.checkpoints import search, storage
from anwang.checkpoints import service as checkpoints
from anwang.checkpoints.models import PlateRead
from anwang.checkpoints.schemas import CheckpointCreate, CheckpointUpdate
from anwang.core.db import Database
from anwang.core.events import utcnow
from anwang.core.scope import Scope
from anwang.settings import Settings
from anwang.transparency import service as transparency
from anwang.transparency.schemas import TransparencyReport
from anwang.watchlist import service as wl
from tests.integration.watchlist.kit import WEST, Kit, read

STOLEN = "苏D12345"
MISSING = "苏E54321"
PENDING = "苏F11111"
REVOKED = "苏G22222"
SEARCH_CASE = "XING-2026-0042"
EXPORT_CASE = "XING-2026-0099"
#: Strings that identify someone or something; the report must contain none of them.
SECRETS = (STOLEN, MISSING, PENDING, REVOKED, "D12345", SEARCH_CASE, EXPORT_CASE, "CASE-1",
           "court order 1", '"ana"', '"cmd"', "ana2", "legal_basis", "case_ref")


@dataclass
class City:
    kit: Kit
    settings: Settings
    #: When the data was made; reports are computed a little later.
    t0: datetime

    @property
    def db(self) -> Database:
        return self.kit.db

    def report(self, days: int = 30, *, at: datetime | None = None) -> TransparencyReport:
        now = at or utcnow()
        with self.db.unit_of_work(readonly=True, info={"scope": Scope(None)}) as s:
            return transparency.build_report(s, settings=self.settings, now=now, days=days)

    def search(self, reason: str, *, plate: str = STOLEN, export: str | None = None,
               case_ref: str = SEARCH_CASE) -> int:
        with self.db.unit_of_work(info={"scope": Scope(None)}) as s:
            found = search.search_reads(
                s, terms=search.SearchTerms(case_ref=case_ref, reason=reason, plate=plate,
                                            start=self.t0 - timedelta(days=10),
                                            end=utcnow()),
                reasons=self.settings.read_search_reasons, actor="ana2",
                actor_role="analyst", jurisdiction=None, export=export,
            )
            return found.count


def _store(s: Session, code: str, plate: str, at: datetime, *, hit: bool = False) -> None:
    """One stored read, written directly (the ingest path refuses reads older than the
    retention window, and these are meant to be purged)."""
    storage.ensure_partitions(s, days=[storage.day_of(at)])  # PostgreSQL: one per day
    s.add(PlateRead(
        id=f"{code}-{plate}-{at.timestamp()}", checkpoint_code=code, captured_at=at,
        received_at=at, plate=plate, plate_kind="ordinary", plate_color="blue",
        confidence=0.95, lane=1, direction="in", lat=WEST["lat"], lon=WEST["lon"],
        jurisdiction_code=WEST["jurisdiction_code"], hit=hit,
    ))


def build_city(kit: Kit, settings: Settings) -> City:
    """What the report of the last 30 days must show:

    - checkpoints: 2 police checkpoints (1 deactivated), 1 toll station;
    - reads: 3 stored from the period (1 with a hit), 1 from before it (not counted),
      2 deleted by one purge round (audited), so ``purged`` 2 and ``purge_runs`` 1;
    - watch list: stolen_vehicle ×2 (one active, one revoked), missing_person ×1
      active, wanted_case ×1 pending; created 4, approved 3, revoked 1;
    - alerts: 2 raised (stolen_vehicle with 2 hits, missing_person with 1), the first
      closed as misread, the second still open;
    - searches: 2 for ``stolen_vehicle``, 1 for ``court_order``; 1 CSV export for
      ``investigation``.
    """
    t0 = utcnow()
    with kit.db.unit_of_work(info={"scope": Scope(None)}) as s:
        for code, kind, lat in (("CP-W1", "police_checkpoint", 31.75),
                                ("CP-W2", "police_checkpoint", 31.74),
                                ("CP-T1", "toll_station", 31.73)):
            checkpoints.create_checkpoint(s, data=CheckpointCreate(
                code=code, name=f"卡口 {code}", kind=kind, lat=lat, lon=119.85), actor="adm")
        checkpoints.update_checkpoint(s, code="CP-W2", changes=CheckpointUpdate(active=False),
                                      actor="adm")
        _store(s, "CP-W1", STOLEN, t0 - timedelta(hours=2), hit=True)
        _store(s, "CP-W1", "苏A00001", t0 - timedelta(hours=1))
        _store(s, "CP-T1", "苏A00002", t0 - timedelta(minutes=30))
        _store(s, "CP-W1", "苏A00003", t0 - timedelta(days=3))  # purged below
        _store(s, "CP-W1", "苏A00004", t0 - timedelta(days=3, hours=1))  # purged below
        _store(s, "CP-W1", STOLEN, t0 - timedelta(days=40), hit=True)  # before the period
    with kit.db.unit_of_work(info={"scope": Scope(None)}) as s:
        assert checkpoints.purge_reads(s, retention_hours=48, now=t0).deleted == 2
        assert checkpoints.purge_reads(s, retention_hours=48, now=t0).deleted == 0

    kit.entry(STOLEN, now=t0, reason="stolen_vehicle")
    kit.entry(MISSING, now=t0, reason="missing_person")
    kit.entry(PENDING, now=t0, reason="wanted_case", approve=False)
    revoked = kit.entry(REVOKED, now=t0, reason="stolen_vehicle")
    with kit.db.unit_of_work() as s:
        wl.revoke_entry(s, entry_id=revoked, actor="cmd", actor_role="commander", now=t0)

    def hit(plate: str, at: datetime) -> str:
        r = read(plate, at, where=WEST)
        with kit.db.unit_of_work() as s:
            [(_, hits)] = wl.match_reads(s, reads=[r])
            alerts.raise_for_hits(s, read=r, hits=hits, dedupe_minutes=10, now=at)
            alert = s.scalars(select(Alert).where(Alert.entry_id == hits[0].entry_id)).one()
            return alert.id

    first = hit(STOLEN, t0)
    assert hit(STOLEN, t0 + timedelta(seconds=30)) == first  # deduplicated: a second hit
    hit(MISSING, t0)
    with kit.db.unit_of_work() as s:
        alerts.acknowledge_alert(s, alert_id=first, actor="cmd", actor_role="commander")
        alerts.close_alert(s, alert_id=first, outcome="misread", actor="cmd",
                           actor_role="commander", note=f"{STOLEN} was 苏D12346")

    city = City(kit=kit, settings=settings, t0=t0)
    assert city.search("stolen_vehicle") == 1
    assert city.search("stolen_vehicle", plate="苏D1234*") == 1
    assert city.search("court_order", plate="苏A00001") == 1
    assert city.search("investigation", plate="苏A0000*", export="csv",
                       case_ref=EXPORT_CASE) == 2
    return city
