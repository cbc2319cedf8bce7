"""Request and response shapes of households (家庭/户)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from app.core import clock
from app.core.fields import Masked
from app.core.pagination import PageArgsSchema
from app.residents.models import (
    HOUSEHOLD_RELATIONSHIPS,
)
from app.residents.schemas.common import (
    MEMBER_RELATIONSHIPS,
    choices,
)

# --- households -------------------------------------------------------------------------------


class HouseholdMemberInputSchema(Schema):
    resident_id = fields.UUID(required=True)
    relationship = fields.String(
        required=True,
        validate=validate.OneOf(MEMBER_RELATIONSHIPS),
        metadata={
            "description": "与户主关系: "
            + choices({c: HOUSEHOLD_RELATIONSHIPS[c] for c in MEMBER_RELATIONSHIPS})
        },
    )


class HouseholdCreateSchema(Schema):
    head_id = fields.UUID(required=True, metadata={"description": "户主"})
    members = fields.List(
        fields.Nested(HouseholdMemberInputSchema), load_default=list, validate=validate.Length(max=30)
    )


class HeadChangeSchema(Schema):
    head_id = fields.UUID(required=True, metadata={"description": "The new head, already a member"})
    relationships = fields.List(
        fields.Nested(HouseholdMemberInputSchema),
        required=True,
        validate=validate.Length(max=30),
        metadata={"description": "Every other member's relationship to the new head"},
    )


class HouseholdRelationshipSchema(Schema):
    relationship = fields.String(required=True, validate=validate.OneOf(MEMBER_RELATIONSHIPS))


class HouseholdQuerySchema(PageArgsSchema):
    resident_id = fields.UUID(metadata={"description": "The household this resident belongs to"})
    community_id = fields.UUID(metadata={"description": "Households whose head lives in this community"})


class HouseholdMemberSchema(Schema):
    resident_id = fields.UUID(dump_only=True)
    name = Masked("name", attribute="resident.name")
    sex = fields.String(dump_only=True, attribute="resident.sex")
    age = fields.Function(lambda m: m.resident.age_on(clock.today_local()), metadata={"type": "integer"})
    status = fields.String(dump_only=True, attribute="resident.status")
    relationship = fields.String(dump_only=True)
    relationship_label = fields.Function(
        lambda m: HOUSEHOLD_RELATIONSHIPS[m.relationship], metadata={"type": "string"}
    )
    joined_at = fields.DateTime(dump_only=True)


class HouseholdSchema(Schema):
    id = fields.UUID(dump_only=True)
    institution_id = fields.UUID(dump_only=True)
    head_id = fields.Function(
        lambda h: h.head.resident_id if h.head else None,
        metadata={"type": "string", "format": "uuid", "nullable": True},
    )
    members = fields.List(fields.Nested(HouseholdMemberSchema), dump_only=True)
    created_at = fields.DateTime(dump_only=True)
    updated_at = fields.DateTime(dump_only=True)
