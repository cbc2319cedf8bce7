"""Guardians (监护人) and households (家庭/户).

A household belongs to one centre and so do all its members (they move together on a transfer,
see `transfers.py`). A resident is in at most one household; the head (户主) is the member whose
relationship is `head`. A guardian is an adult resident visible to the caller; under 14 a
guardian is required (PIPL Art. 31).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Select, select

from app.core import audit
from app.core.auth import Principal
from app.core.db import db
from app.core.errors import BusinessRuleViolation, Conflict, NotFound
from app.core.pagination import Page, paginate
from app.core.scope import get_or_404
from app.residents.models import (
    ADULT_AGE,
    GUARDIAN_CONSENT_AGE,
    GUARDIAN_RELATIONSHIPS,
    HEAD,
    HOUSEHOLD_RELATIONSHIPS,
    Household,
    HouseholdMember,
    Resident,
)
from app.residents.services.common import (
    get_resident,
    guarded_write,
    record_change,
    require_active,
    today,
)

# --- guardians --------------------------------------------------------------------------------


def check_guardian(resident: Resident, guardian_id: uuid.UUID, relationship: str | None) -> Resident:
    """The guardian must be another adult, active resident within the caller's scope."""
    if relationship not in GUARDIAN_RELATIONSHIPS:
        raise BusinessRuleViolation(
            "请选择与监护人的关系",
            code="invalid_guardian_relationship",
            errors={"guardian_relationship": ["请选择与监护人的关系"]},
        )
    if guardian_id == resident.id:
        raise BusinessRuleViolation(
            "监护人不能是本人", code="invalid_guardian", errors={"guardian_id": ["监护人不能是本人"]}
        )
    try:
        guardian = get_resident(guardian_id, action="link_guardian")
    except NotFound:
        raise BusinessRuleViolation(
            "未找到该监护人：监护人须为本中心已建档的居民",
            code="guardian_not_found",
            errors={"guardian_id": ["未找到该监护人"]},
        ) from None
    if not guardian.is_active:
        raise BusinessRuleViolation(
            "监护人须为在册居民", code="invalid_guardian", errors={"guardian_id": ["监护人须为在册居民"]}
        )
    if guardian.age_on(today()) < ADULT_AGE:
        raise BusinessRuleViolation(
            f"监护人须年满 {ADULT_AGE} 周岁",
            code="invalid_guardian",
            errors={"guardian_id": [f"监护人须年满 {ADULT_AGE} 周岁"]},
        )
    if guardian.guardian_id == resident.id:
        raise BusinessRuleViolation(
            "不能互为监护人", code="invalid_guardian", errors={"guardian_id": ["不能互为监护人"]}
        )
    return guardian


def set_guardian(
    actor: Principal,
    resident_id: uuid.UUID,
    *,
    guardian_id: uuid.UUID,
    relationship: str,
    reason: str | None = None,
) -> Resident:
    resident = get_resident(resident_id, action="update")
    require_active(resident, "设置监护人")
    check_guardian(resident, guardian_id, relationship)
    if resident.guardian_id == guardian_id and resident.guardian_relationship == relationship:
        raise Conflict("该监护人已设置", code="guardian_unchanged")
    resident.guardian_id, resident.guardian_relationship = guardian_id, relationship
    record_change(resident.id, "guardian_set", fields=["guardian_id", "guardian_relationship"], reason=reason)
    audit.record(
        "guardian_set",
        "resident",
        resident.id,
        resident_id=resident.id,
        detail={"guardian_id": str(guardian_id)},
    )
    return resident


def remove_guardian(actor: Principal, resident_id: uuid.UUID, *, reason: str | None = None) -> Resident:
    resident = get_resident(resident_id, action="update")
    if resident.guardian_id is None:
        raise Conflict("该居民没有登记监护人", code="no_guardian")
    if resident.age_on(today()) < GUARDIAN_CONSENT_AGE:
        raise Conflict(
            f"未满 {GUARDIAN_CONSENT_AGE} 周岁的居民必须有监护人，只能更换不能解除", code="guardian_required"
        )
    resident.guardian_id, resident.guardian_relationship = None, None
    record_change(
        resident.id, "guardian_removed", fields=["guardian_id", "guardian_relationship"], reason=reason
    )
    audit.record("guardian_removed", "resident", resident.id, resident_id=resident.id)
    return resident


# --- households -------------------------------------------------------------------------------


