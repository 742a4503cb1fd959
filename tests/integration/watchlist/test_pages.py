"""The watch-list pages: list, create form, approve and revoke buttons, entry history."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from tests.integration.watchlist.kit import PASSWORD, Kit

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def login(client: TestClient, username: str) -> str:
    r = client.post("/login", data={"username": username, "password": PASSWORD},
                    follow_redirects=False)
    assert r.status_code == 303, r.text
    page = client.get("/watchlist")
    m = CSRF.search(page.text)
    assert m is not None, page.text[:500]
    return m.group(1)


FORM = {"pattern": "苏D12345", "reason": "stolen_vehicle", "priority": "1", "days": "30",
        "legal_basis": "刑事诉讼法", "case_ref": "CZ-1", "colour": "white", "make": "Toyota"}


def test_an_analyst_proposes_and_a_commander_approves_on_the_pages(
    client: TestClient, kit: Kit
) -> None:
    token = login(client, "ana")
    page = client.get("/watchlist")
    assert page.status_code == 200 and 'id="entry-form"' in page.text
    r = client.post("/watchlist", data={**FORM, "csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303, r.text
    entry_url = r.headers["location"]
    entry_id = entry_url.rsplit("/", 1)[1]
    detail = client.get(entry_url)
    assert "苏D12345" in detail.text and "white Toyota" in detail.text
    # The owner gets no approve button; a pending entry says it waits.
    assert f'hx-post="/watchlist/{entry_id}/approve"' not in detail.text
    client.post("/logout", data={"csrf_token": token})

    token = login(client, "cmd")
    listing = client.get("/watchlist?status=pending")
    assert f'hx-post="/watchlist/{entry_id}/approve"' in listing.text
    row = client.post(f"/watchlist/{entry_id}/approve",
                      headers={"HX-Request": "true", "X-CSRF-Token": token})
    assert row.status_code == 200
    assert row.text.lstrip().startswith("<tr") and 'data-status="active"' in row.text
    row = client.post(f"/watchlist/{entry_id}/revoke",
                      headers={"HX-Request": "true", "X-CSRF-Token": token})
    assert 'data-status="revoked"' in row.text
    detail = client.get(entry_url)
    history = detail.text.split('<ol class="history">', 1)[1].split("</ol>", 1)[0]
    assert history.count("<li>") == 3
    steps = ("已创建", "已审批", "已撤销")
    assert [s for s in steps if s in history] == list(steps)
    assert kit.actions(f"watchlist_entry:{entry_id}") == [
        "anwang.watchlist.entry.created", "anwang.watchlist.entry.approved",
        "anwang.watchlist.entry.revoked"]


def test_the_form_names_what_is_missing(client: TestClient, kit: Kit) -> None:
    token = login(client, "ana")
    r = client.post("/watchlist", data={**FORM, "legal_basis": "", "csrf_token": token})
    assert r.status_code == 422
    assert "legal_basis" in r.text and 'value="苏D12345"' in r.text
    assert kit.actions(prefix="anwang.watchlist.") == []


def test_a_refused_approval_is_shown_in_the_row(client: TestClient, kit: Kit) -> None:
    entry_id = kit.entry("苏D12345", approve=False, owner="cmd")
    token = login(client, "cmd")
    row = client.post(f"/watchlist/{entry_id}/approve",
                      headers={"HX-Request": "true", "X-CSRF-Token": token})
    assert row.status_code == 200 and 'class="row-error"' in row.text
    assert 'data-status="pending"' in row.text


def test_who_sees_the_pages(client: TestClient, kit: Kit) -> None:
    assert client.get("/watchlist", follow_redirects=False).status_code == 303
    for username, status in (("west.disp", 403), ("adm", 403)):
        client.post("/login", data={"username": username, "password": PASSWORD})
        assert client.get("/watchlist").status_code == status
        assert 'href="/watchlist"' not in client.get("/dashboard").text
        client.cookies.clear()
    client.post("/login", data={"username": "ana", "password": PASSWORD})
    assert 'href="/watchlist"' in client.get("/dashboard").text
    assert client.get("/watchlist/nonexistent").status_code == 404


def test_pages_refuse_forms_without_the_csrf_token(client: TestClient, kit: Kit) -> None:
    login(client, "ana")
    r = client.post("/watchlist", data=FORM)
    assert r.status_code == 403
    assert kit.actions(prefix="anwang.watchlist.") == []
