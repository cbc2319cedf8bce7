"""Request and response shapes of the H5 cashier's JSON API (`/pay/api`), the aggregate QR codes
(`/api/v1/billing/aggregate-qr`) and the mini-program payments (`/mp/v1`).

Amounts are integer fen (`amount_text` is the same amount as the payer reads it, "¥12.30").
The H5 API never shows ids: bills and orders are named by signed, expiring tokens.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from app.billing.models import OrderState
from app.doctors.schemas.common import TextInputSchema
from payments.base import Channel

MAX_TOKEN = 200
STATES = [s.value for s in OrderState]
CHANNELS = [c.value for c in Channel]
POSTER_SIZES = ["A6", "A5"]


# --- H5 cashier ----------------------------------------------------------------------------------


class CashierPayArgsSchema(TextInputSchema):
    """On an aggregate code: either one of the payer's pending bills, or an amount (walk-in)."""

    bill = fields.String(
        validate=validate.Length(min=1, max=MAX_TOKEN),
        metadata={"description": "Bill token from the page (one of the payer's pending bills)"},
    )
    amount_fen = fields.Integer(
        strict=True,
        validate=validate.Range(min=1, max=10**9),
        metadata={
            "description": "Walk-in: the amount the payer typed, in fen (capped by the centre's limit)"
        },
    )

    @validates_schema
    def _one_of(self, data: dict[str, Any], **_: Any) -> None:
        if ("bill" in data) == ("amount_fen" in data):
            raise ValidationError("请选择要支付的账单，或输入付款金额（二选一）")


class EmptyArgsSchema(TextInputSchema):
    """No fields."""


class CashierOrderSchema(Schema):
    order = fields.String(
        required=True, metadata={"description": "Signed order token (for /pay/api/orders/...)"}
    )
    state = fields.String(required=True, validate=validate.OneOf(STATES))
    state_text = fields.String(required=True, metadata={"description": "The state in Chinese"})
    final = fields.Boolean(required=True, metadata={"description": "No further change will happen"})
    paid = fields.Boolean(required=True)
    channel = fields.String(required=True, validate=validate.OneOf(CHANNELS))
    amount_fen = fields.Integer(required=True)
    amount_text = fields.String(required=True, metadata={"description": "e.g. ¥12.30"})
    subject = fields.String(required=True)
    centre_name = fields.String(required=True)
    paid_at = fields.String(allow_none=True, metadata={"description": "China time, YYYY-MM-DD HH:MM:SS"})
    message = fields.String(allow_none=True, metadata={"description": "Why a payment failed (Chinese)"})


class CashierChargeSchema(CashierOrderSchema):
    client_params = fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        required=True,
        metadata={
            "description": "WeChat: the WeixinJSBridge getBrandWCPayRequest parameters (appId, timeStamp, "
            "nonceStr, package, signType, paySign); Alipay: {tradeNO} for AlipayJSBridge tradePay"
        },
    )
    result_url = fields.String(
        required=True, metadata={"description": "The result page to open after paying"}
    )


# --- aggregate QR codes (staff) ------------------------------------------------------------------


class AggregateQrCreateSchema(TextInputSchema):
    label = fields.String(
        required=True,
        validate=validate.Length(min=1, max=50),
        metadata={"description": "Where the code hangs, e.g. 一楼收费处"},
    )
    institution_id = fields.UUID(allow_none=True, metadata={"description": "Required for district admins"})


class AggregateQrListArgsSchema(Schema):
    include_revoked = fields.Boolean(load_default=False)


class PosterArgsSchema(Schema):
    size = fields.String(load_default="A6", validate=validate.OneOf(POSTER_SIZES))


class AggregateQrSchema(Schema):
    id = fields.UUID(required=True)
    institution_id = fields.UUID(required=True)
    label = fields.String(required=True)
    active = fields.Boolean(required=True)
    url = fields.String(required=True, metadata={"description": "What the code encodes"})
    created_at = fields.DateTime(required=True)
    revoked_at = fields.DateTime(allow_none=True)


# --- mini-program ----------------------------------------------------------------------------------


class MpBillSchema(Schema):
    id = fields.UUID(required=True)
    bill_no = fields.String(required=True)
    institution_id = fields.UUID(required=True)
    centre_name = fields.String(required=True)
    subject = fields.String(required=True)
    items = fields.List(fields.Dict(), required=True)
    amount_fen = fields.Integer(required=True)
    payer_name = fields.String(allow_none=True)
    status = fields.String(required=True)
    created_at = fields.DateTime(required=True)


class MpPaymentSchema(Schema):
    order_id = fields.UUID(required=True)
    bill_id = fields.UUID(required=True)
    state = fields.String(required=True, validate=validate.OneOf(STATES))
    state_text = fields.String(required=True)
    final = fields.Boolean(required=True)
    paid = fields.Boolean(required=True)
    amount_fen = fields.Integer(required=True)
    paid_at = fields.DateTime(allow_none=True)
    expires_at = fields.DateTime(required=True)
    message = fields.String(allow_none=True)
    request_payment = fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        allow_none=True,
        metadata={
            "description": "wx.requestPayment parameters (timeStamp, nonceStr, package, signType, paySign); "
            "null once the order is no longer payable"
        },
    )
