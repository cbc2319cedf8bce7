"""The cashier's desk API: bills, payments, live order status, QR images, close/stop.

Against the in-memory fake provider (the passive-scan procedure itself, also against the loopback
emulators, is in test_passive.py).
"""

from __future__ import annotations

import io
import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from PIL import Image
from sqlalchemy import select

from app.billing.jobs import passive, recovery
from app.billing.models import Bill, OrderState, PaymentOrder, PaymentOrderEvent
from app.core.audit import AuditEvent
from app.core.auth import Role
from app.core.db import db
from app.core.idempotency import IdempotencyKey
from payments.base import Channel
from tests.audit.support import Http
from tests.billing.factories import cashier_http, idem, make_bill, payer_code
from tests.factories import make_centre, make_staff, token_for

BILLS = "/api/v1/billing/bills"
ORDERS = "/api/v1/billing/orders"
ITEMS = [
    {"name": "家庭医生签约服务包（自付部分）", "quantity": 1, "unit_price_fen": 1200, "amount_fen": 1200},
    {"name": "血糖检测", "quantity": 2, "unit_price_fen": 600, "amount_fen": 1200},
]


@pytest.fixture
def frozen() -> Iterator[Any]:
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    with time_machine.travel(start, tick=False) as traveller:
        yield traveller


def _qr_order(desk: Http, bill: Bill, channel: str = "wechat") -> dict[str, Any]:
    response = desk.post(
        f"{BILLS}/{bill.id}/payments", json={"mode": "merchant_qr", "channel": channel}, headers=idem()
    )
    assert response.status_code == 201, response.json
    return response.json


def _order(order_id: Any) -> PaymentOrder:
    db.session.expire_all()
    order = db.session.get(PaymentOrder, uuid.UUID(str(order_id)))
    assert order is not None
    return order


# --- bills -------------------------------------------------------------------------------------------


def test_cashier_opens_a_bill_with_items(desk, centre, cashier):
    response = desk.post(
        BILLS,
        json={
            "items": ITEMS,
            "subject": "签约服务费",
            "source": "contract",
            "source_ref": "QY-1",
            "payer_name": "张三",
        },
        headers=idem(),
    )
    assert response.status_code == 201, response.json
    body = response.json
    assert body["amount_fen"] == 2400
    assert body["status"] == "open" and body["status_label"] == "待支付"
    assert body["institution_id"] == str(centre.id)
    assert body["cashier_id"] == str(cashier.id)
    assert body["orders"] == []
    assert len(body["items"]) == 2


def test_a_bill_by_amount_and_its_idempotent_replay(desk):
    key = idem()
    payload = {"amount_fen": 1500, "subject": "第三方体检服务", "source": "third_party"}
    first = desk.post(BILLS, json=payload, headers=key)
    again = desk.post(BILLS, json=payload, headers=key)
    assert first.status_code == again.status_code == 201
    assert again.json["id"] == first.json["id"]
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert desk.post(BILLS, json=payload).status_code == 400  # the key is required


@pytest.mark.parametrize(
    "payload",
    [
        {"subject": "无金额"},
        {"amount_fen": 0, "subject": "零元"},
        {"amount_fen": -100, "subject": "负数"},
        {"amount_fen": 12.5, "subject": "小数"},
        {"amount_fen": "100", "subject": "字符串"},
        {
            "items": [{"name": "检测", "quantity": 2, "unit_price_fen": 600, "amount_fen": 1000}],
            "subject": "乘错",
        },
        {"items": ITEMS, "amount_fen": 2000, "subject": "合计不符"},
        {"amount_fen": 100, "subject": "来源", "source": "walk_in"},
        {"amount_fen": 100, "subject": "x" * 65},
    ],
    ids=["no-amount", "zero", "negative", "float", "string", "item-product", "items-total", "source", "long"],
)
def test_bad_bills_are_422(desk, payload):
    response = desk.post(BILLS, json=payload, headers=idem())
    assert response.status_code == 422, response.json


