"""Daily bill reconciliation (对账, PAY-13): the steps. They never commit and never call a provider.

The entry point that commits and downloads (`app.billing.routes.reconciliation.reconcile`, also
the job) runs them in this order:

    claim_run(channel, day)           the run row, RUNNING (a lease: one worker per date)   commit
    provider.download_statement(day)  no transaction open
      -> fail_run(...) on StatementNotReady / StatementCorrupt / anything else             commit
    check_statement(statement, ...)   the sha1 of the raw file, the channel and the date
    orders_to_settle(channel, st)     local orders the bill shows settled but we do not:
      -> flows.query_and_apply(...)   each one queried and applied ("platform short" auto-fix)
    apply_statement(run_id, st, ...)  matching, discrepancy items, anomalies, scratch pool      commit

Matching (by out_trade_no / out_refund_no, amount, status) and the kinds of discrepancy are
described in `app.billing.models.reconciliation`.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, TypeVar, cast

from sqlalchemy import CursorResult, Select, delete, or_, select, update
from sqlalchemy.exc import IntegrityError

from app.billing.models import (
    ORDER_STATE_LABELS,
    REFUND_STATUS_LABELS,
    AnomalyKind,
    AnomalyStatus,
    DiscrepancyKind,
    DiscrepancySubject,
    OrderState,
    PaymentOrder,
    ReconciliationItem,
    ReconciliationRun,
    ReconItemStatus,
    ReconRunStatus,
    ReconScratchEntry,
    Refund,
    RefundStatus,
    ScratchStatus,
)
from app.billing.models.orders import OPEN_ORDER_STATES
from app.billing.models.reconciliation import DISCREPANCY_LABELS, ITEM_STATUS_LABELS, SUBJECT_LABELS
from app.billing.services.orders import record_anomaly
from app.billing.services.reports import (
    BOM,
    china_day_start,
    csv_line,
    label,
    local_text,
    yuan,
)
from app.core import audit, clock
from app.core.auth import Actor, current_principal
from app.core.db import db
from app.core.errors import NotFound
from app.core.pagination import Page, paginate
from payments.base import Channel, Statement, StatementCorrupt, StatementKind, StatementLine

log = logging.getLogger(__name__)

# An order paid this close to midnight that is missing from its day's bill is parked and
# re-checked against the next day's bill before it is reported (the provider may book it there).
SCRATCH_WINDOW = timedelta(minutes=10)
# A RUNNING run older than this is considered abandoned (a worker died) and may be taken over.
RUN_LEASE = timedelta(minutes=30)
# Bills are ready at about 09:00 the next day (both providers); the job starts at 10:00.
BILLS_READY_AT_HOUR = 10
_CHUNK = 500

T = TypeVar("T")

# Provider status texts (WeChat, Alipay, fake) as they appear in a bill, normalised.
_PAID = frozenset(
    {"SUCCESS", "REFUND", "TRADE_SUCCESS", "TRADE_FINISHED", "PAID", "交易", "支付成功", "已支付"}
)
_UNPAID = frozenset(
    {"REVOKED", "REVERSED", "CLOSED", "TRADE_CLOSED", "NOTPAY", "PAYERROR", "撤销", "已撤销", "已关闭"}
)
_REFUND_DONE = frozenset({"SUCCESS", "REFUND", "REFUND_SUCCESS", "SUCCEEDED", "退款", "退款成功"})
_NOT_PAID_LOCALLY = frozenset({OrderState.CLOSED, OrderState.REVERSED, OrderState.FAILED})


def _norm(state: str) -> str:
    return state.strip().strip("`").strip().upper()


def payment_line_state(line: StatementLine) -> str:
    """paid | unpaid | other."""
    state = _norm(line.state)
    if state in _PAID:
        return "paid"
    if state in _UNPAID:
        return "unpaid"
    return "other"


def refund_line_succeeded(line: StatementLine) -> bool:
    return _norm(line.state) in _REFUND_DONE


def _chunks(values: Sequence[T]) -> Iterator[Sequence[T]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


def day_bounds(day: date) -> tuple[datetime, datetime]:
    return china_day_start(day), china_day_start(day + timedelta(days=1))


# --- runs ------------------------------------------------------------------------------------------


def claim_run(channel: Channel, bill_date: date, *, actor: Actor) -> ReconciliationRun | None:
    """The date's run, moved to RUNNING for this caller; None when another worker holds it."""
    run = _find_run(channel, bill_date)
    if run is None:
        try:
            with db.session.begin_nested():
                db.session.add(
                    ReconciliationRun(
                        id=uuid.uuid4(),
                        channel=str(channel),
                        bill_date=bill_date,
                        status=ReconRunStatus.RUNNING,
                        attempts=0,
                    )
                )
        except IntegrityError:
            pass
        run = _find_run(channel, bill_date)
        assert run is not None
    now = clock.now()
    result = cast(
        CursorResult[Any],
        db.session.execute(
            update(ReconciliationRun)
            .where(
                ReconciliationRun.id == run.id,
                or_(
                    ReconciliationRun.status != ReconRunStatus.RUNNING,
                    ReconciliationRun.attempts == 0,
                    ReconciliationRun.started_at < now - RUN_LEASE,
                ),
            )
            .values(
                status=ReconRunStatus.RUNNING,
                attempts=ReconciliationRun.attempts + 1,
                started_at=now,
                finished_at=None,
                error_code=None,
                error_message=None,
                triggered_by_kind=actor.kind,
                triggered_by_id=actor.id,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        ),
    )
    db.session.refresh(run)
    if result.rowcount != 1:
        return None
    return run


def _find_run(channel: Channel | str, bill_date: date) -> ReconciliationRun | None:
    return db.session.execute(
        select(ReconciliationRun).where(
            ReconciliationRun.channel == str(channel), ReconciliationRun.bill_date == bill_date
        )
    ).scalar_one_or_none()


def fail_run(run_id: uuid.UUID, *, code: str, message: str) -> ReconciliationRun:
    """The bill could not be used: FAILED, with no items (never an empty report)."""
    run = _lock_run(run_id)
    db.session.execute(delete(ReconciliationItem).where(ReconciliationItem.run_id == run.id))
    _reset_counts(run)
    run.status = ReconRunStatus.FAILED
    run.error_code = code[:32]
    run.error_message = message[:500]
    run.finished_at = clock.now()
    run.statement_sha1 = None
    db.session.flush()
    audit.record(
        "reconciliation.fail",
        "reconciliation_run",
        run.id,
        detail={"channel": run.channel, "bill_date": run.bill_date.isoformat(), "error": code},
    )
    log.error(
        "reconciliation failed",
        extra={
            "channel": run.channel,
            "bill_date": run.bill_date.isoformat(),
            "error_code": code,
            "error": message,
            "alert": True,
        },
    )
    return run


def _lock_run(run_id: uuid.UUID) -> ReconciliationRun:
    run = db.session.execute(
        select(ReconciliationRun).where(ReconciliationRun.id == run_id).with_for_update()
    ).scalar_one_or_none()
    if run is None:
        raise NotFound("未找到该对账记录", code="reconciliation_run_not_found")
    return run


def _reset_counts(run: ReconciliationRun) -> None:
    for name in (
        "payment_lines",
        "refund_lines",
        "payment_total_fen",
        "refund_total_fen",
        "matched_count",
        "provider_only_count",
        "local_only_count",
        "amount_mismatch_count",
        "status_mismatch_count",
        "fixed_count",
        "parked_count",
    ):
        setattr(run, name, 0)


def check_statement(statement: Statement, channel: Channel, bill_date: date) -> None:
    """The bill is the one asked for and intact (sha1 of the raw file); StatementCorrupt otherwise."""
    if statement.channel != channel or statement.bill_date != bill_date:
        raise StatementCorrupt(
            f"bill for {statement.channel} {statement.bill_date} when {channel} {bill_date} was asked"
        )
    if statement.raw and hashlib.sha1(statement.raw).hexdigest() != statement.sha1:  # noqa: S324 - the providers' hash
        raise StatementCorrupt("sha1 of the downloaded bill does not match")
    if any(line.amount_fen < 0 for line in statement.lines):
        raise StatementCorrupt("negative amount in the bill")


# --- matching --------------------------------------------------------------------------------------


def _orders_by_trade(channel: Channel, numbers: Iterable[str]) -> dict[str, PaymentOrder]:
    wanted = sorted(set(numbers))
    found: dict[str, PaymentOrder] = {}
    for chunk in _chunks(wanted):
        for order in db.session.execute(
            select(PaymentOrder).where(
                PaymentOrder.channel == str(channel), PaymentOrder.out_trade_no.in_(chunk)
            )
        ).scalars():
            found[order.out_trade_no] = order
    return found


def _refunds_by_number(channel: Channel, numbers: Iterable[str]) -> dict[str, Refund]:
    wanted = sorted(set(numbers))
    found: dict[str, Refund] = {}
    for chunk in _chunks(wanted):
        for refund in db.session.execute(
            select(Refund)
            .join(PaymentOrder, PaymentOrder.id == Refund.order_id)
            .where(PaymentOrder.channel == str(channel), Refund.out_refund_no.in_(chunk))
        ).scalars():
            found[refund.out_refund_no] = refund
    return found


def _payment_lines(statement: Statement) -> list[StatementLine]:
    return [line for line in statement.lines if line.kind is StatementKind.PAYMENT]


def _refund_lines(statement: Statement) -> list[StatementLine]:
    return [line for line in statement.lines if line.kind is StatementKind.REFUND]


def orders_to_settle(channel: Channel, statement: Statement) -> list[uuid.UUID]:
    """Local orders still open (CREATED/PENDING/PAYING/UNKNOWN) that the bill shows paid or
    reversed: the caller queries the provider for each and applies the answer."""
    lines = [line for line in _payment_lines(statement) if payment_line_state(line) != "other"]
    orders = _orders_by_trade(channel, (line.out_trade_no for line in lines))
    return sorted(
        {
            order.id
            for line in lines
            if (order := orders.get(line.out_trade_no)) is not None
            and OrderState(order.state) in OPEN_ORDER_STATES
        },
        key=str,
    )


@dataclass
class _Finding:
    kind: DiscrepancyKind
    subject: DiscrepancySubject
    out_trade_no: str
    note: str
    order: PaymentOrder | None = None
    refund: Refund | None = None
    line: StatementLine | None = None
    local_amount_fen: int | None = None
    local_state: str | None = None
    fixed: bool = False
    detail: dict[str, Any] | None = None


class _Matcher:
    def __init__(
        self,
        run: ReconciliationRun,
        statement: Statement,
        settled: Mapping[uuid.UUID, str],
        settled_from: Mapping[uuid.UUID, str],
    ) -> None:
        self.run = run
        self.settled_from = settled_from
        self.channel = Channel(run.channel)
        self.day = run.bill_date
        self.statement = statement
        self.settled = settled
        self.findings: list[_Finding] = []
        self.matched = 0
        self.parked = 0
        self.seen_trades: set[str] = set()
        self.seen_refunds: set[str] = set()

    # payments -----------------------------------------------------------------------------------

    def payments(self) -> None:
        lines = _payment_lines(self.statement)
        orders = _orders_by_trade(self.channel, (line.out_trade_no for line in lines))
        for line in lines:
            self.seen_trades.add(line.out_trade_no)
            order = orders.get(line.out_trade_no)
            if order is not None:
                db.session.refresh(order)  # the auto-fix may have moved it
            self._payment(line, order)

    def _payment(self, line: StatementLine, order: PaymentOrder | None) -> None:
        subject = DiscrepancySubject.PAYMENT
        if order is None:
            self._add(DiscrepancyKind.PROVIDER_ONLY, subject, line, note="渠道账单有该笔交易，本系统无此订单")
            return
        state = OrderState(order.state)
        local_label = label(ORDER_STATE_LABELS, order.state)
        provider = payment_line_state(line)
        was_settled = self.settled.get(order.id) in ("applied",)
        if provider == "paid":
            if state is OrderState.PAID:
                if line.amount_fen != order.amount_fen:
                    self._add(
                        DiscrepancyKind.AMOUNT_MISMATCH,
                        subject,
                        line,
                        order=order,
                        note=f"金额不符：本地 {yuan(order.amount_fen)} 元，渠道 {yuan(line.amount_fen)} 元",
                    )
                    return
                self._matched(subject, order.out_trade_no, order, order.paid_at, order.amount_fen)
                if was_settled:
                    self._add(
                        DiscrepancyKind.PROVIDER_ONLY,
                        subject,
                        line,
                        order=order,
                        fixed=True,
                        local_state=self._before(order),
                        note="渠道已收款而本地未确认，已向渠道查询并补记为已支付",
                    )
                return
            self._add(
                DiscrepancyKind.PROVIDER_ONLY,
                subject,
                line,
                order=order,
                note=f"渠道账单显示已支付，本地订单为“{local_label}”，请核实（必要时退款）",
            )
            return
        if provider == "unpaid":
            if state in _NOT_PAID_LOCALLY:
                self.matched += 1
                if was_settled:
                    self._add(
                        DiscrepancyKind.STATUS_MISMATCH,
                        subject,
                        line,
                        order=order,
                        fixed=True,
                        local_state=self._before(order),
                        note=f"渠道显示“{line.state}”，本地未确认，已查询并更新为“{local_label}”",
                    )
                return
            self._add(
                DiscrepancyKind.STATUS_MISMATCH,
                subject,
                line,
                order=order,
                note=f"状态不符：本地“{local_label}”，渠道“{line.state}”",
            )
            return
        self._add(
            DiscrepancyKind.STATUS_MISMATCH,
            subject,
            line,
            order=order,
            note=f"渠道账单状态“{line.state}”无法识别，本地“{local_label}”，请核实",
        )

    def _before(self, order: PaymentOrder) -> str | None:
        """The order's state before the run settled it (for the report)."""
        return self.settled_from.get(order.id)

    # refunds ------------------------------------------------------------------------------------

    def refunds(self) -> None:
        lines = _refund_lines(self.statement)
        refunds = _refunds_by_number(self.channel, (line.out_refund_no or "" for line in lines))
        for line in lines:
            number = line.out_refund_no or ""
            self.seen_refunds.add(number)
            refund = refunds.get(number)
            subject = DiscrepancySubject.REFUND
            if refund is None:
                self._add(
                    DiscrepancyKind.PROVIDER_ONLY, subject, line, note="渠道账单有该笔退款，本系统无此退款单"
                )
                continue
            local_label = label(REFUND_STATUS_LABELS, refund.status)
            done_locally = refund.status == RefundStatus.SUCCEEDED
            if refund_line_succeeded(line):
                if not done_locally:
                    self._add(
                        DiscrepancyKind.STATUS_MISMATCH,
                        subject,
                        line,
                        refund=refund,
                        note=f"渠道显示退款成功，本地退款为“{local_label}”（退款查询任务将更新）",
                    )
                elif line.amount_fen != refund.amount_fen:
                    self._add(
                        DiscrepancyKind.AMOUNT_MISMATCH,
                        subject,
                        line,
                        refund=refund,
                        note=f"退款金额不符：本地 {yuan(refund.amount_fen)} 元，渠道 {yuan(line.amount_fen)} 元",
                    )
                else:
                    self._matched(
                        subject, number, None, refund.succeeded_at, refund.amount_fen, refund=refund
                    )
            elif done_locally:
                self._add(
                    DiscrepancyKind.STATUS_MISMATCH,
                    subject,
                    line,
                    refund=refund,
                    note=f"状态不符：本地退款成功，渠道“{line.state}”",
                )
            else:
                self.matched += 1

    # local only ---------------------------------------------------------------------------------

    def local_only(self) -> None:
        start, end = day_bounds(self.day)
        resolved_trades = self._resolved(DiscrepancySubject.PAYMENT)
        paid = db.session.execute(
            select(PaymentOrder).where(
                PaymentOrder.channel == str(self.channel),
                PaymentOrder.state == OrderState.PAID,
                PaymentOrder.paid_at >= start,
                PaymentOrder.paid_at < end,
            )
        ).scalars()
        for order in paid:
            if order.out_trade_no in self.seen_trades or order.out_trade_no in resolved_trades:
                continue
            assert order.paid_at is not None
            if order.paid_at >= end - SCRATCH_WINDOW:
                self._park(
                    DiscrepancySubject.PAYMENT,
                    order.out_trade_no,
                    order,
                    None,
                    order.paid_at,
                    order.amount_fen,
                )
                continue
            self._add(
                DiscrepancyKind.LOCAL_ONLY,
                DiscrepancySubject.PAYMENT,
                None,
                order=order,
                out_trade_no=order.out_trade_no,
                note="本地已支付，渠道账单无此交易",
            )
        resolved_refunds = self._resolved(DiscrepancySubject.REFUND)
        refunds = db.session.execute(
            select(Refund, PaymentOrder)
            .join(PaymentOrder, PaymentOrder.id == Refund.order_id)
            .where(
                PaymentOrder.channel == str(self.channel),
                Refund.status == RefundStatus.SUCCEEDED,
                Refund.succeeded_at >= start,
                Refund.succeeded_at < end,
            )
        )
        for refund, order in refunds:
            if refund.out_refund_no in self.seen_refunds or refund.out_refund_no in resolved_refunds:
                continue
            assert refund.succeeded_at is not None
            if refund.succeeded_at >= end - SCRATCH_WINDOW:
                self._park(
                    DiscrepancySubject.REFUND,
                    refund.out_refund_no,
                    order,
                    refund,
                    refund.succeeded_at,
                    refund.amount_fen,
                )
                continue
            self._add(
                DiscrepancyKind.STATUS_MISMATCH,
                DiscrepancySubject.REFUND,
                None,
                refund=refund,
                order=order,
                out_trade_no=order.out_trade_no,
                note="本地退款已成功，渠道账单无此退款",
            )

    def recheck_parked(self) -> None:
        """Entries parked from the previous day that this day's bill still does not contain."""
        entries = db.session.execute(
            select(ReconScratchEntry).where(
                ReconScratchEntry.channel == str(self.channel),
                or_(
                    (ReconScratchEntry.status == ScratchStatus.PARKED)
                    & (ReconScratchEntry.recheck_on <= self.day),
                    (ReconScratchEntry.status == ScratchStatus.FLAGGED)
                    & (ReconScratchEntry.flagged_on == self.day),
                ),
            )
        ).scalars()
        for entry in entries:
            seen = self.seen_refunds if entry.subject == DiscrepancySubject.REFUND else self.seen_trades
            if entry.reference in seen:
                continue  # resolved by the matching pass
            order = db.session.get(PaymentOrder, entry.order_id) if entry.order_id else None
            refund = db.session.get(Refund, entry.refund_id) if entry.refund_id else None
            parked_on = entry.parked_on.isoformat() if entry.parked_on else ""
            if entry.subject == DiscrepancySubject.REFUND:
                if refund is None or refund.status != RefundStatus.SUCCEEDED:
                    entry.status = ScratchStatus.RESOLVED  # no longer a success locally: nothing to miss
                    continue
                self._add(
                    DiscrepancyKind.STATUS_MISMATCH,
                    DiscrepancySubject.REFUND,
                    None,
                    refund=refund,
                    order=order,
                    out_trade_no=entry.out_trade_no,
                    note=f"本地退款已成功（{parked_on} 临近零点），当日及次日渠道账单均无此退款",
                    detail={"parked_on": parked_on},
                )
            else:
                if order is None or order.state != OrderState.PAID:
                    entry.status = ScratchStatus.RESOLVED
                    continue
                self._add(
                    DiscrepancyKind.LOCAL_ONLY,
                    DiscrepancySubject.PAYMENT,
                    None,
                    order=order,
                    out_trade_no=entry.out_trade_no,
                    note=f"本地已支付（{parked_on} 临近零点），当日及次日渠道账单均无此交易",
                    detail={"parked_on": parked_on},
                )
            entry.status = ScratchStatus.FLAGGED
            entry.flagged_on = self.day

    # helpers ------------------------------------------------------------------------------------

    def _resolved(self, subject: DiscrepancySubject) -> set[str]:
        """References found in another day's bill (or already handled by the pool)."""
        return set(
            db.session.execute(
                select(ReconScratchEntry.reference).where(
                    ReconScratchEntry.channel == str(self.channel),
                    ReconScratchEntry.subject == str(subject),
                    ReconScratchEntry.status == ScratchStatus.RESOLVED,
                )
            ).scalars()
        )

    def _entry(self, subject: DiscrepancySubject, reference: str) -> ReconScratchEntry | None:
        return db.session.execute(
            select(ReconScratchEntry).where(
                ReconScratchEntry.channel == str(self.channel),
                ReconScratchEntry.subject == str(subject),
                ReconScratchEntry.reference == reference,
            )
        ).scalar_one_or_none()

    def _matched(
        self,
        subject: DiscrepancySubject,
        reference: str,
        order: PaymentOrder | None,
        local_at: datetime | None,
        amount_fen: int,
        *,
        refund: Refund | None = None,
    ) -> None:
        """A match; if it crossed midnight (local day != bill day, or it was parked), note it in the pool."""
        self.matched += 1
        entry = self._entry(subject, reference)
        crossed = local_at is not None and clock.local(local_at).date() != self.day
        if entry is None and not crossed:
            return
        if entry is None:
            assert local_at is not None
            if order is None and refund is not None:
                order = db.session.get(PaymentOrder, refund.order_id)
            entry = ReconScratchEntry(
                id=uuid.uuid4(),
                channel=str(self.channel),
                subject=str(subject),
                reference=reference,
                out_trade_no=order.out_trade_no if order is not None else reference,
                order_id=order.id if order is not None else None,
                refund_id=refund.id if refund is not None else None,
                institution_id=order.institution_id if order is not None else None,
                amount_fen=amount_fen,
                local_at=local_at,
            )
            db.session.add(entry)
        entry.status = ScratchStatus.RESOLVED
        entry.found_on = self.day
        entry.flagged_on = None

    def _park(
        self,
        subject: DiscrepancySubject,
        reference: str,
        order: PaymentOrder,
        refund: Refund | None,
        local_at: datetime,
        amount_fen: int,
    ) -> None:
        entry = self._entry(subject, reference)
        if entry is not None and not (entry.status == ScratchStatus.PARKED and entry.parked_on == self.day):
            return  # already settled by another day's run (found there, or flagged there)
        if entry is None:
            entry = ReconScratchEntry(
                id=uuid.uuid4(),
                channel=str(self.channel),
                subject=str(subject),
                reference=reference,
                out_trade_no=order.out_trade_no,
                order_id=order.id,
                refund_id=refund.id if refund is not None else None,
                institution_id=order.institution_id,
                amount_fen=amount_fen,
                local_at=local_at,
                status=ScratchStatus.PARKED,
            )
            db.session.add(entry)
        entry.parked_on = self.day
        entry.recheck_on = self.day + timedelta(days=1)
        self.parked += 1

    def _add(
        self,
        kind: DiscrepancyKind,
        subject: DiscrepancySubject,
        line: StatementLine | None,
        *,
        note: str,
        order: PaymentOrder | None = None,
        refund: Refund | None = None,
        out_trade_no: str | None = None,
        fixed: bool = False,
        local_state: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        if order is None and refund is not None:
            order = db.session.get(PaymentOrder, refund.order_id)
        if refund is not None:
            local_amount: int | None = refund.amount_fen
            state: str | None = refund.status
        elif order is not None:
            local_amount, state = order.amount_fen, order.state
        else:
            local_amount, state = None, None
        self.findings.append(
            _Finding(
                kind=kind,
                subject=subject,
                out_trade_no=out_trade_no or (line.out_trade_no if line is not None else ""),
                note=note,
                order=order,
                refund=refund,
                line=line,
                local_amount_fen=local_amount,
                local_state=local_state or state,
                fixed=fixed,
                detail=detail,
            )
        )


def apply_statement(
    run_id: uuid.UUID,
    statement: Statement,
    *,
    settled: Mapping[uuid.UUID, str] | None = None,
    settled_from: Mapping[uuid.UUID, str] | None = None,
) -> ReconciliationRun:
    """Compare the bill with our books and record the run's findings (replacing earlier ones).

    `settled`: order id -> outcome of the query-and-apply done for `orders_to_settle` ("applied"
    turns the finding into a FIXED item); `settled_from`: order id -> its state before that."""
    run = _lock_run(run_id)
    db.session.execute(delete(ReconciliationItem).where(ReconciliationItem.run_id == run.id))
    _reset_counts(run)
    payments, refunds = _payment_lines(statement), _refund_lines(statement)
    run.statement_sha1 = statement.sha1[:40]
    run.payment_lines, run.refund_lines = len(payments), len(refunds)
    run.payment_total_fen = sum(line.amount_fen for line in payments)
    run.refund_total_fen = sum(line.amount_fen for line in refunds)

    matcher = _Matcher(run, statement, settled or {}, settled_from or {})
    matcher.payments()
    matcher.refunds()
    matcher.local_only()
    matcher.recheck_parked()

    counts = dict.fromkeys(DiscrepancyKind, 0)
    for finding in matcher.findings:
        item = _record(run, finding)
        counts[DiscrepancyKind(item.kind)] += 1
        if item.status == ReconItemStatus.FIXED:
            run.fixed_count += 1
    run.matched_count = matcher.matched
    run.parked_count = matcher.parked
    run.provider_only_count = counts[DiscrepancyKind.PROVIDER_ONLY]
    run.local_only_count = counts[DiscrepancyKind.LOCAL_ONLY]
    run.amount_mismatch_count = counts[DiscrepancyKind.AMOUNT_MISMATCH]
    run.status_mismatch_count = counts[DiscrepancyKind.STATUS_MISMATCH]
    run.status = ReconRunStatus.COMPLETED
    run.finished_at = clock.now()
    db.session.flush()
    audit.record(
        "reconciliation.complete",
        "reconciliation_run",
        run.id,
        detail={
            "channel": run.channel,
            "bill_date": run.bill_date.isoformat(),
            "sha1": run.statement_sha1,
            "matched": run.matched_count,
            "discrepancies": {str(k): v for k, v in counts.items()},
            "fixed": run.fixed_count,
            "parked": run.parked_count,
        },
    )
    open_items = run.discrepancy_count - run.fixed_count
    (log.error if open_items else log.info)(
        "reconciliation completed",
        extra={
            "channel": run.channel,
            "bill_date": run.bill_date.isoformat(),
            "discrepancies": run.discrepancy_count,
            "open": open_items,
            "alert": bool(open_items),
        },
    )
    return run


def _record(run: ReconciliationRun, finding: _Finding) -> ReconciliationItem:
    line = finding.line
    order = finding.order
    refund = finding.refund
    out_refund_no = refund.out_refund_no if refund is not None else (line.out_refund_no if line else None)
    detail: dict[str, Any] = dict(finding.detail or {})
    if line is not None:
        detail["line"] = dict(line.raw)
    anomaly, created = record_anomaly(
        AnomalyKind.RECONCILIATION,
        source="reconciliation",
        order=order,
        channel=run.channel,
        out_trade_no=finding.out_trade_no or (order.out_trade_no if order is not None else None),
        amount_fen=line.amount_fen if line is not None else finding.local_amount_fen,
        detail={
            "discrepancy": str(finding.kind),
            "subject": str(finding.subject),
            "bill_date": run.bill_date.isoformat(),
            "run_id": str(run.id),
            "out_refund_no": out_refund_no,
            "note": finding.note,
        },
        dedupe=f"{run.channel}:{run.bill_date.isoformat()}:{finding.kind}:{finding.subject}:{out_refund_no or ''}",
    )
    if finding.fixed and created:
        anomaly.status = AnomalyStatus.RESOLVED
        anomaly.resolution = finding.note
        anomaly.resolved_at = clock.now()
    item = ReconciliationItem(
        id=uuid.uuid4(),
        run_id=run.id,
        kind=str(finding.kind),
        subject=str(finding.subject),
        status=ReconItemStatus.FIXED if finding.fixed else ReconItemStatus.OPEN,
        institution_id=order.institution_id if order is not None else None,
        out_trade_no=finding.out_trade_no or (order.out_trade_no if order is not None else ""),
        out_refund_no=out_refund_no,
        provider_trade_no=(line.provider_trade_no if line is not None else None)
        or (order.provider_trade_no if order is not None else None),
        order_id=order.id if order is not None else None,
        refund_id=refund.id if refund is not None else None,
        local_amount_fen=finding.local_amount_fen,
        provider_amount_fen=line.amount_fen if line is not None else None,
        local_state=finding.local_state,
        provider_state=line.state[:32] if line is not None else None,
        occurred_at=line.occurred_at
        if line is not None
        else ((refund.succeeded_at if refund is not None else None) or (order.paid_at if order else None)),
        note=finding.note[:200],
        anomaly_id=anomaly.id,
        detail=detail,
    )
    db.session.add(item)
    return item


# --- scheduling ------------------------------------------------------------------------------------


def due_bill_date(now: datetime | None = None) -> date | None:
    """Yesterday (China time) once the bills are ready (after 10:00), else None."""
    local_now = clock.local(now or clock.now())
    if local_now.hour < BILLS_READY_AT_HOUR:
        return None
    return local_now.date() - timedelta(days=1)


def channels_to_reconcile(bill_date: date) -> list[Channel]:
    """Channels whose run of that date is not COMPLETED yet (FAILED ones are tried again)."""
    done = set(
        db.session.execute(
            select(ReconciliationRun.channel).where(
                ReconciliationRun.bill_date == bill_date, ReconciliationRun.status == ReconRunStatus.COMPLETED
            )
        ).scalars()
    )
    return [channel for channel in Channel if str(channel) not in done]


# --- reading ---------------------------------------------------------------------------------------


def _visible_centre() -> uuid.UUID | None:
    """The centre a centre-bound reader is confined to (its items only), None for district roles."""
    principal = current_principal()
    if principal is None or principal.kind != "staff" or principal.is_district:
        return None
    return principal.institution_id


def list_runs(
    *,
    page: int,
    size: int,
    channel: str | None = None,
    status: str | None = None,
    date_from: date | None = None,
    date_to: date | None = None,
) -> Page[ReconciliationRun]:
    statement: Select[Any] = select(ReconciliationRun).order_by(
        ReconciliationRun.bill_date.desc(), ReconciliationRun.channel
    )
    if channel:
        statement = statement.where(ReconciliationRun.channel == channel)
    if status:
        statement = statement.where(ReconciliationRun.status == status)
    if date_from:
        statement = statement.where(ReconciliationRun.bill_date >= date_from)
    if date_to:
        statement = statement.where(ReconciliationRun.bill_date <= date_to)
    return paginate(statement, page, size)


def get_run(run_id: uuid.UUID) -> ReconciliationRun:
    run = db.session.get(ReconciliationRun, run_id)
    if run is None:
        raise NotFound("未找到该对账记录", code="reconciliation_run_not_found")
    return run


def run_items(run: ReconciliationRun, *, kind: str | None = None) -> list[ReconciliationItem]:
    """The run's discrepancies; a centre-bound reader (a centre auditor) sees its centre's only."""
    statement = select(ReconciliationItem).where(ReconciliationItem.run_id == run.id)
    if kind:
        statement = statement.where(ReconciliationItem.kind == kind)
    centre = _visible_centre()
    if centre is not None:
        statement = statement.where(ReconciliationItem.institution_id == centre)
    return list(
        db.session.execute(
            statement.order_by(
                ReconciliationItem.kind, ReconciliationItem.out_trade_no, ReconciliationItem.id
            )
        ).scalars()
    )


REPORT_HEADER = (
    "对账日期",
    "支付渠道",
    "差异类型",
    "业务类型",
    "处理状态",
    "商户订单号",
    "商户退款单号",
    "渠道交易号",
    "本地金额（元）",
    "渠道金额（元）",
    "本地状态",
    "渠道状态",
    "交易时间",
    "说明",
)


def report_lines(run: ReconciliationRun, items: Sequence[ReconciliationItem]) -> Iterator[str]:
    from app.billing.services.reports import CHANNEL_LABELS

    yield BOM + csv_line(REPORT_HEADER)
    for item in items:
        local_labels = (
            REFUND_STATUS_LABELS if item.subject == DiscrepancySubject.REFUND else ORDER_STATE_LABELS
        )
        yield csv_line(
            (
                run.bill_date.isoformat(),
                label(CHANNEL_LABELS, run.channel),
                label(DISCREPANCY_LABELS, item.kind),
                label(SUBJECT_LABELS, item.subject),
                label(ITEM_STATUS_LABELS, item.status),
                item.out_trade_no,
                item.out_refund_no or "",
                item.provider_trade_no or "",
                "" if item.local_amount_fen is None else yuan(item.local_amount_fen),
                "" if item.provider_amount_fen is None else yuan(item.provider_amount_fen),
                label(local_labels, item.local_state) if item.local_state else "",
                item.provider_state or "",
                local_text(item.occurred_at),
                item.note,
            )
        )
