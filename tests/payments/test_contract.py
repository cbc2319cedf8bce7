"""The provider-neutral contract: every `PaymentProvider` (fake, WeChat, Alipay) passes these.

Each case runs once per harness (`tests/payments/conftest.py`): the fake in memory, and the real
wechatpy / python-alipay-sdk clients over HTTP against their loopback emulators. The payer's side
is scripted on the harness's `SandboxLedger`; the assertions are neutral (states, amounts, the
stub's own books), never a provider's wire codes. Time moves with time_machine, never by sleeping.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
import time_machine

from payments.base import (
    ChargeRequest,
    ChargeResult,
    EventKind,
    InvalidCallback,
    PaymentEvent,
    PaymentProvider,
    PayMode,
    ProviderDeclined,
    ProviderOutcomeUnknown,
    RefundRequest,
    RefundState,
    StatementKind,
    StatementNotReady,
    TradeState,
)
from tests.payments.harness import Harness

CHINA = timezone(timedelta(hours=8))
CJK = re.compile(r"[\u4e00-\u9fff]")
HARNESS_TIMEOUT_S = 1  # the harnesses' client timeouts (about a second)
AMOUNT = 1234


@pytest.fixture
def clock(harness: Harness) -> Iterator[time_machine.Traveller]:
    """Today 10:00 China time (far from midnight, so a bill date is unambiguous), ticking."""
    start = datetime.now(CHINA).replace(hour=10, minute=0, second=0, microsecond=0)
    with time_machine.travel(start, tick=True) as traveller:
        yield traveller


def new_trade_no() -> str:
    return "T" + uuid.uuid4().hex[:23].upper()


def charge_request(harness: Harness, mode: PayMode, amount_fen: int = AMOUNT, **kwargs: str) -> ChargeRequest:
    return ChargeRequest(
        out_trade_no=new_trade_no(),
        amount_fen=amount_fen,
        subject="家庭医生签约服务包",
        mode=mode,
        client_ip="127.0.0.1",
        expires_at=datetime.now(CHINA) + timedelta(hours=2),
        notify_url=None if mode is PayMode.PAYER_CODE else harness.notify_url,
        product_id="PKG001" if mode is PayMode.MERCHANT_QR else None,
        **kwargs,
    )


def paid_qr_trade(harness: Harness, amount_fen: int = AMOUNT) -> tuple[str, str]:
    """A MERCHANT_QR trade the payer scanned and paid: (out_trade_no, payer)."""
    request = charge_request(harness, PayMode.MERCHANT_QR, amount_fen)
    result = harness.provider.charge(request)
    assert result.qr_content
    payer = harness.ledger.new_payer()
    harness.ledger.scan(result.qr_content, payer)
    assert harness.provider.query(request.out_trade_no).state is TradeState.PAID
    return request.out_trade_no, payer


def code_charge(harness: Harness, payer: str, **code_options: object) -> tuple[ChargeRequest, str]:
    code = harness.ledger.payer_code(payer, prefix=harness.code_prefix, **code_options)  # type: ignore[arg-type]
    return charge_request(harness, PayMode.PAYER_CODE, auth_code=code), code


def payment_events(harness: Harness, out_trade_no: str) -> list[PaymentEvent]:
    events = [harness.provider.parse_callback(body, ctype) for body, ctype in harness.collect_notifications()]
    return [
        e for e in events if e.kind is EventKind.PAYMENT and e.trade and e.trade.out_trade_no == out_trade_no
    ]


def flip_one_byte(body: bytes, signed_value: str) -> bytes:
    """Change the last character of the first occurrence of a signed field's value."""
    at = body.index(signed_value.encode()) + len(signed_value) - 1
    flipped = b"0" if body[at : at + 1] != b"0" else b"1"
    return body[:at] + flipped + body[at + 1 :]


# --- shape -------------------------------------------------------------------------------------------


