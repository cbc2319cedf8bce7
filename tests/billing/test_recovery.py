"""补单 and expiry closing (PAY-08, REL-05): lost notifications, close at the provider before the local
close, unknown outcomes that stay UNKNOWN, abandoned passive-scan orders, isolation of failures."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from flask import Flask
from sqlalchemy import func, select, update

from app.billing import flows, providers
from app.billing.jobs import recovery
from app.billing.models import AnomalyKind, OrderState, PaymentAnomaly, PaymentOrder, PaymentOrderEvent
from app.billing.services import orders
from app.billing.services.orders import SYSTEM
from app.core.db import commit, db
from app.core.outbox import OutboxMessage
from app.institutions.models import Institution
from payments.base import Channel, CloseResult, PayMode, TradeStatus
from payments.fake import FakeProvider
from tests.billing.factories import make_bill, payer_code

START = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
AMOUNT = 3_500


@pytest.fixture
def clock() -> Iterator[time_machine.Traveller]:
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


def qr_order(centre: Institution, channel: Channel = Channel.WECHAT) -> PaymentOrder:
    order = orders.start_order(
        make_bill(centre, AMOUNT),
        mode=PayMode.MERCHANT_QR,
        channel=channel,
        client_ip="127.0.0.1",
        actor=SYSTEM,
    )
    commit()
    return flows.charge(order.id, actor=SYSTEM)


def state(order: PaymentOrder) -> str:
    db.session.expire_all()
    return db.session.get_one(PaymentOrder, order.id).state


def count(model: Any, *where: Any) -> int:
    db.session.expire_all()
    return int(db.session.execute(select(func.count()).select_from(model).where(*where)).scalar_one())


class Watching:
    """A provider wrapper that records the local order state at the moment each close/reverse
    reaches the provider (proof that the provider is closed first)."""

    def __init__(self, inner: FakeProvider) -> None:
        self.inner = inner
        self.channel = inner.channel
        self.app_id, self.merchant_id = inner.app_id, inner.merchant_id
        self.seen: list[tuple[str, str]] = []
        self.broken: set[str] = set()

    def _local_state(self, out_trade_no: str) -> str:
        db.session.expire_all()
        return db.session.execute(
            select(PaymentOrder.state).where(PaymentOrder.out_trade_no == out_trade_no)
        ).scalar_one()

    def query(self, out_trade_no: str, *, app: str | None = None) -> TradeStatus:
        if out_trade_no in self.broken:
            raise RuntimeError("adapter bug")
        return self.inner.query(out_trade_no, app=app)

    def close(self, out_trade_no: str, *, app: str | None = None) -> CloseResult:
        self.seen.append(("close", self._local_state(out_trade_no)))
        return self.inner.close(out_trade_no, app=app)

    def reverse(self, out_trade_no: str, *, app: str | None = None) -> CloseResult:
        self.seen.append(("reverse", self._local_state(out_trade_no)))
        return self.inner.reverse(out_trade_no, app=app)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def watch(app: Flask, fake: FakeProvider) -> Watching:
    watching = Watching(fake)
    providers.install(app, watching)  # type: ignore[arg-type]
    return watching


# --- PAY-08: the lost notification ------------------------------------------------------------------


def test_a_payment_whose_notification_was_lost_is_recovered_once(
    app: Flask, fake_providers: dict[Channel, FakeProvider], centre: Institution, clock: Any
) -> None:
    ledger = fake_providers[Channel.WECHAT].ledger
    ledger.notify_mode = "drop"
    order = qr_order(centre)
    ledger.scan(order.qr_content or "", ledger.new_payer())
    assert ledger.payments_of(order.out_trade_no) == 1 and ledger.notices == []
    assert recovery.recover_orders() == {}  # not due before PAYMENT_RECOVERY_AFTER_MINUTES
    clock.shift(timedelta(minutes=11))
    assert recovery.recover_orders() == {"applied": 1}
    clock.shift(timedelta(minutes=11))
    assert recovery.recover_orders() == {}
    assert state(order) == OrderState.PAID
    assert (
        count(PaymentOrderEvent, PaymentOrderEvent.order_id == order.id, PaymentOrderEvent.to_state == "paid")
        == 1
    )
    assert count(OutboxMessage, OutboxMessage.topic == "billing.order_paid") == 1
    assert ledger.payments_of(order.out_trade_no) == 1


def test_an_unpaid_pending_order_is_rescheduled_with_backoff_up_to_its_expiry(
    app: Flask, fake_providers: dict[Channel, FakeProvider], centre: Institution, clock: Any
) -> None:
    order = qr_order(centre)
    clock.shift(timedelta(minutes=11))
    assert recovery.recover_orders() == {"noop": 1}
    db.session.expire_all()
    row = db.session.get_one(PaymentOrder, order.id)
    assert row.state == OrderState.PENDING and row.check_attempts == 1
    assert row.next_check_at is not None and row.next_check_at <= row.expires_at + recovery.EXPIRY_GRACE


# --- expiry: close at the provider first ------------------------------------------------------------


def test_an_expired_unpaid_order_is_closed_at_the_provider_before_locally(
    app: Flask, fake_providers: dict[Channel, FakeProvider], centre: Institution, clock: Any
) -> None:
    watching = watch(app, fake_providers[Channel.WECHAT])
    order = qr_order(centre)
    clock.shift(timedelta(minutes=17))
    assert recovery.recover_orders() == {"closed": 1}
    assert watching.seen == [("close", "pending")]  # the provider was closed while we still said pending
    assert state(order) == OrderState.CLOSED
    assert [c[1] for c in fake_providers[Channel.WECHAT].ledger.calls if c[2] == order.out_trade_no][-2:] == [
        "query",
        "close",
    ]
    event = db.session.execute(
        select(PaymentOrderEvent).where(
            PaymentOrderEvent.order_id == order.id, PaymentOrderEvent.to_state == "closed"
        )
    ).scalar_one()
    assert event.source == "job" and event.reason == "订单超时未支付，已在支付渠道关闭"
    clock.shift(timedelta(minutes=5))
    assert recovery.recover_orders() == {}


def test_an_expired_order_paid_at_the_last_second_is_paid_not_closed(
    app: Flask, fake_providers: dict[Channel, FakeProvider], centre: Institution, clock: Any
) -> None:
    ledger = fake_providers[Channel.WECHAT].ledger
    ledger.notify_mode = "drop"
    order = qr_order(centre)
    clock.shift(timedelta(minutes=14, seconds=59))
    ledger.scan(order.qr_content or "", ledger.new_payer())
    clock.shift(timedelta(minutes=5))
    assert recovery.recover_orders() == {"paid": 1}
    assert state(order) == OrderState.PAID
    assert not [c for c in ledger.calls if c[1] == "close"]


def test_an_unscanned_alipay_precreate_counts_as_closed(
    app: Flask, fake_providers: dict[Channel, FakeProvider], centre: Institution, clock: Any
) -> None:
    watching = watch(app, fake_providers[Channel.ALIPAY])
    order = qr_order(centre, Channel.ALIPAY)
    clock.shift(timedelta(minutes=17))
    assert recovery.recover_orders() == {"closed": 1}
    assert watching.seen == [("close", "pending")]
    assert state(order) == OrderState.CLOSED


def test_a_close_requested_by_the_cashier_waits_for_wechats_five_minutes(
    app: Flask, fake_providers: dict[Channel, FakeProvider], centre: Institution, clock: Any
) -> None:
    order = qr_order(centre)
    clock.shift(timedelta(minutes=1))
    db.session.execute(
        update(PaymentOrder).where(PaymentOrder.id == order.id).values(closing=True, next_check_at=START)
    )
    commit()
    assert recovery.recover_orders() == {"deferred": 1}
    assert state(order) == OrderState.PENDING
    clock.shift(timedelta(minutes=4, seconds=1))
    assert recovery.recover_orders() == {"closed": 1}
    event = db.session.execute(
        select(PaymentOrderEvent).where(
            PaymentOrderEvent.order_id == order.id, PaymentOrderEvent.to_state == "closed"
        )
    ).scalar_one()
    assert event.reason == "收银员取消支付，已在支付渠道关闭"


def test_an_abandoned_passive_scan_order_is_reversed_and_nobody_is_charged(
    app: Flask, fake_providers: dict[Channel, FakeProvider], centre: Institution, clock: Any
) -> None:
    fake = fake_providers[Channel.WECHAT]
    watching = watch(app, fake)
    payer, code = payer_code(fake, behaviour="never")
    order = orders.start_order(
        make_bill(centre, AMOUNT),
        mode=PayMode.PAYER_CODE,
        channel=None,
        client_ip="127.0.0.1",
        actor=SYSTEM,
        auth_code=code,
    )
    commit()
    order = flows.charge(order.id, actor=SYSTEM, auth_code=code)
    assert order.state == OrderState.PAYING
    clock.shift(timedelta(minutes=3))
    assert recovery.recover_orders() == {}  # the passive procedure still owns it
    clock.shift(timedelta(minutes=4))
    assert recovery.recover_orders() == {"reversed": 1}
    assert watching.seen == [("reverse", "paying")]
    assert state(order) == OrderState.REVERSED
    assert fake.ledger.charged_fen(payer) == 0


# --- REL-05: the provider cannot answer ---------------------------------------------------------------


def test_a_provider_timeout_keeps_the_order_unknown_until_the_provider_answers(
    app: Flask, fake_providers: dict[Channel, FakeProvider], centre: Institution, clock: Any
) -> None:
    ledger = fake_providers[Channel.WECHAT].ledger
    ledger.notify_mode = "drop"
    ledger.fail_next("charge", "timeout", apply=True)
    order = qr_order(centre)
    assert order.state == OrderState.UNKNOWN
    ledger.fail_next("query", "timeout", times=1000)
    for _ in range(5):
        clock.shift(timedelta(minutes=10))
        recovery.recover_orders()
        assert state(order) == OrderState.UNKNOWN  # past expiry too: never FAILED, never CLOSED blind
    assert not [c for c in ledger.calls if c[1] == "close"]
    assert count(PaymentAnomaly) == 0
    clock.shift(timedelta(hours=24))
    recovery.recover_orders()
    assert state(order) == OrderState.UNKNOWN
    anomaly = db.session.execute(select(PaymentAnomaly)).scalar_one()
    assert anomaly.kind == AnomalyKind.RECONCILIATION and anomaly.detail["why"] == "unknown_over_24h"
    ledger.faults.clear()  # the toxic is removed
    clock.shift(timedelta(hours=1))
    assert recovery.recover_orders() == {"closed": 1}
    assert state(order) == OrderState.CLOSED


def test_an_unknown_charge_that_was_paid_resolves_to_paid_once_the_fault_is_gone(
    app: Flask, fake_providers: dict[Channel, FakeProvider], centre: Institution, clock: Any
) -> None:
    ledger = fake_providers[Channel.WECHAT].ledger
    ledger.notify_mode = "drop"
    ledger.fail_next("charge", "timeout", apply=True)
    order = qr_order(centre)
    trade = ledger.trades[order.out_trade_no]
    ledger.scan(trade.reference, ledger.new_payer())
    ledger.fail_next("query", "http_500", times=2)
    clock.shift(timedelta(minutes=1))
    assert recovery.recover_orders() == {"unknown": 1}
    clock.shift(timedelta(minutes=2))
    assert recovery.recover_orders() == {"unknown": 1}
    assert state(order) == OrderState.UNKNOWN
    clock.shift(timedelta(minutes=5))
    assert recovery.recover_orders() == {"applied": 1}
    assert state(order) == OrderState.PAID and ledger.payments_of(order.out_trade_no) == 1


# --- isolation and several workers ---------------------------------------------------------------------


def test_one_failing_order_does_not_stop_the_batch(
    app: Flask, fake_providers: dict[Channel, FakeProvider], centre: Institution, clock: Any
) -> None:
    watching = watch(app, fake_providers[Channel.WECHAT])
    ledger = fake_providers[Channel.WECHAT].ledger
    ledger.notify_mode = "drop"
    bad, good = qr_order(centre), qr_order(centre)
    watching.broken.add(bad.out_trade_no)
    ledger.scan(good.qr_content or "", ledger.new_payer())
    clock.shift(timedelta(minutes=11))
    assert recovery.recover_orders() == {"error": 1, "applied": 1}
    assert state(good) == OrderState.PAID and state(bad) == OrderState.PENDING
    watching.broken.clear()
    clock.shift(timedelta(minutes=3))  # the claim's lease ran out: the bad order comes back
    assert recovery.recover_orders() == {"noop": 1}


def test_a_claimed_order_is_not_taken_by_a_second_worker(
    app: Flask, fake_providers: dict[Channel, FakeProvider], centre: Institution, clock: Any
) -> None:
    order = qr_order(centre)
    clock.shift(timedelta(minutes=11))
    from app.core import clock as app_clock

    assert recovery._claim(app_clock.now(), 10) == [order.id]
    assert recovery._claim(app_clock.now(), 10) == []
