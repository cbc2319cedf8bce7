"""Request and response shapes of the cashier's desk (`/api/v1/billing`: bills, payments, orders).

Amounts are integer fen. A scanned payment code is accepted in the request and never returned:
responses show only `payer_code_tail` (its last 4 digits).
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from app.billing.models import BillSource, BillStatus, OrderState, PaymentOrder
from app.core import clock
from app.core.pagination import PageArgsSchema
from payments.base import Channel, PayMode

MAX_AMOUNT_FEN = 100_000_000  # ¥1,000,000: far above any charge of a community health centre

BILL_STATUS_LABELS: dict[str, str] = {
    BillStatus.OPEN: "待支付",
    BillStatus.PAID: "已支付",
    BillStatus.CANCELLED: "已作废",
}
ORDER_STATE_LABELS: dict[str, str] = {
    OrderState.CREATED: "正在发起支付",
    OrderState.PENDING: "等待付款人扫码支付",
    OrderState.PAYING: "付款人正在输入密码/确认中",
    OrderState.UNKNOWN: "支付结果确认中",
    OrderState.PAID: "已支付",
    OrderState.CLOSED: "已关闭",
    OrderState.REVERSED: "已撤销",
    OrderState.FAILED: "支付失败",
}
DESK_SOURCES = [BillSource.CONTRACT, BillSource.HIS, BillSource.THIRD_PARTY, BillSource.OTHER]


def next_step(order: PaymentOrder) -> str:
    """What the cashier should do now, in Chinese."""
    state = order.state
    if order.closing and not order.order_state.is_final:
        return "已申请关闭/停止收款，系统正在向支付平台确认，请稍候"
    if state == OrderState.PAID:
        return "收款成功"
    if state == OrderState.PENDING and order.mode == PayMode.MERCHANT_QR:
        return "请付款人用微信或支付宝扫描二维码完成支付"
    if state == OrderState.PENDING:
        return "请付款人在手机上完成支付"
    if state in (OrderState.CREATED, OrderState.PAYING, OrderState.UNKNOWN):
        return "付款人正在输入密码/确认中，请稍候，系统将自动确认结果，请勿重复扫码"
    if state == OrderState.FAILED:
        reason = order.decline_message or "支付失败"
        return f"{reason}；请付款人刷新付款码后重新扫码（将生成新的支付订单）"
    if state == OrderState.REVERSED:
        return "本次交易已撤销，付款人未被扣款（如已扣款将原路退回）；如需收款请重新扫码"
    return "订单已关闭；如需收款请重新发起支付"


# --- input -------------------------------------------------------------------------------------------


class BillItemSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=64))
    quantity = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=10_000))
    unit_price_fen = fields.Integer(
        required=True, strict=True, validate=validate.Range(min=0, max=MAX_AMOUNT_FEN)
    )
    amount_fen = fields.Integer(
        required=True, strict=True, validate=validate.Range(min=0, max=MAX_AMOUNT_FEN)
    )

    @validates_schema
    def _amount_is_quantity_times_price(self, data: dict[str, Any], **_: Any) -> None:
        if data["quantity"] * data["unit_price_fen"] != data["amount_fen"]:
            raise ValidationError("金额应等于数量×单价", field_name="amount_fen")


class BillCreateSchema(Schema):
    items = fields.List(
        fields.Nested(BillItemSchema),
        validate=validate.Length(min=1, max=100),
        metadata={"description": "收费明细; when given, amount_fen (if any) must equal their total"},
    )
    amount_fen = fields.Integer(
        strict=True,
        validate=validate.Range(min=1, max=MAX_AMOUNT_FEN),
        metadata={"description": "Total in fen; required without items"},
    )
    subject = fields.String(
        required=True,
        validate=validate.Length(min=1, max=64),
        metadata={"description": "商品描述 shown in the payer's wallet"},
    )
    source = fields.String(
        load_default=BillSource.OTHER.value,
        validate=validate.OneOf([s.value for s in DESK_SOURCES]),
        metadata={"description": "contract | his | third_party | other"},
    )
    source_ref = fields.String(
        allow_none=True,
        validate=validate.Length(min=1, max=64),
        metadata={"description": "The charge number in the source system (one bill per source_ref)"},
    )
    resident_id = fields.UUID(allow_none=True)
    payer_name = fields.String(allow_none=True, validate=validate.Length(min=1, max=50))

    @validates_schema
    def _amount_or_items(self, data: dict[str, Any], **_: Any) -> None:
        items = data.get("items")
        if not items and data.get("amount_fen") is None:
            raise ValidationError("请填写收费金额或收费明细", field_name="amount_fen")
        if items:
            total = sum(item["amount_fen"] for item in items)
            if total <= 0 or total > MAX_AMOUNT_FEN:
                raise ValidationError("收费明细合计必须大于0", field_name="items")
            if data.get("amount_fen") is not None and data["amount_fen"] != total:
                raise ValidationError(f"与收费明细合计（{total} 分）不一致", field_name="amount_fen")


class BillQuerySchema(PageArgsSchema):
    status = fields.String(validate=validate.OneOf([s.value for s in BillStatus]))
    source = fields.String(validate=validate.OneOf([s.value for s in BillSource]))
    date_from = fields.Date(metadata={"description": "Created on or after this day (China time)"})
    date_to = fields.Date(metadata={"description": "Created on or before this day (China time)"})

    @validates_schema
    def _range(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("date_from") and data.get("date_to") and data["date_from"] > data["date_to"]:
            raise ValidationError("开始日期不能晚于结束日期", field_name="date_from")


class BillCancelSchema(Schema):
    reason = fields.String(required=True, validate=validate.Length(min=2, max=200))


class PaymentCreateSchema(Schema):
    mode = fields.String(
        required=True,
        validate=validate.OneOf([PayMode.MERCHANT_QR.value, PayMode.PAYER_CODE.value]),
        metadata={"description": "merchant_qr: show a QR to the payer; payer_code: scan the payer's code"},
    )
    channel = fields.String(
        allow_none=True,
        validate=validate.OneOf([c.value for c in Channel]),
        metadata={"description": "wechat | alipay; required for merchant_qr (payer_code: from the code)"},
    )
    auth_code = fields.String(
        validate=validate.Length(min=1, max=64),
        load_only=True,
        metadata={"description": "payer_code: the scanned payment code (never stored or returned whole)"},
    )

    @validates_schema
    def _mode_fields(self, data: dict[str, Any], **_: Any) -> None:
        if data["mode"] == PayMode.MERCHANT_QR and not data.get("channel"):
            raise ValidationError("请选择支付渠道（微信或支付宝）", field_name="channel")
        if data["mode"] == PayMode.PAYER_CODE and not data.get("auth_code"):
            raise ValidationError("请扫描付款人的付款码", field_name="auth_code")
        if data["mode"] == PayMode.MERCHANT_QR and data.get("auth_code"):
            raise ValidationError("二维码收款不需要付款码", field_name="auth_code")


# --- output ------------------------------------------------------------------------------------------


class OrderSchema(Schema):
    id = fields.UUID(required=True)
    bill_id = fields.UUID(required=True)
    institution_id = fields.UUID(required=True)
    out_trade_no = fields.String(required=True)
    channel = fields.String(required=True)
    mode = fields.String(required=True)
    amount_fen = fields.Integer(required=True)
    subject = fields.String(required=True)
    state = fields.String(required=True)
    state_label = fields.Method("_state_label", required=True)
    closing = fields.Boolean(required=True, metadata={"description": "A close/stop was requested"})
    next_step = fields.Method("_next_step", required=True, metadata={"description": "What the desk does now"})
    qr_content = fields.String(allow_none=True, metadata={"description": "merchant_qr: what the QR encodes"})
    qr_png_url = fields.Method("_qr_png", allow_none=True)
    qr_svg_url = fields.Method("_qr_svg", allow_none=True)
    expires_at = fields.AwareDateTime(required=True)
    expired = fields.Method("_expired", required=True)
    payer_code_tail = fields.String(allow_none=True, metadata={"description": "Last 4 digits of the code"})
    paid_at = fields.AwareDateTime(allow_none=True)
    paid_amount_fen = fields.Integer(allow_none=True)
    refunded_fen = fields.Integer(required=True)
    provider_trade_no = fields.String(allow_none=True)
    decline_code = fields.String(allow_none=True)
    decline_message = fields.String(allow_none=True)
    cashier_id = fields.UUID(allow_none=True)
    created_at = fields.AwareDateTime(required=True)
    state_changed_at = fields.AwareDateTime(required=True)

    def _state_label(self, order: PaymentOrder) -> str:
        return ORDER_STATE_LABELS.get(order.state, order.state)

    def _next_step(self, order: PaymentOrder) -> str:
        return next_step(order)

    def _qr_png(self, order: PaymentOrder) -> str | None:
        return f"/api/v1/billing/orders/{order.id}/qr.png" if order.qr_content else None

    def _qr_svg(self, order: PaymentOrder) -> str | None:
        return f"/api/v1/billing/orders/{order.id}/qr.svg" if order.qr_content else None

    def _expired(self, order: PaymentOrder) -> bool:
        return order.expires_at <= clock.now()


class BillSchema(Schema):
    id = fields.UUID(required=True)
    bill_no = fields.String(required=True)
    institution_id = fields.UUID(required=True)
    status = fields.String(required=True)
    status_label = fields.Method("_status_label", required=True)
    amount_fen = fields.Integer(required=True)
    subject = fields.String(required=True)
    items = fields.List(fields.Dict(), required=True)
    source = fields.String(required=True)
    source_ref = fields.String(allow_none=True)
    resident_id = fields.UUID(allow_none=True)
    payer_name = fields.String(allow_none=True)
    cashier_id = fields.UUID(allow_none=True)
    paid_order_id = fields.UUID(allow_none=True)
    paid_at = fields.AwareDateTime(allow_none=True)
    cancelled_at = fields.AwareDateTime(allow_none=True)
    cancel_reason = fields.String(allow_none=True)
    created_at = fields.AwareDateTime(required=True)

    def _status_label(self, bill: Any) -> str:
        return BILL_STATUS_LABELS.get(bill.status, str(bill.status))


class BillDetailSchema(BillSchema):
    orders = fields.List(fields.Nested(OrderSchema), required=True, metadata={"description": "Oldest first"})


class OrderCloseSchema(Schema):
    reason = fields.String(allow_none=True, validate=validate.Length(max=200))
