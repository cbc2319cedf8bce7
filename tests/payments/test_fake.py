"""What the fake adds to the contract: its JSON notification format, fault handling, Alipay flavour,
notification retries and the bill."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
import time_machine

from payments.base import (
    Channel,
    ChargeRequest,
    EventKind,
    InvalidCallback,
    PaymentProvider,
    PayMode,
    ProviderDeclined,
    ProviderOutcomeUnknown,
    RefundRequest,
    RefundState,
    StatementCorrupt,
    StatementKind,
    TradeState,
)
from payments.fake import CHINA, CONTENT_TYPE, NOTIFY_SCHEDULES, FakeProvider
from payments.sandbox.ledger import SandboxLedger

START = datetime(2026, 11, 20, 10, 0, tzinfo=CHINA)
URL = "http://127.0.0.1:9/callbacks/fake"


@pytest.fixture
def clock() -> Iterator[time_machine.Traveller]:
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


@pytest.fixture
def fake(clock: time_machine.Traveller) -> FakeProvider:
    return FakeProvider()


def request(
    mode: PayMode,
    no: str = "T1",
    amount_fen: int = 500,
    *,
    auth_code: str | None = None,
    payer_id: str | None = None,
) -> ChargeRequest:
    return ChargeRequest(
        out_trade_no=no,
        amount_fen=amount_fen,
        subject="服务包",
        mode=mode,
        client_ip="127.0.0.1",
        expires_at=datetime.now(CHINA) + timedelta(minutes=30),
        notify_url=URL,
        auth_code=auth_code,
        payer_id=payer_id,
    )


def pay_qr(fake: FakeProvider, no: str = "T1", amount_fen: int = 500) -> str:
    result = fake.charge(request(PayMode.MERCHANT_QR, no, amount_fen))
    assert result.qr_content
    payer = fake.ledger.new_payer()
    fake.ledger.scan(result.qr_content, payer)
    return payer


def collect(fake: FakeProvider, ok: bool = True) -> list[bytes]:
    bodies: list[bytes] = []

    def transport(url: str, body: bytes) -> tuple[int, bytes]:
        assert url == URL
        bodies.append(body)
        ack = fake.ack(ok)
        return ack.status, ack.body

    fake.deliver_due(transport)
    return bodies


def test_is_a_payment_provider() -> None:
    fake = FakeProvider(channel=Channel.ALIPAY, app_id="a", merchant_id="m")
    assert isinstance(fake, PaymentProvider)
    assert (fake.channel, fake.app_id, fake.merchant_id) == (Channel.ALIPAY, "a", "m")
    assert isinstance(fake.ledger, SandboxLedger)


def test_charge_shapes(fake: FakeProvider) -> None:
    qr = fake.charge(request(PayMode.MERCHANT_QR, "Q1"))
    assert qr.qr_content == fake.ledger.trades["Q1"].reference
    payer = fake.ledger.new_payer()
    jsapi = fake.charge(request(PayMode.JSAPI, "J1", payer_id=payer))
    assert jsapi.client_params == {"prepay": fake.ledger.trades["J1"].reference}
    code = fake.ledger.payer_code(payer, prefix="28")  # any code the ledger issued, whatever the wallet
    paid = fake.charge(request(PayMode.PAYER_CODE, "C1", auth_code=code))
    assert paid.state is TradeState.PAID
    assert paid.paid_amount_fen == 500
    assert paid.paid_at == START
    assert paid.payer_id == payer
    assert paid.provider_trade_no == fake.ledger.trades["C1"].provider_trade_no


@pytest.mark.parametrize(
    ("mode", "extra", "code"),
    [
        (PayMode.JSAPI, {}, "PARAM_ERROR"),
        (PayMode.PAYER_CODE, {"auth_code": "1234"}, "AUTH_CODE_INVALID"),
        (PayMode.PAYER_CODE, {"auth_code": "134567890123456789"}, "AUTH_CODE_INVALID"),  # never issued
    ],
)
def test_charge_refusals_are_chinese(
    fake: FakeProvider, mode: PayMode, extra: dict[str, str], code: str
) -> None:
    with pytest.raises(ProviderDeclined) as declined:
        fake.charge(request(mode, auth_code=extra.get("auth_code")))
    assert declined.value.code == code
    assert any("\u4e00" <= ch <= "\u9fff" for ch in declined.value.message)


def test_zero_amount_is_refused(fake: FakeProvider) -> None:
    with pytest.raises(ProviderDeclined):
        fake.charge(request(PayMode.MERCHANT_QR, amount_fen=0))


def test_wechat_flavour_sees_unscanned_trades(fake: FakeProvider) -> None:
    fake.charge(request(PayMode.MERCHANT_QR))
    assert fake.query("T1").state is TradeState.PENDING
    assert fake.query("nope").state is TradeState.NOT_FOUND
    assert fake.close("T1").done
    assert fake.ledger.trades["T1"].state is TradeState.CLOSED


def test_alipay_flavour_unscanned_precreate_does_not_exist(clock: time_machine.Traveller) -> None:
    fake = FakeProvider(channel=Channel.ALIPAY)
    result = fake.charge(request(PayMode.MERCHANT_QR))
    assert fake.query("T1").state is TradeState.NOT_FOUND
    closed = fake.close("T1")
    assert not closed.done  # Alipay: TRADE_NOT_EXIST, and the QR stays payable until it expires
    assert result.qr_content
    fake.ledger.scan(result.qr_content, fake.ledger.new_payer())
    assert fake.query("T1").state is TradeState.PAID


def test_close_of_a_paid_trade(fake: FakeProvider) -> None:
    pay_qr(fake)
    assert fake.close("T1").already_paid


def test_close_of_a_paying_code_trade_is_declined(fake: FakeProvider) -> None:
    code = fake.ledger.payer_code(fake.ledger.new_payer(), behaviour="never")
    fake.charge(request(PayMode.PAYER_CODE, auth_code=code))
    with pytest.raises(ProviderDeclined) as declined:
        fake.close("T1")
    assert declined.value.code == "TRADE_PAYING"


def test_reverse_of_unknown_trade_is_done(fake: FakeProvider) -> None:
    assert fake.reverse("nope").done


def test_reverse_of_a_refunded_trade_is_declined(fake: FakeProvider) -> None:
    pay_qr(fake)
    fake.refund(RefundRequest("T1", "R1", 500, 100))
    with pytest.raises(ProviderDeclined):
        fake.reverse("T1")


# --- faults ------------------------------------------------------------------------------------


@pytest.mark.parametrize("apply", [True, False])
@pytest.mark.parametrize("kind", ["timeout", "http_500", "system_error", "bad_signature"])
def test_code_charge_fault(fake: FakeProvider, kind: str, apply: bool) -> None:
    payer = fake.ledger.new_payer()
    code = fake.ledger.payer_code(payer)
    fake.ledger.fail_next("charge", kind, apply=apply, delay_s=30)  # type: ignore[arg-type]
    with pytest.raises(ProviderOutcomeUnknown):
        fake.charge(request(PayMode.PAYER_CODE, auth_code=code))
    expected = TradeState.PAID if apply else TradeState.NOT_FOUND
    assert fake.query("T1").state is expected
    assert fake.ledger.charged_fen(payer) == (500 if apply else 0)
    assert fake.ledger.calls[0][1:] == ("charge", "T1")


def test_applied_fault_on_a_declined_charge_is_still_unknown(fake: FakeProvider) -> None:
    code = fake.ledger.payer_code(fake.ledger.new_payer(), behaviour="decline")
    fake.ledger.fail_next("charge", "timeout")
    with pytest.raises(ProviderOutcomeUnknown):
        fake.charge(request(PayMode.PAYER_CODE, auth_code=code))
    assert fake.query("T1").state is TradeState.NOT_FOUND


@pytest.mark.parametrize(
    ("endpoint", "call"),
    [
        ("query", lambda f: f.query("T1")),
        ("close", lambda f: f.close("T1")),
        ("reverse", lambda f: f.reverse("T1")),
        ("refund", lambda f: f.refund(RefundRequest("T1", "R1", 500, 100))),
        ("refund_query", lambda f: f.query_refund("T1", "R1")),
        ("bill", lambda f: f.download_statement(START.date())),
    ],
)
def test_faults_on_every_endpoint(fake: FakeProvider, endpoint: str, call: object) -> None:
    pay_qr(fake)
    fake.ledger.fail_next(endpoint, "http_500")  # type: ignore[arg-type]
    with pytest.raises(ProviderOutcomeUnknown):
        call(fake)  # type: ignore[operator]
    call(fake)  # type: ignore[operator]  # consumed: the next call goes through


def test_refund_fault_applied_then_retry_is_the_same_refund(
    fake: FakeProvider, clock: time_machine.Traveller
) -> None:
    payer = pay_qr(fake)
    refund = RefundRequest("T1", "R1", 500, 200)
    fake.ledger.fail_next("refund", "timeout", apply=True)
    with pytest.raises(ProviderOutcomeUnknown):
        fake.refund(refund)
    assert fake.query_refund("T1", "R1").state is RefundState.PROCESSING
    assert fake.refund(refund).state is RefundState.PROCESSING
    clock.shift(6)
    assert fake.query_refund("T1", "R1").state is RefundState.SUCCEEDED
    assert fake.ledger.charged_fen(payer) == 300


def test_refund_with_a_wrong_total_is_declined(fake: FakeProvider) -> None:
    pay_qr(fake)
    with pytest.raises(ProviderDeclined) as declined:
        fake.refund(RefundRequest("T1", "R1", 499, 100))
    assert declined.value.code == "INVALID_REQUEST"


def test_unknown_refund_is_not_found(fake: FakeProvider) -> None:
    assert fake.query_refund("T1", "R1").state is RefundState.NOT_FOUND


def test_reverse_retry_fault(fake: FakeProvider) -> None:
    payer = fake.ledger.new_payer()
    code = fake.ledger.payer_code(payer)
    fake.charge(request(PayMode.PAYER_CODE, auth_code=code))
    fake.ledger.fail_next("reverse", "retry", apply=False)
    first = fake.reverse("T1")
    assert (first.done, first.retry) == (False, True)
    assert fake.ledger.charged_fen(payer) == 500
    second = fake.reverse("T1")
    assert (second.done, second.refunded) == (True, True)
    assert fake.ledger.charged_fen(payer) == 0


def test_corrupt_bill(fake: FakeProvider) -> None:
    fake.ledger.fail_next("bill", "corrupt")
    with pytest.raises(StatementCorrupt):
        fake.download_statement(START.date())


# --- notifications -----------------------------------------------------------------------------


def test_payment_notification_round_trip(fake: FakeProvider) -> None:
    payer = pay_qr(fake)
    (body,) = collect(fake)
    event = fake.parse_callback(body, "application/json; charset=utf-8")
    assert event.kind is EventKind.PAYMENT
    assert event.notify_id
    assert event.trade is not None
    assert (event.trade.out_trade_no, event.trade.state, event.trade.amount_fen) == (
        "T1",
        TradeState.PAID,
        500,
    )
    assert event.trade.paid_at == START
    assert event.trade.payer_id == payer
    assert event.fields["out_trade_no"] == "T1"
    assert collect(fake) == []  # acknowledged: not sent again


def test_refund_notification_round_trip(fake: FakeProvider, clock: time_machine.Traveller) -> None:
    pay_qr(fake)
    collect(fake)
    fake.refund(RefundRequest("T1", "R1", 500, 120, notify_url="http://127.0.0.1:9/refund"))
    clock.shift(6)
    bodies: list[tuple[str, bytes]] = []

    def transport(url: str, body: bytes) -> tuple[int, bytes]:
        bodies.append((url, body))
        return 200, fake.ack(True).body

    fake.deliver_due(transport)
    ((url, body),) = bodies
    assert url == "http://127.0.0.1:9/refund"
    event = fake.parse_callback(body, CONTENT_TYPE)
    assert event.kind is EventKind.REFUND
    assert event.refund is not None
    assert (event.refund.out_refund_no, event.refund.state, event.refund.refund_fen) == (
        "R1",
        RefundState.SUCCEEDED,
        120,
    )
    assert event.refund.succeeded_at == START + timedelta(seconds=5)


def test_unacknowledged_notification_is_retried_on_the_channel_schedule(
    fake: FakeProvider, clock: time_machine.Traveller
) -> None:
    pay_qr(fake)
    first = collect(fake, ok=False)
    assert len(first) == 1
    clock.shift(NOTIFY_SCHEDULES[Channel.WECHAT][0] - 1)
    assert collect(fake, ok=False) == []
    clock.shift(1)
    again = collect(fake, ok=True)
    assert len(again) == 1
    assert json.loads(again[0])["notify_id"] == json.loads(first[0])["notify_id"]  # the same notification


def forged(fake: FakeProvider, **changes: object) -> bytes:
    pay_qr(fake)
    (body,) = collect(fake)
    fields = json.loads(body)
    del fields["sign"]
    fields.update(changes)
    return fake.sign(fields)


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        (b"not json", CONTENT_TYPE, "malformed"),
        (b"[1, 2]", CONTENT_TYPE, "malformed"),
        (b"\xff\xfe", CONTENT_TYPE, "malformed"),
        (b'{"a": 1, "a": 2, "sign": "x"}', CONTENT_TYPE, "duplicate_tag"),
        (b'{"out_trade_no": "T1"}', CONTENT_TYPE, "missing_signature"),
        (b'{"out_trade_no": "T1", "sign": ""}', CONTENT_TYPE, "missing_signature"),
        (b'{"out_trade_no": "T1", "sign": "00"}', CONTENT_TYPE, "bad_signature"),
        (b"{}", "text/xml", "malformed"),
    ],
)
def test_rejected_bodies(fake: FakeProvider, body: bytes, content_type: str, reason: str) -> None:
    with pytest.raises(InvalidCallback) as rejected:
        fake.parse_callback(body, content_type)
    assert rejected.value.reason == reason


def test_notification_of_another_merchant_is_rejected(fake: FakeProvider) -> None:
    other = FakeProvider(ledger=fake.ledger, merchant_id="other-mch", secret=b"other-secret")
    pay_qr(fake)
    (body,) = [other.render_notice(notice) for notice in fake.ledger.notices]
    with pytest.raises(InvalidCallback) as foreign_key:
        fake.parse_callback(body, CONTENT_TYPE)
    assert foreign_key.value.reason == "bad_signature"
    same_key = FakeProvider(ledger=fake.ledger, merchant_id="other-mch")  # the key leaked, the id differs
    with pytest.raises(InvalidCallback) as foreign_id:
        fake.parse_callback(same_key.render_notice(fake.ledger.notices[0]), CONTENT_TYPE)
    assert foreign_id.value.reason == "foreign_merchant"


@pytest.mark.parametrize(
    "changes",
    [
        {"amount_fen": "500"},
        {"amount_fen": True},
        {"state": "bogus"},
        {"kind": "nope"},
        {"paid_at": "yesterday"},
    ],
)
def test_validly_signed_but_malformed_fields(fake: FakeProvider, changes: dict[str, object]) -> None:
    with pytest.raises(InvalidCallback) as rejected:
        fake.parse_callback(forged(fake, **changes), CONTENT_TYPE)
    assert rejected.value.reason == "malformed"


def test_ack_bodies(fake: FakeProvider) -> None:
    ok, fail = fake.ack(True), fake.ack(False)
    assert fake.is_ack(ok.status, ok.body)
    assert not fake.is_ack(fail.status, fail.body)
    assert not fake.is_ack(200, b"success")


# --- statements --------------------------------------------------------------------------------


def test_statement_lines_and_overrides(fake: FakeProvider, clock: time_machine.Traveller) -> None:
    pay_qr(fake, "T1", 500)
    pay_qr(fake, "T2", 700)
    pay_qr(fake, "T3", 900)
    fake.refund(RefundRequest("T1", "R1", 500, 100))
    clock.shift(6)
    fake.ledger.bill_overrides.update(
        {"T2": {"state": "REFUND"}, "T3": {"omit": True}, "R1": {"amount_fen": 99}}
    )
    statement = fake.download_statement(START.date())
    summary = [(x.kind, x.out_trade_no, x.out_refund_no, x.amount_fen, x.state) for x in statement.lines]
    assert summary == [
        (StatementKind.PAYMENT, "T1", None, 500, "SUCCESS"),
        (StatementKind.PAYMENT, "T2", None, 700, "REFUND"),
        (StatementKind.REFUND, "T1", "R1", 99, "REFUND"),
    ]
    assert statement.raw.decode().splitlines()[0].startswith("occurred_at,kind,")
    assert statement.lines[0].raw["amount_fen"] == "500"
    assert len(statement.sha1) == 40
    assert fake.download_statement(START.date() - timedelta(days=1)).lines == ()


def test_statement_is_by_china_date(clock: time_machine.Traveller) -> None:
    fake = FakeProvider()
    clock.move_to(datetime(2026, 11, 20, 23, 59, 59, tzinfo=CHINA))
    pay_qr(fake, "LATE")
    clock.move_to(datetime(2026, 11, 21, 0, 0, 1, tzinfo=CHINA))  # 16:00 UTC: still the 20th in UTC
    pay_qr(fake, "EARLY")
    assert [x.out_trade_no for x in fake.download_statement(START.date()).lines] == ["LATE"]
    assert [x.out_trade_no for x in fake.download_statement(START.date() + timedelta(days=1)).lines] == [
        "EARLY"
    ]


def test_reversed_paid_trade_shows_as_revoked(fake: FakeProvider) -> None:
    code = fake.ledger.payer_code(fake.ledger.new_payer())
    fake.charge(request(PayMode.PAYER_CODE, auth_code=code))
    fake.reverse("T1")
    (line,) = fake.download_statement(START.date()).lines
    assert (line.out_trade_no, line.state) == ("T1", "REVOKED")
