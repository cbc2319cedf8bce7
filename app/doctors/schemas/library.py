"""The public doctor library: query and public profile (never phone, ID, licence or 医保 code)."""

from __future__ import annotations

from typing import Any

from marshmallow import (
    Schema,
    ValidationError,
    fields,
    validate,
    validates_schema,
)

from app.core.pagination import PageArgsSchema
from app.doctors.schemas.common import (
    SEXES,
    TextInputSchema,
    doc,
)

# --- the public library --------------------------------------------------------------------------


class LibraryDoctorQuerySchema(TextInputSchema, PageArgsSchema):
    institution_id = fields.UUID(metadata=doc("Only this centre"))
    street_id = fields.UUID(metadata=doc("Only centres of this street"))
    latitude = fields.Float(
        validate=validate.Range(min=-90, max=90), metadata=doc("With longitude: nearest first")
    )
    longitude = fields.Float(validate=validate.Range(min=-180, max=180))
    q = fields.String(
        validate=validate.Length(min=1, max=20), metadata=doc("Name, or pinyin (initials), e.g. zs")
    )
    specialty = fields.String(validate=validate.Length(min=1, max=20), metadata=doc("擅长 fragment"))
    sex = fields.String(validate=validate.OneOf(SEXES))
    accepting = fields.Boolean(metadata=doc("true: only doctors with remaining places"))

    @validates_schema
    def _point(self, data: dict[str, Any], **_: Any) -> None:
        if ("latitude" in data) != ("longitude" in data):
            raise ValidationError("经度和纬度须同时提供", "latitude")


class LibraryCentreSchema(Schema):
    id = fields.UUID(required=True)
    name = fields.String(required=True)
    address = fields.String(required=True)
    phone = fields.String(allow_none=True)
    opening_hours = fields.String(allow_none=True)
    street = fields.String(allow_none=True)
    latitude = fields.Float(allow_none=True)
    longitude = fields.Float(allow_none=True)


class LibraryTeamRefSchema(Schema):
    id = fields.UUID(required=True)
    name = fields.String(required=True)
    role = fields.String(required=True)
    role_label = fields.String(required=True)
    is_leader = fields.Boolean(required=True)
    position_label = fields.String(required=True)


class LibraryDoctorBriefSchema(Schema):
    id = fields.UUID(required=True)
    name = fields.String(required=True)
    sex = fields.String(required=True)
    sex_label = fields.String(required=True)
    title = fields.String(required=True)
    photo_url = fields.String(allow_none=True)
    practice_status = fields.String(required=True)
    practice_status_label = fields.String(required=True)


class LibraryDoctorSchema(LibraryDoctorBriefSchema):
    """The public profile: never phone, ID number, licence number, 医保医师编码 or birth date."""

    practice_scopes = fields.List(fields.String(), required=True)
    specialties = fields.List(fields.String(), required=True)
    introduction = fields.String(allow_none=True)
    centre = fields.Nested(LibraryCentreSchema, required=True)
    teams = fields.List(fields.Nested(LibraryTeamRefSchema), required=True)
    distance_km = fields.Float(allow_none=True, metadata=doc("From the given point to the centre"))
    capacity = fields.Integer(required=True)
    remaining = fields.Integer(required=True, metadata=doc("Remaining places (剩余签约名额)"))
    accepting = fields.Boolean(required=True)
