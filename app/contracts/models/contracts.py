"""Family-doctor contracts (签约协议) and their history, packages, signatures and attachments.

Statuses (`CONTRACT_TRANSITIONS` is the only source of allowed moves; family-doctor spec §1.2):

    pending_review          预申请待审核: an online application (mini-program, partner app) waiting for
                            the team's review (deadline `review_due_at`)
    awaiting_confirmation   待居民确认: the team accepted; the resident confirms the agreement
    awaiting_payment        待缴费: confirmed (or signed at the desk / on a home visit) with a self-pay
                            portion; becomes active when the bill is paid
    active                  已签约
    rejected                已拒绝 (final; reason required)
    withdrawn               已撤回 (final; the resident withdrew, or the review/confirmation lapsed)
    expired                 已到期 (final; the period ended)
    terminated              已解约 (final; early termination with a reason)

One resident holds at most one contract in an *occupying* status (pending review … active) across
the whole district: `occupancy_key` is the resident id while occupying and NULL otherwise, under a
unique constraint, so the database refuses a second one whatever the race.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core import clock
from app.core.db import Base, Timestamps, UUIDPrimaryKey
from app.core.scope import CentreScoped


class ContractStatus(StrEnum):
    PENDING_REVIEW = "pending_review"
    AWAITING_CONFIRMATION = "awaiting_confirmation"
    AWAITING_PAYMENT = "awaiting_payment"
    ACTIVE = "active"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"
    EXPIRED = "expired"
    TERMINATED = "terminated"


STATUS_LABELS: Mapping[str, str] = {
    ContractStatus.PENDING_REVIEW: "待团队审核",
    ContractStatus.AWAITING_CONFIRMATION: "待居民确认",
    ContractStatus.AWAITING_PAYMENT: "待缴费",
    ContractStatus.ACTIVE: "已签约",
    ContractStatus.REJECTED: "已拒绝",
    ContractStatus.WITHDRAWN: "已撤回",
    ContractStatus.EXPIRED: "已到期",
    ContractStatus.TERMINATED: "已解约",
}

OCCUPYING_STATUSES = frozenset(
    {
        ContractStatus.PENDING_REVIEW,
        ContractStatus.AWAITING_CONFIRMATION,
        ContractStatus.AWAITING_PAYMENT,
        ContractStatus.ACTIVE,
    }
)
# Statuses holding a place of the doctor's and the team's capacity (reserved at acceptance/signing).
CAPACITY_STATUSES = frozenset(
    {ContractStatus.AWAITING_CONFIRMATION, ContractStatus.AWAITING_PAYMENT, ContractStatus.ACTIVE}
)

CONTRACT_TRANSITIONS: Mapping[ContractStatus, frozenset[ContractStatus]] = {
    ContractStatus.PENDING_REVIEW: frozenset(
        {ContractStatus.AWAITING_CONFIRMATION, ContractStatus.REJECTED, ContractStatus.WITHDRAWN}
    ),
    ContractStatus.AWAITING_CONFIRMATION: frozenset(
        {ContractStatus.AWAITING_PAYMENT, ContractStatus.ACTIVE, ContractStatus.WITHDRAWN}
    ),
    ContractStatus.AWAITING_PAYMENT: frozenset({ContractStatus.ACTIVE, ContractStatus.WITHDRAWN}),
    ContractStatus.ACTIVE: frozenset({ContractStatus.EXPIRED, ContractStatus.TERMINATED}),
    ContractStatus.REJECTED: frozenset(),
    ContractStatus.WITHDRAWN: frozenset(),
    ContractStatus.EXPIRED: frozenset(),
    ContractStatus.TERMINATED: frozenset(),
}


class SigningChannel(StrEnum):
    """签约渠道 (spec row 49)."""

    MINI_PROGRAM = "mini_program"  # 小程序网络预申请
    PARTNER_APP = "partner_app"  # 健康罗湖
    DESK = "desk"  # 诊间签约
    HOME_VISIT = "home_visit"  # 上门签约 (tablet)
    IMPORT = "import"


class SigningWay(StrEnum):
    """Who signed for the resident (YLZ sign way)."""

    SELF = "self"  # 本人
    PROXY = "proxy"  # 家属代签 (relationship recorded)
    GUARDIAN = "guardian"  # 监护人 (required under 18)
    HOUSEHOLD = "household"  # 家庭签约: signed together with the household by its representative


class SignatureRole(StrEnum):
    RESIDENT = "resident"  # 乙方 (居民) or the person signing for them
    DOCTOR = "doctor"  # 甲方 (家庭医生)


class Contract(UUIDPrimaryKey, Timestamps, CentreScoped, Base):
    """签约协议. `institution_id` is the signing team's centre."""

    __tablename__ = "contracts"
    __table_args__ = (
        UniqueConstraint("occupancy_key"),
        CheckConstraint("period_end >= period_start", name="period"),
        CheckConstraint("self_pay_fen >= 0 AND subsidy_fen >= 0", name="fees_nonnegative"),
        Index("ix_contracts_team_status", "team_id", "status"),
        Index("ix_contracts_status_review_due", "status", "review_due_at"),
    )

    contract_no: Mapped[str] = mapped_column(String(32), unique=True)
    resident_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("residents.id"), index=True)
    team_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("teams.id"), index=True)
    doctor_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("doctors.id"), index=True)
    status: Mapped[str] = mapped_column(String(24))
    status_changed_at: Mapped[datetime] = mapped_column(default=clock.now)
    # The resident id while the contract occupies the resident's one place; NULL otherwise.
    occupancy_key: Mapped[uuid.UUID | None]
    capacity_held: Mapped[bool] = mapped_column(default=False)  # a doctor+team place is reserved
    channel: Mapped[str] = mapped_column(String(16))
    signing_way: Mapped[str] = mapped_column(String(16), default=SigningWay.SELF)
    # Proxy / guardian / household representative: a resident of ours, or a name + relationship.
    signer_resident_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("residents.id"))
    signer_name: Mapped[str | None] = mapped_column(String(50))
    signer_relationship: Mapped[str | None] = mapped_column(String(32))
    household_batch: Mapped[uuid.UUID | None] = mapped_column(index=True)  # contracts signed together
    renewal_of_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("contracts.id"))

    period_start: Mapped[date]
    period_end: Mapped[date]
    # Fees: the sum over the contract's packages at signing (fen).
    price_fen: Mapped[int] = mapped_column(default=0)
    subsidy_fen: Mapped[int] = mapped_column(default=0)
    self_pay_fen: Mapped[int] = mapped_column(default=0)
    bill_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("bills.id"))

    # The agreement exactly as signed: template version, rendered clauses, full text and its hash.
    template_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("agreement_templates.id"))
    clauses: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    agreement_text: Mapped[str] = mapped_column(Text, default="")
    agreement_sha256: Mapped[str] = mapped_column(String(64), default="")

    # Online applications: review deadline and outcome.
    applied_at: Mapped[datetime | None]
    review_due_at: Mapped[datetime | None]
    reviewed_at: Mapped[datetime | None]
    reviewed_by: Mapped[uuid.UUID | None]
    rejection_reason: Mapped[str | None] = mapped_column(String(200))
    confirmed_at: Mapped[datetime | None]
    signed_at: Mapped[datetime | None]  # when both parties signed (desk, home visit) or confirmed
    activated_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    end_reason: Mapped[str | None] = mapped_column(String(200))

    # Home-visit signing: the tablet's id for this submission (a retry finds the same contract).
    client_submission_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    signed_place: Mapped[str | None] = mapped_column(String(200))
    signed_latitude: Mapped[str | None] = mapped_column(String(20))
    signed_longitude: Mapped[str | None] = mapped_column(String(20))
    created_by_kind: Mapped[str] = mapped_column(String(16))
    created_by_id: Mapped[uuid.UUID | None]

    print_count: Mapped[int] = mapped_column(default=0)
    last_printed_at: Mapped[datetime | None]

    packages: Mapped[list[ContractPackage]] = relationship(
        back_populates="contract", cascade="all, delete-orphan", lazy="selectin"
    )


