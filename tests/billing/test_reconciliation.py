"""Daily bill reconciliation (PAY-13): planted differences, the scratch pool, failing bills, routes.

The provider side is a FakeProvider per channel (its bill follows the ledger's `bill_overrides`),
or, in `test_planted_differences_against_the_real_sandboxes`, the WeChat and Alipay loopback
emulators driven through the real SDKs.
"""

from __future__ import annotations

import csv
import io
import logging
import uuid
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any

import pytest
import time_machine
from flask import Flask
from sqlalchemy import func, select

from app.billing import flows, providers
from app.billing.jobs.reconciliation import ReconciliationFailed, reconcile, reconcile_yesterday
from app.billing.models import (
    AnomalyKind,
    AnomalyStatus,
    OrderState,
    PaymentAnomaly,
    PaymentOrder,
    ReconciliationItem,
    ReconciliationRun,
    ReconScratchEntry,
    Refund,
    RefundOrigin,
    RefundStatus,
    ScratchStatus,
)
from app.billing.services import orders
from app.billing.services.orders import SYSTEM
from app.core import clock
from app.core.audit import AuditEvent
from app.core.auth import Actor, Role
from app.core.db import commit, db
from app.institutions.models import Institution
from payments.base import Channel, PayMode, RefundRequest
from payments.sandbox.ledger import SandboxLedger
from tests.audit.support import Http, idem
from tests.billing.factories import make_bill
from tests.factories import make_centre, make_staff, token_for

CHINA = clock.CHINA
DAY = date(2026, 3, 10)
NEXT = DAY + timedelta(days=1)


def china(day: date, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=CHINA)


@pytest.fixture
def travel() -> Iterator[Any]:
    """`travel(moment)` moves the clock (ours and the sandbox ledgers') and keeps it there."""
    travellers: list[Any] = []

    def to(moment: datetime) -> None:
        if travellers:
            travellers[-1].stop()
        traveller = time_machine.travel(moment, tick=False)
        traveller.start()
        travellers.append(traveller)

    yield to
    if travellers:
        travellers[-1].stop()


class Shop:
    """Builds orders of one centre against one channel's provider (fake or real sandbox)."""

    def __init__(self, centre: Institution, channel: Channel) -> None:
        self.centre = centre
        self.channel = channel
        self.cashier = make_staff(Role.CASHIER, centre)
        self.actor = Actor("staff", self.cashier.id, Role.CASHIER.value)

    @property
    def ledger(self) -> SandboxLedger:
        provider = providers.get(self.channel)
        ledger = getattr(provider, "ledger", None)
        if ledger is None:
            ledger = providers.sandbox(self.channel).ledger
        return ledger  # type: ignore[no-any-return]

    def pending(self, amount_fen: int = 2500) -> PaymentOrder:
        """An order with a QR shown (PENDING at the provider, not paid)."""
        bill = make_bill(self.centre, amount_fen, cashier=self.cashier)
        order = orders.start_order(
            bill,
            mode=PayMode.MERCHANT_QR,
            channel=self.channel,
            client_ip="127.0.0.1",
            actor=self.actor,
            cashier_id=self.cashier.id,
        )
        commit()
        order = flows.charge(order.id, actor=self.actor)
        assert order.state == OrderState.PENDING and order.qr_content
        return order

    def scanned(self, amount_fen: int = 2500) -> PaymentOrder:
        """Paid at the provider (the payer scanned and paid); not yet known here."""
        order = self.pending(amount_fen)
        payer = self.ledger.new_payer(balance_fen=10_000_000)
        self.ledger.scan(order.qr_content or "", payer)
        return order

    def paid(self, amount_fen: int = 2500) -> PaymentOrder:
        """Paid at the provider and here (as the notification or the recovery query would do)."""
        order = self.scanned(amount_fen)
        assert flows.query_and_apply(order.id, source="query", actor=SYSTEM) == "applied"
        db.session.refresh(order)
        assert order.state == OrderState.PAID
        return order

    def refunded(self, order: PaymentOrder, amount_fen: int) -> Refund:
        """A partial refund accepted by the provider, completed there (5 s later) and here."""
        refund = orders.request_refund(
            order, amount_fen=amount_fen, reason="对账测试退款", origin=RefundOrigin.STAFF, actor=self.actor
        )
        commit()
        refund_no, trade_no = refund.out_refund_no, order.out_trade_no
        providers.get(self.channel).refund(
            RefundRequest(
                out_trade_no=trade_no,
                out_refund_no=refund_no,
                total_fen=order.amount_fen,
                refund_fen=amount_fen,
            )
        )
        sim = self.ledger.query_refund(trade_no, refund_no)
        assert sim is not None
        done_at = datetime.fromtimestamp((sim.completes_at or 0) + 1, CHINA)
        with time_machine.travel(done_at, tick=False):
            sim = self.ledger.query_refund(trade_no, refund_no)  # the ledger completes it
            assert sim is not None and sim.succeeded_at is not None
        refund = db.session.get(Refund, refund.id)  # type: ignore[assignment]
        assert refund is not None
        if refund.status != RefundStatus.SUCCEEDED:  # what the refund query job records
            refund.status = RefundStatus.SUCCEEDED
            refund.succeeded_at = datetime.fromtimestamp(sim.succeeded_at, CHINA)
            commit()
        return refund

    def provider_only_trade(self, amount_fen: int = 4200) -> str:
        """A trade paid at the provider with an out_trade_no we never issued."""
        number = orders.new_out_trade_no()
        trade = self.ledger.create_trade(
            out_trade_no=number,
            amount_fen=amount_fen,
            mode=PayMode.MERCHANT_QR,
            subject="不明来款",
            notify_url=None,
            expires_at=None,
        )
        self.ledger.scan(trade.reference, self.ledger.new_payer())
        return number