def test_provider_implements_the_protocol(harness: Harness) -> None:
    assert isinstance(harness.provider, PaymentProvider)
    assert harness.provider.channel is harness.channel
    assert harness.provider.app_id and harness.provider.merchant_id


def test_ack_success_differs_from_failure(harness: Harness) -> None:
    ok, fail = harness.provider.ack(True), harness.provider.ack(False)
    assert ok.body and ok.content_type
    assert (ok.status, ok.body) != (fail.status, fail.body)


# --- MERCHANT_QR (主扫) ---------------------------------------------------------------------------


def test_merchant_qr_scan_pays_and_notifies(harness: Harness, clock: time_machine.Traveller) -> None:
    provider, ledger = harness.provider, harness.ledger
    request = charge_request(harness, PayMode.MERCHANT_QR)
    result = provider.charge(request)
    assert result.state is TradeState.PENDING
    assert result.qr_content

    assert provider.query(request.out_trade_no).state in (TradeState.NOT_FOUND, TradeState.PENDING)

    payer = ledger.new_payer()
    ledger.scan(result.qr_content, payer)
    status = provider.query(request.out_trade_no)
    assert status.state is TradeState.PAID
    assert status.amount_fen == AMOUNT
    assert status.provider_trade_no
    assert ledger.payments_of(request.out_trade_no) == 1

    (event,) = payment_events(harness, request.out_trade_no)
    assert event.channel is harness.channel
    assert event.trade is not None
    assert event.trade.state is TradeState.PAID
    assert event.trade.amount_fen == AMOUNT
    assert event.trade.provider_trade_no == status.provider_trade_no
    assert event.app_id == provider.app_id
    assert event.merchant_id == provider.merchant_id


def test_tampered_notification_is_rejected(harness: Harness, clock: time_machine.Traveller) -> None:
    out_trade_no, _ = paid_qr_trade(harness)
    notices = [
        (body, ctype) for body, ctype in harness.collect_notifications() if out_trade_no.encode() in body
    ]
    assert len(notices) == 1
    body, ctype = notices[0]
    assert harness.provider.parse_callback(body, ctype).trade is not None  # the original verifies
    with pytest.raises(InvalidCallback):
        harness.provider.parse_callback(flip_one_byte(body, out_trade_no), ctype)


# --- JSAPI ---------------------------------------------------------------------------------------


def test_jsapi_payer_confirms_in_wallet(harness: Harness, clock: time_machine.Traveller) -> None:
    provider, ledger = harness.provider, harness.ledger
    payer = ledger.new_payer()
    request = charge_request(harness, PayMode.JSAPI, payer_id=payer)
    result = provider.charge(request)
    assert result.state is TradeState.PENDING
    assert result.client_params

    ledger.pay_jsapi(harness.jsapi_reference(result), payer)
    status = provider.query(request.out_trade_no)
    assert status.state is TradeState.PAID
    assert status.amount_fen == AMOUNT
    assert ledger.charged_fen(payer) == AMOUNT


# --- PAYER_CODE (被扫) ----------------------------------------------------------------------------


def test_payer_code_pays_immediately(harness: Harness, clock: time_machine.Traveller) -> None:
    payer = harness.ledger.new_payer()
    request, _ = code_charge(harness, payer)
    result = harness.provider.charge(request)
    assert result.state is TradeState.PAID
    assert harness.provider.query(request.out_trade_no).state is TradeState.PAID
    assert harness.ledger.payments_of(request.out_trade_no) == 1
    assert harness.ledger.charged_fen(payer) == AMOUNT


def test_payer_code_password_then_paid(harness: Harness, clock: time_machine.Traveller) -> None:
    payer = harness.ledger.new_payer()
    request, _ = code_charge(harness, payer, pay_after_s=10)
    assert harness.provider.charge(request).state is TradeState.PAYING
    clock.shift(11)
    status = harness.provider.query(request.out_trade_no)
    assert status.state is TradeState.PAID
    assert status.amount_fen == AMOUNT
    assert harness.ledger.payments_of(request.out_trade_no) == 1


