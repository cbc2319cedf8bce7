"""Idempotency keys for non-repeatable POSTs, with Stripe's semantics.

- The same key with the same body returns the stored response (header `Idempotent-Replayed: true`).
- The same key with another body (or another endpoint) is 422 `idempotency_key_mismatch`.
- A duplicate that arrives while the first request is still running is 409 `idempotency_in_progress`.
- Keys are scoped to the caller and kept for `IDEMPOTENCY_TTL_HOURS` (at least 24 h).

The key row is inserted in the request's own transaction, so it commits atomically with the
business change; the stored response is written just after. A request that fails with an error
rolls back, leaves no key, and may be retried with the same key. Concurrent duplicates are told
apart on PostgreSQL by a non-blocking advisory lock on the key; SQLite serialises writers and the
unique constraint does the same job.
"""

from __future__ import annotations

import hashlib
import json
import re
import zlib
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import wraps
from typing import Any, TypeVar, cast

from flask import Response, current_app, request
from sqlalchemy import CursorResult, Index, String, Text, UniqueConstraint, delete, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from app.core import clock
from app.core.auth import require_principal
from app.core.db import Base, commit, db, rollback
from app.core.errors import BusinessRuleViolation, Conflict, DomainError

HEADER = "Idempotency-Key"
_KEY = re.compile(r"[A-Za-z0-9_.:-]{8,255}")
F = TypeVar("F", bound=Callable[..., Any])

IN_PROGRESS = "in_progress"
COMPLETED = "completed"
_IN_PROGRESS_MESSAGE = "相同的请求正在处理中，请稍候查询结果，不要重复提交"


class IdempotencyKey(Base):
    __tablename__ = "idempotency_keys"
    __table_args__ = (
        UniqueConstraint("owner", "key"),
        Index("ix_idempotency_keys_expires_at", "expires_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    owner: Mapped[str] = mapped_column(String(80))
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    response_status: Mapped[int | None]
    response_body: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    expires_at: Mapped[datetime]


class IdempotencyKeyMissing(DomainError):
    status = 400
    code = "idempotency_key_required"
    message = "缺少 Idempotency-Key 请求头：请为每笔新操作生成唯一编号，重试时沿用同一编号"


def request_fingerprint() -> str:
    raw = request.get_data(cache=True)
    try:
        body = json.dumps(json.loads(raw or b"null"), sort_keys=True, separators=(",", ":"))
    except ValueError:
        body = raw.decode("utf-8", "replace")
    return hashlib.sha256(f"{request.method} {request.path}\n{body}".encode()).hexdigest()


def _replay(row: IdempotencyKey) -> Response:
    response = current_app.response_class(
        row.response_body or "", status=row.response_status or 200, mimetype="application/json"
    )
    response.headers["Idempotent-Replayed"] = "true"
    return response


def _find(owner: str, key: str) -> IdempotencyKey | None:
    return db.session.execute(
        select(IdempotencyKey).where(IdempotencyKey.owner == owner, IdempotencyKey.key == key)
    ).scalar_one_or_none()


def _check_existing(row: IdempotencyKey, fingerprint: str) -> Response:
    if row.request_hash != fingerprint:
        raise BusinessRuleViolation(
            "该 Idempotency-Key 已用于另一笔不同的请求，请为新操作生成新的编号",
            code="idempotency_key_mismatch",
        )
    if row.status == COMPLETED:
        return _replay(row)
    raise Conflict(_IN_PROGRESS_MESSAGE, code="idempotency_in_progress")


def begin(owner: str, key: str, fingerprint: str) -> Response | IdempotencyKey:
    """Either a response to return at once (replay) or the new in-progress row."""
    session = db.session
    if session.get_bind().dialect.name == "postgresql":
        lock_id = zlib.crc32(f"{owner}\x00{key}".encode()) - 2**31
        if not session.execute(text("SELECT pg_try_advisory_xact_lock(:id)"), {"id": lock_id}).scalar():
            raise Conflict(_IN_PROGRESS_MESSAGE, code="idempotency_in_progress")
    now = clock.now()
    existing = _find(owner, key)
    if existing is not None and existing.expires_at <= now:
        session.delete(existing)
        session.flush()
        existing = None
    if existing is not None:
        return _check_existing(existing, fingerprint)
    ttl = timedelta(hours=int(current_app.config["IDEMPOTENCY_TTL_HOURS"]))
    row = IdempotencyKey(
        owner=owner,
        key=key,
        request_hash=fingerprint,
        status=IN_PROGRESS,
        created_at=now,
        expires_at=now + ttl,
    )
    session.add(row)
    try:
        session.flush()
    except IntegrityError:
        rollback()
        existing = _find(owner, key)
        if existing is None:  # pragma: no cover - the other request rolled back meanwhile
            raise Conflict("请求冲突，请重试", code="idempotency_in_progress") from None
        return _check_existing(existing, fingerprint)
    return row


def finish(row_id: int, response: Response) -> None:
    row = db.session.get(IdempotencyKey, row_id)
    if row is None:  # the business transaction rolled back (an error response): nothing to keep
        return
    row.status = COMPLETED
    row.response_status = response.status_code
    row.response_body = response.get_data(as_text=True)
    commit()


def idempotent(func: F) -> F:
    """Route decorator (inside `@blp.auth`): require and honour an Idempotency-Key header."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        key = request.headers.get(HEADER, "").strip()
        if not key:
            raise IdempotencyKeyMissing()
        if not _KEY.fullmatch(key):
            raise IdempotencyKeyMissing(
                "Idempotency-Key 格式不正确：应为 8–255 位字母、数字或 _ . : -（建议使用 UUID）"
            )
        owner = require_principal().actor_ref
        started = begin(owner, key, request_fingerprint())
        if isinstance(started, Response):
            return started
        row_id = started.id
        response = current_app.make_response(func(*args, **kwargs))
        if response.status_code < 500:
            finish(row_id, response)
        return response

    return cast(F, wrapper)


def purge_expired() -> int:
    """Periodic job: forget keys past their lifetime."""
    result = db.session.execute(delete(IdempotencyKey).where(IdempotencyKey.expires_at <= clock.now()))
    deleted = cast("CursorResult[Any]", result).rowcount
    commit()
    return int(deleted or 0)