def _items(run: ReconciliationRun) -> set[tuple[str, str, str, str | None, str]]:
    rows = db.session.execute(select(ReconciliationItem).where(ReconciliationItem.run_id == run.id)).scalars()
    return {(i.kind, i.subject, i.out_trade_no, i.out_refund_no, i.status) for i in rows}


def _reconciliation_anomalies() -> list[PaymentAnomaly]:
    return list(
        db.session.execute(
            select(PaymentAnomaly).where(PaymentAnomaly.kind == AnomalyKind.RECONCILIATION)
        ).scalars()
    )


def _plant_every_difference(shop: Shop) -> tuple[set[tuple[str, str, str, str | None, str]], dict[str, Any]]:
    """One of each kind of difference, plus matching controls. Returns the expected items."""
    ledger = shop.ledger
    matched = shop.paid(1000)
    matched_refund = shop.refunded(shop.paid(3000), 1200)
    wrong_amount = shop.paid(2500)
    ledger.bill_overrides[wrong_amount.out_trade_no] = {"amount_fen": 2400}
    missing = shop.paid(1800)
    ledger.bill_overrides[missing.out_trade_no] = {"omit": True}
    reversed_there = shop.paid(1500)
    ledger.bill_overrides[reversed_there.out_trade_no] = {"state": "REVOKED"}
    refund_missing = shop.refunded(shop.paid(5000), 2000)
    ledger.bill_overrides[refund_missing.out_refund_no] = {"omit": True}
    unconfirmed = shop.scanned(3300)  # paid at the provider, still PENDING here
    stranger = shop.provider_only_trade(4200)
    expected = {
        ("provider_only", "payment", stranger, None, "open"),
        ("provider_only", "payment", unconfirmed.out_trade_no, None, "fixed"),
        ("local_only", "payment", missing.out_trade_no, None, "open"),
        ("amount_mismatch", "payment", wrong_amount.out_trade_no, None, "open"),
        ("status_mismatch", "payment", reversed_there.out_trade_no, None, "open"),
        (
            "status_mismatch",
            "refund",
            refund_missing_order(refund_missing),
            refund_missing.out_refund_no,
            "open",
        ),
    }
    return expected, {
        "matched": matched,
        "matched_refund": matched_refund,
        "unconfirmed": unconfirmed,
        "stranger": stranger,
    }


def refund_missing_order(refund: Refund) -> str:
    order = db.session.get(PaymentOrder, refund.order_id)
    assert order is not None
    return order.out_trade_no


# --- planted differences -----------------------------------------------------------------------------


