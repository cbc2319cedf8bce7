"""REL-07: the checker is clean on honest data and reports exactly each planted violation."""

from __future__ import annotations

import uuid
from datetime import date, timedelta

import pytest
from flask import Flask
from sqlalchemy import update

from app.billing.models import (
    AnomalyKind,
    Bill,
    BillStatus,
    OrderState,
    PaymentAnomaly,
    PaymentOrder,
    PaymentOrderEvent,
    Refund,
    RefundOrigin,
)
from app.billing.services import invariants, orders
from app.core import clock
from app.core.db import db
from payments.base import Channel, PayMode, Statement, StatementKind, StatementLine, TradeState, TradeStatus
from tests.billing.factories import make_bill


def _paid_order(centre, amount_fen: int = 2500) -> PaymentOrder:
    bill = make_bill(centre, amount_fen)
    order = orders.start_order(
        bill, mode=PayMode.MERCHANT_QR, channel=Channel.WECHAT, client_ip="127.0.0.1", actor=orders.SYSTEM
    )
    status = TradeStatus(
        out_trade_no=order.out_trade_no,
        state=TradeState.PAID,
        amount_fen=amount_fen,
        provider_trade_no=f"4200{uuid.uuid4().hex[:24]}",
        paid_at=clock.now(),
    )
    assert orders.apply_trade_status(order, status, source="query", actor=orders.PROVIDER) == "applied"
    return order


def _rules() -> list[str]:
    db.session.flush()
    return sorted(v.rule for v in invariants.violations())


def _set(model: type, row_id: uuid.UUID, **values: object) -> None:
    db.session.execute(
        update(model).where(model.id == row_id).values(**values).execution_options(synchronize_session=False)
    )
    db.session.expire_all()


@pytest.fixture
def honest(app: Flask, centre) -> PaymentOrder:
    order = _paid_order(centre)
    orders.request_refund(
        order, amount_fen=500, reason="部分退款", origin=RefundOrigin.STAFF, actor=orders.SYSTEM
    )
    pending = orders.start_order(
        make_bill(centre, 900),
        mode=PayMode.MERCHANT_QR,
        channel=Channel.ALIPAY,
        client_ip="127.0.0.1",
        actor=orders.SYSTEM,
    )
    assert pending.state == OrderState.CREATED
    return order


def test_honest_data_is_clean(honest):
    assert _rules() == []


def test_a_paid_order_without_its_provider_facts(honest):
    _set(PaymentOrder, honest.id, provider_trade_no=None)
    assert _rules() == ["paid_order_facts"]


def test_a_bill_paid_twice_without_a_refund(honest, centre):
    second = orders.start_order(
        make_bill(centre, 2500),
        mode=PayMode.MERCHANT_QR,
        channel=Channel.WECHAT,
        client_ip="127.0.0.1",
        actor=orders.SYSTEM,
    )
    _set(
        PaymentOrder,
        second.id,
        bill_id=honest.bill_id,
        state=OrderState.PAID,
        paid_amount_fen=2500,
        paid_at=clock.now(),
        provider_trade_no="4200dup",
    )
    db.session.add(
        PaymentOrderEvent(
            order_id=second.id, from_state="created", to_state="paid", source="test", actor_kind="system"
        )
    )
    assert "bill_paid_twice" in _rules()


def test_a_refund_reservation_above_the_payment(honest):
    _set(PaymentOrder, honest.id, refunded_fen=3000)
    assert _rules() == ["refund_exceeds_paid", "refund_reservation_drift"]


def test_an_order_stuck_past_its_expiry_plus_a_day(honest, centre):
    stuck = orders.start_order(
        make_bill(centre, 700),
        mode=PayMode.MERCHANT_QR,
        channel=Channel.WECHAT,
        client_ip="127.0.0.1",
        actor=orders.SYSTEM,
    )
    _set(PaymentOrder, stuck.id, expires_at=clock.now() - timedelta(hours=25))
    assert _rules() == ["stuck_order"]


def test_a_refund_stuck_for_more_than_a_day(honest):
    refund = db.session.query(Refund).filter_by(order_id=honest.id).one()
    _set(Refund, refund.id, created_at=clock.now() - timedelta(hours=25))
    assert _rules() == ["stuck_refund"]


def test_a_history_that_is_not_a_path_of_the_state_machine(honest):
    db.session.add(
        PaymentOrderEvent(
            order_id=honest.id, from_state="paid", to_state="pending", source="test", actor_kind="system"
        )
    )
    assert _rules() == ["history_end", "history_invalid_step"]


def test_an_anomaly_without_an_owner_after_a_day(honest):
    anomaly, _ = orders.record_anomaly(AnomalyKind.AMOUNT_MISMATCH, source="test", order=honest)
    assert _rules() == []
    _set(PaymentAnomaly, anomaly.id, created_at=clock.now() - timedelta(hours=25))
    assert _rules() == ["anomaly_unowned"]


def test_a_paid_bill_that_names_no_paid_order(honest):
    _set(Bill, honest.bill_id, paid_order_id=None)
    assert _rules() == ["bill_paid_without_order"]
    _set(Bill, honest.bill_id, paid_order_id=honest.id, status=BillStatus.OPEN)
    assert _rules() == ["order_paid_bill_not"]


def test_paid_orders_against_the_providers_bill(honest):
    day = clock.local(honest.paid_at).date()
    line = StatementLine(
        kind=StatementKind.PAYMENT,
        out_trade_no=honest.out_trade_no,
        provider_trade_no=honest.provider_trade_no or "",
        amount_fen=2500,
        occurred_at=honest.paid_at,
        state="SUCCESS",
    )
    stranger = StatementLine(
        kind=StatementKind.PAYMENT,
        out_trade_no="LH-not-ours",
        provider_trade_no="4200x",
        amount_fen=100,
        occurred_at=honest.paid_at,
        state="SUCCESS",
    )
    assert list(invariants.check_against_statement(Statement(Channel.WECHAT, day, (line,), sha1=""))) == []
    found = list(invariants.check_against_statement(Statement(Channel.WECHAT, day, (stranger,), sha1="")))
    assert [(v.rule, v.object_id) for v in found] == [
        ("provider_only_payment", "LH-not-ours"),
        ("local_only_payment", honest.out_trade_no),
    ]
    assert (
        list(invariants.check_against_statement(Statement(Channel.WECHAT, date(2000, 1, 1), (), sha1="")))
        == []
    )


def test_the_cli_exits_1_on_a_violation(app: Flask, honest):
    from app.core.db import commit

    runner = app.test_cli_runner()
    commit()
    assert runner.invoke(args=["billing-invariants"]).exit_code == 0
    _set(PaymentOrder, honest.id, refunded_fen=9999)
    commit()
    result = runner.invoke(args=["billing-invariants"])
    assert result.exit_code == 1 and "refund_exceeds_paid" in result.output
