"""Roles, actions, and the one table that says which role may do what.

:data:`PERMISSIONS` is the only place where a permission is granted. Everything else —
:func:`allowed`, :data:`MFA_ROLES`, the route guards in :mod:`anwang.auth.deps` and the
table in ``docs/security.md`` — is derived from it. To change who may do what, edit the
table, then regenerate the document::

    python -m anwang.auth.permissions docs/security.md

(``tests/unit/auth/test_permissions.py`` fails while the document and the table differ.)

Roles say *what* a principal may do; the jurisdiction (a :class:`~anwang.core.scope.Scope`)
says *where*. Both apply to every request.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType


class Role(StrEnum):
    ADMIN = "admin"
    COMMANDER = "commander"
    DISPATCHER = "dispatcher"
    ANALYST = "analyst"
    OFFICER = "officer"
    GRID_WORKER = "grid_worker"
    BUSINESS = "business"
    AUDITOR = "auditor"
    #: Checkpoint cameras, sensors and other machines; held by API keys, never by people.
    DEVICE = "device"


class Action(StrEnum):
    MAP_VIEW = "map.view"
    STREAM_READ = "stream.read"
    AUDIT_READ = "audit.read"
    USERS_MANAGE = "users.manage"
    APIKEYS_MANAGE = "apikeys.manage"
    JURISDICTIONS_MANAGE = "jurisdictions.manage"
    READS_SEARCH = "reads.search"
    WATCHLIST_EDIT = "watchlist.edit"
    WATCHLIST_APPROVE = "watchlist.approve"
    ALERTS_HANDLE = "alerts.handle"
    CHECKPOINTS_MANAGE = "checkpoints.manage"
    READS_INGEST = "reads.ingest"
    EVENTS_PUBLISH = "events.publish"
    INCIDENTS_MANAGE = "incidents.manage"
    UNITS_REPORT = "units.report"
    UNITS_MANAGE = "units.manage"
    COVERAGE_PLAN = "coverage.plan"
    DEVICES_MANAGE = "devices.manage"
    DEVICE_ALARMS_HANDLE = "device_alarms.handle"


#: What each action lets a principal do, in one line (shown in ``docs/security.md``).
ACTION_DESCRIPTIONS: Mapping[Action, str] = MappingProxyType(
    {
        Action.MAP_VIEW: "see the map, jurisdictions and dashboards",
        Action.STREAM_READ: "receive the live event stream",
        Action.AUDIT_READ: "read the audit trail",
        Action.USERS_MANAGE: "create users, change their roles, deactivate them",
        Action.APIKEYS_MANAGE: "issue and revoke API keys",
        Action.JURISDICTIONS_MANAGE: "load the jurisdiction tree",
        Action.READS_SEARCH: "search stored plate reads (needs a case reference and reason)",
        Action.WATCHLIST_EDIT: "propose and edit watch-list entries",
        Action.WATCHLIST_APPROVE: "approve another person's watch-list entry",
        Action.ALERTS_HANDLE: "acknowledge, verify and close alerts",
        Action.CHECKPOINTS_MANAGE: "register and configure checkpoints",
        Action.READS_INGEST: "submit plate reads",
        Action.EVENTS_PUBLISH: "submit device events and telemetry",
        Action.INCIDENTS_MANAGE: "take calls for service, dispatch units, send instructions",
        Action.UNITS_REPORT: "report a unit's position and status, acknowledge instructions",
        Action.UNITS_MANAGE: "register units",
        Action.COVERAGE_PLAN: "edit posts and demand layers, plan the siting of posts",
        Action.DEVICES_MANAGE: (
            "register communities and devices, issue device keys, set device rules"
        ),
        Action.DEVICE_ALARMS_HANDLE: "acknowledge, clear and close community device alarms",
    }
)

_R = Role

#: Every role a person holds. The auditor sees only the audit trail — not even the map —
#: so that the people who check the system are not the ones who use it.
_PEOPLE_WHO_OPERATE = frozenset(r for r in Role if r not in (_R.DEVICE, _R.AUDITOR))

#: The permission table: for each action, the roles allowed to perform it.
#:
#: Design choices worth knowing:
#:
#: * ``admin`` runs the system but cannot search stored reads or edit the watch list:
#:   looking people up is an investigative act, kept away from whoever manages accounts.
#: * ``auditor`` has ``audit.read`` and nothing else.
#: * ``device`` (API keys of machines) can only push data in.
#: * roles that can search reads or edit the watch list must use TOTP when MFA is
#:   enforced (:data:`MFA_ROLES`, derived below).
PERMISSIONS: Mapping[Action, frozenset[Role]] = MappingProxyType(
    {
        Action.MAP_VIEW: _PEOPLE_WHO_OPERATE,
        Action.STREAM_READ: _PEOPLE_WHO_OPERATE,
        Action.AUDIT_READ: frozenset({_R.AUDITOR}),
        Action.USERS_MANAGE: frozenset({_R.ADMIN}),
        Action.APIKEYS_MANAGE: frozenset({_R.ADMIN}),
        Action.JURISDICTIONS_MANAGE: frozenset({_R.ADMIN}),
        Action.READS_SEARCH: frozenset({_R.ANALYST, _R.COMMANDER}),
        Action.WATCHLIST_EDIT: frozenset({_R.ANALYST, _R.COMMANDER}),
        Action.WATCHLIST_APPROVE: frozenset({_R.COMMANDER}),
        Action.ALERTS_HANDLE: frozenset({_R.DISPATCHER, _R.OFFICER, _R.COMMANDER, _R.ADMIN}),
        Action.CHECKPOINTS_MANAGE: frozenset({_R.ADMIN}),
        Action.READS_INGEST: frozenset({_R.DEVICE}),
        Action.EVENTS_PUBLISH: frozenset({_R.DEVICE}),
        Action.INCIDENTS_MANAGE: frozenset({_R.DISPATCHER, _R.COMMANDER}),
        Action.UNITS_REPORT: frozenset({_R.OFFICER, _R.DISPATCHER, _R.COMMANDER, _R.DEVICE}),
        Action.UNITS_MANAGE: frozenset({_R.COMMANDER, _R.ADMIN}),
        Action.COVERAGE_PLAN: frozenset({_R.COMMANDER, _R.ANALYST}),
        Action.DEVICES_MANAGE: frozenset({_R.ADMIN}),
        Action.DEVICE_ALARMS_HANDLE: frozenset(
            {_R.BUSINESS, _R.GRID_WORKER, _R.OFFICER, _R.DISPATCHER, _R.COMMANDER}
        ),
    }
)

#: Roles whose people must log in with a second factor when MFA is enforced: whoever
#: may search stored reads or edit the watch list.
MFA_ROLES: frozenset[Role] = PERMISSIONS[Action.READS_SEARCH] | PERMISSIONS[Action.WATCHLIST_EDIT]


def allowed(role: Role | str, action: Action | str) -> bool:
    """Whether ``role`` may perform ``action``. Unknown roles or actions are refused."""
    try:
        return Role(role) in PERMISSIONS[Action(action)]
    except (ValueError, KeyError):
        return False


def permissions_of(role: Role | str) -> list[Action]:
    """The actions ``role`` may perform, in table order."""
    return [a for a in Action if allowed(role, a)]


# --- the table in docs/security.md ----------------------------------------------------

BEGIN_MARKER = "<!-- BEGIN permissions table: generated from anwang.auth.permissions -->"
END_MARKER = "<!-- END permissions table -->"


def render_markdown() -> str:
    """The permission table as a Markdown table: one row per action, one column per role."""
    roles = list(Role)
    lines = [
        "| action | " + " | ".join(f"`{r}`" for r in roles) + " | what it allows |",
        "|---|" + "---|" * len(roles) + "---|",
    ]
    for action in Action:
        cells = ["✓" if r in PERMISSIONS[action] else "" for r in roles]
        lines.append(
            f"| `{action}` | " + " | ".join(cells) + f" | {ACTION_DESCRIPTIONS[action]} |"
        )
    return "\n".join(lines) + "\n"


def extract_table(document: str) -> str:
    """The text between the markers of ``document`` (raises ValueError if absent)."""
    start = document.index(BEGIN_MARKER) + len(BEGIN_MARKER)
    end = document.index(END_MARKER, start)
    return document[start:end].strip("\n") + "\n"


def replace_table(document: str) -> str:
    """``document`` with the generated table put between its markers."""
    start = document.index(BEGIN_MARKER) + len(BEGIN_MARKER)
    end = document.index(END_MARKER, start)
    return document[:start] + "\n" + render_markdown() + document[end:]


def _main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m anwang.auth.permissions docs/security.md", file=sys.stderr)
        return 2
    path = Path(argv[0])
    path.write_text(replace_table(path.read_text(encoding="utf-8")), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
