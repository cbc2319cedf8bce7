"""Family-doctor teams (`/api/v1/teams`): CRUD within a centre, members, capacity, history.

Roles per route are in each docstring; the object-level rules (own centre, a team leader manages
only their own team's members) are in `app.teams.services.management`. Another centre's team or
member is a 404.
"""

from __future__ import annotations

import uuid
from typing import Any

from app.core.api import Blueprint
from app.core.auth import ADMINS, ALL_STAFF, Role, require_principal
from app.core.db import commit
from app.core.pagination import Page, page_schema
from app.teams import services
from app.teams.schemas import (
    TeamCapacitySchema,
    TeamCreateSchema,
    TeamDissolveSchema,
    TeamHistorySchema,
    TeamMemberAddSchema,
    TeamMemberChangeSchema,
    TeamMemberRemoveSchema,
    TeamMemberSchema,
    TeamQuerySchema,
    TeamSchema,
    TeamUpdateSchema,
)

blp = Blueprint(
    "teams", __name__, url_prefix="/api/v1/teams", description="家庭医生团队：成员、角色、签约容量"
)

MEMBER_MANAGERS = ADMINS | {Role.TEAM_LEADER.value}


@blp.route("", methods=["POST"])
@blp.auth(roles=ADMINS)
@blp.arguments(TeamCreateSchema)
@blp.response(201, TeamSchema)
def create_team(args: dict[str, Any]) -> Any:
    """Create a team in the caller's centre (district admins: `institution_id` required).
    Roles: centre_admin, district_admin."""
    team = services.create_team(require_principal(), **args)
    commit()
    return team


@blp.route("", methods=["GET"])
@blp.auth(roles=ALL_STAFF)
@blp.arguments(TeamQuerySchema, location="query")
@blp.response(200, page_schema(TeamSchema))
def list_teams(args: dict[str, Any]) -> Page[Any]:
    """Teams of the caller's centre (district roles: all), with readiness and capacity. Roles: all staff."""
    return services.list_teams(**args)


@blp.route("/<uuid:team_id>", methods=["GET"])
@blp.auth(roles=ALL_STAFF)
@blp.response(200, TeamSchema)
def get_team(team_id: uuid.UUID) -> Any:
    """One team: members, `can_sign` and the missing roles, capacity, remaining places. Roles: all staff."""
    return services.get_team(team_id)


@blp.route("/<uuid:team_id>", methods=["PATCH"])
@blp.auth(roles=ADMINS)
@blp.arguments(TeamUpdateSchema)
@blp.response(200, TeamSchema)
def update_team(args: dict[str, Any], team_id: uuid.UUID) -> Any:
    """Rename or describe a team. Roles: centre_admin, district_admin."""
    team = services.update_team(require_principal(), team_id, args)
    commit()
    return team


@blp.route("/<uuid:team_id>/dissolve", methods=["POST"])
@blp.auth(roles=ADMINS)
@blp.arguments(TeamDissolveSchema)
@blp.response(200, TeamSchema)
def dissolve_team(args: dict[str, Any], team_id: uuid.UUID) -> Any:
    """Dissolve a team (409 `team_has_residents` while it has signed residents); memberships end.
    Roles: centre_admin, district_admin."""
    team = services.dissolve_team(require_principal(), team_id, reason=args["reason"])
    commit()
    return team


@blp.route("/<uuid:team_id>/capacity", methods=["PUT"])
@blp.auth(roles=ADMINS)
@blp.arguments(TeamCapacitySchema)
@blp.response(200, TeamSchema)
def set_team_capacity(args: dict[str, Any], team_id: uuid.UUID) -> Any:
    """Set the team's cap (null: the sum of its GPs' caps). Roles: centre_admin, district_admin."""
    team = services.set_team_capacity(
        require_principal(), team_id, capacity_override=args["capacity_override"]
    )
    commit()
    return team


@blp.route("/<uuid:team_id>/history", methods=["GET"])
@blp.auth(roles=ALL_STAFF)
@blp.response(200, TeamHistorySchema(many=True))
def team_history(team_id: uuid.UUID) -> Any:
    """Every change of the team and its membership, oldest first. Roles: all staff."""
    return services.team_history(team_id)


@blp.route("/<uuid:team_id>/members", methods=["POST"])
@blp.auth(roles=MEMBER_MANAGERS)
@blp.arguments(TeamMemberAddSchema)
@blp.response(201, TeamMemberSchema)
def add_member(args: dict[str, Any], team_id: uuid.UUID) -> Any:
    """Add an approved registration of the same centre with a work type (and optionally as 团队长).

    Roles: centre_admin, district_admin; team_leader for their own team (not as leader).
    """
    member = services.add_member(require_principal(), team_id, **args)
    commit()
    return member


@blp.route("/<uuid:team_id>/members/<uuid:member_id>", methods=["PATCH"])
@blp.auth(roles=MEMBER_MANAGERS)
@blp.arguments(TeamMemberChangeSchema)
@blp.response(200, TeamMemberSchema)
def change_member(args: dict[str, Any], team_id: uuid.UUID, member_id: uuid.UUID) -> Any:
    """Change a member's work type or leadership (leadership: admins only).
    Roles: centre_admin, district_admin; team_leader for their own team."""
    member = services.change_member(require_principal(), team_id, member_id, args)
    commit()
    return member


@blp.route("/<uuid:team_id>/members/<uuid:member_id>/remove", methods=["POST"])
@blp.auth(roles=MEMBER_MANAGERS)
@blp.arguments(TeamMemberRemoveSchema)
@blp.response(200, TeamMemberSchema)
def remove_member(args: dict[str, Any], team_id: uuid.UUID, member_id: uuid.UUID) -> Any:
    """End a membership (kept in history). Roles: centre_admin, district_admin; team_leader for their
    own team (not the leader)."""
    member = services.remove_member(require_principal(), team_id, member_id, reason=args["reason"])
    commit()
    return member
