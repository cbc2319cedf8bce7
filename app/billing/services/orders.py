"""Bills and payment orders: creation, the guarded state machine, and applying provider results.

Every piece of the money path funnels into three functions here:

- `transition(order, to, ...)`: one conditional UPDATE (`WHERE id = :id AND state = :from`), row
  count checked, a `PaymentOrderEvent` and an audit row. Losing a race returns False.
- `apply_trade_status(order, status, ...)`: maps what a provider says about a trade (from a verified
  notification, a query or reconciliation) onto the order. It is the only way to PAID.
- `apply_charge_outcome(order, outcome)`: maps the result of the charge call (or its exception).

No function here calls a provider or commits: `app.billing.flows` orchestrates
"commit the order → call the provider outside any transaction → apply the outcome → commit".
"""

from __future__ import annotations

import logging
import secrets
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from flask import current_app
from sqlalchemy import CursorResult, select, update
from sqlalchemy.exc import IntegrityError

from app.billing.models import (
    ORDER_TRANSITIONS,
    AnomalyKind,
    Bill,
    BillSource,
    BillStatus,
    OrderState,
    PaymentAnomaly,
    PaymentOrder,
    PaymentOrderEvent,
    Refund,
    RefundOrigin,
    RefundStatus,
)
from app.billing.models.orders import OPEN_ORDER_STATES
from app.core import audit, auth, clock, outbox
from app.core.auth import Actor
from app.core.db import db
from app.core.errors import BusinessRuleViolation, Conflict, InvalidTransition, NotFound
from payments.base import (
    Channel,
    ChargeRequest,
    ChargeResult,
    PayMode,
    ProviderDeclined,
    ProviderOutcomeUnknown,
    TradeState,
    TradeStatus,
    channel_for_payer_code,
)

log = logging.getLogger(__name__)

MAX_REFUNDS_PER_ORDER = 50  # WeChat's limit on partial refunds of one order
# Declines that really mean "this out_trade_no already exists at the provider": a retried call
# whose first reply was lost. The outcome is then settled by query, never treated as a failure.
ALREADY_EXISTS_CODES = frozenset(
    {"ORDERPAID", "OUT_TRADE_NO_USED", "ACQ.TRADE_HAS_SUCCESS", "trade_exists", "trade_paid"}
)


# --- actors ---------------------------------------------------------------------------------------


SYSTEM = Actor("system")
PROVIDER = Actor("provider")
PAYER = Actor("payer")


def actor_from_principal() -> Actor:
    """The caller, or an anonymous payer (the H5 cashier) outside an authenticated request."""
    return auth.actor_from_principal(PAYER)


# --- numbers --------------------------------------------------------------------------------------


def _stamp() -> str:
    return clock.local(clock.now()).strftime("%Y%m%d%H%M%S")


def new_out_trade_no() -> str:
    """28 characters, unique, never reused: LH + China time + T + 11 random hex digits (the letter
    keeps digit runs short, so no number of ours can be mistaken for an 18-digit ID number)."""
    return f"LH{_stamp()}T{secrets.token_hex(6).upper()[:11]}"


def new_out_refund_no() -> str:
    return f"RF{_stamp()}R{secrets.token_hex(6).upper()[:11]}"


def new_bill_no() -> str:
    return f"B{_stamp()[:8]}-{secrets.randbelow(10**10):010d}"


# --- listeners ------------------------------------------------------------------------------------

# Called in the paying transaction when a bill of that source becomes paid (contract activation,
# HIS posting, ...): fn(bill, order). Registered by the owning domain at import time.
PaidListener = Callable[[Bill, PaymentOrder], None]
_PAID_LISTENERS: dict[str, list[PaidListener]] = {}
# Alert hooks for anomalies: fn(anomaly). The default logs an ERROR (the log pipeline alerts).
AlertHook = Callable[[PaymentAnomaly], None]
_ALERT_HOOKS: list[AlertHook] = []


def on_bill_paid(source: BillSource | str, listener: PaidListener) -> None:
    _PAID_LISTENERS.setdefault(str(source), []).append(listener)


def add_alert_hook(hook: AlertHook) -> None:
    _ALERT_HOOKS.append(hook)