def test_payer_code_never_confirmed_is_reversed(harness: Harness, clock: time_machine.Traveller) -> None:
    payer = harness.ledger.new_payer()
    request, _ = code_charge(harness, payer, behaviour="never")
    assert harness.provider.charge(request).state is TradeState.PAYING
    clock.shift(16)  # WeChat: never reverse sooner than 15 s after the pay call
    # Still waiting for the payer: WeChat USERPAYING (PAYING), Alipay WAIT_BUYER_PAY (PENDING).
    assert harness.provider.query(request.out_trade_no).state in (TradeState.PAYING, TradeState.PENDING)
    result = harness.provider.reverse(request.out_trade_no)
    assert result.done
    assert not result.refunded
    assert harness.ledger.charged_fen(payer) == 0
    assert harness.ledger.payments_of(request.out_trade_no) == 0
    assert harness.provider.query(request.out_trade_no).state in (TradeState.REVERSED, TradeState.CLOSED)


def test_payer_code_declined(harness: Harness, clock: time_machine.Traveller) -> None:
    payer = harness.ledger.new_payer()
    request, _ = code_charge(harness, payer, behaviour="decline")
    with pytest.raises(ProviderDeclined) as declined:
        harness.provider.charge(request)
    assert CJK.search(declined.value.message), declined.value.message
    assert harness.ledger.charged_fen(payer) == 0


def test_used_payer_code_is_declined(harness: Harness, clock: time_machine.Traveller) -> None:
    payer = harness.ledger.new_payer()
    first, code = code_charge(harness, payer)
    assert harness.provider.charge(first).state is TradeState.PAID
    again = charge_request(harness, PayMode.PAYER_CODE, auth_code=code)
    with pytest.raises(ProviderDeclined) as declined:
        harness.provider.charge(again)
    assert CJK.search(declined.value.message), declined.value.message
    assert harness.ledger.payments_of(again.out_trade_no) == 0
    assert harness.ledger.charged_fen(payer) == AMOUNT


def test_reverse_of_a_paid_code_trade_returns_the_money(
    harness: Harness, clock: time_machine.Traveller
) -> None:
    payer = harness.ledger.new_payer()
    request, _ = code_charge(harness, payer)
    assert harness.provider.charge(request).state is TradeState.PAID
    assert harness.ledger.charged_fen(payer) == AMOUNT
    clock.shift(16)
    result = harness.provider.reverse(request.out_trade_no)
    assert result.done
    assert result.refunded
    assert harness.ledger.charged_fen(payer) == 0


# --- close ---------------------------------------------------------------------------------------


def test_close_of_a_never_scanned_trade_is_harmless(harness: Harness, clock: time_machine.Traveller) -> None:
    request = charge_request(harness, PayMode.MERCHANT_QR)
    harness.provider.charge(request)
    clock.shift(301)  # WeChat: closeorder no sooner than 5 minutes after the order
    result = harness.provider.close(request.out_trade_no)
    assert not result.already_paid
    assert harness.ledger.payments_of(request.out_trade_no) == 0


def test_close_of_a_scanned_unpaid_trade_stops_payment(
    harness: Harness, clock: time_machine.Traveller
) -> None:
    request = charge_request(harness, PayMode.MERCHANT_QR)
    result = harness.provider.charge(request)
    assert result.qr_content
    payer = harness.ledger.new_payer()
    harness.ledger.scan(result.qr_content, payer, pay_after_s=3600)  # scanned, not confirmed yet
    clock.shift(301)
    closed = harness.provider.close(request.out_trade_no)
    assert closed.done
    assert not closed.already_paid
    assert harness.provider.query(request.out_trade_no).state is TradeState.CLOSED

    clock.shift(3600)  # the payer's confirmation would have landed now
    assert harness.provider.query(request.out_trade_no).state is TradeState.CLOSED
    assert harness.ledger.payments_of(request.out_trade_no) == 0
    assert harness.ledger.charged_fen(payer) == 0