class ContractPackage(UUIDPrimaryKey, Base):
    """A package of a contract, with the version and prices it was signed with."""

    __tablename__ = "contract_packages"
    __table_args__ = (UniqueConstraint("contract_id", "package_id"),)

    contract_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contracts.id"), index=True)
    package_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("service_packages.id"), index=True)
    code: Mapped[str] = mapped_column(String(40))
    version: Mapped[int]
    name: Mapped[str] = mapped_column(String(60))
    kind: Mapped[str] = mapped_column(String(16))
    price_fen: Mapped[int]
    subsidy_fen: Mapped[int]
    self_pay_fen: Mapped[int]

    contract: Mapped[Contract] = relationship(back_populates="packages")


class ContractEvent(Base):
    """Every status change and notable action of a contract (actor, role, channel, reason, time)."""

    __tablename__ = "contract_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    contract_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contracts.id"), index=True)
    action: Mapped[str] = mapped_column(String(32))  # apply, accept, reject, confirm, sign, pay, print, ...
    from_status: Mapped[str | None] = mapped_column(String(24))
    to_status: Mapped[str | None] = mapped_column(String(24))
    actor_kind: Mapped[str] = mapped_column(String(16))  # staff | resident | partner | system
    actor_id: Mapped[uuid.UUID | None]
    actor_role: Mapped[str | None] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=clock.now)


class ContractSignature(UUIDPrimaryKey, Base):
    """A signature image captured on screen (PNG, re-encoded and size-checked on upload)."""

    __tablename__ = "contract_signatures"
    __table_args__ = (UniqueConstraint("contract_id", "role"),)

    contract_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contracts.id"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    signer_name: Mapped[str | None] = mapped_column(String(50))
    image: Mapped[bytes] = mapped_column(LargeBinary)
    sha256: Mapped[str] = mapped_column(String(64))
    signed_at: Mapped[datetime] = mapped_column(default=clock.now)


class ContractAttachment(UUIDPrimaryKey, Base):
    """A photo taken at signing, or the scanned signed paper copy."""

    __tablename__ = "contract_attachments"
    __table_args__ = (CheckConstraint("kind IN ('photo', 'scanned_copy')", name="kind"),)

    contract_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contracts.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    content_type: Mapped[str] = mapped_column(String(40))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int]
    sha256: Mapped[str] = mapped_column(String(64))
    uploaded_by: Mapped[uuid.UUID | None]
    uploaded_at: Mapped[datetime] = mapped_column(default=clock.now)
