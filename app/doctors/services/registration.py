"""Registration and review of doctors (家庭医生统一注册与审核), and reading registrations.

Review: `DOCTOR_REVIEW_LEVELS=centre`: the centre admin of the doctor's centre (or a district
admin) approves or rejects. `centre,district`: the centre admin does the first level only, the
district admin the second only (separation of duties); the district admin may reject at either
level. Nobody reviews their own registration.

Every review transition goes through `transition()`: the table in `models.REVIEW_TRANSITIONS`,
a conditional `UPDATE ... WHERE status = :expected` (a concurrent reviewer gets 409), a history
row and an audit row.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.attributes import set_committed_value

from app.accounts.models import StaffUser
from app.core import clock
from app.core.auth import Principal, Role
from app.core.crypto import blind_index
from app.core.db import db
from app.core.errors import BusinessRuleViolation, Conflict, NotFound, PermissionDenied
from app.core.pagination import Page, paginate
from app.core.scope import get_or_404
from app.doctors.models import (
    Doctor,
    DoctorHistory,
    PracticeStatus,
    ReviewAction,
    ReviewStatus,
    next_review_status,
)
from app.doctors.services import library_cache
from app.doctors.services.common import (
    LEVEL_CENTRE,
    LEVEL_DISTRICT,
    SELF_REGISTERING_ROLES,
    UNSCOPED,
    check_editor,
    name_filter,
    review_levels,
    rowcount,
    write_history,
)
from app.institutions.models import Institution

REGISTRATION_FIELDS = (
    "name",
    "sex",
    "birth_date",
    "phone",
    "id_number",
    "title",
    "practice_licence_no",
    "practice_scopes",
    "qualifications",
    "specialties",
    "introduction",
)


def transition(
    doctor: Doctor,
    actor: Principal,
    action: ReviewAction,
    *,
    reason: str | None = None,
    values: Mapping[str, Any] | None = None,
    detail: Mapping[str, Any] | None = None,
) -> None:
    """Apply one review transition, guarded against concurrent reviews by a conditional UPDATE."""
    source = doctor.status
    target = next_review_status(source, action)
    changes: dict[str, Any] = {"status": target.value, "updated_at": clock.now(), **(values or {})}
    result = db.session.execute(
        update(Doctor)
        .where(Doctor.id == doctor.id, Doctor.status == source)
        .values(**changes)
        .execution_options(synchronize_session=False)
    )
    if rowcount(result) != 1:
        raise Conflict("该注册申请刚被他人处理，请刷新后查看最新状态", code="concurrent_transition")
    for key, value in changes.items():
        set_committed_value(doctor, key, value)
    write_history(
        doctor,
        actor,
        action.value,
        from_status=source,
        to_status=target.value,
        reason=reason,
        detail={"from": source, "to": target.value, **(detail or {})},
    )
    library_cache.invalidate()


def _not_self_review(actor: Principal, doctor: Doctor) -> None:
    if doctor.staff_user_id is not None and doctor.staff_user_id == actor.id:
        raise PermissionDenied("不能审核本人的注册申请", code="self_review")


def _require_level(actor: Principal, level: str) -> None:
    two_levels = LEVEL_DISTRICT in review_levels()
    if level == LEVEL_CENTRE:
        allowed = {Role.CENTRE_ADMIN.value} | (set() if two_levels else {Role.DISTRICT_ADMIN.value})
        label = "社康中心管理员"
    else:
        allowed = {Role.DISTRICT_ADMIN.value}
        label = "区级管理员"
    if actor.role not in allowed:
        raise PermissionDenied(f"该申请当前须由{label}审核", code="review_level_not_permitted")


# --- registration ------------------------------------------------------------------------------


def _registration_centre(actor: Principal, requested: uuid.UUID | None) -> uuid.UUID:
    if actor.is_district:
        if requested is None:
            raise BusinessRuleViolation(
                "请选择所属社康中心",
                code="centre_required",
                errors={"institution_id": ["请选择所属社康中心"]},
            )
        if db.session.get(Institution, requested) is None:
            raise BusinessRuleViolation(
                "所属社康中心不存在",
                code="institution_not_found",
                errors={"institution_id": ["所属社康中心不存在"]},
            )
        return requested
    assert actor.institution_id is not None
    if requested is not None and requested != actor.institution_id:
        raise PermissionDenied("只能在本人所在社康中心注册", code="outside_scope")
    return actor.institution_id


def _linked_staff(
    actor: Principal, requested: uuid.UUID | None, institution_id: uuid.UUID
) -> uuid.UUID | None:
    if actor.role in SELF_REGISTERING_ROLES:
        if requested is not None and requested != actor.id:
            raise PermissionDenied("只能提交本人的注册申请", code="not_own_registration")
        return actor.id
    if requested is None:
        return None
    staff = db.session.execute(
        select(StaffUser).where(StaffUser.id == requested).execution_options(**UNSCOPED)
    ).scalar_one_or_none()
    if staff is None or staff.institution_id != institution_id:
        raise BusinessRuleViolation(
            "所选人员不属于该社康中心",
            code="staff_not_in_centre",
            errors={"staff_user_id": ["所选人员不属于该社康中心"]},
        )
    if staff.role not in SELF_REGISTERING_ROLES:
        raise BusinessRuleViolation(
            "只有医生、团队长、护士或公卫人员可以注册为家庭医生团队成员",
            code="staff_role_not_clinical",
            errors={"staff_user_id": ["该人员角色不能注册"]},
        )
    return staff.id


def _check_unique(
    values: Mapping[str, Any], *, exclude: uuid.UUID | None = None, staff_user_id: uuid.UUID | None = None
) -> None:
    """District-wide duplicates, looked up across centres (a message never says where)."""
    checks: list[tuple[Any, Any, str, str, str]] = []
    if staff_user_id is not None:
        checks.append(
            (Doctor.staff_user_id, staff_user_id, "staff_user_id", "该人员已有注册记录", "already_registered")
        )
    if values.get("practice_licence_no"):
        checks.append(
            (
                Doctor.practice_licence_no,
                values["practice_licence_no"],
                "practice_licence_no",
                "该执业证书编号已被注册",
                "licence_taken",
            )
        )
    if values.get("id_number"):
        checks.append(
            (
                Doctor.id_number_bidx,
                blind_index(values["id_number"], "id_number"),
                "id_number",
                "该身份证号已被注册",
                "id_number_taken",
            )
        )
    for column, value, field, message, code in checks:
        statement = select(Doctor.id).where(column == value).execution_options(**UNSCOPED)
        if exclude is not None:
            statement = statement.where(Doctor.id != exclude)
        if db.session.execute(statement).first() is not None:
            raise Conflict(message, code=code, errors={field: [message]})


def _flush_unique() -> None:
    """Flush inside a savepoint so that a concurrent duplicate becomes a 409, not a 500."""
    try:
        with db.session.begin_nested():
            db.session.flush()
    except IntegrityError as exc:
        raise Conflict(
            "注册信息与已有记录重复（执业证书编号、身份证号或人员账号），请核对",
            code="registration_duplicate",
        ) from exc


def _registration_values(data: Mapping[str, Any]) -> dict[str, Any]:
    values = {field: data.get(field) for field in REGISTRATION_FIELDS}
    values["id_number"] = values["id_number"] or None
    values["practice_licence_no"] = values["practice_licence_no"] or None
    for listed in ("practice_scopes", "qualifications", "specialties"):
        values[listed] = list(values[listed] or [])
    return values


def submit(actor: Principal, data: Mapping[str, Any]) -> Doctor:
    institution_id = _registration_centre(actor, data.get("institution_id"))
    staff_user_id = _linked_staff(actor, data.get("staff_user_id"), institution_id)
    values = _registration_values(data)
    _check_unique(values, staff_user_id=staff_user_id)
    target = next_review_status(None, ReviewAction.SUBMIT)
    doctor = Doctor(
        id=uuid.uuid4(),
        institution_id=institution_id,
        staff_user_id=staff_user_id,
        status=target.value,
        practice_status=PracticeStatus.ACTIVE.value,
        submitted_at=clock.now(),
        **values,
    )
    db.session.add(doctor)
    _flush_unique()
    write_history(
        doctor,
        actor,
        ReviewAction.SUBMIT.value,
        to_status=target.value,
        detail={"to": target.value, "fields": sorted(k for k, v in values.items() if v)},
    )
    return doctor


def resubmit(actor: Principal, doctor_id: uuid.UUID, data: Mapping[str, Any]) -> Doctor:
    doctor = get_or_404(Doctor, doctor_id, object_type="doctor", action="update")
    check_editor(actor, doctor)
    next_review_status(doctor.status, ReviewAction.RESUBMIT)  # 409 before any other check
    values = _registration_values(data)
    _check_unique(values, exclude=doctor.id)
    changed = sorted(k for k, v in values.items() if getattr(doctor, k) != v)
    transition(
        doctor,
        actor,
        ReviewAction.RESUBMIT,
        values={
            "submitted_at": clock.now(),
            "rejection_reason": None,
            "centre_reviewed_at": None,
            "approved_at": None,
        },
        detail={"fields": changed},
    )
    for key, value in values.items():
        setattr(doctor, key, value)
    _flush_unique()
    return doctor


def approve(actor: Principal, doctor_id: uuid.UUID, *, reason: str | None = None) -> Doctor:
    doctor = get_or_404(Doctor, doctor_id, object_type="doctor", action="review")
    now = clock.now()
    values: dict[str, datetime] = {}
    if doctor.status == ReviewStatus.SUBMITTED:
        action = ReviewAction.CENTRE_APPROVE if LEVEL_DISTRICT in review_levels() else ReviewAction.APPROVE
        level = LEVEL_CENTRE
        values["centre_reviewed_at"] = now
    else:
        action, level = ReviewAction.APPROVE, LEVEL_DISTRICT
    next_review_status(doctor.status, action)
    _require_level(actor, level)
    _not_self_review(actor, doctor)
    if action == ReviewAction.APPROVE:
        values["approved_at"] = now
    transition(doctor, actor, action, reason=reason, values=values)
    return doctor


def reject(actor: Principal, doctor_id: uuid.UUID, *, reason: str) -> Doctor:
    doctor = get_or_404(Doctor, doctor_id, object_type="doctor", action="review")
    next_review_status(doctor.status, ReviewAction.REJECT)
    if not (doctor.status == ReviewStatus.SUBMITTED and actor.role == Role.DISTRICT_ADMIN):
        _require_level(actor, LEVEL_CENTRE if doctor.status == ReviewStatus.SUBMITTED else LEVEL_DISTRICT)
    _not_self_review(actor, doctor)
    transition(doctor, actor, ReviewAction.REJECT, reason=reason, values={"rejection_reason": reason})
    return doctor


# --- reading -----------------------------------------------------------------------------------


def get_doctor(doctor_id: uuid.UUID) -> Doctor:
    return get_or_404(Doctor, doctor_id, object_type="doctor")


def my_registration(actor: Principal) -> Doctor:
    found = db.session.execute(select(Doctor).where(Doctor.staff_user_id == actor.id)).scalar_one_or_none()
    if found is None:
        raise NotFound("您还没有提交家庭医生注册申请", code="not_registered")
    return found


def list_doctors(
    *,
    page: int,
    size: int,
    status: str | None = None,
    practice_status: str | None = None,
    institution_id: uuid.UUID | None = None,
    q: str | None = None,
    title: str | None = None,
) -> Page[Doctor]:
    """Registrations in the caller's scope (the centre scope is applied by app.core.scope)."""
    statement: Select[Any] = select(Doctor).order_by(Doctor.submitted_at.desc(), Doctor.id)
    if status:
        statement = statement.where(Doctor.status == status)
    if practice_status:
        statement = statement.where(Doctor.practice_status == practice_status)
    if institution_id:
        statement = statement.where(Doctor.institution_id == institution_id)
    if title:
        statement = statement.where(Doctor.title == title)
    if q:
        statement = statement.where(name_filter(q))
    return paginate(statement, page, size)


def doctor_history(doctor_id: uuid.UUID) -> list[DoctorHistory]:
    doctor = get_or_404(Doctor, doctor_id, object_type="doctor")
    return list(
        db.session.execute(
            select(DoctorHistory).where(DoctorHistory.doctor_id == doctor.id).order_by(DoctorHistory.id)
        ).scalars()
    )
