"""补单 (PAY-08) and expiry closing: the periodic safety net that never leaves an order open or paying.

`recover_orders()` runs every minute on any number of workers. It takes the open orders whose
`next_check_at` is due:

- CREATED / PENDING / UNKNOWN (and PAYING only when the passive-scan procedure has abandoned it:
  `next_check_at` more than `PAYING_ABANDONED_AFTER` in the past), and any open order a cashier
  asked to close (`closing=True`);
- not yet expired → query the provider and apply the answer (`flows.query_and_apply`, the same
  exactly-once path as a notification), then reschedule with backoff (never past the expiry);
- expired (or `closing`) → query FIRST: a paid trade is applied as PAID, a trade the provider
  already closed/reversed is applied as such; otherwise close it at the provider (被扫 orders are
  reversed), and only when the provider confirmed, move the order to CLOSED/REVERSED locally. An
  unscanned Alipay precreate (NOT_FOUND, it can no longer be paid after its expiry) counts as closed.

A provider that cannot answer (timeout, SYSTEMERROR) changes nothing: the order keeps its state
(UNKNOWN stays UNKNOWN, never FAILED) and is tried again later; after 24 h in UNKNOWN an anomaly
asks a person to look. Each order is claimed with a conditional UPDATE of `check_attempts`
(plus FOR UPDATE SKIP LOCKED on PostgreSQL) and re-checked under its row lock; one failing order
never stops the batch.

Like `app.billing.flows`, these functions are entry points: they commit, and no transaction is
open while a provider is called.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, and_, or_, select, update

from app.billing import flows, providers
from app.billing.models import AnomalyKind, OrderState, PaymentOrder
from app.billing.models.orders import OPEN_ORDER_STATES
from app.billing.services import orders
from app.billing.services.orders import SYSTEM
from app.core import clock
from app.core.db import commit, db, rollback
from payments.base import (
    Channel,
    CloseResult,
    PayMode,
    ProviderDeclined,
    ProviderOutcomeUnknown,
    TradeState,
    TradeStatus,
)

log = logging.getLogger(__name__)

QUERYABLE_STATES = (OrderState.CREATED, OrderState.PENDING, OrderState.UNKNOWN)
# The passive-scan procedure ends within ~60 s; a PAYING order untouched this long is abandoned.
PAYING_ABANDONED_AFTER = timedelta(minutes=5)
# Close a little after the expiry we gave the provider (clock skew; a last-second payment).
EXPIRY_GRACE = timedelta(minutes=1)
# WeChat refuses closeorder within 5 minutes of the unified order.
WECHAT_CLOSE_MIN_AGE = timedelta(minutes=5)
CLAIM_LEASE = timedelta(minutes=2)
RETRY_SOON = timedelta(seconds=30)
MAX_BACKOFF = timedelta(minutes=30)
UNKNOWN_ALERT_AFTER = timedelta(hours=24)


def backoff(attempts: int) -> timedelta:
    """1, 2, 4, 8, 16, 30, 30 ... minutes."""
    return min(timedelta(minutes=2 ** max(attempts - 1, 0)), MAX_BACKOFF)


def _due(now: datetime) -> Any:
    ready = or_(PaymentOrder.next_check_at.is_(None), PaymentOrder.next_check_at <= now)
    abandoned = or_(
        PaymentOrder.next_check_at.is_(None), PaymentOrder.next_check_at <= now - PAYING_ABANDONED_AFTER
    )
    return or_(
        and_(PaymentOrder.state.in_([str(s) for s in QUERYABLE_STATES]), ready),
        and_(PaymentOrder.state == OrderState.PAYING, abandoned),
        and_(
            PaymentOrder.closing.is_(True),
            PaymentOrder.state.in_([str(s) for s in OPEN_ORDER_STATES]),
            ready,
        ),
    )


def _claim(now: datetime, limit: int) -> list[uuid.UUID]:
    """Take up to `limit` due orders for this worker: each claim is a conditional UPDATE that
    pushes `next_check_at` out by a lease (the order comes back if this worker dies)."""
    statement = select(PaymentOrder.id).where(_due(now)).order_by(PaymentOrder.next_check_at).limit(limit)
    if db.dialect == "postgresql":
        statement = statement.with_for_update(skip_locked=True)
    claimed: list[uuid.UUID] = []
    for order_id in list(db.session.execute(statement).scalars()):
        result = cast(
            CursorResult[Any],
            db.session.execute(
                update(PaymentOrder)
                .where(PaymentOrder.id == order_id, _due(now))
                .values(next_check_at=now + CLAIM_LEASE)
                .execution_options(synchronize_session=False)
            ),
        )
        if result.rowcount == 1:
            claimed.append(order_id)
    commit()
    return claimed


def recover_orders(limit: int = 200) -> dict[str, int]:
    """Periodic job (every minute): query or close every due open order. Returns outcome counts."""
    counts: dict[str, int] = {}
    for order_id in _claim(clock.now(), limit):
        try:
            outcome = recover_order(order_id)
        except Exception:  # isolated: the claim's lease brings the order back later
            rollback()
            log.exception("order recovery failed", extra={"order_id": str(order_id)})
            outcome = "error"
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts


def recover_order(order_id: uuid.UUID) -> str:
    """Query (not expired) or close (expired / closing) one order. Commits."""
    order = orders.lock_order(order_id)
    if order.order_state.is_final:
        commit()
        return "final"
    expired = order.expires_at + EXPIRY_GRACE <= clock.now()
    closing = order.closing
    commit()
    if expired or closing:
        return close_order(order_id)
    outcome = flows.query_and_apply(order_id, source="job", actor=SYSTEM)
    _reschedule(order_id, unknown=outcome == "unknown", cap_at_expiry=True)
    return outcome


def close_order(order_id: uuid.UUID) -> str:
    """Close an expired (or cashier-cancelled) order at the provider first, then locally.

    Returns paid | closed | reversed | unknown | retry | deferred | final | the outcome of applying
    the provider's state."""
    order = orders.lock_order(order_id)
    if order.order_state.is_final:
        commit()
        return "final"
    channel, out_trade_no, app = Channel(order.channel), order.out_trade_no, order.payer_app
    passive = order.mode == PayMode.PAYER_CODE
    created = order.charge_called_at or order.created_at
    expires_at = order.expires_at
    commit()
    provider = providers.get(channel)
    try:  # query first: a paid trade is applied as paid, never closed
        status = provider.query(out_trade_no, app=app)
    except (ProviderOutcomeUnknown, ProviderDeclined) as exc:
        log.warning("order query failed", extra={"out_trade_no": out_trade_no, "error": str(exc)})
        return _reschedule(order_id, unknown=True)
    if status.state is TradeState.PAID:
        return _apply_settled(order_id, status) or "paid"
    now = clock.now()
    if channel is Channel.WECHAT and not passive and now < created + WECHAT_CLOSE_MIN_AGE:
        return _reschedule(order_id, at=created + WECHAT_CLOSE_MIN_AGE, outcome="deferred")
    if (
        status.state is TradeState.NOT_FOUND
        and channel is Channel.ALIPAY
        and not passive
        and now <= expires_at
    ):
        # An unscanned precreate cannot be closed at Alipay and stays payable until its expiry:
        # calling it closed now would invite a payment after close. Close it once it has expired.
        return _reschedule(order_id, at=expires_at + timedelta(seconds=5), outcome="deferred")
    # Unpaid (or already closed by the provider's own expiry): close it at the provider anyway,
    # which is idempotent, so that nobody can pay it after we call it closed.
    try:
        result = provider.reverse(out_trade_no, app=app) if passive else provider.close(out_trade_no, app=app)
    except ProviderOutcomeUnknown as exc:
        log.warning("order close failed", extra={"out_trade_no": out_trade_no, "error": str(exc)})
        return _reschedule(order_id, unknown=True)
    except ProviderDeclined as exc:
        log.warning("order close declined", extra={"out_trade_no": out_trade_no, "code": exc.code})
        if status.state in (TradeState.CLOSED, TradeState.REVERSED, TradeState.FAILED):
            return _apply_settled(order_id, status) or "noop"  # e.g. closing a reversed trade
        return _reschedule(order_id, outcome="declined")
    if result.already_paid:
        return _after_already_paid(order_id, out_trade_no)
    unscanned_precreate = status.state is TradeState.NOT_FOUND and channel is Channel.ALIPAY and not passive
    if result.retry or not (result.done or unscanned_precreate):
        return _reschedule(order_id, delay=RETRY_SOON, outcome="retry")
    return _mark_closed(order_id, result, passive=passive, provider_state=status.state)


