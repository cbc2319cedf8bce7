"""Billing models. One module per concern; every model is re-exported here so Alembic sees it."""

from app.billing.models.orders import (
    ORDER_STATE_LABELS,
    ORDER_TRANSITIONS,
    REFUND_STATUS_LABELS,
    REFUND_TRANSITIONS,
    AggregateQr,
    AnomalyKind,
    AnomalyStatus,
    Bill,
    BillSource,
    BillStatus,
    OrderState,
    PaymentAnomaly,
    PaymentNotification,
    PaymentOrder,
    PaymentOrderEvent,
    Refund,
    RefundOrigin,
    RefundStatus,
)
from app.billing.models.reconciliation import *  # noqa: F403 - the reconciliation models (own module)

__all__ = [
    "ORDER_STATE_LABELS",
    "ORDER_TRANSITIONS",
    "REFUND_STATUS_LABELS",
    "REFUND_TRANSITIONS",
    "AggregateQr",
    "AnomalyKind",
    "AnomalyStatus",
    "Bill",
    "BillSource",
    "BillStatus",
    "OrderState",
    "PaymentAnomaly",
    "PaymentNotification",
    "PaymentOrder",
    "PaymentOrderEvent",
    "Refund",
    "RefundOrigin",
    "RefundStatus",
]
