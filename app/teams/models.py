"""Family-doctor teams (家庭医生团队) of a centre, their members and the history of both.

A member has a work type (`role`: 全科医生, 社区护士, …) and may be the team's leader (团队长):
leadership is a position held by one member, not a work type, so a GP who leads the team is
still counted as the team's GP (YLZ keeps the two apart the same way: work type + team role).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, String, Text, and_, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core import clock
from app.core.db import Base, Timestamps, UUIDPrimaryKey
from app.core.errors import InvalidTransition
from app.core.scope import CentreScoped
from app.doctors.models import Doctor, PracticeStatus, ReviewStatus
from app.institutions.models import Institution


class TeamRole(StrEnum):
    GP = "gp"
    NURSE = "nurse"
    PUBLIC_HEALTH = "public_health"
    SPECIALIST = "specialist"
    HEALTH_MANAGER = "health_manager"
    PHARMACIST = "pharmacist"


TEAM_ROLE_LABELS: dict[str, str] = {
    TeamRole.GP: "全科医生",
    TeamRole.NURSE: "社区护士",
    TeamRole.PUBLIC_HEALTH: "公卫医师",
    TeamRole.SPECIALIST: "专科医生",
    TeamRole.HEALTH_MANAGER: "健康管理师",
    TeamRole.PHARMACIST: "药师",
}
LEADER_LABEL = "团队长"

# A team can sign residents only with at least one of each (国医改办发〔2016〕1号 team composition).
REQUIRED_ROLES: tuple[TeamRole, ...] = (TeamRole.GP, TeamRole.NURSE)
# The work types a resident signs with (the contract's doctor); their caps make the team's cap.
SIGNING_ROLES: frozenset[str] = frozenset({TeamRole.GP})
# Which 职称 series a work type requires (None: any).
ROLE_TITLE_SERIES: dict[str, frozenset[str] | None] = {
    TeamRole.GP: frozenset({"physician"}),
    TeamRole.NURSE: frozenset({"nursing"}),
    TeamRole.PUBLIC_HEALTH: frozenset({"physician"}),
    TeamRole.SPECIALIST: frozenset({"physician"}),
    TeamRole.PHARMACIST: frozenset({"pharmacy"}),
    TeamRole.HEALTH_MANAGER: None,
}


class TeamStatus(StrEnum):
    ACTIVE = "active"
    DISSOLVED = "dissolved"


TEAM_STATUS_LABELS: dict[str, str] = {TeamStatus.ACTIVE: "在用", TeamStatus.DISSOLVED: "已解散"}


class TeamAction(StrEnum):
    DISSOLVE = "dissolve"


TEAM_TRANSITIONS: Mapping[tuple[TeamStatus, TeamAction], TeamStatus] = {
    (TeamStatus.ACTIVE, TeamAction.DISSOLVE): TeamStatus.DISSOLVED,
}


def next_team_status(current: str, action: TeamAction) -> TeamStatus:
    target = TEAM_TRANSITIONS.get((TeamStatus(current), action))
    if target is None:
        raise InvalidTransition(
            f"团队当前状态为“{TEAM_STATUS_LABELS[current]}”，不能执行此操作", errors={"status": [current]}
        )
    return target


class Team(UUIDPrimaryKey, Timestamps, CentreScoped, Base):
    __tablename__ = "teams"
    __table_args__ = (
        CheckConstraint("signed_count >= 0", name="signed_count_nonnegative"),
        Index(
            "uq_teams_active_name",
            "institution_id",
            "name",
            unique=True,
            sqlite_where=text("status = 'active'"),
            postgresql_where=text("status = 'active'"),
        ),
    )

    name: Mapped[str] = mapped_column(String(50))
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=TeamStatus.ACTIVE)
    dissolved_at: Mapped[datetime | None]
    # None: the sum of the caps of the team's current signing members (see SIGNING_ROLES).
    capacity_override: Mapped[int | None]
    # Residents currently signed with the team; changed only by `app.teams.services.capacity`.
    signed_count: Mapped[int] = mapped_column(default=0, server_default="0")

    institution: Mapped[Institution] = relationship(lazy="joined")
    members: Mapped[list[TeamMember]] = relationship(
        primaryjoin=lambda: and_(TeamMember.team_id == Team.id, TeamMember.left_at.is_(None)),
        viewonly=True,
        lazy="selectin",
        order_by=lambda: (TeamMember.joined_at, TeamMember.id),
    )

    def serving_members(self) -> list[TeamMember]:
        """Current members who may serve residents: approved and 在岗."""
        return [
            m
            for m in self.members
            if m.doctor.status == ReviewStatus.APPROVED and m.doctor.practice_status == PracticeStatus.ACTIVE
        ]

    def missing_roles(self) -> list[str]:
        """The required work types (`REQUIRED_ROLES`) no serving member holds."""
        present = {m.role for m in self.serving_members()}
        return [role.value for role in REQUIRED_ROLES if role not in present]

    def capacity(self, doctor_default: int) -> int:
        """The override, else the sum of the caps of the serving signing members (全科医生)."""
        if self.capacity_override is not None:
            return self.capacity_override
        return sum(
            m.doctor.capacity(doctor_default) for m in self.serving_members() if m.role in SIGNING_ROLES
        )

    def remaining(self, doctor_default: int) -> int:
        return max(self.capacity(doctor_default) - self.signed_count, 0)

    def leader(self) -> TeamMember | None:
        return next((m for m in self.members if m.is_leader), None)


class TeamMember(UUIDPrimaryKey, CentreScoped, Base):
    """A period of membership: `left_at` is set when the member leaves (rows are never deleted)."""

    __tablename__ = "team_members"
    __table_args__ = (
        Index(
            "uq_team_members_current",
            "team_id",
            "doctor_id",
            unique=True,
            sqlite_where=text("left_at IS NULL"),
            postgresql_where=text("left_at IS NULL"),
        ),
        Index(
            "uq_team_members_leader",
            "team_id",
            unique=True,
            sqlite_where=text("is_leader AND left_at IS NULL"),
            postgresql_where=text("is_leader AND left_at IS NULL"),
        ),
        Index("ix_team_members_doctor", "doctor_id", "left_at"),
    )

    team_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("teams.id"))
    doctor_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("doctors.id"))
    role: Mapped[str] = mapped_column(String(20))
    is_leader: Mapped[bool] = mapped_column(default=False)
    joined_at: Mapped[datetime] = mapped_column(default=clock.now)
    left_at: Mapped[datetime | None]

    doctor: Mapped[Doctor] = relationship(lazy="joined")

    @property
    def role_label(self) -> str:
        return TEAM_ROLE_LABELS[self.role]


class TeamHistory(Base):
    """Every change of a team and of its membership: who, what, before/after, why, when."""

    __tablename__ = "team_history"

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("teams.id"), index=True)
    member_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("team_members.id"))
    doctor_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("doctors.id"))
    action: Mapped[str] = mapped_column(String(32))
    before: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    after: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    reason: Mapped[str | None] = mapped_column(Text)
    actor_kind: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[uuid.UUID | None]
    actor_role: Mapped[str | None] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
