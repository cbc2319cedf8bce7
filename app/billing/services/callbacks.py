"""Provider callbacks (异步通知): log, verify, check, apply once under the order's row lock.

The callback view (`app/billing/routes/callbacks.py`) runs three short transactions:

1. `receive(...)` writes the raw notification into `payment_notifications` and the view commits
   it **before anything is verified**: every delivery, forged or not, stays on record.
2. `process(...)` verifies it through the channel's adapter (`parse_callback`), checks app id and
   merchant id, then locks the order (`SELECT ... FOR UPDATE`) and applies the trade through
   `services.orders.apply_trade_status` (the only way to PAID: amount and currency check,
   exactly-once conditional UPDATE, duplicate payment / paid-after-close → anomaly + refund);
   refund results go to `services.refunds.apply_refund_event`. The view commits.
3. Only then does the view answer the provider, with the ack `process` decided.

Nothing here calls the network (PAY-06): follow-up work goes through the outbox.

What the provider is told (`Handled.ok`; False makes it notify again later):

- signature / format rejected (`InvalidCallback`): failure; nothing but the log row and a durable
  `payment_notification.rejected` audit row is written.
- verified but for another app id / merchant id: failure, MERCHANT_MISMATCH anomaly. A retry can
  succeed once our configuration is corrected; the anomaly is not repeated (dedupe key).
- verified, order applied or already in that state (duplicate): success.
- verified, unknown `out_trade_no`, wrong amount or currency, a not-paid trade state, paid after
  close, second payment of a bill: success **after** the anomaly (and any automatic refund) is
  committed. Re-sending the same signed facts cannot change the outcome; the anomaly has an owner.
- any unexpected error: failure (rolled back, the log row marked `error`), never a 500 page.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import uuid
from dataclasses import dataclass

from sqlalchemy import select

from app.billing.models import AnomalyKind, OrderState, PaymentAnomaly, PaymentNotification, PaymentOrder
from app.billing.services import orders, refunds
from app.billing.services.orders import PROVIDER
from app.core import audit
from app.core.db import db
from payments.base import (
    Channel,
    EventKind,
    InvalidCallback,
    PaymentEvent,
    PaymentProvider,
    TradeState,
    TradeStatus,
)

log = logging.getLogger(__name__)

SOURCE = "callback"
MAX_BODY_BYTES = 64 * 1024  # real notifications are a few KB; anything larger is refused unread
# Reasons an adapter gives for a notification whose signature checked out but which belongs to
# another app / merchant account (the fake provider says "foreign_merchant").
FOREIGN_REASONS = frozenset({"foreign_merchant", "merchant_mismatch", "app_mismatch"})
NOT_PAID_STATES = frozenset({TradeState.PENDING, TradeState.PAYING, TradeState.NOT_FOUND, TradeState.FAILED})


class Outcome:
    """Values of `PaymentNotification.outcome`."""

    RECEIVED = "received"  # logged, not processed yet (or the process crashed before the update)
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"
    ANOMALY = "anomaly"
    IGNORED = "ignored"
    ERROR = "error"


@dataclass(frozen=True)
class Handled:
    ok: bool  # answer the provider success (stop notifying) or failure (notify again)
    outcome: str
    reason: str | None = None


# --- the raw log ------------------------------------------------------------------------------------


def stored_body(body: bytes) -> str:
    """The body as text: UTF-8 when it is (and holds no NUL), else `base64:` + the exact bytes."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None or "\x00" in text:
        return "base64:" + base64.b64encode(body).decode("ascii")
    return text


def receive(
    channel: Channel, body: bytes, *, content_type: str | None, remote_addr: str | None
) -> PaymentNotification:
    """Log one notification as received (the caller commits it before processing)."""
    note = PaymentNotification(
        channel=str(channel),
        content_type=(content_type or "")[:100] or None,
        body=stored_body(body),
        remote_addr=(remote_addr or "")[:45] or None,
        verified=False,
        outcome=Outcome.RECEIVED,
    )
    db.session.add(note)
    db.session.flush()
    return note


def reject(note: PaymentNotification, reason: str) -> Handled:
    """Verification failed: record why (log row + durable audit row); nothing else changes."""
    note.outcome, note.reason, note.verified = Outcome.REJECTED, reason[:64], False
    audit.record(
        "payment_notification.rejected",
        "payment_notification",
        note.id,
        result=audit.DENIED,
        detail={"channel": note.channel, "reason": reason[:64]},
        durable=True,
    )
    log.warning(
        "payment notification rejected",
        extra={"channel": note.channel, "reason": reason, "notification_id": note.id},
    )
    return Handled(False, Outcome.REJECTED, reason[:64])


