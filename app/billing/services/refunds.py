"""Refund delivery (PAY-12): apply at the provider, settle by notification or query, retry, cancel.

Creation and the amount guard live in `services.orders.request_refund` (one conditional UPDATE on
`refunded_fen`, the 50-refund cap, the out_refund_no persisted, an outbox row). From there:

    PENDING     committed with its out_refund_no. The outbox handler `billing.refund_apply` calls
                `apply_refund`: commit, call the provider with no transaction open, apply, commit.
                An unknown outcome (timeout, SYSTEMERROR) leaves it PENDING: `poll_refunds` applies
                it again later with the SAME out_refund_no (the providers deduplicate on it).
    PROCESSING  the provider accepted it. The apply reply is never trusted as final: the state comes
                from the refund notification (WeChat, decrypted req_info) or `query_refund`.
    SUCCEEDED   final (succeeded_at set).
    FAILED      refused or closed by the provider; the amount stays reserved on the order until a
                staff member retries it (same number, `retry_refund`) or cancels it (`cancel_refund`).
    ABNORMAL    WeChat CHANGE: a REFUND_ABNORMAL anomaly is raised; queried every 30 minutes.
    CANCELLED   final; the reservation (`refunded_fen`, `refund_count`) is released.

Every status change is one conditional UPDATE (`WHERE id = :id AND status = :from`), appends an
entry to `Refund.history` and writes an audit row. Alipay has no refund notification: a trade
notification carrying `refund_fee` only schedules a `query_refund` of the order's open refunds
(outbox topic `billing.refund_query`), it never settles a refund by itself.

The entry points that commit (`apply_refund`, `settle_refund`, `poll_refunds`, the outbox
handlers) live in `app.billing.jobs.refunds`; everything here only changes the session.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Select, select, update

from app.billing.models import (
    REFUND_TRANSITIONS,
    AnomalyKind,
    AnomalyStatus,
    PaymentAnomaly,
    PaymentOrder,
    Refund,
    RefundOrigin,
    RefundStatus,
)
from app.billing.services.orders import PROVIDER, lock_order, record_anomaly
from app.core import audit, clock, outbox
from app.core.auth import Actor, Principal
from app.core.db import db
from app.core.errors import Conflict, InvalidTransition, NotFound
from app.core.pagination import Page, paginate
from payments.base import (
    EventKind,
    PaymentEvent,
    ProviderDeclined,
    RefundState,
)
from payments.base import RefundStatus as ProviderRefundStatus

log = logging.getLogger(__name__)

APPLY_TOPIC = "billing.refund_apply"
QUERY_TOPIC = "billing.refund_query"
# While one worker applies/queries a refund, the poll job leaves it alone for this long.
CLAIM_LEASE = timedelta(minutes=2)
FIRST_QUERY_AFTER = timedelta(seconds=10)  # Alipay: query no sooner than ~10 s after the apply
ABNORMAL_RECHECK = timedelta(minutes=30)
ACTIVE_STATUSES = (RefundStatus.PENDING, RefundStatus.PROCESSING, RefundStatus.ABNORMAL)

_FROM_PROVIDER: dict[RefundState, RefundStatus] = {
    RefundState.PROCESSING: RefundStatus.PROCESSING,
    RefundState.SUCCEEDED: RefundStatus.SUCCEEDED,
    RefundState.FAILED: RefundStatus.FAILED,
    RefundState.ABNORMAL: RefundStatus.ABNORMAL,
}


_UNKNOWN_MESSAGE = "支付渠道未及时响应，系统将自动重试（退款单号不变）"
_CLOSED_MESSAGE = "支付渠道退款失败（退款关闭），可重试或取消"


def next_query_at(refund: Refund, now: datetime) -> datetime:
    """When to ask the provider again: soon at first, then less and less often."""
    if refund.status == RefundStatus.ABNORMAL:
        return now + ABNORMAL_RECHECK
    age = now - refund.status_changed_at
    if age < timedelta(minutes=2):
        return now + FIRST_QUERY_AFTER
    if age < timedelta(hours=1):
        return now + timedelta(minutes=1)
    if age < timedelta(hours=24):
        return now + timedelta(minutes=10)
    return now + timedelta(hours=1)


# --- the guarded state machine -------------------------------------------------------------------


def _transition(
    refund: Refund,
    to: RefundStatus,
    *,
    source: str,
    actor: Actor,
    reason: str | None = None,
    values: dict[str, Any] | None = None,
) -> bool:
    """Move the refund to `to` if the table allows and nobody moved it first (row count checked)."""
    current = RefundStatus(refund.status)
    if to not in REFUND_TRANSITIONS[current]:
        return False
    now = clock.now()
    entry: dict[str, Any] = {
        "at": now.isoformat(),
        "from": str(current),
        "status": str(to),
        "by": actor.kind,
        "source": source,
    }
    if actor.id is not None:
        entry["actor_id"] = str(actor.id)
    if reason:
        entry["reason"] = reason[:200]
    result = cast(
        CursorResult[Any],
        db.session.execute(
            update(Refund)
            .where(Refund.id == refund.id, Refund.status == current)
            .values(
                status=to,
                status_changed_at=now,
                updated_at=now,
                history=[*(refund.history or []), entry],
                **(values or {}),
            )
            .execution_options(synchronize_session=False)
        ),
    )
    db.session.refresh(refund)
    if result.rowcount != 1:
        return False
    audit.record(
        "refund.transition",
        "refund",
        refund.id,
        institution_id=refund.institution_id,
        detail={
            "from": str(current),
            "to": str(to),
            "source": source,
            **({"reason": reason} if reason else {}),
        },
    )
    return True


def _set(refund: Refund, **values: Any) -> None:
    db.session.execute(
        update(Refund)
        .where(Refund.id == refund.id)
        .values(updated_at=clock.now(), **values)
        .execution_options(synchronize_session=False)
    )
    db.session.refresh(refund)


def apply_refund_status(
    refund: Refund, status: ProviderRefundStatus, *, source: str, actor: Actor = PROVIDER
) -> str:
    """Apply what the provider says about a refund (query reply or verified notification).

    Returns applied | duplicate | noop | anomaly. NOT_FOUND changes nothing (the caller decides
    whether to apply again with the same number)."""
    if status.out_refund_no != refund.out_refund_no:
        raise ValueError("status for another refund")
    target = _FROM_PROVIDER.get(status.state)
    if target is None:
        return "noop"
    current = RefundStatus(refund.status)
    if target is current:
        return "duplicate"
    order = db.session.get(PaymentOrder, refund.order_id)
    if status.refund_fen is not None and status.refund_fen != refund.amount_fen:
        record_anomaly(
            AnomalyKind.REFUND_ABNORMAL,
            source=source,
            order=order,
            amount_fen=status.refund_fen,
            detail={
                "out_refund_no": refund.out_refund_no,
                "expected_fen": refund.amount_fen,
                "why": "amount",
            },
            dedupe=f"amount:{refund.out_refund_no}",
        )
        return "anomaly"
    if current is RefundStatus.CANCELLED and target is RefundStatus.SUCCEEDED:
        # Money moved for a refund we gave up on: the reservation is gone, someone must look.
        record_anomaly(
            AnomalyKind.REFUND_ABNORMAL,
            source=source,
            order=order,
            amount_fen=refund.amount_fen,
            detail={"out_refund_no": refund.out_refund_no, "why": "succeeded_after_cancel"},
            dedupe=f"cancelled:{refund.out_refund_no}",
        )
        return "anomaly"
    now = clock.now()
    values: dict[str, Any] = {}
    if status.provider_refund_no:
        values["provider_refund_no"] = status.provider_refund_no[:64]
    reason: str | None = None
    if target is RefundStatus.SUCCEEDED:
        values.update(succeeded_at=status.succeeded_at or now, next_check_at=None, last_error=None)
    elif target is RefundStatus.FAILED:
        values.update(next_check_at=None, last_error=_CLOSED_MESSAGE)
        reason = _CLOSED_MESSAGE
    elif target is RefundStatus.PROCESSING:
        values["next_check_at"] = now + FIRST_QUERY_AFTER
    else:  # ABNORMAL
        values["next_check_at"] = now + ABNORMAL_RECHECK
        reason = "退款异常（如银行卡已注销），需在商户平台处理"
    if not _transition(refund, target, source=source, actor=actor, reason=reason, values=values):
        return "noop"
    if target is RefundStatus.ABNORMAL:
        record_anomaly(
            AnomalyKind.REFUND_ABNORMAL,
            source=source,
            order=order,
            amount_fen=refund.amount_fen,
            detail={"out_refund_no": refund.out_refund_no, "why": "provider_abnormal"},
            dedupe=refund.out_refund_no,
        )
    return "applied"


def mark_accepted(refund: Refund, status: ProviderRefundStatus, *, source: str, actor: Actor) -> str:
    """The provider accepted an apply: PENDING → PROCESSING (never final from the apply reply)."""
    values: dict[str, Any] = {"next_check_at": clock.now() + FIRST_QUERY_AFTER, "last_error": None}
    if status.provider_refund_no:
        values["provider_refund_no"] = status.provider_refund_no[:64]
    if refund.status == RefundStatus.PENDING:
        moved = _transition(refund, RefundStatus.PROCESSING, source=source, actor=actor, values=values)
        return "applied" if moved else "noop"
    if refund.status == RefundStatus.PROCESSING:
        _set(refund, **values)
    return "noop"


def mark_declined(refund: Refund, error: ProviderDeclined, *, source: str, actor: Actor) -> str:
    """A definite refusal of the apply: FAILED with the provider's Chinese reason."""
    message = (error.message or str(error))[:200]
    moved = _transition(
        refund,
        RefundStatus.FAILED,
        source=source,
        actor=actor,
        reason=f"{error.code}: {message}",
        values={"last_error": message, "next_check_at": None},
    )
    return "applied" if moved else "noop"


