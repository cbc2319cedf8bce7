"""Issue 4's acceptance story at the desk, end to end over HTTP against the loopback sandboxes.

The real wechatpy and python-alipay-sdk clients talk HTTP to the in-process WeChat Pay and Alipay
emulators; the payer is played through the development payer simulator (`/_sandbox/...`), and the
emulators' signed notifications are delivered into the app's `/callbacks/...` as the providers do.

1. A cashier creates a bill, shows its WeChat QR; a payer scans and pays; the notification turns
   the order PAID (by callback, not by query).
2. The cashier scans an Alipay payment code; the payer "enters the password" after 10 s; the
   procedure's polling finds it PAID.
3. A payer who never enters the password is reversed at 30 s and never charged.
4. A partial refund goes to the provider with its out_refund_no and ends SUCCEEDED by query.
(The aggregate QR → H5 cashier part is `tests/billing/test_cashier_browser.py`.)
"""

from __future__ import annotations

import urllib.parse
import uuid
from datetime import timedelta
from typing import Any

import time_machine
from flask import Flask

from app.billing import providers
from app.billing.jobs import passive, refunds
from app.core import clock
from app.core.auth import Role
from app.core.db import commit, db
from payments.base import Channel
from tests.factories import ApiClient, make_centre, make_staff, token_for

BILLING = "/api/v1/billing"


def _idem() -> dict[str, str]:
    return {"Idempotency-Key": f"story-{uuid.uuid4()}"}


class Notifier:
    """The providers' notification delivery, aimed at the app's callback URLs."""

    def __init__(self, app: Flask) -> None:
        self.client = app.test_client()
        self.replies: list[tuple[str, int, bytes]] = []

    def __call__(self, url: str, body: bytes) -> tuple[int, bytes]:
        commit()  # the request commits on the test's connection: end our own transaction first
        path = urllib.parse.urlsplit(url).path
        content_type = "text/xml" if "/wechat/" in path else "application/x-www-form-urlencoded"
        response = self.client.post(path, data=body, headers={"Content-Type": content_type})
        db.session.expire_all()
        self.replies.append((path, response.status_code, response.get_data()))
        return response.status_code, response.get_data()


