"""Entry-point orchestration of provider calls: commit first, call outside any transaction, apply.

Routes, jobs and callback views call these; like them, these functions commit (through
`app.core.db.commit`). The sequence is always:

    1. the order (with its out_trade_no) is already committed;
    2. end the read transaction, then call the provider with no transaction open;
    3. lock the order, apply the outcome through `services.orders`, commit.

An exception from the provider never escapes as a 500: the adapters raise only
`ProviderOutcomeUnknown` / `ProviderDeclined`, and anything else is treated as unknown.
"""

from __future__ import annotations

import logging
import uuid

from app.billing import providers
from app.billing.models import PaymentOrder
from app.billing.services import orders
from app.billing.services.orders import ChargeOutcome
from app.core import clock
from app.core.auth import Actor
from app.core.db import commit, db
from payments.base import Channel, PayMode, ProviderDeclined, ProviderOutcomeUnknown

log = logging.getLogger(__name__)


def notify_url(channel: Channel | str) -> str:
    return providers.notify_url(Channel(channel))


def charge(order_id: uuid.UUID, *, actor: Actor, auth_code: str | None = None) -> PaymentOrder:
    """Call the provider for a committed CREATED order and apply the outcome (commits)."""
    order = orders.lock_order(order_id)
    channel = Channel(order.channel)
    wants_notify = not (order.mode == PayMode.PAYER_CODE and channel is Channel.WECHAT)
    request = orders.charge_request(
        order, auth_code=auth_code, notify_url=notify_url(channel) if wants_notify else None
    )
    commit()  # release the row lock: no transaction stays open across the network call
    provider = providers.get(channel)
    called_at = clock.now()
    try:
        outcome = ChargeOutcome(called_at=called_at, result=provider.charge(request))
    except ProviderDeclined as exc:
        outcome = ChargeOutcome(called_at=called_at, declined=exc)
    except ProviderOutcomeUnknown as exc:
        outcome = ChargeOutcome(called_at=called_at, unknown=exc)
    except Exception as exc:  # an adapter bug must not turn a maybe-charged order into a 500 or FAILED
        log.exception(
            "unexpected error from the payment adapter", extra={"out_trade_no": request.out_trade_no}
        )
        outcome = ChargeOutcome(called_at=called_at, unknown=ProviderOutcomeUnknown(repr(exc)))
    order = orders.lock_order(order_id)
    orders.apply_charge_outcome(order, outcome, actor=actor)
    commit()
    db.session.refresh(order)
    return order


def query_and_apply(order_id: uuid.UUID, *, source: str, actor: Actor) -> str:
    """Ask the provider about an order and apply the answer (commits). Returns the outcome of
    `apply_trade_status`, or "unknown" when the provider could not answer."""
    order = orders.lock_order(order_id)
    channel, out_trade_no, app = Channel(order.channel), order.out_trade_no, order.payer_app
    commit()
    try:
        status = providers.get(channel).query(out_trade_no, app=app)
    except (ProviderOutcomeUnknown, ProviderDeclined) as exc:
        log.warning("order query failed", extra={"out_trade_no": out_trade_no, "error": str(exc)})
        return "unknown"
    order = orders.lock_order(order_id)
    result = orders.apply_trade_status(order, status, source=source, actor=actor)
    commit()
    return result
