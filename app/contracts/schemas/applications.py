"""Request and response shapes of online pre-signing (网络预申请): the mini-program's side
(`/mp/v1/contracts/options`, `/mp/v1/contract-applications`) and the team's review queue
(`/api/v1/contract-applications`). Unknown fields are rejected; status, fees, capacity, the
agreement and its hash are server-owned (API-02)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from app.contracts.models import ContractStatus
from app.contracts.models.contracts import STATUS_LABELS
from app.core.fields import Masked
from app.core.pagination import PageArgsSchema

STATUS_DOC = "; ".join(f"{k}={v}" for k, v in STATUS_LABELS.items())
QUEUE_STATUSES = [s.value for s in ContractStatus] + ["open"]
MAX_PACKAGES = 10
SHA256 = validate.Regexp(r"^[0-9a-fA-F]{64}$", error="应为 64 位十六进制的协议摘要（agreement_sha256）")


# --- input: mini-program ------------------------------------------------------------------------------


class ApplicationOptionsQuerySchema(Schema):
    resident_id = fields.UUID(
        required=True, metadata={"description": "本人或已绑定的家庭成员（GET /mp/v1/family）"}
    )
    team_id = fields.UUID(metadata={"description": "所选团队（预览协议用）"})
    doctor_id = fields.UUID(metadata={"description": "所选签约医生（须为该团队的全科医生）"})
    package_ids = fields.List(
        fields.UUID(),
        validate=validate.Length(max=MAX_PACKAGES),
        metadata={"description": "所选服务包（预览协议中的服务内容与费用）"},
    )


class ApplicationCreateSchema(Schema):
    resident_id = fields.UUID(required=True, metadata={"description": "本人或已绑定的家庭成员"})
    team_id = fields.UUID(required=True)
    doctor_id = fields.UUID(required=True, metadata={"description": "该团队的全科医生"})
    package_ids = fields.List(
        fields.UUID(),
        required=True,
        validate=validate.Length(min=1, max=MAX_PACKAGES),
        metadata={"description": "一个基础包，加上任意符合条件的个性化服务包"},
    )


class ApplicationWithdrawSchema(Schema):
    reason = fields.String(
        validate=validate.Length(min=1, max=200), metadata={"description": "撤回原因（可选）"}
    )


class ApplicationConfirmSchema(Schema):
    agreement_sha256 = fields.String(
        required=True,
        validate=SHA256,
        metadata={"description": "所阅读协议的 agreement_sha256（GET 申请详情返回），证明确认的是这一版协议"},
    )


# --- input: staff --------------------------------------------------------------------------------------


class ApplicationQueueQuerySchema(PageArgsSchema):
    team_id = fields.UUID()
    status = fields.String(
        validate=validate.OneOf(QUEUE_STATUSES),
        metadata={"description": "默认 pending_review；open = 审核中、待确认、待缴费。" + STATUS_DOC},
    )
    overdue = fields.Boolean(metadata={"description": "true: 已超过审核期限；false: 未超期"})


class ApplicationAcceptSchema(Schema):
    clause_overrides = fields.Dict(
        keys=fields.String(validate=validate.Length(min=1, max=40)),
        values=fields.String(validate=validate.Length(min=1, max=2000)),
        validate=validate.Length(max=20),
        metadata={"description": "个性化条款：条款 key -> 文本（仅限可个性化的条款，可含占位符）"},
    )
    note = fields.String(validate=validate.Length(min=1, max=200), metadata={"description": "审核备注"})


class ApplicationRejectSchema(Schema):
    reason = fields.String(
        required=True,
        validate=validate.Length(min=2, max=200),
        metadata={"description": "拒绝原因（告知居民）"},
    )


# --- output --------------------------------------------------------------------------------------------


class ApplicationPackageItemSchema(Schema):
    name = fields.String()
    service_type = fields.String()
    times_per_period = fields.Integer()
    due_within_days = fields.Integer(allow_none=True)


class ApplicationPackageOptionSchema(Schema):
    id = fields.UUID()
    code = fields.String()
    version = fields.Integer()
    name = fields.String()
    kind = fields.String(metadata={"description": "basic=基础包; personalised=个性化服务包"})
    description = fields.String(allow_none=True)
    target_groups = fields.List(fields.String())
    min_age = fields.Integer(allow_none=True)
    max_age = fields.Integer(allow_none=True)
    price_fen = fields.Integer()
    subsidy_fen = fields.Integer()
    self_pay_fen = fields.Integer()
    items = fields.List(fields.Nested(ApplicationPackageItemSchema))


class ApplicationEligibilitySchema(Schema):
    package = fields.Nested(ApplicationPackageOptionSchema)
    eligible = fields.Boolean()
    reason = fields.String(allow_none=True, metadata={"description": "不符合条件的原因"})


class ApplicationClauseSchema(Schema):
    number = fields.Integer()
    key = fields.String()
    kind = fields.String()
    title = fields.String()
    text = fields.String()
    personalised = fields.Boolean()


class ApplicationAgreementPreviewSchema(Schema):
    template_id = fields.UUID()
    template_code = fields.String()
    template_version = fields.Integer()
    title = fields.String()
    clauses = fields.List(fields.Nested(ApplicationClauseSchema))
    text = fields.String()
    sha256 = fields.String(metadata={"description": "预览文本的摘要（正式协议以团队受理后的版本为准）"})


class ApplicationOptionsSchema(Schema):
    resident_id = fields.UUID()
    resident_name = fields.String()
    age = fields.Integer()
    signing_way = fields.String(metadata={"description": "self=本人; proxy=家属代签; guardian=监护人"})
    relationship = fields.String(metadata={"description": "您与该居民的关系"})
    institution_id = fields.UUID()
    centre_name = fields.String()
    packages = fields.List(
        fields.Nested(ApplicationEligibilitySchema),
        metadata={"description": "可选服务包（基础包在前，符合条件的在前），不符合条件的注明原因"},
    )
    agreement = fields.Nested(ApplicationAgreementPreviewSchema, allow_none=True)
    can_apply = fields.Boolean()
    blocked_reason = fields.String(allow_none=True, metadata={"description": "已签约或已有申请时的说明"})
    review_hours = fields.Integer(metadata={"description": "团队审核时限（小时）"})
    confirm_hours = fields.Integer(metadata={"description": "受理后居民确认与缴费时限（小时）"})


class ApplicationPackageSchema(Schema):
    package_id = fields.UUID()
    code = fields.String()
    version = fields.Integer()
    name = fields.String()
    kind = fields.String()
    price_fen = fields.Integer()
    subsidy_fen = fields.Integer()
    self_pay_fen = fields.Integer()


class ApplicationStepSchema(Schema):
    key = fields.String(metadata={"description": "apply, review, confirm, pay, active"})
    label = fields.String()
    state = fields.String(metadata={"description": "done, current, pending, failed, skipped"})
    at = fields.DateTime(allow_none=True)
    due_at = fields.DateTime(allow_none=True)


class ApplicationEventSchema(Schema):
    action = fields.String()
    from_status = fields.String(allow_none=True)
    to_status = fields.String(allow_none=True)
    actor_kind = fields.String(metadata={"description": "staff, resident, partner, system"})
    actor_role = fields.String(allow_none=True)
    channel = fields.String()
    reason = fields.String(allow_none=True)
    created_at = fields.DateTime()


class StaffApplicationEventSchema(ApplicationEventSchema):
    actor_id = fields.UUID(allow_none=True)


class _ApplicationFields(Schema):
    id = fields.UUID()
    contract_no = fields.String()
    status = fields.String(metadata={"description": STATUS_DOC})
    status_label = fields.String()
    resident_id = fields.UUID()
    resident_sex = fields.String()
    resident_age = fields.Integer()
    institution_id = fields.UUID()
    centre_name = fields.String()
    team_id = fields.UUID()
    team_name = fields.String()
    doctor_id = fields.UUID()
    doctor_name = fields.String()
    channel = fields.String()
    signing_way = fields.String()
    signer_relationship = fields.String(allow_none=True)
    packages = fields.List(fields.Nested(ApplicationPackageSchema))
    price_fen = fields.Integer()
    subsidy_fen = fields.Integer()
    self_pay_fen = fields.Integer()
    period_start = fields.Date()
    period_end = fields.Date()
    applied_at = fields.DateTime(allow_none=True)
    review_due_at = fields.DateTime(allow_none=True)
    review_seconds_left = fields.Integer(
        allow_none=True, metadata={"description": "距审核期限的秒数（负数为已超期）；仅待审核时有值"}
    )
    overdue = fields.Boolean()
    reviewed_at = fields.DateTime(allow_none=True)
    rejection_reason = fields.String(allow_none=True)
    confirm_due_at = fields.DateTime(allow_none=True, metadata={"description": "居民确认与缴费的截止时间"})
    confirmed_at = fields.DateTime(allow_none=True)
    activated_at = fields.DateTime(allow_none=True)
    end_reason = fields.String(allow_none=True)
    bill_id = fields.UUID(
        allow_none=True, metadata={"description": "待缴费时：POST /mp/v1/bills/{bill_id}/payments"}
    )
    agreement_sha256 = fields.String()
    next_action = fields.String(allow_none=True, metadata={"description": "confirm=待确认; pay=待缴费"})
    can_withdraw = fields.Boolean()
    progress = fields.List(fields.Nested(ApplicationStepSchema))


class MpApplicationSchema(_ApplicationFields):
    resident_name = fields.String()
    signer_name = fields.String(allow_none=True)


class MpApplicationDetailSchema(MpApplicationSchema):
    clauses = fields.List(fields.Nested(ApplicationClauseSchema))
    agreement_text = fields.String()
    history = fields.List(fields.Nested(ApplicationEventSchema))


class ApplicationPaymentSchema(Schema):
    bill_id = fields.UUID()
    amount_fen = fields.Integer()
    pay_path = fields.String(metadata={"description": "POST 此地址（带 Idempotency-Key）发起微信支付"})
    pay_by = fields.DateTime(allow_none=True)
    message = fields.String()


class MpConfirmationSchema(MpApplicationSchema):
    payment = fields.Nested(ApplicationPaymentSchema, allow_none=True)


class StaffApplicationSchema(_ApplicationFields):
    resident_name = Masked("name")
    signer_name = Masked("name", allow_none=True)
    reviewed_by = fields.UUID(allow_none=True)


class StaffApplicationDetailSchema(StaffApplicationSchema):
    clauses = fields.List(fields.Nested(ApplicationClauseSchema))
    agreement_text = fields.String()
    history = fields.List(fields.Nested(StaffApplicationEventSchema))
