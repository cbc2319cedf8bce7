"""Practice status (在岗/停诊/离岗), profile, 医保医师编码, capacity override, and the signing gate."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm.attributes import set_committed_value

from app.core import clock
from app.core.auth import Principal
from app.core.db import db
from app.core.errors import BusinessRuleViolation, Conflict
from app.core.scope import get_or_404
from app.doctors.models import (
    PRACTICE_STATUS_LABELS,
    Doctor,
    PracticeStatus,
    ReviewStatus,
    check_practice_transition,
    mi_code_problem,
)
from app.doctors.services import library_cache
from app.doctors.services.common import (
    UNSCOPED,
    check_editor,
    require_mi_code,
    rowcount,
    write_history,
)

PROFILE_FIELDS = ("phone", "specialties", "introduction")


# --- practice status ---------------------------------------------------------------------------


def set_practice_status(actor: Principal, doctor_id: uuid.UUID, *, status: str, reason: str) -> Doctor:
    """在岗/停诊/离岗. Leaving is refused (409) while the doctor still has signed residents."""
    doctor = get_or_404(Doctor, doctor_id, object_type="doctor", action="update")
    source, target = doctor.practice_status, PracticeStatus(status)
    check_practice_transition(source, target)
    statement = update(Doctor).where(Doctor.id == doctor.id, Doctor.practice_status == source)
    if target == PracticeStatus.LEFT:
        statement = statement.where(Doctor.signed_count == 0)
    now = clock.now()
    result = db.session.execute(
        statement.values(practice_status=target.value, updated_at=now).execution_options(
            synchronize_session=False
        )
    )
    if rowcount(result) != 1:
        current = db.session.execute(
            select(Doctor.practice_status, Doctor.signed_count).where(Doctor.id == doctor.id)
        ).one()
        set_committed_value(doctor, "signed_count", current.signed_count)
        if current.practice_status == source and current.signed_count > 0:
            raise Conflict(
                f"该医生仍有 {current.signed_count} 位签约居民，须先将居民转签给其他医生，才能办理离岗",
                code="doctor_has_residents",
                errors={"signed_count": [str(current.signed_count)]},
            )
        raise Conflict("该医生的执业状态刚被他人修改，请刷新后重试", code="concurrent_transition")
    set_committed_value(doctor, "practice_status", target.value)
    set_committed_value(doctor, "updated_at", now)
    write_history(
        doctor,
        actor,
        "practice_status",
        from_status=source,
        to_status=target.value,
        reason=reason,
        detail={"from": source, "to": target.value, "label": PRACTICE_STATUS_LABELS[target]},
    )
    library_cache.invalidate()
    return doctor


# --- profile, code, capacity -------------------------------------------------------------------


def update_profile(actor: Principal, doctor_id: uuid.UUID, changes: Mapping[str, Any]) -> Doctor:
    """Phone, specialties and introduction; no re-review (they are not credentials)."""
    doctor = get_or_404(Doctor, doctor_id, object_type="doctor", action="update")
    check_editor(actor, doctor)
    changed = []
    for field in PROFILE_FIELDS:
        if field in changes and getattr(doctor, field) != changes[field]:
            setattr(doctor, field, list(changes[field]) if field == "specialties" else changes[field])
            changed.append(field)
    if changed:
        write_history(doctor, actor, "profile_updated", detail={"fields": changed})
        library_cache.invalidate()
    return doctor


def set_mi_code(
    actor: Principal,
    doctor_id: uuid.UUID,
    *,
    code: str,
    reason: str | None = None,
    channel: str | None = None,
) -> Doctor:
    doctor = get_or_404(Doctor, doctor_id, object_type="doctor", action="update")
    apply_mi_code(doctor, actor, code, reason=reason, channel=channel)
    return doctor


def apply_mi_code(
    doctor: Doctor,
    actor: Principal | None,
    code: str,
    *,
    reason: str | None = None,
    channel: str | None = None,
) -> None:
    code = code.strip().upper()
    problem = mi_code_problem(code)
    if problem is not None:
        raise BusinessRuleViolation(problem, code="invalid_mi_code", errors={"mi_doctor_code": [problem]})
    if code == doctor.mi_doctor_code:
        return
    holder = db.session.execute(
        select(Doctor.id)
        .where(Doctor.mi_doctor_code == code, Doctor.id != doctor.id)
        .execution_options(**UNSCOPED)
    ).first()
    if holder is not None:
        raise Conflict(
            "该医保医师编码已登记在另一位医生名下",
            code="mi_code_taken",
            errors={"mi_doctor_code": ["已登记在另一位医生名下"]},
        )
    before = doctor.mi_doctor_code
    doctor.mi_doctor_code = code
    write_history(
        doctor, actor, "mi_code_set", reason=reason, channel=channel, detail={"from": before, "to": code}
    )


def set_capacity(actor: Principal, doctor_id: uuid.UUID, *, capacity_override: int | None) -> Doctor:
    doctor = get_or_404(Doctor, doctor_id, object_type="doctor", action="update")
    before = doctor.capacity_override
    doctor.capacity_override = capacity_override
    write_history(doctor, actor, "capacity_changed", detail={"from": before, "to": capacity_override})
    library_cache.invalidate()
    return doctor


# --- the signing gate --------------------------------------------------------------------------


def sign_problem(doctor: Doctor) -> BusinessRuleViolation | None:
    if doctor.status != ReviewStatus.APPROVED:
        return BusinessRuleViolation("该医生的注册尚未审核通过，不能签约", code="doctor_not_approved")
    if doctor.practice_status != PracticeStatus.ACTIVE:
        label = PRACTICE_STATUS_LABELS[doctor.practice_status]
        return BusinessRuleViolation(f"该医生当前为“{label}”状态，不能签约", code="doctor_not_active")
    if require_mi_code() and not doctor.has_valid_mi_code:
        return BusinessRuleViolation(
            "该医生没有有效的医保医师编码，暂不能签约，请先登记医保医师编码", code="doctor_mi_code_missing"
        )
    return None


def can_sign(doctor: Doctor) -> bool:
    return sign_problem(doctor) is None


def assert_can_sign(doctor: Doctor) -> None:
    """422 unless the doctor is approved, 在岗, and (per `REQUIRE_MI_DOCTOR_CODE`) has a valid code."""
    problem = sign_problem(doctor)
    if problem is not None:
        raise problem
