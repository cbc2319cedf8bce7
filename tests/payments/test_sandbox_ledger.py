"""The sandbox ledger's own rules: payers, scheduled payments, expiry, reverse, refunds, notices, faults.

Time is frozen (tick=False) and moved explicitly, so every "after n seconds" is exact.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import time_machine

from payments.base import PayMode, RefundState, TradeState
from payments.sandbox.ledger import (
    REFUND_COMPLETES_AFTER_S,
    Notice,
    SandboxDeclined,
    SandboxLedger,
    SimRefund,
    SimTrade,
)

START = 1_800_000_000  # 2027-01-15 08:00 UTC
SCHEDULE = (15, 30, 60)
NOTIFY_URL = "http://127.0.0.1:9/notify"


@pytest.fixture
def clock() -> Iterator[time_machine.Traveller]:
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


@pytest.fixture
def ledger(clock: time_machine.Traveller) -> SandboxLedger:
    return SandboxLedger()


def qr_trade(
    ledger: SandboxLedger,
    out_trade_no: str = "T1",
    amount_fen: int = 1000,
    expires_in: int = 3600,
    **kw: object,
) -> SimTrade:
    return ledger.create_trade(
        out_trade_no=out_trade_no,
        amount_fen=amount_fen,
        mode=PayMode.MERCHANT_QR,
        subject="服务包",
        notify_url=kw.pop("notify_url", NOTIFY_URL),  # type: ignore[arg-type]
        expires_at=time.time() + expires_in,
        **kw,  # type: ignore[arg-type]
    )


def paid_trade(
    ledger: SandboxLedger, out_trade_no: str = "T1", amount_fen: int = 1000
) -> tuple[SimTrade, str]:
    trade = qr_trade(ledger, out_trade_no, amount_fen)
    payer = ledger.new_payer(balance_fen=10_000)
    ledger.scan(trade.reference, payer)
    assert trade.state is TradeState.PAID
    return trade, payer


def state_of(trade: SimTrade) -> TradeState:
    """The trade's state now (a function call, so type checkers do not keep an earlier narrowing)."""
    return trade.state


def refund_state(refund: SimRefund) -> RefundState:
    return refund.state


# --- payers and codes ----------------------------------------------------------------------------


def test_payer_codes_are_18_digits_with_the_wallet_prefix(ledger: SandboxLedger) -> None:
    payer = ledger.new_payer()
    for prefix in ("13", "28"):
        code = ledger.payer_code(payer, prefix=prefix)
        assert len(code) == 18 and code.isdigit() and code.startswith(prefix)
    assert ledger.new_payer(payer_id=payer) == payer  # idempotent


def test_code_pays_now(ledger: SandboxLedger) -> None:
    payer = ledger.new_payer(balance_fen=5000)
    code = ledger.payer_code(payer)
    trade = ledger.pay_with_code(out_trade_no="C1", amount_fen=1200, subject="s", auth_code=code)
    assert trade.state is TradeState.PAID
    assert trade.paid_at == START
    assert ledger.charged_fen(payer) == 1200
    assert ledger.payers[payer].balance_fen == 3800
    assert ledger.payments_of("C1") == 1
    assert ledger.query("C1") is trade


def test_code_with_password_pays_at_the_scheduled_time(
    ledger: SandboxLedger, clock: time_machine.Traveller
) -> None:
    payer = ledger.new_payer()
    code = ledger.payer_code(payer, pay_after_s=10)
    trade = ledger.pay_with_code(out_trade_no="C1", amount_fen=100, subject="s", auth_code=code)
    assert trade.state is TradeState.PAYING
    clock.shift(9)
    assert ledger.query("C1") is trade and trade.state is TradeState.PAYING
    clock.shift(30)
    ledger.advance()
    assert state_of(trade) is TradeState.PAID
    assert trade.paid_at == START + 10  # when the payer confirmed, not when somebody looked
    assert ledger.payments_of("C1") == 1


def test_code_never_confirmed_stays_paying(ledger: SandboxLedger, clock: time_machine.Traveller) -> None:
    payer = ledger.new_payer()
    code = ledger.payer_code(payer, behaviour="never")
    trade = ledger.pay_with_code(out_trade_no="C1", amount_fen=100, subject="s", auth_code=code)
    clock.shift(86_400)
    ledger.advance()
    assert trade.state is TradeState.PAYING
    assert ledger.charged_fen(payer) == 0