def test_close_of_a_paid_trade_reports_already_paid(harness: Harness, clock: time_machine.Traveller) -> None:
    out_trade_no, payer = paid_qr_trade(harness)
    clock.shift(301)
    result = harness.provider.close(out_trade_no)
    assert result.already_paid
    assert not result.done
    assert harness.provider.query(out_trade_no).state is TradeState.PAID
    assert harness.ledger.charged_fen(payer) == AMOUNT


# --- refunds -------------------------------------------------------------------------------------


def refund_request(harness: Harness, out_trade_no: str, refund_fen: int, out_refund_no: str) -> RefundRequest:
    return RefundRequest(
        out_trade_no=out_trade_no,
        out_refund_no=out_refund_no,
        total_fen=AMOUNT,
        refund_fen=refund_fen,
        reason="退签",
        notify_url=harness.notify_url,
    )


def test_refund_completes_and_is_idempotent(harness: Harness, clock: time_machine.Traveller) -> None:
    out_trade_no, payer = paid_qr_trade(harness)
    request = refund_request(harness, out_trade_no, 234, "R" + out_trade_no[1:])
    first = harness.provider.refund(request)
    assert first.state in (RefundState.PROCESSING, RefundState.SUCCEEDED)

    clock.shift(6)
    done = harness.provider.query_refund(out_trade_no, request.out_refund_no)
    assert done.state is RefundState.SUCCEEDED
    assert done.refund_fen == 234
    assert harness.ledger.charged_fen(payer) == AMOUNT - 234

    again = harness.provider.refund(request)  # a retry with the same number: the same refund
    assert again.state in (RefundState.PROCESSING, RefundState.SUCCEEDED)
    if first.provider_refund_no and again.provider_refund_no:
        assert again.provider_refund_no == first.provider_refund_no
    clock.shift(6)
    assert harness.provider.query_refund(out_trade_no, request.out_refund_no).state is RefundState.SUCCEEDED
    assert harness.ledger.charged_fen(payer) == AMOUNT - 234


def test_refund_exceeding_the_payment_is_declined(harness: Harness, clock: time_machine.Traveller) -> None:
    out_trade_no, payer = paid_qr_trade(harness)
    harness.provider.refund(refund_request(harness, out_trade_no, 1000, "R1" + out_trade_no[2:]))
    with pytest.raises(ProviderDeclined):
        harness.provider.refund(refund_request(harness, out_trade_no, 235, "R2" + out_trade_no[2:]))
    clock.shift(6)
    assert harness.provider.query_refund(out_trade_no, "R1" + out_trade_no[2:]).state is RefundState.SUCCEEDED
    assert harness.ledger.charged_fen(payer) == AMOUNT - 1000


def test_failed_refund_is_retried_with_the_same_number(
    harness: Harness, clock: time_machine.Traveller
) -> None:
    out_trade_no, payer = paid_qr_trade(harness)
    request = refund_request(harness, out_trade_no, 500, "R" + out_trade_no[1:])
    harness.ledger.script_refund(request.out_refund_no, "fail")
    assert harness.provider.refund(request).state is not RefundState.FAILED  # accepted, not final

    clock.shift(6)
    # Not refunded, apply again with the same number: WeChat REFUNDCLOSE (FAILED); Alipay's refund
    # query returns no data for a refund that did not go through (NOT_FOUND).
    failed = harness.provider.query_refund(out_trade_no, request.out_refund_no)
    assert failed.state in (RefundState.FAILED, RefundState.NOT_FOUND)
    assert harness.ledger.charged_fen(payer) == AMOUNT

    retry = harness.provider.refund(request)
    assert retry.state in (RefundState.PROCESSING, RefundState.SUCCEEDED)
    clock.shift(6)
    assert harness.provider.query_refund(out_trade_no, request.out_refund_no).state is RefundState.SUCCEEDED
    assert harness.ledger.charged_fen(payer) == AMOUNT - 500