def _relationship(code: str, *, allow_head: bool = False) -> str:
    if code not in HOUSEHOLD_RELATIONSHIPS or (code == HEAD and not allow_head):
        message = "户主只能通过“变更户主”设置" if code == HEAD else "与户主关系代码无效"
        raise BusinessRuleViolation(message, code="invalid_relationship", errors={"relationship": [message]})
    return code


def _joinable(household: Household | None, resident_id: uuid.UUID, institution_id: uuid.UUID) -> Resident:
    try:
        resident = get_resident(resident_id, action="update")
    except NotFound:
        raise BusinessRuleViolation(
            "未找到该居民：家庭成员须为本中心已建档的居民",
            code="member_not_found",
            errors={"resident_id": ["未找到该居民"]},
        ) from None
    if resident.status == "deceased":
        raise Conflict("已死亡的居民不能加入家庭", code="resident_not_active")
    if resident.institution_id != institution_id:
        raise BusinessRuleViolation(
            "家庭成员须由同一社康中心管理",
            code="household_other_centre",
            errors={"resident_id": ["家庭成员须由同一社康中心管理"]},
        )
    existing = db.session.execute(
        select(HouseholdMember.household_id).where(HouseholdMember.resident_id == resident.id)
    ).scalar_one_or_none()
    if existing is not None:
        where = "本家庭" if household is not None and existing == household.id else "其他家庭"
        raise Conflict(
            f"该居民已是{where}的成员",
            code="already_in_household",
            errors={"resident_id": [f"已是{where}的成员"]},
        )
    return resident


def _forget_memberships(household: Household, *extra: HouseholdMember) -> None:
    """Residents cache their (view-only) membership: refresh it after members changed."""
    for member in (*household.members, *extra):
        db.session.expire(member.resident, ["membership"])


def _audit(action: str, household: Household, **detail: Any) -> None:
    audit.record(
        action,
        "household",
        household.id,
        institution_id=household.institution_id,
        detail={"resident_ids": [str(m.resident_id) for m in household.members], **detail},
    )


def create_household(
    actor: Principal, *, head_id: uuid.UUID, members: Sequence[Mapping[str, Any]] = ()
) -> Household:
    """A household with its head and, optionally, other members with their relationship to the head."""
    head = get_resident(head_id, action="update")
    require_active(head, "作为户主建立家庭")
    household = Household(id=uuid.uuid4(), institution_id=head.institution_id)
    seen = {head.id}
    joining: list[tuple[Resident, str]] = [(_joinable(None, head.id, head.institution_id), HEAD)]
    for item in members:
        if item["resident_id"] in seen:
            raise BusinessRuleViolation(
                "家庭成员重复", code="duplicate_member", errors={"members": ["同一居民只能出现一次"]}
            )
        seen.add(item["resident_id"])
        joining.append(
            (_joinable(None, item["resident_id"], head.institution_id), _relationship(item["relationship"]))
        )
    with guarded_write():
        db.session.add(household)
        for resident, relationship in joining:
            household.members.append(
                HouseholdMember(
                    id=uuid.uuid4(),
                    institution_id=household.institution_id,
                    resident_id=resident.id,
                    relationship=relationship,
                )
            )
    _forget_memberships(household)
    for resident, relationship in joining:
        record_change(
            resident.id,
            "household_joined",
            fields=["household"],
            detail={"household_id": str(household.id), "relationship": relationship},
        )
    _audit("create", household)
    return household


def get_household(household_id: uuid.UUID, *, action: str = "read") -> Household:
    return get_or_404(Household, household_id, object_type="household", action=action)


def view_household(household_id: uuid.UUID) -> Household:
    household = get_household(household_id)
    _audit("read", household)
    return household


def list_households(
    *, page: int, size: int, resident_id: uuid.UUID | None = None, community_id: uuid.UUID | None = None
) -> Page[Household]:
    statement: Select[Any] = select(Household)
    if resident_id is not None:
        statement = statement.where(
            Household.id.in_(
                select(HouseholdMember.household_id).where(HouseholdMember.resident_id == resident_id)
            )
        )
    if community_id is not None:
        heads = (
            select(HouseholdMember.household_id)
            .join(Resident, Resident.id == HouseholdMember.resident_id)
            .where(HouseholdMember.relationship == HEAD, Resident.community_id == community_id)
        )
        statement = statement.where(Household.id.in_(heads))
    found = paginate(statement.order_by(Household.created_at.desc(), Household.id), page, size)
    audit.record(
        "search",
        "household",
        None,
        detail={
            "criteria": [k for k, v in (("resident_id", resident_id), ("community_id", community_id)) if v],
            "total": found.total,
            "household_ids": [str(h.id) for h in found.items],
        },
    )
    return found


