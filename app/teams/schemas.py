"""Request and response shapes of teams (unknown fields rejected: `signed_count`, `status` and
`institution_id` of an existing team are server-owned)."""

from __future__ import annotations

from typing import Any

from flask import current_app
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from app.core.pagination import PageArgsSchema
from app.doctors.models import PRACTICE_STATUS_LABELS, REVIEW_STATUS_LABELS
from app.doctors.schemas import (
    DoctorCentreRefSchema,
    LibraryCentreSchema,
    LibraryDoctorBriefSchema,
    LibraryDoctorQuerySchema,
    TextInputSchema,
)
from app.teams.models import TEAM_ROLE_LABELS, TEAM_STATUS_LABELS, Team, TeamRole, TeamStatus

ROLES = [r.value for r in TeamRole]
ROLE_DOC = "; ".join(f"{k}={v}" for k, v in TEAM_ROLE_LABELS.items())
TEAM_STATUSES = [s.value for s in TeamStatus]


def _default_capacity() -> int:
    return int(current_app.config["DOCTOR_CAPACITY_DEFAULT"])


# --- input -------------------------------------------------------------------------------------


class TeamCreateSchema(TextInputSchema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=50))
    description = fields.String(allow_none=True, validate=validate.Length(max=500))
    capacity_override = fields.Integer(
        allow_none=True,
        validate=validate.Range(min=0, max=100_000),
        metadata={"description": "Team cap; null: sum of its GPs' caps"},
    )
    institution_id = fields.UUID(allow_none=True, metadata={"description": "Required for district admins"})


class TeamUpdateSchema(TextInputSchema):
    name = fields.String(validate=validate.Length(min=1, max=50))
    description = fields.String(allow_none=True, validate=validate.Length(max=500))

    @validates_schema
    def _something(self, data: dict[str, Any], **_: Any) -> None:
        if not data:
            raise ValidationError("请至少填写一项要修改的内容")


class TeamCapacitySchema(TextInputSchema):
    capacity_override = fields.Integer(
        required=True,
        allow_none=True,
        validate=validate.Range(min=0, max=100_000),
        metadata={"description": "null: the sum of the caps of the team's GPs"},
    )


class TeamDissolveSchema(TextInputSchema):
    reason = fields.String(required=True, validate=validate.Length(min=2, max=200))


class TeamMemberAddSchema(TextInputSchema):
    doctor_id = fields.UUID(
        required=True, metadata={"description": "An approved registration of the same centre"}
    )
    role = fields.String(required=True, validate=validate.OneOf(ROLES), metadata={"description": ROLE_DOC})
    is_leader = fields.Boolean(
        load_default=False, metadata={"description": "团队长 (centre/district admins only)"}
    )


class TeamMemberChangeSchema(TextInputSchema):
    role = fields.String(validate=validate.OneOf(ROLES), metadata={"description": ROLE_DOC})
    is_leader = fields.Boolean()

    @validates_schema
    def _something(self, data: dict[str, Any], **_: Any) -> None:
        if not data:
            raise ValidationError("请至少填写一项要修改的内容")


class TeamMemberRemoveSchema(TextInputSchema):
    reason = fields.String(required=True, validate=validate.Length(min=2, max=200))


class TeamQuerySchema(TextInputSchema, PageArgsSchema):
    institution_id = fields.UUID()
    status = fields.String(
        validate=validate.OneOf(TEAM_STATUSES), metadata={"description": "Default: active"}
    )
    q = fields.String(validate=validate.Length(min=1, max=50))


# --- output ------------------------------------------------------------------------------------


class TeamMemberDoctorSchema(Schema):
    id = fields.UUID(dump_only=True)
    name = fields.String(dump_only=True)
    title = fields.String(dump_only=True)
    status = fields.String(dump_only=True)
    status_label = fields.Function(lambda d: REVIEW_STATUS_LABELS[d.status], dump_only=True)
    practice_status = fields.String(dump_only=True)
    practice_status_label = fields.Function(
        lambda d: PRACTICE_STATUS_LABELS[d.practice_status], dump_only=True
    )
    signed_count = fields.Integer(dump_only=True)
    capacity = fields.Function(lambda d: d.capacity(_default_capacity()), dump_only=True)
    remaining = fields.Function(lambda d: d.remaining(_default_capacity()), dump_only=True)