def test_an_unknown_resident_is_422_and_a_duplicate_source_ref_is_409(desk):
    unknown = {"amount_fen": 100, "subject": "签约", "resident_id": str(uuid.uuid4())}
    response = desk.post(BILLS, json=unknown, headers=idem())
    assert response.status_code == 422 and response.json["code"] == "resident_not_found"
    payload = {"amount_fen": 100, "subject": "HIS收费", "source": "his", "source_ref": "HIS-0001"}
    assert desk.post(BILLS, json=payload, headers=idem()).status_code == 201
    duplicate = desk.post(BILLS, json=payload, headers=idem())
    assert duplicate.status_code == 409 and duplicate.json["code"] == "bill_exists"


def test_who_may_open_and_read_bills(app, client, centre):
    payload = {"amount_fen": 100, "subject": "收费"}
    assert client.post(BILLS, json=payload, headers=idem()).status_code == 401
    for role in (Role.NURSE, Role.DOCTOR, Role.CENTRE_ADMIN):
        assert cashier_http(app, centre, role).post(BILLS, json=payload, headers=idem()).status_code == 201
    district = Http(app, token_for(make_staff(Role.DISTRICT_ADMIN, None)))
    assert district.post(BILLS, json=payload, headers=idem()).status_code == 403
    assert district.get(BILLS).status_code == 200
    health = cashier_http(app, centre, Role.PUBLIC_HEALTH)
    assert health.post(BILLS, json=payload, headers=idem()).status_code == 403
    assert health.get(BILLS).status_code == 403


def test_bills_are_listed_by_status_and_day_within_the_centre(app, desk, centre):
    open_bill = make_bill(centre, 100)
    cancelled = make_bill(centre, 200)
    make_bill(make_centre(), 300)  # another centre's
    desk.post(f"{BILLS}/{cancelled.id}/cancel", json={"reason": "开错了"})

    listed = desk.get(BILLS).json
    assert {b["id"] for b in listed["items"]} == {str(open_bill.id), str(cancelled.id)}
    only_open = desk.get(BILLS, query_string={"status": "open"}).json
    assert [b["id"] for b in only_open["items"]] == [str(open_bill.id)]
    today = datetime.now(UTC).astimezone().date()
    tomorrow = (today + timedelta(days=2)).isoformat()
    assert desk.get(BILLS, query_string={"date_from": tomorrow}).json["total"] == 0
    assert desk.get(BILLS, query_string={"size": 1}).json["pages"] == 2
    assert desk.get(BILLS, query_string={"status": "nope"}).status_code == 422
    bad_range = {"date_from": "2026-02-02", "date_to": "2026-02-01"}
    assert desk.get(BILLS, query_string=bad_range).status_code == 422


def test_get_and_cancel_a_bill(app, desk, centre, fake_providers):
    bill = make_bill(centre, 100)
    assert desk.get(f"{BILLS}/{bill.id}").json["bill_no"] == bill.bill_no
    other = Http(app, token_for(make_staff(Role.CASHIER, make_centre())))
    assert other.get(f"{BILLS}/{bill.id}").status_code == 404
    assert desk.post(f"{BILLS}/{bill.id}/cancel", json={}).status_code == 422

    order = _qr_order(desk, bill)
    blocked = desk.post(f"{BILLS}/{bill.id}/cancel", json={"reason": "付款人不交了"})
    assert blocked.status_code == 409 and blocked.json["code"] == "bill_has_open_orders"
    fake_providers[Channel.WECHAT].ledger.trades[order["out_trade_no"]].created_at -= 400
    db.session.execute(
        PaymentOrder.__table__.update()
        .where(PaymentOrder.id == uuid.UUID(order["id"]))
        .values(
            created_at=datetime.now(UTC) - timedelta(minutes=6),
            charge_called_at=datetime.now(UTC) - timedelta(minutes=6),
        )
    )
    assert desk.post(f"{ORDERS}/{order['id']}/close", json={}).json["state"] == "closed"

    cancelled = desk.post(f"{BILLS}/{bill.id}/cancel", json={"reason": "付款人不交了"})
    assert cancelled.status_code == 200 and cancelled.json["status"] == "cancelled"
    again = desk.post(f"{BILLS}/{bill.id}/cancel", json={"reason": "再作废一次"})
    assert again.status_code == 409


