"""居民健康档案: creation with the 17-digit number, lookup, the 建档 check used by signing.

The number (spec §0.4): 6-digit county code (罗湖区 440303) + 3-digit street (街道) + 3-digit
residents' committee (居委会, 001–099 in fully urban Luohu) + a 5-digit personal sequence number
in order of creation within that committee. The sequence comes from one counter row per committee
incremented by a conditional UPDATE (row-locked on PostgreSQL, serialised on SQLite), so two
nurses creating records at the same moment never get the same number, and numbers are never reused.
"""

from __future__ import annotations

import uuid
from typing import Any, cast

from sqlalchemy import select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError

from app.accounts.models import StaffUser
from app.core import audit, clock
from app.core.auth import CLINICAL_ROLES, current_principal
from app.core.db import db
from app.core.errors import BusinessRuleViolation, Conflict, NotFound
from app.core.scope import SKIP_SCOPE, get_or_404, get_unscoped
from app.health_records.models import Category, HealthForm, HealthRecord, RecordNumberCounter
from app.institutions.models import DISTRICT_CODE
from app.residents.models import Resident
from app.residents.services.common import get_resident, require_active

MAX_SEQUENCE = 99_999


def area_code(resident: Resident) -> str:
    """区划 + 街道 + 居委会 of the resident's community (12 digits)."""
    code = f"{DISTRICT_CODE}{resident.street.code}{resident.community.code}"
    if len(code) != 12 or not code.isdigit():  # pragma: no cover - institutions data is checked on import
        raise BusinessRuleViolation(
            "居民所属社区的区划代码不完整，无法生成档案编号", code="area_code_invalid"
        )
    return code


def _bump(area: str) -> int | None:
    result = cast(
        CursorResult[Any],
        db.session.execute(
            update(RecordNumberCounter)
            .where(RecordNumberCounter.area_code == area, RecordNumberCounter.last_seq < MAX_SEQUENCE)
            .values(last_seq=RecordNumberCounter.last_seq + 1)
            .returning(RecordNumberCounter.last_seq)
            .execution_options(synchronize_session=False)
        ),
    )
    row = result.first()
    return None if row is None else int(row[0])


def next_record_no(area: str) -> str:
    seq = _bump(area)
    if seq is None:
        exists = db.session.get(RecordNumberCounter, area)
        if exists is not None:
            raise Conflict("该社区的健康档案顺序号已用尽，请联系区级管理员", code="record_numbers_exhausted")
        try:
            with db.session.begin_nested():
                db.session.add(RecordNumberCounter(area_code=area, last_seq=1))
            seq = 1
        except IntegrityError:  # another creation inserted the counter first
            seq = _bump(area)
            if seq is None:  # pragma: no cover - only when the committee just ran out
                raise Conflict(
                    "该社区的健康档案顺序号已用尽，请联系区级管理员", code="record_numbers_exhausted"
                ) from None
    return f"{area}{seq:05d}"


def record_of(resident_id: uuid.UUID) -> HealthRecord | None:
    found: HealthRecord | None = db.session.execute(
        select(HealthRecord).where(HealthRecord.resident_id == resident_id)
    ).scalar_one_or_none()
    return found


def has_health_record(resident: Resident) -> bool:
    """建档才可签约: the contracts rule asks this (unscoped: the record follows the resident)."""
    found = db.session.execute(
        select(HealthRecord.id)
        .where(HealthRecord.resident_id == resident.id, HealthRecord.status == "active")
        .execution_options(**{SKIP_SCOPE: True})
    ).first()
    return found is not None


def get_record(record_id: uuid.UUID, action: str = "read") -> HealthRecord:
    return get_or_404(HealthRecord, record_id, object_type="health_record", action=action)


def record_for_resident(resident_id: uuid.UUID) -> HealthRecord:
    resident = get_resident(resident_id)
    record = record_of(resident.id)
    if record is None:
        raise NotFound("该居民尚未建立健康档案", code="health_record_not_found")
    return record


