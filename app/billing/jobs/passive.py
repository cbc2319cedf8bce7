"""被扫 (passive scan) procedure and the desk's close/stop, as idempotent job steps.

The documented procedures (spec/payments.md A.4, A.5, A.11; PAY-09, PAY-10), with the timings
chosen here (t = when the charge call was made, `charge_called_at`):

WeChat micropay (PAY-09)
    USERPAYING → query at t+5 s, then **every 5 s** (the sandbox acceptance case "建议每5秒轮询一次，
    共30秒"; PAY-09 "e.g. every 5 s"); SYSTEMERROR/BANKERROR/timeout → query at once, then every 5 s.
    Not paid at t+30 s → reverse right after that last query, never sooner than t+15 s.
Alipay trade.pay bar_code (PAY-10)
    Query every 5 s (within 3–6 s) up to t+60 s; not paid then → cancel **immediately after the last
    query**, in the same step, with no gap.
Both
    Reverse/cancel answering "call again" (recall=Y / retry_flag=Y), failing or timing out is
    repeated with a back-off (3, 5, 10, 20, 30 s ...); after `MAX_REVERSE_ATTEMPTS` the order stays
    UNKNOWN (never FAILED) with a `reverse_failed` anomaly for an operator, and the recovery job
    keeps querying it. A reverse that returned money → REVERSED with detail refunded=True.
    The order ends PAID, REVERSED or FAILED (a definite decline); a retry at the desk is a new
    order (new out_trade_no) of the same bill, refused while another order of the bill is still
    being confirmed (`ensure_no_payment_in_progress`).

Each step is `advance_passive(order_id)`: lock the order (SKIP LOCKED), re-check its state and
`next_check_at <= now`, claim the step by pushing `next_check_at` past the provider timeout, commit,
call the provider with no transaction open, lock again, apply, schedule the next step, commit.
A step that is not due is a no-op, so duplicate jobs and several workers are harmless. The next
step is enqueued with rq `enqueue_at`; `sweep_passive()` (cron, every minute) catches any step
whose job was lost.

`close_order(order_id)` is the desk's "close / stop": for a 被扫 order it is the cashier giving
up (reverse now, or at t+15 s on WeChat); for a QR/JSAPI order it queries first (a paid trade is
applied as paid, never closed), then closes at the provider before closing locally, through the
same `app.billing.jobs.recovery.close_order` the expiry uses. WeChat refuses closeorder within 5
minutes of the order's creation: the order is then left `closing=True` with `next_check_at` at the
5-minute mark, and the recovery job finishes it.

These functions are entry points (like `app.billing.flows`): they commit.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from flask import current_app
from redis.exceptions import RedisError
from sqlalchemy import and_, or_, select, update

from app.billing import providers
from app.billing.models import AnomalyKind, Bill, OrderState, PaymentOrder
from app.billing.models.orders import ORDER_TRANSITIONS
from app.billing.services import orders
from app.billing.services.orders import SYSTEM
from app.core import audit, clock
from app.core.auth import Actor
from app.core.db import commit, db, on_commit, rollback
from app.core.errors import Conflict
from payments.base import (
    Channel,
    CloseResult,
    PaymentProvider,
    PayMode,
    ProviderDeclined,
    ProviderOutcomeUnknown,
    TradeState,
    TradeStatus,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Procedure:
    poll: timedelta  # interval between queries
    deadline: timedelta  # from the charge call: stop querying, reverse/cancel
    reverse_not_before: timedelta  # from the charge call: no reverse sooner (WeChat: 15 s)


PROCEDURES: dict[Channel, Procedure] = {
    Channel.WECHAT: Procedure(timedelta(seconds=5), timedelta(seconds=30), timedelta(seconds=15)),
    Channel.ALIPAY: Procedure(timedelta(seconds=5), timedelta(seconds=60), timedelta(0)),
}
REVERSE_BACKOFF_S: tuple[int, ...] = (3, 5, 10, 20, 30)
MAX_REVERSE_ATTEMPTS = 8
STEP_PATH = "app.billing.jobs.passive:advance_passive"

# States in which a 被扫 order is still being settled by this procedure (PENDING only if a query
# ever reported WAIT_BUYER_PAY before we saw PAYING: treated like PAYING).
PASSIVE_STATES = (OrderState.CREATED, OrderState.PENDING, OrderState.PAYING, OrderState.UNKNOWN)
# Provider states that settle an order for good.
SETTLED = frozenset({TradeState.PAID, TradeState.FAILED, TradeState.CLOSED, TradeState.REVERSED})
# Not in AnomalyKind yet (the lead adds REVERSE_FAILED = "reverse_failed"); record_anomaly only
# needs str(kind).
REVERSE_FAILED: AnomalyKind = getattr(AnomalyKind, "REVERSE_FAILED", cast(AnomalyKind, "reverse_failed"))

MSG_IN_PROGRESS = "上一笔付款仍在确认中，请稍候"
MSG_REVERSED = "付款人未在规定时间内完成支付，本次交易已撤销，未扣款"
MSG_REVERSED_REFUNDED = "付款人在撤销时完成了支付，款项已原路退回"
MSG_STOPPED = "收费员已停止收款，本次交易已撤销"


# --- desk: starting a payment ----------------------------------------------------------------------


def ensure_no_payment_in_progress(bill: Bill) -> None:
    """Refuse a new order while another order of the bill may still take the payer's money
    (a payer-code order being confirmed, any order whose outcome is unknown or in flight).
    The bill row is locked first so two desks cannot both pass the check."""
    db.session.refresh(bill, with_for_update=True)
    busy = (
        db.session.execute(
            select(PaymentOrder.out_trade_no).where(
                PaymentOrder.bill_id == bill.id,
                or_(
                    PaymentOrder.state.in_([OrderState.CREATED, OrderState.PAYING, OrderState.UNKNOWN]),
                    and_(PaymentOrder.mode == PayMode.PAYER_CODE, PaymentOrder.state == OrderState.PENDING),
                ),
            )
        )
        .scalars()
        .all()
    )
    if busy:
        raise Conflict(MSG_IN_PROGRESS, code="payment_in_progress", errors={"orders": list(busy)})


def follow_up_after_charge(order: PaymentOrder) -> None:
    """After the charge call was applied and committed: enqueue the procedure's next step."""
    if order.mode != PayMode.PAYER_CODE or order.order_state.is_final or order.next_check_at is None:
        return
    _enqueue(STEP_PATH, order.id, order.next_check_at)


