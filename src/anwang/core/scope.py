"""Jurisdiction scope, enforced in one place for every ORM query.

A row that belongs to a place inherits :class:`JurisdictionScoped` and carries
``jurisdiction_code`` (the finest jurisdiction it lies in, usually a grid). A unit of
work opened for a user carries that user's :class:`Scope` in ``session.info["scope"]``;
the ``do_orm_execute`` hook installed by :func:`install` then adds
``jurisdiction_code LIKE '<scope code>%'`` to every ORM SELECT of every scoped entity —
including relationship and lazy loads — so that no service can forget it. Codes are
hierarchical (a child's code starts with its parent's), which is what makes the prefix
test equal to "inside the user's jurisdiction".

A city-wide user (``Scope(None)``) sees everything; a row with no jurisdiction
(``NULL``) is visible only city-wide. Core (non-ORM) statements are not rewritten: code
that uses them for reads must call :meth:`Scope.clause` itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import String, event
from sqlalchemy.orm import Mapped, ORMExecuteState, Session, mapped_column, with_loader_criteria
from sqlalchemy.sql import ColumnElement


@dataclass(frozen=True)
class Scope:
    """Where a principal may look. ``code=None`` is the whole city."""

    code: str | None = None

    @property
    def citywide(self) -> bool:
        return self.code is None

    def contains(self, jurisdiction_code: str | None) -> bool:
        if self.code is None:
            return True
        return jurisdiction_code is not None and jurisdiction_code.startswith(self.code)

    def overlaps(self, jurisdiction_code: str | None) -> bool:
        """True when the two areas share ground: one contains the other."""
        if self.code is None or jurisdiction_code is None:
            return True
        return jurisdiction_code.startswith(self.code) or self.code.startswith(
            jurisdiction_code
        )

    def clause(self, column: Any) -> ColumnElement[bool]:
        from sqlalchemy import true

        if self.code is None:
            return true()
        clause: ColumnElement[bool] = column.like(_escape_like(self.code) + "%", escape="\\")
        return clause


def _escape_like(s: str) -> str:
    return s.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class JurisdictionScoped:
    """Mixin for tables whose rows belong to a place."""

    jurisdiction_code: Mapped[str | None] = mapped_column(String(40), index=True)


def current_scope(session: Session) -> Scope | None:
    scope = session.info.get("scope")
    return scope if isinstance(scope, Scope) else None


def _apply(state: ORMExecuteState) -> None:
    scope = current_scope(state.session)
    if scope is None or scope.citywide:
        return
    if not state.is_select or state.execution_options.get("skip_scope", False):
        return
    pattern = _escape_like(scope.code or "") + "%"
    state.statement = state.statement.options(
        with_loader_criteria(
            JurisdictionScoped,
            lambda cls: cls.jurisdiction_code.like(pattern, escape="\\"),
            include_aliases=True,
            track_closure_variables=True,
        )
    )


_installed = False


def install() -> None:
    """Register the scope hook for every Session (idempotent)."""
    global _installed
    if not _installed:
        event.listen(Session, "do_orm_execute", _apply)
        _installed = True
