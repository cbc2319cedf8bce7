"""Transactional outbox (REL-06): external side effects are rows first, deliveries second.

A service calls `enqueue(topic, payload, dedupe_key=...)` inside its business transaction. The row
commits with the business data or not at all. After the commit an rq job delivers it through the
handler registered for its topic; failures are retried with exponential backoff; a periodic sweep
picks up anything whose job was lost. Delivery is at least once: handlers receive the dedupe key
and pass it to the provider (or check it) so that a redelivery has no second effect.

Claiming uses a conditional UPDATE (row count checked), so any number of workers may run.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import JSON, CursorResult, Index, String, Text, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from app.core import clock
from app.core.db import Base, UUIDPrimaryKey, commit, db, on_commit
from app.core.logs import scrub

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 10
LEASE = timedelta(minutes=5)
Handler = Callable[[dict[str, Any], str], None]
_HANDLERS: dict[str, Handler] = {}


class OutboxStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    DEAD = "dead"  # gave up after MAX_ATTEMPTS; visible to operators, can be retried by hand


class OutboxMessage(UUIDPrimaryKey, Base):
    __tablename__ = "outbox_messages"
    __table_args__ = (Index("ix_outbox_messages_due", "status", "next_attempt_at"),)

    topic: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    status: Mapped[str] = mapped_column(String(16), default=OutboxStatus.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=clock.now)
    locked_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    sent_at: Mapped[datetime | None]


def handler(topic: str) -> Callable[[Handler], Handler]:
    """Register the delivery function of a topic: `fn(payload, dedupe_key)`; raise to retry."""

    def register(fn: Handler) -> Handler:
        _HANDLERS[topic] = fn
        return fn

    return register


def enqueue(
    topic: str, payload: dict[str, Any], *, dedupe_key: str, delay: timedelta | None = None
) -> OutboxMessage:
    """Write a message in the current transaction; schedule its delivery after commit.

    The same dedupe key twice yields the first message (the side effect happens once).
    """
    if topic not in _HANDLERS:
        raise KeyError(f"no outbox handler for topic {topic!r}")
    existing = db.session.execute(
        select(OutboxMessage).where(OutboxMessage.dedupe_key == dedupe_key)
    ).scalar_one_or_none()
    if existing is not None:
        return existing
    message = OutboxMessage(
        id=uuid.uuid4(),
        topic=topic,
        payload=payload,
        dedupe_key=dedupe_key,
        next_attempt_at=clock.now() + (delay or timedelta(0)),
    )
    try:
        # A savepoint: a concurrent transaction that wrote the same key first makes this insert fail
        # (on PostgreSQL after waiting for it to commit); the message then exists once, as intended.
        with db.session.begin_nested():
            db.session.add(message)
    except IntegrityError:
        return db.session.execute(
            select(OutboxMessage).where(OutboxMessage.dedupe_key == dedupe_key)
        ).scalar_one()
    if delay is None:
        from app import jobs

        message_id = message.id
        on_commit(lambda: jobs.enqueue_safely(deliver, str(message_id)))
    return message


def backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(30 * 2 ** max(attempts - 1, 0), 3600))


def deliver(message_id: str) -> str:
    """Job: deliver one message if it is due and nobody else holds it. Returns the outcome."""
    now = clock.now()
    mid = uuid.UUID(message_id)
    result = db.session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.id == mid,
            OutboxMessage.status == OutboxStatus.PENDING,
            OutboxMessage.next_attempt_at <= now,
            or_(OutboxMessage.locked_until.is_(None), OutboxMessage.locked_until < now),
        )
        .values(locked_until=now + LEASE, attempts=OutboxMessage.attempts + 1)
        .execution_options(synchronize_session=False)
    )
    claimed = cast("CursorResult[Any]", result).rowcount
    commit()
    if claimed != 1:
        return "skipped"
    message = db.session.get_one(OutboxMessage, mid)
    db.session.refresh(message)
    try:
        _HANDLERS[message.topic](dict(message.payload), message.dedupe_key)
    except Exception as exc:  # any failure is retried, then parked as dead
        db.session.rollback()
        message = db.session.get_one(OutboxMessage, mid)
        message.last_error = scrub(f"{type(exc).__name__}: {exc}")[:2000]
        message.locked_until = None
        if message.attempts >= MAX_ATTEMPTS:
            message.status = OutboxStatus.DEAD
            log.error("outbox message dead", extra={"topic": message.topic, "message_id": message_id})
        else:
            message.next_attempt_at = clock.now() + backoff(message.attempts)
        commit()
        return "failed"
    message.status = OutboxStatus.SENT
    message.sent_at = clock.now()
    message.locked_until = None
    commit()
    return "sent"


def deliver_due(limit: int = 200) -> int:
    """Periodic job: deliver every due message (covers lost jobs, delays and retries)."""
    now = clock.now()
    ids = list(
        db.session.execute(
            select(OutboxMessage.id)
            .where(
                OutboxMessage.status == OutboxStatus.PENDING,
                OutboxMessage.next_attempt_at <= now,
                or_(OutboxMessage.locked_until.is_(None), OutboxMessage.locked_until < now),
            )
            .order_by(OutboxMessage.next_attempt_at)
            .limit(limit)
        ).scalars()
    )
    db.session.rollback()
    return sum(deliver(str(mid)) == "sent" for mid in ids)