# --- the passive-scan step -------------------------------------------------------------------------


def due_passive_orders(now: datetime | None = None, *, limit: int = 200) -> list[uuid.UUID]:
    """被扫 orders whose next poll/reverse is due."""
    moment = now or clock.now()
    return list(
        db.session.execute(
            select(PaymentOrder.id)
            .where(
                PaymentOrder.mode == PayMode.PAYER_CODE,
                PaymentOrder.state.in_([str(s) for s in PASSIVE_STATES]),
                PaymentOrder.next_check_at <= moment,
                PaymentOrder.reverse_attempts < MAX_REVERSE_ATTEMPTS,
            )
            .order_by(PaymentOrder.next_check_at)
            .limit(limit)
        ).scalars()
    )


def sweep_passive() -> int:
    """Cron (every minute): run every due 被扫 step whose scheduled job was lost (or never
    scheduled because Redis was down). Returns the steps that did something."""
    ran = 0
    due = due_passive_orders()
    rollback()
    for order_id in due:
        try:
            if advance_passive(order_id) != "noop":
                ran += 1
        except Exception:  # one broken order must not stop the sweep
            rollback()
            log.exception("payment follow-up step failed", extra={"order_id": str(order_id)})
    return ran


def advance_passive(order_id: uuid.UUID | str) -> str:
    """One step of the 被扫 procedure (commits). Returns what it did: noop | polled | waiting |
    settled | reversed | reverse_retry | gave_up."""
    oid = uuid.UUID(str(order_id))
    now = clock.now()
    order = _try_lock(oid)
    if order is None or not _passive_due(order, now):
        rollback()
        return "noop"
    channel = Channel(order.channel)
    procedure = PROCEDURES[channel]
    started = order.charge_called_at or order.created_at
    deadline = started + procedure.deadline
    reverse_from = started + procedure.reverse_not_before
    reversing = order.reverse_attempts > 0
    stop = order.closing
    out_trade_no, app = order.out_trade_no, order.payer_app
    _claim(order, now)
    provider = providers.get(channel)

    if not reversing:
        status = _query(provider, out_trade_no, app=app)
        if status is not None and status.state in SETTLED:
            return _settle(oid, status)
        if now < deadline and not stop:
            order = orders.lock_order(oid)
            _note_paying(order, status)
            _reschedule(order, min(now + procedure.poll, deadline))
            commit()
            return "polled"
        if now < reverse_from:  # the cashier stopped early: WeChat needs 15 s after the pay call
            order = orders.lock_order(oid)
            _note_paying(order, status)
            _reschedule(order, reverse_from)
            commit()
            return "waiting"
    return _reverse(oid, provider, out_trade_no, app=app, stopped=stop)