# --- payments ----------------------------------------------------------------------------------------


def test_a_qr_payment_shows_a_png_and_an_svg(desk, centre, fake_providers):
    bill = make_bill(centre, 2500)
    order = _qr_order(desk, bill, "alipay")
    assert order["state"] == "pending" and order["channel"] == "alipay"
    assert order["qr_content"] and order["expires_at"]

    png = desk.get(order["qr_png_url"])
    assert png.status_code == 200 and png.mimetype == "image/png"
    assert png.headers["Cache-Control"] == "no-store"
    image = Image.open(io.BytesIO(png.data))
    assert image.size[0] == image.size[1] > 100
    svg = desk.get(order["qr_svg_url"])
    assert svg.status_code == 200 and svg.mimetype == "image/svg+xml"
    assert b"<svg" in svg.data


def test_qr_images_are_409_when_there_is_no_payable_qr(app, desk, centre, fake_providers, frozen):
    _, code = payer_code(fake_providers[Channel.WECHAT])
    paid = desk.post(
        f"{BILLS}/{make_bill(centre).id}/payments",
        json={"mode": "payer_code", "auth_code": code},
        headers=idem(),
    ).json
    no_qr = desk.get(f"{ORDERS}/{paid['id']}/qr.png")
    assert no_qr.status_code == 409 and no_qr.json["code"] == "order_has_no_qr"

    order = _qr_order(desk, make_bill(centre))
    frozen.shift(timedelta(minutes=16))  # past the 15-minute expiry
    desk = cashier_http(app, centre)  # (the first session idled out meanwhile)
    expired = desk.get(f"{ORDERS}/{order['id']}/qr.svg")
    assert expired.status_code == 409 and expired.json["code"] == "qr_not_payable"
    assert "过期" in expired.json["message"]
    assert desk.get(f"{ORDERS}/{order['id']}").json["expired"] is True


def test_qr_of_a_paid_order_is_409(desk, centre, fake_providers):
    order = _qr_order(desk, make_bill(centre))
    ledger = fake_providers[Channel.WECHAT].ledger
    ledger.scan(order["qr_content"], ledger.new_payer())
    passive_query = desk.post(f"{ORDERS}/{order['id']}/close", json={})
    assert passive_query.status_code == 409 and passive_query.json["code"] == "order_already_paid"
    assert desk.get(f"{ORDERS}/{order['id']}").json["state"] == "paid"
    assert desk.get(f"{ORDERS}/{order['id']}/qr.png").status_code == 409


def test_a_payer_code_paid_at_once(desk, centre, fake_providers):
    payer, code = payer_code(fake_providers[Channel.WECHAT])
    bill = make_bill(centre, 880)
    response = desk.post(
        f"{BILLS}/{bill.id}/payments", json={"mode": "payer_code", "auth_code": code}, headers=idem()
    )
    assert response.status_code == 201
    body = response.json
    assert body["state"] == "paid" and body["state_label"] == "已支付" and body["next_step"] == "收款成功"
    assert body["paid_at"] and body["channel"] == "wechat"
    assert fake_providers[Channel.WECHAT].ledger.charged_fen(payer) == 880
    live = desk.get(f"{ORDERS}/{body['id']}").json
    assert live["state"] == "paid" and live["amount_fen"] == 880

    again = desk.post(
        f"{BILLS}/{bill.id}/payments", json={"mode": "payer_code", "auth_code": code}, headers=idem()
    )
    assert again.status_code == 409 and again.json["code"] == "bill_not_open"