def remove_alert_hook(hook: AlertHook) -> None:
    if hook in _ALERT_HOOKS:
        _ALERT_HOOKS.remove(hook)


@outbox.handler("billing.order_paid")
def _deliver_order_paid(payload: dict[str, Any], dedupe_key: str) -> None:
    """Downstream notice of a payment (HIS posting and SMS receipts subscribe in later work)."""
    log.info("payment order paid", extra={"order_id": payload.get("order_id"), "dedupe_key": dedupe_key})


# --- bills ----------------------------------------------------------------------------------------


def create_bill(
    *,
    institution_id: uuid.UUID,
    amount_fen: int,
    subject: str,
    actor: Actor,
    items: Sequence[dict[str, Any]] = (),
    source: BillSource | str = BillSource.OTHER,
    source_ref: str | None = None,
    resident_id: uuid.UUID | None = None,
    payer_name: str | None = None,
    cashier_id: uuid.UUID | None = None,
) -> Bill:
    if items:
        total = sum(int(item["amount_fen"]) for item in items)
        if total != amount_fen:
            raise BusinessRuleViolation(
                f"收费明细合计 {total} 分与账单金额 {amount_fen} 分不一致，请核对后重新提交",
                code="bill_amount_mismatch",
                errors={"amount_fen": ["与明细合计不一致"]},
            )
    if source_ref is not None:
        existing = db.session.execute(
            select(Bill).where(Bill.source == str(source), Bill.source_ref == source_ref)
        ).scalar_one_or_none()
        if existing is not None:
            raise Conflict(
                f"该收费项目（{source_ref}）已有账单 {existing.bill_no}，请勿重复开单",
                code="bill_exists",
                errors={"source_ref": [existing.bill_no]},
            )
    bill = Bill(
        id=uuid.uuid4(),
        bill_no=new_bill_no(),
        institution_id=institution_id,
        amount_fen=amount_fen,
        subject=subject,
        items=[dict(item) for item in items],
        source=str(source),
        source_ref=source_ref,
        resident_id=resident_id,
        payer_name=payer_name,
        cashier_id=cashier_id,
        created_by_kind=actor.kind,
        status=BillStatus.OPEN,
    )
    db.session.add(bill)
    db.session.flush()
    audit.record("bill.create", "bill", bill.id, resident_id=resident_id, institution_id=institution_id)
    return bill


def cancel_bill(bill: Bill, *, reason: str, actor: Actor) -> Bill:
    """Void an unpaid bill. Orders still open at the provider are closed by the caller first."""
    open_orders = (
        db.session.execute(
            select(PaymentOrder.out_trade_no).where(
                PaymentOrder.bill_id == bill.id, PaymentOrder.state.in_([str(s) for s in OPEN_ORDER_STATES])
            )
        )
        .scalars()
        .all()
    )
    if open_orders:
        raise Conflict(
            "该账单还有进行中的支付，请先关闭支付订单后再作废",
            code="bill_has_open_orders",
            errors={"orders": list(open_orders)},
        )
    result = cast(
        CursorResult[Any],
        db.session.execute(
            update(Bill)
            .where(Bill.id == bill.id, Bill.status == BillStatus.OPEN)
            .values(status=BillStatus.CANCELLED, cancelled_at=clock.now(), cancel_reason=reason)
            .execution_options(synchronize_session=False)
        ),
    )
    if result.rowcount != 1:
        raise InvalidTransition("账单已支付或已作废，不能作废", code="bill_not_open")
    db.session.refresh(bill)
    audit.record(
        "bill.cancel", "bill", bill.id, institution_id=bill.institution_id, detail={"reason": reason}
    )
    return bill


# --- orders ---------------------------------------------------------------------------------------


def order_ttl(mode: PayMode) -> timedelta:
    if mode is PayMode.PAYER_CODE:
        # The passive-scan procedure ends within ~60 s; the order expires well after it.
        return timedelta(minutes=5)
    return timedelta(minutes=int(current_app.config["PAYMENT_ORDER_TTL_MINUTES"]))


