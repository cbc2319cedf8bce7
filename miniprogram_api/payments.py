"""Mini-program payments (`/mp/v1`): the resident's open bills and WeChat JSAPI payment.

`wx.requestPayment` success in the mini-program is never trusted: the client calls
`POST /mp/v1/payments/{order_id}/confirm`, which only makes the server query WeChat Pay (PAY-07).
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import request

from app.billing import flows, providers
from app.billing.models import Bill, OrderState, PaymentOrder
from app.billing.schemas.cashier import EmptyArgsSchema, MpBillSchema, MpPaymentSchema
from app.billing.services import cashier
from app.billing.services.orders import actor_from_principal
from app.core.api import Blueprint
from app.core.auth import require_principal
from app.core.db import commit, db
from app.mp_accounts.services.sessions import RESIDENT_ROLE, current_user
from miniprogram_api._docs import errors
from payments.base import Channel

RESIDENT = [RESIDENT_ROLE]

blp = Blueprint(
    "mp_payments",
    __name__,
    url_prefix="/mp/v1",
    description="Mini-program: the resident's bills (self and family) and WeChat Pay (JSAPI)",
)


def _bill_view(bill: Bill) -> dict[str, Any]:
    return {
        "id": bill.id,
        "bill_no": bill.bill_no,
        "institution_id": bill.institution_id,
        "centre_name": cashier.centre_name(bill.institution_id),
        "subject": bill.subject,
        "items": bill.items,
        "amount_fen": bill.amount_fen,
        "payer_name": bill.payer_name,
        "status": bill.status,
        "created_at": bill.created_at,
    }


def _payment_view(order: PaymentOrder) -> dict[str, Any]:
    view = cashier.public_order(order)
    payable = order.state == OrderState.PENDING and bool(order.client_params)
    params = None
    if payable and order.client_params:
        # wx.requestPayment takes these five (the appId is the mini-program's own).
        params = {k: str(v) for k, v in order.client_params.items() if k != "appId"}
    return {
        "order_id": order.id,
        "bill_id": order.bill_id,
        "state": view["state"],
        "state_text": view["state_text"],
        "final": view["final"],
        "paid": view["paid"],
        "amount_fen": order.amount_fen,
        "paid_at": order.paid_at,
        "expires_at": order.expires_at,
        "message": view["message"],
        "request_payment": params,
    }


@blp.route("/bills", methods=["GET"])
@blp.auth(roles=RESIDENT)
@blp.response(200, MpBillSchema(many=True))
def list_bills() -> Any:
    """The open bills of the caller and of the family members they act for (newest first)."""
    user = current_user(require_principal())
    return [_bill_view(b) for b in cashier.mp_open_bills(user.id)]


@blp.route("/bills/<uuid:bill_id>/payments", methods=["POST"])
@blp.auth(roles=RESIDENT)
@blp.idempotent()
@blp.arguments(EmptyArgsSchema)
@blp.response(201, MpPaymentSchema)
@errors(blp, 404, 409, 422)
def pay_bill(args: dict[str, Any], bill_id: uuid.UUID) -> Any:
    """Pay one of the caller's (family's) bills with WeChat Pay: the reply's `request_payment`
    goes to `wx.requestPayment`. Needs an `Idempotency-Key`; retrying with the same key returns
    the same order. Anyone else's bill is 404. A declined charge is answered 201 with state
    `failed` and a Chinese `message`; an unknown outcome with state `unknown` (then confirm)."""
    user = current_user(require_principal())
    bill = cashier.mp_bill(user.id, bill_id)
    actor = actor_from_principal()
    start = cashier.start_jsapi(
        bill,
        channel=Channel.WECHAT,
        payer_account=user.openid,
        client_ip=request.remote_addr or "127.0.0.1",
        actor=actor,
        payer_app=providers.MP_APP,  # the openid is the mini-program's (code2session): its appid pays
    )
    commit()  # the order and its out_trade_no exist before WeChat Pay hears of it
    order = start.order
    if start.needs_charge:
        order = flows.charge(order.id, actor=actor)
    return _payment_view(order)


@blp.route("/payments/<uuid:order_id>/confirm", methods=["POST"])
@blp.auth(roles=RESIDENT)
@blp.response(200, MpPaymentSchema)
@errors(blp, 404)
def confirm_payment(order_id: uuid.UUID) -> Any:
    """After `wx.requestPayment` (success or not): the server queries WeChat Pay and answers the
    order as it then stands. This never marks an order paid by itself (PAY-07)."""
    user = current_user(require_principal())
    order = cashier.mp_order(user.id, order_id)
    if not OrderState(order.state).is_final:
        flows.query_and_apply(order.id, source="query", actor=actor_from_principal())
        db.session.refresh(order)
    return _payment_view(order)


@blp.route("/payments/<uuid:order_id>", methods=["GET"])
@blp.auth(roles=RESIDENT)
@blp.response(200, MpPaymentSchema)
@errors(blp, 404)
def get_payment(order_id: uuid.UUID) -> Any:
    """One of the caller's payments."""
    user = current_user(require_principal())
    return _payment_view(cashier.mp_order(user.id, order_id))
