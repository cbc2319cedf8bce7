"""Agreement templates (协议模板) made of clauses (协议条款), versioned.

A template version is immutable once published; `(code, version)` is unique. Clause text may hold
placeholders in `str.format` style (`{resident_name}`, `{team_name}`, `{period_start}`, ...), filled
when a contract is made; clauses with `personalisable` may be replaced per contract by the doctor
(first signing or renewal). The contract stores the exact rendered text and its SHA-256.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core.db import Base, Timestamps, UUIDPrimaryKey


class TemplateStatus(StrEnum):
    DRAFT = "draft"
    PUBLISHED = "published"
    RETIRED = "retired"


class ClauseKind(StrEnum):
    PARTIES = "parties"  # 签约双方
    SERVICES = "services"  # 服务内容
    PERIOD = "period"  # 服务期限
    FEES = "fees"  # 费用
    RIGHTS_DUTIES = "rights_duties"  # 权利与义务
    PRIVACY = "privacy"  # 隐私与数据共享
    TERMINATION = "termination"  # 协议解除
    OTHER = "other"


class AgreementTemplate(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "agreement_templates"
    __table_args__ = (UniqueConstraint("code", "version"),)

    code: Mapped[str] = mapped_column(String(40), index=True)
    version: Mapped[int] = mapped_column(default=1)
    title: Mapped[str] = mapped_column(String(80))
    status: Mapped[str] = mapped_column(String(16), default=TemplateStatus.DRAFT)
    institution_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("institutions.id"), index=True)
    published_at: Mapped[datetime | None]
    created_by: Mapped[uuid.UUID | None]

    clauses: Mapped[list[AgreementClause]] = relationship(
        back_populates="template",
        order_by="AgreementClause.sort",
        cascade="all, delete-orphan",
        lazy="selectin",
    )


class AgreementClause(UUIDPrimaryKey, Base):
    __tablename__ = "agreement_clauses"
    __table_args__ = (UniqueConstraint("template_id", "key"),)

    template_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agreement_templates.id"), index=True)
    key: Mapped[str] = mapped_column(String(40))  # stable within a template, e.g. "services"
    kind: Mapped[str] = mapped_column(String(20))
    title: Mapped[str] = mapped_column(String(60))
    text: Mapped[str] = mapped_column(Text)
    personalisable: Mapped[bool] = mapped_column(default=False)
    sort: Mapped[int] = mapped_column(default=0)

    template: Mapped[AgreementTemplate] = relationship(back_populates="clauses")
