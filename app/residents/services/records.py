"""Residents: viewing, exact lookup, search, history, status changes (迁出/死亡) and unmasking.

Every read is audited once; a search is audited as one event naming the criteria used (never the
values searched) and the ids returned.
"""

from __future__ import annotations

import re
import uuid
from datetime import date
from typing import Any, cast

from sqlalchemy import Select, or_, select, update
from sqlalchemy.engine import CursorResult

from app.core import audit
from app.core.auth import Principal
from app.core.crypto import blind_index, normalise
from app.core.db import db
from app.core.errors import BusinessRuleViolation, Conflict, PermissionDenied
from app.core.pagination import Page, paginate
from app.core.scope import SKIP_SCOPE
from app.residents.models import (
    HouseholdMember,
    Resident,
    ResidentChange,
    ResidentStatus,
    normalise_id_number,
)
from app.residents.services.common import (
    get_resident,
    record_change,
    today,
)

# --- reading and search -----------------------------------------------------------------------


def view_resident(resident_id: uuid.UUID) -> Resident:
    """One resident for a screen: scoped, and the read is audited."""
    resident = get_resident(resident_id)
    audit.record("read", "resident", resident.id, resident_id=resident.id)
    return resident


def find_by_id_number(id_number: str) -> Resident | None:
    """Exact lookup by ID number across every centre (unscoped), e.g. for mini-program identity
    binding. Does not audit: the caller records its own purpose."""
    if not id_number or not id_number.strip():
        return None
    found: Resident | None = db.session.execute(
        select(Resident)
        .where(Resident.id_number_bidx == blind_index(normalise_id_number(id_number), "id_number"))
        .execution_options(**{SKIP_SCOPE: True})
    ).scalar_one_or_none()
    return found


_MOBILE = re.compile(r"1[3-9]\d{9}")
_LETTERS = re.compile(r"[A-Za-z]{1,20}")


def _name_condition(term: str) -> Any:
    term = term.strip()
    if _LETTERS.fullmatch(term):
        prefix = term.lower()
        return or_(
            Resident.name_initials.startswith(prefix, autoescape=True),
            Resident.name_initials.contains(" " + prefix, autoescape=True),
        )
    return Resident.name.contains(term, autoescape=True)


def _classify(q: str) -> tuple[str, Any]:
    """`q`: an ID number, a mobile number, pinyin initials, or part of a name."""
    compact = normalise(q, "phone")
    if _MOBILE.fullmatch(compact):
        return "phone", Resident.phone_bidx == blind_index(compact, "phone")
    if re.search(r"\d", q) and re.fullmatch(r"[A-Za-z0-9\s-]{4,40}", q):
        return "id_number", Resident.id_number_bidx == blind_index(normalise_id_number(q), "id_number")
    return "name", _name_condition(q)


def search_residents(
    *,
    page: int,
    size: int,
    q: str | None = None,
    id_number: str | None = None,
    phone: str | None = None,
    name: str | None = None,
    household_id: uuid.UUID | None = None,
    community_id: uuid.UUID | None = None,
    street_id: uuid.UUID | None = None,
    status: str | None = None,
    institution_id: uuid.UUID | None = None,
) -> Page[Resident]:
    """Residents in the caller's scope, paged. The search is audited as one event naming the
    criteria used (never their values) and the ids returned."""
    statement: Select[Any] = select(Resident)
    criteria: list[str] = []
    if q:
        kind, condition = _classify(q)
        statement = statement.where(condition)
        criteria.append(f"q:{kind}")
    if id_number:
        statement = statement.where(
            Resident.id_number_bidx == blind_index(normalise_id_number(id_number), "id_number")
        )
        criteria.append("id_number")
    if phone:
        statement = statement.where(Resident.phone_bidx == blind_index(phone, "phone"))
        criteria.append("phone")
    if name:
        statement = statement.where(_name_condition(name))
        criteria.append("name")
    if household_id:
        statement = statement.join(HouseholdMember, HouseholdMember.resident_id == Resident.id).where(
            HouseholdMember.household_id == household_id
        )
        criteria.append("household_id")
    for field, value in (
        ("community_id", community_id),
        ("street_id", street_id),
        ("status", status),
        ("institution_id", institution_id),
    ):
        if value:
            statement = statement.where(getattr(Resident, field) == value)
            criteria.append(field)
    statement = statement.order_by(Resident.name_initials, Resident.name, Resident.id)
    found = paginate(statement, page, size)
    audit.record(
        "search",
        "resident",
        None,
        detail={"criteria": criteria, "total": found.total, "resident_ids": [str(r.id) for r in found.items]},
    )
    return found