def mark_error(notification_id: int, reason: str) -> None:
    """After a rollback: keep the log row and say the processing failed (the provider retries).
    Durable audit events of the rolled-back attempt (a rejection) are written with it."""
    audit.write_durable_events()
    note = db.session.get(PaymentNotification, notification_id)
    if note is not None:
        note.outcome, note.reason = Outcome.ERROR, reason[:64]


def _finish(note: PaymentNotification, handled: Handled) -> Handled:
    note.outcome, note.reason = handled.outcome, handled.reason
    return handled


# --- processing -------------------------------------------------------------------------------------


def process(note: PaymentNotification, provider: PaymentProvider, body: bytes, content_type: str) -> Handled:
    """Verify and apply one logged notification. No commit, no network call."""
    try:
        event = provider.parse_callback(body, content_type)
    except InvalidCallback as exc:
        handled = reject(note, exc.reason)
        if exc.reason in FOREIGN_REASONS:
            # The adapter verified the signature, then found another account's ids in it.
            orders.record_anomaly(
                AnomalyKind.MERCHANT_MISMATCH,
                source=SOURCE,
                channel=provider.channel,
                detail={"notification_id": note.id, "reason": exc.reason},
                dedupe=f"body:{_digest(body)}",
            )
        return handled
    _note_event(note, event)
    if event.app_id not in _app_ids(provider) or event.merchant_id != provider.merchant_id:
        return _finish(note, _merchant_mismatch(note, event, provider))
    if event.kind is EventKind.REFUND:
        return _finish(note, _refunds(note, event))
    if event.trade is None:
        return reject(note, "payment_event_without_trade")
    return _finish(note, _apply_trade(note, event, event.trade))


def _app_ids(provider: PaymentProvider) -> frozenset[str]:
    """Every app id of our account at this provider: WeChat Pay serves several apps of one
    merchant (official account, mini-program: `WeChatPayProvider.appids`)."""
    extra = getattr(provider, "appids", None)
    return frozenset(extra or ()) | {provider.app_id}


def _digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()[:32]


def _note_event(note: PaymentNotification, event: PaymentEvent) -> None:
    note.verified = True
    note.kind = str(event.kind)
    note.notify_id = (event.notify_id or "")[:128] or None
    trade_no = (
        event.trade.out_trade_no if event.trade else event.refund.out_trade_no if event.refund else None
    )
    note.out_trade_no = (trade_no or "")[:32] or None
    note.out_refund_no = (event.refund.out_refund_no[:64] if event.refund else None) or _alipay_refund_no(
        event
    )


def _alipay_refund_no(event: PaymentEvent) -> str | None:
    value = event.fields.get("out_biz_no") if event.channel is Channel.ALIPAY else None
    return value[:64] if isinstance(value, str) and value else None


def _order_id(out_trade_no: str) -> uuid.UUID | None:
    return db.session.execute(
        select(PaymentOrder.id).where(PaymentOrder.out_trade_no == out_trade_no)
    ).scalar_one_or_none()


def _merchant_mismatch(note: PaymentNotification, event: PaymentEvent, provider: PaymentProvider) -> Handled:
    trade_no = note.out_trade_no
    order_id = _order_id(trade_no) if trade_no else None
    order = db.session.get(PaymentOrder, order_id) if order_id is not None else None
    orders.record_anomaly(
        AnomalyKind.MERCHANT_MISMATCH,
        source=SOURCE,
        order=order,
        channel=event.channel,
        out_trade_no=trade_no,
        detail={
            "app_id": event.app_id,
            "merchant_id": event.merchant_id,
            "expected_app_id": provider.app_id,
            "expected_merchant_id": provider.merchant_id,
            "notification_id": note.id,
        },
        dedupe=f"{event.app_id}/{event.merchant_id}"[:100],
    )
    return Handled(False, Outcome.ANOMALY, "merchant_mismatch")