# --- faults --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["timeout", "http_500", "system_error", "bad_signature"])
def test_charge_fault_applied_is_unknown_and_safe_to_retry(
    harness: Harness, clock: time_machine.Traveller, kind: str
) -> None:
    provider, ledger = harness.provider, harness.ledger
    payer = ledger.new_payer()
    request = charge_request(harness, PayMode.JSAPI, payer_id=payer)
    delay = HARNESS_TIMEOUT_S + 0.5 if kind == "timeout" else 0  # just above the client's timeout
    ledger.fail_next("charge", kind, apply=True, delay_s=delay)  # type: ignore[arg-type]
    with pytest.raises(ProviderOutcomeUnknown):
        provider.charge(request)

    assert provider.query(request.out_trade_no).state is TradeState.PENDING  # it exists at the provider

    retried: ChargeResult = provider.charge(request)  # the same out_trade_no: the same trade
    ledger.pay_jsapi(harness.jsapi_reference(retried), payer)
    assert provider.query(request.out_trade_no).state is TradeState.PAID
    assert ledger.payments_of(request.out_trade_no) == 1
    assert ledger.charged_fen(payer) == AMOUNT


def test_charge_fault_not_applied_leaves_no_trade(harness: Harness, clock: time_machine.Traveller) -> None:
    payer = harness.ledger.new_payer()
    request = charge_request(harness, PayMode.JSAPI, payer_id=payer)
    harness.ledger.fail_next("charge", "http_500", apply=False)
    with pytest.raises(ProviderOutcomeUnknown):
        harness.provider.charge(request)
    assert harness.provider.query(request.out_trade_no).state is TradeState.NOT_FOUND
    assert harness.provider.charge(request).client_params


# --- statements ----------------------------------------------------------------------------------


def test_statement_lists_payment_and_refund(harness: Harness, clock: time_machine.Traveller) -> None:
    out_trade_no, _ = paid_qr_trade(harness)
    out_refund_no = "R" + out_trade_no[1:]
    harness.provider.refund(refund_request(harness, out_trade_no, 234, out_refund_no))
    clock.shift(6)
    assert harness.provider.query_refund(out_trade_no, out_refund_no).state is RefundState.SUCCEEDED
    today = datetime.now(CHINA).date()
    clock.shift(timedelta(days=1, minutes=10))  # bills are complete the next morning (after 10:00)

    statement = harness.provider.download_statement(today)
    assert statement.channel is harness.channel
    assert statement.bill_date == today
    mine = [line for line in statement.lines if line.out_trade_no == out_trade_no]
    payments = [line for line in mine if line.kind is StatementKind.PAYMENT]
    refunds = [line for line in mine if line.kind is StatementKind.REFUND]
    assert [line.amount_fen for line in payments] == [AMOUNT]
    assert [(line.amount_fen, line.out_refund_no) for line in refunds] == [(234, out_refund_no)]
    assert payments[0].provider_trade_no
    assert payments[0].occurred_at.tzinfo is not None

    harness.ledger.bill_overrides[out_trade_no] = {"amount_fen": AMOUNT + 1}
    planted = harness.provider.download_statement(today)
    assert [
        line.amount_fen
        for line in planted.lines
        if line.out_trade_no == out_trade_no and line.kind is StatementKind.PAYMENT
    ] == [AMOUNT + 1]


def test_statement_of_a_future_date_is_not_ready(harness: Harness, clock: time_machine.Traveller) -> None:
    with pytest.raises(StatementNotReady):
        harness.provider.download_statement(datetime.now(CHINA).date() + timedelta(days=1))
