"""The cashier's desk (`/api/v1/billing`): bills, payments (QR or scanned payment code), live order
status, QR images, close/stop.

Roles: cashier, nurse, doctor and centre_admin create bills and payments and close orders; district
roles (district_admin, auditor) read. Another centre's bill or order is a 404. Creating a bill or a
payment requires an `Idempotency-Key` (PAY-11): a retry with the same key returns the same bill or
order and never calls the provider twice.

A scanned payment code is passed to the provider and dropped: only its last 4 digits are kept, and
it appears in no response or log.
"""

from __future__ import annotations

import ipaddress
import uuid
from datetime import datetime, time, timedelta
from typing import Any

from flask import Response, current_app, request
from sqlalchemy import select

from app.billing import flows
from app.billing.jobs import passive
from app.billing.models import Bill, OrderState, PaymentOrder
from app.billing.qr import PNG_MIMETYPE, SVG_MIMETYPE, render_png, render_svg
from app.billing.schemas.desk import (
    BillCancelSchema,
    BillCreateSchema,
    BillDetailSchema,
    BillQuerySchema,
    BillSchema,
    OrderCloseSchema,
    OrderSchema,
    PaymentCreateSchema,
)
from app.billing.services import orders
from app.core import clock
from app.core.api import Blueprint
from app.core.auth import Role, require_principal
from app.core.db import commit, db
from app.core.errors import BusinessRuleViolation, Conflict, PermissionDenied
from app.core.pagination import Page, page_schema, paginate
from app.core.scope import get_or_404
from app.residents.models import Resident
from payments.base import Channel, PayMode

blp = Blueprint("billing_desk", __name__, url_prefix="/api/v1/billing", description="统一支付：收费台")

CREATORS = frozenset({Role.CASHIER.value, Role.NURSE.value, Role.DOCTOR.value, Role.CENTRE_ADMIN.value})
READERS = CREATORS | {Role.DISTRICT_ADMIN.value, Role.AUDITOR.value}
QR_STATES = (OrderState.PENDING, OrderState.PAYING)


def _image_doc(mimetype: str) -> dict[str, Any]:
    return {
        "200": {
            "description": "The order's QR code",
            "content": {mimetype: {"schema": {"type": "string", "format": "binary"}}},
        }
    }


class _BillView:
    """A bill with its payment orders, for `BillDetailSchema`."""

    def __init__(self, bill: Bill) -> None:
        self._bill = bill
        self.orders = list(
            db.session.execute(
                select(PaymentOrder)
                .where(PaymentOrder.bill_id == bill.id)
                .order_by(PaymentOrder.created_at, PaymentOrder.out_trade_no)
            ).scalars()
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self._bill, name)


def _client_ip() -> str:
    """The desk's address for the provider (WeChat spbill_create_ip wants IPv4)."""
    try:
        address = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        return "127.0.0.1"
    return str(address) if address.version == 4 else "127.0.0.1"


def _day_start(day: Any) -> datetime:
    return datetime.combine(day, time.min, tzinfo=clock.CHINA)


# --- bills -------------------------------------------------------------------------------------------


@blp.route("/bills", methods=["POST"])
@blp.auth(roles=CREATORS)
@blp.idempotent()
@blp.arguments(BillCreateSchema)
@blp.response(201, BillDetailSchema)
def create_bill(args: dict[str, Any]) -> Any:
    """Open a bill (收费单) of the caller's centre: items or an amount, subject, source.
    Roles: cashier, nurse, doctor, centre_admin."""
    principal = require_principal()
    if principal.institution_id is None:
        raise PermissionDenied("区级账号不能开具收费单", code="centre_required")
    resident_id = args.get("resident_id")
    if resident_id is not None:
        found = db.session.execute(select(Resident.id).where(Resident.id == resident_id)).first()
        if found is None:
            raise BusinessRuleViolation(
                "未找到该居民（或不属于本中心）",
                code="resident_not_found",
                errors={"resident_id": ["不存在"]},
            )
    items = args.get("items") or []
    amount = args.get("amount_fen")
    bill = orders.create_bill(
        institution_id=principal.institution_id,
        amount_fen=amount if amount is not None else sum(item["amount_fen"] for item in items),
        subject=args["subject"],
        actor=orders.actor_from_principal(),
        items=items,
        source=args["source"],
        source_ref=args.get("source_ref"),
        resident_id=resident_id,
        payer_name=args.get("payer_name"),
        cashier_id=principal.id if principal.kind == "staff" else None,
    )
    commit()
    return _BillView(bill)


