"""WeChat users of the mini-program, their sessions, and their bindings to residents.

- `MpUser`: one WeChat user of our mini-program, known by `openid` (pseudonymous, per app; stored
  in clear under a unique index) and `unionid` when WeChat provides it. No `session_key` is kept.
- `MpSession`: a resident token (`rt_...`), stored as a SHA-256 hash, with idle and absolute
  lifetimes, revocable at once (the database, not Redis, is the authority: REL-04).
- `MpBinding`: "this WeChat user acts for this resident" with the relationship (`self` after
  real-name confirmation; `parent`/`guardian`/`child`/`spouse` as proxy), verified by SMS OTP.
  Its state machine is ACTIVE -> ENDED; every transition writes an `MpBindingEvent`.
  The database guards the invariants (partial unique indexes): one active binding per user and
  resident, one active `self` binding per user, and one per resident.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.orm import relationship as relation  # `relationship` is a column of MpBinding

from app.core import clock
from app.core.db import Base, UUIDPrimaryKey
from app.core.errors import InvalidTransition
from app.residents.models import Resident


class MpUser(UUIDPrimaryKey, Base):
    __tablename__ = "mp_users"

    openid: Mapped[str] = mapped_column(String(64), unique=True)
    unionid: Mapped[str | None] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    last_login_at: Mapped[datetime | None]


class MpSession(UUIDPrimaryKey, Base):
    __tablename__ = "mp_sessions"
    __table_args__ = (Index("ix_mp_sessions_user_open", "user_id", "revoked_at"),)

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("mp_users.id"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    last_seen_at: Mapped[datetime] = mapped_column(default=clock.now)
    expires_at: Mapped[datetime]  # absolute lifetime
    revoked_at: Mapped[datetime | None]
    revoke_reason: Mapped[str | None] = mapped_column(String(32))
    client_address: Mapped[str | None] = mapped_column(String(64))

    user: Mapped[MpUser] = relation(lazy="joined")


class Relationship(StrEnum):
    """What the WeChat user is to the resident."""

    SELF = "self"
    PARENT = "parent"  # 父母: a parent acting for a child
    GUARDIAN = "guardian"  # 监护人: another legal guardian of a minor (or of an adult without capacity)
    CHILD = "child"  # 子女: a son or daughter acting for an (elderly) parent
    SPOUSE = "spouse"  # 配偶

    @property
    def label(self) -> str:
        return RELATIONSHIP_LABELS[self]


RELATIONSHIP_LABELS: dict[Relationship, str] = {
    Relationship.SELF: "本人",
    Relationship.PARENT: "父母",
    Relationship.GUARDIAN: "监护人",
    Relationship.CHILD: "子女",
    Relationship.SPOUSE: "配偶",
}
PROXY_RELATIONSHIPS: tuple[Relationship, ...] = tuple(r for r in Relationship if r is not Relationship.SELF)


class BindingStatus(StrEnum):
    ACTIVE = "active"
    ENDED = "ended"


BINDING_TRANSITIONS: dict[BindingStatus | None, frozenset[BindingStatus]] = {
    None: frozenset({BindingStatus.ACTIVE}),
    BindingStatus.ACTIVE: frozenset({BindingStatus.ENDED}),
    BindingStatus.ENDED: frozenset(),
}

# Why a binding ended.
END_REMOVED = "removed_by_user"
END_SUPERSEDED = "superseded"  # the resident confirmed their identity from another WeChat user


_ACTIVE = text("status = 'active'")
_ACTIVE_SELF = text("status = 'active' AND relationship = 'self'")


class MpBinding(UUIDPrimaryKey, Base):
    __tablename__ = "mp_bindings"
    __table_args__ = (
        Index(
            "uq_mp_bindings_active_pair",
            "user_id",
            "resident_id",
            unique=True,
            postgresql_where=_ACTIVE,
            sqlite_where=_ACTIVE,
        ),
        Index(
            "uq_mp_bindings_active_self_user",
            "user_id",
            unique=True,
            postgresql_where=_ACTIVE_SELF,
            sqlite_where=_ACTIVE_SELF,
        ),
        Index(
            "uq_mp_bindings_active_self_resident",
            "resident_id",
            unique=True,
            postgresql_where=_ACTIVE_SELF,
            sqlite_where=_ACTIVE_SELF,
        ),
        CheckConstraint("status IN ('active', 'ended')", name="status"),
        CheckConstraint(
            "relationship IN ('self', 'parent', 'guardian', 'child', 'spouse')", name="relationship"
        ),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("mp_users.id"), index=True)
    resident_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("residents.id"), index=True)
    relationship: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    verified_by: Mapped[str] = mapped_column(String(16), default="sms_otp")
    verified_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    ended_at: Mapped[datetime | None]
    end_reason: Mapped[str | None] = mapped_column(String(32))

    resident: Mapped[Resident] = relation(lazy="joined")

    @property
    def relationship_label(self) -> str:
        return Relationship(self.relationship).label

    def transition(self, to: BindingStatus, *, actor: str, reason: str, channel: str = "miniprogram") -> None:
        """The one way to change `status`: checked against the table, written to the history."""
        current = BindingStatus(self.status) if self.status else None
        if to not in BINDING_TRANSITIONS[current]:
            raise InvalidTransition("该绑定当前状态不允许此操作", code="invalid_binding_transition")
        now = clock.now()
        self.status = to.value
        if to is BindingStatus.ENDED:
            self.ended_at = now
            self.end_reason = reason
        self.events.append(
            MpBindingEvent(
                from_status=current.value if current else None,
                to_status=to.value,
                actor=actor,
                reason=reason,
                channel=channel,
                occurred_at=now,
            )
        )

    events: Mapped[list[MpBindingEvent]] = relation(
        back_populates="binding", cascade="all, delete-orphan", lazy="select", order_by="MpBindingEvent.id"
    )


class MpBindingEvent(Base):
    """History of a binding: who moved it from which status to which, when, why, through what."""

    __tablename__ = "mp_binding_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    binding_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("mp_bindings.id"), index=True)
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(64))  # "resident:<mp user id>", "system"
    reason: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(16))
    occurred_at: Mapped[datetime] = mapped_column(default=clock.now)

    binding: Mapped[MpBinding] = relation(back_populates="events")
