"""Refunds and payment anomalies (`/api/v1/billing`).

- `POST /orders/{order_id}/refunds` (Idempotency-Key): full or partial refund of a paid order; the
  amount is reserved at once (409 `refund_exceeds_paid` beyond what is left, 422 after 50 refunds)
  and applied at the provider after commit. Roles: cashier, centre_admin, district_admin.
- `GET /refunds`, `GET /refunds/{id}`: cashiers, admins and auditors (own centre; district: all).
- `POST /refunds/{id}/retry` (cashier, admins), `POST /refunds/{id}/cancel` (admins): only for a
  FAILED refund; a retry reuses the refund number, a cancel releases the reserved amount.
- `GET /anomalies`, `POST /anomalies/{id}/resolve`: district staff and centre admins/auditors of
  the anomaly's centre; resolving makes the caller its owner.
"""

from __future__ import annotations

import uuid
from typing import Any

from app.billing.models import PaymentOrder, Refund, RefundOrigin
from app.billing.schemas.refunds import (
    AnomalyQuerySchema,
    AnomalyResolveSchema,
    AnomalySchema,
    RefundCancelSchema,
    RefundCreateSchema,
    RefundQuerySchema,
    RefundSchema,
)
from app.billing.services import refunds as services
from app.billing.services.orders import actor_from_principal, request_refund
from app.core.api import Blueprint
from app.core.auth import ADMINS, Role, require_principal
from app.core.db import commit
from app.core.pagination import Page, page_schema
from app.core.scope import get_or_404

blp = Blueprint(
    "billing_refunds", __name__, url_prefix="/api/v1/billing", description="统一支付：退款与支付异常"
)

REFUNDERS = frozenset({Role.CASHIER.value}) | ADMINS
REFUND_READERS = REFUNDERS | {Role.AUDITOR.value}
ANOMALY_READERS = ADMINS | {Role.AUDITOR.value}


@blp.route("/orders/<uuid:order_id>/refunds", methods=["POST"])
@blp.auth(roles=REFUNDERS)
@blp.idempotent()
@blp.arguments(RefundCreateSchema)
@blp.response(201, RefundSchema)
@blp.alt_response(
    409, response="DEFAULT_ERROR", description="refund_exceeds_paid: 超过可退金额；order_not_paid"
)
@blp.alt_response(422, response="DEFAULT_ERROR", description="too_many_refunds: 已退款 50 次")
def create_refund(args: dict[str, Any], order_id: uuid.UUID) -> Any:
    """Refund all or part of a paid order (needs an `Idempotency-Key`). The amount is reserved in
    the same transaction; the provider is called after commit with a refund number that every
    retry reuses. Roles: cashier, centre_admin, district_admin."""
    order = get_or_404(PaymentOrder, order_id, object_type="payment_order", action="update")
    refund = request_refund(
        order,
        amount_fen=args["amount_fen"],
        reason=args["reason"],
        origin=RefundOrigin.STAFF,
        actor=actor_from_principal(),
    )
    commit()
    return refund


@blp.route("/refunds", methods=["GET"])
@blp.auth(roles=REFUND_READERS)
@blp.arguments(RefundQuerySchema, location="query")
@blp.response(200, page_schema(RefundSchema))
def list_refunds(args: dict[str, Any]) -> Page[Any]:
    """Refunds of the caller's centre (district roles: all), newest first; filter by status,
    origin, order, bill and creation time. Roles: cashier, centre_admin, district_admin, auditor."""
    return services.list_refunds(**args)


@blp.route("/refunds/<uuid:refund_id>", methods=["GET"])
@blp.auth(roles=REFUND_READERS)
@blp.response(200, RefundSchema)
def get_refund(refund_id: uuid.UUID) -> Any:
    """One refund with its history. Roles: cashier, centre_admin, district_admin, auditor."""
    return get_or_404(Refund, refund_id, object_type="refund")


@blp.route("/refunds/<uuid:refund_id>/retry", methods=["POST"])
@blp.auth(roles=REFUNDERS)
@blp.response(200, RefundSchema)
@blp.alt_response(
    409, response="DEFAULT_ERROR", description="refund_not_failed: 只有退款失败的退款单可以重试"
)
def retry_refund(refund_id: uuid.UUID) -> Any:
    """Submit a FAILED refund again with the same refund number. Roles: cashier, centre_admin,
    district_admin."""
    refund = get_or_404(Refund, refund_id, object_type="refund", action="update")
    services.retry_refund(refund, actor=actor_from_principal())
    commit()
    return refund


@blp.route("/refunds/<uuid:refund_id>/cancel", methods=["POST"])
@blp.auth(roles=ADMINS)
@blp.arguments(RefundCancelSchema)
@blp.response(200, RefundSchema)
@blp.alt_response(
    409, response="DEFAULT_ERROR", description="refund_not_failed: 只有退款失败的退款单可以取消"
)
def cancel_refund(args: dict[str, Any], refund_id: uuid.UUID) -> Any:
    """Give up a FAILED refund; its amount becomes refundable again. Roles: centre_admin,
    district_admin."""
    refund = get_or_404(Refund, refund_id, object_type="refund", action="update")
    services.cancel_refund(refund, reason=args["reason"], actor=actor_from_principal())
    commit()
    return refund


@blp.route("/anomalies", methods=["GET"])
@blp.auth(roles=ANOMALY_READERS)
@blp.arguments(AnomalyQuerySchema, location="query")
@blp.response(200, page_schema(AnomalySchema))
def list_anomalies(args: dict[str, Any]) -> Page[Any]:
    """Payment anomalies (paid after close, duplicate payment, mismatches, refund anomalies, ...):
    district roles see all, centre staff their centre's. Roles: centre_admin, district_admin, auditor."""
    return services.list_anomalies(require_principal(), **args)


@blp.route("/anomalies/<uuid:anomaly_id>/resolve", methods=["POST"])
@blp.auth(roles=ADMINS)
@blp.arguments(AnomalyResolveSchema)
@blp.response(200, AnomalySchema)
@blp.alt_response(409, response="DEFAULT_ERROR", description="anomaly_resolved: 已处理")
def resolve_anomaly(args: dict[str, Any], anomaly_id: uuid.UUID) -> Any:
    """Close an anomaly with a written resolution; the caller becomes its owner. Roles:
    centre_admin (own centre), district_admin."""
    anomaly = services.resolve_anomaly(require_principal(), anomaly_id, resolution=args["resolution"])
    commit()
    return anomaly