@blp.route("/bills", methods=["GET"])
@blp.auth(roles=READERS)
@blp.arguments(BillQuerySchema, location="query")
@blp.response(200, page_schema(BillSchema))
def list_bills(args: dict[str, Any]) -> Page[Any]:
    """Bills of the caller's centre (district roles: all), newest first; filter by status, source,
    creation day (China time). Roles: cashier, nurse, doctor, centre_admin, district_admin, auditor."""
    statement = select(Bill).order_by(Bill.created_at.desc(), Bill.bill_no.desc())
    if args.get("status"):
        statement = statement.where(Bill.status == args["status"])
    if args.get("source"):
        statement = statement.where(Bill.source == args["source"])
    if args.get("date_from"):
        statement = statement.where(Bill.created_at >= _day_start(args["date_from"]))
    if args.get("date_to"):
        statement = statement.where(Bill.created_at < _day_start(args["date_to"]) + timedelta(days=1))
    return paginate(statement, args["page"], args["size"])


@blp.route("/bills/<uuid:bill_id>", methods=["GET"])
@blp.auth(roles=READERS)
@blp.response(200, BillDetailSchema)
def get_bill(bill_id: uuid.UUID) -> Any:
    """One bill with its payment orders (oldest first). Roles: as for the list."""
    return _BillView(get_or_404(Bill, bill_id, object_type="bill"))


@blp.route("/bills/<uuid:bill_id>/cancel", methods=["POST"])
@blp.auth(roles=CREATORS)
@blp.arguments(BillCancelSchema)
@blp.response(200, BillDetailSchema)
def cancel_bill(args: dict[str, Any], bill_id: uuid.UUID) -> Any:
    """Void an unpaid bill (409 while one of its orders is open: close it first; 409 when paid).
    Roles: cashier, nurse, doctor, centre_admin."""
    bill = get_or_404(Bill, bill_id, object_type="bill", action="update")
    orders.cancel_bill(bill, reason=args["reason"], actor=orders.actor_from_principal())
    commit()
    return _BillView(bill)


# --- payments ----------------------------------------------------------------------------------------


@blp.route("/bills/<uuid:bill_id>/payments", methods=["POST"])
@blp.auth(roles=CREATORS)
@blp.idempotent()
@blp.arguments(PaymentCreateSchema)
@blp.response(201, OrderSchema)
def start_payment(args: dict[str, Any], bill_id: uuid.UUID) -> Any:
    """Collect a bill: show a QR (`merchant_qr`, channel required) or charge the payer's scanned
    code (`payer_code`, wallet chosen by the code's prefix).

    The answer is immediate: a QR order is `pending` with `qr_content` and the QR image URLs; a
    payer-code order is `paid`, `failed` (with the decline message) or `paying`/`unknown`
    (付款人正在输入密码/确认中), and the desk then polls `GET /orders/{id}` while the documented
    query/reverse procedure runs in the background. A retry after a failure is a new order; a new
    order is refused (409 `payment_in_progress`) while an earlier one of the bill is being confirmed.
    Roles: cashier, nurse, doctor, centre_admin.
    """
    actor = orders.actor_from_principal()
    bill = get_or_404(Bill, bill_id, object_type="bill", action="update")
    passive.ensure_no_payment_in_progress(bill)
    auth_code: str | None = args.get("auth_code")
    order = orders.start_order(
        bill,
        mode=PayMode(args["mode"]),
        channel=Channel(args["channel"]) if args.get("channel") else None,
        client_ip=_client_ip(),
        actor=actor,
        auth_code=auth_code,
        cashier_id=actor.id if actor.kind == "staff" else None,
    )
    commit()  # the order and its out_trade_no exist before the provider hears of them
    order = flows.charge(order.id, actor=actor, auth_code=auth_code)
    passive.follow_up_after_charge(order)
    commit()
    return order


