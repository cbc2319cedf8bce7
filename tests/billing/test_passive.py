"""被扫 (passive scan): the documented polling and reversal procedure (PAY-09 WeChat, PAY-10 Alipay).

Every scenario runs on a frozen clock (time-machine) against the in-memory fake provider and
against the real adapters talking HTTP to the loopback emulators; the job step
`advance_passive` is called directly at each `next_check_at`. The stub's books (`charged_fen`,
`payments_of`, the `calls` log with times) prove who was charged and when the provider was asked.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from sqlalchemy import select

from app.billing.jobs import passive
from app.billing.models import Bill, OrderState, PaymentAnomaly, PaymentOrder, PaymentOrderEvent
from app.core import clock
from app.core.db import db
from payments.base import Channel
from payments.sandbox.ledger import SandboxLedger
from tests.audit.support import Http
from tests.billing.factories import (
    idem,
    install_fake_providers,
    install_providers,
    ledger_payer_code,
    make_bill,
)
from tests.payments.alipay_support import make_alipay_harness
from tests.payments.wechat_support import make_wechat_harness

AMOUNT = 3600
DEADLINE_S = {Channel.WECHAT: 30, Channel.ALIPAY: 60}


class Backend:
    def __init__(self, name: str, ledgers: dict[Channel, SandboxLedger]) -> None:
        self.name = name
        self.ledgers = ledgers

    def code(self, channel: Channel, **kwargs: Any) -> tuple[str, str]:
        return ledger_payer_code(self.ledgers[channel], channel, **kwargs)


@pytest.fixture(params=["fake", "sandbox"])
def backend(request: pytest.FixtureRequest, app: Any) -> Iterator[Backend]:
    """The in-memory fake, or the real adapters (wechatpy, python-alipay-sdk) over HTTP against
    the loopback WeChat Pay v2 and Alipay gateway emulators."""
    if request.param == "fake":
        fakes = install_fake_providers(app)
        yield Backend("fake", {ch: fake.ledger for ch, fake in fakes.items()})
        return
    with make_wechat_harness() as wechat, make_alipay_harness() as alipay:
        install_providers(app, wechat.provider, alipay.provider)
        yield Backend("sandbox", {Channel.WECHAT: wechat.ledger, Channel.ALIPAY: alipay.ledger})


@pytest.fixture
def frozen() -> Iterator[Any]:
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    with time_machine.travel(start, tick=False) as traveller:
        yield traveller


def _pay(desk: Http, bill: Bill, code: str, key: dict[str, str] | None = None) -> Any:
    response = desk.post(
        f"/api/v1/billing/bills/{bill.id}/payments",
        json={"mode": "payer_code", "auth_code": code},
        headers=key or idem(),
    )
    assert response.status_code == 201, response.json
    return response.json


def _order(order_id: Any) -> PaymentOrder:
    db.session.expire_all()
    order = db.session.get(PaymentOrder, uuid.UUID(str(order_id)))
    assert order is not None
    return order


def drive(order_id: Any, frozen: Any, *, max_steps: int = 60) -> tuple[PaymentOrder, list[tuple[float, str]]]:
    """Run the procedure step by step, each at its `next_check_at`, until the order is final
    (or the procedure gives up). Returns the order and [(seconds since the charge, outcome)]."""
    steps: list[tuple[float, str]] = []
    for _ in range(max_steps):
        order = _order(order_id)
        if order.order_state.is_final or order.next_check_at is None:
            break
        if steps and steps[-1][1] == "gave_up":
            break
        frozen.move_to(max(order.next_check_at, clock.now()))
        outcome = passive.advance_passive(order.id)
        assert order.charge_called_at is not None
        steps.append(((clock.now() - order.charge_called_at).total_seconds(), outcome))
    return _order(order_id), steps


def calls(ledger: SandboxLedger, order: PaymentOrder, endpoint: str) -> list[float]:
    """Seconds after the charge call at which the provider received `endpoint` for this order."""
    assert order.charge_called_at is not None
    start = order.charge_called_at.timestamp()
    return [
        round(at - start, 3) for at, name, no in ledger.calls if name == endpoint and no == order.out_trade_no
    ]


def events(order: PaymentOrder) -> list[PaymentOrderEvent]:
    return list(
        db.session.execute(
            select(PaymentOrderEvent)
            .where(PaymentOrderEvent.order_id == order.id)
            .order_by(PaymentOrderEvent.id)
        ).scalars()
    )


CHANNELS = pytest.mark.parametrize("channel", list(Channel), ids=[c.value for c in Channel])


# --- (a) the payer enters the password after 10 s --------------------------------------------------


@CHANNELS
def test_payer_who_confirms_after_10_s_is_paid_by_the_poll(backend, frozen, centre, desk, channel):
    payer, code = backend.code(channel, pay_after_s=10)
    bill = make_bill(centre, AMOUNT)
    body = _pay(desk, bill, code)
    assert body["state"] == "paying"
    assert body["state_label"] == "付款人正在输入密码/确认中"
    assert body["payer_code_tail"] == code[-4:]

    order, steps = drive(body["id"], frozen)

    assert order.state == OrderState.PAID
    assert [outcome for _, outcome in steps] == ["polled", "settled"]
    assert [t for t, _ in steps] == [5, 10]
    ledger = backend.ledgers[channel]
    assert calls(ledger, order, "reverse") == []
    assert ledger.charged_fen(payer) == AMOUNT
    assert ledger.payments_of(order.out_trade_no) == 1
    db.session.refresh(bill)
    assert bill.status == "paid" and bill.paid_order_id == order.id


# --- (b) the payer never confirms --------------------------------------------------------------------


@CHANNELS
def test_payer_who_never_confirms_is_reversed_right_after_the_last_query(
    backend, frozen, centre, desk, channel
):
    payer, code = backend.code(channel, behaviour="never")
    bill = make_bill(centre, AMOUNT)
    body = _pay(desk, bill, code)

    order, steps = drive(body["id"], frozen)

    deadline = DEADLINE_S[channel]
    assert order.state == OrderState.REVERSED
    assert [t for t, _ in steps] == list(range(5, deadline + 1, 5))
    assert steps[-1][1] == "reversed"
    ledger = backend.ledgers[channel]
    reverses = calls(ledger, order, "reverse")
    queries = calls(ledger, order, "query")
    assert reverses == [deadline]
    assert min(reverses) >= 15  # never sooner than 15 s after the pay call
    assert max(queries) == reverses[0]  # no gap between the last query and the reverse/cancel
    assert ledger.charged_fen(payer) == 0
    assert order.decline_message and "撤销" in order.decline_message
    assert events(order)[-1].detail["refunded"] is False
    db.session.refresh(bill)
    assert bill.status == "open"


# --- (c) the pay call's outcome is unknown but the query says paid ---------------------------------


@CHANNELS
def test_pay_call_with_unknown_outcome_is_settled_by_query_not_failed(backend, frozen, centre, desk, channel):
    payer, code = backend.code(channel)
    ledger = backend.ledgers[channel]
    ledger.fail_next("charge", "system_error", apply=True)  # charged, but the reply is an error
    bill = make_bill(centre, AMOUNT)
    body = _pay(desk, bill, code)
    assert body["state"] == "unknown"
    assert body["state_label"] == "支付结果确认中"

    order, steps = drive(body["id"], frozen)

    assert order.state == OrderState.PAID
    assert steps == [(0, "settled")]  # SYSTEMERROR / unknown: query at once
    assert ledger.payments_of(order.out_trade_no) == 1
    assert ledger.charged_fen(payer) == AMOUNT
    assert OrderState.FAILED not in {e.to_state for e in events(order)}


# --- (d) the reverse answers "again" / fails twice, then succeeds -----------------------------------


@CHANNELS
def test_reverse_is_repeated_until_the_provider_gives_a_final_answer(backend, frozen, centre, desk, channel):
    payer, code = backend.code(channel, behaviour="never")
    ledger = backend.ledgers[channel]
    ledger.fail_next("reverse", "retry", apply=False)  # recall=Y / retry_flag=Y
    ledger.fail_next("reverse", "system_error", apply=False)
    bill = make_bill(centre, AMOUNT)
    body = _pay(desk, bill, code)

    order, steps = drive(body["id"], frozen)

    deadline = DEADLINE_S[channel]
    assert order.state == OrderState.REVERSED
    assert [o for _, o in steps][-3:] == ["reverse_retry", "reverse_retry", "reversed"]
    assert calls(ledger, order, "reverse") == [deadline, deadline + 3, deadline + 8]
    assert order.reverse_attempts == 3
    assert ledger.charged_fen(payer) == 0


# --- (e) the payer pays just after the deadline: the reverse refunds it ----------------------------


@CHANNELS
def test_payment_completed_during_the_reversal_is_refunded_by_it(backend, frozen, centre, desk, channel):
    deadline = DEADLINE_S[channel]
    payer, code = backend.code(channel, pay_after_s=deadline + 1)
    ledger = backend.ledgers[channel]
    ledger.fail_next("reverse", "system_error", apply=False)  # the first reverse gets no answer
    bill = make_bill(centre, AMOUNT)
    body = _pay(desk, bill, code)

    order, _ = drive(body["id"], frozen)

    assert order.state == OrderState.REVERSED
    assert calls(ledger, order, "reverse") == [deadline, deadline + 3]
    assert ledger.payments_of(order.out_trade_no) == 1  # the money was taken once ...
    assert ledger.charged_fen(payer) == 0  # ... and given back by the reverse
    last = events(order)[-1]
    assert last.to_state == OrderState.REVERSED and last.detail["refunded"] is True
    assert order.decline_message == passive.MSG_REVERSED_REFUNDED
    db.session.refresh(bill)
    assert bill.status == "open"


# --- the cashier stops early ---------------------------------------------------------------------------


@CHANNELS
def test_cashier_stop_reverses_but_never_sooner_than_15_s_on_wechat(backend, frozen, centre, desk, channel):
    payer, code = backend.code(channel, behaviour="never")
    bill = make_bill(centre, AMOUNT)
    body = _pay(desk, bill, code)
    frozen.shift(3)

    stopped = desk.post(f"/api/v1/billing/orders/{body['id']}/close", json={})

    assert stopped.status_code == 200, stopped.json
    ledger = backend.ledgers[channel]
    if channel is Channel.WECHAT:
        assert stopped.json["state"] == "paying" and stopped.json["closing"] is True
        assert "停止收款" in stopped.json["next_step"]
        order, _ = drive(body["id"], frozen)
        assert calls(ledger, order, "reverse") == [15]
    else:  # Alipay: cancel at once
        assert stopped.json["state"] == "reversed"
        order = _order(body["id"])
        assert calls(ledger, order, "reverse") == [3]
    assert order.state == OrderState.REVERSED
    assert order.decline_message == passive.MSG_STOPPED
    assert ledger.charged_fen(payer) == 0


# --- retry with a new order ----------------------------------------------------------------------------


@CHANNELS
def test_a_new_charge_after_a_reversal_uses_a_new_out_trade_no(backend, frozen, centre, desk, channel):
    _, first_code = backend.code(channel, behaviour="never")
    payer, second_code = backend.code(channel)
    bill = make_bill(centre, AMOUNT)
    first = _pay(desk, bill, first_code)

    refused = desk.post(
        f"/api/v1/billing/bills/{bill.id}/payments",
        json={"mode": "payer_code", "auth_code": second_code},
        headers=idem(),
    )
    assert refused.status_code == 409
    assert refused.json["code"] == "payment_in_progress"
    assert refused.json["message"] == "上一笔付款仍在确认中，请稍候"

    drive(first["id"], frozen)
    second = _pay(desk, bill, second_code)

    assert second["state"] == "paid"
    assert second["out_trade_no"] != first["out_trade_no"]
    ledger = backend.ledgers[channel]
    assert ledger.charged_fen(payer) == AMOUNT
    detail = desk.get(f"/api/v1/billing/bills/{bill.id}").json
    assert detail["status"] == "paid"
    assert [o["state"] for o in detail["orders"]] == ["reversed", "paid"]


# --- the step is idempotent and safe to repeat ----------------------------------------------------------


def test_a_step_that_is_not_due_does_nothing(frozen, centre, desk, fake_providers):
    _, code = ledger_payer_code(fake_providers[Channel.WECHAT].ledger, Channel.WECHAT, behaviour="never")
    body = _pay(desk, make_bill(centre, AMOUNT), code)
    assert passive.advance_passive(body["id"]) == "noop"  # first poll is at t+5 s
    frozen.shift(5)
    assert passive.advance_passive(body["id"]) == "polled"
    assert passive.advance_passive(body["id"]) == "noop"  # a duplicate job / a second worker
    assert passive.advance_passive("00000000-0000-0000-0000-000000000000") == "noop"
    order = _order(body["id"])
    assert calls(fake_providers[Channel.WECHAT].ledger, order, "query") == [5]


def test_the_cron_sweep_runs_due_steps_and_the_next_step_is_scheduled_on_rq(
    app, frozen, centre, desk, fake_providers
):
    from rq.registry import ScheduledJobRegistry

    from app.jobs import queue

    _, code = ledger_payer_code(fake_providers[Channel.ALIPAY].ledger, Channel.ALIPAY, behaviour="never")
    body = _pay(desk, make_bill(centre, AMOUNT), code)
    scheduled = ScheduledJobRegistry(queue=queue("payments")).get_job_ids()
    assert scheduled, "the first poll is scheduled with rq enqueue_at"

    assert passive.due_passive_orders() == []
    frozen.shift(5)
    assert [str(i) for i in passive.due_passive_orders()] == [body["id"]]
    assert passive.sweep_passive() == 1
    assert passive.sweep_passive() == 0
    frozen.shift(60)
    while passive.sweep_passive():
        pass
    assert _order(body["id"]).state == OrderState.REVERSED


def test_a_reverse_that_never_succeeds_leaves_the_order_unknown_with_an_anomaly(
    frozen, centre, desk, fake_providers
):
    ledger = fake_providers[Channel.WECHAT].ledger
    payer, code = ledger_payer_code(ledger, Channel.WECHAT, behaviour="never")
    ledger.fail_next("reverse", "system_error", times=50, apply=False)
    body = _pay(desk, make_bill(centre, AMOUNT), code)

    order, steps = drive(body["id"], frozen)

    assert steps[-1][1] == "gave_up"
    assert order.state == OrderState.UNKNOWN  # never FAILED
    assert order.reverse_attempts == passive.MAX_REVERSE_ATTEMPTS
    assert len(calls(ledger, order, "reverse")) == passive.MAX_REVERSE_ATTEMPTS
    anomaly = db.session.execute(
        select(PaymentAnomaly).where(PaymentAnomaly.order_id == order.id)
    ).scalar_one()
    assert anomaly.kind == "reverse_failed"
    assert passive.due_passive_orders(clock.now() + timedelta(hours=1)) == []
    assert ledger.charged_fen(payer) == 0