def _apply_settled(order_id: uuid.UUID, status: TradeStatus) -> str | None:
    """The provider already settled the trade (paid, closed, reversed, failed): apply that instead of
    closing. None when there is nothing to apply (NOT_FOUND): the caller closes."""
    if status.state is TradeState.NOT_FOUND:
        return None
    order = orders.lock_order(order_id)
    outcome = orders.apply_trade_status(order, status, source="job", actor=SYSTEM)
    if status.state is TradeState.PAID:
        commit()
        return "paid" if outcome == "applied" else outcome
    if not order.order_state.is_final:  # e.g. a FAILED trade on an order that cannot take it
        commit()
        return _reschedule(order_id, outcome=outcome)
    orders.set_follow_up(order, None)
    commit()
    return str(order.state)


def _after_already_paid(order_id: uuid.UUID, out_trade_no: str) -> str:
    """The payer paid between our query and the close: query again and apply the payment."""
    order = orders.lock_order(order_id)
    channel, app = Channel(order.channel), order.payer_app
    commit()
    try:
        status = providers.get(channel).query(out_trade_no, app=app)
    except (ProviderOutcomeUnknown, ProviderDeclined):
        return _reschedule(order_id, delay=RETRY_SOON, outcome="unknown")
    settled = _apply_settled(order_id, status)
    return settled if settled is not None else _reschedule(order_id, delay=RETRY_SOON, outcome="retry")