def test_a_declined_payer_code_fails_with_the_reason_and_a_new_code_pays(desk, centre, fake_providers):
    ledger = fake_providers[Channel.ALIPAY].ledger
    _, poor = payer_code(fake_providers[Channel.ALIPAY], behaviour="decline")
    payer, good = payer_code(fake_providers[Channel.ALIPAY])
    bill = make_bill(centre, 5000)
    failed = desk.post(
        f"{BILLS}/{bill.id}/payments", json={"mode": "payer_code", "auth_code": poor}, headers=idem()
    )
    assert failed.status_code == 201
    assert (
        failed.json["state"] == "failed" and failed.json["decline_message"] == "用户余额不足，请更换付款方式"
    )
    assert "重新扫码" in failed.json["next_step"]
    paid = desk.post(
        f"{BILLS}/{bill.id}/payments", json={"mode": "payer_code", "auth_code": good}, headers=idem()
    )
    assert paid.json["state"] == "paid"
    assert paid.json["out_trade_no"] != failed.json["out_trade_no"]
    assert ledger.charged_fen(payer) == 5000


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"mode": "payer_code", "auth_code": "9912345678901234"}, "无法识别的付款码"),
        ({"mode": "payer_code", "auth_code": "abc"}, "无法识别的付款码"),
        ({"mode": "payer_code"}, None),
        ({"mode": "merchant_qr"}, None),
        ({"mode": "merchant_qr", "channel": "unionpay"}, None),
        ({"mode": "jsapi", "channel": "wechat"}, None),
        ({"mode": "merchant_qr", "channel": "wechat", "auth_code": "134567890123456789"}, None),
    ],
    ids=["unknown-code", "not-digits", "no-code", "no-channel", "bad-channel", "jsapi", "qr-with-code"],
)
def test_bad_payments_are_422(desk, centre, fake_providers, payload, message):
    response = desk.post(f"{BILLS}/{make_bill(centre).id}/payments", json=payload, headers=idem())
    assert response.status_code == 422, response.json
    if message:
        assert message in response.json["message"]
    assert not db.session.execute(select(PaymentOrder)).scalars().all()


def test_payments_need_a_login_a_creating_role_and_the_own_centre(app, client, centre, fake_providers):
    bill = make_bill(centre)
    path = f"{BILLS}/{bill.id}/payments"
    payload = {"mode": "merchant_qr", "channel": "wechat"}
    assert client.post(path, json=payload, headers=idem()).status_code == 401
    auditor = Http(app, token_for(make_staff(Role.AUDITOR, centre)))
    assert auditor.post(path, json=payload, headers=idem()).status_code == 403
    other = Http(app, token_for(make_staff(Role.CASHIER, make_centre())))
    assert other.post(path, json=payload, headers=idem()).status_code == 404
    nurse = cashier_http(app, centre, Role.NURSE)
    order = nurse.post(path, json=payload, headers=idem()).json
    assert auditor.get(f"{ORDERS}/{order['id']}").status_code == 200
    assert auditor.get(f"{ORDERS}/{order['id']}/qr.png").status_code == 403
    assert other.get(f"{ORDERS}/{order['id']}").status_code == 404
    assert other.post(f"{ORDERS}/{order['id']}/close", json={}).status_code == 404
    assert client.get(f"{ORDERS}/{order['id']}").status_code == 401


def test_a_second_payment_while_one_is_being_confirmed_is_409(desk, centre, fake_providers):
    _, slow = payer_code(fake_providers[Channel.WECHAT], pay_after_s=10)
    _, other = payer_code(fake_providers[Channel.ALIPAY])
    bill = make_bill(centre)
    first = desk.post(
        f"{BILLS}/{bill.id}/payments", json={"mode": "payer_code", "auth_code": slow}, headers=idem()
    )
    assert first.json["state"] == "paying"
    for payload in ({"mode": "payer_code", "auth_code": other}, {"mode": "merchant_qr", "channel": "alipay"}):
        second = desk.post(f"{BILLS}/{bill.id}/payments", json=payload, headers=idem())
        assert second.status_code == 409
        assert second.json["message"] == "上一笔付款仍在确认中，请稍候"
    assert fake_providers[Channel.ALIPAY].ledger.trades == {}


