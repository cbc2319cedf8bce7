"""Centres, streets and communities (`/api/v1/institutions`, `/api/v1/streets`)."""

from __future__ import annotations

import uuid
from typing import Any

from app.core.api import Blueprint
from app.core.auth import ADMINS, ALL_STAFF, require_principal
from app.core.db import commit
from app.core.pagination import Page, page_schema
from app.institutions import services
from app.institutions.schemas import (
    InstitutionQuerySchema,
    InstitutionSchema,
    InstitutionUpdateSchema,
    StreetSchema,
)

blp = Blueprint(
    "institutions", __name__, url_prefix="/api/v1", description="Centres, streets and communities"
)


@blp.route("/institutions", methods=["GET"])
@blp.auth(roles=ALL_STAFF)
@blp.arguments(InstitutionQuerySchema, location="query")
@blp.response(200, page_schema(InstitutionSchema))
def list_institutions(args: dict[str, Any]) -> Page[Any]:
    """The district's community health centres (public directory data)."""
    return services.list_institutions(**args)


@blp.route("/institutions/<uuid:institution_id>", methods=["GET"])
@blp.auth(roles=ALL_STAFF)
@blp.response(200, InstitutionSchema)
def get_institution(institution_id: uuid.UUID) -> Any:
    """One centre."""
    return services.get_institution(institution_id)


@blp.route("/institutions/<uuid:institution_id>", methods=["PATCH"])
@blp.auth(roles=ADMINS)
@blp.arguments(InstitutionUpdateSchema)
@blp.response(200, InstitutionSchema)
def update_institution(args: dict[str, Any], institution_id: uuid.UUID) -> Any:
    """Update a centre's address, coordinates, phone or opening hours (centre admins: own centre)."""
    centre = services.update_institution(require_principal(), institution_id, args)
    commit()
    return centre


@blp.route("/streets", methods=["GET"])
@blp.auth(roles=ALL_STAFF)
@blp.response(200, StreetSchema(many=True))
def list_streets() -> Any:
    """Luohu's ten streets with their communities."""
    return services.list_streets()
