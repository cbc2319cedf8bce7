"""Teams in the public doctor library: public cards only, cached with the doctors' library.

There are a few hundred teams in the district, so a search loads the active teams that match
the centre/street filters and sorts, filters ("accepting") and pages them in Python.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Select, select

from app.core.db import db
from app.core.errors import NotFound
from app.doctors.models import PracticeStatus, ReviewStatus
from app.doctors.services import library_cache
from app.doctors.services.common import UNSCOPED, default_capacity
from app.doctors.services.public import (
    centre_distances,
    centre_public,
    doctor_brief,
    normalised_point,
    page_body,
)
from app.institutions.models import Institution
from app.teams.models import LEADER_LABEL, TEAM_ROLE_LABELS, Team, TeamStatus
from app.teams.services.capacity import team_can_sign


def team_public(team: Team, *, capacity_default: int, distance_km: float | None = None) -> dict[str, Any]:
    readiness = team_can_sign(team)
    remaining = team.remaining(capacity_default)
    members = [
        {
            **doctor_brief(m.doctor),
            "role": m.role,
            "role_label": TEAM_ROLE_LABELS[m.role],
            "is_leader": m.is_leader,
            "position_label": LEADER_LABEL if m.is_leader else "成员",
        }
        for m in team.members
        if m.doctor.status == ReviewStatus.APPROVED and m.doctor.practice_status != PracticeStatus.LEFT
    ]
    return {
        "id": str(team.id),
        "name": team.name,
        "description": team.description,
        "centre": centre_public(team.institution),
        "members": members,
        "can_sign": readiness.can_sign,
        "capacity": team.capacity(capacity_default),
        "remaining": remaining,
        "accepting": readiness.can_sign and remaining > 0,
        "distance_km": None if distance_km is None else round(distance_km, 2),
    }


def public_team(team_id: uuid.UUID) -> dict[str, Any]:
    return library_cache.cached("team", {"id": str(team_id)}, lambda: _public_team(team_id))


def _public_team(team_id: uuid.UUID) -> dict[str, Any]:
    team = db.session.execute(
        select(Team).where(Team.id == team_id, Team.status == TeamStatus.ACTIVE).execution_options(**UNSCOPED)
    ).scalar_one_or_none()
    if team is None:
        raise NotFound("未找到该团队")
    return team_public(team, capacity_default=default_capacity())


def search_public_teams(
    *,
    institution_id: uuid.UUID | None = None,
    street_id: uuid.UUID | None = None,
    latitude: float | None = None,
    longitude: float | None = None,
    accepting: bool | None = None,
    page: int = 1,
    size: int = 20,
) -> dict[str, Any]:
    lat, lng = normalised_point(latitude, longitude)
    params: dict[str, Any] = {
        "institution_id": str(institution_id) if institution_id else None,
        "street_id": str(street_id) if street_id else None,
        "latitude": lat,
        "longitude": lng,
        "accepting": accepting,
        "page": page,
        "size": size,
    }
    return library_cache.cached("teams", params, lambda: _search_teams(params))


def _search_teams(params: dict[str, Any]) -> dict[str, Any]:
    statement: Select[Any] = (
        select(Team)
        .join(Institution, Institution.id == Team.institution_id)
        .where(Team.status == TeamStatus.ACTIVE, Institution.is_active.is_(True))
        .order_by(Institution.his_code, Team.name, Team.id)
    )
    if params["institution_id"]:
        statement = statement.where(Team.institution_id == uuid.UUID(params["institution_id"]))
    if params["street_id"]:
        statement = statement.where(Institution.street_id == uuid.UUID(params["street_id"]))
    teams = list(db.session.execute(statement.execution_options(**UNSCOPED)).unique().scalars())
    distances = (
        centre_distances(params["latitude"], params["longitude"]) if params["latitude"] is not None else {}
    )
    capacity_default = default_capacity()
    cards = [
        team_public(
            t,
            capacity_default=capacity_default,
            distance_km=distances.get(t.institution_id) if params["latitude"] is not None else None,
        )
        for t in teams
    ]
    if params["accepting"] is not None:
        cards = [c for c in cards if c["accepting"] is params["accepting"]]
    if params["latitude"] is not None:
        cards.sort(key=lambda c: c["distance_km"] if c["distance_km"] is not None else float("inf"))
    start = (params["page"] - 1) * params["size"]
    return page_body(cards[start : start + params["size"]], params["page"], params["size"], len(cards))
