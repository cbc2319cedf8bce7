"""PAY-04 under real concurrency (PostgreSQL; SQLite serialises writers): 50 copies of one valid
notification and 5 "the query says paid" recoveries, all at once, give exactly one state change.

Each notification is a real request through the Flask app (its own application context, session
and pooled connection); each recovery is `flows.query_and_apply` in its own application context,
asking the real adapter over HTTP. The barrier releases them together."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from app.billing import flows
from app.billing.models import (
    Bill,
    BillStatus,
    OrderState,
    PaymentAnomaly,
    PaymentNotification,
    PaymentOrder,
    PaymentOrderEvent,
)
from app.billing.services.orders import SYSTEM
from app.core.db import db, rollback
from app.core.outbox import OutboxMessage
from tests.billing.test_callbacks import RIGS, captured_notice, new_order, scan_and_pay
from tests.factories import make_centre

NOTIFICATIONS = 50
QUERIES = 5


@pytest.fixture
def pg_only(is_postgres: bool) -> None:
    if not is_postgres:
        pytest.skip("concurrency test: needs PostgreSQL (set DATABASE_URL); SQLite serialises writers")


def _count(model: Any, *where: Any) -> int:
    return int(db.session.execute(select(func.count()).select_from(model).where(*where)).scalar_one())


@pytest.mark.postgres
@pytest.mark.parametrize("rig_name", ["wechat", "alipay"])
def test_50_copies_of_a_notification_and_5_queries_change_the_order_once(
    app: Flask, pg_only: None, committing_db: None, rig_name: str
) -> None:
    rig = RIGS[rig_name](app)
    order = new_order(rig, make_centre())
    scan_and_pay(rig, order)
    body = captured_notice(app, rig, order.out_trade_no)
    order_id, bill_id = order.id, order.bill_id
    db.session.remove()  # the test's own connection goes back to the pool

    barrier = threading.Barrier(NOTIFICATIONS + QUERIES)
    replies: list[tuple[int, bytes]] = []
    queries: list[str] = []
    lock = threading.Lock()

    def notify() -> None:
        client = app.test_client()
        barrier.wait(timeout=30)
        try:
            response = client.post(rig.pay_path, data=body, headers={"Content-Type": rig.content_type})
            reply = (response.status_code, response.data)
        except Exception as exc:  # reported by the assertion: never a hang
            reply = (0, repr(exc).encode())
        with lock:
            replies.append(reply)

    def query() -> None:
        with app.app_context():
            barrier.wait(timeout=30)
            try:
                outcome = flows.query_and_apply(order_id, source="query", actor=SYSTEM)
            except Exception as exc:
                rollback()
                outcome = type(exc).__name__
            finally:
                db.session.remove()
        with lock:
            queries.append(outcome)

    threads = [threading.Thread(target=notify) for _ in range(NOTIFICATIONS)]
    threads += [threading.Thread(target=query) for _ in range(QUERIES)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)

    assert replies == [(200, rig.ok_reply())] * NOTIFICATIONS
    assert set(queries) <= {"applied", "duplicate"}, queries
    db.session.expire_all()
    outcomes = list(db.session.execute(select(PaymentNotification.outcome)).scalars())
    assert len(outcomes) == NOTIFICATIONS
    assert set(outcomes) <= {"applied", "duplicate"}, outcomes
    assert outcomes.count("applied") + queries.count("applied") == 1
    assert db.session.get_one(PaymentOrder, order_id).state == OrderState.PAID
    assert (
        _count(
            PaymentOrderEvent, PaymentOrderEvent.order_id == order_id, PaymentOrderEvent.to_state == "paid"
        )
        == 1
    )
    assert _count(OutboxMessage, OutboxMessage.topic == "billing.order_paid") == 1
    bill = db.session.get_one(Bill, bill_id)
    assert (bill.status, bill.paid_order_id) == (BillStatus.PAID, order_id)
    assert _count(PaymentAnomaly) == 0
    assert rig.ledger.payments_of(order.out_trade_no) == 1