class TeamMemberSchema(Schema):
    id = fields.UUID(dump_only=True)
    team_id = fields.UUID(dump_only=True)
    doctor = fields.Nested(TeamMemberDoctorSchema, dump_only=True)
    role = fields.String(dump_only=True, metadata={"enum": ROLES})
    role_label = fields.String(dump_only=True)
    is_leader = fields.Boolean(dump_only=True)
    joined_at = fields.DateTime(dump_only=True)
    left_at = fields.DateTime(dump_only=True, allow_none=True)


def _readiness(team: Team) -> Any:
    from app.teams.services.capacity import team_can_sign

    return team_can_sign(team)


class TeamSchema(Schema):
    id = fields.UUID(dump_only=True)
    name = fields.String(dump_only=True)
    description = fields.String(dump_only=True, allow_none=True)
    institution = fields.Nested(DoctorCentreRefSchema, dump_only=True)
    status = fields.String(dump_only=True, metadata={"enum": TEAM_STATUSES})
    status_label = fields.Function(lambda t: TEAM_STATUS_LABELS[t.status], dump_only=True)
    members = fields.List(fields.Nested(TeamMemberSchema), dump_only=True)
    can_sign = fields.Function(lambda t: _readiness(t).can_sign, dump_only=True)
    missing_roles = fields.Function(lambda t: list(_readiness(t).missing_roles), dump_only=True)
    cannot_sign_reason = fields.Function(lambda t: _readiness(t).reason, dump_only=True, allow_none=True)
    capacity = fields.Function(lambda t: t.capacity(_default_capacity()), dump_only=True)
    capacity_override = fields.Integer(dump_only=True, allow_none=True)
    signed_count = fields.Integer(dump_only=True)
    remaining = fields.Function(lambda t: t.remaining(_default_capacity()), dump_only=True)
    dissolved_at = fields.DateTime(dump_only=True, allow_none=True)
    created_at = fields.DateTime(dump_only=True)


class TeamHistorySchema(Schema):
    id = fields.Integer(dump_only=True)
    action = fields.String(dump_only=True)
    member_id = fields.UUID(dump_only=True, allow_none=True)
    doctor_id = fields.UUID(dump_only=True, allow_none=True)
    before = fields.Dict(dump_only=True)
    after = fields.Dict(dump_only=True)
    reason = fields.String(dump_only=True, allow_none=True)
    actor_kind = fields.String(dump_only=True)
    actor_id = fields.UUID(dump_only=True, allow_none=True)
    actor_role = fields.String(dump_only=True, allow_none=True)
    channel = fields.String(dump_only=True)
    created_at = fields.DateTime(dump_only=True)


# --- the public library --------------------------------------------------------------------------


class LibraryTeamQuerySchema(LibraryDoctorQuerySchema):
    class Meta:
        exclude = ("q", "specialty", "sex")


class LibraryTeamMemberSchema(LibraryDoctorBriefSchema):
    role = fields.String(required=True)
    role_label = fields.String(required=True)
    is_leader = fields.Boolean(required=True)
    position_label = fields.String(required=True)


class LibraryTeamSchema(Schema):
    id = fields.UUID(required=True)
    name = fields.String(required=True)
    description = fields.String(allow_none=True)
    centre = fields.Nested(LibraryCentreSchema, required=True)
    members = fields.List(fields.Nested(LibraryTeamMemberSchema), required=True)
    can_sign = fields.Boolean(required=True)
    capacity = fields.Integer(required=True)
    remaining = fields.Integer(required=True)
    accepting = fields.Boolean(required=True, metadata={"description": "Can sign and has remaining places"})
    distance_km = fields.Float(allow_none=True)
