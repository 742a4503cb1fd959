"""The watch-list API: the permission matrix, refusals that name the field, history."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from anwang.core.events import utcnow
from anwang.watchlist import service as wl
from tests.integration.watchlist.kit import Kit, read


def body(**over: Any) -> dict[str, Any]:
    b: dict[str, Any] = {
        "pattern": "苏D12345", "reason": "stolen_vehicle", "legal_basis": "刑事诉讼法 第一百一十条",
        "case_ref": "CZ-2026-0042", "priority": 1,
        "expires_at": (utcnow() + timedelta(days=30)).isoformat(),
        "vehicle": {"colour": "white", "make": "Toyota", "model": "Camry"},
    }
    b.update(over)
    return {k: v for k, v in b.items() if v is not None}


def create(client: TestClient, kit: Kit, who: str = "ana", **over: Any) -> Any:
    return client.post("/api/v1/watchlist", json=body(**over), headers=kit.token(client, who))


CREATE = {"ana": 201, "cmd": 201, "adm": 403, "aud": 403, "west.disp": 403, "west.off": 403}


@pytest.mark.parametrize(("who", "status"), CREATE.items())
def test_who_may_create_entries(client: TestClient, kit: Kit, who: str, status: int) -> None:
    r = create(client, kit, who)
    assert r.status_code == status, r.text
    if status == 201:
        got = r.json()
        assert got["status"] == "pending" and got["owner"] == who and got["id"]
        assert got["pattern"] == "苏D12345" and got["kind"] == "exact"
    else:
        assert r.json()["code"] == "anwang.auth.permission_denied"


APPROVE = {"cmd2": 200, "ana2": 403, "adm": 403, "aud": 403, "west.disp": 403}


@pytest.mark.parametrize(("who", "status"), APPROVE.items())
def test_who_may_approve(client: TestClient, kit: Kit, who: str, status: int) -> None:
    entry = create(client, kit, "cmd").json()
    r = client.post(f"/api/v1/watchlist/{entry['id']}/approve", headers=kit.token(client, who))
    assert r.status_code == status, r.text
    if status == 200:
        assert r.json()["status"] == "active" and r.json()["approved_by"] == who


def test_the_owner_cannot_approve_their_own_entry(client: TestClient, kit: Kit) -> None:
    entry = create(client, kit, "cmd").json()
    r = client.post(f"/api/v1/watchlist/{entry['id']}/approve", headers=kit.token(client, "cmd"))
    assert r.status_code == 403
    assert r.json()["code"] == "anwang.watchlist.own_entry"
    assert client.get(f"/api/v1/watchlist/{entry['id']}",
                      headers=kit.token(client, "cmd")).json()["status"] == "pending"


@pytest.mark.parametrize("field", ["legal_basis", "case_ref", "expires_at"])
def test_a_missing_legal_requirement_is_422_naming_it(
    client: TestClient, kit: Kit, field: str
) -> None:
    r = create(client, kit, **{field: None})
    assert r.status_code == 422
    problem = r.json()
    assert problem["code"] == "anwang.validation_failed"
    assert [e["field"] for e in problem["errors"]] == [field]
    assert client.get("/api/v1/watchlist", headers=kit.token(client, "ana")).json() == []


def test_expiry_beyond_the_maximum_and_bad_patterns_are_422(client: TestClient, kit: Kit) -> None:
    r = create(client, kit, expires_at=(utcnow() + timedelta(days=91)).isoformat())
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "expires_at"
    r = create(client, kit, pattern="*")
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "pattern"
    r = create(client, kit, expires_at="2030-01-01T00:00:00")  # no offset
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "expires_at"


READ = {"ana": 200, "cmd": 200, "adm": 403, "aud": 403, "west.disp": 403}


@pytest.mark.parametrize(("who", "status"), READ.items())
def test_who_may_read_the_list(client: TestClient, kit: Kit, who: str, status: int) -> None:
    entry = create(client, kit).json()
    h = kit.token(client, who)
    assert client.get("/api/v1/watchlist", headers=h).status_code == status
    assert client.get(f"/api/v1/watchlist/{entry['id']}", headers=h).status_code == status


def test_no_credentials_no_watch_list(client: TestClient, kit: Kit) -> None:
    assert client.get("/api/v1/watchlist").status_code == 401
    assert client.post("/api/v1/watchlist", json=body()).status_code == 401


def test_the_lifecycle_through_the_api_with_its_history(client: TestClient, kit: Kit) -> None:
    ana, cmd = kit.token(client, "ana"), kit.token(client, "cmd")
    entry = create(client, kit, pattern="苏D?23*", priority=2,
                   recipients={"roles": ["dispatcher"], "jurisdictions": ["3201"]}).json()
    assert entry["kind"] == "partial"
    assert entry["recipients"] == {"roles": ["dispatcher"], "jurisdictions": ["3201"]}
    eid = entry["id"]
    assert client.post(f"/api/v1/watchlist/{eid}/approve", headers=cmd).status_code == 200
    assert client.post(f"/api/v1/watchlist/{eid}/approve", headers=cmd).status_code == 409
    new_expiry = (utcnow() + timedelta(days=60)).isoformat()
    r = client.post(f"/api/v1/watchlist/{eid}/renew", json={"expires_at": new_expiry},
                    headers=ana)
    assert r.status_code == 200 and r.json()["status"] == "active"
    r = client.post(f"/api/v1/watchlist/{eid}/revoke", json={"reason": "arrested"},
                    headers=ana)
    assert r.status_code == 200 and r.json()["status"] == "revoked"
    assert client.post(f"/api/v1/watchlist/{eid}/revoke", headers=ana).status_code == 409
    detail = client.get(f"/api/v1/watchlist/{eid}", headers=ana).json()
    assert [h["action"] for h in detail["history"]] == [
        "anwang.watchlist.entry.created", "anwang.watchlist.entry.approved",
        "anwang.watchlist.entry.renewed", "anwang.watchlist.entry.revoked",
    ]
    assert [h["actor"] for h in detail["history"]] == ["ana", "cmd", "ana", "ana"]
    assert detail["history"][-1]["reason"] == "arrested"
    assert kit.audit_ok()


def test_another_analyst_may_not_revoke(client: TestClient, kit: Kit) -> None:
    eid = create(client, kit).json()["id"]
    r = client.post(f"/api/v1/watchlist/{eid}/revoke", headers=kit.token(client, "ana2"))
    assert r.status_code == 403 and r.json()["code"] == "anwang.watchlist.not_owner"


def test_filters(client: TestClient, kit: Kit) -> None:
    ana, cmd = kit.token(client, "ana"), kit.token(client, "cmd")
    a = create(client, kit, pattern="苏D11111", reason="hit_and_run").json()
    create(client, kit, pattern="苏D22222", case_ref="OTHER-1")
    client.post(f"/api/v1/watchlist/{a['id']}/approve", headers=cmd)

    def ids(**params: str) -> list[str]:
        r = client.get("/api/v1/watchlist", params=params, headers=ana)
        assert r.status_code == 200, r.text
        return [e["pattern"] for e in r.json()]

    assert ids() == ["苏D22222", "苏D11111"]
    assert ids(status="active") == ["苏D11111"]
    assert ids(reason="hit_and_run") == ["苏D11111"]
    assert ids(case_ref="OTHER-1") == ["苏D22222"]
    assert ids(pattern="2222") == ["苏D22222"]
    assert client.get("/api/v1/watchlist", params={"status": "bogus"},
                      headers=ana).status_code == 422


def test_an_entry_approved_through_the_api_matches(client: TestClient, kit: Kit) -> None:
    eid = create(client, kit).json()["id"]
    assert kit.match(read("苏D12345", utcnow())) == {}
    client.post(f"/api/v1/watchlist/{eid}/approve", headers=kit.token(client, "cmd"))
    r = read("苏D12345", utcnow())
    assert kit.match(r) == {r.read_id: [(eid, "exact", 1)]}
    client.post(f"/api/v1/watchlist/{eid}/revoke", headers=kit.token(client, "ana"))
    assert kit.match(read("苏D12345", utcnow())) == {}
    with kit.db.unit_of_work() as s:
        assert wl.index_stats(s)["builds"] == 1
