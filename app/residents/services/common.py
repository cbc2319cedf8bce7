"""Helpers shared by the residents services: roles, scoped fetch, identity checks, history rows."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.core import audit, clock
from app.core.auth import Principal, Role, current_principal
from app.core.crypto import blind_index
from app.core.db import db
from app.core.errors import BusinessRuleViolation, Conflict, InvalidTransition
from app.core.scope import SKIP_SCOPE, get_or_404
from app.institutions.models import Community, Institution
from app.residents.models import Identity, IdentityError, Resident, ResidentChange, parse_identity
from app.residents.models.codes import SPECIAL_GROUP_CODES, SPECIAL_GROUP_PERMISSIONS

# --- who may do what (the routes declare these; services use them for finer rules) ----------

# Desk and tablet work on residents: create, update, households, guardians, consents, status.
DESK_ROLES: frozenset[str] = frozenset(
    {Role.NURSE, Role.DOCTOR, Role.TEAM_LEADER, Role.PUBLIC_HEALTH, Role.CENTRE_ADMIN, Role.DISTRICT_ADMIN}
)
# Read a resident's record and history: desk roles plus auditors.
READER_ROLES: frozenset[str] = DESK_ROLES | {Role.AUDITOR}
# Find a resident (search, basic record without health data): readers plus cashiers.
FINDER_ROLES: frozenset[str] = READER_ROLES | {Role.CASHIER}
# Move a resident to another managing centre: the current centre's admin or a district admin.
TRANSFER_ROLES: frozenset[str] = frozenset({Role.CENTRE_ADMIN, Role.DISTRICT_ADMIN})
# Population groups are health data: shown to the care roles only (not to cashiers, auditors).
HEALTH_VIEW_ROLES: frozenset[str] = DESK_ROLES


def can_see_health(principal: Principal | None) -> bool:
    return principal is not None and principal.kind == "staff" and principal.role in HEALTH_VIEW_ROLES


def visible_special_groups(principal: Principal | None) -> frozenset[str]:
    """DATA-05: the special population groups (严重精神障碍, 肺结核) this principal may see. Each
    needs its category permission (`SPECIAL_GROUP_PERMISSIONS`), granted per person by the centre's
    administrator, never by role. Only centre staff hold one, and residents are centre-scoped, so
    a grant counts in the holder's own centre only."""
    if not can_see_health(principal) or principal is None or principal.institution_id is None:
        return frozenset()
    return frozenset(
        code for code, permission in SPECIAL_GROUP_PERMISSIONS.items() if principal.can(permission)
    )


def hidden_special_groups(principal: Principal | None) -> frozenset[str]:
    """The special groups that do not exist for this principal (left out, never shown as a gap)."""
    return SPECIAL_GROUP_CODES - visible_special_groups(principal)


def can_see_group(principal: Principal | None, code: str) -> bool:
    """Whether this principal may see (or filter by) one population group."""
    return can_see_health(principal) and (
        code not in SPECIAL_GROUP_CODES or code in visible_special_groups(principal)
    )


def today() -> date:
    return clock.today_local()


def actor_ref() -> tuple[str | None, str | None]:
    principal = current_principal()
    return (principal.actor_ref, principal.role) if principal else (None, None)


# --- fetching ---------------------------------------------------------------------------------


def get_resident(resident_id: uuid.UUID, *, action: str = "read") -> Resident:
    """A resident within the caller's centre scope; 404 (audited as denied) otherwise.

    Does not audit an allowed read: the use case that shows the resident does (exactly one
    audit row per access, DATA-04).
    """
    return get_or_404(Resident, resident_id, object_type="resident", action=action)


def require_active(resident: Resident, doing: str) -> None:
    if not resident.is_active:
        raise InvalidTransition(
            f"该居民已{_status_word(resident.status)}，不能{doing}", code="resident_not_active"
        )


def _status_word(status: str) -> str:
    return {"moved_out": "迁出", "deceased": "死亡"}.get(status, "停用")


def community_and_street(community_id: uuid.UUID) -> tuple[uuid.UUID, uuid.UUID]:
    community = db.session.get(Community, community_id)
    if community is None:
        raise BusinessRuleViolation(
            "所选社区不存在", code="community_not_found", errors={"community_id": ["所选社区不存在"]}
        )
    return community.id, community.street_id


