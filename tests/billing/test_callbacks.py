"""Provider callbacks end to end (PAY-01, PAY-03, PAY-04, PAY-05).

The payer's side runs in the sandboxes: the real adapters (wechatpy, python-alipay-sdk) against
the app's in-process loopback emulators (`providers.sandbox(channel)`), and the in-memory
`FakeProvider`. The emulators' own notifier delivers the notifications; its transport here posts
them into the Flask app (`CallbackTransport`) instead of dialling a socket. Forged notifications
are built from a genuine one: decoded, changed, and signed again exactly as the provider would
(or with the wrong key, or not at all).
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import time_machine
from flask import Flask
from sqlalchemy import func, select

from app.billing import flows, providers
from app.billing.models import (
    AnomalyKind,
    Bill,
    BillStatus,
    OrderState,
    PaymentAnomaly,
    PaymentNotification,
    PaymentOrder,
    PaymentOrderEvent,
    Refund,
    RefundOrigin,
)
from app.billing.models import RefundStatus as LocalRefundStatus
from app.billing.services import orders
from app.billing.services.orders import SYSTEM
from app.core import outbox
from app.core.audit import AuditEvent
from app.core.db import commit, db
from app.core.outbox import OutboxMessage
from app.institutions.models import Institution
from payments.base import Channel, PayMode, RefundRequest, fen_to_yuan
from payments.fake import FakeProvider
from payments.sandbox.ledger import REFUND_COMPLETES_AFTER_S, SandboxLedger
from tests.billing.factories import install_fake_providers, make_bill

CHINA = timezone(timedelta(hours=8))
AMOUNT = 2500
PROVIDER_ADDR = "203.0.113.7"

# --- posting notifications into the app ----------------------------------------------------------


@dataclass
class Delivery:
    url: str
    body: bytes
    status: int
    reply: bytes


class CallbackTransport:
    """The sandbox notifier's HTTP client, pointed at the Flask app: `transport(url, body)` POSTs
    the body to the URL's path with the provider's content type and returns (status, reply).
    `refuse=True` answers like an unreachable server (HTTP 502) without reaching the app, so the
    notice stays due and its body can be replayed or tampered with."""

    def __init__(self, app: Flask, content_type: str, *, refuse: bool = False) -> None:
        self.client = app.test_client()
        self.content_type = content_type
        self.refuse = refuse
        self.deliveries: list[Delivery] = []

    def __call__(self, url: str, body: bytes) -> tuple[int, bytes]:
        if self.refuse:
            self.deliveries.append(Delivery(url, body, 502, b""))
            return 502, b""
        status, reply = self.post(urllib.parse.urlsplit(url).path, body)
        self.deliveries.append(Delivery(url, body, status, reply))
        return status, reply

    def post(self, path: str, body: bytes, content_type: str | None = None) -> tuple[int, bytes]:
        # End the test session's transaction first: the request commits into the same connection
        # (SAVEPOINTs), and a later rollback of a transaction opened before it would undo it.
        commit()
        response = self.client.post(
            path,
            data=body,
            headers={"Content-Type": content_type or self.content_type},
            environ_base={"REMOTE_ADDR": PROVIDER_ADDR},
        )
        db.session.expire_all()  # the test's session must see what the request committed
        return response.status_code, response.data


# --- one rig per provider -------------------------------------------------------------------------


@dataclass
class Rig:
    """A provider under test with what the tests need to drive and forge its notifications."""

    name: str
    channel: Channel
    provider: Any
    ledger: SandboxLedger
    content_type: str
    deliver_due: Callable[[Callable[[str, bytes], tuple[int, bytes]]], int]
    decode: Callable[[bytes], dict[str, Any]]  # every field of a notification (sign included)
    sign: Callable[[dict[str, Any]], bytes]  # re-sign changed fields exactly as the provider does
    new_payer: Callable[[], str]
    jsapi_reference: Callable[[PaymentOrder], str]
    # Wire names of the checked fields, and how an amount is written.
    amount_field: str
    amount_text: Callable[[int], Any]
    app_field: str
    merchant_field: str
    not_paid: dict[str, Any]  # changes that make a paid notification a not-paid one
    # PAY-01 forgeries: name -> body builder from a genuine body.
    forgeries: dict[str, Callable[[bytes], bytes]] = field(default_factory=dict)

    @property
    def pay_path(self) -> str:
        return f"/callbacks/{self.channel}/pay"

    def ok_reply(self) -> bytes:
        return bytes(self.provider.ack(True).body)

    def fail_reply(self) -> bytes:
        return bytes(self.provider.ack(False).body)


def flip_one_byte(body: bytes, value: str) -> bytes:
    """Change the last character of the first occurrence of a signed value."""
    at = body.index(value.encode()) + len(value) - 1
    flipped = b"0" if body[at : at + 1] != b"0" else b"1"
    return body[:at] + flipped + body[at + 1 :]


def _fake_rig(app: Flask) -> Rig:
    provider = install_fake_providers(app)[Channel.WECHAT]
    other = FakeProvider(channel=Channel.WECHAT, secret=b"another-merchant-secret")

    def decode(body: bytes) -> dict[str, Any]:
        fields: dict[str, Any] = json.loads(body)
        return fields

    def sign(fields: dict[str, Any]) -> bytes:
        return provider.sign({k: v for k, v in fields.items() if k != "sign"})

    def with_fields(changes: dict[str, Any]) -> Callable[[bytes], bytes]:
        return lambda body: json.dumps({**decode(body), **changes}).encode()

    def other_key(body: bytes) -> bytes:
        return other.sign({k: v for k, v in decode(body).items() if k != "sign"})

    def drop_sign(body: bytes) -> bytes:
        return json.dumps({k: v for k, v in decode(body).items() if k != "sign"}).encode()

    return Rig(
        name="fake",
        channel=Channel.WECHAT,
        provider=provider,
        ledger=provider.ledger,
        content_type="application/json",
        deliver_due=provider.deliver_due,
        decode=decode,
        sign=sign,
        new_payer=provider.ledger.new_payer,
        jsapi_reference=lambda order: str((order.client_params or {})["prepay"]),
        amount_field="amount_fen",
        amount_text=lambda fen: fen,
        app_field="app_id",
        merchant_field="merchant_id",
        not_paid={"state": "pending"},
        forgeries={
            "one_byte_flipped": lambda body: flip_one_byte(body, decode(body)["out_trade_no"]),
            "empty_sign": with_fields({"sign": ""}),
            "no_sign": drop_sign,
            "other_merchant_key": other_key,
        },
    )


def _wechat_rig(app: Flask) -> Rig:
    from payments.sandbox.wechat import parse_flat_xml, sign, signed_xml, to_xml

    provider, sandbox = providers.get(Channel.WECHAT), providers.sandbox(Channel.WECHAT)
    api_key = app.config["WECHATPAY_API_KEY"]
    other_key = "0123456789abcdef0123456789abcdef"  # another merchant's APIv2 key

    def decode(body: bytes) -> dict[str, Any]:
        return dict(parse_flat_xml(body))

    def resign(fields: dict[str, Any], key: str = api_key) -> bytes:
        return signed_xml({k: v for k, v in fields.items() if k != "sign"}, key)

    def unsigned(body: bytes) -> dict[str, Any]:
        return {k: v for k, v in decode(body).items() if k != "sign"}

    def hmac_signed(body: bytes, *, declare: bool) -> bytes:
        fields = unsigned(body)
        fields.pop("sign_type", None)
        if declare:
            fields["sign_type"] = "HMAC-SHA256"
        return to_xml({**fields, "sign": sign(fields, api_key, "HMAC-SHA256")})

    def jsapi_reference(order: PaymentOrder) -> str:
        return str((order.client_params or {})["package"]).removeprefix("prepay_id=")

    return Rig(
        name="wechat",
        channel=Channel.WECHAT,
        provider=provider,
        ledger=sandbox.ledger,
        content_type="text/xml; charset=utf-8",
        deliver_due=lambda transport: sandbox.deliver_due(transport=transport),
        decode=decode,
        sign=resign,
        new_payer=sandbox.ledger.new_payer,
        jsapi_reference=jsapi_reference,
        amount_field="total_fee",
        amount_text=str,
        app_field="appid",
        merchant_field="mch_id",
        not_paid={"result_code": "FAIL", "err_code": "PAYERROR", "err_code_des": "支付失败"},
        forgeries={
            "one_byte_flipped": lambda body: flip_one_byte(body, decode(body)["out_trade_no"]),
            "empty_sign": lambda body: to_xml({**unsigned(body), "sign": ""}),
            "return_code_missing": lambda body: resign(
                {k: v for k, v in decode(body).items() if k != "return_code"}
            ),
            "other_merchant_key": lambda body: resign(decode(body), other_key),
            "hmac_signed_declared": lambda body: hmac_signed(body, declare=True),
            "hmac_signed_undeclared": lambda body: hmac_signed(body, declare=False),
        },
    )


def _alipay_rig(app: Flask) -> Rig:
    from payments.sandbox.alipay import FORM, load_private_key, rsa2_sign, sign_content
    from payments.sandbox.keys import generate_key_pair

    provider, sandbox = providers.get(Channel.ALIPAY), providers.sandbox(Channel.ALIPAY)
    platform_key = sandbox._alipay_private_key  # the emulator's "Alipay" private key

    def decode(body: bytes) -> dict[str, Any]:
        return dict(urllib.parse.parse_qsl(body.decode(), keep_blank_values=True))

    def resign(fields: dict[str, Any], key: Any = platform_key) -> bytes:
        content = {k: v for k, v in fields.items() if k not in ("sign", "sign_type") and v != ""}
        signed = {**content, "sign": rsa2_sign(key, sign_content(content)), "sign_type": "RSA2"}
        return urllib.parse.urlencode(signed).encode()

    def other_key(body: bytes) -> bytes:
        return resign(decode(body), load_private_key(_foreign_alipay_key(generate_key_pair)))

    return Rig(
        name="alipay",
        channel=Channel.ALIPAY,
        provider=provider,
        ledger=sandbox.ledger,
        content_type=FORM,
        deliver_due=lambda transport: sandbox.deliver_due(transport=transport),
        decode=decode,
        sign=resign,
        new_payer=sandbox.new_payer,
        jsapi_reference=lambda order: str((order.client_params or {})["tradeNO"]),
        amount_field="total_amount",
        amount_text=fen_to_yuan,
        app_field="app_id",
        merchant_field="seller_id",
        not_paid={"trade_status": "WAIT_BUYER_PAY"},
        forgeries={
            "one_byte_flipped": lambda body: flip_one_byte(body, decode(body)["out_trade_no"]),
            "empty_sign": lambda body: urllib.parse.urlencode({**decode(body), "sign": ""}).encode(),
            "no_sign": lambda body: urllib.parse.urlencode(
                {k: v for k, v in decode(body).items() if k != "sign"}
            ).encode(),
            "other_alipay_key": other_key,
        },
    )


_FOREIGN_KEY: list[str] = []


def _foreign_alipay_key(generate: Callable[[], Any]) -> str:
    """Another RSA key (an attacker's or another platform's), made once per session (slow)."""
    if not _FOREIGN_KEY:
        _FOREIGN_KEY.append(generate().private_pem)
    return _FOREIGN_KEY[0]


RIGS: dict[str, Callable[[Flask], Rig]] = {"fake": _fake_rig, "wechat": _wechat_rig, "alipay": _alipay_rig}


@pytest.fixture
def clock() -> Iterator[time_machine.Traveller]:
    """Today 10:00 China time, ticking (sandbox schedules follow it; nothing sleeps)."""
    start = datetime.now(CHINA).replace(hour=10, minute=0, second=0, microsecond=0)
    with time_machine.travel(start, tick=True) as traveller:
        yield traveller


@pytest.fixture(params=sorted(RIGS))
def rig(request: pytest.FixtureRequest, app: Flask, clock: time_machine.Traveller) -> Rig:
    return RIGS[request.param](app)


@pytest.fixture
def alerts() -> Iterator[list[PaymentAnomaly]]:
    fired: list[PaymentAnomaly] = []
    orders.add_alert_hook(fired.append)
    yield fired
    orders.remove_alert_hook(fired.append)


# --- helpers ------------------------------------------------------------------------------------


def new_order(
    rig: Rig,
    centre: Institution,
    *,
    bill: Bill | None = None,
    mode: PayMode = PayMode.MERCHANT_QR,
    payer: str | None = None,
) -> PaymentOrder:
    """A committed order, charged at the provider (QR shown / JSAPI prepay issued): PENDING."""
    bill = bill or make_bill(centre, AMOUNT)
    order = orders.start_order(
        bill, mode=mode, channel=rig.channel, client_ip="127.0.0.1", actor=SYSTEM, payer_account=payer
    )
    commit()
    order = flows.charge(order.id, actor=SYSTEM)
    assert order.state == OrderState.PENDING, order.decline_message
    return order


def scan_and_pay(rig: Rig, order: PaymentOrder) -> str:
    payer = rig.new_payer()
    assert order.qr_content
    rig.ledger.scan(order.qr_content, payer)
    return payer


def captured_notice(app: Flask, rig: Rig, out_trade_no: str) -> bytes:
    """The genuine notification the provider sends for this trade, not delivered to the app."""
    held = CallbackTransport(app, rig.content_type, refuse=True)
    rig.deliver_due(held)
    bodies = [d.body for d in held.deliveries if out_trade_no.encode() in d.body]
    assert bodies, "the sandbox sent no notification for the trade"
    return bodies[0]


def order_row(order_id: Any) -> dict[str, Any]:
    """Every column of the order as stored."""
    db.session.expire_all()
    row = db.session.execute(select(PaymentOrder.__table__).where(PaymentOrder.id == order_id)).one()
    return dict(row._mapping)


def count(model: Any, *where: Any) -> int:
    return int(db.session.execute(select(func.count()).select_from(model).where(*where)).scalar_one())


def counts() -> dict[str, int]:
    db.session.expire_all()
    return {
        "events": count(PaymentOrderEvent),
        "outbox": count(OutboxMessage),
        "audit": count(AuditEvent),
        "anomalies": count(PaymentAnomaly),
        "refunds": count(Refund),
        "notifications": count(PaymentNotification),
    }


def notifications(out_trade_no: str | None = None) -> list[PaymentNotification]:
    db.session.expire_all()
    statement = select(PaymentNotification).order_by(PaymentNotification.id)
    if out_trade_no is not None:
        statement = statement.where(PaymentNotification.out_trade_no == out_trade_no)
    return list(db.session.execute(statement).scalars())


def anomalies(*where: Any) -> list[PaymentAnomaly]:
    db.session.expire_all()
    return list(db.session.execute(select(PaymentAnomaly).where(*where)).scalars())


# --- the happy path and duplicates (PAY-04, PAY-05) ---------------------------------------------


def test_qr_order_paid_by_a_scan_turns_paid_once_by_the_notification(
    app: Flask, rig: Rig, centre: Institution
) -> None:
    order = new_order(rig, centre)
    scan_and_pay(rig, order)
    transport = CallbackTransport(app, rig.content_type)
    assert rig.deliver_due(transport) == 1

    (delivery,) = transport.deliveries
    assert delivery.url == providers.notify_url(rig.channel)
    assert (delivery.status, delivery.reply) == (200, rig.ok_reply())
    db.session.expire_all()
    order = db.session.get_one(PaymentOrder, order.id)
    assert order.state == OrderState.PAID
    assert order.provider_trade_no
    bill = db.session.get_one(Bill, order.bill_id)
    assert (bill.status, bill.paid_order_id) == (BillStatus.PAID, order.id)
    to_paid = count(
        PaymentOrderEvent, PaymentOrderEvent.order_id == order.id, PaymentOrderEvent.to_state == "paid"
    )
    assert to_paid == 1
    paid_event = db.session.execute(
        select(PaymentOrderEvent).where(
            PaymentOrderEvent.order_id == order.id, PaymentOrderEvent.to_state == "paid"
        )
    ).scalar_one()
    assert (paid_event.source, paid_event.actor_kind) == ("callback", "provider")
    assert count(OutboxMessage, OutboxMessage.topic == "billing.order_paid") == 1

    (note,) = notifications(order.out_trade_no)
    assert (note.outcome, note.verified, note.kind, note.order_id) == ("applied", True, "payment", order.id)
    assert note.remote_addr == PROVIDER_ADDR
    assert note.content_type == rig.content_type
    assert order.out_trade_no in note.body
    # The provider stops: nothing is due any more.
    assert rig.deliver_due(transport) == 0


def test_redelivered_notification_is_acknowledged_with_no_side_effect(
    app: Flask, rig: Rig, centre: Institution
) -> None:
    order = new_order(rig, centre)
    scan_and_pay(rig, order)
    transport = CallbackTransport(app, rig.content_type)
    rig.deliver_due(transport)
    before = counts()

    for _ in range(2):
        assert transport.post(rig.pay_path, transport.deliveries[0].body) == (200, rig.ok_reply())

    after = counts()
    assert after == {**before, "notifications": before["notifications"] + 2}
    assert [n.outcome for n in notifications(order.out_trade_no)] == ["applied", "duplicate", "duplicate"]
    assert order_row(order.id)["state"] == OrderState.PAID


def test_the_notifier_duplicating_a_delivery_changes_nothing_twice(
    app: Flask, rig: Rig, centre: Institution
) -> None:
    order = new_order(rig, centre)
    rig.ledger.notify_mode = "duplicate"
    scan_and_pay(rig, order)
    transport = CallbackTransport(app, rig.content_type)
    assert rig.deliver_due(transport) == 2
    assert [d.reply for d in transport.deliveries] == [rig.ok_reply()] * 2
    assert (
        count(PaymentOrderEvent, PaymentOrderEvent.order_id == order.id, PaymentOrderEvent.to_state == "paid")
        == 1
    )
    assert count(OutboxMessage, OutboxMessage.topic == "billing.order_paid") == 1


# --- PAY-01: authenticity before anything else --------------------------------------------------


def test_forged_notifications_are_refused_and_change_nothing(
    app: Flask, rig: Rig, centre: Institution
) -> None:
    order = new_order(rig, centre)
    scan_and_pay(rig, order)
    genuine = captured_notice(app, rig, order.out_trade_no)
    stored = order_row(order.id)
    transport = CallbackTransport(app, rig.content_type)
    assert rig.forgeries

    for name, forge in rig.forgeries.items():
        before = counts()
        status, reply = transport.post(rig.pay_path, forge(genuine))
        assert (status, reply) == (200, rig.fail_reply()), name
        assert order_row(order.id) == stored, name
        note = notifications()[-1]
        assert (note.outcome, note.verified, note.order_id) == ("rejected", False, None), name
        assert note.reason, name
        rejected = db.session.execute(
            select(AuditEvent).where(
                AuditEvent.action == "payment_notification.rejected", AuditEvent.object_id == str(note.id)
            )
        ).scalar_one()
        assert rejected.detail["reason"] == note.reason
        assert counts() == {
            **before,
            "notifications": before["notifications"] + 1,
            "audit": before["audit"] + 1,
        }

    # The control: the genuine notification still applies.
    assert transport.post(rig.pay_path, genuine) == (200, rig.ok_reply())
    assert order_row(order.id)["state"] == OrderState.PAID


def test_malformed_and_oversized_bodies_get_the_failure_ack(
    app: Flask, rig: Rig, centre: Institution
) -> None:
    transport = CallbackTransport(app, rig.content_type)
    before = counts()
    assert transport.post(rig.pay_path, b"") == (200, rig.fail_reply())
    assert transport.post(rig.pay_path, b"\x00\xff<xml>") == (200, rig.fail_reply())
    assert transport.post(rig.pay_path, b"x" * (64 * 1024 + 1)) == (200, rig.fail_reply())
    notes = notifications()[-3:]
    assert [n.outcome for n in notes] == ["rejected"] * 3
    assert notes[1].body.startswith("base64:")  # not UTF-8: kept byte for byte
    assert notes[2].reason == "body_too_large"
    assert counts() == {**before, "notifications": before["notifications"] + 3, "audit": before["audit"] + 3}


def test_notifications_are_accepted_only_by_post(app: Flask) -> None:
    client = app.test_client()
    for path in ("/callbacks/wechat/pay", "/callbacks/wechat/refund", "/callbacks/alipay/pay"):
        assert client.get(path).status_code == 405


# --- PAY-03: content checks ------------------------------------------------------------------------


def _variants(rig: Rig) -> dict[str, tuple[Callable[[dict[str, Any]], dict[str, Any]], AnomalyKind, bool]]:
    """name -> (change to the genuine fields, expected anomaly kind, acknowledged?)."""

    def amount(delta: int) -> Callable[[dict[str, Any]], dict[str, Any]]:
        return lambda f: {**f, rig.amount_field: rig.amount_text(AMOUNT + delta)}

    return {
        "amount_minus_1": (amount(-1), AnomalyKind.AMOUNT_MISMATCH, True),
        "amount_plus_1": (amount(+1), AnomalyKind.AMOUNT_MISMATCH, True),
        "other_merchant_id": (
            lambda f: {**f, rig.merchant_field: "2088999999999999"},
            AnomalyKind.MERCHANT_MISMATCH,
            False,
        ),
        "other_app_id": (
            lambda f: {**f, rig.app_field: "wx0000000000000000"},
            AnomalyKind.MERCHANT_MISMATCH,
            False,
        ),
        "unknown_out_trade_no": (
            lambda f: {**f, "out_trade_no": "LH20260101000000NOSUCHORDER1"},
            AnomalyKind.UNKNOWN_ORDER,
            True,
        ),
        "not_paid_state": (lambda f: {**f, **rig.not_paid}, AnomalyKind.NOT_PAID_STATE, True),
    }


def test_validly_signed_notifications_that_do_not_match_become_anomalies(
    app: Flask, rig: Rig, centre: Institution, alerts: list[PaymentAnomaly]
) -> None:
    transport = CallbackTransport(app, rig.content_type)
    for name, (change, kind, acknowledged) in _variants(rig).items():
        order = new_order(rig, centre)
        scan_and_pay(rig, order)
        genuine = captured_notice(app, rig, order.out_trade_no)
        stored = order_row(order.id)
        known = {a.id for a in anomalies()}
        fired = len(alerts)

        status, reply = transport.post(rig.pay_path, rig.sign(change(rig.decode(genuine))))

        assert (status, reply) == (200, rig.ok_reply() if acknowledged else rig.fail_reply()), name
        assert order_row(order.id) == stored, name
        assert stored["state"] == OrderState.PENDING
        (anomaly,) = [a for a in anomalies() if a.id not in known]
        assert anomaly.kind == kind, name
        assert len(alerts) == fired + 1 and alerts[-1].kind == kind, name
        note = notifications()[-1]
        assert note.outcome in ("anomaly", "rejected"), name
        if kind is not AnomalyKind.MERCHANT_MISMATCH:
            assert (note.verified, note.outcome) == (True, "anomaly"), name
        if kind in (AnomalyKind.AMOUNT_MISMATCH, AnomalyKind.NOT_PAID_STATE):
            assert anomaly.order_id == order.id, name

        # The provider notifies again: still one anomaly, one alert.
        transport.post(rig.pay_path, rig.sign(change(rig.decode(genuine))))
        assert len(anomalies()) == len(known) + 1, name
        assert order_row(order.id)["state"] == OrderState.PENDING, name


def test_a_stale_not_paid_notification_for_a_paid_order_is_ignored(
    app: Flask, rig: Rig, centre: Institution
) -> None:
    order = new_order(rig, centre)
    scan_and_pay(rig, order)
    transport = CallbackTransport(app, rig.content_type)
    rig.deliver_due(transport)
    stale = rig.sign({**rig.decode(transport.deliveries[0].body), **rig.not_paid})
    before = counts()
    assert transport.post(rig.pay_path, stale) == (200, rig.ok_reply())
    assert counts() == {**before, "notifications": before["notifications"] + 1}
    assert notifications()[-1].reason == "stale_state"


# --- PAY-05: late and second payments --------------------------------------------------------------


def test_payment_after_close_becomes_an_anomaly_with_an_automatic_refund(
    app: Flask, rig: Rig, centre: Institution, alerts: list[PaymentAnomaly]
) -> None:
    order = new_order(rig, centre)
    locked = orders.lock_order(order.id)
    assert orders.transition(locked, OrderState.CLOSED, source="api", actor=SYSTEM, reason="收银员取消")
    commit()
    scan_and_pay(rig, order)  # the payer completed at the last second
    transport = CallbackTransport(app, rig.content_type)
    rig.deliver_due(transport)

    assert transport.deliveries[0].reply == rig.ok_reply()
    stored = order_row(order.id)
    assert stored["state"] == OrderState.CLOSED
    (anomaly,) = anomalies(PaymentAnomaly.order_id == order.id)
    assert anomaly.kind == AnomalyKind.PAID_AFTER_CLOSE
    assert [a.kind for a in alerts] == [AnomalyKind.PAID_AFTER_CLOSE]
    (refund,) = db.session.execute(select(Refund).where(Refund.order_id == order.id)).scalars()
    assert (refund.origin, refund.amount_fen, refund.anomaly_id) == (RefundOrigin.ANOMALY, AMOUNT, anomaly.id)
    assert refund.out_refund_no and refund.out_refund_no != order.out_trade_no
    assert count(OutboxMessage, OutboxMessage.topic == "billing.refund_apply") == 1
    assert count(OutboxMessage, OutboxMessage.topic == "billing.order_paid") == 0
    assert db.session.get_one(Bill, order.bill_id).status == BillStatus.OPEN
    assert notifications(order.out_trade_no)[-1].outcome == "anomaly"

    before = counts()
    transport.post(rig.pay_path, transport.deliveries[0].body)
    assert counts() == {**before, "notifications": before["notifications"] + 1}


def test_one_bill_paid_by_jsapi_and_by_qr_keeps_one_payment_and_refunds_the_other(
    app: Flask, rig: Rig, centre: Institution, alerts: list[PaymentAnomaly]
) -> None:
    bill = make_bill(centre, AMOUNT)
    payer = rig.new_payer()
    by_qr = new_order(rig, centre, bill=bill)
    by_jsapi = new_order(rig, centre, bill=bill, mode=PayMode.JSAPI, payer=payer)
    rig.ledger.pay_jsapi(rig.jsapi_reference(by_jsapi), payer)
    scan_and_pay(rig, by_qr)
    transport = CallbackTransport(app, rig.content_type)
    assert rig.deliver_due(transport) == 2
    assert [d.reply for d in transport.deliveries] == [rig.ok_reply()] * 2

    db.session.expire_all()
    bill = db.session.get_one(Bill, bill.id)
    assert (bill.status, bill.paid_order_id) == (BillStatus.PAID, by_jsapi.id)  # notified first
    (anomaly,) = anomalies(PaymentAnomaly.bill_id == bill.id)
    assert (anomaly.kind, anomaly.order_id) == (AnomalyKind.DUPLICATE_PAYMENT, by_qr.id)
    (refund,) = db.session.execute(select(Refund).where(Refund.bill_id == bill.id)).scalars()
    assert (refund.order_id, refund.amount_fen, refund.origin) == (by_qr.id, AMOUNT, RefundOrigin.ANOMALY)
    assert count(OutboxMessage, OutboxMessage.topic == "billing.order_paid") == 1
    assert [a.kind for a in alerts] == [AnomalyKind.DUPLICATE_PAYMENT]


# --- out of order ----------------------------------------------------------------------------------


def test_query_first_then_the_late_notification_is_a_duplicate(
    app: Flask, rig: Rig, centre: Institution
) -> None:
    order = new_order(rig, centre)
    scan_and_pay(rig, order)
    genuine = captured_notice(app, rig, order.out_trade_no)
    assert flows.query_and_apply(order.id, source="query", actor=SYSTEM) == "applied"
    before = counts()
    transport = CallbackTransport(app, rig.content_type)
    assert transport.post(rig.pay_path, genuine) == (200, rig.ok_reply())
    assert counts() == {**before, "notifications": before["notifications"] + 1}
    assert notifications(order.out_trade_no)[-1].outcome == "duplicate"


def test_alipay_trade_finished_before_trade_success_is_harmless(
    app: Flask, centre: Institution, clock: Any
) -> None:
    rig = _alipay_rig(app)
    order = new_order(rig, centre)
    scan_and_pay(rig, order)
    success = captured_notice(app, rig, order.out_trade_no)
    finished = rig.sign({**rig.decode(success), "trade_status": "TRADE_FINISHED"})
    transport = CallbackTransport(app, rig.content_type)
    assert transport.post(rig.pay_path, finished) == (200, b"success")
    assert transport.post(rig.pay_path, success) == (200, b"success")
    assert [n.outcome for n in notifications(order.out_trade_no)] == ["applied", "duplicate"]
    assert (
        count(PaymentOrderEvent, PaymentOrderEvent.order_id == order.id, PaymentOrderEvent.to_state == "paid")
        == 1
    )


def test_alipay_unpaid_trade_closed_notification_closes_the_order(
    app: Flask, centre: Institution, clock: Any
) -> None:
    rig = _alipay_rig(app)
    order = new_order(rig, centre)
    scan_and_pay(rig, order)
    paid = rig.decode(captured_notice(app, rig, order.out_trade_no))
    closed = {k: v for k, v in paid.items() if k not in ("gmt_payment", "fund_bill_list", "receipt_amount")}
    closed.update(trade_status="TRADE_CLOSED", gmt_close=paid["gmt_create"])
    transport = CallbackTransport(app, rig.content_type)
    assert transport.post(rig.pay_path, rig.sign(closed)) == (200, b"success")
    assert order_row(order.id)["state"] == OrderState.CLOSED
    assert notifications(order.out_trade_no)[-1].outcome == "applied"


# --- failures while processing -----------------------------------------------------------------


def test_an_error_while_applying_answers_failure_and_the_retry_applies(
    app: Flask, rig: Rig, centre: Institution
) -> None:
    def broken_alert(anomaly: PaymentAnomaly) -> None:
        raise RuntimeError("alert pipeline down")

    order = new_order(rig, centre)
    locked = orders.lock_order(order.id)
    orders.transition(locked, OrderState.CLOSED, source="api", actor=SYSTEM)
    commit()
    scan_and_pay(rig, order)
    transport = CallbackTransport(app, rig.content_type)
    orders.add_alert_hook(broken_alert)
    try:
        rig.deliver_due(transport)
    finally:
        orders.remove_alert_hook(broken_alert)

    assert transport.deliveries[0].reply == rig.fail_reply()
    (note,) = notifications()
    assert (note.outcome, note.reason) == ("error", "RuntimeError")
    assert anomalies() == []
    assert count(Refund) == 0

    # The provider notifies again later; this time it goes through.
    assert transport.post(rig.pay_path, transport.deliveries[0].body) == (200, rig.ok_reply())
    assert [a.kind for a in anomalies()] == [AnomalyKind.PAID_AFTER_CLOSE]
    assert count(Refund) == 1


# --- refunds -------------------------------------------------------------------------------------


def paid_order(app: Flask, rig: Rig, centre: Institution) -> PaymentOrder:
    order = new_order(rig, centre)
    scan_and_pay(rig, order)
    rig.deliver_due(CallbackTransport(app, rig.content_type))
    db.session.expire_all()
    order = db.session.get_one(PaymentOrder, order.id)
    assert order.state == OrderState.PAID
    return order


def staff_refund(order: PaymentOrder, amount_fen: int) -> Refund:
    """A refund asked for by staff, then applied at the provider by its outbox delivery."""
    locked = orders.lock_order(order.id)
    refund = orders.request_refund(
        locked, amount_fen=amount_fen, reason="患者退费", origin=RefundOrigin.STAFF, actor=SYSTEM
    )
    commit()
    outbox.deliver_due()
    assert refund_status(refund) == LocalRefundStatus.PROCESSING
    return refund


def refund_status(refund: Refund) -> str:
    db.session.expire_all()
    return db.session.get_one(Refund, refund.id).status


@pytest.fixture(params=["fake", "wechat"])
def refund_notifying_rig(request: pytest.FixtureRequest, app: Flask, clock: time_machine.Traveller) -> Rig:
    """The providers with a refund notification of their own (WeChat's decrypted req_info)."""
    return RIGS[request.param](app)


def test_wechat_refund_notification_settles_the_refund_once(
    app: Flask, refund_notifying_rig: Rig, centre: Institution, clock: time_machine.Traveller
) -> None:
    rig = refund_notifying_rig
    order = paid_order(app, rig, centre)
    refund = staff_refund(order, 1000)
    clock.shift(REFUND_COMPLETES_AFTER_S + 1)
    transport = CallbackTransport(app, rig.content_type)
    assert rig.deliver_due(transport) == 1

    (delivery,) = transport.deliveries
    assert urllib.parse.urlsplit(delivery.url).path == "/callbacks/wechat/refund"
    assert delivery.reply == rig.ok_reply()
    assert refund_status(refund) == LocalRefundStatus.SUCCEEDED
    note = notifications()[-1]
    assert (note.outcome, note.kind, note.out_refund_no) == ("applied", "refund", refund.out_refund_no)
    assert note.order_id == order.id
    assert order_row(order.id)["state"] == OrderState.PAID

    before = counts()
    assert transport.post("/callbacks/wechat/refund", delivery.body) == (200, rig.ok_reply())
    assert counts() == {**before, "notifications": before["notifications"] + 1}
    assert notifications()[-1].outcome == "duplicate"


def test_refund_notification_arriving_before_the_payment_notification_is_harmless(
    app: Flask, rig: Rig, centre: Institution, clock: time_machine.Traveller
) -> None:
    order = new_order(rig, centre)
    scan_and_pay(rig, order)
    rig.deliver_due(CallbackTransport(app, rig.content_type, refuse=True))  # the payment notice is lost
    assert flows.query_and_apply(order.id, source="query", actor=SYSTEM) == "applied"
    refund = staff_refund(order, AMOUNT)
    clock.shift(REFUND_COMPLETES_AFTER_S + 1)  # the refund notice is due; the payment retry is not
    transport = CallbackTransport(app, rig.content_type)
    assert rig.deliver_due(transport) == 1
    outbox.deliver_due()  # Alipay: the refund notice asks for a refund query
    assert refund_status(refund) == LocalRefundStatus.SUCCEEDED

    clock.shift(3600)  # the provider's retry of the payment notice comes last
    before = counts()
    assert rig.deliver_due(transport) == 1
    assert [d.reply for d in transport.deliveries] == [rig.ok_reply()] * 2
    assert notifications(order.out_trade_no)[-1].outcome == "duplicate"
    assert counts() == {**before, "notifications": before["notifications"] + 1}
    assert order_row(order.id)["state"] == OrderState.PAID
    assert (
        count(PaymentOrderEvent, PaymentOrderEvent.order_id == order.id, PaymentOrderEvent.to_state == "paid")
        == 1
    )
    assert refund_status(refund) == LocalRefundStatus.SUCCEEDED


def test_alipay_partial_then_full_refund_arrive_on_trade_notifications(
    app: Flask, centre: Institution, clock: time_machine.Traveller
) -> None:
    rig = _alipay_rig(app)
    order = paid_order(app, rig, centre)
    transport = CallbackTransport(app, rig.content_type)

    first = staff_refund(order, 1000)
    clock.shift(REFUND_COMPLETES_AFTER_S + 1)
    rig.deliver_due(transport)
    fields = rig.decode(transport.deliveries[-1].body)
    assert (fields["trade_status"], fields["refund_fee"]) == ("TRADE_SUCCESS", "10.00")
    assert notifications()[-1].out_refund_no == first.out_refund_no
    outbox.deliver_due()
    assert refund_status(first) == LocalRefundStatus.SUCCEEDED

    second = staff_refund(order, AMOUNT - 1000)
    clock.shift(REFUND_COMPLETES_AFTER_S + 1)
    rig.deliver_due(transport)
    fields = rig.decode(transport.deliveries[-1].body)
    assert (fields["trade_status"], fields["refund_fee"]) == ("TRADE_CLOSED", fen_to_yuan(AMOUNT))
    outbox.deliver_due()
    assert refund_status(second) == LocalRefundStatus.SUCCEEDED
    assert [d.reply for d in transport.deliveries] == [b"success"] * 2
    assert order_row(order.id)["state"] == OrderState.PAID  # a refund never "closes" a paid order


def test_refund_notification_for_a_refund_we_never_asked_for_is_an_anomaly(
    app: Flask, centre: Institution, clock: time_machine.Traveller, alerts: list[PaymentAnomaly]
) -> None:
    rig = _wechat_rig(app)
    order = paid_order(app, rig, centre)
    rig.provider.refund(  # made in the merchant console, not by us
        RefundRequest(
            out_trade_no=order.out_trade_no,
            out_refund_no="RFCONSOLE0000000000000001",
            total_fen=AMOUNT,
            refund_fen=500,
            notify_url=providers.notify_url(Channel.WECHAT, "refund"),
        )
    )
    clock.shift(REFUND_COMPLETES_AFTER_S + 1)
    transport = CallbackTransport(app, rig.content_type)
    rig.deliver_due(transport)
    assert transport.deliveries[-1].reply == rig.ok_reply()
    (anomaly,) = anomalies(PaymentAnomaly.kind == AnomalyKind.UNKNOWN_ORDER)
    assert (anomaly.out_trade_no, anomaly.detail["why"]) == (order.out_trade_no, "unknown_refund")
    assert [a.id for a in alerts] == [anomaly.id]
    assert count(Refund) == 0
    assert notifications()[-1].outcome == "anomaly"


def test_callback_routes_are_public_and_kept_out_of_the_openapi_document(app: Flask) -> None:
    from app.core.api import route_auth_specs

    specs = route_auth_specs(app)
    for path in ("/callbacks/wechat/pay", "/callbacks/wechat/refund", "/callbacks/alipay/pay"):
        spec = specs[(path, "POST")]
        assert spec is not None and spec.public
    document = app.test_client().get("/openapi.json").get_json()
    assert not [path for path in document["paths"] if path.startswith("/callbacks")]
