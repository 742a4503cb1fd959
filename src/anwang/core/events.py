"""The event envelope that every message on the bus follows.

An event carries ids and small facts, never ORM objects. ``name`` is
``anwang.<package>.<noun>.<past-verb>`` and doubles as the NATS subject. ``audience``
says who may see the event on the live feed: the web layer pushes an event only to users
whose role is listed (empty = every signed-in role) and whose jurisdiction contains, or
is contained in, the event's jurisdiction (None = city-wide).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from ulid import ULID

EVENT_NAME = re.compile(r"^anwang(\.[a-z0-9_]+){3,}$")


def new_id() -> str:
    """A ULID: sortable by creation time, unique without coordination."""
    return str(ULID())


def utcnow() -> datetime:
    return datetime.now(UTC)


class EventContext(BaseModel):
    """Who or what caused the event, so a chain of reactions can be traced to its cause."""

    model_config = ConfigDict(frozen=True)

    correlation_id: str | None = None
    causation_id: str | None = None
    actor: str | None = None


class Audience(BaseModel):
    model_config = ConfigDict(frozen=True)

    roles: tuple[str, ...] = ()
    jurisdiction: str | None = None


class Event(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str = Field(default_factory=new_id)
    name: str
    occurred_at: datetime = Field(default_factory=utcnow)
    source: str = "anwang"
    context: EventContext = Field(default_factory=EventContext)
    audience: Audience = Field(default_factory=Audience)
    payload: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not EVENT_NAME.match(v):
            raise ValueError("event name must be anwang.<package>.<noun>.<past-verb>")
        return v

    @field_validator("occurred_at")
    @classmethod
    def _utc(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("occurred_at must carry a UTC offset")
        return v.astimezone(UTC)

    def caused(self, name: str, payload: dict[str, Any], **kw: Any) -> Event:
        """A follow-up event whose context points back at this one."""
        ctx = EventContext(
            correlation_id=self.context.correlation_id or self.id,
            causation_id=self.id,
            actor=self.context.actor,
        )
        return Event(name=name, payload=payload, context=ctx, **kw)

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> Event:
        return cls.model_validate_json(data)


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` is one token, a trailing ``>`` one or more tokens."""
    p = pattern.split(".")
    s = subject.split(".")
    for i, tok in enumerate(p):
        if tok == ">":
            return len(s) > i
        if i >= len(s):
            return False
        if tok != "*" and tok != s[i]:
            return False
    return len(p) == len(s)


# Event names published by the kernel itself.
SYSTEM_NOTICE = "anwang.system.notice.published"