def _apply_trade(note: PaymentNotification, event: PaymentEvent, trade: TradeStatus) -> Handled:
    order_id = _order_id(trade.out_trade_no)
    if order_id is None:
        orders.record_anomaly(
            AnomalyKind.UNKNOWN_ORDER,
            source=SOURCE,
            channel=event.channel,
            out_trade_no=trade.out_trade_no[:32],
            amount_fen=trade.amount_fen,
            detail={"trade_state": str(trade.state), "notification_id": note.id},
        )
        return Handled(True, Outcome.ANOMALY, "unknown_order")
    order = orders.lock_order(order_id)  # the data lock WeChat asks for: one notification at a time
    note.order_id = order.id
    refunded = trade.refunded_fen or 0
    if trade.state is TradeState.PAID:
        handled = _apply_payment(order, trade)
    elif trade.state in NOT_PAID_STATES:
        handled = _not_paid(note, order, trade)
    elif refunded > 0:
        # Alipay TRADE_CLOSED after a full refund: a refund notice, not an unpaid close.
        handled = Handled(True, Outcome.IGNORED, "closed_by_refund")
    else:
        # The provider's verified final word on an unpaid trade (closed / reversed / failed):
        # the same path as a query result. A paid order ignores it (no transition from PAID).
        result = orders.apply_trade_status(order, trade, source=SOURCE, actor=PROVIDER)
        handled = Handled(True, Outcome.APPLIED if result == "applied" else Outcome.IGNORED, str(trade.state))
    if refunded > 0:
        refund_result = _refunds(note, event)
        if (
            handled.outcome in (Outcome.DUPLICATE, Outcome.IGNORED)
            and refund_result.outcome != Outcome.IGNORED
        ):
            handled = refund_result
    return handled


def _apply_payment(order: PaymentOrder, trade: TradeStatus) -> Handled:
    result = orders.apply_trade_status(order, trade, source=SOURCE, actor=PROVIDER)
    if result == "applied":
        return Handled(True, Outcome.APPLIED)
    if result == "duplicate":
        return Handled(True, Outcome.DUPLICATE)
    if result == "anomaly":
        return Handled(True, Outcome.ANOMALY, _latest_anomaly_kind(order))
    return Handled(True, Outcome.IGNORED, "noop")


def _latest_anomaly_kind(order: PaymentOrder) -> str | None:
    kind = db.session.execute(
        select(PaymentAnomaly.kind)
        .where(PaymentAnomaly.order_id == order.id)
        .order_by(PaymentAnomaly.created_at.desc())
        .limit(1)
    ).scalar_one_or_none()
    return kind


def _not_paid(note: PaymentNotification, order: PaymentOrder, trade: TradeStatus) -> Handled:
    """A notification whose trade is not paid (e.g. Alipay WAIT_BUYER_PAY): PAY-03 says the order
    does not change; an open order gets an anomaly, a settled one simply ignores a stale notice."""
    if OrderState(order.state).is_final:
        return Handled(True, Outcome.IGNORED, "stale_state")
    orders.record_anomaly(
        AnomalyKind.NOT_PAID_STATE,
        source=SOURCE,
        order=order,
        amount_fen=trade.amount_fen,
        detail={"trade_state": str(trade.state), "notification_id": note.id},
        dedupe=str(trade.state),
    )
    return Handled(True, Outcome.ANOMALY, "not_paid_state")


# --- refunds ----------------------------------------------------------------------------------------

_REFUND_OUTCOMES: dict[str, tuple[str, str | None]] = {
    "applied": (Outcome.APPLIED, "refund"),
    "scheduled": (Outcome.APPLIED, "refund_query_scheduled"),
    "duplicate": (Outcome.DUPLICATE, "refund"),
    "noop": (Outcome.IGNORED, "refund_noop"),
    "anomaly": (Outcome.ANOMALY, "refund_anomaly"),
    "unknown_refund": (Outcome.ANOMALY, "unknown_refund"),
}


def _refunds(note: PaymentNotification, event: PaymentEvent) -> Handled:
    """Refund results go to the refunds service (`refunds.apply_refund_event`): a WeChat refund
    notification is settled by its out_refund_no; an Alipay trade notification carrying
    `refund_fee` makes the order's open refunds be queried (outbox)."""
    result = refunds.apply_refund_event(event)
    outcome, reason = _REFUND_OUTCOMES.get(result, (Outcome.IGNORED, result[:64]))
    if note.order_id is None and note.out_trade_no:
        note.order_id = _order_id(note.out_trade_no)
    return Handled(True, outcome, reason)