def mark_unknown(refund: Refund, error: Exception) -> None:
    """The apply's outcome is unknown: stay as is, try again later with the same number."""
    log.warning(
        "refund apply outcome unknown", extra={"out_refund_no": refund.out_refund_no, "error": str(error)}
    )
    _set(refund, last_error=_UNKNOWN_MESSAGE, next_check_at=next_query_at(refund, clock.now()))


# --- notifications -----------------------------------------------------------------------------------


def apply_refund_event(event: PaymentEvent) -> str:
    """Apply a verified notification to refunds (called by the callback views, which commit).

    - A refund notification (WeChat, decrypted req_info): settled by its out_refund_no.
    - A trade notification carrying `refund_fee` (Alipay): the open refunds of that order are
      queried (outbox `billing.refund_query`), never settled on the notification's word.

    Returns applied | duplicate | noop | anomaly | unknown_refund | scheduled.
    """
    if event.kind is EventKind.REFUND and event.refund is not None:
        status = event.refund
        refund = db.session.execute(
            select(Refund).where(Refund.out_refund_no == status.out_refund_no).with_for_update()
        ).scalar_one_or_none()
        order = None if refund is None else db.session.get(PaymentOrder, refund.order_id)
        if refund is None or order is None or order.out_trade_no != status.out_trade_no:
            record_anomaly(
                AnomalyKind.UNKNOWN_ORDER,
                source="callback",
                channel=event.channel,
                out_trade_no=status.out_trade_no,
                amount_fen=status.refund_fen,
                detail={"out_refund_no": status.out_refund_no, "why": "unknown_refund"},
                dedupe=f"refund:{status.out_refund_no}",
            )
            return "unknown_refund"
        return apply_refund_status(refund, status, source="callback", actor=PROVIDER)
    trade = event.trade
    if trade is None or not trade.refunded_fen:
        return "noop"
    order = db.session.execute(
        select(PaymentOrder).where(
            PaymentOrder.out_trade_no == trade.out_trade_no, PaymentOrder.channel == str(event.channel)
        )
    ).scalar_one_or_none()
    if order is None:
        return "noop"
    return (
        "scheduled" if schedule_queries(order, reason=event.notify_id or str(trade.refunded_fen)) else "noop"
    )