def _passive_due(order: PaymentOrder, now: datetime) -> bool:
    return (
        order.mode == PayMode.PAYER_CODE
        and order.state in PASSIVE_STATES
        and order.next_check_at is not None
        and order.next_check_at <= now
        and order.reverse_attempts < MAX_REVERSE_ATTEMPTS
    )


def _reverse(
    oid: uuid.UUID, provider: PaymentProvider, out_trade_no: str, *, app: str | None, stopped: bool
) -> str:
    result: CloseResult | None = None
    error: str | None = None
    try:
        result = provider.reverse(out_trade_no, app=app)
    except ProviderDeclined as exc:
        error = f"declined {exc.code}"
        status = _query(provider, out_trade_no, app=app)
        if status is not None and status.state in SETTLED:
            return _settle(oid, status)
    except ProviderOutcomeUnknown as exc:
        error = f"unknown: {exc}"[:200]
    except Exception as exc:  # an adapter bug must not leave the order without a next step
        log.exception("unexpected error from reverse", extra={"out_trade_no": out_trade_no})
        error = f"error: {exc!r}"[:200]
    order = orders.lock_order(oid)
    if result is not None and result.done:
        if order.order_state.is_final:
            if order.state == OrderState.PAID and result.refunded:
                # A notification marked it paid while we reversed: the money went back.
                orders.record_anomaly(
                    REVERSE_FAILED,
                    source="job",
                    order=order,
                    amount_fen=order.amount_fen,
                    detail={"why": "reverse refunded an order marked paid"},
                    dedupe="paid_then_reversed",
                )
            commit()
            return "settled"
        refunded = bool(result.refunded)
        message = MSG_REVERSED_REFUNDED if refunded else (MSG_STOPPED if stopped else MSG_REVERSED)
        target = OrderState.REVERSED
        if target not in ORDER_TRANSITIONS[order.order_state]:  # PENDING: the table has no REVERSED
            orders.transition(order, OrderState.PAYING, source="job", actor=SYSTEM)
        orders.transition(
            order,
            target,
            source="job",
            actor=SYSTEM,
            reason=message,
            detail={"refunded": refunded, "reverse_attempts": order.reverse_attempts + 1, "stopped": stopped},
            values={"decline_message": message, "closing": False},
        )
        orders.set_follow_up(order, None, reverse_attempts=order.reverse_attempts + 1)
        commit()
        log.info(
            "payer-code order reversed",
            extra={"out_trade_no": out_trade_no, "refunded": refunded, "stopped": stopped},
        )
        return "reversed"
    if order.order_state.is_final:
        commit()
        return "settled"
    attempts = order.reverse_attempts + 1
    why = "retry" if result is not None and result.retry else (error or "not done")
    if attempts >= MAX_REVERSE_ATTEMPTS:
        if order.state != OrderState.UNKNOWN:
            orders.transition(
                order, OrderState.UNKNOWN, source="job", actor=SYSTEM, reason=f"撤销 {attempts} 次未成功"
            )
        orders.record_anomaly(
            REVERSE_FAILED,
            source="job",
            order=order,
            amount_fen=order.amount_fen,
            detail={"attempts": attempts, "last": why},
        )
        orders.set_follow_up(order, clock.now() + orders.recovery_delay(), reverse_attempts=attempts)
        commit()
        return "gave_up"
    delay = REVERSE_BACKOFF_S[min(attempts, len(REVERSE_BACKOFF_S)) - 1]
    orders.set_follow_up(order, clock.now() + timedelta(seconds=delay), reverse_attempts=attempts)
    _enqueue(STEP_PATH, oid, order.next_check_at)
    commit()
    log.warning(
        "reverse to be repeated", extra={"out_trade_no": out_trade_no, "attempt": attempts, "why": why}
    )
    return "reverse_retry"