@pytest.mark.parametrize("channel", [Channel.WECHAT, Channel.ALIPAY])
def test_reconciliation_finds_exactly_the_planted_differences(fake_providers, centre, travel, channel):
    travel(china(DAY, 11))
    shop = Shop(centre, channel)
    expected, planted = _plant_every_difference(shop)
    travel(china(NEXT, 10, 30))

    run = reconcile(channel, DAY)

    assert run is not None and run.status == "completed"
    assert _items(run) == expected
    assert (run.provider_only_count, run.local_only_count) == (2, 1)
    assert (run.amount_mismatch_count, run.status_mismatch_count) == (1, 2)
    assert run.fixed_count == 1 and run.parked_count == 0
    # 4 matched payments (incl. the fixed one), the matched refund and the reversed line's count.
    assert run.matched_count == 4 + 1
    assert run.statement_sha1 and len(run.statement_sha1) == 40
    # The "platform short" order was settled by query: now PAID, with its history.
    unconfirmed = db.session.get(PaymentOrder, planted["unconfirmed"].id)
    assert unconfirmed is not None and unconfirmed.state == OrderState.PAID
    # One reconciliation anomaly per item; the fixed one is resolved already.
    anomalies = _reconciliation_anomalies()
    assert len(anomalies) == 6
    fixed = [a for a in anomalies if a.out_trade_no == unconfirmed.out_trade_no]
    assert [a.status for a in fixed] == [AnomalyStatus.RESOLVED]
    assert all(a.status == AnomalyStatus.OPEN for a in anomalies if a not in fixed)
    assert {a.channel for a in anomalies} == {str(channel)}


def test_rerunning_a_date_replaces_its_run_idempotently(fake_providers, centre, travel):
    travel(china(DAY, 11))
    shop = Shop(centre, Channel.WECHAT)
    expected, _ = _plant_every_difference(shop)
    travel(china(NEXT, 10, 30))
    first = reconcile(Channel.WECHAT, DAY)
    assert first is not None
    second = reconcile(Channel.WECHAT, DAY)
    assert second is not None and second.id == first.id and second.attempts == 2
    # The auto-fixed order is now simply matched; everything else is reported again, once.
    assert _items(second) == {item for item in expected if item[4] != "fixed"}
    assert db.session.execute(select(func.count()).select_from(ReconciliationRun)).scalar_one() == 1
    assert len(_reconciliation_anomalies()) == 6  # deduplicated per item


def test_a_clean_day_has_no_items_and_the_other_channel_is_separate(fake_providers, centre, travel):
    travel(china(DAY, 9))
    Shop(centre, Channel.WECHAT).paid(1000)
    Shop(centre, Channel.ALIPAY).paid(2000)
    travel(china(NEXT, 11))
    wechat, alipay = reconcile(Channel.WECHAT, DAY), reconcile(Channel.ALIPAY, DAY)
    assert wechat is not None and alipay is not None
    assert (wechat.discrepancy_count, wechat.matched_count, wechat.payment_total_fen) == (0, 1, 1000)
    assert (alipay.discrepancy_count, alipay.matched_count, alipay.payment_total_fen) == (0, 1, 2000)
    assert _reconciliation_anomalies() == []


# --- crossing midnight: the scratch pool -----------------------------------------------------------------


def _paid_just_before_midnight(shop: Shop, travel: Any, *, booked_next_day: bool) -> PaymentOrder:
    travel(china(DAY, 23, 59, 50))
    order = shop.paid(2600)
    assert order.paid_at is not None and clock.local(order.paid_at) == china(DAY, 23, 59, 50)
    if booked_next_day:  # the provider books the payment on the next day's bill
        shop.ledger.trades[order.out_trade_no].paid_at = china(NEXT, 0, 0, 5).timestamp()
    return order


def test_an_order_paid_before_midnight_found_in_the_next_days_bill_is_not_flagged(
    fake_providers, centre, travel
):
    shop = Shop(centre, Channel.WECHAT)
    order = _paid_just_before_midnight(shop, travel, booked_next_day=True)
    travel(china(NEXT + timedelta(days=1), 10, 30))

    day = reconcile(Channel.WECHAT, DAY)
    assert day is not None and day.discrepancy_count == 0 and day.parked_count == 1
    entry = db.session.execute(select(ReconScratchEntry)).scalar_one()
    assert (entry.status, entry.reference, entry.recheck_on) == (
        ScratchStatus.PARKED,
        order.out_trade_no,
        NEXT,
    )

    following = reconcile(Channel.WECHAT, NEXT)
    assert following is not None and following.discrepancy_count == 0 and following.matched_count == 1
    db.session.refresh(entry)
    assert (entry.status, entry.found_on) == (ScratchStatus.RESOLVED, NEXT)
    # Re-running either day changes nothing.
    again = reconcile(Channel.WECHAT, DAY)
    assert again is not None and again.discrepancy_count == 0
    assert _reconciliation_anomalies() == []


