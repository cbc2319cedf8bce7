"""Households (家庭/户) and their members."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint, orm, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core import clock
from app.core.db import Base, Timestamps, UUIDPrimaryKey
from app.core.scope import CentreScoped
from app.residents.models.codes import HEAD
from app.residents.models.residents import Resident


class Household(UUIDPrimaryKey, Timestamps, CentreScoped, Base):
    """家庭/户. All members belong to the household's centre; the head is the member with
    relationship `head` (at most one, guarded by a partial unique index)."""

    __tablename__ = "households"

    members: Mapped[list[HouseholdMember]] = relationship(
        back_populates="household",
        cascade="all, delete-orphan",
        lazy="selectin",
        order_by="HouseholdMember.joined_at",
    )

    @property
    def head(self) -> HouseholdMember | None:
        return next((m for m in self.members if m.relationship == HEAD), None)


class HouseholdMember(UUIDPrimaryKey, CentreScoped, Base):
    """A resident's membership of a household (a resident is in at most one household)."""

    __tablename__ = "household_members"
    __table_args__ = (
        UniqueConstraint("resident_id"),
        Index(
            "uq_household_members_head",
            "household_id",
            unique=True,
            postgresql_where=text("relationship = 'head'"),
            sqlite_where=text("relationship = 'head'"),
        ),
    )

    household_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("households.id"), index=True)
    resident_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("residents.id"))
    relationship: Mapped[str] = mapped_column(String(32))
    joined_at: Mapped[datetime] = mapped_column(default=clock.now)

    # `orm.relationship`: the column above is itself called `relationship` (与户主关系).
    household: Mapped[Household] = orm.relationship(back_populates="members")
    resident: Mapped[Resident] = orm.relationship(lazy="joined")