def start_order(
    bill: Bill,
    *,
    mode: PayMode,
    channel: Channel | None,
    client_ip: str,
    actor: Actor,
    auth_code: str | None = None,
    payer_account: str | None = None,
    cashier_id: uuid.UUID | None = None,
    payer_app: str | None = None,
) -> PaymentOrder:
    """Create a payment order (state CREATED) with its out_trade_no. The caller commits it
    before the provider is called. `payer_app`: which of the merchant's apps the payer is in
    (None = the default app, "mp" = the WeChat mini-program; see `ChargeRequest.app`): every
    provider call of the order uses it."""
    if bill.status != BillStatus.OPEN:
        raise InvalidTransition(
            "该账单已支付或已作废，不能再发起支付" if bill.status == BillStatus.PAID else "该账单已作废",
            code="bill_not_open",
        )
    if mode is PayMode.PAYER_CODE:
        routed = channel_for_payer_code(auth_code or "")
        if routed is None:
            raise BusinessRuleViolation(
                "无法识别的付款码，请让付款人刷新微信或支付宝付款码后重新扫描",
                code="invalid_payer_code",
                errors={"auth_code": ["不是有效的微信或支付宝付款码"]},
            )
        if channel is not None and channel is not routed:
            raise BusinessRuleViolation(
                "付款码与所选支付渠道不一致",
                code="payer_code_channel_mismatch",
                errors={"channel": [str(routed)]},
            )
        channel = routed
    if channel is None:
        raise BusinessRuleViolation(
            "请选择支付渠道（微信或支付宝）", code="channel_required", errors={"channel": ["必填"]}
        )
    if mode is PayMode.JSAPI and not payer_account:
        raise BusinessRuleViolation(
            "无法识别付款人身份，请在微信或支付宝内重新打开支付页面",
            code="payer_required",
            errors={"payer": ["必填"]},
        )
    now = clock.now()
    order = PaymentOrder(
        id=uuid.uuid4(),
        institution_id=bill.institution_id,
        bill_id=bill.id,
        out_trade_no=new_out_trade_no(),
        channel=str(channel),
        mode=str(mode),
        amount_fen=bill.amount_fen,
        subject=bill.subject,
        state=OrderState.CREATED,
        state_changed_at=now,
        cashier_id=cashier_id,
        created_by_kind=actor.kind,
        created_by_id=actor.id,
        client_ip=client_ip,
        payer_account=payer_account,
        payer_app=payer_app,
        payer_code_tail=(auth_code or "")[-4:] or None,
        expires_at=now + order_ttl(mode),
        next_check_at=now + recovery_delay(),
    )
    db.session.add(order)
    db.session.flush()
    _event(order, None, OrderState.CREATED, source="api", actor=actor, reason=None, detail={})
    audit.record(
        "payment_order.create",
        "payment_order",
        order.id,
        institution_id=order.institution_id,
        detail={"mode": order.mode, "channel": order.channel, "amount_fen": order.amount_fen},
    )
    return order


def recovery_delay() -> timedelta:
    return timedelta(minutes=int(current_app.config["PAYMENT_RECOVERY_AFTER_MINUTES"]))


def charge_request(order: PaymentOrder, *, auth_code: str | None, notify_url: str | None) -> ChargeRequest:
    return ChargeRequest(
        out_trade_no=order.out_trade_no,
        amount_fen=order.amount_fen,
        subject=order.subject,
        mode=PayMode(order.mode),
        client_ip=order.client_ip,
        expires_at=order.expires_at,
        notify_url=notify_url,
        auth_code=auth_code,
        payer_id=order.payer_account,
        product_id=str(order.bill_id).replace("-", "")[:32],
        app=order.payer_app,
    )


def lock_order(order_id: uuid.UUID) -> PaymentOrder:
    order = db.session.execute(
        select(PaymentOrder).where(PaymentOrder.id == order_id).with_for_update()
    ).scalar_one_or_none()
    if order is None:
        raise NotFound("未找到该支付订单", code="order_not_found")
    return order


