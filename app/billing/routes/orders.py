"""Staff views of payment orders (`/api/v1/billing/orders`, `/reports/daily`): list, CSV export,
an order's history, the daily charge summary. Read-only; centre staff see their own centre."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

from flask import Flask, Response, current_app, g

from app.billing.schemas.orders import (
    BillingOrderFilterSchema,
    BillingOrderQuerySchema,
    BillingOrderRowSchema,
    DailyChargeQuerySchema,
    DailyChargeReportSchema,
    PaymentOrderEventSchema,
)
from app.billing.services import reports
from app.billing.services.reports import OrderFilters
from app.core import clock
from app.core.api import Blueprint
from app.core.auth import Role, require_principal
from app.core.db import commit
from app.core.pagination import Page, page_schema

blp = Blueprint("billing_orders", __name__, url_prefix="/api/v1/billing", description="统一支付")

READERS = frozenset({Role.CASHIER, Role.CENTRE_ADMIN, Role.DISTRICT_ADMIN, Role.AUDITOR})

CSV_RESPONSE = {
    "200": {
        "description": "UTF-8 CSV with a BOM (opens in Excel), Chinese headers, amounts in yuan",
        "content": {"text/csv": {"schema": {"type": "string"}}},
    }
}


@blp.route("/orders", methods=["GET"])
@blp.auth(roles=READERS)
@blp.arguments(BillingOrderQuerySchema, location="query")
@blp.response(200, page_schema(BillingOrderRowSchema))
def list_orders(args: dict[str, Any]) -> Page[Any]:
    """Payment orders, newest first, filtered by centre, cashier, mode, channel, state, date range
    (China time; created or paid), amount range and number (out_trade_no / bill number).
    Roles: cashier, centre_admin, district_admin, auditor."""
    page, size = args.pop("page"), args.pop("size")
    return reports.list_orders(OrderFilters.from_args(args), page=page, size=size)


@blp.route("/orders/export.csv", methods=["GET"])
@blp.auth(roles=READERS)
@blp.arguments(BillingOrderFilterSchema, location="query")
@blp.doc(responses=CSV_RESPONSE)
@blp.alt_response(422, response="DEFAULT_ERROR", description="export_too_large: 超过单次导出上限")
def export_orders(args: dict[str, Any]) -> Response:
    """The same filters as the list, as a streamed CSV (at most 100 000 rows; audited).
    Roles: cashier, centre_admin, district_admin, auditor."""
    filters = OrderFilters.from_args(args)
    reports.start_export(filters)
    commit()  # the audit row is durable before the first byte leaves
    stamp = clock.local(clock.now()).strftime("%Y%m%d%H%M%S")
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    principal = require_principal()

    def body() -> Iterator[str]:
        # Streamed after the view returned: each batch runs in an application context (and
        # session) of its own, with the caller as principal so that the centre scope applies.
        cursor: reports.Cursor | None = None
        while True:
            with app.app_context():
                g.principal = principal
                text, cursor = reports.export_batch(filters, cursor)
            yield text
            if cursor is None:
                return

    response = app.response_class(body(), mimetype="text/csv")
    response.headers["Content-Type"] = "text/csv; charset=utf-8"
    response.headers["Content-Disposition"] = f'attachment; filename="payment-orders-{stamp}.csv"'
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@blp.route("/orders/<uuid:order_id>/events", methods=["GET"])
@blp.auth(roles=READERS)
@blp.response(200, PaymentOrderEventSchema(many=True))
def order_events(order_id: uuid.UUID) -> Any:
    """The order's history (every state change, its source and actor), oldest first.
    Roles: cashier, centre_admin, district_admin, auditor."""
    return reports.order_events(order_id)


@blp.route("/reports/daily", methods=["GET"])
@blp.auth(roles=READERS)
@blp.arguments(DailyChargeQuerySchema, location="query")
@blp.response(200, DailyChargeReportSchema)
@blp.alt_response(422, response="DEFAULT_ERROR", description="report_range_too_long: 最长 92 天")
def daily_report(args: dict[str, Any]) -> Any:
    """Daily charge summary per centre, channel, mode and cashier: payments (by paid time), refunds
    (by success time), net, in exact fen and yuan strings. Roles: cashier, centre_admin,
    district_admin, auditor (centre staff: their own centre)."""
    return reports.daily_summary(**args)
