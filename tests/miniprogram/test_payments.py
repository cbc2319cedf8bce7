"""Mini-program payments (`/mp/v1/bills`, `/mp/v1/payments`): the resident's own and family bills,
WeChat JSAPI through the real wechatpy client against the loopback WeChat Pay emulator."""

from __future__ import annotations

import itertools
import uuid

import pytest
from sqlalchemy import func, select

from app.billing import providers
from app.billing.models import Bill, BillStatus, OrderState, PaymentOrder, PaymentOrderEvent
from app.billing.services import orders
from app.billing.services.orders import Actor
from app.core.auth import Role
from app.core.db import commit, db
from app.institutions.models import Institution
from app.residents.models import Resident
from payments.base import Channel
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
