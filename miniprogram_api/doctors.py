"""The public doctor library for residents in the mini-program (`/mp/v1/doctors`, `/mp/v1/teams`).

Public reads: anonymous browsing is allowed (a resident chooses a doctor before logging in).
Only public profiles are returned (never phone, ID, licence number or 医保医师编码); the results
are cached in Redis and invalidated whenever a profile, team or capacity changes. No rules live
here: everything is in `app.doctors.services` and `app.teams.services`.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response

from app.core.api import Blueprint
from app.core.pagination import page_schema
from app.doctors import services as doctor_services
from app.doctors.routes import PHOTO_RESPONSE, photo_response
from app.doctors.schemas import LibraryDoctorQuerySchema, LibraryDoctorSchema
from app.teams import services as team_services
from app.teams.schemas import LibraryTeamQuerySchema, LibraryTeamSchema

blp = Blueprint(
    "mp_doctors",
    __name__,
    url_prefix="/mp/v1",
    description="Mini-program: the public family-doctor library (家庭医生资源库)",
)

PHOTO_MAX_AGE = 7 * 24 * 3600  # photo URLs carry the content hash (?v=...), so they never go stale


@blp.route("/doctors", methods=["GET"])
@blp.auth(public=True)
@blp.arguments(LibraryDoctorQuerySchema, location="query")
@blp.response(200, page_schema(LibraryDoctorSchema))
def search_doctors(args: dict[str, Any]) -> dict[str, Any]:
    """Find approved, 在岗 doctors by centre, street, distance from a point (nearest first), name or
    pinyin initials, 擅长, sex, and whether they accept new residents. Public."""
    return doctor_services.search_public(**args)


@blp.route("/doctors/<uuid:doctor_id>", methods=["GET"])
@blp.auth(public=True)
@blp.response(200, LibraryDoctorSchema)
@blp.alt_response(404, response="DEFAULT_ERROR", description="未找到")
def get_doctor(doctor_id: uuid.UUID) -> dict[str, Any]:
    """A doctor's public profile with teams, centre and remaining places. Public."""
    return doctor_services.public_doctor(doctor_id)


@blp.route("/doctors/<uuid:doctor_id>/photo", methods=["GET"])
@blp.auth(public=True)
@blp.doc(responses=PHOTO_RESPONSE)
@blp.alt_response(404, response="DEFAULT_ERROR", description="没有照片")
def get_doctor_photo(doctor_id: uuid.UUID) -> Response:
    """A doctor's photo (approved doctors only). Public."""
    return photo_response(doctor_services.public_photo(doctor_id), max_age=PHOTO_MAX_AGE)


@blp.route("/teams", methods=["GET"])
@blp.auth(public=True)
@blp.arguments(LibraryTeamQuerySchema, location="query")
@blp.response(200, page_schema(LibraryTeamSchema))
def search_teams(args: dict[str, Any]) -> dict[str, Any]:
    """Find active teams by centre, street or distance; `accepting`: can sign and has places. Public."""
    return team_services.search_public_teams(**args)


@blp.route("/teams/<uuid:team_id>", methods=["GET"])
@blp.auth(public=True)
@blp.response(200, LibraryTeamSchema)
@blp.alt_response(404, response="DEFAULT_ERROR", description="未找到")
def get_team(team_id: uuid.UUID) -> dict[str, Any]:
    """A team's public card: members, centre, whether it can sign, remaining places. Public."""
    return team_services.public_team(team_id)
