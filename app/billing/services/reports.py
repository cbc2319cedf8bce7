"""Staff views of payment orders (list, CSV export, history) and the daily charge summary.

Everything here reads; nothing commits. Centre isolation is the session's (`app.core.scope`):
centre staff see their own centre's orders whatever they filter on, district roles see all and
may pick a centre. Money stays integer fen; the yuan strings are `payments.base.fen_to_yuan`
(integer arithmetic, exact).
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Select, and_, func, or_, select

from app.accounts.models import StaffUser
from app.billing.models import (
    ORDER_STATE_LABELS,
    Bill,
    OrderState,
    PaymentOrder,
    PaymentOrderEvent,
    Refund,
    RefundStatus,
)
from app.core import audit, clock
from app.core.db import db
from app.core.errors import BusinessRuleViolation
from app.core.pagination import Page
from app.core.scope import get_or_404
from app.institutions.models import Institution
from payments.base import Channel, PayMode, fen_to_yuan

EXPORT_MAX_ROWS = 100_000
REPORT_MAX_DAYS = 92
_BATCH = 1000

MODE_LABELS: dict[str, str] = {
    PayMode.MERCHANT_QR: "主扫（收款码）",
    PayMode.PAYER_CODE: "被扫（付款码）",
    PayMode.JSAPI: "公众号/小程序",
}
CHANNEL_LABELS: dict[str, str] = {Channel.WECHAT: "微信支付", Channel.ALIPAY: "支付宝"}


def label(labels: Mapping[str, str], value: str | None) -> str:
    return labels.get(value or "", value or "")


def yuan(amount_fen: int) -> str:
    """Exact yuan string of a (possibly negative) number of fen: -1230 -> "-12.30"."""
    return fen_to_yuan(amount_fen) if amount_fen >= 0 else "-" + fen_to_yuan(-amount_fen)


def china_day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=clock.CHINA).astimezone(UTC)


def local_text(moment: datetime | None) -> str:
    return "" if moment is None else clock.local(moment).strftime("%Y-%m-%d %H:%M:%S")


# --- order list ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderFilters:
    institution_id: uuid.UUID | None = None
    cashier_id: uuid.UUID | None = None
    mode: str | None = None
    channel: str | None = None
    state: str | None = None
    date_field: str = "created"  # created | paid
    date_from: date | None = None  # China time, inclusive
    date_to: date | None = None  # China time, inclusive
    amount_min_fen: int | None = None
    amount_max_fen: int | None = None
    q: str | None = None  # out_trade_no, provider trade number or bill number (exact or prefix)

    @classmethod
    def from_args(cls, args: dict[str, Any]) -> OrderFilters:
        known = {k: v for k, v in args.items() if k in cls.__dataclass_fields__ and v is not None}
        return cls(**known)


@dataclass
class OrderRow:
    order: PaymentOrder
    bill_no: str
    cashier_name: str | None
    institution_name: str | None = None

    def __getattr__(self, name: str) -> Any:  # the schema reads the order's columns through the row
        return getattr(self.order, name)


def _check_filters(filters: OrderFilters) -> None:
    errors: dict[str, list[str]] = {}
    if filters.date_from and filters.date_to and filters.date_from > filters.date_to:
        errors["date_to"] = ["结束日期不能早于开始日期"]
    if (
        filters.amount_min_fen is not None
        and filters.amount_max_fen is not None
        and filters.amount_min_fen > filters.amount_max_fen
    ):
        errors["amount_max_fen"] = ["最高金额不能低于最低金额"]
    if errors:
        raise BusinessRuleViolation(
            "查询条件有误：" + "；".join(m for ms in errors.values() for m in ms),
            code="invalid_filter",
            errors=errors,
        )


def order_statement(filters: OrderFilters) -> Select[Any]:
    """Orders matching the filters, newest first (the caller's centre scope applies on execution)."""
    _check_filters(filters)
    statement: Select[Any] = select(PaymentOrder).join(Bill, Bill.id == PaymentOrder.bill_id)
    if filters.institution_id is not None:
        statement = statement.where(PaymentOrder.institution_id == filters.institution_id)
    if filters.cashier_id is not None:
        statement = statement.where(PaymentOrder.cashier_id == filters.cashier_id)
    if filters.mode:
        statement = statement.where(PaymentOrder.mode == filters.mode)
    if filters.channel:
        statement = statement.where(PaymentOrder.channel == filters.channel)
    if filters.state:
        statement = statement.where(PaymentOrder.state == filters.state)
    moment = PaymentOrder.paid_at if filters.date_field == "paid" else PaymentOrder.created_at
    if filters.date_from is not None:
        statement = statement.where(moment >= china_day_start(filters.date_from))
    if filters.date_to is not None:
        statement = statement.where(moment < china_day_start(filters.date_to + timedelta(days=1)))
    if filters.amount_min_fen is not None:
        statement = statement.where(PaymentOrder.amount_fen >= filters.amount_min_fen)
    if filters.amount_max_fen is not None:
        statement = statement.where(PaymentOrder.amount_fen <= filters.amount_max_fen)
    q = (filters.q or "").strip()
    if q:
        statement = statement.where(
            or_(
                PaymentOrder.out_trade_no.startswith(q, autoescape=True),
                PaymentOrder.provider_trade_no.startswith(q, autoescape=True),
                Bill.bill_no.startswith(q, autoescape=True),
            )
        )
    return statement.order_by(PaymentOrder.created_at.desc(), PaymentOrder.id.desc())


def _pairs(statement: Select[uuid.UUID, str]) -> dict[uuid.UUID, str]:
    return {key: value for key, value in db.session.execute(statement)}


def _rows(orders: Sequence[PaymentOrder], *, with_centre: bool = False) -> list[OrderRow]:
    bill_ids = {o.bill_id for o in orders}
    cashier_ids = {o.cashier_id for o in orders if o.cashier_id is not None}
    bills: dict[uuid.UUID, str] = {}
    if bill_ids:
        bills = _pairs(select(Bill.id, Bill.bill_no).where(Bill.id.in_(bill_ids)))
    names: dict[uuid.UUID, str] = {}
    if cashier_ids:
        names = _pairs(select(StaffUser.id, StaffUser.name).where(StaffUser.id.in_(cashier_ids)))
    centres: dict[uuid.UUID, str] = {}
    if with_centre and orders:
        centre_ids = {o.institution_id for o in orders}
        centres = _pairs(select(Institution.id, Institution.name).where(Institution.id.in_(centre_ids)))
    return [
        OrderRow(
            order=o,
            bill_no=bills.get(o.bill_id, ""),
            cashier_name=names.get(o.cashier_id) if o.cashier_id is not None else None,
            institution_name=centres.get(o.institution_id),
        )
        for o in orders
    ]


def list_orders(filters: OrderFilters, *, page: int, size: int) -> Page[OrderRow]:
    statement = order_statement(filters)
    total = db.session.execute(
        select(func.count()).select_from(statement.order_by(None).subquery())
    ).scalar_one()
    orders = list(db.session.execute(statement.limit(size).offset((page - 1) * size)).scalars())
    return Page(_rows(orders), page, size, total)


def order_events(order_id: uuid.UUID) -> list[PaymentOrderEvent]:
    """The history of one order of the caller's scope (404 otherwise), oldest first."""
    order = get_or_404(PaymentOrder, order_id, object_type="payment_order")
    return list(
        db.session.execute(
            select(PaymentOrderEvent)
            .where(PaymentOrderEvent.order_id == order.id)
            .order_by(PaymentOrderEvent.created_at, PaymentOrderEvent.id)
        ).scalars()
    )


# --- CSV -------------------------------------------------------------------------------------------

_DANGEROUS_LEADS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> str:
    """A cell Excel/WPS will not evaluate: text starting with = + - @ (or a tab/CR) gets a leading '."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_DANGEROUS_LEADS) else text


def csv_line(cells: Iterable[object]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow([csv_cell(c) for c in cells])
    return out.getvalue()


BOM = "\ufeff"

ORDER_CSV_HEADER = (
    "收费单号",
    "商户订单号",
    "渠道交易号",
    "社康中心",
    "收费项目",
    "金额（元）",
    "订单状态",
    "支付方式",
    "支付渠道",
    "收费员",
    "创建时间",
    "支付时间",
    "已退款（元）",
)


def start_export(filters: OrderFilters) -> int:
    """Check the export's size (422 above the cap) and audit it. Returns the row count."""
    statement = order_statement(filters)
    total = int(
        db.session.execute(select(func.count()).select_from(statement.order_by(None).subquery())).scalar_one()
    )
    if total > EXPORT_MAX_ROWS:
        raise BusinessRuleViolation(
            f"符合条件的订单有 {total} 笔，超过单次导出上限 {EXPORT_MAX_ROWS} 笔，请缩小日期范围或增加筛选条件后再导出",
            code="export_too_large",
            errors={"date_from": [f"单次最多导出 {EXPORT_MAX_ROWS} 笔"]},
        )
    audit.record(
        "payment_order.export",
        "payment_order",
        None,
        institution_id=filters.institution_id,
        detail={
            "rows": total,
            "filters": {k: str(v) for k, v in filters.__dict__.items() if v is not None and k != "date_field"}
            | {"date_field": filters.date_field},
        },
    )
    return total


Cursor = tuple[datetime, uuid.UUID]


def export_batch(filters: OrderFilters, after: Cursor | None) -> tuple[str, Cursor | None]:
    """One keyset page of the export as CSV text (the first one starts with the BOM and the
    header) and the cursor of the next page (None: this was the last). No OFFSET, and nothing is
    held between pages: the caller may run each page in a session of its own."""
    statement = order_statement(filters)
    if after is not None:
        created, oid = after
        statement = statement.where(
            or_(
                PaymentOrder.created_at < created,
                and_(PaymentOrder.created_at == created, PaymentOrder.id < oid),
            )
        )
    orders = list(db.session.execute(statement.limit(_BATCH)).scalars())
    lines = [] if after is not None else [BOM + csv_line(ORDER_CSV_HEADER)]
    for row in _rows(orders, with_centre=True):
        lines.append(_order_csv_line(row))
    following = (orders[-1].created_at, orders[-1].id) if len(orders) == _BATCH else None
    return "".join(lines), following


def _order_csv_line(row: OrderRow) -> str:
    o = row.order
    return csv_line(
        (
            row.bill_no,
            o.out_trade_no,
            o.provider_trade_no or "",
            row.institution_name or "",
            o.subject,
            yuan(o.amount_fen),
            label(ORDER_STATE_LABELS, o.state),
            label(MODE_LABELS, o.mode),
            label(CHANNEL_LABELS, o.channel),
            row.cashier_name or "",
            local_text(o.created_at),
            local_text(o.paid_at),
            yuan(o.refunded_fen),
        )
    )


# --- daily charge summary ----------------------------------------------------------------------------


@dataclass
class SummaryRow:
    day: date
    institution_id: uuid.UUID
    channel: str
    mode: str
    cashier_id: uuid.UUID | None
    institution_name: str = ""
    cashier_name: str | None = None
    paid_count: int = 0
    paid_fen: int = 0
    refund_count: int = 0
    refunded_fen: int = 0

    @property
    def net_fen(self) -> int:
        return self.paid_fen - self.refunded_fen


@dataclass
class SummaryTotals:
    paid_count: int = 0
    paid_fen: int = 0
    refund_count: int = 0
    refunded_fen: int = 0

    @property
    def net_fen(self) -> int:
        return self.paid_fen - self.refunded_fen


@dataclass
class DailySummary:
    date_from: date
    date_to: date
    rows: list[SummaryRow] = field(default_factory=list)
    totals: SummaryTotals = field(default_factory=SummaryTotals)


def daily_summary(
    *, date_from: date, date_to: date, institution_id: uuid.UUID | None = None, channel: str | None = None
) -> DailySummary:
    """Per China-time day, centre, channel, mode and cashier: payments (by paid time) and refunds
    (by the time they succeeded), in exact integer fen. Net = paid - refunded."""
    if date_from > date_to:
        raise BusinessRuleViolation(
            "结束日期不能早于开始日期",
            code="invalid_filter",
            errors={"date_to": ["结束日期不能早于开始日期"]},
        )
    if (date_to - date_from).days + 1 > REPORT_MAX_DAYS:
        raise BusinessRuleViolation(
            f"统计区间最长 {REPORT_MAX_DAYS} 天，请缩小日期范围",
            code="report_range_too_long",
            errors={"date_to": [f"最长 {REPORT_MAX_DAYS} 天"]},
        )
    start, end = china_day_start(date_from), china_day_start(date_to + timedelta(days=1))
    groups: dict[tuple[date, uuid.UUID, str, str, uuid.UUID | None], SummaryRow] = {}

    def row_for(moment: datetime, o: Any) -> SummaryRow:
        key = (clock.local(moment).date(), o.institution_id, o.channel, o.mode, o.cashier_id)
        found = groups.get(key)
        if found is None:
            found = groups[key] = SummaryRow(*key)
        return found

    paid = select(
        PaymentOrder.paid_at,
        PaymentOrder.institution_id,
        PaymentOrder.channel,
        PaymentOrder.mode,
        PaymentOrder.cashier_id,
        PaymentOrder.amount_fen,
    ).where(PaymentOrder.state == OrderState.PAID, PaymentOrder.paid_at >= start, PaymentOrder.paid_at < end)
    refunds = (
        select(
            Refund.succeeded_at,
            PaymentOrder.institution_id,
            PaymentOrder.channel,
            PaymentOrder.mode,
            PaymentOrder.cashier_id,
            Refund.amount_fen,
        )
        .join(PaymentOrder, PaymentOrder.id == Refund.order_id)
        .where(
            Refund.status == RefundStatus.SUCCEEDED, Refund.succeeded_at >= start, Refund.succeeded_at < end
        )
    )
    if institution_id is not None:
        paid = paid.where(PaymentOrder.institution_id == institution_id)
        refunds = refunds.where(PaymentOrder.institution_id == institution_id)
    if channel:
        paid = paid.where(PaymentOrder.channel == channel)
        refunds = refunds.where(PaymentOrder.channel == channel)
    for record in db.session.execute(paid):
        target = row_for(record.paid_at, record)
        target.paid_count += 1
        target.paid_fen += int(record.amount_fen)
    for record in db.session.execute(refunds):
        target = row_for(record.succeeded_at, record)
        target.refund_count += 1
        target.refunded_fen += int(record.amount_fen)
    rows = list(groups.values())
    centre_ids = {r.institution_id for r in rows}
    cashier_ids = {r.cashier_id for r in rows if r.cashier_id is not None}
    centres = (
        _pairs(select(Institution.id, Institution.name).where(Institution.id.in_(centre_ids)))
        if centre_ids
        else {}
    )
    names = (
        _pairs(select(StaffUser.id, StaffUser.name).where(StaffUser.id.in_(cashier_ids)))
        if cashier_ids
        else {}
    )
    totals = SummaryTotals()
    for r in rows:
        r.institution_name = centres.get(r.institution_id, "")
        r.cashier_name = names.get(r.cashier_id) if r.cashier_id is not None else None
        totals.paid_count += r.paid_count
        totals.paid_fen += r.paid_fen
        totals.refund_count += r.refund_count
        totals.refunded_fen += r.refunded_fen
    rows.sort(key=lambda r: (r.day, r.institution_name, r.channel, r.mode, r.cashier_name or ""))
    return DailySummary(date_from, date_to, rows, totals)