def test_an_order_paid_before_midnight_missing_from_both_bills_is_flagged_on_the_next_day(
    fake_providers, centre, travel
):
    shop = Shop(centre, Channel.WECHAT)
    order = _paid_just_before_midnight(shop, travel, booked_next_day=False)
    shop.ledger.bill_overrides[order.out_trade_no] = {"omit": True}
    travel(china(NEXT + timedelta(days=1), 10, 30))

    day = reconcile(Channel.WECHAT, DAY)
    assert day is not None and day.discrepancy_count == 0 and day.parked_count == 1
    following = reconcile(Channel.WECHAT, NEXT)
    assert following is not None
    assert _items(following) == {("local_only", "payment", order.out_trade_no, None, "open")}
    item = db.session.execute(select(ReconciliationItem)).scalar_one()
    assert item.detail["parked_on"] == DAY.isoformat() and "次日" in item.note
    entry = db.session.execute(select(ReconScratchEntry)).scalar_one()
    assert (entry.status, entry.flagged_on) == (ScratchStatus.FLAGGED, NEXT)
    # Re-running the first day does not report it a second time; re-running the next day does once.
    assert _items(reconcile(Channel.WECHAT, DAY)) == set()  # type: ignore[arg-type]
    assert len(_items(reconcile(Channel.WECHAT, NEXT))) == 1  # type: ignore[arg-type]
    assert len(_reconciliation_anomalies()) == 1


# --- failing bills -----------------------------------------------------------------------------------------


def test_a_corrupt_bill_fails_the_run_loudly_and_produces_no_report(
    fake_providers, centre, travel, caplog, app
):
    travel(china(DAY, 11))
    shop = Shop(centre, Channel.WECHAT)
    shop.paid(1000)
    missing = shop.paid(1800)
    shop.ledger.bill_overrides[missing.out_trade_no] = {"omit": True}
    travel(china(NEXT, 10, 30))
    first = reconcile(Channel.WECHAT, DAY)
    assert first is not None and first.local_only_count == 1

    shop.ledger.fail_next("bill", "corrupt")
    with caplog.at_level(logging.ERROR), pytest.raises(ReconciliationFailed) as failed:
        reconcile(Channel.WECHAT, DAY)

    assert failed.value.code == "corrupt"
    run = db.session.get(ReconciliationRun, first.id)
    assert run is not None
    db.session.refresh(run)
    assert (run.status, run.error_code, run.discrepancy_count) == ("failed", "corrupt", 0)
    assert "校验失败" in (run.error_message or "")
    assert _items(run) == set()  # the earlier findings are gone with the bill they came from
    assert any(
        r.levelno == logging.ERROR and r.getMessage() == "reconciliation failed" for r in caplog.records
    )
    # No report for a failed run.
    admin = Http(app, token_for(make_staff(Role.DISTRICT_ADMIN, None)))
    response = admin.get(f"/api/v1/billing/reconciliation/runs/{run.id}/report.csv")
    assert response.status_code == 409 and response.json["code"] == "reconciliation_not_completed"
    # The next attempt (rq retry) with a good bill completes it again.
    again = reconcile(Channel.WECHAT, DAY)
    assert again is not None and again.status == "completed" and again.local_only_count == 1


def test_a_bill_that_is_not_ready_fails_the_run(fake_providers, travel):
    travel(china(DAY, 11))
    with pytest.raises(ReconciliationFailed) as failed:
        reconcile(Channel.ALIPAY, NEXT)  # tomorrow's bill does not exist yet
    assert failed.value.code == "not_ready"
    run = db.session.get(ReconciliationRun, failed.value.run_id)
    assert run is not None and run.status == "failed" and run.error_message


def test_a_download_error_fails_the_run(fake_providers, travel):
    travel(china(NEXT, 11))
    providers.get(Channel.WECHAT).ledger.fail_next("bill", "timeout")  # type: ignore[attr-defined]
    with pytest.raises(ReconciliationFailed) as failed:
        reconcile(Channel.WECHAT, DAY)
    assert failed.value.code == "download_failed"


# --- the periodic job ----------------------------------------------------------------------------------------