def schedule_queries(order: PaymentOrder, *, reason: str) -> int:
    """Query every open refund of an order as soon as this transaction commits."""
    open_refunds = list(
        db.session.execute(
            select(Refund).where(Refund.order_id == order.id, Refund.status.in_(ACTIVE_STATUSES))
        ).scalars()
    )
    for refund in open_refunds:
        _set(refund, next_check_at=clock.now())
        outbox.enqueue(
            QUERY_TOPIC,
            {"refund_id": str(refund.id)},
            dedupe_key=f"{QUERY_TOPIC}:{refund.out_refund_no}:{reason}"[:200],
        )
    return len(open_refunds)


# --- staff actions ---------------------------------------------------------------------------------


def retry_refund(refund: Refund, *, actor: Actor) -> Refund:
    """FAILED → PENDING with the SAME out_refund_no; delivered again through the outbox."""
    if refund.status != RefundStatus.FAILED:
        raise InvalidTransition("只有“退款失败”的退款单可以重试", code="refund_not_failed")
    attempts = refund.attempts + 1
    moved = _transition(
        refund,
        RefundStatus.PENDING,
        source="api",
        actor=actor,
        reason="重新提交退款（退款单号不变）",
        values={
            "attempts": attempts,
            "next_check_at": clock.now() + timedelta(minutes=1),
            "last_error": None,
        },
    )
    if not moved:
        raise InvalidTransition("退款单状态已变化，请刷新后重试", code="refund_not_failed")
    outbox.enqueue(
        APPLY_TOPIC,
        {"refund_id": str(refund.id)},
        dedupe_key=f"{APPLY_TOPIC}:{refund.out_refund_no}:{attempts}",
    )
    return refund