def transition(
    order: PaymentOrder,
    to: OrderState,
    *,
    source: str,
    actor: Actor,
    reason: str | None = None,
    detail: dict[str, Any] | None = None,
    values: dict[str, Any] | None = None,
) -> bool:
    """Move the order from its current state to `to` if the table allows and nobody moved it
    first. Returns False (and reloads the order) when the state changed underneath."""
    current = OrderState(order.state)
    if to not in ORDER_TRANSITIONS[current]:
        return False
    now = clock.now()
    result = cast(
        CursorResult[Any],
        db.session.execute(
            update(PaymentOrder)
            .where(PaymentOrder.id == order.id, PaymentOrder.state == current)
            .values(state=to, state_changed_at=now, updated_at=now, **(values or {}))
            .execution_options(synchronize_session=False)
        ),
    )
    db.session.refresh(order)
    if result.rowcount != 1:
        return False
    _event(order, current, to, source=source, actor=actor, reason=reason, detail=detail or {})
    audit.record(
        "payment_order.transition",
        "payment_order",
        order.id,
        institution_id=order.institution_id,
        detail={
            "from": str(current),
            "to": str(to),
            "source": source,
            **({"reason": reason} if reason else {}),
        },
    )
    return True


def _event(
    order: PaymentOrder,
    from_state: OrderState | None,
    to_state: OrderState,
    *,
    source: str,
    actor: Actor,
    reason: str | None,
    detail: dict[str, Any],
) -> None:
    db.session.add(
        PaymentOrderEvent(
            order_id=order.id,
            from_state=None if from_state is None else str(from_state),
            to_state=str(to_state),
            source=source,
            actor_kind=actor.kind,
            actor_id=actor.id,
            reason=reason,
            detail=detail,
        )
    )


def set_follow_up(order: PaymentOrder, at: datetime | None, **counters: int) -> None:
    """Schedule the next query/poll of an order (passive-scan procedure, recovery)."""
    db.session.execute(
        update(PaymentOrder)
        .where(PaymentOrder.id == order.id)
        .values(next_check_at=at, **counters)
        .execution_options(synchronize_session=False)
    )
    db.session.refresh(order)


# --- applying provider results ----------------------------------------------------------------------


@dataclass(frozen=True)
class ChargeOutcome:
    """What the charge call gave: a result, or the exception it raised."""

    called_at: datetime
    result: ChargeResult | None = None
    declined: ProviderDeclined | None = None
    unknown: ProviderOutcomeUnknown | None = None


def passive_first_poll_delay() -> timedelta:
    return timedelta(seconds=5)