def open_record(
    resident_id: uuid.UUID,
    *,
    responsible_doctor_id: uuid.UUID | None = None,
    card_remarks: str | None = None,
) -> HealthRecord:
    """Create the record and number it (the 个人基本信息表 is saved by the caller, same transaction)."""
    resident = get_resident(resident_id, action="create")
    require_active(resident, "建立健康档案")
    if record_of(resident.id) is not None:
        raise Conflict("该居民已建立健康档案，请在原档案上修改", code="health_record_exists")
    principal = current_principal()
    record = HealthRecord(
        id=uuid.uuid4(),
        resident_id=resident.id,
        institution_id=resident.institution_id,
        created_institution_id=resident.institution_id,
        record_no=next_record_no(area_code(resident)),
        created_on=clock.today_local(),
        created_by=principal.actor_ref if principal else None,
        created_by_name=principal.display_name if principal else None,
        responsible_doctor_id=responsible_doctor_id,
        card_remarks=card_remarks,
    )
    try:
        with db.session.begin_nested():
            db.session.add(record)
    except IntegrityError:
        raise Conflict("该居民已建立健康档案，请在原档案上修改", code="health_record_exists") from None
    audit.record(
        "create", "health_record", record.id, resident_id=resident.id, detail={"record_no": record.record_no}
    )
    return record


def _check_doctor(staff_id: uuid.UUID | None, institution_id: uuid.UUID) -> None:
    if staff_id is None:
        return
    user: StaffUser | None = get_unscoped(StaffUser, staff_id)
    if user is None or user.institution_id != institution_id or not user.is_active:
        raise BusinessRuleViolation("责任医生须为本社康中心在职人员", code="invalid_responsible_doctor")
    if user.role not in CLINICAL_ROLES:
        raise BusinessRuleViolation("责任医生须为医生、护士或公卫人员", code="invalid_responsible_doctor")


def create_record_with_personal_info(
    resident_id: uuid.UUID,
    personal_info: Any,
    *,
    responsible_doctor_id: uuid.UUID | None = None,
    card_remarks: str | None = None,
) -> HealthRecord:
    """建档: the numbered record and its 个人基本信息表 (version 1), all or nothing."""
    from app.health_records.services.forms import create_form

    resident = get_resident(resident_id, action="create")
    _check_doctor(responsible_doctor_id, resident.institution_id)
    record = open_record(
        resident.id,
        responsible_doctor_id=responsible_doctor_id,
        card_remarks=(card_remarks or "").strip() or None,
    )
    create_form(record.id, "personal_info", personal_info)
    return record


_UNSET: Any = object()


def update_record(
    record_id: uuid.UUID, *, responsible_doctor_id: Any = _UNSET, card_remarks: Any = _UNSET
) -> HealthRecord:
    record = get_record(record_id, action="update")
    changed = []
    if responsible_doctor_id is not _UNSET and responsible_doctor_id != record.responsible_doctor_id:
        _check_doctor(responsible_doctor_id, record.institution_id)
        record.responsible_doctor_id = responsible_doctor_id
        changed.append("responsible_doctor_id")
    if card_remarks is not _UNSET:
        value = (card_remarks or "").strip() or None
        if value != record.card_remarks:
            record.card_remarks = value
            changed.append("card_remarks")
    db.session.flush()
    audit.record(
        "update", "health_record", record.id, resident_id=record.resident_id, detail={"fields": changed}
    )
    return record


def _follow_transfer(resident_ids: list[uuid.UUID], source: uuid.UUID, target: uuid.UUID) -> None:
    """A resident moved to another managing centre: the record and its general forms follow.
    Open 专案 (TB/SMD) stay with their responsible centre until closed or handed over."""
    db.session.execute(
        update(HealthRecord)
        .where(HealthRecord.resident_id.in_(resident_ids), HealthRecord.institution_id == source)
        .values(institution_id=target)
        .execution_options(synchronize_session="fetch", **{SKIP_SCOPE: True})
    )
    db.session.execute(
        update(HealthForm)
        .where(
            HealthForm.resident_id.in_(resident_ids),
            HealthForm.institution_id == source,
            HealthForm.category == Category.GENERAL,
        )
        .values(institution_id=target)
        .execution_options(synchronize_session="fetch", **{SKIP_SCOPE: True})
    )


def _register() -> None:
    from app.contracts.services.core import HEALTH_RECORD_CHECK
    from app.residents.services.transfers import TRANSFER_LISTENERS

    if has_health_record not in HEALTH_RECORD_CHECK:
        HEALTH_RECORD_CHECK.append(has_health_record)
    if _follow_transfer not in TRANSFER_LISTENERS:
        TRANSFER_LISTENERS.append(_follow_transfer)


_register()
