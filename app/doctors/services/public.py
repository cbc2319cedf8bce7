"""The public doctor library (资源库) for residents: approved doctors, their teams and centres.

Results are built here as plain JSON-able dicts holding the *public* profile only — never the
phone, ID number, licence number, 医保医师编码 or birth date — so what is cached in Redis and what
any caller sees cannot contain them. Centres are public directory data, so these reads ignore
the staff centre scope. Distances are great-circle (haversine) from the given point to the
centre's coordinates; both must use the same datum (the mini-program's `wx.getLocation` type
`gcj02` and the centre table's map coordinates).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Select, case, func, select

from app.core.db import db
from app.core.errors import NotFound
from app.doctors.models import (
    PRACTICE_STATUS_LABELS,
    SEX_LABELS,
    Doctor,
    PracticeStatus,
    ReviewStatus,
)
from app.doctors.services import library_cache
from app.doctors.services.common import UNSCOPED, default_capacity, name_filter
from app.institutions.models import Institution
from app.teams.models import LEADER_LABEL, TEAM_ROLE_LABELS, Team, TeamMember, TeamStatus

EARTH_RADIUS_KM = 6371.0088
_FAR = 1.0e9


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    d_phi, d_lambda = math.radians(lat2 - lat1), math.radians(lon2 - lon1)
    a = math.sin(d_phi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(d_lambda / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def centre_distances(latitude: float, longitude: float) -> dict[uuid.UUID, float]:
    rows = db.session.execute(
        select(Institution.id, Institution.latitude, Institution.longitude).where(
            Institution.is_active.is_(True),
            Institution.latitude.is_not(None),
            Institution.longitude.is_not(None),
        )
    ).all()
    return {row.id: haversine_km(latitude, longitude, row.latitude, row.longitude) for row in rows}


def distance_order(column: Any, distances: dict[uuid.UUID, float]) -> Any:
    """A SQL expression ordering rows by their centre's distance (centres without coordinates last)."""
    if not distances:
        return None
    return case(*[(column == centre_id, km) for centre_id, km in distances.items()], else_=_FAR)


def centre_public(centre: Institution) -> dict[str, Any]:
    return {
        "id": str(centre.id),
        "name": centre.name,
        "address": centre.address,
        "phone": centre.phone,
        "opening_hours": centre.opening_hours,
        "street": centre.street.name if centre.street else None,
        "latitude": centre.latitude,
        "longitude": centre.longitude,
    }


def photo_url(doctor: Doctor) -> str | None:
    if doctor.photo_sha256 is None:
        return None
    return f"/mp/v1/doctors/{doctor.id}/photo?v={doctor.photo_sha256[:12]}"


def doctor_brief(doctor: Doctor) -> dict[str, Any]:
    """The smallest public card of a doctor (used inside team cards)."""
    return {
        "id": str(doctor.id),
        "name": doctor.name,
        "sex": doctor.sex,
        "sex_label": SEX_LABELS.get(doctor.sex, ""),
        "title": doctor.title,
        "photo_url": photo_url(doctor),
        "practice_status": doctor.practice_status,
        "practice_status_label": PRACTICE_STATUS_LABELS[doctor.practice_status],
    }


def doctor_public(
    doctor: Doctor, *, teams: list[dict[str, Any]], distance_km: float | None, capacity_default: int
) -> dict[str, Any]:
    remaining = doctor.remaining(capacity_default)
    return {
        **doctor_brief(doctor),
        "practice_scopes": list(doctor.practice_scopes or []),
        "specialties": list(doctor.specialties or []),
        "introduction": doctor.introduction,
        "centre": centre_public(doctor.institution),
        "teams": teams,
        "distance_km": None if distance_km is None else round(distance_km, 2),
        "capacity": doctor.capacity(capacity_default),
        "remaining": remaining,
        "accepting": remaining > 0 and doctor.practice_status == PracticeStatus.ACTIVE,
    }


def teams_of(doctor_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, list[dict[str, Any]]]:
    ids = list(doctor_ids)
    found: dict[uuid.UUID, list[dict[str, Any]]] = {i: [] for i in ids}
    if not ids:
        return found
    rows = db.session.execute(
        select(TeamMember.doctor_id, TeamMember.role, TeamMember.is_leader, Team.id, Team.name)
        .join(Team, Team.id == TeamMember.team_id)
        .where(TeamMember.doctor_id.in_(ids), TeamMember.left_at.is_(None), Team.status == TeamStatus.ACTIVE)
        .order_by(Team.name)
        .execution_options(**UNSCOPED)
    ).all()
    for row in rows:
        found[row.doctor_id].append(
            {
                "id": str(row.id),
                "name": row.name,
                "role": row.role,
                "role_label": TEAM_ROLE_LABELS[row.role],
                "is_leader": row.is_leader,
                "position_label": LEADER_LABEL if row.is_leader else "成员",
            }
        )
    return found


