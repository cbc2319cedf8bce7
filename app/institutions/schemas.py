"""Shapes of centres, streets and communities."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from app.core.pagination import PageArgsSchema
from app.institutions.services import LATITUDE_RANGE, LONGITUDE_RANGE


class CommunitySchema(Schema):
    id = fields.UUID(dump_only=True)
    code = fields.String(dump_only=True, metadata={"description": "3-digit 居委会 code within the street"})
    name = fields.String(dump_only=True)


class StreetSchema(Schema):
    id = fields.UUID(dump_only=True)
    code = fields.String(dump_only=True, metadata={"description": "3-digit street code after 440303"})
    name = fields.String(dump_only=True)
    communities = fields.List(fields.Nested(CommunitySchema), dump_only=True)


class StreetRefSchema(Schema):
    id = fields.UUID(dump_only=True)
    code = fields.String(dump_only=True)
    name = fields.String(dump_only=True)


class InstitutionSchema(Schema):
    id = fields.UUID(dump_only=True)
    his_code = fields.String(dump_only=True)
    name = fields.String(dump_only=True)
    street = fields.Nested(StreetRefSchema, dump_only=True)
    community = fields.Nested(CommunitySchema, dump_only=True)
    address = fields.String(dump_only=True)
    longitude = fields.Float(dump_only=True, allow_none=True)
    latitude = fields.Float(dump_only=True, allow_none=True)
    phone = fields.String(dump_only=True, allow_none=True)
    opening_hours = fields.String(dump_only=True, allow_none=True)
    is_demo = fields.Boolean(dump_only=True)


class InstitutionQuerySchema(PageArgsSchema):
    street_id = fields.UUID()
    q = fields.String(validate=validate.Length(min=1, max=50))


class InstitutionUpdateSchema(Schema):
    address = fields.String(validate=validate.Length(min=2, max=200))
    longitude = fields.Float(allow_none=True, validate=validate.Range(*LONGITUDE_RANGE))
    latitude = fields.Float(allow_none=True, validate=validate.Range(*LATITUDE_RANGE))
    phone = fields.String(
        allow_none=True, validate=validate.Regexp(r"^[0-9+\-() ]{5,32}$", error="电话格式不正确")
    )
    opening_hours = fields.String(allow_none=True, validate=validate.Length(max=500))