@pytest.mark.parametrize(("behaviour", "balance"), [("decline", 10_000), ("pay", 99)])
def test_code_declined_for_funds(ledger: SandboxLedger, behaviour: str, balance: int) -> None:
    payer = ledger.new_payer(balance_fen=balance)
    code = ledger.payer_code(payer, behaviour=behaviour)  # type: ignore[arg-type]
    with pytest.raises(SandboxDeclined) as declined:
        ledger.pay_with_code(out_trade_no="C1", amount_fen=100, subject="s", auth_code=code)
    assert declined.value.code == "insufficient_funds"
    assert "C1" not in ledger.trades
    with pytest.raises(SandboxDeclined) as again:  # the code is spent either way
        ledger.pay_with_code(out_trade_no="C2", amount_fen=1, subject="s", auth_code=code)
    assert again.value.code == "code_used"


def test_code_rules(ledger: SandboxLedger) -> None:
    payer = ledger.new_payer()
    code = ledger.payer_code(payer)
    ledger.pay_with_code(out_trade_no="C1", amount_fen=100, subject="s", auth_code=code)
    cases = [
        ("C2", code, "code_used"),
        ("C3", "130000000000000000", "code_invalid"),
        ("C1", ledger.payer_code(payer), "trade_paid"),
    ]
    for out_trade_no, auth_code, expected in cases:
        with pytest.raises(SandboxDeclined) as declined:
            ledger.pay_with_code(out_trade_no=out_trade_no, amount_fen=100, subject="s", auth_code=auth_code)
        assert declined.value.code == expected
    assert ledger.payments_of("C1") == 1
    assert ledger.charged_fen(payer) == 100


def test_reused_out_trade_no_of_an_unpaid_code_trade(ledger: SandboxLedger) -> None:
    payer = ledger.new_payer()
    ledger.pay_with_code(
        out_trade_no="C1", amount_fen=100, subject="s", auth_code=ledger.payer_code(payer, behaviour="never")
    )
    with pytest.raises(SandboxDeclined) as declined:
        ledger.pay_with_code(
            out_trade_no="C1", amount_fen=100, subject="s", auth_code=ledger.payer_code(payer)
        )
    assert declined.value.code == "trade_exists"


# --- QR and JSAPI trades ------------------------------------------------------------------------


def test_create_trade_is_idempotent_for_identical_repeats(ledger: SandboxLedger) -> None:
    trade = qr_trade(ledger)
    assert qr_trade(ledger) is trade
    with pytest.raises(SandboxDeclined) as other:
        qr_trade(ledger, amount_fen=999)
    assert other.value.code == "trade_exists"
    with pytest.raises(SandboxDeclined) as zero:
        qr_trade(ledger, "T2", amount_fen=0)
    assert zero.value.code == "invalid_amount"


def test_create_trade_refuses_paid_and_closed_numbers(ledger: SandboxLedger) -> None:
    paid_trade(ledger, "T1")
    qr_trade(ledger, "T2")
    ledger.close("T2")
    for out_trade_no, expected in (("T1", "trade_paid"), ("T2", "trade_closed")):
        with pytest.raises(SandboxDeclined) as declined:
            qr_trade(ledger, out_trade_no)
        assert declined.value.code == expected


def test_unscanned_qr_trade_is_invisible_to_query(ledger: SandboxLedger) -> None:
    trade = qr_trade(ledger)
    assert ledger.query("T1") is None
    assert ledger.lookup("T1") is trade
    ledger.scan(trade.reference, ledger.new_payer(), pay_after_s=30)
    assert ledger.query("T1") is trade
    assert trade.state is TradeState.PAYING


def test_scan_with_delay_pays_later_and_notifies(
    ledger: SandboxLedger, clock: time_machine.Traveller
) -> None:
    trade = qr_trade(ledger)
    payer = ledger.new_payer()
    ledger.scan(trade.reference, payer, pay_after_s=20)
    assert ledger.notices == []
    clock.shift(21)
    ledger.advance()
    assert trade.state is TradeState.PAID
    assert trade.paid_at == START + 20
    assert [(n.kind, n.out_trade_no, n.url) for n in ledger.notices] == [("payment", "T1", NOTIFY_URL)]


def test_unknown_reference_is_declined(ledger: SandboxLedger) -> None:
    with pytest.raises(SandboxDeclined) as declined:
        ledger.scan("sandbox://nothing", ledger.new_payer())
    assert declined.value.code == "trade_not_found"


