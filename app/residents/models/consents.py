"""Consent records (知情同意, DATA-06)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from app.core import clock
from app.core.db import Base, UUIDPrimaryKey


class ResidentConsent(UUIDPrimaryKey, Base):
    """One consent (知情同意) for one purpose and one text version; revocation ends it.

    A new grant for a newer text version supersedes the active one. At most one consent per
    resident and purpose is active (partial unique index). Reached only through its resident, so
    it follows the resident's centre scope.
    """

    __tablename__ = "resident_consents"
    __table_args__ = (
        Index(
            "uq_resident_consents_active",
            "resident_id",
            "purpose",
            unique=True,
            postgresql_where=text("ended_at IS NULL"),
            sqlite_where=text("ended_at IS NULL"),
        ),
    )

    resident_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("residents.id"), index=True)
    purpose: Mapped[str] = mapped_column(String(40))
    text_version: Mapped[str] = mapped_column(String(20))
    legal_basis: Mapped[str] = mapped_column(String(32))
    granted_by: Mapped[str] = mapped_column(String(16))  # self | guardian
    guardian_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("residents.id"))
    guardian_relationship: Mapped[str | None] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(16))
    granted_at: Mapped[datetime] = mapped_column(default=clock.now)
    recorded_by: Mapped[str | None] = mapped_column(String(64))  # actor reference, e.g. staff:<id>
    ended_at: Mapped[datetime | None]
    end_reason: Mapped[str | None] = mapped_column(String(16))  # revoked | superseded
    revoked_by: Mapped[str | None] = mapped_column(String(16))  # self | guardian
    revoke_channel: Mapped[str | None] = mapped_column(String(16))
    revoke_recorded_by: Mapped[str | None] = mapped_column(String(64))

    @property
    def is_active(self) -> bool:
        return self.ended_at is None

    @property
    def state(self) -> str:
        return "active" if self.ended_at is None else (self.end_reason or "revoked")
