"""The transparency report counts what is in the data and the audit trail — and nothing
that identifies anyone. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text

from anwang.core.errors import ValidationFailed
from anwang.core.events import utcnow
from anwang.core.scope import Scope
from anwang.settings import Settings
from anwang.transparency import service as transparency
from tests.integration.transparency.kit import SECRETS, City
from tests.integration.watchlist.kit import Kit


def test_every_figure_comes_from_the_data_and_the_audit_trail(city: City) -> None:
    r = city.report()
    body = r.model_dump_json(by_alias=True)
    for secret in SECRETS:
        assert secret not in body, f"the report contains {secret!r}"

    assert (r.checkpoints.total, r.checkpoints.active) == (3, 2)
    assert {k: (v.total, v.active) for k, v in r.checkpoints.by_kind.items()} == {
        "police_checkpoint": (2, 1), "toll_station": (1, 1)}

    assert (r.reads.stored, r.reads.stored_with_hit, r.reads.stored_without_hit) == (3, 1, 2)
    assert (r.reads.purged, r.reads.purge_runs) == (2, 1)
    assert r.retention.read_retention_hours == city.settings.read_retention_hours
    assert r.retention.alert_retention_days == getattr(city.settings, "alert_retention_days",
                                                       None)

    wl = r.watchlist
    assert wl.active.by_reason == {"missing_person": 1, "stolen_vehicle": 1}
    assert wl.active.total == 2
    assert wl.created.by_reason == {"missing_person": 1, "stolen_vehicle": 2, "wanted_case": 1}
    assert wl.approved.by_reason == {"missing_person": 1, "stolen_vehicle": 2}
    assert wl.revoked.by_reason == {"stolen_vehicle": 1}
    assert (wl.created.total, wl.approved.total, wl.revoked.total, wl.expired.total) == (
        4, 3, 1, 0)

    a = r.alerts
    assert (a.raised, a.hits) == (2, 3)
    assert a.hits_by_reason == {"missing_person": 1, "stolen_vehicle": 2}
    assert a.by_status == {"closed": 1, "open": 1}
    assert a.by_outcome == {"confirmed": 0, "misread": 1, "not_located": 0, "duplicate": 0}

    s, e = r.access.searches, r.access.exports
    assert (s.total, s.by_reason, s.reads_returned) == (
        3, {"court_order": 1, "stolen_vehicle": 2}, 3)
    assert (e.total, e.by_reason, e.reads_returned) == (1, {"investigation": 1}, 2)

    assert r.audit.verified is True
    assert r.audit.head_seq == r.audit.verified_through_seq > 0
    assert len(r.audit.head_hash) == 64 and r.audit.bad_seq is None


def test_a_search_with_a_reason_adds_one_to_that_reason(city: City) -> None:
    before = city.report().access
    city.search("court_order")
    after = city.report().access
    assert after.searches.by_reason["court_order"] == before.searches.by_reason[
        "court_order"] + 1
    assert after.searches.by_reason["stolen_vehicle"] == before.searches.by_reason[
        "stolen_vehicle"]
    assert after.searches.total == before.searches.total + 1
    assert after.exports == before.exports
    # A refused search (no listed reason) is not recorded, so it is not counted.
    with pytest.raises(ValidationFailed):
        city.search("curiosity")
    assert city.report().access.searches.total == after.searches.total


def test_the_period_decides_what_the_trail_counts(city: City) -> None:
    # A report that ended before anything happened counts nothing from the trail.
    early = city.report(days=1, at=city.t0 - timedelta(hours=1))
    assert early.access.searches.total == early.access.exports.total == 0
    assert early.watchlist.created.total == 0 and early.reads.purged == 0
    assert early.period.days == 1
    assert early.period.end - early.period.start == timedelta(days=1)
    # The stored read from 40 days ago counts in a 366-day report only.
    assert city.report(days=366).reads.stored == city.report(days=30).reads.stored + 1


def test_an_edited_audit_entry_is_reported(city: City) -> None:
    if city.db.dialect == "postgresql":
        # The trigger refuses edits; take it out of the way as an intruder would.
        with city.db.engine.begin() as c:
            c.execute(text("ALTER TABLE audit_log DISABLE TRIGGER USER"))
    try:
        with city.db.engine.begin() as c:
            c.execute(text("UPDATE audit_log SET reason = 'investigation' WHERE seq = 3"))
        r = city.report()
        assert r.audit.verified is False and r.audit.bad_seq == 3
    finally:
        if city.db.dialect == "postgresql":
            with city.db.engine.begin() as c:
                c.execute(text("ALTER TABLE audit_log ENABLE TRIGGER USER"))


def test_the_chain_check_resumes_where_it_stopped(city: City) -> None:
    watch = transparency.ChainWatch(budget=5)
    with city.db.unit_of_work(readonly=True, info={"scope": Scope(None)}) as s:
        first = transparency.check_chain(s, watch=watch)
        assert first.verified is None and first.verified_through_seq == 5
        while True:
            got = transparency.check_chain(s, watch=watch)
            if got.verified is not None:
                break
        assert got.verified is True and got.verified_through_seq == got.head_seq
    # New entries are checked on the next round, from where the last one stopped.
    city.search("hit_and_run")
    with city.db.unit_of_work(readonly=True, info={"scope": Scope(None)}) as s:
        again = transparency.check_chain(s, watch=watch)
    assert again.verified is True and again.head_seq == got.head_seq + 1


def test_a_shortened_trail_is_reported_as_broken(city: City) -> None:
    def check(watch: transparency.ChainWatch) -> tuple[bool | None, int | None]:
        with city.db.unit_of_work(readonly=True, info={"scope": Scope(None)}) as s:
            got = transparency.check_chain(s, watch=watch)
        return got.verified, got.bad_seq

    seen = transparency.ChainWatch()
    assert check(seen) == (True, None)
    if city.db.dialect == "postgresql":
        with city.db.engine.begin() as c:
            c.execute(text("ALTER TABLE audit_log DISABLE TRIGGER USER"))
    try:
        with city.db.engine.begin() as c:
            last = c.execute(text("SELECT seq, prev_hash FROM audit_log ORDER BY seq DESC "
                                  "LIMIT 1")).one()
            c.execute(text("DELETE FROM audit_log WHERE seq = :s"), {"s": last.seq})
        # The head still names the removed entry.
        assert check(transparency.ChainWatch()) == (False, last.seq)
        with city.db.engine.begin() as c:
            c.execute(text("UPDATE audit_head SET seq = :s, hash = :h"),
                      {"s": last.seq - 1, "h": last.prev_hash})
        # The head moved back too: consistent for a newcomer (only a signed checkpoint
        # can tell), but not for a process that has already verified the removed entry.
        assert check(transparency.ChainWatch()) == (True, None)
        assert check(seen) == (False, last.seq)
    finally:
        if city.db.dialect == "postgresql":
            with city.db.engine.begin() as c:
                c.execute(text("ALTER TABLE audit_log ENABLE TRIGGER USER"))


def test_an_empty_installation_has_an_empty_report(kit: Kit, settings: Settings) -> None:
    with kit.db.unit_of_work(readonly=True, info={"scope": Scope(None)}) as s:
        r = transparency.build_report(s, settings=settings, now=utcnow())
    assert r.checkpoints.total == r.reads.stored == r.alerts.raised == 0
    assert r.access.searches.total == 0 and r.audit.verified is True