def test_jsapi_payment_by_the_given_payer_only(ledger: SandboxLedger) -> None:
    payer, other = ledger.new_payer(), ledger.new_payer()
    trade = ledger.create_trade(
        out_trade_no="J1",
        amount_fen=300,
        mode=PayMode.JSAPI,
        subject="s",
        notify_url=None,
        expires_at=time.time() + 600,
        payer=payer,
    )
    assert ledger.query("J1") is trade  # a JSAPI trade exists from the start
    with pytest.raises(SandboxDeclined) as declined:
        ledger.pay_jsapi(trade.reference, other)
    assert declined.value.code == "payer_mismatch"
    ledger.pay_jsapi(trade.reference)
    assert trade.state is TradeState.PAID
    assert ledger.charged_fen(payer) == 300
    assert ledger.charged_fen(other) == 0
    assert ledger.notices == []  # no notify_url, no notice


def test_payment_fails_when_the_balance_is_gone(ledger: SandboxLedger) -> None:
    trade = qr_trade(ledger, amount_fen=500)
    ledger.scan(trade.reference, ledger.new_payer(balance_fen=499))
    assert trade.state is TradeState.FAILED
    assert ledger.payments_of("T1") == 0


# --- expiry and close --------------------------------------------------------------------------


def test_expiry_closes_an_unpaid_trade(ledger: SandboxLedger, clock: time_machine.Traveller) -> None:
    trade = qr_trade(ledger, expires_in=60)
    clock.shift(61)
    assert ledger.lookup("T1") is trade
    assert trade.state is TradeState.CLOSED
    payer = ledger.new_payer()
    ledger.scan(trade.reference, payer)
    assert trade.state is TradeState.CLOSED
    assert ledger.charged_fen(payer) == 0


def test_confirmation_after_expiry_does_not_pay(ledger: SandboxLedger, clock: time_machine.Traveller) -> None:
    trade = qr_trade(ledger, expires_in=60)
    payer = ledger.new_payer()
    ledger.scan(trade.reference, payer, pay_after_s=90)
    clock.shift(91)
    ledger.advance()
    assert trade.state is TradeState.CLOSED
    assert ledger.charged_fen(payer) == 0


def test_confirmation_just_before_expiry_pays(ledger: SandboxLedger, clock: time_machine.Traveller) -> None:
    trade = qr_trade(ledger, expires_in=60)
    ledger.scan(trade.reference, ledger.new_payer(), pay_after_s=59)
    clock.shift(120)
    ledger.advance()
    assert trade.state is TradeState.PAID


def test_close_rules(ledger: SandboxLedger, clock: time_machine.Traveller) -> None:
    trade = qr_trade(ledger)
    payer = ledger.new_payer()
    ledger.scan(trade.reference, payer, pay_after_s=100)
    assert ledger.close("T1") is trade
    assert trade.state is TradeState.CLOSED
    clock.shift(200)
    ledger.advance()
    assert trade.state is TradeState.CLOSED
    assert ledger.charged_fen(payer) == 0

    paid_trade(ledger, "T2")
    code = ledger.payer_code(payer, behaviour="never")
    ledger.pay_with_code(out_trade_no="T3", amount_fen=1, subject="s", auth_code=code)
    for out_trade_no, expected in (("T2", "trade_paid"), ("T3", "trade_paying"), ("T4", "trade_not_found")):
        with pytest.raises(SandboxDeclined) as declined:
            ledger.close(out_trade_no)
        assert declined.value.code == expected


# --- reverse -----------------------------------------------------------------------------------


def test_reverse_returns_the_money_of_a_paid_trade(ledger: SandboxLedger) -> None:
    payer = ledger.new_payer(balance_fen=5000)
    code = ledger.payer_code(payer)
    ledger.pay_with_code(out_trade_no="C1", amount_fen=1200, subject="s", auth_code=code)
    trade, refunded = ledger.reverse("C1")
    assert refunded
    assert trade is not None and trade.state is TradeState.REVERSED
    assert ledger.charged_fen(payer) == 0
    assert ledger.payers[payer].balance_fen == 5000


def test_reverse_of_an_unpaid_trade_stops_a_later_confirmation(
    ledger: SandboxLedger, clock: time_machine.Traveller
) -> None:
    payer = ledger.new_payer()
    code = ledger.payer_code(payer, pay_after_s=40)
    ledger.pay_with_code(out_trade_no="C1", amount_fen=100, subject="s", auth_code=code)
    clock.shift(30)
    trade, refunded = ledger.reverse("C1")
    assert not refunded
    assert trade is not None and trade.state is TradeState.REVERSED
    clock.shift(30)
    ledger.advance()
    assert trade.state is TradeState.REVERSED
    assert ledger.charged_fen(payer) == 0
    assert ledger.payments_of("C1") == 0


