"""``POST /api/v1/reads`` end to end through the in-process bus: each read judged on its
own, every valid read stored once, retries harmless, the watch-list hook called only for
reads that were really inserted."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from anwang.auth import service as auth_service
from anwang.checkpoints import reads
from anwang.checkpoints.facts import ReadFacts
from anwang.checkpoints.models import Checkpoint
from anwang.core.db import Database, OutboxEntry
from anwang.core.scope import Scope
from tests.integration.checkpoints.conftest import EAST, Kit, a_read, now


@pytest.fixture
def cams(kit: Kit) -> Kit:
    kit.add_checkpoint("W-01")
    kit.add_checkpoint("W-02")
    kit.add_checkpoint("E-01", at=EAST)
    return kit


def test_a_mixed_batch_keeps_the_valid_reads_and_rejects_each_bad_one(cams: Kit) -> None:
    t = now() - timedelta(minutes=2)
    reads = [
        a_read(at=t),
        a_read(plate="苏D1", at=t),
        a_read(checkpoint="NOPE", at=t),
        a_read(plate="苏E54321", checkpoint="W-02", at=t, vehicle={"type": "car"}),
        a_read(at=t, confidence=1.5),
        a_read(at=t + timedelta(minutes=10)),
        {**a_read(at=t), "captured_at": "2026-11-28T08:00:00"},
    ]
    r = cams.post_reads(reads)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accepted"] == 2 and body["duplicates"] == 0 and body["alerts"] == 0
    assert [(x["index"], x["code"]) for x in body["rejected"]] == [
        (1, "invalid_plate"), (2, "unknown_checkpoint"), (4, "confidence_out_of_range"),
        (5, "captured_at_in_future"), (6, "captured_at_no_offset"),
    ]
    cams.drain()
    stored = cams.stored()
    assert sorted(s.plate for s in stored) == ["苏D12345", "苏E54321"]
    e = next(s for s in stored if s.plate == "苏E54321")
    assert e.checkpoint_code == "W-02" and e.jurisdiction_code == "320101"
    assert e.vehicle == {"type": "car"} and e.hit is False and e.direction == "in"
    with cams.db.unit_of_work(readonly=True) as s:
        w1 = s.scalars(select(Checkpoint).where(Checkpoint.code == "W-01")).one()
        assert w1.last_read_at == t.replace(microsecond=t.microsecond)


def test_ndjson_with_a_broken_line(cams: Kit) -> None:
    t = now() - timedelta(minutes=1)
    body = "\n".join([
        json.dumps(a_read(at=t), ensure_ascii=False), "",
        '{"checkpoint": "W-01", ', json.dumps(a_read(plate="苏E11111", at=t),
                                              ensure_ascii=False),
    ])
    r = cams.client.post("/api/v1/reads", content=body.encode(),
                         headers={**cams.device, "Content-Type": "application/x-ndjson"})
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 2
    assert [(x["index"], x["code"]) for x in r.json()["rejected"]] == [(1, "malformed_json")]
    cams.drain()
    assert cams.count_reads() == 2


def test_a_retried_batch_stores_nothing_twice(cams: Kit) -> None:
    t = now() - timedelta(minutes=3)
    batch = [a_read(at=t), a_read(plate="苏E54321", at=t),
             a_read(plate="苏A00001", at=t, id="device-id-1")]
    first = cams.post_reads(batch).json()
    cams.drain()
    again = cams.post_reads(batch).json()
    cams.drain()
    assert (first["accepted"], first["duplicates"]) == (3, 0)
    assert (again["accepted"], again["duplicates"]) == (0, 3)
    assert cams.count_reads() == 3
    # The same read written in another offset and spelling is the same read.
    same = a_read(at=t.astimezone(timedelta_tz(8)), plate="苏ｄ 12345")
    assert cams.post_reads([same]).json()["duplicates"] == 1


def timedelta_tz(hours: int) -> Any:
    from datetime import timezone

    return timezone(timedelta(hours=hours))


def test_a_retry_before_the_first_was_stored_is_still_stored_once(cams: Kit) -> None:
    t = now() - timedelta(minutes=3)
    batch = [a_read(at=t), a_read(at=t), a_read(plate="苏E54321", at=t)]
    first = cams.post_reads(batch).json()
    second = cams.post_reads(batch).json()
    assert first["accepted"] == 2 and first["duplicates"] == 1  # repeated within the batch
    assert second["accepted"] + second["duplicates"] == 3
    cams.drain()
    assert cams.count_reads() == 2


@pytest.mark.parametrize(("read", "code"), [
    ({"captured_at": "2026-11-28T08:00:00"}, "captured_at_no_offset"),
    ({"plate": "WX-0000-X"}, "invalid_plate"),
    ({"plate": ""}, "invalid_plate"),
    ({"confidence": -0.01}, "confidence_out_of_range"),
    ({"checkpoint": "E-99"}, "unknown_checkpoint"),
    ({"direction": "up"}, "invalid_direction"),
])
def test_single_bad_reads(cams: Kit, read: dict[str, Any], code: str) -> None:
    r = cams.post_reads([{**a_read(), **read}])
    assert r.status_code == 200
    assert r.json()["accepted"] == 0 and [x["code"] for x in r.json()["rejected"]] == [code]


def test_future_and_too_old_times(cams: Kit) -> None:
    r = cams.post_reads([a_read(at=now() + timedelta(minutes=6)),
                         a_read(at=now() + timedelta(minutes=4)),
                         a_read(at=now() - timedelta(hours=49))])
    body = r.json()
    assert body["accepted"] == 1
    assert [x["code"] for x in body["rejected"]] == ["captured_at_in_future",
                                                     "captured_at_too_old"]


def test_an_inactive_checkpoint_takes_no_reads(cams: Kit) -> None:
    cams.client.delete("/api/v1/checkpoints/W-02", headers=cams.as_user("admin"))
    r = cams.post_reads([a_read(checkpoint="W-02")])
    assert [x["code"] for x in r.json()["rejected"]] == ["inactive_checkpoint"]


def test_a_district_device_key_posts_only_for_its_district(cams: Kit, db: Database) -> None:
    with db.unit_of_work(info={"scope": Scope(None)}) as s:
        key, _ = auth_service.create_api_key(s, name="west-cam", role="device",
                                             jurisdiction_code="3201", actor="test")
    r = cams.post_reads([a_read(checkpoint="W-01"), a_read(checkpoint="E-01")],
                        headers={"Authorization": f"Bearer {key}"})
    assert r.json()["accepted"] == 1
    assert [(x["index"], x["code"]) for x in r.json()["rejected"]] == [(1, "unknown_checkpoint")]


def test_more_than_ten_thousand_reads_is_413(cams: Kit) -> None:
    r = cams.post_reads([{}] * 10_001)
    assert r.status_code == 413
    assert r.json()["code"] == "anwang.checkpoints.batch_too_large"
    assert "10000" in r.json()["detail"]
    assert cams.count_reads() == 0


@pytest.mark.parametrize("ctype", ["text/plain", "text/csv", "application/xml"])
def test_other_content_types_are_415(cams: Kit, ctype: str) -> None:
    r = cams.client.post("/api/v1/reads", content=b"[]",
                         headers={**cams.device, "Content-Type": ctype})
    assert r.status_code == 415
    assert r.headers["content-type"].startswith("application/problem+json")


def test_malformed_json_is_400_and_a_non_array_422(cams: Kit) -> None:
    r = cams.client.post("/api/v1/reads", content=b'[{"plate": "x",',
                         headers={**cams.device, "Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["code"] == "anwang.bad_request.malformed_json"
    r = cams.client.post("/api/v1/reads", content=json.dumps(a_read()).encode(),
                         headers={**cams.device, "Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["code"] == "anwang.checkpoints.batch_not_array"


@pytest.mark.parametrize("user", ["admin", "analyst", "dispatcher"])
def test_people_cannot_post_reads(cams: Kit, user: str) -> None:
    r = cams.post_reads([a_read()], headers=cams.as_user(user))
    assert r.status_code == 403
    cams.drain()
    assert cams.count_reads() == 0


def test_without_credentials_401(cams: Kit) -> None:
    r = cams.client.post("/api/v1/reads", content=b"[]",
                         headers={"Content-Type": "application/json"})
    assert r.status_code == 401


def test_a_batch_is_one_event_under_the_payload_limit(cams: Kit, db: Database,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Through a Database without a publisher the events stay in the outbox: count them."""
    from anwang.checkpoints import events as ev

    monkeypatch.setattr(ev, "READS_PER_EVENT", 2)
    t = now() - timedelta(minutes=1)
    items = [a_read(at=t, lane=i) for i in range(5)]
    quiet = Database(db.url)
    try:
        with quiet.unit_of_work(info={"scope": Scope(None)}) as s:
            report = reads.ingest_reads(s, items=items, source="test", retention_hours=48)
        assert report.accepted == 5
        with quiet.unit_of_work(readonly=True) as s:
            events = s.scalars(select(OutboxEntry).order_by(OutboxEntry.event_id)).all()
    finally:
        quiet.dispose()
    assert len(events) == 3
    assert all(e.name == "anwang.checkpoints.read_batch.received" for e in events)
    assert sum(len(json.loads(e.body)["payload"]["reads"]) for e in events) == 5
    body = json.loads(events[0].body)
    assert body["audience"]["roles"] == ["internal"]