def test_a_retried_payment_with_a_lost_reply_is_one_trade(desk, centre, fake_providers, frozen):
    """PAY-11: the charge reply is lost (timeout after the provider took the money); the desk
    retries with the same key: the same order comes back, the provider saw one trade, and the
    procedure settles it as paid."""
    payer, code = payer_code(fake_providers[Channel.WECHAT])
    ledger = fake_providers[Channel.WECHAT].ledger
    ledger.fail_next("charge", "timeout", apply=True)
    bill = make_bill(centre, 990)
    key = idem()
    payload = {"mode": "payer_code", "auth_code": code}
    first = desk.post(f"{BILLS}/{bill.id}/payments", json=payload, headers=key)
    again = desk.post(f"{BILLS}/{bill.id}/payments", json=payload, headers=key)
    assert first.status_code == again.status_code == 201
    assert again.json["id"] == first.json["id"] and first.json["state"] == "unknown"
    assert [c for c in ledger.calls if c[1] == "charge"] == [ledger.calls[0]]
    assert list(ledger.trades) == [first.json["out_trade_no"]]

    assert passive.advance_passive(first.json["id"]) == "settled"
    assert desk.get(f"{ORDERS}/{first.json['id']}").json["state"] == "paid"
    assert ledger.payments_of(first.json["out_trade_no"]) == 1
    assert ledger.charged_fen(payer) == 990


def test_the_payer_code_is_never_stored_nor_logged_whole(desk, centre, fake_providers, caplog):
    _, code = payer_code(fake_providers[Channel.WECHAT], behaviour="never")
    caplog.set_level(logging.DEBUG)
    bill = make_bill(centre)
    body = desk.post(
        f"{BILLS}/{bill.id}/payments", json={"mode": "payer_code", "auth_code": code}, headers=idem()
    ).json
    desk.post(f"{ORDERS}/{body['id']}/close", json={})
    assert body["payer_code_tail"] == code[-4:]
    assert code not in caplog.text
    assert code not in str(body)
    stored: list[Any] = [
        *db.session.execute(select(PaymentOrder)).scalars(),
        *db.session.execute(select(PaymentOrderEvent)).scalars(),
        *db.session.execute(select(AuditEvent)).scalars(),
        *db.session.execute(select(IdempotencyKey)).scalars(),
    ]
    for row in stored:
        values = {c.key: getattr(row, c.key) for c in row.__table__.columns}
        assert code not in repr(values), type(row).__name__


# --- close -------------------------------------------------------------------------------------------


def test_wechat_close_waits_5_minutes_then_closes_at_the_provider_first(desk, centre, fake_providers, frozen):
    ledger = fake_providers[Channel.WECHAT].ledger
    order = _qr_order(desk, make_bill(centre))
    frozen.shift(60)
    closing = desk.post(f"{ORDERS}/{order['id']}/close", json={"reason": "付款人改用现金"})
    assert closing.status_code == 200
    assert closing.json["state"] == "pending" and closing.json["closing"] is True
    assert "关闭" in closing.json["next_step"]
    assert [c for c in ledger.calls if c[1] == "close"] == []
    assert desk.get(f"{ORDERS}/{order['id']}/qr.png").status_code == 409

    frozen.shift(240)
    assert recovery.close_order(uuid.UUID(order["id"])) == "closed"
    closed = _order(order["id"])
    assert closed.state == OrderState.CLOSED and closed.closing is False
    close_calls = [at for at, name, _ in ledger.calls if name == "close"]
    assert close_calls and close_calls[0] <= closed.state_changed_at.timestamp()
    assert ledger.trades[order["out_trade_no"]].state.value == "closed"
    assert desk.post(f"{ORDERS}/{order['id']}/close", json={}).json["state"] == "closed"


def test_alipay_unscanned_qr_is_closed_once_expired(desk, centre, fake_providers, frozen):
    order = _qr_order(desk, make_bill(centre), "alipay")
    closing = desk.post(f"{ORDERS}/{order['id']}/close", json={}).json
    assert closing["closing"] is True and closing["state"] == "pending"
    frozen.shift(timedelta(minutes=16))
    assert recovery.recover_orders() == {"closed": 1}
    assert _order(order["id"]).state == OrderState.CLOSED