def _order(cashier: ApiClient, order_id: str) -> dict[str, Any]:
    response = cashier.get(f"{BILLING}/orders/{order_id}")
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_issue_4_desk_story(app: Flask) -> None:
    centre = make_centre()
    cashier = ApiClient(app.test_client(), token_for(make_staff(Role.CASHIER, centre)))
    payer_side = app.test_client()  # the payer's phone, via the development payer simulator
    commit()
    notifier = Notifier(app)
    with app.app_context():
        wechat, alipay = providers.sandbox(Channel.WECHAT), providers.sandbox(Channel.ALIPAY)

    # 1. A bill, its WeChat QR, a payer scans and pays; the notification marks it paid.
    bill = cashier.post(
        f"{BILLING}/bills",
        json={
            "subject": "家庭医生签约服务费",
            "items": [
                {"name": "签约服务包自付部分", "quantity": 1, "unit_price_fen": 12000, "amount_fen": 12000},
                {"name": "血常规", "quantity": 1, "unit_price_fen": 800, "amount_fen": 800},
            ],
            "source": "other",
        },
        headers=_idem(),
    )
    assert bill.status_code == 201, bill.get_json()
    assert bill.get_json()["amount_fen"] == 12800
    started = cashier.post(
        f"{BILLING}/bills/{bill.get_json()['id']}/payments",
        json={"mode": "merchant_qr", "channel": "wechat"},
        headers=_idem(),
    )
    assert started.status_code == 201, started.get_json()
    order = started.get_json()
    assert order["state"] == "pending" and order["qr_content"].startswith("weixin://")
    png = cashier.get(f"{BILLING}/orders/{order['id']}/qr.png")
    assert png.status_code == 200 and png.get_data().startswith(b"\x89PNG")

    scanned = payer_side.post("/_sandbox/scan", json={"qr_content": order["qr_content"]})
    assert scanned.status_code == 200, scanned.get_json()
    assert _order(cashier, order["id"])["state"] == "pending"  # nothing until the provider tells us
    assert wechat.deliver_due(transport=notifier) == 1
    assert notifier.replies[-1][1] == 200 and b"SUCCESS" in notifier.replies[-1][2]
    paid = _order(cashier, order["id"])
    assert paid["state"] == "paid"
    assert cashier.get(f"{BILLING}/bills/{bill.get_json()['id']}").get_json()["status"] == "paid"

    # The same notification again (the provider retries): acknowledged, nothing changes.
    notice = wechat.ledger.notices[-1]
    assert notifier(notice.url, notice.bodies[-1])[0] == 200
    events = cashier.get(f"{BILLING}/orders/{order['id']}/events").get_json()
    assert [e["to_state"] for e in events if e["to_state"] == "paid"] == ["paid"]

    # 2. Passive scan: the payer enters the password after 10 s.
    bill2 = cashier.post(
        f"{BILLING}/bills", json={"subject": "门诊诊查费", "amount_fen": 2500}, headers=_idem()
    )
    code = payer_side.post("/_sandbox/payer-codes", json={"channel": "alipay", "pay_after_s": 10}).get_json()
    with time_machine.travel(clock.now(), tick=False) as traveller:
        scan = cashier.post(
            f"{BILLING}/bills/{bill2.get_json()['id']}/payments",
            json={"mode": "payer_code", "auth_code": code["auth_code"]},
            headers=_idem(),
        )
        assert scan.status_code == 201, scan.get_json()
        waiting = scan.get_json()
        assert waiting["state"] == "paying" and waiting["channel"] == "alipay"
        assert code["auth_code"] not in str(waiting)  # the desk sees only the last four digits
        for _ in range(3):  # the procedure polls every 5 s; the payer confirms at 10 s
            traveller.shift(timedelta(seconds=5))
            with app.app_context():
                passive.advance_passive(uuid.UUID(waiting["id"]))
        assert _order(cashier, waiting["id"])["state"] == "paid"
    assert alipay.ledger.payments_of(waiting["out_trade_no"]) == 1

    # 3. A payer who never pays: reversed at 30 s, never charged.
    bill3 = cashier.post(
        f"{BILLING}/bills", json={"subject": "门诊诊查费", "amount_fen": 1800}, headers=_idem()
    )
    never = payer_side.post(
        "/_sandbox/payer-codes", json={"channel": "wechat", "behaviour": "never"}
    ).get_json()
    with time_machine.travel(clock.now(), tick=False) as traveller:
        stuck = cashier.post(
            f"{BILLING}/bills/{bill3.get_json()['id']}/payments",
            json={"mode": "payer_code", "auth_code": never["auth_code"]},
            headers=_idem(),
        ).get_json()
        assert stuck["state"] == "paying"
        for _ in range(8):
            traveller.shift(timedelta(seconds=5))
            with app.app_context():
                passive.advance_passive(uuid.UUID(stuck["id"]))
        final = _order(cashier, stuck["id"])
    assert final["state"] == "reversed"
    assert wechat.ledger.charged_fen(never["payer"]) == 0
    reverse_calls = [
        at for at, name, no in wechat.ledger.calls if name == "reverse" and no == stuck["out_trade_no"]
    ]
    charge_calls = [
        at for at, name, no in wechat.ledger.calls if name == "charge" and no == stuck["out_trade_no"]
    ]
    assert reverse_calls and charge_calls and reverse_calls[0] - charge_calls[0] >= 15

    # 4. A partial refund of the QR payment: same out_refund_no at the provider, final by query.
    refund = cashier.post(
        f"{BILLING}/orders/{order['id']}/refunds",
        json={"amount_fen": 800, "reason": "血常规未做"},
        headers=_idem(),
    )
    assert refund.status_code == 201, refund.get_json()
    too_much = cashier.post(
        f"{BILLING}/orders/{order['id']}/refunds",
        json={"amount_fen": 12001, "reason": "多退"},
        headers=_idem(),
    )
    assert too_much.status_code == 409 and too_much.get_json()["code"] == "refund_exceeds_paid"
    refund_id = uuid.UUID(refund.get_json()["id"])
    with app.app_context():
        refunds.apply_refund(refund_id)
    with time_machine.travel(clock.now() + timedelta(seconds=30), tick=False), app.app_context():
        refunds.settle_refund(refund_id)
    settled = cashier.get(f"{BILLING}/refunds/{refund_id}").get_json()
    assert settled["status"] == "succeeded"
    trade = wechat.ledger.trades[order["out_trade_no"]]
    assert list(trade.refunds) == [settled["out_refund_no"]]