def unscoped_page(statement: Select[Any], page: int, size: int) -> tuple[list[Any], int]:
    total = db.session.execute(
        select(func.count()).select_from(statement.order_by(None).subquery()).execution_options(**UNSCOPED)
    ).scalar_one()
    items = list(
        db.session.execute(statement.limit(size).offset((page - 1) * size).execution_options(**UNSCOPED))
        .unique()
        .scalars()
    )
    return items, int(total)


def page_body(items: list[dict[str, Any]], page: int, size: int, total: int) -> dict[str, Any]:
    return {
        "items": items,
        "page": page,
        "size": size,
        "total": total,
        "pages": (total + size - 1) // size if total else 0,
    }


def normalised_point(latitude: float | None, longitude: float | None) -> tuple[float | None, float | None]:
    """Rounded to 3 decimals (about 100 m): the cache key and the distances use the same point."""
    if latitude is None or longitude is None:
        return None, None
    return round(latitude, 3), round(longitude, 3)


def search_public(
    *,
    institution_id: uuid.UUID | None = None,
    street_id: uuid.UUID | None = None,
    latitude: float | None = None,
    longitude: float | None = None,
    q: str | None = None,
    specialty: str | None = None,
    sex: str | None = None,
    accepting: bool | None = None,
    page: int = 1,
    size: int = 20,
) -> dict[str, Any]:
    """Approved, 在岗 doctors matching every given filter, nearest centre first when a point is given."""
    lat, lng = normalised_point(latitude, longitude)
    term = (q or "").strip()
    params: dict[str, Any] = {
        "institution_id": str(institution_id) if institution_id else None,
        "street_id": str(street_id) if street_id else None,
        "latitude": lat,
        "longitude": lng,
        "q": term.lower() if term.isascii() else term,
        "specialty": (specialty or "").strip(),
        "sex": sex,
        "accepting": accepting,
        "page": page,
        "size": size,
    }
    return library_cache.cached("doctors", params, lambda: _search(params))


def _search(params: dict[str, Any]) -> dict[str, Any]:
    capacity_default = default_capacity()
    statement: Select[Any] = (
        select(Doctor)
        .join(Institution, Institution.id == Doctor.institution_id)
        .where(
            Doctor.status == ReviewStatus.APPROVED,
            Doctor.practice_status == PracticeStatus.ACTIVE,
            Institution.is_active.is_(True),
        )
    )
    if params["institution_id"]:
        statement = statement.where(Doctor.institution_id == uuid.UUID(params["institution_id"]))
    if params["street_id"]:
        statement = statement.where(Institution.street_id == uuid.UUID(params["street_id"]))
    if params["q"]:
        statement = statement.where(name_filter(params["q"]))
    if params["specialty"]:
        statement = statement.where(Doctor.specialties_text.contains(params["specialty"], autoescape=True))
    if params["sex"]:
        statement = statement.where(Doctor.sex == params["sex"])
    cap = func.coalesce(Doctor.capacity_override, capacity_default)
    if params["accepting"] is True:
        statement = statement.where(Doctor.signed_count < cap)
    elif params["accepting"] is False:
        statement = statement.where(Doctor.signed_count >= cap)
    distances: dict[uuid.UUID, float] = {}
    if params["latitude"] is not None:
        distances = centre_distances(params["latitude"], params["longitude"])
        by_distance = distance_order(Doctor.institution_id, distances)
        if by_distance is not None:
            statement = statement.order_by(by_distance)
    statement = statement.order_by(Institution.his_code, Doctor.name_pinyin, Doctor.id)
    doctors, total = unscoped_page(statement, params["page"], params["size"])
    teams = teams_of(d.id for d in doctors)
    items = [
        doctor_public(
            d,
            teams=teams[d.id],
            capacity_default=capacity_default,
            distance_km=distances.get(d.institution_id) if params["latitude"] is not None else None,
        )
        for d in doctors
    ]
    return page_body(items, params["page"], params["size"], total)


def public_doctor(doctor_id: uuid.UUID) -> dict[str, Any]:
    """One doctor's public profile: approved and not left (a 停诊 doctor shows as such), else 404."""
    return library_cache.cached("doctor", {"id": str(doctor_id)}, lambda: _public_doctor(doctor_id))


def _public_doctor(doctor_id: uuid.UUID) -> dict[str, Any]:
    doctor = db.session.execute(
        select(Doctor)
        .where(
            Doctor.id == doctor_id,
            Doctor.status == ReviewStatus.APPROVED,
            Doctor.practice_status != PracticeStatus.LEFT,
        )
        .execution_options(**UNSCOPED)
    ).scalar_one_or_none()
    if doctor is None:
        raise NotFound("未找到该医生")
    return doctor_public(
        doctor, teams=teams_of([doctor.id])[doctor.id], distance_km=None, capacity_default=default_capacity()
    )
