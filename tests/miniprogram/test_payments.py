"""Mini-program payments (`/mp/v1/bills`, `/mp/v1/payments`): the resident's own and family bills,
WeChat JSAPI through the real wechatpy client against the loopback WeChat Pay emulator."""

from __future__ import annotations

import itertools
import uuid
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
import time_machine
from flask import Flask
from sqlalchemy import func, select

from app.billing import providers
from app.billing.jobs import recovery
from app.billing.jobs import refunds as refund_jobs
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
    RefundStatus,
)
from app.billing.services import orders
from app.core import clock
from app.core.auth import Actor, Role
from app.core.db import commit, db
from app.institutions.models import Institution
from app.residents.models import Resident
from payments.base import Channel
from payments.sandbox.wechat import is_success_ack, parse_flat_xml, sign
from tests.factories import ApiClient, make_centre
from tests.factories_residents import make_resident
from tests.miniprogram.conftest import Mp

_keys = itertools.count(1)


def idem() -> dict[str, str]:
    return {"Idempotency-Key": f"mp-pay-{next(_keys)}-{uuid.uuid4().hex[:8]}"}


def make_bill(centre: Institution, resident: Resident | None, amount_fen: int = 1800) -> Bill:
    bill = orders.create_bill(
        institution_id=centre.id,
        amount_fen=amount_fen,
        subject="家庭医生签约个人自付",
        actor=Actor("staff", None, Role.CASHIER.value),
        resident_id=resident.id if resident is not None else None,
        payer_name=resident.name if resident is not None else None,
    )
    commit()
    return bill


@pytest.fixture
def alice(mp: Mp, resident: Resident) -> ApiClient:
    client = mp.login("oAliceMiniProgram")
    mp.bind_self(client, resident)
    return client


def _add_family(mp: Mp, client: ApiClient, member: Resident, relationship: str) -> None:
    asked = client.post(
        "/mp/v1/family",
        json={"name": member.name, "id_number": member.id_number, "relationship": relationship},
    )
    assert asked.status_code == 202, asked.json
    assert member.phone is not None
    confirmed = client.post("/mp/v1/family/confirm", json={"otp": mp.code_sent_to(member.phone)})
    assert confirmed.status_code == 201, confirmed.json


def _events_to_paid(order_id: str) -> int:
    return int(
        db.session.execute(
            select(func.count())
            .select_from(PaymentOrderEvent)
            .where(
                PaymentOrderEvent.order_id == uuid.UUID(order_id),
                PaymentOrderEvent.to_state == OrderState.PAID,
            )
        ).scalar_one()
    )


def test_a_resident_sees_their_own_and_their_family_members_open_bills(mp, alice, home_centre, resident):
    elderly = make_resident(home_centre, name="张老汉", age=78, phone="13700002222")
    _add_family(mp, alice, elderly, "child")
    own = make_bill(home_centre, resident, 1800)
    parents = make_bill(make_centre(), elderly, 2600)
    stranger = make_bill(home_centre, make_resident(home_centre), 9900)
    paid_already = make_bill(home_centre, resident, 700)
    db.session.get(Bill, paid_already.id).status = BillStatus.CANCELLED  # type: ignore[union-attr]
    commit()
    listed = alice.get("/mp/v1/bills")
    assert listed.status_code == 200
    ids = {b["id"] for b in listed.json}
    assert ids == {str(own.id), str(parents.id)}
    assert str(stranger.id) not in ids
    item = next(b for b in listed.json if b["id"] == str(own.id))
    assert item["amount_fen"] == 1800 and item["centre_name"] == home_centre.name


def test_paying_a_bill_returns_request_payment_params_and_confirm_only_queries(
    mp, alice, home_centre, resident
):
    """PAY-07: confirm on an unpaid order leaves it PENDING; after WeChat took the money, confirm
    marks it PAID exactly once."""
    bill = make_bill(home_centre, resident, 1800)
    created = alice.post(f"/mp/v1/bills/{bill.id}/payments", json={}, headers=idem())
    assert created.status_code == 201, created.json
    payment = created.json
    assert payment["state"] == "pending" and payment["amount_fen"] == 1800
    params = payment["request_payment"]
    assert set(params) == {"timeStamp", "nonceStr", "package", "signType", "paySign"}
    assert params["package"].startswith("prepay_id=") and params["signType"] == "MD5"
    order = db.session.get(PaymentOrder, uuid.UUID(payment["order_id"]))
    assert order is not None and order.payer_account == "oAliceMiniProgram" and order.mode == "jsapi"

    unpaid = alice.post(f"/mp/v1/payments/{payment['order_id']}/confirm")
    assert unpaid.status_code == 200 and unpaid.json["state"] == "pending"

    ledger = providers.sandbox(Channel.WECHAT).ledger
    ledger.pay_jsapi(params["package"].removeprefix("prepay_id="), "oAliceMiniProgram")
    paid = alice.post(f"/mp/v1/payments/{payment['order_id']}/confirm")
    assert paid.json["state"] == "paid" and paid.json["paid"] is True
    assert paid.json["request_payment"] is None
    again = alice.post(f"/mp/v1/payments/{payment['order_id']}/confirm")
    assert again.json["state"] == "paid"
    assert _events_to_paid(payment["order_id"]) == 1
    assert ledger.payments_of(order.out_trade_no) == 1
    db.session.expire_all()
    assert db.session.get(Bill, bill.id).status == BillStatus.PAID  # type: ignore[union-attr]
    shown = alice.get(f"/mp/v1/payments/{payment['order_id']}")
    assert shown.status_code == 200 and shown.json["paid_at"]
    assert alice.get("/mp/v1/bills").json == []
    assert alice.post(f"/mp/v1/bills/{bill.id}/payments", json={}, headers=idem()).status_code == 409


