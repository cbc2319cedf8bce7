"""The 医保医师库 import: batches, the rows as read, and the reconciliation findings."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core import clock
from app.core.crypto import EncryptedString
from app.core.db import Base, UUIDPrimaryKey
from app.core.scope import CentreScoped
from app.doctors.models.registry import Doctor

# --- 医保医师库 import --------------------------------------------------------------------------


class MiCategory(StrEnum):
    MISSING_CODE = "missing_code"
    CODE_MISMATCH = "code_mismatch"
    NAME_MISMATCH = "name_mismatch"
    ID_MISMATCH = "id_mismatch"
    WRONG_CENTRE = "wrong_centre"
    NOT_IN_REGISTRY = "not_in_registry"
    NOT_IN_MI_LIST = "not_in_mi_list"
    INVALID_ROW = "invalid_row"


MI_CATEGORY_LABELS: dict[str, str] = {
    MiCategory.MISSING_CODE: "本系统缺少或未填有效的医保医师编码",
    MiCategory.CODE_MISMATCH: "医保医师编码与医保库不一致",
    MiCategory.NAME_MISMATCH: "姓名与医保库不一致",
    MiCategory.ID_MISMATCH: "身份证号或执业证书编号与医保库不一致",
    MiCategory.WRONG_CENTRE: "执业机构与医保库不一致",
    MiCategory.NOT_IN_REGISTRY: "医保库有、本系统无此医生",
    MiCategory.NOT_IN_MI_LIST: "本系统有、医保库无此医生",
    MiCategory.INVALID_ROW: "医保名单中的数据有误",
}


class MiImportBatch(UUIDPrimaryKey, Base):
    """One uploaded social-security doctor list and the summary of its reconciliation."""

    __tablename__ = "doctor_mi_imports"

    filename: Mapped[str] = mapped_column(String(200))
    file_format: Mapped[str] = mapped_column(String(8))
    file_sha256: Mapped[str] = mapped_column(String(64))
    uploaded_by: Mapped[uuid.UUID | None]
    uploaded_at: Mapped[datetime] = mapped_column(default=clock.now)
    row_count: Mapped[int] = mapped_column(default=0)
    matched_count: Mapped[int] = mapped_column(default=0)
    summary: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    applied_at: Mapped[datetime | None]
    applied_by: Mapped[uuid.UUID | None]
    applied_count: Mapped[int] = mapped_column(default=0)


class MiImportRow(Base):
    """One line of an imported list, as read (personal numbers encrypted)."""

    __tablename__ = "doctor_mi_import_rows"

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("doctor_mi_imports.id"), index=True)
    line_no: Mapped[int]
    mi_code: Mapped[str | None] = mapped_column(String(32))
    name: Mapped[str | None] = mapped_column(String(50))
    id_number: Mapped[str | None] = mapped_column(EncryptedString("doctor_mi_row.id_number"))
    licence_no: Mapped[str | None] = mapped_column(String(40))
    institution_code: Mapped[str | None] = mapped_column(String(40))
    institution_name: Mapped[str | None] = mapped_column(String(100))
    doctor_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("doctors.id"))
    error: Mapped[str | None] = mapped_column(String(200))


class MiReconItem(CentreScoped, Base):
    """One finding of a reconciliation. Centre admins see the findings of their own centre."""

    __tablename__ = "doctor_mi_recon_items"
    __table_args__ = (Index("ix_doctor_mi_recon_items_batch_category", "batch_id", "category"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    # Findings about MI-list doctors we cannot place in any centre have no centre.
    institution_id: Mapped[uuid.UUID | None] = mapped_column(  # type: ignore[assignment]
        ForeignKey("institutions.id"), index=True
    )
    batch_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("doctor_mi_imports.id"))
    seq: Mapped[int]
    category: Mapped[str] = mapped_column(String(20))
    row_id: Mapped[int | None] = mapped_column(ForeignKey("doctor_mi_import_rows.id"))
    doctor_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("doctors.id"))
    mi_code: Mapped[str | None] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(String(300))
    ours: Mapped[str | None] = mapped_column(String(200))
    theirs: Mapped[str | None] = mapped_column(String(200))
    applied_at: Mapped[datetime | None]

    row: Mapped[MiImportRow | None] = relationship(lazy="joined")
    doctor: Mapped[Doctor | None] = relationship(lazy="joined")
