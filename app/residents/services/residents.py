"""Residents: registration and correction (with change history), population groups and ages.

Ages and age-derived population groups are computed on demand (never stored, never stale).
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping
from datetime import date
from typing import Any

from app.core import audit
from app.core.auth import Principal
from app.core.db import db
from app.core.errors import BusinessRuleViolation, PermissionDenied
from app.residents.models import (
    CHILD_0_6,
    DERIVING_ID_TYPES,
    ELDERLY_65,
    GENERAL,
    GROUPS,
    GUARDIAN_CONSENT_AGE,
    IdType,
    Resident,
    ResidentStatus,
    years_between,
)
from app.residents.services.common import (
    active_institution,
    can_see_health,
    checked_identity,
    community_and_street,
    ensure_unique_id_number,
    get_resident,
    guarded_write,
    hidden_special_groups,
    record_change,
    today,
)
from app.residents.services.families import check_guardian

# --- derived values (public: later features call these) ---------------------------------------


def age_on(resident: Resident, on: date) -> int:
    """Full years (周岁) on `on`."""
    return resident.age_on(on)


def population_groups(resident: Resident, on: date | None = None) -> set[str]:
    """Every group the resident is in on `on` (default today): stored plus age-derived, or
    {"general"} when none applies. Unfiltered: callers decide what to show (see `visible_groups`)."""
    return resident.groups_on(on or today())


def visible_groups(
    resident: Resident, principal: Principal | None, on: date | None = None
) -> list[str] | None:
    """The groups this principal may see, computed as if hidden special categories did not exist
    (so nothing can be inferred from their absence). None: no health data for this role."""
    if not can_see_health(principal):
        return None
    stored = resident.stored_groups - hidden_special_groups(principal)
    age = resident.age_on(on or today())
    groups = set(stored)
    if age >= 65:
        groups.add(ELDERLY_65)
    if age <= 6:
        groups.add(CHILD_0_6)
    order = list(GROUPS)
    return sorted(groups or {GENERAL}, key=order.index)


def _checked_groups(
    actor: Principal, requested: Collection[str], *, sex: str, previous: set[str]
) -> set[str]:
    codes = set(requested)
    unknown = sorted(c for c in codes if c not in GROUPS)
    if unknown:
        raise BusinessRuleViolation(
            "人群分类代码无效",
            code="invalid_population_group",
            errors={"population_groups": [f"无效的人群分类：{c}" for c in unknown]},
        )
    derived = sorted(GROUPS[c].label for c in codes if GROUPS[c].derived)
    if derived:
        message = f"“{'、'.join(derived)}”由出生日期自动判定，无需填写"
        raise BusinessRuleViolation(
            message, code="derived_population_group", errors={"population_groups": [message]}
        )
    hidden = hidden_special_groups(actor)
    refused = sorted((codes & hidden) - previous, key=list(GROUPS).index)
    if refused:
        labels = "、".join(GROUPS[c].label for c in refused)
        raise PermissionDenied(
            f"您没有“{labels}”类别权限，不能登记该人群分类，请联系本中心管理员授权",
            code="special_group_not_permitted",
        )
    # Keep the special groups this caller cannot see; they are not theirs to remove.
    codes = (codes - hidden) | (previous & hidden)
    for code in codes:
        required_sex = GROUPS[code].sex
        if required_sex is not None and required_sex != sex:
            message = f"“{GROUPS[code].label}”仅适用于女性居民"
            raise BusinessRuleViolation(
                message, code="population_group_sex", errors={"population_groups": [message]}
            )
    return codes


def _require_guardian_if_young(birth_date: date, guardian_id: uuid.UUID | None) -> None:
    if guardian_id is None and years_between(birth_date, today()) < GUARDIAN_CONSENT_AGE:
        message = f"未满 {GUARDIAN_CONSENT_AGE} 周岁的居民须关联监护人（个人信息保护法第三十一条）"
        raise BusinessRuleViolation(message, code="guardian_required", errors={"guardian_id": [message]})


def _target_institution(actor: Principal, requested: uuid.UUID | None) -> uuid.UUID:
    """Centre staff register into their own centre; district roles must name the centre."""
    if not actor.is_district:
        if requested is not None and requested != actor.institution_id:
            raise PermissionDenied("只能在本中心为居民建档", code="outside_scope")
        assert actor.institution_id is not None
        return actor.institution_id
    if requested is None:
        raise BusinessRuleViolation(
            "区级人员建档须选择管理机构",
            code="institution_required",
            errors={"institution_id": ["请选择管理机构（社康中心）"]},
        )
    return active_institution(requested).id


# --- registration and update ------------------------------------------------------------------


def create_resident(
    actor: Principal,
    *,
    name: str,
    id_number: str,
    current_address: str,
    community_id: uuid.UUID,
    id_type: str = IdType.RESIDENT_ID_CARD.value,
    sex: str | None = None,
    birth_date: date | None = None,
    phone: str | None = None,
    registered_address: str | None = None,
    population_groups: Collection[str] = (),
    guardian_id: uuid.UUID | None = None,
    guardian_relationship: str | None = None,
    institution_id: uuid.UUID | None = None,
) -> Resident:
    """建档. The ID number is validated for its type and must be new in the whole district."""
    institution = _target_institution(actor, institution_id)
    identity = checked_identity(id_type, id_number, sex=sex, birth_date=birth_date)
    ensure_unique_id_number(identity.id_number)
    community, street = community_and_street(community_id)
    groups = _checked_groups(actor, population_groups, sex=identity.sex, previous=set())
    resident = Resident(
        id=uuid.uuid4(),
        institution_id=institution,
        name=name.strip(),
        id_type=identity.id_type.value,
        id_number=identity.id_number,
        sex=identity.sex,
        birth_date=identity.birth_date,
        phone=phone or None,
        current_address=current_address.strip(),
        registered_address=(registered_address or "").strip() or None,
        street_id=street,
        community_id=community,
        status=ResidentStatus.ACTIVE.value,
    )
    resident.set_stored_groups(groups)
    if guardian_id is not None:
        check_guardian(resident, guardian_id, guardian_relationship)
        resident.guardian_id, resident.guardian_relationship = guardian_id, guardian_relationship
    _require_guardian_if_young(resident.birth_date, resident.guardian_id)
    with guarded_write(identity.id_number):
        db.session.add(resident)
    fields = ["name", "id_type", "id_number", "sex", "birth_date", "current_address", "community_id"]
    fields += [f for f in ("phone", "registered_address", "guardian_id") if getattr(resident, f)]
    fields += ["population_groups"] if groups else []
    record_change(resident.id, "created", fields=fields)
    audit.record("create", "resident", resident.id, resident_id=resident.id, institution_id=institution)
    return resident


IDENTITY_FIELDS = ("id_type", "id_number", "sex", "birth_date")
PLAIN_FIELDS = ("name", "phone", "current_address", "registered_address")


def update_resident(
    actor: Principal, resident_id: uuid.UUID, changes: Mapping[str, Any], *, reason: str | None = None
) -> Resident:
    """Correct a resident's details. Writes one history row naming the changed fields (never
    their values). Changing the ID number re-derives sex and birth date and re-checks uniqueness."""
    resident = get_resident(resident_id, action="update")
    new: dict[str, Any] = {}
    if any(f in changes for f in IDENTITY_FIELDS):
        id_type = changes.get("id_type", resident.id_type)
        deriving = IdType(id_type) in DERIVING_ID_TYPES
        identity = checked_identity(
            id_type,
            changes.get("id_number", resident.id_number),
            sex=changes.get("sex", None if deriving else resident.sex),
            birth_date=changes.get("birth_date", None if deriving else resident.birth_date),
        )
        if identity.id_number != resident.id_number:
            ensure_unique_id_number(identity.id_number, exclude=resident.id)
        new.update(
            id_type=identity.id_type.value,
            id_number=identity.id_number,
            sex=identity.sex,
            birth_date=identity.birth_date,
        )
    for field in PLAIN_FIELDS:
        if field in changes:
            value = changes[field]
            new[field] = (value.strip() or None) if isinstance(value, str) else value
    if not new.get("name", resident.name) or not new.get("current_address", resident.current_address):
        raise BusinessRuleViolation("姓名和现住址不能为空", code="required_field_empty")
    if "community_id" in changes:
        new["community_id"], new["street_id"] = community_and_street(changes["community_id"])
    changed = [f for f, v in new.items() if getattr(resident, f) != v]
    sex = new.get("sex", resident.sex)
    requested = changes.get("population_groups", resident.stored_groups)
    groups = _checked_groups(actor, requested, sex=sex, previous=resident.stored_groups)
    if "birth_date" in changed:  # a corrected birth date may make the resident a minor under 14
        _require_guardian_if_young(new["birth_date"], resident.guardian_id)
    with guarded_write(new.get("id_number")):
        for field in changed:
            setattr(resident, field, new[field])
        if groups != resident.stored_groups:
            resident.set_stored_groups(groups)
            changed.append("population_groups")
    fields = sorted(set(changed) - {"street_id"})
    if fields:
        record_change(resident.id, "updated", fields=fields, reason=reason)
    audit.record("update", "resident", resident.id, resident_id=resident.id, detail={"fields": fields})
    return resident
