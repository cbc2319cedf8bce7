"""The "nothing lost" invariant checker for payments (REL-07), read-only.

Run after chaos tests, nightly on staging and daily on production (`flask billing-invariants`,
exit 1 on any violation). Each check returns `Violation`s naming the rows:

1. paid orders ↔ the provider: every PAID order has a provider trade number and a paid amount equal
   to its amount; with a provider statement at hand (`check_against_statement`), PAID orders of that
   day are in bijection with its successful payments;
2. a bill is paid by at most one PAID order, and a PAID bill names one;
3. (ledger balances belong to settlement, a later issue: not checked here yet);
4. refunds: reserved `refunded_fen` ≤ paid amount, and it equals the sum of the order's refunds that
   are not cancelled; succeeded refunds never exceed the paid amount;
5. no order or refund in a transient state older than expiry + 24 h 10 min (WeChat's retry span);
6. each order's event log is a valid path through `ORDER_TRANSITIONS` ending at its current state;
7. every payment anomaly is resolved or has an owner within 24 h.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from sqlalchemy import select

from app.billing.models import (
    ORDER_TRANSITIONS,
    AnomalyStatus,
    Bill,
    BillStatus,
    OrderState,
    PaymentAnomaly,
    PaymentOrder,
    PaymentOrderEvent,
    Refund,
    RefundStatus,
)
from app.billing.models.orders import OPEN_ORDER_STATES
from app.core import clock
from app.core.db import db
from app.core.scope import SKIP_SCOPE
from payments.base import Statement, StatementKind

TRANSIENT_GRACE = timedelta(hours=24, minutes=10)
ANOMALY_OWNER_WITHIN = timedelta(hours=24)
TRANSIENT_REFUNDS = (RefundStatus.PENDING, RefundStatus.PROCESSING)


@dataclass(frozen=True)
class Violation:
    rule: str  # e.g. "paid_order_facts", "refund_exceeds_paid"
    object_type: str
    object_id: str
    detail: str


def _scalars(stmt: object) -> list[object]:
    return list(db.session.execute(stmt.execution_options(**{SKIP_SCOPE: True})).scalars())  # type: ignore[attr-defined]


def check_paid_orders() -> Iterator[Violation]:
    for order in _scalars(select(PaymentOrder).where(PaymentOrder.state == OrderState.PAID)):
        assert isinstance(order, PaymentOrder)
        if not order.provider_trade_no or order.paid_amount_fen != order.amount_fen or order.paid_at is None:
            yield Violation(
                "paid_order_facts",
                "payment_order",
                str(order.id),
                f"provider_trade_no={order.provider_trade_no!r} paid_amount_fen={order.paid_amount_fen} "
                f"amount_fen={order.amount_fen} paid_at={order.paid_at}",
            )


def check_bills() -> Iterator[Violation]:
    paid_per_bill: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
    for order in _scalars(select(PaymentOrder).where(PaymentOrder.state == OrderState.PAID)):
        assert isinstance(order, PaymentOrder)
        paid_per_bill[order.bill_id].append(order.id)
    refunded_duplicates = {
        order_id
        for order_id in _scalars(
            select(Refund.order_id).where(Refund.origin == "anomaly", Refund.status != RefundStatus.CANCELLED)
        )
    }
    for bill in _scalars(select(Bill)):
        assert isinstance(bill, Bill)
        paid = paid_per_bill.get(bill.id, [])
        unrefunded = [o for o in paid if o not in refunded_duplicates or o == bill.paid_order_id]
        if len(unrefunded) > 1:
            yield Violation(
                "bill_paid_twice", "bill", str(bill.id), f"paid orders without a refund: {unrefunded}"
            )
        if bill.status == BillStatus.PAID and (bill.paid_order_id is None or bill.paid_order_id not in paid):
            yield Violation(
                "bill_paid_without_order", "bill", str(bill.id), f"paid_order_id={bill.paid_order_id}"
            )
        if bill.status != BillStatus.PAID and paid and any(o not in refunded_duplicates for o in paid):
            yield Violation(
                "order_paid_bill_not", "bill", str(bill.id), f"status={bill.status} paid orders={paid}"
            )


def check_refunds() -> Iterator[Violation]:
    reserved: dict[uuid.UUID, int] = defaultdict(int)
    succeeded: dict[uuid.UUID, int] = defaultdict(int)
    for refund in _scalars(select(Refund)):
        assert isinstance(refund, Refund)
        if refund.status != RefundStatus.CANCELLED:
            reserved[refund.order_id] += refund.amount_fen
        if refund.status == RefundStatus.SUCCEEDED:
            succeeded[refund.order_id] += refund.amount_fen
    for order in _scalars(select(PaymentOrder).where(PaymentOrder.refunded_fen > 0)):
        assert isinstance(order, PaymentOrder)
        paid = order.paid_amount_fen or 0
        if order.refunded_fen > paid:
            yield Violation(
                "refund_exceeds_paid", "payment_order", str(order.id), f"{order.refunded_fen} > {paid}"
            )
        if order.refunded_fen != reserved.get(order.id, 0):
            yield Violation(
                "refund_reservation_drift",
                "payment_order",
                str(order.id),
                f"refunded_fen={order.refunded_fen} but refunds not cancelled sum to {reserved.get(order.id, 0)}",
            )
    for order_id, total in succeeded.items():
        paid_order = db.session.get(PaymentOrder, order_id, execution_options={SKIP_SCOPE: True})
        if paid_order is not None and total > (paid_order.paid_amount_fen or 0):
            yield Violation("refund_exceeds_paid", "payment_order", str(order_id), f"succeeded {total}")


def check_transient(now_grace: timedelta = TRANSIENT_GRACE) -> Iterator[Violation]:
    now = clock.now()
    open_states = [str(s) for s in OPEN_ORDER_STATES]
    for order in _scalars(select(PaymentOrder).where(PaymentOrder.state.in_(open_states))):
        assert isinstance(order, PaymentOrder)
        if order.expires_at + now_grace < now:
            yield Violation(
                "stuck_order",
                "payment_order",
                str(order.id),
                f"{order.state} since {order.state_changed_at.isoformat()}",
            )
    for refund in _scalars(select(Refund).where(Refund.status.in_([str(s) for s in TRANSIENT_REFUNDS]))):
        assert isinstance(refund, Refund)
        if refund.created_at + now_grace < now:
            yield Violation(
                "stuck_refund",
                "refund",
                str(refund.id),
                f"{refund.status} since {refund.created_at.isoformat()}",
            )


def check_order_histories() -> Iterator[Violation]:
    events: dict[uuid.UUID, list[PaymentOrderEvent]] = defaultdict(list)
    for event in _scalars(
        select(PaymentOrderEvent).order_by(PaymentOrderEvent.order_id, PaymentOrderEvent.id)
    ):
        assert isinstance(event, PaymentOrderEvent)
        events[event.order_id].append(event)
    for order in _scalars(select(PaymentOrder)):
        assert isinstance(order, PaymentOrder)
        path = events.get(order.id, [])
        state: OrderState | None = None
        for event in path:
            target = OrderState(event.to_state)
            if state is None:
                if event.from_state is not None or target is not OrderState.CREATED:
                    yield Violation(
                        "history_start", "payment_order", str(order.id), f"starts with {event.to_state}"
                    )
            elif event.from_state != state or target not in ORDER_TRANSITIONS[state]:
                yield Violation(
                    "history_invalid_step",
                    "payment_order",
                    str(order.id),
                    f"{event.from_state} -> {event.to_state} after {state}",
                )
            state = target
        if state is None or state != order.state:
            yield Violation(
                "history_end", "payment_order", str(order.id), f"log ends at {state}, order is {order.state}"
            )


def check_anomalies(within: timedelta = ANOMALY_OWNER_WITHIN) -> Iterator[Violation]:
    cutoff = clock.now() - within
    for anomaly in _scalars(
        select(PaymentAnomaly).where(
            PaymentAnomaly.status == AnomalyStatus.OPEN,
            PaymentAnomaly.owner_id.is_(None),
            PaymentAnomaly.created_at < cutoff,
        )
    ):
        assert isinstance(anomaly, PaymentAnomaly)
        yield Violation(
            "anomaly_unowned",
            "payment_anomaly",
            str(anomaly.id),
            f"{anomaly.kind} since {anomaly.created_at.isoformat()}",
        )


def check_against_statement(statement: Statement) -> Iterator[Violation]:
    """Item 1 in full: the day's PAID orders of a channel ↔ the statement's successful payments."""
    billed = {
        line.out_trade_no
        for line in statement.lines
        if line.kind is StatementKind.PAYMENT and line.amount_fen > 0
    }
    start = datetime.combine(statement.bill_date, time.min, tzinfo=clock.CHINA)
    paid_that_day = {
        str(no)
        for no in _scalars(
            select(PaymentOrder.out_trade_no).where(
                PaymentOrder.channel == str(statement.channel),
                PaymentOrder.state == OrderState.PAID,
                PaymentOrder.paid_at >= start,
                PaymentOrder.paid_at < start + timedelta(days=1),
            )
        )
    }
    day = statement.bill_date
    for trade_no in sorted(billed - paid_that_day):
        yield Violation(
            "provider_only_payment",
            "out_trade_no",
            trade_no,
            f"in the {statement.channel} bill of {day}, not paid here",
        )
    for trade_no in sorted(paid_that_day - billed):
        yield Violation(
            "local_only_payment", "out_trade_no", trade_no, f"paid here on {day}, absent from the bill"
        )


CHECKS = (
    check_paid_orders,
    check_bills,
    check_refunds,
    check_transient,
    check_order_histories,
    check_anomalies,
)


def violations() -> list[Violation]:
    found: list[Violation] = []
    for check in CHECKS:
        found.extend(check())
    return found
