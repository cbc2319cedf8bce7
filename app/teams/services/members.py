"""Members of a team: work types, leadership, the fit between work type and 职称; history rows.

A member must be an approved registration (`app.doctors`) of the team's centre who has not
left, and their 职称 must fit the work type (社区护士: nursing title; 全科/专科/公卫: physician).
The team's leader (团队长) may add, change and remove members of their own team, but may not
make anybody leader, nor remove or demote the leader: that is for admins.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm.attributes import set_committed_value

from app.core import clock
from app.core.auth import Principal
from app.core.db import db
from app.core.errors import BusinessRuleViolation, Conflict, NotFound, PermissionDenied
from app.core.scope import get_or_404
from app.doctors.models import Doctor, PracticeStatus, ReviewStatus
from app.doctors.services.common import rowcount
from app.teams.models import (
    ROLE_TITLE_SERIES,
    TEAM_ROLE_LABELS,
    Team,
    TeamMember,
    TeamRole,
)
from app.teams.services.management import (
    check_active,
    check_manager,
    flush_or_conflict,
    is_admin,
    record_history,
)

_SERIES_LABELS = {"physician": "医师", "nursing": "护理", "pharmacy": "药学", "technician": "技术"}


# --- members -----------------------------------------------------------------------------------


def _check_role_fits(doctor: Doctor, role: str) -> None:
    series = ROLE_TITLE_SERIES[role]
    if series is not None and doctor.title_series not in series:
        needed = "或".join(_SERIES_LABELS[s] for s in sorted(series))
        message = f"“{TEAM_ROLE_LABELS[role]}”须由{needed}系列职称的人员担任，该人员职称为“{doctor.title}”"
        raise BusinessRuleViolation(message, code="role_title_mismatch", errors={"role": [message]})


def _eligible_doctor(team: Team, doctor_id: uuid.UUID) -> Doctor:
    doctor = db.session.execute(select(Doctor).where(Doctor.id == doctor_id)).scalar_one_or_none()
    if doctor is None or doctor.institution_id != team.institution_id:
        raise BusinessRuleViolation(
            "所选人员不是本团队所在社康中心的注册医生",
            code="doctor_not_in_centre",
            errors={"doctor_id": ["不是本中心的注册医生"]},
        )
    if doctor.status != ReviewStatus.APPROVED:
        raise BusinessRuleViolation(
            "该人员的注册尚未审核通过，不能加入团队",
            code="doctor_not_approved",
            errors={"doctor_id": ["注册尚未审核通过"]},
        )
    if doctor.practice_status == PracticeStatus.LEFT:
        raise BusinessRuleViolation(
            "该人员已离岗，不能加入团队", code="doctor_left", errors={"doctor_id": ["已离岗"]}
        )
    return doctor


def _check_leadership(
    actor: Principal, team: Team, *, becoming_leader: bool, member: TeamMember | None = None
) -> None:
    if not becoming_leader:
        return
    if not is_admin(actor):
        raise PermissionDenied("只有社康中心管理员可以任命团队长", code="leader_admin_only")
    current = team.leader()
    if current is not None and (member is None or current.id != member.id):
        raise Conflict(
            "本团队已有团队长，请先取消原团队长",
            code="leader_exists",
            errors={"is_leader": ["本团队已有团队长"]},
        )


def get_member(team_id: uuid.UUID, member_id: uuid.UUID, *, action: str = "read") -> TeamMember:
    member = get_or_404(TeamMember, member_id, object_type="team_member", action=action)
    if member.team_id != team_id or member.left_at is not None:
        raise NotFound("未找到该团队成员")
    return member


def add_member(
    actor: Principal, team_id: uuid.UUID, *, doctor_id: uuid.UUID, role: str, is_leader: bool = False
) -> TeamMember:
    team = get_or_404(Team, team_id, object_type="team", action="update")
    check_active(team)
    check_manager(actor, team)
    doctor = _eligible_doctor(team, doctor_id)
    _check_role_fits(doctor, role)
    if any(m.doctor_id == doctor.id for m in team.members):
        raise Conflict(
            "该人员已是本团队成员", code="already_member", errors={"doctor_id": ["已是本团队成员"]}
        )
    _check_leadership(actor, team, becoming_leader=is_leader)
    member = TeamMember(
        id=uuid.uuid4(),
        institution_id=team.institution_id,
        team_id=team.id,
        doctor_id=doctor.id,
        role=TeamRole(role).value,
        is_leader=is_leader,
        joined_at=clock.now(),
    )
    db.session.add(member)
    flush_or_conflict("该人员已是本团队成员，或本团队已有团队长", "member_conflict")
    db.session.expire(team, ["members"])
    record_history(
        team, actor, "member_added", member=member, after={"role": member.role, "is_leader": is_leader}
    )
    return member


def change_member(
    actor: Principal, team_id: uuid.UUID, member_id: uuid.UUID, changes: Mapping[str, Any]
) -> TeamMember:
    team = get_or_404(Team, team_id, object_type="team", action="update")
    check_active(team)
    check_manager(actor, team)
    member = get_member(team.id, member_id, action="update")
    before = {"role": member.role, "is_leader": member.is_leader}
    if "is_leader" in changes and changes["is_leader"] != member.is_leader:
        if not is_admin(actor):
            raise PermissionDenied("只有社康中心管理员可以任免团队长", code="leader_admin_only")
        _check_leadership(actor, team, becoming_leader=bool(changes["is_leader"]), member=member)
        member.is_leader = bool(changes["is_leader"])
    if "role" in changes and changes["role"] != member.role:
        _check_role_fits(member.doctor, changes["role"])
        member.role = TeamRole(changes["role"]).value
    after = {"role": member.role, "is_leader": member.is_leader}
    if after == before:
        raise Conflict("成员的角色没有变化", code="member_unchanged")
    flush_or_conflict("本团队已有团队长", "leader_exists")
    db.session.expire(team, ["members"])
    record_history(team, actor, "member_changed", member=member, before=before, after=after)
    return member


def remove_member(actor: Principal, team_id: uuid.UUID, member_id: uuid.UUID, *, reason: str) -> TeamMember:
    team = get_or_404(Team, team_id, object_type="team", action="update")
    check_active(team)
    check_manager(actor, team)
    member = get_member(team.id, member_id, action="update")
    if member.is_leader and not is_admin(actor):
        raise PermissionDenied("团队长不能移出自己，请联系社康中心管理员", code="leader_admin_only")
    now = clock.now()
    result = db.session.execute(
        update(TeamMember)
        .where(TeamMember.id == member.id, TeamMember.left_at.is_(None))
        .values(left_at=now)
        .execution_options(synchronize_session=False)
    )
    if rowcount(result) != 1:
        raise Conflict("该成员刚被他人移出团队", code="concurrent_transition")
    set_committed_value(member, "left_at", now)
    db.session.expire(team, ["members"])
    record_history(
        team,
        actor,
        "member_removed",
        member=member,
        before={"role": member.role, "is_leader": member.is_leader},
        reason=reason,
    )
    return member
