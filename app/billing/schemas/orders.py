"""Shapes of the staff order views: list filters, rows, history, CSV export, daily summary."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from app.billing.models import ORDER_STATE_LABELS, OrderState
from app.billing.services.reports import (
    CHANNEL_LABELS,
    MODE_LABELS,
    label,
    yuan,
)
from app.core.pagination import PageArgsSchema
from payments.base import Channel, PayMode

MAX_FILTER_FEN = 2_000_000_000
EARLIEST = date(2000, 1, 1)
LATEST = date(2099, 12, 31)
_DATE_RANGE = validate.Range(min=EARLIEST, max=LATEST, error="日期须在 2000-01-01 至 2099-12-31 之间")
_STATES = [s.value for s in OrderState]
_MODES = [m.value for m in PayMode]
_CHANNELS = [c.value for c in Channel]


def _doc(labels: Mapping[str, str]) -> str:
    return "; ".join(f"{k}={v}" for k, v in labels.items())


# --- input -------------------------------------------------------------------------------------------


class BillingOrderFilterSchema(Schema):
    institution_id = fields.UUID(
        metadata={"description": "District roles: any centre. Centre staff always see their own centre only."}
    )
    cashier_id = fields.UUID()
    mode = fields.String(validate=validate.OneOf(_MODES), metadata={"description": _doc(MODE_LABELS)})
    channel = fields.String(
        validate=validate.OneOf(_CHANNELS), metadata={"description": _doc(CHANNEL_LABELS)}
    )
    state = fields.String(
        validate=validate.OneOf(_STATES), metadata={"description": _doc(ORDER_STATE_LABELS)}
    )
    date_field = fields.String(
        load_default="created",
        validate=validate.OneOf(["created", "paid"]),
        metadata={"description": "Which time the date range applies to: created (default) or paid"},
    )
    date_from = fields.Date(validate=_DATE_RANGE, metadata={"description": "China time, inclusive"})
    date_to = fields.Date(validate=_DATE_RANGE, metadata={"description": "China time, inclusive"})
    amount_min_fen = fields.Integer(validate=validate.Range(min=0, max=MAX_FILTER_FEN))
    amount_max_fen = fields.Integer(validate=validate.Range(min=0, max=MAX_FILTER_FEN))
    q = fields.String(
        validate=validate.Length(min=1, max=64),
        metadata={"description": "商户订单号 / 渠道交易号 / 收费单号 (exact or prefix)"},
    )

    @validates_schema
    def _ranges(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("date_from") and data.get("date_to") and data["date_from"] > data["date_to"]:
            raise ValidationError("结束日期不能早于开始日期", field_name="date_to")
        low, high = data.get("amount_min_fen"), data.get("amount_max_fen")
        if low is not None and high is not None and low > high:
            raise ValidationError("最高金额不能低于最低金额", field_name="amount_max_fen")


class BillingOrderQuerySchema(BillingOrderFilterSchema, PageArgsSchema):
    pass


class DailyChargeQuerySchema(Schema):
    date_from = fields.Date(
        required=True, validate=_DATE_RANGE, metadata={"description": "China time, inclusive"}
    )
    date_to = fields.Date(
        required=True, validate=_DATE_RANGE, metadata={"description": "China time, inclusive"}
    )
    institution_id = fields.UUID(metadata={"description": "District roles: one centre (default: all)"})
    channel = fields.String(validate=validate.OneOf(_CHANNELS))

    @validates_schema
    def _range(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("date_from") and data.get("date_to") and data["date_from"] > data["date_to"]:
            raise ValidationError("结束日期不能早于开始日期", field_name="date_to")


# --- output ------------------------------------------------------------------------------------------


class BillingOrderRowSchema(Schema):
    id = fields.UUID(required=True)
    institution_id = fields.UUID(required=True)
    bill_id = fields.UUID(required=True)
    bill_no = fields.String(required=True, metadata={"description": "收费单号"})
    out_trade_no = fields.String(required=True, metadata={"description": "商户订单号"})
    provider_trade_no = fields.String(allow_none=True, metadata={"description": "渠道交易号"})
    subject = fields.String(required=True)
    amount_fen = fields.Integer(required=True)
    amount_yuan = fields.Function(
        lambda r: yuan(r.amount_fen), required=True, metadata={"description": "e.g. 12.30"}
    )
    state = fields.String(required=True)
    state_label = fields.Function(lambda r: label(ORDER_STATE_LABELS, r.state), required=True)
    mode = fields.String(required=True)
    mode_label = fields.Function(lambda r: label(MODE_LABELS, r.mode), required=True)
    channel = fields.String(required=True)
    channel_label = fields.Function(lambda r: label(CHANNEL_LABELS, r.channel), required=True)
    cashier_id = fields.UUID(allow_none=True)
    cashier_name = fields.String(allow_none=True)
    created_at = fields.DateTime(required=True)
    paid_at = fields.DateTime(allow_none=True)
    refunded_fen = fields.Integer(required=True)
    refunded_yuan = fields.Function(lambda r: yuan(r.refunded_fen), required=True)


class PaymentOrderEventSchema(Schema):
    id = fields.Integer(required=True)
    from_state = fields.String(allow_none=True)
    from_state_label = fields.Function(
        lambda e: label(ORDER_STATE_LABELS, e.from_state) if e.from_state else None, allow_none=True
    )
    to_state = fields.String(required=True)
    to_state_label = fields.Function(lambda e: label(ORDER_STATE_LABELS, e.to_state), required=True)
    source = fields.String(
        required=True, metadata={"description": "api | callback | query | job | reconciliation"}
    )
    actor_kind = fields.String(required=True)
    actor_id = fields.UUID(allow_none=True)
    reason = fields.String(allow_none=True)
    detail = fields.Dict(required=True)
    created_at = fields.DateTime(required=True)


class DailyChargeRowSchema(Schema):
    day = fields.Date(required=True)
    institution_id = fields.UUID(required=True)
    institution_name = fields.String(required=True)
    channel = fields.String(required=True)
    channel_label = fields.Function(lambda r: label(CHANNEL_LABELS, r.channel), required=True)
    mode = fields.String(required=True)
    mode_label = fields.Function(lambda r: label(MODE_LABELS, r.mode), required=True)
    cashier_id = fields.UUID(allow_none=True)
    cashier_name = fields.String(allow_none=True)
    paid_count = fields.Integer(required=True)
    paid_fen = fields.Integer(required=True)
    paid_yuan = fields.Function(lambda r: yuan(r.paid_fen), required=True)
    refund_count = fields.Integer(required=True)
    refunded_fen = fields.Integer(required=True)
    refunded_yuan = fields.Function(lambda r: yuan(r.refunded_fen), required=True)
    net_fen = fields.Integer(required=True)
    net_yuan = fields.Function(lambda r: yuan(r.net_fen), required=True)


class DailyChargeTotalsSchema(Schema):
    paid_count = fields.Integer(required=True)
    paid_fen = fields.Integer(required=True)
    paid_yuan = fields.Function(lambda r: yuan(r.paid_fen), required=True)
    refund_count = fields.Integer(required=True)
    refunded_fen = fields.Integer(required=True)
    refunded_yuan = fields.Function(lambda r: yuan(r.refunded_fen), required=True)
    net_fen = fields.Integer(required=True)
    net_yuan = fields.Function(lambda r: yuan(r.net_fen), required=True)


class DailyChargeReportSchema(Schema):
    date_from = fields.Date(required=True)
    date_to = fields.Date(required=True)
    rows = fields.List(fields.Nested(DailyChargeRowSchema), required=True)
    totals = fields.Nested(DailyChargeTotalsSchema, required=True)