def apply_charge_outcome(order: PaymentOrder, outcome: ChargeOutcome, *, actor: Actor) -> PaymentOrder:
    """Record the charge call's outcome. A timeout/unknown outcome is UNKNOWN (never FAILED);
    an "already exists" decline means a retried call: settle it by query like UNKNOWN."""
    if order.charge_called_at is None:
        set_follow_up(order, order.next_check_at)
        db.session.execute(
            update(PaymentOrder)
            .where(PaymentOrder.id == order.id, PaymentOrder.charge_called_at.is_(None))
            .values(charge_called_at=outcome.called_at)
            .execution_options(synchronize_session=False)
        )
        db.session.refresh(order)
    passive = order.mode == PayMode.PAYER_CODE
    poll_at = outcome.called_at + passive_first_poll_delay() if passive else clock.now() + recovery_delay()
    declined = outcome.declined
    if outcome.unknown is not None or (declined is not None and declined.code in ALREADY_EXISTS_CODES):
        reason = str(outcome.unknown or declined)
        transition(order, OrderState.UNKNOWN, source="api", actor=actor, reason=reason[:200])
        # Passive scan: the procedure queries right away (SYSTEMERROR → query immediately).
        set_follow_up(order, outcome.called_at if passive else clock.now() + timedelta(seconds=30))
        return order
    if declined is not None:
        transition(
            order,
            OrderState.FAILED,
            source="api",
            actor=actor,
            reason=declined.message,
            detail={"code": declined.code},
            values={"decline_code": declined.code[:64], "decline_message": declined.message[:200]},
        )
        set_follow_up(order, None)
        return order
    result = outcome.result
    assert result is not None
    if result.state is TradeState.PAID:
        status = TradeStatus(
            out_trade_no=order.out_trade_no,
            state=TradeState.PAID,
            amount_fen=result.paid_amount_fen if result.paid_amount_fen is not None else order.amount_fen,
            provider_trade_no=result.provider_trade_no,
            paid_at=result.paid_at,
            payer_id=result.payer_id,
            raw=result.raw,
        )
        apply_trade_status(order, status, source="api", actor=PROVIDER)
        return order
    values: dict[str, Any] = {}
    if result.qr_content:
        values["qr_content"] = result.qr_content
    if result.client_params:
        values["client_params"] = dict(result.client_params)
    if result.provider_trade_no:
        values["provider_trade_no"] = result.provider_trade_no
    target = OrderState.PAYING if result.state is TradeState.PAYING else OrderState.PENDING
    if not transition(order, target, source="api", actor=actor, values=values) and values:
        db.session.execute(
            update(PaymentOrder)
            .where(PaymentOrder.id == order.id)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        db.session.refresh(order)
    set_follow_up(order, poll_at)
    return order


def apply_trade_status(order: PaymentOrder, status: TradeStatus, *, source: str, actor: Actor) -> str:
    """Apply the provider's view of a trade. Returns applied | duplicate | anomaly | noop."""
    if status.out_trade_no != order.out_trade_no:
        raise ValueError("status for another trade")
    if status.state is TradeState.PAID:
        if status.currency != "CNY":
            record_anomaly(
                AnomalyKind.CURRENCY_MISMATCH,
                order=order,
                detail={"currency": status.currency},
                source=source,
            )
            return "anomaly"
        if status.amount_fen != order.amount_fen:
            record_anomaly(
                AnomalyKind.AMOUNT_MISMATCH,
                order=order,
                amount_fen=status.amount_fen,
                detail={
                    "expected_fen": order.amount_fen,
                    "reported_fen": status.amount_fen,
                    "source": source,
                },
                source=source,
            )
            return "anomaly"
        return mark_paid(order, status, source=source, actor=actor)
    current = OrderState(order.state)
    target = {
        TradeState.PENDING: OrderState.PENDING,
        TradeState.PAYING: OrderState.PAYING,
        TradeState.CLOSED: OrderState.CLOSED,
        TradeState.REVERSED: OrderState.REVERSED,
        TradeState.FAILED: OrderState.FAILED,
    }.get(status.state)
    if target is None or target is current:
        return "noop"
    if target is OrderState.PENDING and current not in (OrderState.CREATED, OrderState.UNKNOWN):
        return "noop"
    return "applied" if transition(order, target, source=source, actor=actor) else "noop"


def mark_paid(order: PaymentOrder, status: TradeStatus, *, source: str, actor: Actor) -> str:
    """Exactly-once move to PAID (PAY-04): one conditional UPDATE from any open state; the
    bill, listeners and outbox follow in the same transaction. A payment the order can no longer
    take (closed, reversed, failed) or a second payment of the bill is an anomaly + refund."""
    now = clock.now()
    paid_at = status.paid_at or now
    values = {
        "state": OrderState.PAID,
        "state_changed_at": now,
        "updated_at": now,
        "paid_at": paid_at,
        "paid_amount_fen": status.amount_fen,
        "next_check_at": None,
    }
    if status.provider_trade_no:
        values["provider_trade_no"] = status.provider_trade_no
    if status.payer_id:
        values["payer_account"] = status.payer_id[:64]
    before = OrderState(order.state)
    try:
        with db.session.begin_nested():
            result = cast(
                CursorResult[Any],
                db.session.execute(
                    update(PaymentOrder)
                    .where(
                        PaymentOrder.id == order.id,
                        PaymentOrder.state.in_([str(s) for s in OPEN_ORDER_STATES]),
                    )
                    .values(**values)
                    .execution_options(synchronize_session=False)
                ),
            )
    except IntegrityError:  # provider_trade_no already on another order: a provider bug or replay
        db.session.refresh(order)
        record_anomaly(
            AnomalyKind.DUPLICATE_PAYMENT,
            order=order,
            amount_fen=status.amount_fen,
            detail={"provider_trade_no": status.provider_trade_no, "why": "provider_trade_no_reused"},
            source=source,
        )
        return "anomaly"
    db.session.refresh(order)
    if result.rowcount != 1:
        if order.state == OrderState.PAID:
            return "duplicate"
        # Paid at the provider, but we had already closed/reversed/failed it.
        anomaly, created = record_anomaly(
            AnomalyKind.PAID_AFTER_CLOSE,
            order=order,
            amount_fen=status.amount_fen,
            detail={
                "local_state": order.state,
                "provider_trade_no": status.provider_trade_no,
                "source": source,
            },
            source=source,
        )
        if created:
            _note_late_payment(order, status)
            request_refund(
                order,
                amount_fen=order.amount_fen,
                reason="订单关闭后到账，自动退款",
                origin=RefundOrigin.ANOMALY,
                actor=SYSTEM,
                anomaly=anomaly,
            )
        return "anomaly"
    _event(
        order,
        before,
        OrderState.PAID,
        source=source,
        actor=actor,
        reason=None,
        detail={"paid_at": paid_at.isoformat()},
    )
    audit.record(
        "payment_order.paid",
        "payment_order",
        order.id,
        institution_id=order.institution_id,
        detail={"amount_fen": order.amount_fen, "source": source, "channel": order.channel},
    )
    bill = db.session.get(Bill, order.bill_id)
    assert bill is not None
    bill_result = cast(
        CursorResult[Any],
        db.session.execute(
            update(Bill)
            .where(Bill.id == bill.id, Bill.status == BillStatus.OPEN)
            .values(status=BillStatus.PAID, paid_order_id=order.id, paid_at=paid_at, updated_at=now)
            .execution_options(synchronize_session=False)
        ),
    )
    db.session.refresh(bill)
    if bill_result.rowcount != 1:
        anomaly, created = record_anomaly(
            AnomalyKind.DUPLICATE_PAYMENT,
            order=order,
            amount_fen=order.amount_fen,
            detail={"bill_status": bill.status, "paid_order_id": str(bill.paid_order_id), "source": source},
            source=source,
        )
        if created:
            request_refund(
                order,
                amount_fen=order.amount_fen,
                reason="同一账单重复支付，自动退款",
                origin=RefundOrigin.ANOMALY,
                actor=SYSTEM,
                anomaly=anomaly,
            )
        return "anomaly"
    for listener in _PAID_LISTENERS.get(bill.source, []):
        listener(bill, order)
    outbox.enqueue(
        "billing.order_paid",
        {"order_id": str(order.id), "bill_id": str(bill.id), "amount_fen": order.amount_fen},
        dedupe_key=f"billing.order_paid:{order.id}",
    )
    return "applied"


def _note_late_payment(order: PaymentOrder, status: TradeStatus) -> None:
    """Keep the provider's facts on a closed order that was paid anyway (the refund needs them)."""
    db.session.execute(
        update(PaymentOrder)
        .where(PaymentOrder.id == order.id)
        .values(
            paid_amount_fen=status.amount_fen,
            provider_trade_no=status.provider_trade_no or order.provider_trade_no,
            paid_at=status.paid_at or clock.now(),
        )
        .execution_options(synchronize_session=False)
    )
    db.session.refresh(order)


# --- anomalies ------------------------------------------------------------------------------------


def record_anomaly(
    kind: AnomalyKind,
    *,
    source: str,
    order: PaymentOrder | None = None,
    channel: Channel | str | None = None,
    out_trade_no: str | None = None,
    amount_fen: int | None = None,
    detail: dict[str, Any] | None = None,
    dedupe: str | None = None,
) -> tuple[PaymentAnomaly, bool]:
    """One anomaly per (kind, order/trade, dedupe): repeats return the first. Fires alert hooks once."""
    trade_no = out_trade_no or (order.out_trade_no if order is not None else None)
    key = f"{kind}:{trade_no or '-'}:{dedupe or ''}"[:160]
    existing = db.session.execute(
        select(PaymentAnomaly).where(PaymentAnomaly.dedupe_key == key)
    ).scalar_one_or_none()
    if existing is not None:
        return existing, False
    anomaly = PaymentAnomaly(
        id=uuid.uuid4(),
        kind=str(kind),
        institution_id=order.institution_id if order is not None else None,
        channel=str(channel or (order.channel if order is not None else "")),
        out_trade_no=trade_no,
        order_id=order.id if order is not None else None,
        bill_id=order.bill_id if order is not None else None,
        amount_fen=amount_fen,
        dedupe_key=key,
        detail={"source": source, **(detail or {})},
    )
    try:
        with db.session.begin_nested():
            db.session.add(anomaly)
    except IntegrityError:
        return db.session.execute(
            select(PaymentAnomaly).where(PaymentAnomaly.dedupe_key == key)
        ).scalar_one(), False
    audit.record(
        "payment_anomaly.create",
        "payment_anomaly",
        anomaly.id,
        institution_id=anomaly.institution_id,
        detail={"kind": anomaly.kind, "out_trade_no": trade_no},
    )
    log.error(
        "payment anomaly",
        extra={"anomaly_id": str(anomaly.id), "kind": anomaly.kind, "out_trade_no": trade_no, "alert": True},
    )
    for hook in list(_ALERT_HOOKS):
        hook(anomaly)
    return anomaly, True


# --- refunds (creation and the amount guard; delivery lives in services/refunds.py) ----------------


def request_refund(
    order: PaymentOrder,
    *,
    amount_fen: int,
    reason: str,
    origin: RefundOrigin,
    actor: Actor,
    anomaly: PaymentAnomaly | None = None,
) -> Refund:
    """Reserve `amount_fen` of the order with one conditional UPDATE (PAY-12) and create the
    refund with its out_refund_no (PENDING); the outbox applies it at the provider after commit."""
    if amount_fen <= 0:
        raise BusinessRuleViolation(
            "退款金额必须大于0", code="refund_amount_invalid", errors={"amount_fen": ["必须大于0"]}
        )
    paid = order.paid_amount_fen
    if paid is None or (order.state != OrderState.PAID and origin is not RefundOrigin.ANOMALY):
        raise InvalidTransition("该订单未支付成功，不能退款", code="order_not_paid")
    if order.refund_count >= MAX_REFUNDS_PER_ORDER:
        raise BusinessRuleViolation(
            f"该订单已退款 {order.refund_count} 次，达到上限（{MAX_REFUNDS_PER_ORDER} 次）",
            code="too_many_refunds",
        )
    result = cast(
        CursorResult[Any],
        db.session.execute(
            update(PaymentOrder)
            .where(
                PaymentOrder.id == order.id,
                PaymentOrder.refunded_fen + amount_fen <= paid,
                PaymentOrder.refund_count < MAX_REFUNDS_PER_ORDER,
            )
            .values(
                refunded_fen=PaymentOrder.refunded_fen + amount_fen,
                refund_count=PaymentOrder.refund_count + 1,
                updated_at=clock.now(),
            )
            .execution_options(synchronize_session=False)
        ),
    )
    db.session.refresh(order)
    if result.rowcount != 1:
        available = max(paid - order.refunded_fen, 0)
        raise Conflict(
            _exceeds_message(available),
            code="refund_exceeds_paid",
            errors={"amount_fen": [f"最多可退 {available} 分"]},
        )
    refund = Refund(
        id=uuid.uuid4(),
        institution_id=order.institution_id,
        order_id=order.id,
        bill_id=order.bill_id,
        out_refund_no=new_out_refund_no(),
        amount_fen=amount_fen,
        reason=reason,
        origin=str(origin),
        anomaly_id=anomaly.id if anomaly is not None else None,
        status=RefundStatus.PENDING,
        requested_by_kind=actor.kind,
        requested_by_id=actor.id,
        next_check_at=clock.now() + timedelta(minutes=1),
        history=[{"at": clock.now().isoformat(), "status": RefundStatus.PENDING, "by": actor.kind}],
    )
    db.session.add(refund)
    db.session.flush()
    audit.record(
        "refund.request",
        "refund",
        refund.id,
        institution_id=order.institution_id,
        detail={"order_id": str(order.id), "amount_fen": amount_fen, "origin": str(origin)},
    )
    outbox.enqueue(
        "billing.refund_apply",
        {"refund_id": str(refund.id)},
        dedupe_key=f"billing.refund_apply:{refund.out_refund_no}:{refund.attempts}",
    )
    return refund


def _exceeds_message(available_fen: int) -> str:
    return f"退款金额超过可退金额（当前最多可退 {available_fen // 100}.{available_fen % 100:02d} 元）"
