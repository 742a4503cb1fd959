"""Tables of the watch list (布控). The rules that govern them are in :mod:`.service`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from anwang.core.db import Base


class WatchEntry(Base):
    """One watch-list entry: a plate or a partial plate that, while ``active`` and
    before ``expires_at``, turns a matching read into an alert.

    ``status`` runs ``pending`` → ``active`` (a second person approved it) → ``revoked``
    or ``expired``; an active entry may be renewed (a new ``expires_at``). ``version`` is
    the value of :class:`WatchlistVersion` written by the entry's last change, which is
    how a process's in-memory index finds what changed since it last looked.
    """

    __tablename__ = "watchlist_entries"

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    #: Normalised plate (``kind = exact``) or validated partial pattern (``partial``).
    pattern: Mapped[str] = mapped_column(String(32), index=True)
    kind: Mapped[str] = mapped_column(String(10))
    reason: Mapped[str] = mapped_column(String(30), index=True)
    legal_basis: Mapped[str] = mapped_column(Text)
    case_ref: Mapped[str] = mapped_column(String(100), index=True)
    #: 1 (highest) to 3.
    priority: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(10), index=True)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    #: What to look for: ``{"type", "colour", "make", "model", "notes"}``, each optional.
    vehicle: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    #: Who is told of a hit; empty lists mean the defaults (see ``alerts.service``).
    recipient_roles: Mapped[list[str]] = mapped_column(JSON, default=list)
    recipient_jurisdictions: Mapped[list[str]] = mapped_column(JSON, default=list)
    owner: Mapped[str] = mapped_column(String(100), index=True)
    owner_role: Mapped[str | None] = mapped_column(String(30))
    approved_by: Mapped[str | None] = mapped_column(String(100))
    approved_at: Mapped[datetime | None]
    revoked_by: Mapped[str | None] = mapped_column(String(100))
    revoked_at: Mapped[datetime | None]
    revoke_reason: Mapped[str | None] = mapped_column(Text)
    #: The external list an imported entry came from (None: entered by hand).
    source: Mapped[str | None] = mapped_column(String(100))
    batch_id: Mapped[str | None] = mapped_column(
        String(26), ForeignKey("watchlist_batches.id"), index=True
    )
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    version: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), index=True
    )

    __table_args__ = (Index("ix_watchlist_entries_source_pattern", "source", "pattern"),)


class WatchlistBatch(Base):
    """An import of an external list (e.g. the province's stolen-vehicle list).

    Uploaded as ``pending`` with its rows; approving it (by someone other than the
    importer) creates the entries, all ``active`` at once, and — when ``refresh`` is set —
    revokes the entries of the same ``source`` that are no longer on the list.
    """

    __tablename__ = "watchlist_batches"

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    source: Mapped[str] = mapped_column(String(100), index=True)
    status: Mapped[str] = mapped_column(String(10), index=True)
    reason: Mapped[str] = mapped_column(String(30))
    legal_basis: Mapped[str] = mapped_column(Text)
    case_ref: Mapped[str] = mapped_column(String(100))
    priority: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[datetime]
    refresh: Mapped[bool] = mapped_column(Boolean, default=False)
    #: The accepted rows: ``[{"pattern", "vehicle", "priority"}]``.
    rows: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    #: The refused rows: ``[{"line", "code", "detail"}]``.
    rejected: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    imported_by: Mapped[str] = mapped_column(String(100))
    imported_at: Mapped[datetime]
    approved_by: Mapped[str | None] = mapped_column(String(100))
    approved_at: Mapped[datetime | None]
    #: What approval did: ``{"created", "renewed", "unchanged", "revoked"}``.
    result: Mapped[dict[str, int] | None] = mapped_column(JSON)


class WatchlistVersion(Base):
    """One row: a counter raised by every change of any entry, in the changing
    transaction. Writers serialise on it, so the order of versions is the order of
    commits, and a reader that saw version *v* has seen every change up to *v*."""

    __tablename__ = "watchlist_version"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