def test_reverse_after_the_scheduled_confirmation_refunds(
    ledger: SandboxLedger, clock: time_machine.Traveller
) -> None:
    payer = ledger.new_payer()
    code = ledger.payer_code(payer, pay_after_s=31)
    ledger.pay_with_code(out_trade_no="C1", amount_fen=100, subject="s", auth_code=code)
    clock.shift(32)
    _, refunded = ledger.reverse("C1")  # PAY-09 (e): the payer confirmed at 31 s
    assert refunded
    assert ledger.charged_fen(payer) == 0


def test_reverse_of_unknown_and_refunded_trades(ledger: SandboxLedger) -> None:
    assert ledger.reverse("nope") == (None, False)
    paid_trade(ledger)
    ledger.refund(out_trade_no="T1", out_refund_no="R1", amount_fen=10)
    with pytest.raises(SandboxDeclined) as declined:
        ledger.reverse("T1")
    assert declined.value.code == "trade_refunded"


# --- refunds -----------------------------------------------------------------------------------


def test_refund_completes_after_the_delay(ledger: SandboxLedger, clock: time_machine.Traveller) -> None:
    trade, payer = paid_trade(ledger, amount_fen=1000)
    refund = ledger.refund(out_trade_no="T1", out_refund_no="R1", amount_fen=300)
    assert refund.state is RefundState.PROCESSING
    assert ledger.charged_fen(payer) == 1000
    clock.shift(REFUND_COMPLETES_AFTER_S - 1)
    assert ledger.query_refund("T1", "R1") is refund
    assert refund.state is RefundState.PROCESSING
    clock.shift(2)
    ledger.advance()
    assert refund_state(refund) is RefundState.SUCCEEDED
    assert refund.succeeded_at == START + REFUND_COMPLETES_AFTER_S
    assert ledger.charged_fen(payer) == 700
    assert trade.refunded_fen == 300
    assert [(n.kind, n.out_refund_no) for n in ledger.notices] == [("payment", None), ("refund", "R1")]


def test_refund_same_number_is_the_same_refund(ledger: SandboxLedger, clock: time_machine.Traveller) -> None:
    _, payer = paid_trade(ledger, amount_fen=1000)
    refund = ledger.refund(out_trade_no="T1", out_refund_no="R1", amount_fen=600)
    assert ledger.refund(out_trade_no="T1", out_refund_no="R1", amount_fen=600) is refund
    clock.shift(10)
    assert ledger.refund(out_trade_no="T1", out_refund_no="R1", amount_fen=600) is refund
    assert refund.state is RefundState.SUCCEEDED
    assert ledger.charged_fen(payer) == 400
    with pytest.raises(SandboxDeclined) as mismatch:
        ledger.refund(out_trade_no="T1", out_refund_no="R1", amount_fen=500)
    assert mismatch.value.code == "refund_mismatch"


def test_refund_limits(ledger: SandboxLedger) -> None:
    paid_trade(ledger, amount_fen=1000)
    ledger.refund(out_trade_no="T1", out_refund_no="R1", amount_fen=600)
    cases = [
        ("T1", "R2", 401, {}, "refund_exceeds"),
        ("T1", "R3", 0, {}, "refund_exceeds"),
        ("T1", "R4", 1, {"max_refunds": 1}, "too_many_refunds"),
        ("T9", "R5", 1, {}, "trade_not_found"),
    ]
    for out_trade_no, out_refund_no, amount, options, expected in cases:
        with pytest.raises(SandboxDeclined) as declined:
            ledger.refund(
                out_trade_no=out_trade_no, out_refund_no=out_refund_no, amount_fen=amount, **options
            )
        assert declined.value.code == expected
    ledger.refund(out_trade_no="T1", out_refund_no="R6", amount_fen=400)  # exactly the rest


def test_refund_of_unpaid_or_unscanned_trades(ledger: SandboxLedger) -> None:
    trade = qr_trade(ledger)
    with pytest.raises(SandboxDeclined) as unscanned:
        ledger.refund(out_trade_no="T1", out_refund_no="R1", amount_fen=1)
    assert unscanned.value.code == "trade_not_found"
    ledger.scan(trade.reference, ledger.new_payer(), pay_after_s=60)
    with pytest.raises(SandboxDeclined) as unpaid:
        ledger.refund(out_trade_no="T1", out_refund_no="R1", amount_fen=1)
    assert unpaid.value.code == "trade_not_paid"