# --- the watch-list hook -------------------------------------------------------------------


class FakeWatchlist:
    """Stands in for ``anwang.watchlist.service``: every read of ``plate`` hits."""

    def __init__(self, plate: str) -> None:
        self.plate = plate
        self.calls: list[list[str]] = []

    def match_reads(self, session: Any, *, reads: list[Any]) -> list[Any]:
        """Matches on the plate alone, as the real one does (with the capture time)."""
        self.calls.append([r.plate for r in reads])
        return [(r, ["hit"]) for r in reads if r.plate == self.plate]


class FakeAlerts:
    def __init__(self) -> None:
        self.raised: list[str] = []

    def raise_for_reads(self, session: Any, found: list[tuple[ReadFacts, list[Any]]]) -> int:
        self.raised.extend(read.read_id for read, _ in found)
        return sum(len(hits) for _, hits in found)


def test_hits_raise_alerts_once_and_mark_the_read(cams: Kit,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    watch, alerts = FakeWatchlist("苏E54321"), FakeAlerts()
    monkeypatch.setattr(reads, "_watchlist_service", lambda: watch)
    monkeypatch.setattr(reads, "_alerts_service", lambda: alerts)
    t = now() - timedelta(minutes=1)
    batch = [a_read(at=t), a_read(plate="苏E54321", at=t, lane=2)]
    assert cams.post_reads(batch).json()["alerts"] == 1
    cams.drain()
    assert cams.post_reads(batch).json() == {"accepted": 0, "duplicates": 2, "rejected": [],
                                             "alerts": 0}
    cams.drain()
    hit_read = next(r for r in cams.stored() if r.plate == "苏E54321")
    assert hit_read.hit is True
    assert [r.hit for r in cams.stored() if r.plate == "苏D12345"] == [False]
    # One alert call, for the one new hit, however often the batch came.
    assert alerts.raised == [hit_read.id]


def test_the_real_watchlist_is_consulted_without_error(cams: Kit) -> None:
    """With the real watch-list and alerts packages and an empty watch list nothing hits."""
    r = cams.post_reads([a_read()])
    assert r.json()["alerts"] == 0
    cams.drain()
    assert [x.hit for x in cams.stored()] == [False]
    assert not cams.client.app.state.anwang.bus.dead  # type: ignore[attr-defined]


def test_a_post_checks_its_reads_while_another_unit_of_work_writes(
        cams: Kit, db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checks of a POST only read: they run before its own write unit, so on SQLite
    they go on while another request holds the writer lock (and commits)."""
    writing, release = threading.Event(), threading.Event()
    checked_while_held: list[bool] = []
    real = reads.check_reads

    def spy(*args: Any, **kwargs: Any) -> reads.CheckedReads:
        checked_while_held.append(not release.is_set())
        return real(*args, **kwargs)

    # A first post: the key's last use is written now, not again within the minute.
    assert cams.post_reads([a_read(at=now() - timedelta(minutes=2))]).status_code == 200
    monkeypatch.setattr(reads, "check_reads", spy)

    def hold() -> None:
        with db.unit_of_work() as s:
            s.execute(update(Checkpoint).where(Checkpoint.code == "W-02")
                      .values(name="W-02 renamed"))
            writing.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert writing.wait(10)
    answers: list[Any] = []
    poster = threading.Thread(
        target=lambda: answers.append(cams.post_reads([a_read(at=now() - timedelta(minutes=1))])))
    poster.start()
    deadline = time.monotonic() + 5
    while not checked_while_held and time.monotonic() < deadline:
        time.sleep(0.01)
    release.set()
    holder.join(10)
    poster.join(30)
    assert checked_while_held == [True]
    assert answers[0].status_code == 200 and answers[0].json()["accepted"] == 1