def test_a_retry_reuses_the_open_prepay_and_the_same_key_replays(alice, home_centre, resident):
    bill = make_bill(home_centre, resident)
    key = idem()
    first = alice.post(f"/mp/v1/bills/{bill.id}/payments", json={}, headers=key)
    replay = alice.post(f"/mp/v1/bills/{bill.id}/payments", json={}, headers=key)
    assert replay.headers.get("Idempotent-Replayed") == "true" and replay.json == first.json
    retry = alice.post(f"/mp/v1/bills/{bill.id}/payments", json={}, headers=idem())
    assert retry.status_code == 201 and retry.json["order_id"] == first.json["order_id"]
    assert len(providers.sandbox(Channel.WECHAT).ledger.trades) == 1
    no_key = alice.post(f"/mp/v1/bills/{bill.id}/payments", json={})
    assert no_key.status_code == 400


def test_another_residents_bill_and_payment_are_404(mp, alice, home_centre, resident):
    other = make_resident(home_centre, phone="13600003333")
    theirs = make_bill(home_centre, other)
    refused = alice.post(f"/mp/v1/bills/{theirs.id}/payments", json={}, headers=idem())
    assert refused.status_code == 404 and refused.json["code"] == "bill_not_found"
    walk_in = make_bill(home_centre, None)
    assert alice.post(f"/mp/v1/bills/{walk_in.id}/payments", json={}, headers=idem()).status_code == 404
    assert alice.post(f"/mp/v1/bills/{uuid.uuid4()}/payments", json={}, headers=idem()).status_code == 404

    bob = mp.login("oBobMiniProgram")
    mp.bind_self(bob, other)
    bobs = bob.post(f"/mp/v1/bills/{theirs.id}/payments", json={}, headers=idem())
    assert bobs.status_code == 201
    order_id = bobs.json["order_id"]
    assert alice.get(f"/mp/v1/payments/{order_id}").status_code == 404
    assert alice.post(f"/mp/v1/payments/{order_id}/confirm").status_code == 404
    assert alice.get(f"/mp/v1/payments/{uuid.uuid4()}").status_code == 404


def test_the_payment_endpoints_need_a_resident_token(app, home_centre, resident):
    bill = make_bill(home_centre, resident)
    anonymous = app.test_client()
    assert anonymous.get("/mp/v1/bills").status_code == 401
    assert anonymous.post(f"/mp/v1/bills/{bill.id}/payments", json={}, headers=idem()).status_code == 401
    assert anonymous.get(f"/mp/v1/payments/{uuid.uuid4()}").status_code == 401


def test_an_unknown_charge_outcome_is_answered_unknown_and_settled_by_query(alice, home_centre, resident):
    bill = make_bill(home_centre, resident)
    providers.sandbox(Channel.WECHAT).ledger.fail_next("charge", "timeout", apply=False)
    unknown = alice.post(f"/mp/v1/bills/{bill.id}/payments", json={}, headers=idem())
    assert unknown.status_code == 201
    assert unknown.json["state"] == "unknown" and unknown.json["request_payment"] is None
    confirmed = alice.post(f"/mp/v1/payments/{unknown.json['order_id']}/confirm")
    assert confirmed.status_code == 200 and confirmed.json["paid"] is False


# --- the mini-program's own appid (one merchant, two WeChat apps) -----------------------------------


def _mp_appid(app: Flask) -> str:
    appid = providers.wechat_app_ids(app.config)[providers.MP_APP]
    # No WECHAT_MP_APPID in tests: the sandbox's mini-program appid, not the official account's.
    assert appid == providers.SANDBOX_MP_APPID != app.config["WECHATPAY_APPID"]
    return appid


def _pay(client: ApiClient, bill: Bill) -> tuple[dict[str, object], PaymentOrder]:
    created = client.post(f"/mp/v1/bills/{bill.id}/payments", json={}, headers=idem())
    assert created.status_code == 201, created.json
    order = db.session.get(PaymentOrder, uuid.UUID(created.json["order_id"]))
    assert order is not None
    return created.json, order


