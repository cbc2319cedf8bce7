"""Staff order views: list filters, centre isolation, history, CSV export, the daily summary."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import date, datetime, timedelta
from typing import Any

import pytest
import time_machine
from sqlalchemy import select

from app.accounts.models import StaffUser
from app.billing.models import OrderState, PaymentOrder, Refund, RefundOrigin, RefundStatus
from app.billing.services import orders, reports
from app.billing.services.orders import PROVIDER
from app.core import clock
from app.core.audit import AuditEvent
from app.core.auth import Actor, Role
from app.core.db import commit, db
from app.institutions.models import Institution
from payments.base import Channel, PayMode, TradeState, TradeStatus
from tests.audit.support import Http
from tests.billing.factories import make_bill
from tests.factories import make_centre, make_staff, token_for

CHINA = clock.CHINA
DAY = date(2026, 4, 1)
ORDERS = "/api/v1/billing/orders"
EXPORT = "/api/v1/billing/orders/export.csv"


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=CHINA)


def make_order(
    centre: Institution,
    cashier: StaffUser | None,
    *,
    amount_fen: int = 2500,
    channel: Channel = Channel.WECHAT,
    mode: PayMode = PayMode.MERCHANT_QR,
    created: datetime,
    paid: datetime | None = None,
    subject: str = "家庭医生签约服务费",
) -> PaymentOrder:
    """An order created at `created` (China time), paid at `paid` (applied as a provider result)."""
    with time_machine.travel(created, tick=False):
        bill = make_bill(centre, amount_fen, subject=subject, cashier=cashier)
        actor = Actor("staff", cashier.id if cashier else None, Role.CASHIER.value)
        order = orders.start_order(
            bill,
            mode=mode,
            channel=channel,
            client_ip="127.0.0.1",
            actor=actor,
            auth_code=("13" if channel is Channel.WECHAT else "28") + "1234567890123456"
            if mode is PayMode.PAYER_CODE
            else None,
            payer_account="o-test" if mode is PayMode.JSAPI else None,
            cashier_id=cashier.id if cashier else None,
        )
        commit()
    if paid is not None:
        with time_machine.travel(paid, tick=False):
            status = TradeStatus(
                out_trade_no=order.out_trade_no,
                state=TradeState.PAID,
                amount_fen=amount_fen,
                provider_trade_no=f"4200{uuid.uuid4().int % 10**24:024d}",
                paid_at=paid,
            )
            assert orders.apply_trade_status(order, status, source="query", actor=PROVIDER) == "applied"
            commit()
    return order


def refund_of(order: PaymentOrder, amount_fen: int, succeeded: datetime) -> Refund:
    with time_machine.travel(succeeded, tick=False):
        refund = orders.request_refund(
            order, amount_fen=amount_fen, reason="测试退款", origin=RefundOrigin.STAFF, actor=Actor("staff")
        )
        refund.status = RefundStatus.SUCCEEDED  # what the refund job records once the provider confirms
        refund.succeeded_at = succeeded
        commit()
    return refund


class World:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.a, self.b = make_centre(), make_centre()
        self.cashier1 = make_staff(Role.CASHIER, self.a)
        self.cashier2 = make_staff(Role.CASHIER, self.a)
        self.cashier_b = make_staff(Role.CASHIER, self.b)
        self.paid_wechat = make_order(
            self.a, self.cashier1, amount_fen=1230, created=at(DAY, 9), paid=at(DAY, 9, 1)
        )
        self.paid_alipay_code = make_order(
            self.a,
            self.cashier2,
            amount_fen=50_000,
            channel=Channel.ALIPAY,
            mode=PayMode.PAYER_CODE,
            created=at(DAY, 23, 50),
            paid=at(DAY + timedelta(days=1), 0, 5),
        )
        self.open_jsapi = make_order(
            self.a, self.cashier1, amount_fen=99, mode=PayMode.JSAPI, created=at(DAY + timedelta(days=2), 8)
        )
        self.injected = make_order(
            self.a,
            self.cashier2,
            amount_fen=700,
            created=at(DAY, 10),
            subject='=HYPERLINK("http://x","点我")',
        )
        self.other_centre = make_order(
            self.b, self.cashier_b, amount_fen=8800, created=at(DAY, 11), paid=at(DAY, 11, 2)
        )

    def http(self, role: Role, centre: Institution | None) -> Http:
        return Http(self.app, token_for(make_staff(role, centre)))


@pytest.fixture
def world(app) -> World:
    return World(app)


def numbers(response: Any) -> list[str]:
    assert response.status_code == 200, response.json
    return [item["out_trade_no"] for item in response.json["items"]]


def test_list_rows_and_filters(world):
    w = world
    http = w.http(Role.CENTRE_ADMIN, w.a)
    everything = http.get(ORDERS)
    assert everything.json["total"] == 4
    # Newest first.
    assert numbers(everything) == [
        w.open_jsapi.out_trade_no,
        w.paid_alipay_code.out_trade_no,
        w.injected.out_trade_no,
        w.paid_wechat.out_trade_no,
    ]
    row = next(i for i in everything.json["items"] if i["out_trade_no"] == w.paid_wechat.out_trade_no)
    assert (row["amount_fen"], row["amount_yuan"], row["state"], row["state_label"]) == (
        1230,
        "12.30",
        "paid",
        "已支付",
    )
    assert (row["channel_label"], row["mode_label"]) == ("微信支付", "主扫（收款码）")
    assert row["cashier_name"] == w.cashier1.name and row["refunded_yuan"] == "0.00"
    assert row["bill_no"].startswith("B") and row["paid_at"]

    def only(**query: Any) -> list[str]:
        return numbers(http.get(ORDERS, query_string=query))

    assert only(state="paid") == [w.paid_alipay_code.out_trade_no, w.paid_wechat.out_trade_no]
    assert only(channel="alipay") == [w.paid_alipay_code.out_trade_no]
    assert only(mode="jsapi") == [w.open_jsapi.out_trade_no]
    assert only(cashier_id=str(w.cashier2.id)) == [w.paid_alipay_code.out_trade_no, w.injected.out_trade_no]
    # Dates are China time: created on DAY (incl. 23:50), or paid on DAY (the 00:05 payment is the next day).
    assert set(only(date_from=DAY.isoformat(), date_to=DAY.isoformat())) == {
        w.paid_wechat.out_trade_no,
        w.paid_alipay_code.out_trade_no,
        w.injected.out_trade_no,
    }
    assert only(date_field="paid", date_from=DAY.isoformat(), date_to=DAY.isoformat()) == [
        w.paid_wechat.out_trade_no
    ]
    assert only(date_field="paid", date_from=(DAY + timedelta(days=1)).isoformat()) == [
        w.paid_alipay_code.out_trade_no
    ]
    assert only(amount_min_fen=700, amount_max_fen=1230) == [
        w.injected.out_trade_no,
        w.paid_wechat.out_trade_no,
    ]
    assert only(q=w.paid_wechat.out_trade_no) == [w.paid_wechat.out_trade_no]
    assert only(q=w.injected.out_trade_no[:-3]) == [w.injected.out_trade_no]
    bill_no = next(
        i["bill_no"] for i in everything.json["items"] if i["out_trade_no"] == w.open_jsapi.out_trade_no
    )
    assert only(q=bill_no) == [w.open_jsapi.out_trade_no]
    assert only(q="%") == [] and only(q="_") == []  # LIKE wildcards are literal
    paged = http.get(ORDERS, query_string={"size": 3, "page": 2})
    assert (paged.json["total"], paged.json["pages"], len(paged.json["items"])) == (4, 2, 1)


def test_centre_isolation(world):
    w = world
    theirs = w.http(Role.CASHIER, w.b)
    assert numbers(theirs.get(ORDERS)) == [w.other_centre.out_trade_no]
    # Asking for another centre does not widen the scope.
    assert numbers(theirs.get(ORDERS, query_string={"institution_id": str(w.a.id)})) == []
    assert numbers(theirs.get(ORDERS, query_string={"q": w.paid_wechat.out_trade_no})) == []
    hidden = theirs.get(f"{ORDERS}/{w.paid_wechat.id}/events")
    assert hidden.status_code == 404
    missing = theirs.get(f"{ORDERS}/{uuid.uuid4()}/events")
    assert missing.status_code == 404 and missing.json["code"] == hidden.json["code"]
    exported = theirs.get(EXPORT)
    rows = list(csv.reader(io.StringIO(exported.get_data().decode("utf-8-sig"))))
    assert [r[1] for r in rows[1:]] == [w.other_centre.out_trade_no]
    # District roles see every centre and may pick one.
    district = w.http(Role.DISTRICT_ADMIN, None)
    assert district.get(ORDERS).json["total"] == 5
    assert numbers(district.get(ORDERS, query_string={"institution_id": str(w.b.id)})) == [
        w.other_centre.out_trade_no
    ]
    auditor = w.http(Role.AUDITOR, None)
    assert auditor.get(ORDERS).json["total"] == 5


def test_order_events(world):
    w = world
    http = w.http(Role.CASHIER, w.a)
    response = http.get(f"{ORDERS}/{w.paid_wechat.id}/events")
    assert response.status_code == 200
    assert [(e["from_state"], e["to_state"]) for e in response.json] == [
        (None, "created"),
        ("created", "paid"),
    ]
    assert response.json[1]["to_state_label"] == "已支付" and response.json[1]["source"] == "query"


def test_csv_export(world):
    w = world
    refund_of(db.session.get(PaymentOrder, w.paid_wechat.id), 230, at(DAY, 15))  # type: ignore[arg-type]
    http = w.http(Role.CENTRE_ADMIN, w.a)
    response = http.get(EXPORT, query_string={"date_from": DAY.isoformat(), "date_to": DAY.isoformat()})
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert "attachment" in response.headers["Content-Disposition"]
    raw = response.get_data()
    assert raw.startswith(b"\xef\xbb\xbf")  # BOM: Excel opens it as UTF-8
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert rows[0] == list(reports.ORDER_CSV_HEADER)
    by_number = {r[1]: r for r in rows[1:]}
    assert set(by_number) == {
        w.paid_wechat.out_trade_no,
        w.paid_alipay_code.out_trade_no,
        w.injected.out_trade_no,
    }
    wechat = by_number[w.paid_wechat.out_trade_no]
    assert (wechat[3], wechat[5], wechat[6], wechat[8]) == (w.a.name, "12.30", "已支付", "微信支付")
    assert (wechat[9], wechat[11], wechat[12]) == (w.cashier1.name, "2026-04-01 09:01:00", "2.30")
    assert by_number[w.paid_alipay_code.out_trade_no][5] == "500.00"
    # Formula injection: the subject is text, not a formula.
    assert by_number[w.injected.out_trade_no][4] == '\'=HYPERLINK("http://x","点我")'
    # The export is audited, with its filters and size.
    events = (
        db.session.execute(select(AuditEvent).where(AuditEvent.action == "payment_order.export"))
        .scalars()
        .all()
    )
    assert len(events) == 1 and events[0].detail["rows"] == 3
    assert events[0].detail["filters"]["date_from"] == DAY.isoformat()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=1+2", "'=1+2"),
        ("+86", "'+86"),
        ("-3", "'-3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("普通文本", "普通文本"),
        ("12.30", "12.30"),
        (None, ""),
    ],
)
def test_csv_cells_are_injection_safe(value, expected):
    assert reports.csv_cell(value) == expected


def test_export_above_the_cap_is_refused(world, monkeypatch):
    monkeypatch.setattr(reports, "EXPORT_MAX_ROWS", 3)
    http = world.http(Role.CENTRE_ADMIN, world.a)
    refused = http.get(EXPORT)
    assert refused.status_code == 422 and refused.json["code"] == "export_too_large"
    assert "超过单次导出上限" in refused.json["message"]
    assert http.get(EXPORT, query_string={"state": "paid"}).status_code == 200


def test_export_streams_many_rows_in_batches(app, monkeypatch):
    monkeypatch.setattr(reports, "_BATCH", 2)
    centre = make_centre()
    cashier = make_staff(Role.CASHIER, centre)
    made = [make_order(centre, cashier, amount_fen=100 + n, created=at(DAY, 8, n)) for n in range(5)]
    http = Http(app, token_for(make_staff(Role.CENTRE_ADMIN, centre)))
    rows = list(csv.reader(io.StringIO(http.get(EXPORT).get_data().decode("utf-8-sig"))))
    assert [r[1] for r in rows[1:]] == [o.out_trade_no for o in reversed(made)]
    assert [r[5] for r in rows[1:]] == ["1.04", "1.03", "1.02", "1.01", "1.00"]


def test_auth_and_validation(world):
    w = world
    anonymous = Http(w.app)
    for path in (ORDERS, EXPORT, f"{ORDERS}/{w.paid_wechat.id}/events", "/api/v1/billing/reports/daily"):
        assert anonymous.get(path).status_code == 401
    for role in (Role.DOCTOR, Role.NURSE, Role.TEAM_LEADER, Role.PUBLIC_HEALTH):
        http = w.http(role, w.a)
        assert http.get(ORDERS).status_code == 403
        assert http.get(EXPORT).status_code == 403
        assert http.get(f"{ORDERS}/{w.paid_wechat.id}/events").status_code == 403
    http = w.http(Role.CASHIER, w.a)
    for query in (
        {"state": "lost"},
        {"channel": "unionpay"},
        {"mode": "cash"},
        {"date_field": "updated"},
        {"date_from": "2026-02-30"},
        {"date_from": "2026-04-02", "date_to": "2026-04-01"},
        {"amount_min_fen": -1},
        {"amount_min_fen": 500, "amount_max_fen": 100},
        {"amount_min_fen": "1.5"},
        {"size": 101},
        {"date_to": "9999-12-31"},
    ):
        response = http.get(ORDERS, query_string=query)
        assert response.status_code == 422, (query, response.json)
        assert response.json["message"]
        assert http.get(EXPORT, query_string=query).status_code in (200, 422)
    assert http.get(EXPORT, query_string={"state": "lost"}).status_code == 422
    assert http.get(f"{ORDERS}/not-a-uuid/events").status_code == 404


# --- daily summary ---------------------------------------------------------------------------------------


def test_daily_summary_sums_exactly(world):
    w = world
    # Another payment by cashier1 on DAY, and a refund of the WeChat order on the next day.
    extra = make_order(w.a, w.cashier1, amount_fen=1, created=at(DAY, 12), paid=at(DAY, 12, 1))
    refund_of(db.session.get(PaymentOrder, w.paid_wechat.id), 230, at(DAY + timedelta(days=1), 9))  # type: ignore[arg-type]
    assert extra.state == OrderState.PAID or db.session.get(PaymentOrder, extra.id)
    http = w.http(Role.CENTRE_ADMIN, w.a)
    response = http.get(
        "/api/v1/billing/reports/daily",
        query_string={"date_from": DAY.isoformat(), "date_to": (DAY + timedelta(days=1)).isoformat()},
    )
    assert response.status_code == 200, response.json
    rows = {
        (r["day"], r["channel"], r["mode"], r["cashier_name"]): (
            r["paid_count"],
            r["paid_fen"],
            r["refund_count"],
            r["refunded_fen"],
            r["net_fen"],
            r["net_yuan"],
        )
        for r in response.json["rows"]
    }
    assert rows == {
        (DAY.isoformat(), "wechat", "merchant_qr", w.cashier1.name): (2, 1231, 0, 0, 1231, "12.31"),
        ((DAY + timedelta(days=1)).isoformat(), "alipay", "payer_code", w.cashier2.name): (
            1,
            50_000,
            0,
            0,
            50_000,
            "500.00",
        ),
        ((DAY + timedelta(days=1)).isoformat(), "wechat", "merchant_qr", w.cashier1.name): (
            0,
            0,
            1,
            230,
            -230,
            "-2.30",
        ),
    }
    assert {r["institution_name"] for r in response.json["rows"]} == {w.a.name}  # centre B is not in it
    totals = response.json["totals"]
    assert (totals["paid_count"], totals["paid_fen"], totals["refunded_fen"], totals["net_fen"]) == (
        3,
        51_231,
        230,
        51_001,
    )
    assert totals["net_yuan"] == "510.01"
    district = w.http(Role.DISTRICT_ADMIN, None).get(
        "/api/v1/billing/reports/daily",
        query_string={
            "date_from": DAY.isoformat(),
            "date_to": DAY.isoformat(),
            "institution_id": str(w.b.id),
        },
    )
    assert [(r["institution_name"], r["paid_fen"]) for r in district.json["rows"]] == [(w.b.name, 8800)]
    too_long = http.get(
        "/api/v1/billing/reports/daily", query_string={"date_from": "2026-01-01", "date_to": "2026-12-31"}
    )
    assert too_long.status_code == 422 and too_long.json["code"] == "report_range_too_long"
    assert (
        http.get("/api/v1/billing/reports/daily", query_string={"date_from": "2026-01-01"}).status_code == 422
    )


def test_refund_rows_keep_the_refunded_amount_on_the_order(world):
    w = world
    order = db.session.get(PaymentOrder, w.paid_wechat.id)
    assert order is not None
    refund_of(order, 1230, at(DAY, 16))
    row = next(
        i
        for i in w.http(Role.CASHIER, w.a).get(ORDERS).json["items"]
        if i["out_trade_no"] == w.paid_wechat.out_trade_no
    )
    assert (row["refunded_fen"], row["refunded_yuan"]) == (1230, "12.30")
    assert (
        db.session.execute(select(Refund).where(Refund.order_id == order.id)).scalar_one().amount_fen == 1230
    )