def test_failed_refund_returns_nothing_and_a_retry_runs_again(
    ledger: SandboxLedger, clock: time_machine.Traveller
) -> None:
    trade, payer = paid_trade(ledger, amount_fen=1000)
    ledger.script_refund("R1", "fail")
    refund = ledger.refund(out_trade_no="T1", out_refund_no="R1", amount_fen=1000)
    clock.shift(REFUND_COMPLETES_AFTER_S + 1)
    ledger.advance()
    assert refund.state is RefundState.FAILED
    assert ledger.charged_fen(payer) == 1000
    assert trade.refunded_fen == 0  # a failed refund frees the amount

    assert ledger.refund(out_trade_no="T1", out_refund_no="R1", amount_fen=1000) is refund
    assert refund_state(refund) is RefundState.PROCESSING
    clock.shift(REFUND_COMPLETES_AFTER_S + 1)
    ledger.advance()
    assert refund_state(refund) is RefundState.SUCCEEDED
    assert ledger.charged_fen(payer) == 0
    assert [n.kind for n in ledger.notices] == ["payment", "refund", "refund"]


def test_abnormal_refund_keeps_the_money(ledger: SandboxLedger, clock: time_machine.Traveller) -> None:
    trade, payer = paid_trade(ledger, amount_fen=1000)
    ledger.script_refund("R1", "abnormal")
    refund = ledger.refund(out_trade_no="T1", out_refund_no="R1", amount_fen=100)
    clock.shift(REFUND_COMPLETES_AFTER_S + 1)
    ledger.advance()
    assert refund.state is RefundState.ABNORMAL
    assert ledger.charged_fen(payer) == 1000
    assert trade.refunded_fen == 100  # still reserved: it may yet go through by hand


def test_refund_notice_goes_to_the_refund_url(ledger: SandboxLedger, clock: time_machine.Traveller) -> None:
    trade, _ = paid_trade(ledger)
    trade.extra["refund_notify_url"] = "http://127.0.0.1:9/refund"
    ledger.refund(out_trade_no="T1", out_refund_no="R1", amount_fen=1)
    clock.shift(REFUND_COMPLETES_AFTER_S)
    ledger.advance()
    assert ledger.notices[-1].url == "http://127.0.0.1:9/refund"


# --- notices -----------------------------------------------------------------------------------


class Receiver:
    """A transport that records deliveries and answers with scripted acks."""

    def __init__(self, acks: list[bool] | None = None, fail: bool = False) -> None:
        self.acks = list(acks or [])
        self.fail = fail
        self.received: list[tuple[str, bytes, float]] = []

    def __call__(self, url: str, body: bytes) -> tuple[int, bytes]:
        self.received.append((url, body, time.time()))
        if self.fail:
            raise ConnectionRefusedError("nobody listening")
        ok = self.acks.pop(0) if self.acks else False
        return (200, b"OK") if ok else (500, b"NO")


def render(notice: Notice) -> bytes:
    return f"{notice.kind}:{notice.out_trade_no}:{notice.attempts}".encode()


def is_ack(status: int, body: bytes) -> bool:
    return status == 200 and body == b"OK"


def deliver(ledger: SandboxLedger, receiver: Receiver) -> int:
    return ledger.deliver_due(SCHEDULE, render, receiver, is_ack)


def test_acknowledged_notice_is_sent_once(ledger: SandboxLedger, clock: time_machine.Traveller) -> None:
    paid_trade(ledger)
    receiver = Receiver(acks=[True])
    assert deliver(ledger, receiver) == 1
    clock.shift(3600)
    assert deliver(ledger, receiver) == 0
    assert [(url, body) for url, body, _ in receiver.received] == [(NOTIFY_URL, b"payment:T1:0")]
    assert ledger.notices[0].acknowledged
    assert ledger.notices[0].bodies == [b"payment:T1:0"]


def test_unacknowledged_notice_follows_the_retry_schedule(
    ledger: SandboxLedger, clock: time_machine.Traveller
) -> None:
    paid_trade(ledger)
    receiver = Receiver()
    for _ in range(200):  # walk time second by second through the whole schedule and beyond
        deliver(ledger, receiver)
        clock.shift(1)
    sent_at = [at - START for _, _, at in receiver.received]
    assert sent_at == [0, 15, 45, 105]  # first try, then +15, +30, +60; then it gives up
    assert ledger.notices[0].attempts == len(SCHEDULE) + 1
    assert not ledger.notices[0].acknowledged


