"""Service packages (服务包): the basic package and personalised packages (个性化套餐).

A package is versioned: `(code, version)` is unique and a published version never changes; editing
makes a new version (draft → published), and the previous one is retired. A contract keeps the
package version it was signed with (and a snapshot of its name and prices).

`institution_id` NULL = a district-wide package (区级); set = a package of one centre (中心自定义).
Prices are integer fen: `price_fen = subsidy_fen + self_pay_fen` (enforced by the database).
Eligibility: `target_groups` (population-group codes of `app.residents.models.codes`; empty = anyone)
and an age range in whole years (inclusive; NULL = unbounded).
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import JSON, CheckConstraint, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core.db import Base, Timestamps, UUIDPrimaryKey


class PackageKind(StrEnum):
    BASIC = "basic"  # 基础包: basic medical + national basic public-health services
    PERSONALISED = "personalised"  # 个性化套餐


class PackageStatus(StrEnum):
    DRAFT = "draft"
    PUBLISHED = "published"
    RETIRED = "retired"


class ServicePackage(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "service_packages"
    __table_args__ = (
        UniqueConstraint("code", "version"),
        CheckConstraint("price_fen = subsidy_fen + self_pay_fen", name="price_parts"),
        CheckConstraint("subsidy_fen >= 0 AND self_pay_fen >= 0", name="nonnegative"),
        CheckConstraint("min_age IS NULL OR max_age IS NULL OR min_age <= max_age", name="age_range"),
    )

    code: Mapped[str] = mapped_column(String(40), index=True)  # stable across versions, e.g. "basic"
    version: Mapped[int] = mapped_column(default=1)
    name: Mapped[str] = mapped_column(String(60))
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default=PackageStatus.DRAFT)
    institution_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("institutions.id"), index=True)
    description: Mapped[str | None] = mapped_column(Text)
    target_groups: Mapped[list[str]] = mapped_column(JSON, default=list)
    min_age: Mapped[int | None]
    max_age: Mapped[int | None]
    sex: Mapped[str | None] = mapped_column(String(8))  # e.g. maternal packages: female
    price_fen: Mapped[int]
    subsidy_fen: Mapped[int] = mapped_column(default=0)
    self_pay_fen: Mapped[int] = mapped_column(default=0)
    valid_from: Mapped[date | None]
    valid_to: Mapped[date | None]
    published_at: Mapped[datetime | None]
    created_by: Mapped[uuid.UUID | None]

    items: Mapped[list[PackageItem]] = relationship(
        back_populates="package", order_by="PackageItem.sort", cascade="all, delete-orphan", lazy="selectin"
    )


class PackageItem(UUIDPrimaryKey, Base):
    """One service of a package with its frequency (e.g. 高血压随访 at least 4 times a year)."""

    __tablename__ = "package_items"
    __table_args__ = (
        CheckConstraint("times_per_period >= 1", name="times_positive"),
        UniqueConstraint("package_id", "code"),
    )

    package_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("service_packages.id"), index=True)
    code: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(80))
    # The kind of service record that fulfils it (e.g. "hypertension_follow_up", "health_exam"); the
    # public-health forms (issue 6) and service records tick tasks by this type.
    service_type: Mapped[str] = mapped_column(String(40))
    times_per_period: Mapped[int] = mapped_column(default=1)  # within one contract period (a year)
    # Due windows: the period is divided into `times_per_period` equal windows unless `due_within_days`
    # says the (single) service is due within N days of the contract start (e.g. first visit in 7 days).
    due_within_days: Mapped[int | None]
    description: Mapped[str | None] = mapped_column(Text)
    sort: Mapped[int] = mapped_column(default=0)

    package: Mapped[ServicePackage] = relationship(back_populates="items")
