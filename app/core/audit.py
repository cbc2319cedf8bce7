"""Append-only audit trail with an HMAC hash chain (DATA-04, 等保 L3-CES1-12…15).

`record(...)` queues an event on the current session; the events are appended when the session
commits, in one short critical section (a transaction-scoped advisory lock on PostgreSQL; SQLite
serialises writers) that assigns a gapless `seq` and chains `row_hash = HMAC(key, prev_hash ||
canonical(row))`. Editing a row breaks its hash; deleting one breaks the sequence or the chain.
`flask audit-verify` walks the chain and names every broken row.

Denials must survive the rollback of the request that was denied: `record(..., durable=True)`
keeps the event on `g`, and the error handler writes it in a fresh transaction.

Rows carry identifiers only (pseudonymous resident id, object ids), never names or numbers.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from flask import current_app, g, has_app_context, has_request_context, request
from sqlalchemy import DDL, JSON, BigInteger, Index, Integer, String, event, select, text
from sqlalchemy.orm import Mapped, Session, mapped_column

from app.core import clock
from app.core.auth import current_principal
from app.core.db import Base, db

ALLOWED = "allowed"
DENIED = "denied"
_LOCK_ID = 0x4C48_4155  # "LHAU": the advisory lock of the audit chain
_PENDING = "audit_pending"
GENESIS = "0" * 64


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_subject", "subject_resident_id", "occurred_at"),
        Index("ix_audit_events_actor", "actor_id", "occurred_at"),
    )

    # SQLite only auto-increments an INTEGER PRIMARY KEY.
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    occurred_at: Mapped[datetime]
    actor_kind: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[str | None] = mapped_column(String(64))
    role: Mapped[str | None] = mapped_column(String(32))
    institution_id: Mapped[str | None] = mapped_column(String(36), index=True)
    subject_resident_id: Mapped[str | None] = mapped_column(String(36))
    object_type: Mapped[str] = mapped_column(String(64))
    object_id: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    purpose: Mapped[str | None] = mapped_column(String(200))
    result: Mapped[str] = mapped_column(String(16))
    request_id: Mapped[str | None] = mapped_column(String(64))
    client_address: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    row_hash: Mapped[str] = mapped_column(String(64))


# Append-only in the database itself: UPDATE and DELETE are refused by triggers. (In production
# the application's database role additionally holds INSERT/SELECT only on this table.)
_PG_APPEND_ONLY = [
    """
    CREATE OR REPLACE FUNCTION audit_events_append_only() RETURNS trigger AS $$
    BEGIN
        RAISE EXCEPTION 'audit_events is append-only';
    END;
    $$ LANGUAGE plpgsql
    """,
    """
    CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()
    """,
]
_SQLITE_APPEND_ONLY = [
    """
    CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
    BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END
    """,
    """
    CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
    BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END
    """,
]


def append_only_ddl(dialect: str) -> list[str]:
    """The trigger DDL, shared by `create_all` (tests) and the Alembic migration."""
    return {"postgresql": _PG_APPEND_ONLY, "sqlite": _SQLITE_APPEND_ONLY}.get(dialect, [])


for _statement in _PG_APPEND_ONLY:
    event.listen(AuditEvent.__table__, "after_create", DDL(_statement).execute_if(dialect="postgresql"))  # type: ignore[no-untyped-call]
for _statement in _SQLITE_APPEND_ONLY:
    event.listen(AuditEvent.__table__, "after_create", DDL(_statement).execute_if(dialect="sqlite"))  # type: ignore[no-untyped-call]


@dataclass
class _Pending:
    occurred_at: datetime
    actor_kind: str
    actor_id: str | None
    role: str | None
    institution_id: str | None
    subject_resident_id: str | None
    object_type: str
    object_id: str | None
    action: str
    purpose: str | None
    result: str
    request_id: str | None
    client_address: str | None
    detail: dict[str, Any] = field(default_factory=dict)


def _text(value: object | None) -> str | None:
    return None if value is None else str(value)


def record(
    action: str,
    object_type: str,
    object_id: object | None = None,
    *,
    resident_id: object | None = None,
    institution_id: object | None = None,
    purpose: str | None = None,
    result: str = ALLOWED,
    detail: dict[str, Any] | None = None,
    durable: bool = False,
) -> None:
    """Queue one audit event on the current transaction.

    `durable=True` (used for denials) writes the event even if the transaction rolls back.
    `institution_id` defaults to the caller's centre.
    """
    principal = current_principal()
    in_request = has_request_context()
    pending = _Pending(
        occurred_at=clock.now(),
        actor_kind=principal.kind if principal else ("anonymous" if in_request else "system"),
        actor_id=_text(principal.id) if principal else None,
        role=principal.role if principal else None,
        institution_id=_text(
            institution_id
            if institution_id is not None
            else (principal.institution_id if principal else None)
        ),
        subject_resident_id=_text(resident_id),
        object_type=object_type,
        object_id=_text(object_id),
        action=action,
        purpose=purpose,
        result=result,
        request_id=getattr(g, "request_id", None) if has_app_context() else None,
        client_address=request.remote_addr if in_request else None,
        detail=dict(detail or {}),
    )
    session = db.session()
    if not session.in_transaction():
        # Pending events belong to a transaction. Begin it now: rolling back a session that never
        # began one fires no rollback event, and the events would survive into the next commit.
        session.begin()
    session.info.setdefault(_PENDING, []).append(pending)
    if durable and has_app_context():
        g.setdefault("audit_durable", []).append(pending)


def write_durable_events() -> bool:
    """After a rollback: queue the durable events again. True if there is anything to commit."""
    if not has_app_context():
        return False
    durable: list[_Pending] = g.pop("audit_durable", [])
    if durable:
        db.session.info.setdefault(_PENDING, []).extend(durable)
    return bool(durable)


def _timestamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical(row: AuditEvent | _Pending, seq: int) -> str:
    payload = {
        "seq": seq,
        "occurred_at": _timestamp(row.occurred_at),
        "actor_kind": row.actor_kind,
        "actor_id": row.actor_id,
        "role": row.role,
        "institution_id": row.institution_id,
        "subject_resident_id": row.subject_resident_id,
        "object_type": row.object_type,
        "object_id": row.object_id,
        "action": row.action,
        "purpose": row.purpose,
        "result": row.result,
        "request_id": row.request_id,
        "client_address": row.client_address,
        "detail": row.detail or {},
    }
    return json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)


def chain_hash(key: bytes, prev_hash: str, row: AuditEvent | _Pending, seq: int) -> str:
    message = (prev_hash + "|" + canonical(row, seq)).encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _key() -> bytes:
    return str(current_app.config["AUDIT_HMAC_KEY"]).encode()


@event.listens_for(Session, "before_commit")
def _append_pending(session: Session) -> None:
    pending: list[_Pending] = session.info.pop(_PENDING, [])
    if not pending:
        return
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _LOCK_ID})
    last = session.execute(
        select(AuditEvent.seq, AuditEvent.row_hash).order_by(AuditEvent.seq.desc()).limit(1)
    ).first()
    seq, prev = (last[0], last[1]) if last else (0, GENESIS)
    key = _key()
    for item in pending:
        seq += 1
        row_hash = chain_hash(key, prev, item, seq)
        session.add(AuditEvent(seq=seq, prev_hash=prev, row_hash=row_hash, **item.__dict__))
        prev = row_hash
    session.flush()
    if has_app_context():
        g.pop("audit_durable", None)


@event.listens_for(Session, "after_soft_rollback")
def _drop_pending(session: Session, previous_transaction: Any) -> None:
    if previous_transaction.parent is None:
        session.info.pop(_PENDING, None)


@dataclass(frozen=True)
class ChainProblem:
    seq: int
    id: int | None
    problem: str


def verify_chain(session: Session, key: bytes, batch: int = 5000) -> Iterator[ChainProblem]:
    """Walk the chain in `seq` order and yield every inconsistency.

    Rows are read from the database even when `session` already holds them (`populate_existing`):
    the verifier must check what is stored, not what this session remembers having written.
    """
    expected_seq = 1
    prev = GENESIS
    rows = session.execute(
        select(AuditEvent).order_by(AuditEvent.seq).execution_options(yield_per=batch, populate_existing=True)
    )
    for row in rows.scalars():
        if row.seq != expected_seq:
            yield ChainProblem(
                expected_seq, None, f"rows {expected_seq}..{row.seq - 1} are missing (deleted?)"
            )
        if row.prev_hash != prev:
            yield ChainProblem(
                row.seq, row.id, "prev_hash does not match the previous row (deleted or edited?)"
            )
        if chain_hash(key, row.prev_hash, row, row.seq) != row.row_hash:
            yield ChainProblem(row.seq, row.id, "row content does not match its hash (edited)")
        prev = row.row_hash
        expected_seq = row.seq + 1