def test_retry_stops_once_acknowledged(ledger: SandboxLedger, clock: time_machine.Traveller) -> None:
    paid_trade(ledger)
    receiver = Receiver(acks=[False, True])
    for _ in range(200):
        deliver(ledger, receiver)
        clock.shift(1)
    assert [at - START for _, _, at in receiver.received] == [0, 15]
    assert ledger.notices[0].acknowledged


def test_transport_errors_count_as_unacknowledged(
    ledger: SandboxLedger, clock: time_machine.Traveller
) -> None:
    paid_trade(ledger)
    receiver = Receiver(fail=True)
    assert deliver(ledger, receiver) == 1
    clock.shift(15)
    assert deliver(ledger, receiver) == 1
    assert ledger.notices[0].attempts == 2


def test_drop_mode_loses_the_notice(ledger: SandboxLedger) -> None:
    ledger.notify_mode = "drop"
    paid_trade(ledger)
    receiver = Receiver(acks=[True])
    assert deliver(ledger, receiver) == 0
    assert ledger.notices == []
    assert ledger.payments_of("T1") == 1  # the payment itself happened


def test_duplicate_mode_sends_twice(ledger: SandboxLedger, clock: time_machine.Traveller) -> None:
    ledger.notify_mode = "duplicate"
    paid_trade(ledger)
    receiver = Receiver(acks=[True, True])
    assert deliver(ledger, receiver) == 2
    assert [body for _, body, _ in receiver.received] == [b"payment:T1:0", b"payment:T1:0"]
    clock.shift(3600)
    assert deliver(ledger, receiver) == 0


def test_duplicate_mode_one_ack_is_enough(ledger: SandboxLedger, clock: time_machine.Traveller) -> None:
    ledger.notify_mode = "duplicate"
    paid_trade(ledger)
    deliver(ledger, Receiver(acks=[False, True]))
    assert ledger.notices[0].acknowledged


# --- faults ------------------------------------------------------------------------------------


def test_faults_are_consumed_once_each(ledger: SandboxLedger) -> None:
    ledger.fail_next("charge", "timeout", times=2, apply=False, delay_s=2)
    ledger.fail_next("query", "http_500")
    assert ledger.take_fault("refund") is None
    first = ledger.take_fault("charge")
    assert first is not None
    assert (first.kind, first.apply, first.delay_s) == ("timeout", False, 2)
    assert ledger.take_fault("charge") is not None
    assert ledger.take_fault("charge") is None
    query_fault = ledger.take_fault("query")
    assert query_fault is not None and query_fault.kind == "http_500"
    assert ledger.take_fault("query") is None
    assert ledger.faults == []


def test_any_endpoint_fault_hits_the_next_call(ledger: SandboxLedger) -> None:
    ledger.fail_next("any", "system_error")
    fault = ledger.take_fault("close")
    assert fault is not None and fault.kind == "system_error"
    assert ledger.take_fault("close") is None


def test_faults_apply_in_the_order_scripted(ledger: SandboxLedger) -> None:
    ledger.fail_next("charge", "http_500")
    ledger.fail_next("charge", "bad_signature")
    kinds = [fault.kind for fault in iter(lambda: ledger.take_fault("charge"), None)]
    assert kinds == ["http_500", "bad_signature"]


# --- books -------------------------------------------------------------------------------------


def test_books_record_calls_and_paid_trades(ledger: SandboxLedger) -> None:
    paid_trade(ledger, "T1")
    qr_trade(ledger, "T2")
    ledger.record_call("query", "T1")
    assert ledger.calls == [(START, "query", "T1")]
    assert [trade.out_trade_no for trade in ledger.paid_trades()] == ["T1"]


def test_provider_ids_are_unique_and_dated(ledger: SandboxLedger) -> None:
    ids = {qr_trade(ledger, f"T{i}").provider_trade_no for i in range(50)}
    assert len(ids) == 50
    assert all(
        len(i) == 28 and i.startswith("42000" + time.strftime("%Y%m%d", time.gmtime(START))) for i in ids
    )


def test_reset_forgets_everything(ledger: SandboxLedger) -> None:
    paid_trade(ledger)
    ledger.fail_next("charge", "timeout")
    ledger.reset()
    assert (ledger.trades, ledger.payers, ledger.faults, ledger.notices) == ({}, {}, [], [])