def cancel_refund(refund: Refund, *, reason: str, actor: Actor) -> Refund:
    """FAILED → CANCELLED, releasing the reserved amount and count on the order (conditional)."""
    if refund.status != RefundStatus.FAILED:
        raise InvalidTransition("只有“退款失败”的退款单可以取消", code="refund_not_failed")
    lock_order(refund.order_id)  # the order first, then the refund: the lock order of the callbacks
    db.session.refresh(refund)
    if not _transition(refund, RefundStatus.CANCELLED, source="api", actor=actor, reason=reason):
        raise InvalidTransition("退款单状态已变化，请刷新后重试", code="refund_not_failed")
    released = cast(
        CursorResult[Any],
        db.session.execute(
            update(PaymentOrder)
            .where(
                PaymentOrder.id == refund.order_id,
                PaymentOrder.refunded_fen >= refund.amount_fen,
                PaymentOrder.refund_count >= 1,
            )
            .values(
                refunded_fen=PaymentOrder.refunded_fen - refund.amount_fen,
                refund_count=PaymentOrder.refund_count - 1,
                updated_at=clock.now(),
            )
            .execution_options(synchronize_session=False)
        ),
    )
    if released.rowcount != 1:  # the books disagree with the refund: refuse, nothing changes
        raise Conflict("订单的退款额度与退款单不一致，请联系管理员核查", code="refund_reservation_mismatch")
    audit.record(
        "refund.cancel",
        "refund",
        refund.id,
        institution_id=refund.institution_id,
        detail={"reason": reason, "released_fen": refund.amount_fen},
    )
    return refund


