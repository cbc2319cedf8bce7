"""Request and response shapes of refunds and payment anomalies (unknown fields rejected)."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from app.billing.models import REFUND_STATUS_LABELS, AnomalyKind, AnomalyStatus, RefundOrigin, RefundStatus
from app.core.pagination import PageArgsSchema

MAX_REFUND_FEN = 10**10  # far above any order; only guards the integer range

ANOMALY_KIND_LABELS: dict[str, str] = {
    AnomalyKind.PAID_AFTER_CLOSE: "关单后到账",
    AnomalyKind.DUPLICATE_PAYMENT: "重复支付",
    AnomalyKind.AMOUNT_MISMATCH: "金额不符",
    AnomalyKind.MERCHANT_MISMATCH: "商户号/应用号不符",
    AnomalyKind.UNKNOWN_ORDER: "未知订单",
    AnomalyKind.CURRENCY_MISMATCH: "币种不符",
    AnomalyKind.NOT_PAID_STATE: "非支付成功状态",
    AnomalyKind.REFUND_ABNORMAL: "退款异常",
    AnomalyKind.RECONCILIATION: "对账差异",
}
ANOMALY_STATUS_LABELS: dict[str, str] = {AnomalyStatus.OPEN: "待处理", AnomalyStatus.RESOLVED: "已处理"}
ORIGIN_LABELS: dict[str, str] = {RefundOrigin.STAFF: "人工退款", RefundOrigin.ANOMALY: "异常自动退款"}


class _Text(fields.String):
    """A required free text: surrounding blanks removed, blank is "required"."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs).strip()
        if not text:
            raise ValidationError("必填，不能为空")
        return text


# --- input ---------------------------------------------------------------------------------------


class RefundCreateSchema(Schema):
    amount_fen = fields.Integer(
        required=True,
        strict=True,
        validate=validate.Range(min=1, max=MAX_REFUND_FEN),
        metadata={"description": "退款金额（分），不超过订单剩余可退金额"},
    )
    reason = _Text(required=True, validate=validate.Length(max=200), metadata={"description": "退款原因"})


class RefundCancelSchema(Schema):
    reason = _Text(required=True, validate=validate.Length(max=200), metadata={"description": "取消原因"})


class RefundQuerySchema(PageArgsSchema):
    status = fields.String(validate=validate.OneOf([s.value for s in RefundStatus]))
    origin = fields.String(validate=validate.OneOf([o.value for o in RefundOrigin]))
    order_id = fields.UUID()
    bill_id = fields.UUID()
    created_from = fields.AwareDateTime(metadata={"description": "创建时间下限（含），带时区"})
    created_to = fields.AwareDateTime(metadata={"description": "创建时间上限（不含），带时区"})

    @validates_schema
    def _range(self, data: dict[str, Any], **_: Any) -> None:
        start, end = data.get("created_from"), data.get("created_to")
        if start is not None and end is not None and start >= end:
            raise ValidationError("开始时间必须早于结束时间", field_name="created_to")


class AnomalyQuerySchema(PageArgsSchema):
    status = fields.String(validate=validate.OneOf([s.value for s in AnomalyStatus]))
    kind = fields.String(validate=validate.OneOf([k.value for k in AnomalyKind]))


class AnomalyResolveSchema(Schema):
    resolution = _Text(
        required=True, validate=validate.Length(min=2, max=1000), metadata={"description": "处理结果说明"}
    )


# --- output --------------------------------------------------------------------------------------


class RefundHistoryEntrySchema(Schema):
    at = fields.String(required=True)
    status = fields.String(required=True)
    from_status = fields.String(data_key="from", allow_none=True)
    by = fields.String(allow_none=True)
    source = fields.String(allow_none=True)
    actor_id = fields.String(allow_none=True)
    reason = fields.String(allow_none=True)

    class Meta:
        ordered = True


class RefundSchema(Schema):
    id = fields.UUID(required=True)
    institution_id = fields.UUID(required=True)
    order_id = fields.UUID(required=True)
    bill_id = fields.UUID(required=True)
    out_refund_no = fields.String(required=True, metadata={"description": "退款单号，重试时不变"})
    amount_fen = fields.Integer(required=True)
    reason = fields.String(required=True)
    origin = fields.String(required=True)
    origin_label = fields.Function(lambda r: ORIGIN_LABELS.get(r.origin, r.origin), required=True)
    anomaly_id = fields.UUID(allow_none=True)
    status = fields.String(required=True)
    status_label = fields.Function(lambda r: REFUND_STATUS_LABELS.get(r.status, r.status), required=True)
    status_changed_at = fields.DateTime(required=True)
    requested_by_kind = fields.String(required=True)
    requested_by_id = fields.UUID(allow_none=True)
    provider_refund_no = fields.String(allow_none=True)
    succeeded_at = fields.DateTime(allow_none=True)
    attempts = fields.Integer(required=True, metadata={"description": "人工重试次数"})
    last_error = fields.String(allow_none=True)
    history = fields.List(fields.Nested(RefundHistoryEntrySchema), required=True)
    created_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(required=True)


class AnomalySchema(Schema):
    id = fields.UUID(required=True)
    kind = fields.String(required=True)
    kind_label = fields.Function(lambda a: ANOMALY_KIND_LABELS.get(a.kind, a.kind), required=True)
    status = fields.String(required=True)
    status_label = fields.Function(lambda a: ANOMALY_STATUS_LABELS.get(a.status, a.status), required=True)
    institution_id = fields.UUID(allow_none=True)
    channel = fields.String(required=True)
    out_trade_no = fields.String(allow_none=True)
    order_id = fields.UUID(allow_none=True)
    bill_id = fields.UUID(allow_none=True)
    amount_fen = fields.Integer(allow_none=True)
    detail = fields.Dict(required=True)
    owner_id = fields.UUID(allow_none=True)
    resolution = fields.String(allow_none=True)
    resolved_at = fields.DateTime(allow_none=True)
    resolved_by = fields.UUID(allow_none=True)
    created_at = fields.DateTime(required=True)
