"""Watch-list entries through the service: approval, expiry, revocation and matching."""

from __future__ import annotations

import gc
from datetime import timedelta

import pytest
from sqlalchemy import select

from anwang.core.errors import Conflict, PermissionDenied, ValidationFailed
from anwang.watchlist import service as wl
from anwang.watchlist.models import WatchEntry
from tests.integration.watchlist.kit import EAST, NOW, Kit, read


def test_an_entry_matches_only_once_a_second_person_approved_it(kit: Kit) -> None:
    entry_id = kit.entry("苏D12345", approve=False)
    assert kit.match(read("苏D12345")) == {}
    with kit.db.unit_of_work() as s, pytest.raises(PermissionDenied) as exc:
        wl.approve_entry(s, entry_id=entry_id, actor="ana", now=NOW)
    assert exc.value.code == "anwang.watchlist.own_entry"
    assert kit.match(read("苏D12345")) == {}
    with kit.db.unit_of_work() as s:
        wl.approve_entry(s, entry_id=entry_id, actor="cmd", actor_role="commander", now=NOW)
    r = read("苏D12345")
    assert kit.match(r) == {r.read_id: [(entry_id, "exact", 1)]}
    # Approving twice is a conflict, not a second approval.
    with kit.db.unit_of_work() as s, pytest.raises(Conflict):
        wl.approve_entry(s, entry_id=entry_id, actor="cmd2", now=NOW)
    assert kit.actions(wl.subject_of(entry_id)) == [
        "anwang.watchlist.entry.created", "anwang.watchlist.entry.approved"]
    assert kit.audit_ok()


def test_revoked_entries_stop_matching_at_once(kit: Kit) -> None:
    entry_id = kit.entry("苏D12345")
    r = read("苏D12345")
    assert r.read_id in kit.match(r)
    with kit.db.unit_of_work() as s:
        wl.revoke_entry(s, entry_id=entry_id, actor="ana", reason="vehicle recovered", now=NOW)
    assert kit.match(read("苏D12345")) == {}
    with kit.db.unit_of_work() as s, pytest.raises(Conflict):
        wl.revoke_entry(s, entry_id=entry_id, actor="ana", now=NOW)
    assert kit.actions(wl.subject_of(entry_id))[-1] == "anwang.watchlist.entry.revoked"


def test_only_the_owner_or_an_approver_may_revoke(kit: Kit) -> None:
    entry_id = kit.entry("苏D12345")
    with kit.db.unit_of_work() as s, pytest.raises(PermissionDenied) as exc:
        wl.revoke_entry(s, entry_id=entry_id, actor="ana2", actor_role="analyst", now=NOW)
    assert exc.value.code == "anwang.watchlist.not_owner"
    with kit.db.unit_of_work() as s:
        wl.revoke_entry(s, entry_id=entry_id, actor="cmd2", actor_role="commander", now=NOW)


def test_expiry_is_honoured_to_the_second(kit: Kit) -> None:
    entry_id = kit.entry("苏D12345", days=1)
    expires = NOW + timedelta(days=1)
    before = read("苏D12345", expires - timedelta(seconds=1))
    at = read("苏D12345", expires)
    after = read("苏D12345", expires + timedelta(seconds=1))
    assert kit.match(before, at, after) == {before.read_id: [(entry_id, "exact", 1)]}
    # Marked expired by the periodic step (audited), it stays out of the index.
    with kit.db.unit_of_work() as s:
        assert wl.expire_entries(s, now=expires - timedelta(seconds=1)) == 0
    with kit.db.unit_of_work() as s:
        assert wl.expire_entries(s, now=expires) == 1
    assert kit.match(before) == {}
    with kit.db.unit_of_work() as s:
        assert s.get(WatchEntry, entry_id).status == "expired"  # type: ignore[union-attr]
    assert kit.actions(wl.subject_of(entry_id))[-1] == "anwang.watchlist.entry.expired"


