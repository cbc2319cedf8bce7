"""居民健康档案: the record (with its 17-digit number), the versioned forms, and special cases.

- `HealthRecord`: one per resident, numbered on creation (区划 6 + 街道 3 + 居委会 3 + sequence 5);
  `institution_id` is the managing centre (it follows the resident when the resident is
  transferred), `created_institution_id` the 建档机构.
- `HealthForm`: one filled form (a health examination, a follow-up visit …). Its content lives in
  `HealthFormVersion` rows: every edit adds a version (who, when, which fields, why) and the
  previous versions are kept. The payload is health data: encrypted at rest as a whole; only the
  few typed columns that lists and schedules query are in clear (type, category, dates, version).
- `HealthCase`: 专案管理 of a special-category patient (肺结核 under treatment, 严重精神障碍 under
  management) in a responsible centre, with its follow-up schedule. At most one open case per
  resident and category (`occupancy_key`, as contracts do).
"""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core import clock
from app.core.crypto import EncryptedString
from app.core.db import Base, Timestamps, UUIDPrimaryKey
from app.core.scope import CentreScoped
from app.institutions.models import Institution


class Category(StrEnum):
    """DATA-05: `smd` and `tb` forms and cases are gated by a per-staff category permission."""

    GENERAL = "general"
    SMD = "smd"  # 严重精神障碍
    TB = "tb"  # 肺结核

    @property
    def label(self) -> str:
        return {"general": "一般", "smd": "严重精神障碍", "tb": "肺结核"}[self.value]

    @property
    def permission(self) -> str | None:
        return None if self is Category.GENERAL else f"health:{self.value}"


SPECIAL_CATEGORIES: frozenset[str] = frozenset({Category.SMD, Category.TB})


class HealthRecord(UUIDPrimaryKey, Timestamps, CentreScoped, Base):
    """居民健康档案 (one per resident)."""

    __tablename__ = "health_records"
    __table_args__ = (CheckConstraint("status IN ('active', 'closed')", name="status"),)

    resident_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("residents.id"), unique=True)
    record_no: Mapped[str] = mapped_column(String(17), unique=True)
    created_on: Mapped[date]  # 建档日期
    created_institution_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("institutions.id"))  # 建档机构
    created_by: Mapped[str | None] = mapped_column(String(64))  # 建档人 (actor ref)
    created_by_name: Mapped[str | None] = mapped_column(String(50))
    responsible_doctor_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("staff_users.id"))  # 责任医生
    card_remarks: Mapped[str | None] = mapped_column(String(200))  # 信息卡 其他说明
    status: Mapped[str] = mapped_column(String(16), default="active")

    created_institution: Mapped[Institution] = relationship(
        foreign_keys=[created_institution_id], lazy="joined"
    )

    @property
    def short_no(self) -> str:
        """The 编号 printed on each form's header: the last 8 digits as □□□-□□□□□."""
        return f"{self.record_no[-8:-5]}-{self.record_no[-5:]}"


class RecordNumberCounter(Base):
    """The last personal sequence number used in one 居委会 (12-digit area code)."""

    __tablename__ = "health_record_counters"

    area_code: Mapped[str] = mapped_column(String(12), primary_key=True)
    last_seq: Mapped[int] = mapped_column(default=0)


