"""The 医保医师库: import the social-security doctor list and reconcile it with our registry.

File: CSV (UTF-8, UTF-8 with BOM, or GB18030/GBK as saved by Excel) or XLSX (first sheet), at
most 10 MB and 50,000 rows, header in the first non-empty row. Columns (any order; Chinese or
English header; aliases accepted; text in brackets such as "（必填）" is ignored):

| column | header (aliases) | required |
|---|---|---|
| mi_code | 医保医师编码 (医保医师代码, 医师编码, 医保编码) | yes |
| name | 姓名 (医师姓名) | yes |
| id_number | 身份证号 (身份证号码, 证件号码) | one of id_number / licence_no |
| licence_no | 执业证书编号 (执业证书编码, 医师执业证书编号) | one of id_number / licence_no |
| institution_code | 机构编码 (医疗机构编码, 定点医药机构编码): the centre's HIS 机构编码 | one of the two |
| institution_name | 机构名称 (医疗机构名称, 定点医药机构名称, 执业机构) | one of the two |

Reconciliation: each valid row is matched to a registered doctor by 医保医师编码, else by 身份证号,
else by 执业证书编号 (each doctor at most once). Findings (`MiCategory`): missing_code (matched
by ID/licence, our code absent or invalid), code_mismatch (we hold another valid code),
name_mismatch, id_mismatch (ID number or licence differs), wrong_centre, not_in_registry (row
matches no doctor), not_in_mi_list (an approved doctor who has not left matches no row), and
invalid_row (unreadable code, name, ID checksum, duplicate code in the file).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, select, update

from app.core import audit, clock
from app.core.auth import Principal
from app.core.crypto import mask_id_number
from app.core.db import db
from app.core.errors import BusinessRuleViolation, Conflict, InvalidTransition, NotFound
from app.core.pagination import Page, paginate
from app.doctors.models import (
    MI_CATEGORY_LABELS,
    Doctor,
    MiCategory,
    MiImportBatch,
    MiImportRow,
    MiReconItem,
    PracticeStatus,
    ReviewStatus,
)
from app.doctors.services.common import UNSCOPED, rowcount
from app.doctors.services.mi_file import ListRow, normalise_row, read_list
from app.doctors.services.practice import apply_mi_code
from app.institutions.models import Institution

# --- reconciliation -----------------------------------------------------------------------------


def _same_name(a: str | None, b: str | None) -> bool:
    def norm(value: str | None) -> str:
        return re.sub(r"[\s·•.]", "", unicodedata.normalize("NFKC", value or ""))

    return norm(a) == norm(b)


@dataclass
class _Registry:
    by_code: dict[str, Doctor]
    by_id: dict[str, Doctor]
    by_licence: dict[str, Doctor]
    centres_by_code: dict[str, Institution]
    centres_by_name: dict[str, Institution]

    @classmethod
    def load(cls) -> _Registry:
        doctors = list(db.session.execute(select(Doctor).execution_options(**UNSCOPED)).scalars())
        centres = list(db.session.execute(select(Institution)).scalars())
        return cls(
            by_code={d.mi_doctor_code: d for d in doctors if d.mi_doctor_code},
            by_id={d.id_number.upper(): d for d in doctors if d.id_number},
            by_licence={d.practice_licence_no: d for d in doctors if d.practice_licence_no},
            centres_by_code={c.his_code.upper(): c for c in centres},
            centres_by_name={_centre_key(c.name): c for c in centres},
        )

    def match(self, values: dict[str, str]) -> tuple[Doctor | None, str]:
        if (found := self.by_code.get(values["mi_code"])) is not None:
            return found, "code"
        if values["id_number"] and (found := self.by_id.get(values["id_number"])) is not None:
            return found, "id"
        if values["licence_no"] and (found := self.by_licence.get(values["licence_no"])) is not None:
            return found, "licence"
        return None, ""

    def centre_of(self, values: dict[str, str]) -> Institution | None:
        code = values.get("institution_code", "").upper()
        if code and code in self.centres_by_code:
            return self.centres_by_code[code]
        name = values.get("institution_name", "")
        return self.centres_by_name.get(_centre_key(name)) if name else None


def _centre_key(name: str) -> str:
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", name))


class _Findings:
    def __init__(self, batch: MiImportBatch) -> None:
        self.batch = batch
        self.items: list[MiReconItem] = []

    def add(
        self,
        category: MiCategory,
        message: str,
        *,
        row: MiImportRow | None = None,
        doctor: Doctor | None = None,
        institution_id: uuid.UUID | None = None,
        ours: str | None = None,
        theirs: str | None = None,
    ) -> None:
        self.items.append(
            MiReconItem(
                id=uuid.uuid4(),
                batch_id=self.batch.id,
                seq=len(self.items) + 1,
                category=category.value,
                row=row,
                doctor_id=doctor.id if doctor else None,
                institution_id=doctor.institution_id if doctor else institution_id,
                mi_code=(row.mi_code if row is not None else doctor.mi_doctor_code if doctor else None),
                message=message[:300],
                ours=(ours or None) and ours[:200],
                theirs=(theirs or None) and theirs[:200],
            )
        )


def _compare(
    findings: _Findings,
    registry: _Registry,
    row: MiImportRow,
    values: dict[str, str],
    doctor: Doctor,
    via: str,
) -> None:
    if via != "code":
        if not doctor.has_valid_mi_code:
            findings.add(
                MiCategory.MISSING_CODE,
                "本系统中该医生缺少有效的医保医师编码，可按医保库编码补登",
                row=row,
                doctor=doctor,
                ours=doctor.mi_doctor_code,
                theirs=values["mi_code"],
            )
        else:
            findings.add(
                MiCategory.CODE_MISMATCH,
                "本系统登记的医保医师编码与医保库不一致",
                row=row,
                doctor=doctor,
                ours=doctor.mi_doctor_code,
                theirs=values["mi_code"],
            )
    if not _same_name(doctor.name, values["name"]):
        findings.add(
            MiCategory.NAME_MISMATCH,
            "姓名与医保库不一致",
            row=row,
            doctor=doctor,
            ours=doctor.name,
            theirs=values["name"],
        )
    id_differs = bool(
        values["id_number"] and doctor.id_number and values["id_number"] != doctor.id_number.upper()
    )
    licence_differs = bool(
        values["licence_no"]
        and doctor.practice_licence_no
        and values["licence_no"] != doctor.practice_licence_no
    )
    if id_differs:
        findings.add(
            MiCategory.ID_MISMATCH,
            "身份证号与医保库不一致",
            row=row,
            doctor=doctor,
            ours=mask_id_number(doctor.id_number),
            theirs=mask_id_number(values["id_number"]),
        )
    elif licence_differs:
        findings.add(
            MiCategory.ID_MISMATCH,
            "执业证书编号与医保库不一致",
            row=row,
            doctor=doctor,
            ours=doctor.practice_licence_no,
            theirs=values["licence_no"],
        )
    centre = registry.centre_of(values)
    if centre is None or centre.id != doctor.institution_id:
        theirs = values.get("institution_name") or values.get("institution_code")
        message = (
            "医保库登记的执业机构与本系统不一致" if centre else "医保库登记的执业机构不在本区社康中心名录中"
        )
        findings.add(
            MiCategory.WRONG_CENTRE,
            message,
            row=row,
            doctor=doctor,
            ours=doctor.institution.name,
            theirs=theirs,
        )


def reconcile(batch: MiImportBatch, rows: Iterable[tuple[MiImportRow, ListRow]]) -> list[MiReconItem]:
    registry = _Registry.load()
    findings = _Findings(batch)
    matched: set[uuid.UUID] = set()
    for row, parsed in rows:
        if parsed.error:
            findings.add(
                MiCategory.INVALID_ROW,
                f"第 {row.line_no} 行：{parsed.error}",
                row=row,
                theirs=parsed.values.get("name"),
            )
            continue
        doctor, via = registry.match(parsed.values)
        if doctor is None or doctor.id in matched:
            centre = registry.centre_of(parsed.values)
            findings.add(
                MiCategory.NOT_IN_REGISTRY,
                "医保库中有此医生，本系统无对应注册记录",
                row=row,
                institution_id=centre.id if centre else None,
                theirs=parsed.values["name"],
            )
            continue
        matched.add(doctor.id)
        row.doctor_id = doctor.id
        _compare(findings, registry, row, parsed.values, doctor, via)
    expected = db.session.execute(
        select(Doctor)
        .where(Doctor.status == ReviewStatus.APPROVED, Doctor.practice_status != PracticeStatus.LEFT)
        .order_by(Doctor.institution_id, Doctor.name_pinyin, Doctor.id)
        .execution_options(**UNSCOPED)
    ).scalars()
    for doctor in expected:
        if doctor.id not in matched:
            findings.add(
                MiCategory.NOT_IN_MI_LIST,
                "本系统在岗医生未出现在医保医师名单中",
                doctor=doctor,
                ours=doctor.name,
            )
    batch.matched_count = len(matched)
    return findings.items


def import_list(actor: Principal, *, filename: str, data: bytes) -> MiImportBatch:
    file_format, parsed = read_list(filename, data)
    batch = MiImportBatch(
        id=uuid.uuid4(),
        filename=re.sub(r"[\x00-\x1f\x7f]", "", filename)[:200] or "upload",
        file_format=file_format,
        file_sha256=hashlib.sha256(data).hexdigest(),
        uploaded_by=actor.id,
        uploaded_at=clock.now(),
        row_count=len(parsed),
    )
    db.session.add(batch)
    seen: dict[str, int] = {}
    pairs: list[tuple[MiImportRow, ListRow]] = []
    for item in parsed:
        normalise_row(item, seen)
        values = item.values
        row = MiImportRow(
            batch_id=batch.id,
            line_no=item.line_no,
            mi_code=values["mi_code"][:32] or None,
            name=values["name"][:50] or None,
            id_number=values["id_number"][:32] or None,
            licence_no=values["licence_no"][:40] or None,
            institution_code=values.get("institution_code", "")[:40] or None,
            institution_name=values.get("institution_name", "")[:100] or None,
            error=item.error,
        )
        pairs.append((row, item))
    db.session.add_all(row for row, _ in pairs)
    items = reconcile(batch, pairs)
    db.session.add_all(items)
    batch.summary = {category.value: 0 for category in MiCategory} | dict(Counter(i.category for i in items))
    db.session.flush()
    audit.record(
        "import", "doctor_mi_import", batch.id, detail={"rows": batch.row_count, "summary": batch.summary}
    )
    return batch


# --- reading and applying -----------------------------------------------------------------------


def get_batch(batch_id: uuid.UUID) -> MiImportBatch:
    batch = db.session.get(MiImportBatch, batch_id)
    if batch is None:
        raise NotFound("未找到该医保医师名单导入记录")
    return batch


def list_batches(*, page: int, size: int) -> Page[MiImportBatch]:
    return paginate(
        select(MiImportBatch).order_by(MiImportBatch.uploaded_at.desc(), MiImportBatch.id), page, size
    )


def report(batch_id: uuid.UUID, *, page: int, size: int, category: str | None = None) -> Page[MiReconItem]:
    """The findings of one import, in file order, optionally of one category (centre-scoped)."""
    batch = get_batch(batch_id)
    statement: Select[Any] = (
        select(MiReconItem).where(MiReconItem.batch_id == batch.id).order_by(MiReconItem.seq)
    )
    if category:
        statement = statement.where(MiReconItem.category == category)
    return paginate(statement, page, size)


def apply_codes(actor: Principal, batch_id: uuid.UUID) -> MiImportBatch:
    """Write the list's code onto doctors found only by ID/licence whose name, ID and centre agree.

    Only the newest import may be applied, once (a conditional UPDATE makes a second, concurrent
    apply a 409). A code already held by another doctor is skipped and left in the report.
    """
    batch = get_batch(batch_id)
    newest = db.session.execute(
        select(MiImportBatch.id).order_by(MiImportBatch.uploaded_at.desc(), MiImportBatch.id.desc()).limit(1)
    ).scalar_one()
    if newest != batch.id:
        raise Conflict("只能按最新一次导入的医保名单补登编码", code="stale_import")
    now = clock.now()
    claimed = db.session.execute(
        update(MiImportBatch)
        .where(MiImportBatch.id == batch.id, MiImportBatch.applied_at.is_(None))
        .values(applied_at=now, applied_by=actor.id)
        .execution_options(synchronize_session=False)
    )
    if rowcount(claimed) != 1:
        raise InvalidTransition("该名单已补登过编码", code="already_applied")
    items = list(
        db.session.execute(
            select(MiReconItem).where(MiReconItem.batch_id == batch.id).order_by(MiReconItem.seq)
        ).scalars()
    )
    blocked = {
        i.doctor_id
        for i in items
        if i.category in (MiCategory.NAME_MISMATCH, MiCategory.ID_MISMATCH, MiCategory.WRONG_CENTRE)
    }
    applied = 0
    for item in items:
        if item.category != MiCategory.MISSING_CODE or item.doctor is None or item.doctor_id in blocked:
            continue
        if item.doctor.has_valid_mi_code or item.mi_code is None:
            continue
        try:
            with db.session.begin_nested():
                apply_mi_code(
                    item.doctor, actor, item.mi_code, reason="按医保医师名单补登", channel="mi_import"
                )
        except (Conflict, BusinessRuleViolation):
            continue
        item.applied_at = now
        applied += 1
    db.session.refresh(batch)
    batch.applied_count = applied
    audit.record("apply", "doctor_mi_import", batch.id, detail={"applied": applied})
    return batch


def category_counts(batch: MiImportBatch) -> list[dict[str, Any]]:
    return [
        {"category": c.value, "label": MI_CATEGORY_LABELS[c], "count": int(batch.summary.get(c.value, 0))}
        for c in MiCategory
    ]