def test_pending_entries_expire_too_and_renewal_needs_approval_again(kit: Kit) -> None:
    entry_id = kit.entry("苏D12345", days=1)
    later = NOW + timedelta(days=2)
    with kit.db.unit_of_work() as s:
        assert wl.expire_entries(s, now=later) == 1
        entry = wl.renew_entry(s, entry_id=entry_id, expires_at=later + timedelta(days=10),
                               actor="ana", actor_role="analyst", now=later)
        assert entry.status == "pending" and entry.approved_by is None
    assert kit.match(read("苏D12345", later)) == {}
    with kit.db.unit_of_work() as s:
        wl.approve_entry(s, entry_id=entry_id, actor="cmd", now=later)
    assert kit.match(read("苏D12345", later))


def test_renewal_is_limited_to_the_maximum(kit: Kit) -> None:
    entry_id = kit.entry("苏D12345")
    with kit.db.unit_of_work() as s, pytest.raises(ValidationFailed) as exc:
        wl.renew_entry(s, entry_id=entry_id, expires_at=NOW + timedelta(days=91),
                       actor="ana", now=NOW, max_days=90)
    assert exc.value.errors[0].field == "expires_at"
    with kit.db.unit_of_work() as s:
        entry = wl.renew_entry(s, entry_id=entry_id, expires_at=NOW + timedelta(days=90),
                               actor="ana", now=NOW, max_days=90)
        assert entry.status == "active"
    assert kit.match(read("苏D12345", NOW + timedelta(days=80)))


@pytest.mark.parametrize(("field", "change"), [
    ("legal_basis", {"legal_basis": "  "}),
    ("case_ref", {"case_ref": ""}),
    ("expires_at", {"expires_at": None}),
    ("expires_at", {"expires_at": NOW - timedelta(seconds=1)}),
    ("expires_at", {"expires_at": NOW + timedelta(days=90, seconds=1)}),
    ("pattern", {"pattern": "苏D12"}),
    ("pattern", {"pattern": "??*"}),
    ("priority", {"priority": 4}),
    ("reason", {"reason": "curiosity"}),
    ("recipients.roles[0]", {"recipient_roles": ["auditor"]}),
    ("recipients.jurisdictions[0]", {"recipient_jurisdictions": ["9999"]}),
])
def test_an_entry_without_what_the_law_requires_is_refused(
    kit: Kit, field: str, change: dict[str, object]
) -> None:
    args: dict[str, object] = {
        "pattern": "苏D12345", "reason": "stolen_vehicle", "legal_basis": "warrant",
        "case_ref": "C-1", "priority": 1, "expires_at": NOW + timedelta(days=30),
        "actor": "ana", "now": NOW, "max_days": 90,
    }
    args.update(change)
    with kit.db.unit_of_work() as s, pytest.raises(ValidationFailed) as exc:
        wl.create_entry(s, **args)  # type: ignore[arg-type]
    assert exc.value.errors[0].field == field
    with kit.db.unit_of_work() as s:
        assert s.scalar(select(WatchEntry.id)) is None


def test_approximate_and_partial_hits_never_carry_priority_1(kit: Kit) -> None:
    exact = kit.entry("苏D12345", priority=1)
    partial = kit.entry("苏D?23*", priority=1)
    hit_exact, hit_approx = read("苏D12345"), read("苏DI2345")  # I, read where a 1 was
    # "苏DI2345" normalises to 苏D12345 in the plate rules; a camera that read "Z" for
    # "2" gives an approximate hit instead:
    hit_confused = read("苏D1Z345")
    got = kit.match(hit_exact, hit_approx, hit_confused)
    assert (exact, "exact", 1) in got[hit_exact.read_id]
    assert (partial, "partial", 2) in got[hit_exact.read_id]
    assert got[hit_confused.read_id] == [(exact, "approximate", 2)]
    for hits in got.values():
        for _, kind, priority in hits:
            assert kind == "exact" or priority >= 2


def test_another_province_is_another_vehicle(kit: Kit) -> None:
    kit.entry("苏D12345")
    assert kit.match(read("浙D12345")) == {}


def test_partial_patterns_read_i_and_o_in_the_serial_as_the_plate_rules_do(kit: Kit) -> None:
    pattern, kind = wl.normalise_pattern("苏D?O2*")
    assert (pattern, kind) == ("苏D?02*", wl.PatternKind.PARTIAL)
    entry_id = kit.entry("苏D?O2*", priority=2)
    r = read("苏DA0234")
    assert kit.match(r) == {r.read_id: [(entry_id, "partial", 2)]}