class HealthCase(UUIDPrimaryKey, Timestamps, CentreScoped, Base):
    """专案管理 of a 肺结核 or 严重精神障碍 patient; `institution_id` is the responsible centre."""

    __tablename__ = "health_cases"
    __table_args__ = (
        UniqueConstraint("occupancy_key"),
        CheckConstraint("category IN ('smd', 'tb')", name="category"),
        CheckConstraint("status IN ('open', 'closed')", name="status"),
        Index("ix_health_cases_institution_due", "institution_id", "status", "next_due_on"),
    )

    resident_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("residents.id"), index=True)
    category: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16), default="open")
    # "<resident_id>:<category>" while open, NULL once closed: one open case per resident and category.
    occupancy_key: Mapped[str | None] = mapped_column(String(64))
    opened_on: Mapped[date]
    # TB: when the notice of the higher-level specialist institution was received (72 h clock).
    notified_at: Mapped[datetime | None]
    # TB: start of treatment and the intensive phase's length in months (from the regimen, e.g. 2HRZE/4HR).
    treatment_started_on: Mapped[date | None]
    intensive_months: Mapped[int | None]
    responsible_staff_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("staff_users.id"))
    next_due_on: Mapped[date | None]
    next_due_kind: Mapped[str | None] = mapped_column(String(32))
    closed_on: Mapped[date | None]
    close_reason: Mapped[str | None] = mapped_column(String(200))
    # Schedule facts the forms feed (supervisor code, last visit class …); codes only, no free text.
    facts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class HealthForm(UUIDPrimaryKey, Timestamps, CentreScoped, Base):
    """One filled national form; its content is in versions. `institution_id`: the managing centre
    (general forms) or the case's responsible centre (special categories)."""

    __tablename__ = "health_forms"
    __table_args__ = (
        CheckConstraint("category IN ('general', 'smd', 'tb')", name="category"),
        CheckConstraint("status IN ('active', 'voided')", name="status"),
        UniqueConstraint("singleton_key"),
        Index("ix_health_forms_resident_type", "resident_id", "form_type", "occurred_on"),
        Index("ix_health_forms_institution_category", "institution_id", "category", "occurred_on"),
    )

    record_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("health_records.id"), index=True)
    resident_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("residents.id"))
    case_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("health_cases.id"), index=True)
    form_type: Mapped[str] = mapped_column(String(32))
    category: Mapped[str] = mapped_column(String(8))
    version: Mapped[int] = mapped_column(default=1)
    occurred_on: Mapped[date]  # 体检日期 / 随访日期 / 评估时间 / 填表日期
    status: Mapped[str] = mapped_column(String(16), default="active")
    # A short non-identifying result for lists (e.g. self-care band "2", SMD visit class "3").
    result_code: Mapped[str | None] = mapped_column(String(16))
    created_by: Mapped[str | None] = mapped_column(String(64))
    updated_by: Mapped[str | None] = mapped_column(String(64))
    void_reason: Mapped[str | None] = mapped_column(String(200))
    # Forms filled once per record or case (个人基本信息表, 补充表): "<owner id>:<type>" while active.
    singleton_key: Mapped[str | None] = mapped_column(String(80))

    # No `record` relationship on purpose: after a transfer the record belongs to the new centre
    # while a special-category form stays with its case; load it with `services.payloads.record_of_form`.
    case: Mapped[HealthCase | None] = relationship(lazy="select")


class HealthFormVersion(Base):
    """One version of a form: the clean payload and derived values (encrypted), the names of the
    fields that changed from the previous version, and who made it, when and why."""

    __tablename__ = "health_form_versions"
    __table_args__ = (UniqueConstraint("form_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    form_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("health_forms.id"), index=True)
    version: Mapped[int]
    payload_json: Mapped[str] = mapped_column(EncryptedString("health_form.payload"))
    derived_json: Mapped[str] = mapped_column(EncryptedString("health_form.derived"))
    changed_fields: Mapped[list[str]] = mapped_column(JSON, default=list)
    reason: Mapped[str | None] = mapped_column(String(200))
    actor: Mapped[str | None] = mapped_column(String(64))
    actor_role: Mapped[str | None] = mapped_column(String(32))
    actor_name: Mapped[str | None] = mapped_column(String(50))
    created_at: Mapped[datetime] = mapped_column(default=clock.now)

    @property
    def payload(self) -> dict[str, Any]:
        return dict(json.loads(self.payload_json))

    @property
    def derived(self) -> dict[str, Any]:
        return dict(json.loads(self.derived_json))

    @staticmethod
    def dump(value: dict[str, Any]) -> str:
        return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
