"""Refunds end to end (PAY-12): apply, settle by query or notification, retry with the same number,
cancel, the 50-refund cap, the amount guard, and the refund / anomaly API."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from flask import Flask
from sqlalchemy import func, select

from app.billing import flows, providers
from app.billing.jobs import refunds as refund_jobs
from app.billing.models import (
    AnomalyKind,
    OrderState,
    PaymentAnomaly,
    PaymentOrder,
    Refund,
    RefundOrigin,
    RefundStatus,
)
from app.billing.services import orders, refunds
from app.billing.services.orders import SYSTEM
from app.core.auth import Actor, Role
from app.core.db import commit, db
from app.core.errors import BusinessRuleViolation, Conflict, InvalidTransition
from app.core.outbox import OutboxMessage
from app.institutions.models import Institution
from payments.base import Channel, EventKind, PayMode, RefundState
from payments.fake import FakeProvider
from tests.audit.support import Http, idem
from tests.billing.factories import make_bill
from tests.factories import make_staff, token_for

START = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # 10:00 China time
PAID = 10_000
STAFF = Actor("staff", None, Role.CASHIER.value)


@pytest.fixture
def clock() -> Iterator[time_machine.Traveller]:
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


def paid_order(
    centre: Institution, channel: Channel = Channel.WECHAT, amount_fen: int = PAID
) -> PaymentOrder:
    """A QR order paid by a scan and confirmed by a query: PAID, committed."""
    bill = make_bill(centre, amount_fen)
    order = orders.start_order(
        bill, mode=PayMode.MERCHANT_QR, channel=channel, client_ip="127.0.0.1", actor=SYSTEM
    )
    commit()
    order = flows.charge(order.id, actor=SYSTEM)
    assert order.state == OrderState.PENDING and order.qr_content
    ledger = _ledger(channel)
    ledger.scan(order.qr_content, ledger.new_payer())
    assert flows.query_and_apply(order.id, source="query", actor=SYSTEM) == "applied"
    db.session.refresh(order)
    assert order.state == OrderState.PAID
    return order


_EMULATOR_LEDGERS: dict[Channel, Any] = {}  # set while a test runs a wire emulator of its own


def _ledger(channel: Channel) -> Any:
    if channel in _EMULATOR_LEDGERS:
        return _EMULATOR_LEDGERS[channel]
    provider: Any = providers.get(channel)
    ledger = getattr(provider, "ledger", None)
    return ledger if ledger is not None else providers.sandbox(channel).ledger


def request(order: PaymentOrder, amount_fen: int, reason: str = "患者放弃治疗") -> Refund:
    refund = orders.request_refund(
        order, amount_fen=amount_fen, reason=reason, origin=RefundOrigin.STAFF, actor=STAFF
    )
    commit()
    return refund


def reload(refund: Refund) -> Refund:
    db.session.expire_all()
    return db.session.get_one(Refund, refund.id)


def sim_refunds(order: PaymentOrder) -> dict[str, Any]:
    ledger = _ledger(Channel(order.channel))
    with ledger.lock:
        return dict(ledger.trades[order.out_trade_no].refunds)


# --- apply and settle ------------------------------------------------------------------------------


def test_a_refund_is_accepted_then_settled_by_the_query_job(
    app: Flask, fake_providers: dict[Channel, FakeProvider], centre: Institution, clock: Any
) -> None:
    order = paid_order(centre)
    refund = request(order, 4_000)
    assert refund.status == RefundStatus.PENDING and refund.out_refund_no
    assert refund_jobs.apply_refund(refund.id) == "applied"
    refund = reload(refund)
    assert refund.status == RefundStatus.PROCESSING  # the apply reply is never final
    assert refund.provider_refund_no
    assert refund_jobs.poll_refunds() == {}  # not due yet
    clock.shift(timedelta(seconds=11))
    assert refund_jobs.poll_refunds() == {"applied": 1}
    refund = reload(refund)
    assert refund.status == RefundStatus.SUCCEEDED and refund.succeeded_at is not None
    assert [h["status"] for h in refund.history] == ["pending", "processing", "succeeded"]
    assert sim_refunds(order)[refund.out_refund_no].state is RefundState.SUCCEEDED
    assert db.session.get_one(PaymentOrder, order.id).refunded_fen == 4_000
    clock.shift(timedelta(minutes=5))
    assert refund_jobs.poll_refunds() == {}  # final: nothing left to ask


def test_the_outbox_delivers_the_apply(
    app: Flask, fake_providers: dict[Channel, FakeProvider], centre: Institution, clock: Any
) -> None:
    from app.core import outbox

    order = paid_order(centre)
    refund = request(order, PAID)
    message = db.session.execute(
        select(OutboxMessage).where(OutboxMessage.topic == refunds.APPLY_TOPIC)
    ).scalar_one()
    assert message.dedupe_key == f"billing.refund_apply:{refund.out_refund_no}:0"
    assert outbox.deliver(str(message.id)) == "sent"
    assert reload(refund).status == RefundStatus.PROCESSING


@pytest.mark.parametrize("processed", [False, True], ids=["lost-request", "lost-reply"])
def test_a_timed_out_apply_is_retried_by_the_job_with_the_same_number(
    app: Flask,
    fake_providers: dict[Channel, FakeProvider],
    centre: Institution,
    clock: Any,
    processed: bool,
) -> None:
    order = paid_order(centre)
    ledger = fake_providers[Channel.WECHAT].ledger
    refund = request(order, 6_000)
    ledger.fail_next("refund", "timeout", apply=processed)
    assert refund_jobs.apply_refund(refund.id) == "unknown"
    refund = reload(refund)
    assert refund.status == RefundStatus.PENDING  # unknown is never FAILED
    assert refund.last_error and "退款单号不变" in refund.last_error
    assert len(sim_refunds(order)) == (1 if processed else 0)
    clock.shift(timedelta(minutes=3))
    assert refund_jobs.poll_refunds() == {"applied": 1}
    assert reload(refund).status == RefundStatus.PROCESSING
    assert list(sim_refunds(order)) == [refund.out_refund_no]  # one refund, our number
    refund_calls = [c for c in ledger.calls if c[1] == "refund"]
    assert len(refund_calls) == 2 and {c[2] for c in refund_calls} == {order.out_trade_no}
    clock.shift(timedelta(seconds=11))
    refund_jobs.poll_refunds()
    assert reload(refund).status == RefundStatus.SUCCEEDED
    assert ledger.payers[ledger.trades[order.out_trade_no].payer].charged_fen == PAID - 6_000


def test_a_refund_the_provider_fails_later_is_failed_then_retried_with_the_same_number(
    app: Flask, fake_providers: dict[Channel, FakeProvider], centre: Institution, clock: Any
) -> None:
    order = paid_order(centre)
    ledger = fake_providers[Channel.WECHAT].ledger
    refund = request(order, PAID)
    ledger.script_refund(refund.out_refund_no, "fail")
    assert refund_jobs.apply_refund(refund.id) == "applied"  # "accepted"
    clock.shift(timedelta(seconds=11))
    refund_jobs.poll_refunds()
    refund = reload(refund)
    assert refund.status == RefundStatus.FAILED and refund.last_error
    assert db.session.get_one(PaymentOrder, order.id).refunded_fen == PAID  # still reserved
    with pytest.raises(Conflict):
        request(order, 1)

    refunds.retry_refund(refund, actor=STAFF)
    commit()
    refund = reload(refund)
    assert refund.status == RefundStatus.PENDING and refund.attempts == 1
    keys = set(db.session.execute(select(OutboxMessage.dedupe_key)).scalars())
    assert f"billing.refund_apply:{refund.out_refund_no}:1" in keys
    assert refund_jobs.apply_refund(refund.id) == "applied"
    clock.shift(timedelta(seconds=11))
    refund_jobs.poll_refunds()
    refund = reload(refund)
    assert refund.status == RefundStatus.SUCCEEDED
    assert list(sim_refunds(order)) == [refund.out_refund_no]
    with pytest.raises(InvalidTransition):
        refunds.retry_refund(refund, actor=STAFF)


def test_a_declined_apply_is_failed_with_the_reason_and_a_cancel_releases_the_amount(
    app: Flask, fake_providers: dict[Channel, FakeProvider], centre: Institution, clock: Any
) -> None:
    order = paid_order(centre)
    ledger = fake_providers[Channel.WECHAT].ledger
    ledger.reverse(order.out_trade_no)  # the trade is no longer refundable at the provider
    refund = request(order, 3_000)
    assert refund_jobs.apply_refund(refund.id) == "applied"
    refund = reload(refund)
    assert refund.status == RefundStatus.FAILED
    assert refund.last_error == "订单未支付，不能退款"
    refunds.cancel_refund(refund, reason="改为现金退款", actor=STAFF)
    commit()
    db.session.expire_all()
    order = db.session.get_one(PaymentOrder, order.id)
    assert (order.refunded_fen, order.refund_count) == (0, 0)
    assert reload(refund).status == RefundStatus.CANCELLED
    with pytest.raises(InvalidTransition):
        refunds.cancel_refund(reload(refund), reason="again", actor=STAFF)


def test_an_abnormal_refund_raises_an_anomaly(
    app: Flask, fake_providers: dict[Channel, FakeProvider], centre: Institution, clock: Any
) -> None:
    order = paid_order(centre)
    refund = request(order, 500)
    fake_providers[Channel.WECHAT].ledger.script_refund(refund.out_refund_no, "abnormal")
    refund_jobs.apply_refund(refund.id)
    clock.shift(timedelta(seconds=11))
    refund_jobs.poll_refunds()
    assert reload(refund).status == RefundStatus.ABNORMAL
    anomaly = db.session.execute(
        select(PaymentAnomaly).where(PaymentAnomaly.kind == AnomalyKind.REFUND_ABNORMAL)
    ).scalar_one()
    assert anomaly.order_id == order.id and anomaly.institution_id == centre.id


# --- the guards ---------------------------------------------------------------------------------------


def test_the_51st_partial_refund_is_refused_locally(
    app: Flask, fake_providers: dict[Channel, FakeProvider], centre: Institution, clock: Any
) -> None:
    order = paid_order(centre)
    for _ in range(50):
        request(order, 1)
    with pytest.raises(BusinessRuleViolation) as refused:
        request(order, 1)
    assert refused.value.code == "too_many_refunds"
    db.session.expire_all()
    assert db.session.get_one(PaymentOrder, order.id).refund_count == 50
    assert not fake_providers[Channel.WECHAT].ledger.trades[order.out_trade_no].refunds  # never sent


def test_partial_and_full_refunds_never_exceed_the_payment(
    app: Flask, fake_providers: dict[Channel, FakeProvider], centre: Institution, clock: Any
) -> None:
    order = paid_order(centre)
    first, second = request(order, 3_000), request(order, 7_000)
    with pytest.raises(Conflict) as refused:
        request(order, 1)
    assert refused.value.code == "refund_exceeds_paid"
    full = paid_order(centre)
    request(full, PAID)
    with pytest.raises(Conflict):
        request(full, PAID)
    for refund in (first, second):
        refund_jobs.apply_refund(refund.id)
    clock.shift(timedelta(seconds=11))
    refund_jobs.poll_refunds()
    assert {reload(r).status for r in (first, second)} == {RefundStatus.SUCCEEDED}
    assert sum(r.amount_fen for r in sim_refunds(order).values()) == PAID
    total = db.session.execute(
        select(func.sum(Refund.amount_fen)).where(Refund.order_id == order.id)
    ).scalar_one()
    assert total == PAID


# --- notifications -------------------------------------------------------------------------------------


@pytest.fixture
def wechat_sandbox(app: Flask) -> Iterator[tuple[Any, Any]]:
    """The real wechatpy adapter wired to its own WeChat Pay loopback emulator (HTTP on 127.0.0.1)."""
    from payments.sandbox import serve
    from payments.sandbox.wechat import WeChatPaySandbox
    from payments.wechat import WeChatPayProvider

    config = app.config
    credentials = {
        "appid": config["WECHATPAY_APPID"],
        "mch_id": config["WECHATPAY_MCH_ID"],
        "api_key": config["WECHATPAY_API_KEY"],
    }
    sandbox = WeChatPaySandbox(**credentials)
    server = serve(sandbox)
    provider = WeChatPayProvider(
        **credentials,
        api_base=server.base_url,
        timeout=5.0,
        refund_notify_url="http://127.0.0.1:9/callbacks/wechat/refund",
    )
    saved = app.extensions.get(providers.EXTENSION)
    app.extensions[providers.EXTENSION] = {**(saved or {}), Channel.WECHAT: provider}
    _EMULATOR_LEDGERS[Channel.WECHAT] = sandbox.ledger
    try:
        yield sandbox, provider
    finally:
        _EMULATOR_LEDGERS.clear()
        app.extensions[providers.EXTENSION] = saved
        server.shutdown()


def test_a_wechat_refund_notification_with_encrypted_req_info_settles_the_refund(
    app: Flask, wechat_sandbox: tuple[Any, Any], centre: Institution, clock: Any
) -> None:
    """wechatpy against the WeChat Pay emulator: apply, then the AES-encrypted refund notification."""
    sandbox, provider = wechat_sandbox
    order = paid_order(centre)
    refund = request(order, 2_500)
    assert refund_jobs.apply_refund(refund.id) == "applied"
    assert reload(refund).status == RefundStatus.PROCESSING
    clock.shift(timedelta(seconds=6))
    bodies: list[bytes] = []

    def transport(url: str, body: bytes) -> tuple[int, bytes]:
        bodies.append(body)
        ack = provider.ack(True)
        return ack.status, ack.body

    sandbox.deliver_due(transport=transport)
    notices = [b for b in bodies if b"req_info" in b]
    assert len(notices) == 1 and refund.out_refund_no.encode() not in notices[0]  # encrypted
    event = provider.parse_callback(notices[0], "text/xml")
    assert event.kind is EventKind.REFUND
    assert refunds.apply_refund_event(event) == "applied"
    commit()
    refund = reload(refund)
    assert refund.status == RefundStatus.SUCCEEDED
    assert refund.history[-1]["source"] == "callback"
    assert refunds.apply_refund_event(event) == "duplicate"


def test_a_fake_refund_notification_settles_by_out_refund_no(
    app: Flask, fake_providers: dict[Channel, FakeProvider], centre: Institution, clock: Any
) -> None:
    provider = fake_providers[Channel.WECHAT]
    order = paid_order(centre)
    refund = request(order, 2_500)
    refund_jobs.apply_refund(refund.id)
    clock.shift(timedelta(seconds=6))
    bodies: list[bytes] = []
    provider.deliver_due(lambda url, body: (bodies.append(body), (200, provider.ack(True).body))[1])
    refund_bodies = [b for b in bodies if refund.out_refund_no.encode() in b]
    event = provider.parse_callback(refund_bodies[0], "application/json")
    assert refunds.apply_refund_event(event) == "applied"
    assert reload(refund).status == RefundStatus.SUCCEEDED


def test_an_alipay_trade_notification_with_refund_fee_only_schedules_a_query(
    app: Flask, fake_providers: dict[Channel, FakeProvider], centre: Institution, clock: Any
) -> None:
    from app.core import outbox

    alipay = fake_providers[Channel.ALIPAY]
    order = paid_order(centre, Channel.ALIPAY)
    refund = request(order, 4_000)
    refund_jobs.apply_refund(refund.id)
    clock.shift(timedelta(seconds=6))
    trade = alipay.ledger.trades[order.out_trade_no]
    body = alipay.sign(
        {
            "kind": "payment",
            "channel": "alipay",
            "app_id": alipay.app_id,
            "merchant_id": alipay.merchant_id,
            "notify_id": "n-refund-1",
            "out_trade_no": order.out_trade_no,
            "provider_trade_no": trade.provider_trade_no,
            "state": "paid",
            "amount_fen": PAID,
            "refunded_fen": 4_000,
        }
    )
    event = alipay.parse_callback(body, "application/json")
    assert refunds.apply_refund_event(event) == "scheduled"
    commit()
    assert reload(refund).status == RefundStatus.PROCESSING  # not settled on the notice's word
    outbox.deliver_due()
    assert reload(refund).status == RefundStatus.SUCCEEDED
    assert reload(refund).history[-1]["source"] == "query"


def test_a_refund_notification_for_an_unknown_refund_is_an_anomaly(
    app: Flask, fake_providers: dict[Channel, FakeProvider], centre: Institution, clock: Any
) -> None:
    provider = fake_providers[Channel.WECHAT]
    order = paid_order(centre)
    body = provider.sign(
        {
            "kind": "refund",
            "channel": "wechat",
            "app_id": provider.app_id,
            "merchant_id": provider.merchant_id,
            "notify_id": "n-x",
            "out_trade_no": order.out_trade_no,
            "state": "paid",
            "amount_fen": PAID,
            "out_refund_no": "RF-NOT-OURS",
            "refund_state": "succeeded",
            "refund_fen": 100,
        }
    )
    event = provider.parse_callback(body, "application/json")
    assert refunds.apply_refund_event(event) == "unknown_refund"
    assert db.session.execute(select(func.count()).select_from(PaymentAnomaly)).scalar_one() == 1


# --- routes -------------------------------------------------------------------------------------------


def _http(app: Flask, role: Role, centre: Institution | None) -> Http:
    return Http(app, token_for(make_staff(role, centre)))


def test_refund_routes_end_to_end(
    app: Flask,
    fake_providers: dict[Channel, FakeProvider],
    centre: Institution,
    other_centre: Institution,
    clock: Any,
) -> None:
    order = paid_order(centre)
    desk = _http(app, Role.CASHIER, centre)
    url = f"/api/v1/billing/orders/{order.id}/refunds"
    key = idem()
    created = desk.post(url, json={"amount_fen": 6_000, "reason": " 重复收费 "}, headers=key)
    assert created.status_code == 201, created.json
    body = created.json
    assert body["status"] == "pending" and body["status_label"] == "待提交" and body["reason"] == "重复收费"
    replay = desk.post(url, json={"amount_fen": 6_000, "reason": " 重复收费 "}, headers=key)
    assert replay.status_code == 201 and replay.json["id"] == body["id"]
    assert replay.headers.get("Idempotent-Replayed") == "true"

    over = desk.post(url, json={"amount_fen": 6_000, "reason": "再退"}, headers=idem())
    assert over.status_code == 409 and over.json["code"] == "refund_exceeds_paid"
    for bad in ({"amount_fen": 100}, {"amount_fen": 100, "reason": "  "}, {"amount_fen": 0, "reason": "x"}):
        response = desk.post(url, json=bad, headers=idem())
        assert response.status_code == 422, (bad, response.json)
    assert desk.post(url, json={"amount_fen": 1, "reason": "x"}).status_code == 400  # no key

    assert Http(app).post(url, json={"amount_fen": 1, "reason": "x"}, headers=idem()).status_code == 401
    nurse = _http(app, Role.NURSE, centre)
    assert nurse.post(url, json={"amount_fen": 1, "reason": "x"}, headers=idem()).status_code == 403
    elsewhere = _http(app, Role.CASHIER, other_centre)
    assert elsewhere.post(url, json={"amount_fen": 1, "reason": "x"}, headers=idem()).status_code == 404
    assert elsewhere.get(f"/api/v1/billing/refunds/{body['id']}").status_code == 404

    listed = desk.get(f"/api/v1/billing/refunds?order_id={order.id}&status=pending")
    assert listed.status_code == 200 and [r["id"] for r in listed.json["items"]] == [body["id"]]
    assert elsewhere.get("/api/v1/billing/refunds").json["total"] == 0
    assert desk.get("/api/v1/billing/refunds?status=bogus").status_code == 422
    detail = desk.get(f"/api/v1/billing/refunds/{body['id']}")
    assert detail.status_code == 200 and detail.json["out_refund_no"] == body["out_refund_no"]

    # retry / cancel are for FAILED refunds only
    retry_url = f"/api/v1/billing/refunds/{body['id']}/retry"
    assert desk.post(retry_url).status_code == 409
    fake_providers[Channel.WECHAT].ledger.script_refund(body["out_refund_no"], "fail")
    refund_jobs.apply_refund(uuid.UUID(body["id"]))
    clock.shift(timedelta(seconds=11))
    refund_jobs.poll_refunds()
    assert desk.get(f"/api/v1/billing/refunds/{body['id']}").json["status"] == "failed"
    cancel_url = f"/api/v1/billing/refunds/{body['id']}/cancel"
    assert desk.post(cancel_url, json={"reason": "现金退款"}).status_code == 403  # admins only
    admin = _http(app, Role.CENTRE_ADMIN, centre)
    assert admin.post(cancel_url, json={}).status_code == 422
    retried = desk.post(retry_url)
    assert (
        retried.status_code == 200 and retried.json["status"] == "pending" and retried.json["attempts"] == 1
    )
    assert retried.json["out_refund_no"] == body["out_refund_no"]
    assert admin.post(cancel_url, json={"reason": "现金退款"}).status_code == 409  # pending now


def test_anomaly_routes(
    app: Flask,
    fake_providers: dict[Channel, FakeProvider],
    centre: Institution,
    other_centre: Institution,
    clock: Any,
) -> None:
    order = paid_order(centre)
    anomaly, _ = orders.record_anomaly(AnomalyKind.AMOUNT_MISMATCH, source="test", order=order, amount_fen=1)
    foreign, _ = orders.record_anomaly(
        AnomalyKind.UNKNOWN_ORDER, source="test", channel="wechat", out_trade_no="LHFOREIGN"
    )
    commit()
    admin = _http(app, Role.CENTRE_ADMIN, centre)
    district = _http(app, Role.DISTRICT_ADMIN, None)
    other_admin = _http(app, Role.CENTRE_ADMIN, other_centre)

    mine = admin.get("/api/v1/billing/anomalies?status=open")
    assert mine.status_code == 200 and [a["id"] for a in mine.json["items"]] == [str(anomaly.id)]
    assert mine.json["items"][0]["kind_label"] == "金额不符"
    assert district.get("/api/v1/billing/anomalies").json["total"] == 2
    assert district.get("/api/v1/billing/anomalies?kind=unknown_order").json["total"] == 1
    assert other_admin.get("/api/v1/billing/anomalies").json["total"] == 0
    assert admin.get("/api/v1/billing/anomalies?kind=nope").status_code == 422
    assert _http(app, Role.CASHIER, centre).get("/api/v1/billing/anomalies").status_code == 403
    assert Http(app).get("/api/v1/billing/anomalies").status_code == 401

    url = f"/api/v1/billing/anomalies/{anomaly.id}/resolve"
    assert other_admin.post(url, json={"resolution": "已核实"}).status_code == 404
    assert admin.post(url, json={"resolution": " "}).status_code == 422
    assert (
        admin.post(f"/api/v1/billing/anomalies/{foreign.id}/resolve", json={"resolution": "看看"}).status_code
        == 404
    )
    resolved = admin.post(url, json={"resolution": "已与支付渠道核实，金额无误"})
    assert resolved.status_code == 200, resolved.json
    assert resolved.json["status"] == "resolved" and resolved.json["owner_id"] == resolved.json["resolved_by"]
    assert admin.post(url, json={"resolution": "再处理一次"}).status_code == 409
    done = district.post(
        f"/api/v1/billing/anomalies/{foreign.id}/resolve", json={"resolution": "非本系统订单"}
    )
    assert done.status_code == 200
