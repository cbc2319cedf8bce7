"""Queries over the audit trail: who accessed resident X, what did user U access (PIPL Art. 57)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Select, or_, select

from app.core import audit
from app.core.audit import AuditEvent
from app.core.auth import Principal
from app.core.pagination import Page, paginate


def search_events(
    actor: Principal,
    *,
    page: int,
    size: int,
    resident_id: uuid.UUID | None = None,
    actor_id: uuid.UUID | None = None,
    object_type: str | None = None,
    object_id: str | None = None,
    result: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Page[AuditEvent]:
    statement: Select[Any] = select(AuditEvent).order_by(AuditEvent.seq.desc())
    if not actor.is_district:
        own = str(actor.institution_id)
        # A centre sees its own staff's events and the attempts on its data from other centres.
        statement = statement.where(
            or_(
                AuditEvent.institution_id == own,
                AuditEvent.detail["target_institution_id"].as_string() == own,
            )
        )
    if resident_id:
        statement = statement.where(AuditEvent.subject_resident_id == str(resident_id))
    if actor_id:
        statement = statement.where(AuditEvent.actor_id == str(actor_id))
    if object_type:
        statement = statement.where(AuditEvent.object_type == object_type)
    if object_id:
        statement = statement.where(AuditEvent.object_id == object_id)
    if result:
        statement = statement.where(AuditEvent.result == result)
    if since:
        statement = statement.where(AuditEvent.occurred_at >= since)
    if until:
        statement = statement.where(AuditEvent.occurred_at < until)
    found = paginate(statement, page, size)
    # Reading the audit trail is itself audited.
    audit.record(
        "read",
        "audit_events",
        None,
        detail={
            "resident_id": str(resident_id) if resident_id else None,
            "actor_id": str(actor_id) if actor_id else None,
        },
    )
    return found
