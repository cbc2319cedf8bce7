"""The signing rule of a team and the atomic capacity counters used by contracts.

The contract module calls, in its signing transaction:

    assert_can_sign(doctor)          # app.doctors.services: approved, 在岗, 医保医师编码 (setting)
    reserve_capacity(doctor, team)   # here: also checks the team and takes one place of each

and `release_capacity(doctor, team)` when a contract ends or moves. Both counters change only
through conditional UPDATEs (`signed_count = signed_count + 1 WHERE signed_count < cap`), so
concurrent signings can never exceed a cap; the doctor's row is always taken before the team's
(one lock order, no deadlock).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.orm.attributes import set_committed_value

from app.core.db import db
from app.core.errors import BusinessRuleViolation, Conflict
from app.doctors.models import Doctor, PracticeStatus, ReviewStatus
from app.doctors.services import library_cache
from app.doctors.services.common import UNSCOPED, default_capacity, rowcount
from app.doctors.services.practice import assert_can_sign
from app.teams.models import SIGNING_ROLES, TEAM_ROLE_LABELS, Team, TeamMember, TeamStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TeamReadiness:
    can_sign: bool
    missing_roles: tuple[str, ...]
    reason: str | None


def team_can_sign(team: Team) -> TeamReadiness:
    """Whether the team may sign residents, and in Chinese why not."""
    if team.status != TeamStatus.ACTIVE:
        return TeamReadiness(False, (), "该团队已解散，不能签约")
    missing = tuple(team.missing_roles())
    if missing:
        labels = "、".join(TEAM_ROLE_LABELS[role] for role in missing)
        return TeamReadiness(
            False, missing, f"团队还缺少{labels}（须至少各有一名审核通过且在岗的全科医生和社区护士才能签约）"
        )
    return TeamReadiness(True, (), None)


def assert_team_can_sign(team: Team) -> None:
    readiness = team_can_sign(team)
    if not readiness.can_sign:
        assert readiness.reason is not None
        raise BusinessRuleViolation(
            readiness.reason, code="team_cannot_sign", errors={"missing_roles": list(readiness.missing_roles)}
        )


def signing_member(team: Team, doctor: Doctor) -> TeamMember | None:
    return next((m for m in team.members if m.doctor_id == doctor.id and m.role in SIGNING_ROLES), None)


def team_capacity(team: Team) -> int:
    return team.capacity(default_capacity())


def team_remaining(team: Team) -> int:
    return team.remaining(default_capacity())


def _sync(obj: Doctor | Team) -> None:
    """Reload the counter after a conditional UPDATE (the in-memory value is stale by design)."""
    model = type(obj)
    value = db.session.execute(
        select(model.signed_count).where(model.id == obj.id).execution_options(**UNSCOPED)
    ).scalar_one()
    set_committed_value(obj, "signed_count", value)


def reserve_capacity(doctor: Doctor, team: Team) -> None:
    """Take one place of the doctor and one of the team, or raise (422 rule, 409 full)."""
    assert_can_sign(doctor)
    assert_team_can_sign(team)
    if signing_member(team, doctor) is None:
        raise BusinessRuleViolation(
            "该医生不是本团队的全科医生，不能以本团队名义签约",
            code="doctor_not_in_team",
            errors={"doctor_id": ["不是本团队的全科医生"]},
        )
    doctor_default = default_capacity()
    took = db.session.execute(
        update(Doctor)
        .where(
            Doctor.id == doctor.id,
            Doctor.status == ReviewStatus.APPROVED,
            Doctor.practice_status == PracticeStatus.ACTIVE,
            Doctor.signed_count < func.coalesce(Doctor.capacity_override, doctor_default),
        )
        .values(signed_count=Doctor.signed_count + 1)
        .execution_options(synchronize_session=False)
    )
    if rowcount(took) != 1:
        _sync(doctor)
        raise Conflict("该医生的签约人数已达上限，请选择其他医生", code="doctor_capacity_full")
    took = db.session.execute(
        update(Team)
        .where(
            Team.id == team.id,
            Team.status == TeamStatus.ACTIVE,
            Team.signed_count < func.coalesce(Team.capacity_override, team.capacity(doctor_default)),
        )
        .values(signed_count=Team.signed_count + 1)
        .execution_options(synchronize_session=False)
    )
    if rowcount(took) != 1:
        # Give the doctor's place back at once: the caller may catch this and go on.
        db.session.execute(
            update(Doctor)
            .where(Doctor.id == doctor.id)
            .values(signed_count=Doctor.signed_count - 1)
            .execution_options(synchronize_session=False)
        )
        _sync(doctor)
        _sync(team)
        raise Conflict("该团队的签约人数已达上限，请选择其他团队", code="team_capacity_full")
    _sync(doctor)
    _sync(team)
    library_cache.invalidate()


def release_capacity(doctor: Doctor, team: Team) -> bool:
    """Give back one place of each. False (and a warning) if a counter was already 0."""
    released = True
    for model, obj in ((Doctor, doctor), (Team, team)):
        result = db.session.execute(
            update(model)
            .where(model.id == obj.id, model.signed_count > 0)
            .values(signed_count=model.signed_count - 1)
            .execution_options(synchronize_session=False)
        )
        if rowcount(result) != 1:
            released = False
            log.warning(
                "signed_count already 0 on release", extra={"object": model.__tablename__, "id": str(obj.id)}
            )
        _sync(obj)
    library_cache.invalidate()
    return released