# --- orders ------------------------------------------------------------------------------------------


@blp.route("/orders/<uuid:order_id>", methods=["GET"])
@blp.auth(roles=READERS)
@blp.response(200, OrderSchema)
def get_order(order_id: uuid.UUID) -> Any:
    """The live status the desk polls: state and its Chinese label, amount, paid time, decline
    message, next step. Roles: cashier, nurse, doctor, centre_admin, district_admin, auditor."""
    return get_or_404(PaymentOrder, order_id, object_type="payment_order")


def _payable_qr(order_id: uuid.UUID) -> str:
    order = get_or_404(PaymentOrder, order_id, object_type="payment_order")
    if not order.qr_content:
        raise Conflict("该订单没有可展示的收款二维码", code="order_has_no_qr")
    if order.state not in QR_STATES or order.closing or order.expires_at <= clock.now():
        raise Conflict(
            "二维码已失效（订单已支付、已关闭或已过期），如需收款请重新发起", code="qr_not_payable"
        )
    return order.qr_content


def _image(data: bytes, mimetype: str) -> Response:
    response = current_app.response_class(data, mimetype=mimetype)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@blp.route("/orders/<uuid:order_id>/qr.png", methods=["GET"])
@blp.auth(roles=CREATORS)
@blp.doc(responses=_image_doc(PNG_MIMETYPE))
@blp.alt_response(409, response="DEFAULT_ERROR", description="没有二维码，或订单已不可支付/已过期")
def order_qr_png(order_id: uuid.UUID) -> Response:
    """The order's QR code as PNG (while payable). Roles: cashier, nurse, doctor, centre_admin."""
    return _image(render_png(_payable_qr(order_id)), PNG_MIMETYPE)


@blp.route("/orders/<uuid:order_id>/qr.svg", methods=["GET"])
@blp.auth(roles=CREATORS)
@blp.doc(responses=_image_doc(SVG_MIMETYPE))
@blp.alt_response(409, response="DEFAULT_ERROR", description="没有二维码，或订单已不可支付/已过期")
def order_qr_svg(order_id: uuid.UUID) -> Response:
    """The order's QR code as SVG (while payable). Roles: cashier, nurse, doctor, centre_admin."""
    return _image(render_svg(_payable_qr(order_id)), SVG_MIMETYPE)


@blp.route("/orders/<uuid:order_id>/close", methods=["POST"])
@blp.auth(roles=CREATORS)
@blp.arguments(OrderCloseSchema)
@blp.response(200, OrderSchema)
def close_order(args: dict[str, Any], order_id: uuid.UUID) -> Any:
    """Close a QR order or stop a payer-code payment.

    The provider is asked first: a trade found paid is recorded as paid and the answer is 409
    `order_already_paid`. A QR order is closed at the provider before it is closed here (WeChat
    refuses within 5 minutes of creation: the order stays `closing` and is closed then). Stopping a
    payer-code payment reverses it (on WeChat not sooner than 15 s after the charge: scheduled).
    Closing a closed, reversed or failed order changes nothing. Roles: cashier, nurse, doctor,
    centre_admin.
    """
    order = get_or_404(PaymentOrder, order_id, object_type="payment_order", action="update")
    return passive.close_order(order.id, actor=orders.actor_from_principal())
