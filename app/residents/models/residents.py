"""The resident (居民) and the rows that hang off it: stored population groups, transfers between
managing centres (管理机构变更) and the change history."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, String, UniqueConstraint, event
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core import clock
from app.core.crypto import EncryptedString, blind_index
from app.core.db import Base, Timestamps, UUIDPrimaryKey
from app.core.errors import InvalidTransition
from app.core.scope import CentreScoped
from app.institutions.models import Community, Institution, Street
from app.residents.models.codes import (
    CHILD_0_6,
    ELDERLY_65,
    GENERAL,
    STATUS_TRANSITIONS,
    IdType,
    ResidentStatus,
)
from app.residents.models.identity import name_initials, years_between

if TYPE_CHECKING:
    from app.residents.models.households import HouseholdMember


class Resident(UUIDPrimaryKey, Timestamps, CentreScoped, Base):
    """A resident of the district, managed by one centre (`institution_id`, the 管理机构)."""

    __tablename__ = "residents"
    __table_args__ = (
        # The same ID number exists once in the district, whichever centre manages it.
        UniqueConstraint("id_number_bidx"),
        Index("ix_residents_institution_id_name_initials", "institution_id", "name_initials"),
        CheckConstraint("status IN ('active', 'moved_out', 'deceased')", name="status"),
        CheckConstraint("sex IN ('male', 'female')", name="sex"),
    )

    name: Mapped[str] = mapped_column(String(50))
    name_initials: Mapped[str] = mapped_column(String(100), index=True)
    id_type: Mapped[str] = mapped_column(String(32), default=IdType.RESIDENT_ID_CARD.value)
    id_number: Mapped[str] = mapped_column(EncryptedString("resident.id_number"))
    id_number_bidx: Mapped[str] = mapped_column(String(64))
    sex: Mapped[str] = mapped_column(String(8))
    birth_date: Mapped[date]
    phone: Mapped[str | None] = mapped_column(EncryptedString("resident.phone"))
    phone_bidx: Mapped[str | None] = mapped_column(String(64), index=True)
    current_address: Mapped[str] = mapped_column(EncryptedString("resident.current_address"))
    registered_address: Mapped[str | None] = mapped_column(EncryptedString("resident.registered_address"))
    street_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("streets.id"), index=True)
    community_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("communities.id"), index=True)
    guardian_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("residents.id"), index=True)
    guardian_relationship: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default=ResidentStatus.ACTIVE.value)
    status_date: Mapped[date | None]

    institution: Mapped[Institution] = relationship(lazy="joined")
    street: Mapped[Street] = relationship(lazy="joined")
    community: Mapped[Community] = relationship(lazy="joined")
    guardian: Mapped[Resident | None] = relationship(remote_side="Resident.id", lazy="select")
    group_rows: Mapped[list[ResidentGroup]] = relationship(
        back_populates="resident", cascade="all, delete-orphan", lazy="selectin"
    )
    membership: Mapped[HouseholdMember | None] = relationship(
        viewonly=True,
        lazy="select",
        primaryjoin="Resident.id == foreign(HouseholdMember.resident_id)",
        uselist=False,
    )

    # -- derived values ---------------------------------------------------------------------

    def age_on(self, on: date) -> int:
        return years_between(self.birth_date, on)

    @property
    def stored_groups(self) -> set[str]:
        return {row.code for row in self.group_rows}

    def groups_on(self, on: date) -> set[str]:
        """Stored groups plus the age-derived ones; 普通人群 when no key group applies."""
        groups = set(self.stored_groups)
        age = self.age_on(on)
        if age >= 65:
            groups.add(ELDERLY_65)
        if age <= 6:
            groups.add(CHILD_0_6)
        return groups or {GENERAL}

    def set_stored_groups(self, codes: set[str]) -> None:
        current = {row.code: row for row in self.group_rows}
        for code in set(current) - codes:
            self.group_rows.remove(current[code])
        for code in sorted(codes - set(current)):
            self.group_rows.append(ResidentGroup(code=code))

    # -- status machine ---------------------------------------------------------------------

    @property
    def is_active(self) -> bool:
        return self.status == ResidentStatus.ACTIVE

    def check_transition(self, to: ResidentStatus) -> None:
        current = ResidentStatus(self.status)
        if to not in STATUS_TRANSITIONS[current]:
            raise InvalidTransition(
                f"居民当前状态为“{current.label}”，不能变更为“{to.label}”", code="invalid_status_transition"
            )


@event.listens_for(Resident.id_number, "set", propagate=True)
def _index_id_number(target: Resident, value: str | None, _old: Any, _initiator: Any) -> None:
    target.id_number_bidx = blind_index(value, "id_number")  # type: ignore[assignment]


@event.listens_for(Resident.phone, "set", propagate=True)
def _index_phone(target: Resident, value: str | None, _old: Any, _initiator: Any) -> None:
    target.phone_bidx = blind_index(value, "phone")


@event.listens_for(Resident.name, "set", propagate=True)
def _index_name(target: Resident, value: str | None, _old: Any, _initiator: Any) -> None:
    target.name_initials = name_initials(value or "")


class ResidentGroup(Base):
    """A stored population group of a resident (age-derived groups are never stored)."""

    __tablename__ = "resident_groups"

    resident_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("residents.id"), primary_key=True)
    code: Mapped[str] = mapped_column(String(40), primary_key=True, index=True)
    added_at: Mapped[datetime] = mapped_column(default=clock.now)

    resident: Mapped[Resident] = relationship(back_populates="group_rows")


class ResidentTransfer(UUIDPrimaryKey, Base):
    """管理机构变更: a resident moved from one managing centre to another (one record kept)."""

    __tablename__ = "resident_transfers"

    resident_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("residents.id"), index=True)
    from_institution_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("institutions.id"))
    to_institution_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("institutions.id"))
    # The household the resident moved with (no foreign key: a household may later be dissolved).
    household_id: Mapped[uuid.UUID | None]
    reason: Mapped[str] = mapped_column(String(200))
    actor: Mapped[str | None] = mapped_column(String(64))
    actor_role: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=clock.now)

    from_institution: Mapped[Institution] = relationship(foreign_keys=[from_institution_id], lazy="joined")
    to_institution: Mapped[Institution] = relationship(foreign_keys=[to_institution_id], lazy="joined")


class ResidentChange(Base):
    """Change history of a resident: what kind of change, which fields, by whom, when, why.

    Never holds personal values: `fields` names the changed fields; `detail` holds non-identifying
    codes only (status codes, centre and household ids, relationship codes, consent purposes and
    versions), never a name, ID number, phone, address or health datum (population groups).
    """

    __tablename__ = "resident_changes"
    __table_args__ = (Index("ix_resident_changes_resident_id_created_at", "resident_id", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    resident_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("residents.id"))
    action: Mapped[str] = mapped_column(String(32))
    fields: Mapped[list[str]] = mapped_column(JSON, default=list)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    actor: Mapped[str | None] = mapped_column(String(64))
    actor_role: Mapped[str | None] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