def active_institution(institution_id: uuid.UUID, field: str = "institution_id") -> Institution:
    centre = db.session.get(Institution, institution_id)
    if centre is None or not centre.is_active:
        raise BusinessRuleViolation(
            "社康中心不存在或已停用", code="institution_not_found", errors={field: ["社康中心不存在或已停用"]}
        )
    return centre


# --- identity ---------------------------------------------------------------------------------


def checked_identity(id_type: str, id_number: str, *, sex: str | None, birth_date: date | None) -> Identity:
    try:
        return parse_identity(id_type, id_number, sex=sex, birth_date=birth_date, today=today())
    except IdentityError as exc:
        raise BusinessRuleViolation(
            exc.message, code="invalid_identity", errors={exc.field: [exc.message]}
        ) from None


def duplicate_error(existing_id: uuid.UUID, institution_id: uuid.UUID) -> Conflict:
    """409 `resident_exists`, naming only the managing centre; the attempt is audited as denied."""
    audit.record(
        "create",
        "resident",
        existing_id,
        resident_id=existing_id,
        result=audit.DENIED,
        purpose="duplicate_id_number",
        durable=True,
    )
    principal = current_principal()
    if principal is not None and principal.institution_id == institution_id:
        message = "该证件号码的居民已在本中心建档，请直接查找该居民，不要重复建档"
    else:
        centre = db.session.get(Institution, institution_id)
        name = centre.name if centre is not None else "其他社康中心"
        message = (
            f"该证件号码的居民已在“{name}”建档，同一证件号码在全区只能建档一次；"
            "如居民已迁居，请联系该中心或区级管理员办理管理机构变更"
        )
    return Conflict(message, code="resident_exists", errors={"id_number": ["该证件号码已建档"]})


def ensure_unique_id_number(id_number: str, *, exclude: uuid.UUID | None = None) -> None:
    """Checked across every centre (unscoped): one ID number, one resident in the district."""
    existing = db.session.execute(
        select(Resident.id, Resident.institution_id)
        .where(Resident.id_number_bidx == blind_index(id_number, "id_number"))
        .execution_options(**{SKIP_SCOPE: True})
    ).first()
    if existing is not None and existing.id != exclude:
        raise duplicate_error(existing.id, existing.institution_id)


@contextmanager
def guarded_write(id_number: str | None = None) -> Iterator[None]:
    """Apply changes inside a SAVEPOINT and flush them there: a unique-index race becomes a 409
    instead of a 500, and the outer transaction stays usable."""
    try:
        with db.session.begin_nested():
            yield
    except IntegrityError as exc:
        detail = str(exc.orig)
        if "id_number_bidx" in detail and id_number is not None:
            existing = db.session.execute(
                select(Resident.id, Resident.institution_id)
                .where(Resident.id_number_bidx == blind_index(id_number, "id_number"))
                .execution_options(**{SKIP_SCOPE: True})
            ).first()
            if existing is not None:
                raise duplicate_error(existing.id, existing.institution_id) from None
        if "household_members" in detail:
            raise Conflict("该居民已加入其他家庭，或家庭已有户主", code="household_conflict") from None
        if "resident_consents" in detail:
            raise Conflict("该用途已有有效的同意记录", code="consent_already_granted") from None
        raise Conflict("数据已被他人修改，请刷新后重试", code="concurrent_update") from None


# --- history ----------------------------------------------------------------------------------


def record_change(
    resident_id: uuid.UUID,
    action: str,
    *,
    fields: Iterable[str] = (),
    detail: dict[str, Any] | None = None,
    reason: str | None = None,
) -> ResidentChange:
    """One history row: the action, the names of the changed fields, codes only in `detail`."""
    actor, role = actor_ref()
    change = ResidentChange(
        resident_id=resident_id,
        action=action,
        fields=sorted(set(fields)),
        detail=dict(detail or {}),
        actor=actor,
        actor_role=role,
        reason=(reason or "").strip()[:200] or None,
    )
    db.session.add(change)
    return change