def _note_paying(order: PaymentOrder, status: TradeStatus | None) -> None:
    """A query saw the payer confirming: CREATED/UNKNOWN become PAYING (the desk shows it)."""
    if status is None or status.state not in (TradeState.PAYING, TradeState.PENDING):
        return
    if order.state in (OrderState.CREATED, OrderState.UNKNOWN):
        orders.transition(order, OrderState.PAYING, source="query", actor=SYSTEM)


# --- the desk's close / stop -----------------------------------------------------------------------


def close_order(order_id: uuid.UUID, *, actor: Actor) -> PaymentOrder:
    """Close (QR/JSAPI) or stop (被扫) an order at the cashier's request (commits).

    Raises Conflict `order_already_paid` when the trade turns out to be paid (applied first)."""
    order = orders.lock_order(order_id)
    if order.state == OrderState.PAID:
        rollback()
        raise _already_paid()
    if order.order_state.is_final:
        rollback()
        return order
    now = clock.now()
    passive = order.mode == PayMode.PAYER_CODE
    if passive:
        started = order.charge_called_at or order.created_at
        at = max(now, started + PROCEDURES[Channel(order.channel)].reverse_not_before)
    else:
        at = now
    db.session.execute(
        update(PaymentOrder)
        .where(PaymentOrder.id == order.id)
        .values(closing=True, next_check_at=at)
        .execution_options(synchronize_session=False)
    )
    audit.record(
        "payment_order.close_request",
        "payment_order",
        order.id,
        institution_id=order.institution_id,
        detail={"by": actor.kind, "state": order.state},
    )
    if at > now:
        _enqueue(STEP_PATH, order.id, at)
    commit()
    if at <= now:
        if passive:
            advance_passive(order.id)
        else:
            from app.billing.jobs import recovery

            recovery.close_order(order.id)
    order = db.session.get(PaymentOrder, order.id) or order
    db.session.refresh(order)
    if order.state == OrderState.PAID:
        raise _already_paid()
    return order


def _already_paid() -> Conflict:
    return Conflict("付款人已完成支付，订单不能关闭；如需退款请发起退款", code="order_already_paid")


# --- helpers ---------------------------------------------------------------------------------------


def _try_lock(order_id: uuid.UUID) -> PaymentOrder | None:
    """The order, row-locked; None when missing or another worker holds it (SKIP LOCKED)."""
    return db.session.execute(
        select(PaymentOrder)
        .where(PaymentOrder.id == order_id)
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()


def _claim(order: PaymentOrder, now: datetime) -> None:
    """Push next_check_at past the provider call so another worker's copy of this step no-ops;
    commit (no transaction stays open across the network call)."""
    lease = timedelta(seconds=int(current_app.config["PAYMENT_TIMEOUT_SECONDS"]) + 5)
    orders.set_follow_up(order, now + lease, check_attempts=order.check_attempts + 1)
    commit()


def _query(provider: PaymentProvider, out_trade_no: str, *, app: str | None) -> TradeStatus | None:
    try:
        return provider.query(out_trade_no, app=app)
    except (ProviderOutcomeUnknown, ProviderDeclined) as exc:
        log.warning("order query failed", extra={"out_trade_no": out_trade_no, "error": str(exc)})
    except Exception:
        log.exception("unexpected error from query", extra={"out_trade_no": out_trade_no})
    return None


def _settle(oid: uuid.UUID, status: TradeStatus, *, source: str = "query") -> str:
    order = orders.lock_order(oid)
    if not order.order_state.is_final:
        orders.apply_trade_status(order, status, source=source, actor=SYSTEM)
        if order.order_state.is_final:
            orders.set_follow_up(order, None)
            if order.closing:
                db.session.execute(
                    update(PaymentOrder)
                    .where(PaymentOrder.id == oid)
                    .values(closing=False)
                    .execution_options(synchronize_session=False)
                )
    commit()
    return "settled"


def _reschedule(order: PaymentOrder, at: datetime, *, path: str = STEP_PATH) -> None:
    orders.set_follow_up(order, at)
    _enqueue(path, order.id, at)


def _enqueue(path: str, order_id: uuid.UUID, at: datetime | None) -> None:
    """After commit: run `path(order_id)` at `at` on the payments queue (rq enqueue_at). If Redis
    is down the cron sweep runs the step instead."""
    if at is None:
        return

    def schedule() -> None:
        from app.jobs import queue, run

        try:
            queue("payments").enqueue_at(at, run, args=(path, str(order_id)))
        except RedisError:
            log.warning("could not schedule the next payment step", extra={"order_id": str(order_id)})

    on_commit(schedule)
