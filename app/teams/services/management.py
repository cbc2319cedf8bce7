"""Teams of a centre: create, rename, capacity, dissolve; every change leaves a history row.

Who may do what (the routes gate roles; these are the object-level rules):
- create, rename, dissolve, capacity: centre admins (own centre) and district admins;
- add, change or remove members: those admins, or the team's own leader (团队长) — who may not
  make anybody leader, nor remove or demote the leader;
- read: every staff member of the centre (district roles: every centre).

Members are in `app.teams.services.members`, which shares the helpers of this module.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Select, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.attributes import set_committed_value

from app.core import audit, clock
from app.core.auth import Principal, Role
from app.core.db import db
from app.core.errors import BusinessRuleViolation, Conflict, PermissionDenied
from app.core.pagination import Page, paginate
from app.core.scope import get_or_404
from app.doctors.services import library_cache
from app.doctors.services.common import channel_of, rowcount
from app.institutions.models import Institution
from app.teams.models import (
    Team,
    TeamAction,
    TeamHistory,
    TeamMember,
    TeamStatus,
    next_team_status,
)

# --- history and permissions -------------------------------------------------------------------


def record_history(
    team: Team,
    actor: Principal | None,
    action: str,
    *,
    member: TeamMember | None = None,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    reason: str | None = None,
) -> None:
    db.session.add(
        TeamHistory(
            team_id=team.id,
            member_id=member.id if member else None,
            doctor_id=member.doctor_id if member else None,
            action=action,
            before=dict(before or {}),
            after=dict(after or {}),
            reason=reason,
            actor_kind=actor.kind if actor else "system",
            actor_id=actor.id if actor else None,
            actor_role=actor.role if actor else None,
            channel=channel_of(actor),
            created_at=clock.now(),
        )
    )
    audit.record(
        action,
        "team",
        team.id,
        institution_id=team.institution_id,
        purpose=reason,
        detail={"member_id": str(member.id)} if member else None,
    )
    library_cache.invalidate()


def is_admin(actor: Principal) -> bool:
    return actor.role in (Role.CENTRE_ADMIN, Role.DISTRICT_ADMIN)


def _leads(actor: Principal, team: Team) -> bool:
    leader = team.leader()
    return leader is not None and leader.doctor.staff_user_id == actor.id


def check_manager(actor: Principal, team: Team) -> None:
    if is_admin(actor) or (actor.role == Role.TEAM_LEADER and _leads(actor, team)):
        return
    raise PermissionDenied("只有本团队的团队长或社康中心管理员可以调整团队成员", code="not_team_leader")


def check_active(team: Team) -> None:
    if team.status != TeamStatus.ACTIVE:
        raise Conflict("该团队已解散，不能修改", code="team_dissolved")


def flush_or_conflict(message: str, code: str) -> None:
    try:
        with db.session.begin_nested():
            db.session.flush()
    except IntegrityError as exc:
        raise Conflict(message, code=code) from exc


# --- teams -------------------------------------------------------------------------------------


def _team_centre(actor: Principal, requested: uuid.UUID | None) -> uuid.UUID:
    if actor.is_district:
        if requested is None or db.session.get(Institution, requested) is None:
            raise BusinessRuleViolation(
                "请选择团队所属的社康中心",
                code="centre_required",
                errors={"institution_id": ["请选择团队所属的社康中心"]},
            )
        return requested
    assert actor.institution_id is not None
    if requested is not None and requested != actor.institution_id:
        raise PermissionDenied("只能管理本中心的团队", code="outside_scope")
    return actor.institution_id


def _check_name(institution_id: uuid.UUID, name: str, exclude: uuid.UUID | None = None) -> None:
    statement = select(Team.id).where(
        Team.institution_id == institution_id, Team.name == name, Team.status == TeamStatus.ACTIVE
    )
    if exclude is not None:
        statement = statement.where(Team.id != exclude)
    if db.session.execute(statement).first() is not None:
        raise Conflict(
            f"本中心已有名为“{name}”的团队", code="team_name_taken", errors={"name": ["名称已被使用"]}
        )


def create_team(
    actor: Principal,
    *,
    name: str,
    description: str | None = None,
    capacity_override: int | None = None,
    institution_id: uuid.UUID | None = None,
) -> Team:
    centre = _team_centre(actor, institution_id)
    name = name.strip()
    _check_name(centre, name)
    team = Team(
        id=uuid.uuid4(),
        institution_id=centre,
        name=name,
        description=description,
        capacity_override=capacity_override,
        status=TeamStatus.ACTIVE.value,
        signed_count=0,
    )
    db.session.add(team)
    flush_or_conflict(f"本中心已有名为“{name}”的团队", "team_name_taken")
    record_history(team, actor, "team_created", after={"name": name, "capacity_override": capacity_override})
    return team


def get_team(team_id: uuid.UUID) -> Team:
    return get_or_404(Team, team_id, object_type="team")


def list_teams(
    *,
    page: int,
    size: int,
    institution_id: uuid.UUID | None = None,
    status: str | None = None,
    q: str | None = None,
) -> Page[Team]:
    statement: Select[Any] = select(Team).order_by(Team.institution_id, Team.name, Team.id)
    if institution_id:
        statement = statement.where(Team.institution_id == institution_id)
    statement = statement.where(Team.status == (status or TeamStatus.ACTIVE))
    if q:
        statement = statement.where(Team.name.contains(q.strip(), autoescape=True))
    return paginate(statement, page, size)


def update_team(actor: Principal, team_id: uuid.UUID, changes: Mapping[str, Any]) -> Team:
    team = get_or_404(Team, team_id, object_type="team", action="update")
    check_active(team)
    before = {"name": team.name, "description": team.description}
    if "name" in changes and changes["name"].strip() != team.name:
        _check_name(team.institution_id, changes["name"].strip(), exclude=team.id)
        team.name = changes["name"].strip()
    if "description" in changes:
        team.description = changes["description"]
    flush_or_conflict("本中心已有同名团队", "team_name_taken")
    record_history(
        team, actor, "team_updated", before=before, after={"name": team.name, "description": team.description}
    )
    return team


def set_team_capacity(actor: Principal, team_id: uuid.UUID, *, capacity_override: int | None) -> Team:
    team = get_or_404(Team, team_id, object_type="team", action="update")
    check_active(team)
    before = team.capacity_override
    team.capacity_override = capacity_override
    record_history(
        team,
        actor,
        "capacity_changed",
        before={"capacity_override": before},
        after={"capacity_override": capacity_override},
    )
    return team


def dissolve_team(actor: Principal, team_id: uuid.UUID, *, reason: str) -> Team:
    """Refused (409) while the team still has signed residents; current memberships end."""
    team = get_or_404(Team, team_id, object_type="team", action="update")
    source = team.status
    target = next_team_status(source, TeamAction.DISSOLVE)
    now = clock.now()
    result = db.session.execute(
        update(Team)
        .where(Team.id == team.id, Team.status == source, Team.signed_count == 0)
        .values(status=target.value, dissolved_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if rowcount(result) != 1:
        signed = db.session.execute(select(Team.signed_count).where(Team.id == team.id)).scalar_one()
        if signed > 0:
            raise Conflict(
                f"该团队仍有 {signed} 位签约居民，须先转签后才能解散",
                code="team_has_residents",
                errors={"signed_count": [str(signed)]},
            )
        raise Conflict("该团队刚被他人修改，请刷新后重试", code="concurrent_transition")
    for key, value in {"status": target.value, "dissolved_at": now, "updated_at": now}.items():
        set_committed_value(team, key, value)
    leaving = list(team.members)
    db.session.execute(
        update(TeamMember)
        .where(TeamMember.team_id == team.id, TeamMember.left_at.is_(None))
        .values(left_at=now)
        .execution_options(synchronize_session=False)
    )
    for member in leaving:
        set_committed_value(member, "left_at", now)
        record_history(
            team,
            actor,
            "member_removed",
            member=member,
            before={"role": member.role, "is_leader": member.is_leader},
            reason=f"团队解散：{reason}",
        )
    db.session.expire(team, ["members"])
    record_history(
        team,
        actor,
        "team_dissolved",
        before={"status": source},
        after={"status": target.value},
        reason=reason,
    )
    return team


def team_history(team_id: uuid.UUID) -> list[TeamHistory]:
    team = get_team(team_id)
    return list(
        db.session.execute(
            select(TeamHistory).where(TeamHistory.team_id == team.id).order_by(TeamHistory.id)
        ).scalars()
    )