def test_a_mini_program_payment_uses_the_mini_program_appid_from_prepay_to_refund(
    app, alice, home_centre, resident
):
    """WeChat binds an openid to one appid: the unified order, the paySign, the notification, the
    query and the refund of a mini-program payment all carry the mini-program's appid (the emulator
    refuses a call about the trade with another of the merchant's appids)."""
    sandbox = providers.sandbox(Channel.WECHAT)
    sandbox.rejected.clear()  # the ledger is reset between tests, this list is not
    mp_appid = _mp_appid(app)
    payment, order = _pay(alice, make_bill(home_centre, resident, 1800))
    assert order.payer_app == providers.MP_APP

    trade = sandbox.ledger.lookup(order.out_trade_no)
    assert trade is not None and trade.extra["appid"] == mp_appid  # the unified order's appid
    params = dict(order.client_params or {})
    assert params["appId"] == mp_appid
    unsigned = {k: v for k, v in params.items() if k != "paySign"}
    assert sign(unsigned, app.config["WECHATPAY_API_KEY"]) == params["paySign"]
    shown = payment["request_payment"]
    assert isinstance(shown, dict) and shown["paySign"] == params["paySign"]

    sandbox.ledger.pay_jsapi(params["package"].removeprefix("prepay_id="), "oAliceMiniProgram")
    bodies: list[bytes] = []

    def transport(url: str, body: bytes) -> tuple[int, bytes]:
        bodies.append(body)
        answer = app.test_client().post(urlsplit(url).path, data=body, content_type="text/xml")
        return answer.status_code, answer.data

    assert sandbox.deliver_due(transport=transport) == 1
    assert parse_flat_xml(bodies[0])["appid"] == mp_appid
    db.session.expire_all()
    order = db.session.get_one(PaymentOrder, order.id)
    assert order.state == OrderState.PAID  # the callback took the mini-program's notification
    assert sandbox.deliver_due(transport=transport) == 0  # acknowledged with the SUCCESS XML
    mismatches = select(func.count()).select_from(PaymentAnomaly)
    mismatches = mismatches.where(PaymentAnomaly.kind == AnomalyKind.MERCHANT_MISMATCH)
    assert db.session.execute(mismatches).scalar_one() == 0
    confirmed = alice.post(f"/mp/v1/payments/{order.id}/confirm")
    assert confirmed.json["state"] == "paid"

    refund = orders.request_refund(
        order,
        amount_fen=800,
        reason="重复缴费",
        origin=RefundOrigin.STAFF,
        actor=Actor("staff", None, Role.CASHIER.value),
    )
    commit()
    assert refund_jobs.apply_refund(refund.id) == "applied"
    assert refund_jobs.settle_refund(refund.id) != "unknown"
    db.session.expire_all()
    assert db.session.get_one(Refund, refund.id).status in (
        RefundStatus.PROCESSING,
        RefundStatus.SUCCEEDED,
    )
    assert trade.refunds and next(iter(trade.refunds.values())).amount_fen == 800
    assert sandbox.rejected == []
    assert is_success_ack(200, providers.get(Channel.WECHAT).ack(True).body)


def test_an_unpaid_mini_program_order_is_closed_at_wechat_with_its_appid(app, alice, home_centre, resident):
    sandbox = providers.sandbox(Channel.WECHAT)
    sandbox.rejected.clear()
    _mp_appid(app)
    _, order = _pay(alice, make_bill(home_centre, resident))
    with time_machine.travel(clock.now() + timedelta(minutes=40), tick=False):
        assert recovery.close_order(order.id) == OrderState.CLOSED
    trade = sandbox.ledger.lookup(order.out_trade_no)
    assert trade is not None and str(trade.state) == "closed"
    assert sandbox.rejected == []


def test_the_h5_cashier_keeps_the_default_app_unless_its_oauth_appid_differs(app):
    with app.test_request_context():
        assert app.config["WECHAT_OAUTH_APPID"] in ("", app.config["WECHATPAY_APPID"])
        assert providers.h5_payer_app(Channel.WECHAT) is None
        assert providers.h5_payer_app(Channel.ALIPAY) is None
    config = {**app.config, "WECHAT_OAUTH_APPID": "wxofficialaccount0", "WECHAT_MP_APPID": "wxminiprogram00"}
    assert providers.wechat_app_ids(config) == {"mp": "wxminiprogram00", "oa": "wxofficialaccount0"}
    saved = app.config["WECHAT_OAUTH_APPID"]
    app.config["WECHAT_OAUTH_APPID"] = "wxofficialaccount0"
    try:
        with app.test_request_context():
            assert providers.h5_payer_app(Channel.WECHAT) == providers.OA_APP
            assert providers.h5_payer_app(Channel.ALIPAY) is None
    finally:
        app.config["WECHAT_OAUTH_APPID"] = saved
