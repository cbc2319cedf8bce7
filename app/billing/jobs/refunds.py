"""Refund entry points (they commit): apply at the provider, settle by query, the poll job, outbox handlers.

Each follows the flow of `app.billing.flows`: commit, call the provider with no transaction open,
apply the answer through `app.billing.services.refunds`, commit. The out_refund_no never changes.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any, cast

from sqlalchemy import CursorResult, or_, select, update

from app.billing import providers
from app.billing.models import (
    PaymentOrder,
    Refund,
    RefundStatus,
)
from app.billing.services.orders import PROVIDER
from app.billing.services.refunds import (
    ACTIVE_STATUSES,
    APPLY_TOPIC,
    CLAIM_LEASE,
    QUERY_TOPIC,
    _set,
    apply_refund_status,
    mark_accepted,
    mark_declined,
    mark_unknown,
    next_query_at,
)
from app.core import clock, outbox
from app.core.db import commit, db, rollback
from app.core.errors import NotFound
from payments.base import (
    Channel,
    ProviderDeclined,
    ProviderOutcomeUnknown,
    RefundRequest,
    RefundState,
)
from payments.base import RefundStatus as ProviderRefundStatus

log = logging.getLogger(__name__)


def _lock(refund_id: uuid.UUID) -> Refund:
    refund = db.session.execute(
        select(Refund).where(Refund.id == refund_id).with_for_update()
    ).scalar_one_or_none()
    if refund is None:
        raise NotFound("未找到该退款单", code="refund_not_found")
    return refund


def apply_refund(refund_id: uuid.UUID, *, source: str = "apply", reapply: bool = False) -> str:
    """Send a PENDING refund (with `reapply`, also a PROCESSING one the provider says it does not
    know) to the provider with its own out_refund_no. Commits; no transaction is open during the
    provider call. Returns applied | noop | unknown | final."""
    refund = _lock(refund_id)
    allowed = (RefundStatus.PENDING, RefundStatus.PROCESSING) if reapply else (RefundStatus.PENDING,)
    if refund.status not in allowed:
        commit()
        return "final"
    order = db.session.get_one(PaymentOrder, refund.order_id)
    channel, app = Channel(order.channel), order.payer_app
    request = RefundRequest(
        out_trade_no=order.out_trade_no,
        out_refund_no=refund.out_refund_no,
        total_fen=order.paid_amount_fen or order.amount_fen,
        refund_fen=refund.amount_fen,
        reason=refund.reason,
        notify_url=providers.notify_url(channel, "refund"),
    )
    _set(refund, next_check_at=clock.now() + CLAIM_LEASE)  # the poll job keeps off meanwhile
    commit()
    provider = providers.get(channel)
    accepted: ProviderRefundStatus | None = None
    declined: ProviderDeclined | None = None
    unknown: Exception | None = None
    try:
        accepted = provider.refund(request, app=app)
    except ProviderDeclined as exc:
        declined = exc
    except ProviderOutcomeUnknown as exc:
        unknown = exc
    except Exception as exc:  # an adapter bug: the outcome is unknown, never a failure
        log.exception(
            "unexpected error from the payment adapter", extra={"out_refund_no": request.out_refund_no}
        )
        unknown = exc
    refund = _lock(refund_id)
    if declined is not None:
        outcome = mark_declined(refund, declined, source=source, actor=PROVIDER)
    elif accepted is not None and accepted.state is not RefundState.NOT_FOUND:
        outcome = mark_accepted(refund, accepted, source=source, actor=PROVIDER)
    else:
        mark_unknown(refund, unknown or ProviderOutcomeUnknown("refund not registered"))
        outcome = "unknown"
    commit()
    return outcome


def settle_refund(refund_id: uuid.UUID) -> str:
    """Bring one open refund forward: apply it if PENDING, otherwise ask `query_refund` and apply
    the answer (NOT_FOUND: apply again with the same number). Commits."""
    refund = _lock(refund_id)
    if refund.status == RefundStatus.PENDING:
        commit()
        return apply_refund(refund_id, source="job")
    if refund.status not in (RefundStatus.PROCESSING, RefundStatus.ABNORMAL):
        commit()
        return "final"
    order = db.session.get_one(PaymentOrder, refund.order_id)
    channel, out_trade_no, out_refund_no = Channel(order.channel), order.out_trade_no, refund.out_refund_no
    app = order.payer_app
    _set(refund, next_check_at=clock.now() + CLAIM_LEASE)
    commit()
    try:
        status = providers.get(channel).query_refund(out_trade_no, out_refund_no, app=app)
    except (ProviderOutcomeUnknown, ProviderDeclined) as exc:
        refund = _lock(refund_id)
        log.warning("refund query failed", extra={"out_refund_no": out_refund_no, "error": str(exc)})
        _set(refund, next_check_at=next_query_at(refund, clock.now()))
        commit()
        return "unknown"
    refund = _lock(refund_id)
    if status.state is RefundState.NOT_FOUND:
        if refund.status == RefundStatus.PROCESSING:
            commit()
            return apply_refund(refund_id, source="job", reapply=True)
        _set(refund, next_check_at=next_query_at(refund, clock.now()))
        commit()
        return "noop"
    outcome = apply_refund_status(refund, status, source="query", actor=PROVIDER)
    if outcome != "applied" and refund.status in ACTIVE_STATUSES:
        _set(refund, next_check_at=next_query_at(refund, clock.now()))
    commit()
    return outcome


def poll_refunds(limit: int = 100) -> dict[str, int]:
    """Periodic job (every minute): refunds PENDING/PROCESSING/ABNORMAL whose `next_check_at` is due
    are applied again or queried. Claimed with FOR UPDATE SKIP LOCKED on PostgreSQL and a
    conditional UPDATE of `next_check_at` everywhere, so any number of workers may run it."""
    now = clock.now()
    due = or_(Refund.next_check_at.is_(None), Refund.next_check_at <= now)
    candidates = select(Refund.id).where(Refund.status.in_(ACTIVE_STATUSES), due)
    candidates = candidates.order_by(Refund.next_check_at).limit(limit)
    if db.dialect == "postgresql":
        candidates = candidates.with_for_update(skip_locked=True)
    claimed: list[uuid.UUID] = []
    for refund_id in list(db.session.execute(candidates).scalars()):
        result = cast(
            CursorResult[Any],
            db.session.execute(
                update(Refund)
                .where(Refund.id == refund_id, Refund.status.in_(ACTIVE_STATUSES), due)
                .values(next_check_at=now + CLAIM_LEASE)
                .execution_options(synchronize_session=False)
            ),
        )
        if result.rowcount == 1:
            claimed.append(refund_id)
    commit()
    counts: dict[str, int] = {}
    for refund_id in claimed:
        try:
            outcome = settle_refund(refund_id)
        except Exception:  # one bad refund never stops the batch; the lease brings it back later
            rollback()
            log.exception("refund settlement failed", extra={"refund_id": str(refund_id)})
            outcome = "error"
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts


@outbox.handler(APPLY_TOPIC)
def deliver_refund(payload: dict[str, Any], dedupe_key: str) -> None:
    """Outbox delivery of a new or retried refund. An unknown outcome is not an outbox failure:
    the refund stays PENDING with its `next_check_at` and `poll_refunds` takes it from there."""
    apply_refund(uuid.UUID(str(payload["refund_id"])))


@outbox.handler(QUERY_TOPIC)
def deliver_refund_query(payload: dict[str, Any], dedupe_key: str) -> None:
    """Outbox delivery of "query this refund now" (after an Alipay trade notification with refund_fee)."""
    settle_refund(uuid.UUID(str(payload["refund_id"])))
