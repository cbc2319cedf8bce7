"""Request and response shapes of agreement templates and clauses (unknown fields rejected)."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from app.contracts.models import ClauseKind, TemplateStatus
from app.contracts.schemas.packages import CODE
from app.core.pagination import PageArgsSchema
from app.doctors.schemas import TextInputSchema

CLAUSE_KINDS = [k.value for k in ClauseKind]
STATUSES = [s.value for s in TemplateStatus]
CLAUSE_KIND_LABELS = {
    "parties": "签约双方",
    "services": "服务内容",
    "period": "服务期限",
    "fees": "服务费用",
    "rights_duties": "权利与义务",
    "privacy": "隐私与数据共享",
    "termination": "协议解除",
    "other": "其他",
}
STATUS_LABELS = {"draft": "草稿", "published": "已发布", "retired": "已停用"}
CLAUSE_KEY = validate.Regexp(r"^[a-z][a-z0-9_]{1,39}$", error="条款标识须为 2-40 位小写字母、数字或 _")
PLACEHOLDER_DOC = (
    "str.format text; placeholders: {contract_no} {resident_name} {centre_name} {centre_phone} {team_name} "
    "{doctor_name} {period_start} {period_end} {packages} {price_yuan} {subsidy_yuan} {self_pay_yuan}; "
    "literal braces: {{ }}"
)


# --- input ---------------------------------------------------------------------------------------


class ClauseInSchema(TextInputSchema):
    key = fields.String(
        required=True, validate=CLAUSE_KEY, metadata={"description": "Unique within the template"}
    )
    kind = fields.String(required=True, validate=validate.OneOf(CLAUSE_KINDS))
    title = fields.String(required=True, validate=validate.Length(min=1, max=60))
    text = fields.String(
        required=True, validate=validate.Length(min=1, max=5000), metadata={"description": PLACEHOLDER_DOC}
    )
    personalisable = fields.Boolean(
        load_default=False, metadata={"description": "The doctor may replace it per contract"}
    )


class TemplateCreateSchema(TextInputSchema):
    code = fields.String(required=True, validate=CODE, metadata={"description": "Stable across versions"})
    title = fields.String(required=True, validate=validate.Length(min=1, max=80))
    clauses = fields.List(
        fields.Nested(ClauseInSchema), required=True, validate=validate.Length(min=1, max=40)
    )
    institution_id = fields.UUID(
        allow_none=True,
        metadata={
            "description": "District admins: the centre (null: district-wide). Centre admins: own centre"
        },
    )


class TemplateUpdateSchema(TextInputSchema):
    title = fields.String(validate=validate.Length(min=1, max=80))
    clauses = fields.List(fields.Nested(ClauseInSchema), validate=validate.Length(min=1, max=40))

    @validates_schema
    def _something(self, data: dict[str, Any], **_: Any) -> None:
        if not data:
            raise ValidationError("请至少填写一项要修改的内容")


class TemplateQuerySchema(TextInputSchema, PageArgsSchema):
    status = fields.String(validate=validate.OneOf(STATUSES))
    code = fields.String(validate=CODE)
    scope = fields.String(validate=validate.OneOf(["district", "centre"]))
    institution_id = fields.UUID(metadata={"description": "Only this centre's own templates"})


class CurrentTemplateQuerySchema(TextInputSchema):
    institution_id = fields.UUID(
        metadata={"description": "Default: the caller's centre (district staff: none)"}
    )


class TemplatePreviewInSchema(TextInputSchema):
    resident_id = fields.UUID(required=True)
    team_id = fields.UUID(required=True)
    doctor_id = fields.UUID(
        allow_none=True, metadata={"description": "A member of the team; default: its leader"}
    )
    package_ids = fields.List(fields.UUID(), load_default=list, validate=validate.Length(max=20))
    clause_overrides = fields.Dict(
        keys=fields.String(validate=CLAUSE_KEY),
        values=fields.String(validate=validate.Length(min=1, max=5000)),
        load_default=dict,
        metadata={"description": "Clause key -> replacement text (personalisable clauses only)"},
    )
    period_start = fields.Date(allow_none=True, metadata={"description": "Default: today (China)"})


# --- output --------------------------------------------------------------------------------------


class AgreementClauseSchema(Schema):
    id = fields.UUID(dump_only=True)
    key = fields.String(dump_only=True)
    kind = fields.String(dump_only=True, metadata={"enum": CLAUSE_KINDS})
    kind_label = fields.Function(lambda c: CLAUSE_KIND_LABELS.get(c.kind, c.kind), dump_only=True)
    title = fields.String(dump_only=True)
    text = fields.String(dump_only=True)
    personalisable = fields.Boolean(dump_only=True)


class AgreementTemplateRefSchema(Schema):
    id = fields.UUID(dump_only=True)
    code = fields.String(dump_only=True)
    version = fields.Integer(dump_only=True)
    title = fields.String(dump_only=True)
    status = fields.String(dump_only=True, metadata={"enum": STATUSES})


class AgreementTemplateSchema(Schema):
    id = fields.UUID(dump_only=True)
    code = fields.String(dump_only=True)
    version = fields.Integer(dump_only=True)
    title = fields.String(dump_only=True)
    status = fields.String(dump_only=True, metadata={"enum": STATUSES})
    status_label = fields.Function(lambda t: STATUS_LABELS.get(t.status, t.status), dump_only=True)
    institution_id = fields.UUID(
        dump_only=True, allow_none=True, metadata={"description": "null: district-wide"}
    )
    scope = fields.Function(lambda t: "district" if t.institution_id is None else "centre", dump_only=True)
    published_at = fields.DateTime(dump_only=True, allow_none=True)
    created_at = fields.DateTime(dump_only=True)
    updated_at = fields.DateTime(dump_only=True)
    clauses = fields.List(fields.Nested(AgreementClauseSchema), dump_only=True)


class TemplateRenderedClauseSchema(Schema):
    number = fields.Integer(dump_only=True)
    key = fields.String(dump_only=True)
    kind = fields.String(dump_only=True)
    title = fields.String(dump_only=True)
    text = fields.String(dump_only=True, metadata={"description": "With the placeholders filled"})
    personalisable = fields.Boolean(dump_only=True)
    personalised = fields.Boolean(dump_only=True, metadata={"description": "Replaced by an override"})
    source = fields.String(dump_only=True, metadata={"description": "The text before filling (to edit)"})


class TemplatePreviewSchema(Schema):
    template = fields.Nested(AgreementTemplateRefSchema, dump_only=True)
    clauses = fields.List(fields.Nested(TemplateRenderedClauseSchema), dump_only=True)
    text = fields.String(dump_only=True)
    sha256 = fields.String(dump_only=True)
    period_start = fields.Date(dump_only=True)
    period_end = fields.Date(dump_only=True)
    price_fen = fields.Integer(dump_only=True)
    subsidy_fen = fields.Integer(dump_only=True)
    self_pay_fen = fields.Integer(dump_only=True)


class TemplatePlaceholderSchema(Schema):
    name = fields.String(dump_only=True)
    label = fields.String(dump_only=True)