def test_reconcile_yesterday_waits_for_ten_oclock_then_does_both_channels_once(
    fake_providers, centre, travel
):
    travel(china(DAY, 15))
    Shop(centre, Channel.WECHAT).paid(1000)
    travel(china(NEXT, 9, 59))
    assert reconcile_yesterday() == {}
    assert db.session.execute(select(func.count()).select_from(ReconciliationRun)).scalar_one() == 0
    travel(china(NEXT, 10, 1))
    assert reconcile_yesterday() == {"wechat": "completed", "alipay": "completed"}
    assert reconcile_yesterday() == {}  # completed runs are not repeated
    runs = db.session.execute(select(ReconciliationRun).order_by(ReconciliationRun.channel)).scalars().all()
    assert [(r.channel, r.bill_date, r.attempts) for r in runs] == [("alipay", DAY, 1), ("wechat", DAY, 1)]


def test_reconcile_yesterday_runs_the_other_channel_and_raises_when_one_fails(fake_providers, travel):
    travel(china(NEXT, 11))
    providers.get(Channel.WECHAT).ledger.fail_next("bill", "corrupt")  # type: ignore[attr-defined]
    with pytest.raises(ReconciliationFailed):
        reconcile_yesterday()
    statuses = dict(db.session.execute(select(ReconciliationRun.channel, ReconciliationRun.status)).all())
    assert statuses == {"wechat": "failed", "alipay": "completed"}
    assert reconcile_yesterday() == {"wechat": "completed"}  # the retry does the failed one only


# --- routes --------------------------------------------------------------------------------------------------


@pytest.fixture
def planted_run(fake_providers, centre, travel) -> ReconciliationRun:
    travel(china(DAY, 11))
    _plant_every_difference(Shop(centre, Channel.WECHAT))
    travel(china(NEXT, 10, 30))
    run = reconcile(Channel.WECHAT, DAY)
    assert run is not None
    return run


def test_runs_list_detail_and_report(app, planted_run):
    admin = Http(app, token_for(make_staff(Role.DISTRICT_ADMIN, None)))
    listing = admin.get("/api/v1/billing/reconciliation/runs", query_string={"channel": "wechat"})
    assert listing.status_code == 200, listing.json
    assert [r["id"] for r in listing.json["items"]] == [str(planted_run.id)]
    assert listing.json["items"][0]["discrepancy_count"] == 6
    empty = admin.get("/api/v1/billing/reconciliation/runs", query_string={"status": "failed"})
    assert empty.json["total"] == 0

    detail = admin.get(f"/api/v1/billing/reconciliation/runs/{planted_run.id}")
    assert detail.status_code == 200
    body = detail.json
    assert (body["status"], body["status_label"], body["bill_date"]) == (
        "completed",
        "已完成",
        DAY.isoformat(),
    )
    assert len(body["items"]) == 6
    amount = next(i for i in body["items"] if i["kind"] == "amount_mismatch")
    assert (amount["local_amount_yuan"], amount["provider_amount_yuan"]) == ("25.00", "24.00")
    assert amount["kind_label"] == "金额不符" and amount["anomaly_id"]
    only_local = admin.get(
        f"/api/v1/billing/reconciliation/runs/{planted_run.id}", query_string={"kind": "local_only"}
    )
    assert [i["kind"] for i in only_local.json["items"]] == ["local_only"]

    report = admin.get(f"/api/v1/billing/reconciliation/runs/{planted_run.id}/report.csv")
    assert report.status_code == 200
    assert report.headers["Content-Type"].startswith("text/csv")
    raw = report.get_data()
    assert raw.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert rows[0][:4] == ["对账日期", "支付渠道", "差异类型", "业务类型"]
    assert len(rows) == 1 + 6
    mismatch = next(r for r in rows[1:] if r[2] == "金额不符")
    assert (mismatch[8], mismatch[9]) == ("25.00", "24.00")
    exported = (
        db.session.execute(select(AuditEvent).where(AuditEvent.action == "reconciliation.report_export"))
        .scalars()
        .all()
    )
    assert len(exported) == 1


def test_a_centre_auditor_sees_only_its_centres_items(app, planted_run, centre):
    other = make_centre()
    own = Http(app, token_for(make_staff(Role.AUDITOR, centre))).get(
        f"/api/v1/billing/reconciliation/runs/{planted_run.id}"
    )
    assert own.status_code == 200
    assert len(own.json["items"]) == 5  # all but the trade no centre knows
    foreign = Http(app, token_for(make_staff(Role.AUDITOR, other))).get(
        f"/api/v1/billing/reconciliation/runs/{planted_run.id}"
    )
    assert foreign.status_code == 200 and foreign.json["items"] == []