def list_refunds(
    *,
    page: int,
    size: int,
    status: str | None = None,
    order_id: uuid.UUID | None = None,
    bill_id: uuid.UUID | None = None,
    origin: str | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
) -> Page[Any]:
    """Refunds in the caller's scope (centre isolation is automatic), newest first."""
    statement: Select[Any] = select(Refund).order_by(Refund.created_at.desc(), Refund.id)
    if status:
        statement = statement.where(Refund.status == status)
    if order_id:
        statement = statement.where(Refund.order_id == order_id)
    if bill_id:
        statement = statement.where(Refund.bill_id == bill_id)
    if origin:
        statement = statement.where(Refund.origin == RefundOrigin(origin))
    if created_from:
        statement = statement.where(Refund.created_at >= created_from)
    if created_to:
        statement = statement.where(Refund.created_at < created_to)
    return paginate(statement, page, size)


# --- anomalies -----------------------------------------------------------------------------------------


def _visible_anomalies(principal: Principal) -> Select[PaymentAnomaly]:
    statement = select(PaymentAnomaly)
    if not principal.is_district:
        statement = statement.where(PaymentAnomaly.institution_id == principal.institution_id)
    return statement


def list_anomalies(
    principal: Principal, *, page: int, size: int, status: str | None = None, kind: str | None = None
) -> Page[Any]:
    """District staff see every anomaly; centre staff those of their centre. Newest first."""
    statement = _visible_anomalies(principal).order_by(PaymentAnomaly.created_at.desc(), PaymentAnomaly.id)
    if status:
        statement = statement.where(PaymentAnomaly.status == status)
    if kind:
        statement = statement.where(PaymentAnomaly.kind == kind)
    return paginate(statement, page, size)


def get_anomaly(principal: Principal, anomaly_id: uuid.UUID, *, action: str = "read") -> PaymentAnomaly:
    """One anomaly the caller may see; another centre's is a 404 (audited as denied)."""
    anomaly = db.session.execute(
        _visible_anomalies(principal).where(PaymentAnomaly.id == anomaly_id)
    ).scalar_one_or_none()
    if anomaly is not None:
        return anomaly
    elsewhere = db.session.execute(
        select(PaymentAnomaly.institution_id).where(PaymentAnomaly.id == anomaly_id)
    ).first()
    if elsewhere is not None:
        audit.record(
            action,
            "payment_anomaly",
            anomaly_id,
            result=audit.DENIED,
            purpose="cross_centre_access",
            detail={"target_institution_id": str(elsewhere[0])},
            durable=True,
        )
    raise NotFound("未找到该支付异常", code="anomaly_not_found")


def resolve_anomaly(principal: Principal, anomaly_id: uuid.UUID, *, resolution: str) -> PaymentAnomaly:
    """Close an anomaly with a written resolution; the caller becomes its owner (REL-07 item 7)."""
    anomaly = get_anomaly(principal, anomaly_id, action="update")
    now = clock.now()
    result = cast(
        CursorResult[Any],
        db.session.execute(
            update(PaymentAnomaly)
            .where(PaymentAnomaly.id == anomaly.id, PaymentAnomaly.status == AnomalyStatus.OPEN)
            .values(
                status=AnomalyStatus.RESOLVED,
                resolution=resolution,
                resolved_at=now,
                resolved_by=principal.id,
                owner_id=principal.id,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        ),
    )
    db.session.refresh(anomaly)
    if result.rowcount != 1:
        raise InvalidTransition("该支付异常已处理", code="anomaly_resolved")
    audit.record(
        "payment_anomaly.resolve",
        "payment_anomaly",
        anomaly.id,
        institution_id=anomaly.institution_id,
        detail={"kind": anomaly.kind},
    )
    return anomaly


# --- entry points (they commit: outbox handlers and the periodic job) ---------------------------------
