"""Instructions (指令): written orders to a unit or a post, acknowledged on the phone.

An instruction names exactly one recipient — a unit or a post — and optionally the
incident it is about. It belongs to the recipient's jurisdiction. The recipient
acknowledges it once (a second acknowledgement is a 409). One that stays
unacknowledged for ``instruction_escalate_minutes`` is escalated: level 1 after N
minutes, level 2 after 2N, level 3 (the last) after 3N; each escalation is audited and
announced to dispatchers and commanders. :func:`scan_escalations` does it with a
conditional update per instruction, so concurrent scanners never escalate one twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Final, cast

from sqlalchemy import select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from anwang.core import audit
from anwang.core.db import publish_after_commit
from anwang.core.errors import Conflict, NotFound, ValidationFailed
from anwang.core.events import new_id, utcnow
from anwang.dispatch import events, service
from anwang.dispatch import posts as posts_service
from anwang.dispatch.models import Instruction

MAX_TEXT: Final = 2000
MAX_LEVEL: Final = 3


def _rowcount(result: Any) -> int:
    """Rows an UPDATE changed (``CursorResult.rowcount``)."""
    return int(cast(CursorResult[Any], result).rowcount or 0)


def payload(i: Instruction) -> dict[str, Any]:
    return {"instruction_id": i.id, "incident_id": i.incident_id, "unit_id": i.unit_id,
            "post_id": i.post_id, "text": i.text, "sent_by": i.sent_by,
            "escalation_level": i.escalation_level,
            "acknowledged": i.acknowledged_at is not None}


def _subject(i: Instruction) -> str:
    return f"instruction:{i.id}"


def send_instruction(
    session: Session,
    *,
    text: str,
    unit_id: str | None = None,
    post_id: str | None = None,
    incident_id: str | None = None,
    actor: str,
    actor_role: str | None = None,
    now: datetime | None = None,
) -> Instruction:
    now = now or utcnow()
    text = (text or "").strip()
    if not text or len(text) > MAX_TEXT:
        raise ValidationFailed.on("text", f"must be 1-{MAX_TEXT} characters")
    if (unit_id is None) == (post_id is None):
        raise ValidationFailed.on("unit_id", "name exactly one recipient: unit_id or post_id")
    if incident_id is not None:
        incident_id = service.get_incident(session, incident_id=incident_id).id
    if unit_id is not None:
        unit = service.get_unit(session, unit_id=unit_id)
        unit_id, code = unit.id, unit.jurisdiction_code
    else:
        assert post_id is not None
        post = posts_service.get_post(session, post_id=post_id)
        post_id, code = post.id, post.jurisdiction_code
    instr = Instruction(
        id=new_id(), incident_id=incident_id, unit_id=unit_id, post_id=post_id, text=text,
        sent_at=now, sent_by=actor, acknowledged_at=None, acknowledged_by=None,
        escalation_level=0, escalated_at=None, jurisdiction_code=code,
    )
    session.add(instr)
    session.flush()
    audit.record(session, "anwang.dispatch.instruction.sent", actor=actor, actor_role=actor_role,
                 subject=_subject(instr), jurisdiction=code, at=now,
                 data={"incident_id": incident_id, "unit_id": unit_id, "post_id": post_id,
                       "text": text})
    publish_after_commit(session, events.make(
        events.INSTRUCTION_SENT, {**payload(instr), "summary": text[:140]},
        jurisdiction=code, actor=actor))
    return instr


def get_instruction(session: Session, *, instruction_id: str) -> Instruction:
    got = session.scalars(select(Instruction).where(Instruction.id == instruction_id)).first()
    if got is None:
        raise NotFound(f"no instruction {instruction_id!r} in your jurisdiction",
                       code="anwang.dispatch.instruction_not_found")
    return got


def acknowledge(
    session: Session,
    *,
    instruction_id: str,
    actor: str,
    actor_role: str | None = None,
    now: datetime | None = None,
) -> Instruction:
    now = now or utcnow()
    instr = get_instruction(session, instruction_id=instruction_id)
    done = session.execute(
        update(Instruction)
        .where(Instruction.id == instr.id, Instruction.acknowledged_at.is_(None))
        .values(acknowledged_at=now, acknowledged_by=actor)
        .execution_options(synchronize_session=False)
    )
    if _rowcount(done) != 1:
        raise Conflict("the instruction was already acknowledged",
                       code="anwang.dispatch.already_acknowledged")
    session.refresh(instr)
    audit.record(session, "anwang.dispatch.instruction.acknowledged", actor=actor,
                 actor_role=actor_role, subject=_subject(instr),
                 jurisdiction=instr.jurisdiction_code, at=now,
                 data={"incident_id": instr.incident_id, "unit_id": instr.unit_id,
                       "post_id": instr.post_id,
                       "after_s": round((now - instr.sent_at).total_seconds(), 1)})
    publish_after_commit(session, events.make(
        events.INSTRUCTION_ACKNOWLEDGED, {**payload(instr), "summary": instr.text[:140]},
        jurisdiction=instr.jurisdiction_code, actor=actor))
    return instr


def list_instructions(
    session: Session,
    *,
    unit_id: str | None = None,
    post_id: str | None = None,
    incident_id: str | None = None,
    open_only: bool = False,
    limit: int = 100,
) -> Sequence[Instruction]:
    stmt = select(Instruction).order_by(Instruction.sent_at.desc())
    if unit_id is not None:
        stmt = stmt.where(Instruction.unit_id == unit_id)
    if post_id is not None:
        stmt = stmt.where(Instruction.post_id == post_id)
    if incident_id is not None:
        stmt = stmt.where(Instruction.incident_id == incident_id)
    if open_only:
        stmt = stmt.where(Instruction.acknowledged_at.is_(None))
    return session.scalars(stmt.limit(limit)).all()


def scan_escalations(session: Session, *, now: datetime | None = None,
                     after_minutes: float = 3.0) -> int:
    """Escalate every instruction unacknowledged for another ``after_minutes``; returns
    how many were escalated. Runs city-wide (call it in a unit of work without scope)."""
    now = now or utcnow()
    step = timedelta(minutes=after_minutes)
    due = session.scalars(
        select(Instruction).where(
            Instruction.acknowledged_at.is_(None),
            Instruction.escalation_level < MAX_LEVEL,
            Instruction.sent_at <= now - step,
        ).execution_options(skip_scope=True)
    ).all()
    entries: list[dict[str, Any]] = []
    for instr in due:
        level = instr.escalation_level
        if now < instr.sent_at + step * (level + 1):
            continue
        done = session.execute(
            update(Instruction)
            .where(Instruction.id == instr.id, Instruction.escalation_level == level,
                   Instruction.acknowledged_at.is_(None))
            .values(escalation_level=level + 1, escalated_at=now)
            .execution_options(synchronize_session=False)
        )
        if _rowcount(done) != 1:
            continue
        session.refresh(instr)
        entries.append({
            "action": "anwang.dispatch.instruction.escalated", "actor": "anwang",
            "subject": _subject(instr), "jurisdiction": instr.jurisdiction_code, "at": now,
            "data": {"level": level + 1, "incident_id": instr.incident_id,
                     "unit_id": instr.unit_id, "post_id": instr.post_id,
                     "unacknowledged_s": round((now - instr.sent_at).total_seconds())}})
        publish_after_commit(session, events.make(
            events.INSTRUCTION_ESCALATED, {**payload(instr), "summary": instr.text[:140]},
            jurisdiction=instr.jurisdiction_code, roles=events.ESCALATION_ROLES))
    # One audit entry per instruction, appended together.
    return audit.record_many(session, entries)