def list_changes(resident_id: uuid.UUID, *, page: int, size: int) -> Page[ResidentChange]:
    resident = get_resident(resident_id)
    statement: Select[Any] = (
        select(ResidentChange)
        .where(ResidentChange.resident_id == resident.id)
        .order_by(ResidentChange.created_at.desc(), ResidentChange.id.desc())
    )
    found = paginate(statement, page, size)
    audit.record("read", "resident_changes", resident.id, resident_id=resident.id)
    return found


# --- status -----------------------------------------------------------------------------------


def change_status(
    actor: Principal, resident_id: uuid.UUID, *, status: str, effective_date: date, reason: str | None = None
) -> Resident:
    """在册 -> 迁出/死亡, 迁出 -> 在册 (moved back)/死亡. Guarded by a conditional UPDATE."""
    resident = get_resident(resident_id, action="update")
    target = ResidentStatus(status)
    resident.check_transition(target)
    if effective_date > today():
        raise BusinessRuleViolation(
            "日期不能晚于今天", code="date_in_future", errors={"effective_date": ["日期不能晚于今天"]}
        )
    if effective_date < resident.birth_date:
        raise BusinessRuleViolation(
            "日期不能早于出生日期",
            code="date_before_birth",
            errors={"effective_date": ["日期不能早于出生日期"]},
        )
    previous = resident.status
    result = cast(
        CursorResult[Any],
        db.session.execute(
            update(Resident)
            .where(Resident.id == resident.id, Resident.status == previous)
            .values(status=target.value, status_date=effective_date)
            .execution_options(synchronize_session="fetch")
        ),
    )
    if result.rowcount != 1:
        raise Conflict("居民状态已被他人修改，请刷新后重试", code="concurrent_update")
    record_change(
        resident.id,
        "status_changed",
        fields=["status", "status_date"],
        detail={"from": previous, "to": target.value},
        reason=reason,
    )
    audit.record(
        "status_change",
        "resident",
        resident.id,
        resident_id=resident.id,
        detail={"from": previous, "to": target.value},
    )
    return resident


# --- unmasking (DATA-02) ----------------------------------------------------------------------

UNMASK_FIELDS: tuple[str, ...] = ("name", "id_number", "phone", "current_address", "registered_address")
UNMASK_REASONS: dict[str, str] = {
    "verify_identity": "核实身份",
    "contact_resident": "联系居民",
    "medical_service": "诊疗服务需要",
    "official_inquiry": "公务核查",
    "other": "其他（须说明）",
}


def unmask(
    actor: Principal, resident_id: uuid.UUID, *, field: str, reason: str, note: str | None
) -> str | None:
    """One personal field in clear: the `pii:unmask` permission, a reason, one audit row."""
    if field not in UNMASK_FIELDS:
        raise BusinessRuleViolation(
            "该字段不能查看", code="invalid_field", errors={"field": ["该字段不能查看"]}
        )
    # Scope first: a resident of another centre is 404 whatever the caller's permissions.
    resident = get_resident(resident_id, action="unmask")
    if not actor.can("pii:unmask"):
        audit.record(
            "unmask",
            "resident",
            resident.id,
            resident_id=resident.id,
            result=audit.DENIED,
            purpose="no_permission",
            durable=True,
            detail={"field": field},
        )
        raise PermissionDenied("您没有查看完整个人信息的权限", code="unmask_not_permitted")
    if reason == "other" and not (note and note.strip()):
        raise BusinessRuleViolation(
            "原因为“其他”时须填写说明", code="unmask_note_required", errors={"note": ["请填写查看原因"]}
        )
    audit.record(
        "unmask",
        "resident",
        resident.id,
        resident_id=resident.id,
        purpose=f"{reason}:{(note or '').strip()[:150]}",
        detail={"field": field},
    )
    value: str | None = getattr(resident, field)
    return value