def _member(household: Household, resident_id: uuid.UUID) -> HouseholdMember:
    member = next((m for m in household.members if m.resident_id == resident_id), None)
    if member is None:
        raise NotFound("该居民不是此家庭的成员", code="member_not_found")
    return member


def add_member(
    actor: Principal, household_id: uuid.UUID, *, resident_id: uuid.UUID, relationship: str
) -> Household:
    household = get_household(household_id, action="update")
    resident = _joinable(household, resident_id, household.institution_id)
    code = _relationship(relationship)
    with guarded_write():
        household.members.append(
            HouseholdMember(
                id=uuid.uuid4(),
                institution_id=household.institution_id,
                resident_id=resident.id,
                relationship=code,
            )
        )
    _forget_memberships(household)
    record_change(
        resident.id,
        "household_joined",
        fields=["household"],
        detail={"household_id": str(household.id), "relationship": code},
    )
    _audit("member_add", household, resident_id=str(resident.id))
    return household


def change_member_relationship(
    actor: Principal, household_id: uuid.UUID, resident_id: uuid.UUID, *, relationship: str
) -> Household:
    household = get_household(household_id, action="update")
    member = _member(household, resident_id)
    if member.relationship == HEAD:
        raise Conflict("户主的关系不能直接修改，请使用“变更户主”", code="head_relationship")
    code = _relationship(relationship)
    if member.relationship != code:
        member.relationship = code
        record_change(
            resident_id,
            "household_relationship_changed",
            fields=["household_relationship"],
            detail={"household_id": str(household.id), "relationship": code},
        )
    _audit("member_update", household, resident_id=str(resident_id))
    return household


def remove_member(actor: Principal, household_id: uuid.UUID, resident_id: uuid.UUID) -> Household:
    household = get_household(household_id, action="update")
    member = _member(household, resident_id)
    if member.relationship == HEAD:
        raise Conflict("不能移除户主：请先变更户主，或解散家庭", code="cannot_remove_head")
    household.members.remove(member)
    db.session.flush()
    _forget_memberships(household, member)
    record_change(
        resident_id, "household_left", fields=["household"], detail={"household_id": str(household.id)}
    )
    _audit("member_remove", household, resident_id=str(resident_id))
    return household


def change_head(
    actor: Principal,
    household_id: uuid.UUID,
    *,
    head_id: uuid.UUID,
    relationships: Sequence[Mapping[str, Any]],
) -> Household:
    """变更户主. Every other member's relationship to the new head must be given again, since
    relationships are relative to the head."""
    household = get_household(household_id, action="update")
    new_head = _member(household, head_id)
    if new_head.relationship == HEAD:
        raise Conflict("该居民已是户主", code="already_head")
    given = {item["resident_id"]: item["relationship"] for item in relationships}
    others = {m.resident_id for m in household.members if m.resident_id != head_id}
    if set(given) != others:
        message = "须为除新户主外的每位成员填写与新户主的关系"
        raise BusinessRuleViolation(
            message, code="relationships_incomplete", errors={"relationships": [message]}
        )
    codes = {rid: _relationship(code) for rid, code in given.items()}
    with guarded_write():
        # The old head steps down first: the partial unique index allows one head at a time.
        for member in household.members:
            if member.resident_id != head_id:
                member.relationship = codes[member.resident_id]
        db.session.flush()
        new_head.relationship = HEAD
    for member in household.members:
        record_change(
            member.resident_id,
            "household_relationship_changed",
            fields=["household_relationship"],
            detail={"household_id": str(household.id), "relationship": member.relationship},
        )
    _audit("head_change", household, head_id=str(head_id))
    return household


def dissolve_household(actor: Principal, household_id: uuid.UUID) -> None:
    household = get_household(household_id, action="delete")
    _audit("delete", household)
    for member in list(household.members):
        record_change(
            member.resident_id,
            "household_left",
            fields=["household"],
            detail={"household_id": str(household.id)},
        )
    members = list(household.members)
    db.session.delete(household)
    db.session.flush()
    for member in members:
        db.session.expire(member.resident, ["membership"])
