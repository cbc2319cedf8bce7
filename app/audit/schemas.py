"""Shapes of audit events."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from app.core.audit import ALLOWED, DENIED
from app.core.pagination import PageArgsSchema


class AuditQuerySchema(PageArgsSchema):
    resident_id = fields.UUID(metadata={"description": "Who accessed this resident"})
    actor_id = fields.UUID(metadata={"description": "What this user accessed"})
    object_type = fields.String(validate=validate.Length(min=1, max=64))
    object_id = fields.String(validate=validate.Length(min=1, max=64))
    result = fields.String(validate=validate.OneOf([ALLOWED, DENIED]))
    since = fields.AwareDateTime()
    until = fields.AwareDateTime()


class AuditEventSchema(Schema):
    seq = fields.Integer()
    occurred_at = fields.DateTime()
    actor_kind = fields.String()
    actor_id = fields.String(allow_none=True)
    role = fields.String(allow_none=True)
    institution_id = fields.String(allow_none=True)
    subject_resident_id = fields.String(allow_none=True)
    object_type = fields.String()
    object_id = fields.String(allow_none=True)
    action = fields.String()
    purpose = fields.String(allow_none=True)
    result = fields.String()
    request_id = fields.String(allow_none=True)
    client_address = fields.String(allow_none=True)
    detail = fields.Dict()
    row_hash = fields.String()
