"""Refund races decided by the database (PostgreSQL; SQLite serialises writers): two cashiers
refunding 60% of one order at once, and several workers polling the same refunds."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from app.billing import flows
from app.billing.jobs import refunds as refund_jobs
from app.billing.models import OrderState, PaymentOrder, Refund, RefundOrigin, RefundStatus
from app.billing.services import orders
from app.billing.services.orders import SYSTEM
from app.core.auth import Actor, Role
from app.core.db import commit, db
from app.institutions.models import Institution
from payments.base import Channel, PayMode
from payments.fake import FakeProvider
from tests.billing.factories import install_fake_providers, make_bill
from tests.factories import make_centre, make_staff, token_for

PAID = 10_000


@pytest.fixture
def postgres_only(is_postgres: bool) -> None:
    if not is_postgres:
        pytest.skip("concurrent writers need PostgreSQL (set DATABASE_URL); SQLite serialises writers")


@pytest.fixture
def world(postgres_only: None, committing_db: None, app: Flask) -> Iterator[dict[str, Any]]:
    fakes = install_fake_providers(app)
    centre = make_centre()
    yield {"centre": centre, "fake": fakes[Channel.WECHAT]}


def paid_order(centre: Institution, fake: FakeProvider) -> PaymentOrder:
    order = orders.start_order(
        make_bill(centre, PAID),
        mode=PayMode.MERCHANT_QR,
        channel=Channel.WECHAT,
        client_ip="127.0.0.1",
        actor=SYSTEM,
    )
    commit()
    order = flows.charge(order.id, actor=SYSTEM)
    fake.ledger.scan(order.qr_content or "", fake.ledger.new_payer())
    assert flows.query_and_apply(order.id, source="query", actor=SYSTEM) == "applied"
    db.session.refresh(order)
    assert order.state == OrderState.PAID
    return order


def _race(app: Flask, count: int, work: Callable[[int], Any]) -> list[Any]:
    barrier = threading.Barrier(count)
    results: list[Any] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        try:
            barrier.wait(timeout=30)
            with app.app_context():
                result = work(n)
            with lock:
                results.append(result)
        except BaseException as exc:  # reported below
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == [] and len(results) == count
    return results


@pytest.mark.postgres
def test_two_concurrent_sixty_percent_refunds_accept_exactly_one(app: Flask, world: dict[str, Any]) -> None:
    order = paid_order(world["centre"], world["fake"])
    tokens = [token_for(make_staff(Role.CASHIER, world["centre"])) for _ in range(2)]
    url = f"/api/v1/billing/orders/{order.id}/refunds"

    def send(n: int) -> Any:
        headers = {"Authorization": f"Bearer {tokens[n]}", "Idempotency-Key": f"race-{uuid.uuid4().hex}"}
        return app.test_client().post(url, json={"amount_fen": 6_000, "reason": "并发退款"}, headers=headers)

    responses = _race(app, 2, send)
    codes = sorted((r.status_code, (r.json or {}).get("code")) for r in responses)
    assert codes == [(201, None), (409, "refund_exceeds_paid")], [r.get_json() for r in responses]
    db.session.expire_all()
    stored = db.session.get_one(PaymentOrder, order.id)
    assert (stored.refunded_fen, stored.refund_count) == (6_000, 1)
    assert db.session.execute(select(func.count()).select_from(Refund)).scalar_one() == 1


@pytest.mark.postgres
def test_several_workers_polling_apply_each_refund_once(app: Flask, world: dict[str, Any]) -> None:
    order = paid_order(world["centre"], world["fake"])
    staff = Actor("staff", None, Role.CASHIER.value)
    created = []
    for _ in range(6):
        created.append(
            orders.request_refund(
                order, amount_fen=1_000, reason="分次退款", origin=RefundOrigin.STAFF, actor=staff
            )
        )
        commit()
    ids = [r.id for r in created]
    db.session.execute(Refund.__table__.update().values(next_check_at=None))
    commit()

    results = _race(app, 4, lambda n: refund_jobs.poll_refunds())
    assert sum(sum(r.values()) for r in results) == len(ids)  # each refund claimed by one worker
    db.session.expire_all()
    statuses = {db.session.get_one(Refund, i).status for i in ids}
    assert statuses == {RefundStatus.PROCESSING}
    ledger = world["fake"].ledger
    assert len(ledger.trades[order.out_trade_no].refunds) == len(ids)
    assert len([c for c in ledger.calls if c[1] == "refund"]) == len(ids)
