"""What the doctors' use cases share: settings, the history writer, permissions, query helpers.

Object-level rules (the routes gate roles):
- submit: a doctor, team leader, nurse or public-health member for themselves (their own centre),
  a centre admin for someone of their centre, a district admin for any centre;
- resubmit, profile, photo: the registered person themselves, or an admin of their centre/district;
- review: see `registration`;
- practice status, capacity, 医保医师编码: admins of the doctor's centre, or district admins.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from flask import current_app
from sqlalchemy import CursorResult, Result, or_

from app.core import audit, clock
from app.core.auth import Principal, Role
from app.core.db import db
from app.core.errors import PermissionDenied
from app.core.scope import SKIP_SCOPE
from app.doctors.models import (
    Doctor,
    DoctorHistory,
)

# Staff roles that may register themselves (and whose accounts may be linked to a registration).
SELF_REGISTERING_ROLES: frozenset[str] = frozenset(
    {Role.DOCTOR, Role.TEAM_LEADER, Role.NURSE, Role.PUBLIC_HEALTH}
)
LEVEL_CENTRE = "centre"
LEVEL_DISTRICT = "district"
UNSCOPED = {SKIP_SCOPE: True}


def rowcount(result: Result[Any]) -> int:
    """Rows matched by an UPDATE/DELETE (the conditional-UPDATE guards read it)."""
    return int(cast("CursorResult[Any]", result).rowcount or 0)


# --- settings ------------------------------------------------------------------------------------


def review_levels() -> tuple[str, ...]:
    """`DOCTOR_REVIEW_LEVELS` parsed: ("centre",) or ("centre", "district")."""
    raw = str(current_app.config["DOCTOR_REVIEW_LEVELS"])
    levels = tuple(part.strip().lower() for part in raw.split(",") if part.strip())
    if levels not in ((LEVEL_CENTRE,), (LEVEL_CENTRE, LEVEL_DISTRICT)):
        raise RuntimeError(f"DOCTOR_REVIEW_LEVELS must be 'centre' or 'centre,district', not {raw!r}")
    return levels


def default_capacity() -> int:
    return int(current_app.config["DOCTOR_CAPACITY_DEFAULT"])


def require_mi_code() -> bool:
    return bool(current_app.config["REQUIRE_MI_DOCTOR_CODE"])


# --- history -----------------------------------------------------------------------------------


def channel_of(principal: Principal | None) -> str:
    if principal is None:
        return "system"
    return {"staff": "staff", "resident": "mp", "partner": "open"}.get(principal.kind, principal.kind)


def write_history(
    doctor: Doctor,
    actor: Principal | None,
    action: str,
    *,
    from_status: str | None = None,
    to_status: str | None = None,
    reason: str | None = None,
    detail: Mapping[str, Any] | None = None,
    channel: str | None = None,
) -> None:
    db.session.add(
        DoctorHistory(
            doctor_id=doctor.id,
            action=action,
            from_status=from_status,
            to_status=to_status,
            actor_kind=actor.kind if actor else "system",
            actor_id=actor.id if actor else None,
            actor_role=actor.role if actor else None,
            channel=channel or channel_of(actor),
            reason=reason,
            detail=dict(detail or {}),
            created_at=clock.now(),
        )
    )
    audit.record(
        action,
        "doctor",
        doctor.id,
        institution_id=doctor.institution_id,
        purpose=reason,
        detail={k: v for k, v in (detail or {}).items() if k in ("fields", "from", "to")},
    )


# --- permissions -------------------------------------------------------------------------------


def _is_admin(actor: Principal) -> bool:
    return actor.role in (Role.CENTRE_ADMIN, Role.DISTRICT_ADMIN)


def check_editor(actor: Principal, doctor: Doctor) -> None:
    """The registered person, or an admin whose scope (already applied by the query) covers them."""
    if doctor.staff_user_id is not None and doctor.staff_user_id == actor.id:
        return
    if _is_admin(actor):
        return
    raise PermissionDenied("只能修改本人的注册信息", code="not_own_registration")


def name_filter(q: str) -> Any:
    term = q.strip()
    if term.isascii() and term.isalpha():
        key = " " + term.lower()
        return or_(
            Doctor.name_initials.contains(key, autoescape=True),
            Doctor.name_pinyin.contains(key, autoescape=True),
        )
    return Doctor.name.contains(term, autoescape=True)