def test_the_index_follows_changes_made_by_another_process(kit: Kit) -> None:
    first = kit.entry("苏D12345")
    assert kit.match(read("苏D12345"))
    # A change the in-process hook does not see (as if another process had made it):
    # the counter says so, and the index catches up within CHECK_INTERVAL.
    with kit.db.unit_of_work() as s:
        wl.revoke_entry(s, entry_id=first, actor="ana", now=NOW)
        s.info.pop("after_commit", None)
    cached = wl._indexes[kit.db.engine]
    cached.checked -= wl.CHECK_INTERVAL
    assert kit.match(read("苏D12345")) == {}
    assert cached.builds == 1 and cached.updates >= 1  # updated in place, not rebuilt
    second = kit.entry("苏D12345")
    r = read("苏D12345")
    assert kit.match(r) == {r.read_id: [(second, "exact", 1)]}


def test_a_new_process_builds_the_index_from_the_database(kit: Kit) -> None:
    active = kit.entry("苏D12345")
    kit.entry("苏D67890", approve=False)
    revoked = kit.entry("苏DA1234")
    with kit.db.unit_of_work() as s:
        wl.revoke_entry(s, entry_id=revoked, actor="ana", now=NOW)
    wl.reset_index_cache()
    got = kit.match(read("苏D12345"), read("苏D67890"), read("苏DA1234"))
    assert [hits for hits in got.values()] == [[(active, "exact", 1)]]
    with kit.db.unit_of_work() as s:
        assert wl.index_stats(s)["entries"] == 1


def test_a_large_index_is_kept_out_of_the_garbage_collectors_walks(
    kit: Kit, monkeypatch: pytest.MonkeyPatch
) -> None:
    kit.entry("苏D12345")
    monkeypatch.setattr(wl, "FREEZE_AT", 1)
    wl.reset_index_cache()
    gc.unfreeze()
    try:
        with kit.db.unit_of_work() as s:
            assert wl.index_stats(s)["entries"] == 1
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_matching_uses_each_reads_capture_time(kit: Kit) -> None:
    entry_id = kit.entry("苏D12345", days=1)
    late = read("苏D12345", NOW + timedelta(days=2))
    early = read("苏D12345", NOW + timedelta(hours=1), where=EAST)
    assert kit.match(late, early) == {early.read_id: [(entry_id, "exact", 1)]}


def test_active_entries_by_reason(kit: Kit) -> None:
    kit.entry("苏D12345", reason="stolen_vehicle")
    kit.entry("苏D12346", reason="stolen_vehicle", days=1)
    kit.entry("苏D12347", reason="hit_and_run")
    kit.entry("苏D12348", reason="missing_person", approve=False)
    with kit.db.unit_of_work() as s:
        assert wl.count_active_by_reason(s, at=NOW) == {"stolen_vehicle": 2, "hit_and_run": 1}
        assert wl.count_active_by_reason(s, at=NOW + timedelta(days=2)) == {
            "stolen_vehicle": 1, "hit_and_run": 1}


def test_every_change_is_audited_and_the_chain_holds(kit: Kit) -> None:
    entry_id = kit.entry("苏D12345", days=1)
    with kit.db.unit_of_work() as s:
        wl.renew_entry(s, entry_id=entry_id, expires_at=NOW + timedelta(days=5), actor="cmd",
                       actor_role="commander", now=NOW)
        wl.revoke_entry(s, entry_id=entry_id, actor="ana", now=NOW)
    assert kit.actions(wl.subject_of(entry_id)) == [
        "anwang.watchlist.entry.created", "anwang.watchlist.entry.approved",
        "anwang.watchlist.entry.renewed", "anwang.watchlist.entry.revoked",
    ]
    assert [e.name for e in kit.events("anwang.watchlist.")] == [
        "anwang.watchlist.entry.created", "anwang.watchlist.entry.approved",
        "anwang.watchlist.entry.renewed", "anwang.watchlist.entry.revoked",
    ]
    assert kit.audit_ok()
