"""Staff users, their sessions, password history and the history of account changes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text, event
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core import clock
from app.core.crypto import EncryptedString, blind_index
from app.core.db import Base, Timestamps, UUIDPrimaryKey
from app.core.scope import CentreScoped
from app.institutions.models import Institution


class StaffUser(UUIDPrimaryKey, Timestamps, CentreScoped, Base):
    """A member of staff. Centre roles belong to one centre; district roles to none."""

    __tablename__ = "staff_users"

    # District-wide staff have no centre, so the mixin's column is nullable here.
    institution_id: Mapped[uuid.UUID | None] = mapped_column(  # type: ignore[assignment]
        ForeignKey("institutions.id"), index=True
    )
    username: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(50))
    phone: Mapped[str | None] = mapped_column(EncryptedString("staff.phone"))
    phone_bidx: Mapped[str | None] = mapped_column(String(64), index=True)
    role: Mapped[str] = mapped_column(String(32))
    password_hash: Mapped[str] = mapped_column(String(255))
    password_changed_at: Mapped[datetime] = mapped_column(default=clock.now)
    must_change_password: Mapped[bool] = mapped_column(default=True)
    is_active: Mapped[bool] = mapped_column(default=True)
    failed_login_count: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[datetime | None]
    last_login_at: Mapped[datetime | None]

    institution: Mapped[Institution | None] = relationship(lazy="joined")

    def is_locked(self, at: datetime) -> bool:
        return self.locked_until is not None and self.locked_until > at


@event.listens_for(StaffUser.phone, "set", propagate=True)
def _index_phone(target: StaffUser, value: str | None, _old: Any, _initiator: Any) -> None:
    target.phone_bidx = blind_index(value, "phone")


class PasswordHistory(Base):
    """Previous password hashes: a new password may not repeat the last five."""

    __tablename__ = "staff_password_history"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("staff_users.id"), index=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=clock.now)


class StaffSession(UUIDPrimaryKey, Base):
    """A server-side login session. Tokens are stored as SHA-256 hashes only."""

    __tablename__ = "staff_sessions"
    __table_args__ = (Index("ix_staff_sessions_user_open", "user_id", "revoked_at"),)

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("staff_users.id"))
    access_token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    refresh_token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The refresh token this one replaced: presenting it again means it was copied, so the session ends.
    previous_refresh_token_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    access_expires_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    last_seen_at: Mapped[datetime] = mapped_column(default=clock.now)
    expires_at: Mapped[datetime]  # absolute lifetime
    revoked_at: Mapped[datetime | None]
    revoke_reason: Mapped[str | None] = mapped_column(String(32))
    client_address: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(200))

    user: Mapped[StaffUser] = relationship(lazy="joined")


class StaffChange(Base):
    """History of account changes: who did what to which account, when and why."""

    __tablename__ = "staff_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("staff_users.id"), index=True)
    actor_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("staff_users.id"))
    action: Mapped[str] = mapped_column(String(32))
    before: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    after: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=clock.now)


class StaffGrant(Base):
    """A permission granted to one member of staff (DATA-05 category permissions such as
    `health:smd`), by whom and when. Revoking deletes the row; the change history keeps the trace."""

    __tablename__ = "staff_grants"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("staff_users.id"), primary_key=True)
    permission: Mapped[str] = mapped_column(String(40), primary_key=True)
    granted_by: Mapped[str | None] = mapped_column(String(64))
    granted_at: Mapped[datetime] = mapped_column(default=clock.now)