def test_run_by_hand(app, fake_providers, centre, travel):
    travel(china(DAY, 11))
    shop = Shop(centre, Channel.ALIPAY)
    missing = shop.paid(990)
    shop.ledger.bill_overrides[missing.out_trade_no] = {"omit": True}
    travel(china(NEXT, 12))
    admin = Http(app, token_for(make_staff(Role.DISTRICT_ADMIN, None)))
    body = {"channel": "alipay", "bill_date": DAY.isoformat()}

    assert admin.post("/api/v1/billing/reconciliation/runs", json=body).status_code == 400  # no key
    created = admin.post("/api/v1/billing/reconciliation/runs", json=body, headers=idem())
    assert created.status_code == 200, created.json
    assert created.json["status"] == "completed" and created.json["local_only_count"] == 1
    assert created.json["triggered_by_kind"] == "staff"
    key = idem()
    again = admin.post("/api/v1/billing/reconciliation/runs", json=body, headers=key)
    replay = admin.post("/api/v1/billing/reconciliation/runs", json=body, headers=key)
    assert again.json["attempts"] == 2 and replay.headers.get("Idempotent-Replayed") == "true"
    assert replay.json == again.json

    shop.ledger.fail_next("bill", "corrupt")
    failed = admin.post("/api/v1/billing/reconciliation/runs", json=body, headers=idem())
    assert failed.status_code == 200
    assert (failed.json["status"], failed.json["error_code"], failed.json["items"]) == (
        "failed",
        "corrupt",
        [],
    )

    today = admin.post(
        "/api/v1/billing/reconciliation/runs",
        json={"channel": "alipay", "bill_date": NEXT.isoformat()},
        headers=idem(),
    )
    assert today.status_code == 422 and today.json["code"] == "bill_date_not_past"
    for bad in (
        {"channel": "unionpay", "bill_date": DAY.isoformat()},
        {"channel": "alipay"},
        {"channel": "alipay", "bill_date": "2026-02-30"},
    ):
        response = admin.post("/api/v1/billing/reconciliation/runs", json=bad, headers=idem())
        assert response.status_code == 422, bad


def test_reconciliation_routes_are_for_district_admins_and_auditors(app, centre):
    run_id = uuid.uuid4()
    anonymous = Http(app)
    assert anonymous.get("/api/v1/billing/reconciliation/runs").status_code == 401
    for role in (Role.CASHIER, Role.CENTRE_ADMIN, Role.DOCTOR):
        http = Http(app, token_for(make_staff(role, centre)))
        assert http.get("/api/v1/billing/reconciliation/runs").status_code == 403
        assert http.get(f"/api/v1/billing/reconciliation/runs/{run_id}").status_code == 403
    auditor = Http(app, token_for(make_staff(Role.AUDITOR, None)))
    assert auditor.get("/api/v1/billing/reconciliation/runs").status_code == 200
    assert auditor.get(f"/api/v1/billing/reconciliation/runs/{run_id}").status_code == 404
    refused = auditor.post(
        "/api/v1/billing/reconciliation/runs",
        json={"channel": "wechat", "bill_date": DAY.isoformat()},
        headers=idem(),
    )
    assert refused.status_code == 403
    admin = Http(app, token_for(make_staff(Role.DISTRICT_ADMIN, None)))
    bad = admin.get("/api/v1/billing/reconciliation/runs", query_string={"status": "maybe"})
    assert bad.status_code == 422


# --- the real sandboxes ------------------------------------------------------------------------------------


def _real_sandboxes_available(app: Flask) -> bool:
    try:
        import payments.alipay
        import payments.sandbox.alipay
        import payments.sandbox.wechat
        import payments.wechat  # noqa: F401
    except ImportError:
        return False
    return bool(app.config["PAYMENT_SANDBOX"])


@pytest.mark.parametrize("channel", [Channel.WECHAT, Channel.ALIPAY])
def test_planted_differences_against_the_real_sandboxes(app, centre, travel, channel):
    if not _real_sandboxes_available(app):
        pytest.fail("the WeChat/Alipay adapters and loopback emulators are not on this branch yet")
    travel(china(DAY, 11))
    shop = Shop(centre, channel)
    assert providers.sandbox(channel) is not None and not hasattr(providers.get(channel), "ledger")
    expected, _ = _plant_every_difference(shop)
    travel(china(NEXT, 10, 30))
    run = reconcile(channel, DAY)
    assert run is not None and run.status == "completed", run and run.error_message
    assert _items(run) == expected
