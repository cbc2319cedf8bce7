"""Request and response shapes of service packages (unknown fields rejected; `status`, `version`
and the owning centre of an existing package are server-owned)."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from app.contracts.models import PackageKind, PackageStatus, ServicePackage
from app.core.pagination import PageArgsSchema
from app.doctors.schemas import TextInputSchema
from app.residents.models.codes import GROUPS, SEX_LABELS

KINDS = [k.value for k in PackageKind]
STATUSES = [s.value for s in PackageStatus]
GROUP_CODES = list(GROUPS)
KIND_LABELS = {"basic": "基础服务包", "personalised": "个性化服务包"}
STATUS_LABELS = {"draft": "草稿", "published": "已发布", "retired": "已停用"}
CODE = validate.Regexp(r"^[a-z0-9][a-z0-9_-]{1,39}$", error="代码须为 2-40 位小写字母、数字、- 或 _")
SERVICE_TYPE = validate.Regexp(r"^[a-z][a-z0-9_]{1,39}$", error="服务类型须为 2-40 位小写字母、数字或 _")
MAX_FEN = 10_000_000  # 10 万元: far above any package price


def _fen(**kw: Any) -> fields.Integer:
    return fields.Integer(strict=True, validate=validate.Range(min=0, max=MAX_FEN), **kw)


def _age(**kw: Any) -> fields.Integer:
    return fields.Integer(strict=True, allow_none=True, validate=validate.Range(min=0, max=150), **kw)


# --- input ---------------------------------------------------------------------------------------


class PackageItemInSchema(TextInputSchema):
    code = fields.String(required=True, validate=CODE, metadata={"description": "Unique within the package"})
    name = fields.String(required=True, validate=validate.Length(min=1, max=80))
    service_type = fields.String(
        required=True,
        validate=SERVICE_TYPE,
        metadata={"description": "The kind of service record that fulfils it, e.g. hypertension_follow_up"},
    )
    times_per_period = fields.Integer(
        strict=True,
        load_default=1,
        validate=validate.Range(min=1, max=366),
        metadata={"description": "Times within one contract period (a year)"},
    )
    due_within_days = fields.Integer(
        strict=True,
        allow_none=True,
        validate=validate.Range(min=1, max=3660),
        metadata={"description": "Due within N days of the contract start (else: equal windows)"},
    )
    description = fields.String(allow_none=True, validate=validate.Length(max=500))


class _PackageFields(TextInputSchema):
    name = fields.String(validate=validate.Length(min=1, max=60))
    description = fields.String(allow_none=True, validate=validate.Length(max=2000))
    target_groups = fields.List(
        fields.String(validate=validate.OneOf(GROUP_CODES)),
        validate=validate.Length(max=len(GROUP_CODES)),
        metadata={"description": "Population-group codes (empty: anyone); see GET /api/v1/residents/codes"},
    )
    min_age = _age(metadata={"description": "Whole years, inclusive"})
    max_age = _age(metadata={"description": "Whole years, inclusive"})
    sex = fields.String(allow_none=True, validate=validate.OneOf(list(SEX_LABELS)))
    price_fen = _fen(metadata={"description": "= subsidy_fen + self_pay_fen"})
    subsidy_fen = _fen(metadata={"description": "财政补助 (fen)"})
    self_pay_fen = _fen(metadata={"description": "个人自付 (fen)"})
    valid_from = fields.Date(allow_none=True)
    valid_to = fields.Date(allow_none=True)
    items = fields.List(fields.Nested(PackageItemInSchema), validate=validate.Length(min=1, max=50))


class PackageCreateSchema(_PackageFields):
    code = fields.String(required=True, validate=CODE, metadata={"description": "Stable across versions"})
    kind = fields.String(required=True, validate=validate.OneOf(KINDS))
    name = fields.String(required=True, validate=validate.Length(min=1, max=60))
    price_fen = _fen(required=True, metadata={"description": "= subsidy_fen + self_pay_fen"})
    subsidy_fen = _fen(load_default=0, metadata={"description": "财政补助 (fen)"})
    self_pay_fen = _fen(load_default=0, metadata={"description": "个人自付 (fen)"})
    target_groups = fields.List(
        fields.String(validate=validate.OneOf(GROUP_CODES)),
        load_default=list,
        validate=validate.Length(max=len(GROUP_CODES)),
        metadata={"description": "Population-group codes (empty: anyone)"},
    )
    items = fields.List(
        fields.Nested(PackageItemInSchema), required=True, validate=validate.Length(min=1, max=50)
    )
    institution_id = fields.UUID(
        allow_none=True,
        metadata={
            "description": "District admins: the centre (null: district-wide). Centre admins: own centre"
        },
    )


class PackageUpdateSchema(_PackageFields):
    @validates_schema
    def _something(self, data: dict[str, Any], **_: Any) -> None:
        if not data:
            raise ValidationError("请至少填写一项要修改的内容")


class PackageQuerySchema(TextInputSchema, PageArgsSchema):
    status = fields.String(validate=validate.OneOf(STATUSES))
    kind = fields.String(validate=validate.OneOf(KINDS))
    group = fields.String(
        validate=validate.OneOf(GROUP_CODES), metadata={"description": "Aimed at this group"}
    )
    code = fields.String(validate=CODE)
    q = fields.String(
        validate=validate.Length(min=1, max=50), metadata={"description": "Name or code contains"}
    )
    scope = fields.String(validate=validate.OneOf(["district", "centre"]))
    institution_id = fields.UUID(metadata={"description": "Only this centre's own packages"})


class EligibleQuerySchema(TextInputSchema):
    resident_id = fields.UUID(required=True)
    on = fields.Date(metadata={"description": "Default: today (China)"})
    institution_id = fields.UUID(
        metadata={
            "description": "The signing centre; default: the caller's centre (district staff: the resident's)"
        }
    )


# --- output --------------------------------------------------------------------------------------


class PackageItemSchema(Schema):
    id = fields.UUID(dump_only=True)
    code = fields.String(dump_only=True)
    name = fields.String(dump_only=True)
    service_type = fields.String(dump_only=True)
    times_per_period = fields.Integer(dump_only=True)
    due_within_days = fields.Integer(dump_only=True, allow_none=True)
    description = fields.String(dump_only=True, allow_none=True)


def _group_labels(package: ServicePackage) -> list[str]:
    return [GROUPS[g].label if g in GROUPS else g for g in package.target_groups]


class PackageSchema(Schema):
    id = fields.UUID(dump_only=True)
    code = fields.String(dump_only=True)
    version = fields.Integer(dump_only=True)
    name = fields.String(dump_only=True)
    kind = fields.String(dump_only=True, metadata={"enum": KINDS})
    kind_label = fields.Function(lambda p: KIND_LABELS.get(p.kind, p.kind), dump_only=True)
    status = fields.String(dump_only=True, metadata={"enum": STATUSES})
    status_label = fields.Function(lambda p: STATUS_LABELS.get(p.status, p.status), dump_only=True)
    institution_id = fields.UUID(
        dump_only=True, allow_none=True, metadata={"description": "null: district-wide"}
    )
    scope = fields.Function(lambda p: "district" if p.institution_id is None else "centre", dump_only=True)
    description = fields.String(dump_only=True, allow_none=True)
    target_groups = fields.List(fields.String(), dump_only=True)
    target_group_labels = fields.Function(_group_labels, dump_only=True)
    min_age = fields.Integer(dump_only=True, allow_none=True)
    max_age = fields.Integer(dump_only=True, allow_none=True)
    sex = fields.String(dump_only=True, allow_none=True)
    price_fen = fields.Integer(dump_only=True)
    subsidy_fen = fields.Integer(dump_only=True)
    self_pay_fen = fields.Integer(dump_only=True)
    valid_from = fields.Date(dump_only=True, allow_none=True)
    valid_to = fields.Date(dump_only=True, allow_none=True)
    published_at = fields.DateTime(dump_only=True, allow_none=True)
    created_at = fields.DateTime(dump_only=True)
    updated_at = fields.DateTime(dump_only=True)
    items = fields.List(fields.Nested(PackageItemSchema), dump_only=True)


class PackageEligibilitySchema(Schema):
    package = fields.Nested(PackageSchema, dump_only=True)
    eligible = fields.Boolean(dump_only=True)
    reason = fields.String(dump_only=True, allow_none=True, metadata={"description": "Why not (Chinese)"})


class EligibleListSchema(Schema):
    resident_id = fields.UUID(dump_only=True)
    institution_id = fields.UUID(dump_only=True)
    on = fields.Date(dump_only=True)
    packages = fields.List(fields.Nested(PackageEligibilitySchema), dump_only=True)
