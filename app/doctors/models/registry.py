"""The registration row, its two state machines, its photo and its history."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, LargeBinary, String, Text, event
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core import clock
from app.core.crypto import EncryptedString, blind_index
from app.core.db import Base, Timestamps, UUIDPrimaryKey
from app.core.errors import InvalidTransition
from app.core.scope import CentreScoped
from app.doctors.models.codes import is_valid_mi_code, name_search_keys, title_series
from app.institutions.models import Institution

# --- state machines -----------------------------------------------------------------------------


class ReviewStatus(StrEnum):
    SUBMITTED = "submitted"
    CENTRE_APPROVED = "centre_approved"
    APPROVED = "approved"
    REJECTED = "rejected"


REVIEW_STATUS_LABELS: dict[str, str] = {
    ReviewStatus.SUBMITTED: "待审核",
    ReviewStatus.CENTRE_APPROVED: "中心已审核，待区级审核",
    ReviewStatus.APPROVED: "审核通过",
    ReviewStatus.REJECTED: "已驳回",
}


class ReviewAction(StrEnum):
    SUBMIT = "submit"
    CENTRE_APPROVE = "centre_approve"
    APPROVE = "approve"
    REJECT = "reject"
    RESUBMIT = "resubmit"


# (current status, action) -> new status. `None` is "no row yet".
REVIEW_TRANSITIONS: Mapping[tuple[ReviewStatus | None, ReviewAction], ReviewStatus] = {
    (None, ReviewAction.SUBMIT): ReviewStatus.SUBMITTED,
    (ReviewStatus.SUBMITTED, ReviewAction.CENTRE_APPROVE): ReviewStatus.CENTRE_APPROVED,
    (ReviewStatus.SUBMITTED, ReviewAction.APPROVE): ReviewStatus.APPROVED,  # one-level review
    (ReviewStatus.CENTRE_APPROVED, ReviewAction.APPROVE): ReviewStatus.APPROVED,
    (ReviewStatus.SUBMITTED, ReviewAction.REJECT): ReviewStatus.REJECTED,
    (ReviewStatus.CENTRE_APPROVED, ReviewAction.REJECT): ReviewStatus.REJECTED,
    (ReviewStatus.REJECTED, ReviewAction.RESUBMIT): ReviewStatus.SUBMITTED,
}


class PracticeStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    LEFT = "left"


PRACTICE_STATUS_LABELS: dict[str, str] = {
    PracticeStatus.ACTIVE: "在岗",
    PracticeStatus.SUSPENDED: "停诊",
    PracticeStatus.LEFT: "离岗/离职",
}

# Practice status is set by naming the target; (from, to) pairs that are allowed.
PRACTICE_TRANSITIONS: frozenset[tuple[PracticeStatus, PracticeStatus]] = frozenset(
    {
        (PracticeStatus.ACTIVE, PracticeStatus.SUSPENDED),
        (PracticeStatus.SUSPENDED, PracticeStatus.ACTIVE),
        (PracticeStatus.ACTIVE, PracticeStatus.LEFT),
        (PracticeStatus.SUSPENDED, PracticeStatus.LEFT),
        (PracticeStatus.LEFT, PracticeStatus.ACTIVE),  # rejoining; review status is unchanged
    }
)


def next_review_status(current: str | None, action: ReviewAction) -> ReviewStatus:
    key = (ReviewStatus(current) if current is not None else None, action)
    target = REVIEW_TRANSITIONS.get(key)
    if target is None:
        label = REVIEW_STATUS_LABELS.get(current or "", current or "无")
        raise InvalidTransition(
            f"注册申请当前状态为“{label}”，不能执行此操作",
            errors={"status": [str(current)], "action": [action.value]},
        )
    return target


def check_practice_transition(current: str, target: PracticeStatus) -> None:
    if (PracticeStatus(current), target) not in PRACTICE_TRANSITIONS:
        raise InvalidTransition(
            f"执业状态不能从“{PRACTICE_STATUS_LABELS[current]}”改为“{PRACTICE_STATUS_LABELS[target]}”",
            errors={"practice_status": [current]},
        )


# --- models -------------------------------------------------------------------------------------


class Doctor(UUIDPrimaryKey, Timestamps, CentreScoped, Base):
    """A registered family-doctor team member of one centre."""

    __tablename__ = "doctors"
    __table_args__ = (
        CheckConstraint("signed_count >= 0", name="signed_count_nonnegative"),
        Index("ix_doctors_library", "status", "practice_status", "institution_id"),
    )

    staff_user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("staff_users.id"), unique=True)
    name: Mapped[str] = mapped_column(String(50))
    name_initials: Mapped[str] = mapped_column(Text, default=" ")
    name_pinyin: Mapped[str] = mapped_column(Text, default=" ")
    sex: Mapped[str] = mapped_column(String(8))
    birth_date: Mapped[date]
    phone: Mapped[str] = mapped_column(EncryptedString("doctor.phone"))
    phone_bidx: Mapped[str | None] = mapped_column(String(64), index=True)
    id_number: Mapped[str | None] = mapped_column(EncryptedString("doctor.id_number"))
    id_number_bidx: Mapped[str | None] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(20))
    practice_licence_no: Mapped[str | None] = mapped_column(String(30), unique=True)
    practice_scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    qualifications: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    specialties: Mapped[list[str]] = mapped_column(JSON, default=list)
    specialties_text: Mapped[str] = mapped_column(Text, default="")
    introduction: Mapped[str | None] = mapped_column(Text)
    photo_sha256: Mapped[str | None] = mapped_column(String(64))

    status: Mapped[str] = mapped_column(String(20), default=ReviewStatus.SUBMITTED)
    submitted_at: Mapped[datetime] = mapped_column(default=clock.now)
    centre_reviewed_at: Mapped[datetime | None]
    approved_at: Mapped[datetime | None]
    rejection_reason: Mapped[str | None] = mapped_column(String(200))
    practice_status: Mapped[str] = mapped_column(String(16), default=PracticeStatus.ACTIVE)

    mi_doctor_code: Mapped[str | None] = mapped_column(String(13), unique=True)
    capacity_override: Mapped[int | None]
    # Residents currently signed with this doctor. Only `app.teams.services.capacity` changes it,
    # with a conditional UPDATE (`... WHERE signed_count < cap`), never read-modify-write.
    signed_count: Mapped[int] = mapped_column(default=0, server_default="0")

    institution: Mapped[Institution] = relationship(lazy="joined")

    @property
    def title_series(self) -> str:
        return title_series(self.title)

    @property
    def has_valid_mi_code(self) -> bool:
        return is_valid_mi_code(self.mi_doctor_code)

    @property
    def has_photo(self) -> bool:
        return self.photo_sha256 is not None

    def capacity(self, default: int) -> int:
        return self.capacity_override if self.capacity_override is not None else default

    def remaining(self, default: int) -> int:
        return max(self.capacity(default) - self.signed_count, 0)


@event.listens_for(Doctor.name, "set", propagate=True)
def _index_name(target: Doctor, value: str | None, _old: Any, _initiator: Any) -> None:
    target.name_initials, target.name_pinyin = name_search_keys(value or "")


@event.listens_for(Doctor.phone, "set", propagate=True)
def _index_phone(target: Doctor, value: str | None, _old: Any, _initiator: Any) -> None:
    target.phone_bidx = blind_index(value, "phone")


@event.listens_for(Doctor.id_number, "set", propagate=True)
def _index_id_number(target: Doctor, value: str | None, _old: Any, _initiator: Any) -> None:
    target.id_number_bidx = blind_index(value, "id_number")


@event.listens_for(Doctor.specialties, "set", propagate=True)
def _index_specialties(target: Doctor, value: list[str] | None, _old: Any, _initiator: Any) -> None:
    target.specialties_text = "\n".join(value or [])


class DoctorPhoto(Base):
    """The current photo of a doctor (bytes, validated on upload). Kept apart from the doctor row."""

    __tablename__ = "doctor_photos"

    doctor_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("doctors.id"), primary_key=True)
    content_type: Mapped[str] = mapped_column(String(32))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int]
    width: Mapped[int]
    height: Mapped[int]
    sha256: Mapped[str] = mapped_column(String(64))
    uploaded_by: Mapped[uuid.UUID | None]
    uploaded_at: Mapped[datetime] = mapped_column(default=clock.now)


class DoctorHistory(Base):
    """Every change of a registration: review and practice transitions, profile, code and capacity."""

    __tablename__ = "doctor_history"

    id: Mapped[int] = mapped_column(primary_key=True)
    doctor_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("doctors.id"), index=True)
    action: Mapped[str] = mapped_column(String(32))
    from_status: Mapped[str | None] = mapped_column(String(20))
    to_status: Mapped[str | None] = mapped_column(String(20))
    actor_kind: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[uuid.UUID | None]
    actor_role: Mapped[str | None] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