def _mark_closed(
    order_id: uuid.UUID, result: CloseResult, *, passive: bool, provider_state: TradeState
) -> str:
    order = orders.lock_order(order_id)
    target = OrderState.REVERSED if passive else OrderState.CLOSED
    if order.closing:
        reason = "收银员取消支付，已在支付渠道撤销" if passive else "收银员取消支付，已在支付渠道关闭"
    else:
        reason = "订单超时未支付，已在支付渠道撤销" if passive else "订单超时未支付，已在支付渠道关闭"
    moved = orders.transition(
        order,
        target,
        source="job",
        actor=SYSTEM,
        reason=reason,
        detail={"provider_state": str(provider_state), "refunded": result.refunded},
        values={"next_check_at": None, "closing": False},
    )
    if not moved and order.state == OrderState.PAID and result.refunded:
        # Paid (by a notification) between our query and the reversal, which returned the money.
        orders.record_anomaly(
            AnomalyKind.PAID_AFTER_CLOSE,
            source="job",
            order=order,
            amount_fen=order.amount_fen,
            detail={"why": "reversed_after_paid"},
            dedupe="reversed",
        )
    commit()
    if moved:
        return str(target)
    return "noop"


def _reschedule(
    order_id: uuid.UUID,
    *,
    unknown: bool = False,
    outcome: str | None = None,
    delay: timedelta | None = None,
    at: datetime | None = None,
    cap_at_expiry: bool = False,
) -> str:
    """Set the next check of a still-open order (backoff on `check_attempts`). Commits."""
    order = orders.lock_order(order_id)
    if order.order_state.is_final:
        commit()
        return outcome or ("unknown" if unknown else "final")
    now = clock.now()
    attempts = order.check_attempts + 1
    when = at or now + (delay or backoff(attempts))
    closes_at = order.expires_at + EXPIRY_GRACE
    if cap_at_expiry and not order.closing and closes_at > now:
        when = min(when, closes_at)
    orders.set_follow_up(order, when, check_attempts=attempts)
    if unknown and order.state == OrderState.UNKNOWN and now - order.state_changed_at >= UNKNOWN_ALERT_AFTER:
        # The provider has not been able to tell us for a day: a person must look (never FAILED).
        orders.record_anomaly(
            AnomalyKind.RECONCILIATION,
            source="job",
            order=order,
            amount_fen=order.amount_fen,
            detail={"why": "unknown_over_24h", "since": order.state_changed_at.isoformat()},
            dedupe="unknown_over_24h",
        )
    commit()
    return outcome or ("unknown" if unknown else "rescheduled")
