"""The permission table: the defaults the bureau agreed on, and its copy in the docs."""

from __future__ import annotations

from pathlib import Path

import pytest

from anwang.auth.permissions import (
    MFA_ROLES,
    PERMISSIONS,
    Action,
    Role,
    allowed,
    extract_table,
    permissions_of,
    render_markdown,
    replace_table,
)

DOC = Path(__file__).resolve().parents[3] / "docs" / "security.md"

# The agreed grants, written out role by role (independently of the table's layout).
HUMANS_ON_THE_MAP = {"map.view", "stream.read"}
EXPECTED: dict[str, set[str]] = {
    "admin": HUMANS_ON_THE_MAP | {"users.manage", "apikeys.manage", "jurisdictions.manage",
                                  "checkpoints.manage", "alerts.handle", "units.manage",
                                  "devices.manage"},
    "commander": HUMANS_ON_THE_MAP | {"reads.search", "watchlist.edit", "watchlist.approve",
                                      "alerts.handle", "incidents.manage", "units.report",
                                      "units.manage", "coverage.plan",
                                      "device_alarms.handle"},
    "dispatcher": HUMANS_ON_THE_MAP | {"alerts.handle", "incidents.manage", "units.report",
                                       "device_alarms.handle"},
    "analyst": HUMANS_ON_THE_MAP | {"reads.search", "watchlist.edit", "coverage.plan"},
    "officer": HUMANS_ON_THE_MAP | {"alerts.handle", "units.report", "device_alarms.handle"},
    "grid_worker": HUMANS_ON_THE_MAP | {"device_alarms.handle"},
    "business": HUMANS_ON_THE_MAP | {"device_alarms.handle"},
    "auditor": {"audit.read"},
    "device": {"reads.ingest", "events.publish", "units.report"},
}


def test_every_role_and_action_is_covered() -> None:
    assert set(EXPECTED) == {r.value for r in Role}
    assert set(PERMISSIONS) == set(Action)
    required = {"map.view", "stream.read", "audit.read", "users.manage", "apikeys.manage",
                "jurisdictions.manage", "reads.search", "watchlist.edit",
                "watchlist.approve", "alerts.handle", "checkpoints.manage", "reads.ingest",
                "events.publish"}
    assert required <= {a.value for a in Action}


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("action", list(Action))
def test_matrix(role: Role, action: Action) -> None:
    assert allowed(role, action) is (action.value in EXPECTED[role.value])


def test_permissions_of_lists_the_row() -> None:
    assert {a.value for a in permissions_of("auditor")} == {"audit.read"}
    assert {a.value for a in permissions_of(Role.DEVICE)} == EXPECTED["device"]


def test_headline_rules() -> None:
    assert not allowed("admin", "reads.search")
    assert not allowed("auditor", "map.view")
    assert allowed("commander", "watchlist.approve") and not allowed("analyst",
                                                                     "watchlist.approve")


def test_unknown_names_are_refused() -> None:
    assert not allowed("superuser", "map.view")
    assert not allowed("admin", "everything")


def test_mfa_roles_follow_the_table() -> None:
    assert {Role.ANALYST, Role.COMMANDER} == MFA_ROLES
    for role in Role:
        sensitive = allowed(role, Action.READS_SEARCH) or allowed(role, Action.WATCHLIST_EDIT)
        assert (role in MFA_ROLES) is sensitive


def test_table_is_read_only() -> None:
    with pytest.raises(TypeError):
        PERMISSIONS[Action.READS_SEARCH] = frozenset(Role)  # type: ignore[index]


def test_markdown_has_one_row_per_action() -> None:
    md = render_markdown().splitlines()
    assert len(md) == 2 + len(Action)
    search_row = next(line for line in md if line.startswith("| `reads.search`"))
    cells = [c.strip() for c in search_row.strip("|").split("|")][1:-1]
    assert [r.value for r, c in zip(Role, cells, strict=True) if c == "✓"] == [
        "commander", "analyst",
    ]


def test_security_doc_carries_the_generated_table() -> None:
    document = DOC.read_text(encoding="utf-8")
    assert extract_table(document) == render_markdown(), (
        "docs/security.md is out of date: run "
        "'python -m anwang.auth.permissions docs/security.md'"
    )
    assert replace_table(document) == document
