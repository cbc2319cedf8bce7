"""Bills (收费单), payment orders (支付订单), refunds (退款), notifications, anomalies, aggregate QR codes.

A **bill** is what a centre collects: items, amount in fen, payer, cashier, source (contract
self-pay portion, a HIS charge, a third-party service). A **payment order** is one attempt to pay a
bill at one provider, with its own `out_trade_no`: a cashier may show a QR, the payer may instead
pay inside WeChat, a declined payer code is retried with a new code. At most one order of a bill
ends PAID; a second successful payment is an anomaly refunded automatically.

Order states (`ORDER_TRANSITIONS` is the only source of allowed moves):

    CREATED  committed with its out_trade_no, provider not called yet (or the call's fate unknown
             because we crashed): the recovery job queries it
    PENDING  the provider has the trade and waits for the payer (QR shown, JSAPI prepay issued)
    PAYING   被扫: the payer is confirming / entering the password; the passive-scan procedure polls
    UNKNOWN  the provider call timed out or failed with an unknown outcome: only a query, a verified
             notification or reconciliation may move it (never to FAILED on a timeout)
    PAID     final; refunds are tracked by `refunded_fen` and `Refund` rows
    CLOSED   final; unpaid and closed at the provider (expired, cancelled by the cashier)
    REVERSED final; a 被扫 trade reversed/cancelled at the provider (money returned if it was taken)
    FAILED   final; a definite refusal (insufficient funds, expired code), nothing charged

Every transition is one conditional UPDATE (`... WHERE id = :id AND state = :from`) checked by
row count (`app.billing.services.orders.transition`) and writes a `PaymentOrderEvent`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.core import clock
from app.core.db import Base, Timestamps, UUIDPrimaryKey
from app.core.scope import CentreScoped


class BillStatus(StrEnum):
    OPEN = "open"  # 待支付
    PAID = "paid"  # 已支付 (refunds do not reopen a bill)
    CANCELLED = "cancelled"  # 已作废 (only while unpaid)


class BillSource(StrEnum):
    CONTRACT = "contract"  # 签约自付部分
    HIS = "his"  # 院内 HIS 收费项目
    THIRD_PARTY = "third_party"  # 第三方服务
    WALK_IN = "walk_in"  # 聚合码付款人自助输入金额
    OTHER = "other"


class OrderState(StrEnum):
    CREATED = "created"
    PENDING = "pending"
    PAYING = "paying"
    UNKNOWN = "unknown"
    PAID = "paid"
    CLOSED = "closed"
    REVERSED = "reversed"
    FAILED = "failed"

    @property
    def is_final(self) -> bool:
        return self in FINAL_ORDER_STATES


# Short labels for lists, exports and reports (the desk's live screen words its own, longer ones).
ORDER_STATE_LABELS: Mapping[str, str] = {
    OrderState.CREATED: "已创建",
    OrderState.PENDING: "待支付",
    OrderState.PAYING: "支付中",
    OrderState.UNKNOWN: "结果待确认",
    OrderState.PAID: "已支付",
    OrderState.CLOSED: "已关闭",
    OrderState.REVERSED: "已撤销",
    OrderState.FAILED: "支付失败",
}

FINAL_ORDER_STATES = frozenset({OrderState.PAID, OrderState.CLOSED, OrderState.REVERSED, OrderState.FAILED})
OPEN_ORDER_STATES = frozenset(OrderState) - FINAL_ORDER_STATES

ORDER_TRANSITIONS: Mapping[OrderState, frozenset[OrderState]] = {
    OrderState.CREATED: frozenset(
        {
            OrderState.PENDING,
            OrderState.PAYING,
            OrderState.UNKNOWN,
            OrderState.PAID,
            OrderState.CLOSED,
            OrderState.REVERSED,
            OrderState.FAILED,
        }
    ),
    OrderState.PENDING: frozenset(
        {OrderState.PAYING, OrderState.UNKNOWN, OrderState.PAID, OrderState.CLOSED, OrderState.FAILED}
    ),
    OrderState.PAYING: frozenset(
        {OrderState.UNKNOWN, OrderState.PAID, OrderState.CLOSED, OrderState.REVERSED, OrderState.FAILED}
    ),
    OrderState.UNKNOWN: frozenset(
        {
            OrderState.PENDING,
            OrderState.PAYING,
            OrderState.PAID,
            OrderState.CLOSED,
            OrderState.REVERSED,
            OrderState.FAILED,
        }
    ),
    OrderState.PAID: frozenset(),
    OrderState.CLOSED: frozenset(),
    OrderState.REVERSED: frozenset(),
    OrderState.FAILED: frozenset(),
}


class RefundStatus(StrEnum):
    PENDING = "pending"  # committed with its out_refund_no; apply not confirmed yet (or outcome unknown)
    PROCESSING = "processing"  # accepted by the provider; waiting for the final state
    SUCCEEDED = "succeeded"  # final: money returned
    FAILED = "failed"  # the provider refused or closed it: retry (same number) or cancel
    ABNORMAL = "abnormal"  # WeChat CHANGE: handle at the merchant platform, then mark by query
    CANCELLED = "cancelled"  # final: given up after FAILED; the reserved amount is released


REFUND_STATUS_LABELS: Mapping[str, str] = {
    RefundStatus.PENDING: "待提交",
    RefundStatus.PROCESSING: "退款中",
    RefundStatus.SUCCEEDED: "退款成功",
    RefundStatus.FAILED: "退款失败",
    RefundStatus.ABNORMAL: "退款异常",
    RefundStatus.CANCELLED: "已取消",
}

REFUND_TRANSITIONS: Mapping[RefundStatus, frozenset[RefundStatus]] = {
    RefundStatus.PENDING: frozenset(
        {RefundStatus.PROCESSING, RefundStatus.SUCCEEDED, RefundStatus.FAILED, RefundStatus.ABNORMAL}
    ),
    RefundStatus.PROCESSING: frozenset({RefundStatus.SUCCEEDED, RefundStatus.FAILED, RefundStatus.ABNORMAL}),
    RefundStatus.FAILED: frozenset({RefundStatus.PENDING, RefundStatus.CANCELLED, RefundStatus.SUCCEEDED}),
    RefundStatus.ABNORMAL: frozenset({RefundStatus.SUCCEEDED, RefundStatus.FAILED}),
    RefundStatus.SUCCEEDED: frozenset(),
    RefundStatus.CANCELLED: frozenset(),
}


class RefundOrigin(StrEnum):
    STAFF = "staff"  # a cashier or admin asked for it
    ANOMALY = "anomaly"  # automatic: paid after close, second payment of one bill


class AnomalyKind(StrEnum):
    PAID_AFTER_CLOSE = "paid_after_close"  # a valid payment for an order we had closed/reversed/failed
    DUPLICATE_PAYMENT = "duplicate_payment"  # a second successful payment of the same bill
    AMOUNT_MISMATCH = "amount_mismatch"  # verified notification/query with another amount
    MERCHANT_MISMATCH = "merchant_mismatch"  # verified, but for another app id / merchant id
    UNKNOWN_ORDER = "unknown_order"  # verified, but no such out_trade_no here
    CURRENCY_MISMATCH = "currency_mismatch"
    NOT_PAID_STATE = "not_paid_state"  # verified notification whose trade state is not a payment
    REFUND_ABNORMAL = "refund_abnormal"  # WeChat CHANGE
    RECONCILIATION = "reconciliation"  # a difference found in the daily bill
    UNRESOLVED_ORDER = "unresolved_order"  # still UNKNOWN 24 h on: the provider never answered


class AnomalyStatus(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


class Bill(UUIDPrimaryKey, Timestamps, CentreScoped, Base):
    """收费单: what the centre collects, paid by at most one successful payment order."""

    __tablename__ = "bills"
    __table_args__ = (
        CheckConstraint("amount_fen > 0", name="amount_positive"),
        UniqueConstraint("source", "source_ref"),
        Index("ix_bills_institution_status", "institution_id", "status"),
    )

    bill_no: Mapped[str] = mapped_column(String(32), unique=True)
    source: Mapped[str] = mapped_column(String(16), default=BillSource.OTHER)
    source_ref: Mapped[str | None] = mapped_column(String(64))  # e.g. the HIS charge number
    subject: Mapped[str] = mapped_column(String(64))  # 商品描述 shown in the payer's wallet
    items: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    amount_fen: Mapped[int]
    resident_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("residents.id"), index=True)
    payer_name: Mapped[str | None] = mapped_column(String(50))
    cashier_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("staff_users.id"), index=True)
    created_by_kind: Mapped[str] = mapped_column(String(16))  # staff | resident | system | payer
    status: Mapped[str] = mapped_column(String(16), default=BillStatus.OPEN)
    paid_order_id: Mapped[
        uuid.UUID | None
    ]  # the one PaymentOrder that paid it (no FK: orders reference bills)
    paid_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]
    cancel_reason: Mapped[str | None] = mapped_column(String(200))


class PaymentOrder(UUIDPrimaryKey, Timestamps, CentreScoped, Base):
    """支付订单: one attempt to pay a bill at one provider (one out_trade_no, never reused)."""

    __tablename__ = "payment_orders"
    __table_args__ = (
        CheckConstraint("amount_fen > 0", name="amount_positive"),
        CheckConstraint("refunded_fen >= 0", name="refunded_nonnegative"),
        UniqueConstraint("channel", "provider_trade_no"),
        Index("ix_payment_orders_state_check", "state", "next_check_at"),
        Index("ix_payment_orders_institution_created", "institution_id", "created_at"),
    )

    bill_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("bills.id"), index=True)
    out_trade_no: Mapped[str] = mapped_column(String(32), unique=True)
    channel: Mapped[str] = mapped_column(String(16))  # payments.base.Channel
    mode: Mapped[str] = mapped_column(String(16))  # payments.base.PayMode
    amount_fen: Mapped[int]
    subject: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default=OrderState.CREATED)
    state_changed_at: Mapped[datetime] = mapped_column(default=clock.now)
    cashier_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("staff_users.id"), index=True)
    created_by_kind: Mapped[str] = mapped_column(String(16))
    created_by_id: Mapped[uuid.UUID | None]
    client_ip: Mapped[str] = mapped_column(String(45))
    payer_account: Mapped[str | None] = mapped_column(String(64))  # openid / buyer_id (JSAPI, or as paid)
    # Which of the merchant's apps the payer is in (payments.base.ChargeRequest.app): None = the
    # default app (WeChat official account), "mp" = the WeChat mini-program. Every later provider
    # call of this order passes it: WeChat needs the appid the trade was created with.
    payer_app: Mapped[str | None] = mapped_column(String(16))
    payer_code_tail: Mapped[str | None] = mapped_column(String(8))  # last 4 digits of a scanned code
    expires_at: Mapped[datetime]
    # What the payer needs: the QR content (code_url / qr_code) or the JSAPI client parameters.
    qr_content: Mapped[str | None] = mapped_column(String(256))
    client_params: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    provider_trade_no: Mapped[str | None] = mapped_column(String(64))
    paid_at: Mapped[datetime | None]
    paid_amount_fen: Mapped[int | None]
    # Refunds: sum of every refund not CANCELLED (reserved with a conditional UPDATE), and count.
    refunded_fen: Mapped[int] = mapped_column(default=0, server_default="0")
    refund_count: Mapped[int] = mapped_column(default=0, server_default="0")
    decline_code: Mapped[str | None] = mapped_column(String(64))
    decline_message: Mapped[str | None] = mapped_column(String(200))
    # Follow-up work (passive-scan polling, reversal, recovery query): when and how often.
    charge_called_at: Mapped[datetime | None]  # when the provider was first asked to charge
    next_check_at: Mapped[datetime | None]
    check_attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    reverse_attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    closing: Mapped[bool] = mapped_column(default=False, server_default="0")  # close/reverse requested

    @property
    def order_state(self) -> OrderState:
        return OrderState(self.state)


class PaymentOrderEvent(Base):
    """History of a payment order: every state change with who/what caused it."""

    __tablename__ = "payment_order_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("payment_orders.id"), index=True)
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(16))  # api | callback | query | job | reconciliation
    actor_kind: Mapped[str] = mapped_column(String(16))  # staff | resident | payer | provider | system
    actor_id: Mapped[uuid.UUID | None]
    reason: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=clock.now)


class Refund(UUIDPrimaryKey, Timestamps, CentreScoped, Base):
    """退款: one refund of one payment order, with our out_refund_no reused on every retry."""

    __tablename__ = "refunds"
    __table_args__ = (
        CheckConstraint("amount_fen > 0", name="amount_positive"),
        Index("ix_refunds_status_check", "status", "next_check_at"),
    )

    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("payment_orders.id"), index=True)
    bill_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("bills.id"), index=True)
    out_refund_no: Mapped[str] = mapped_column(String(64), unique=True)
    amount_fen: Mapped[int]
    reason: Mapped[str] = mapped_column(String(200))
    origin: Mapped[str] = mapped_column(String(16), default=RefundOrigin.STAFF)
    anomaly_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("payment_anomalies.id"))
    status: Mapped[str] = mapped_column(String(16), default=RefundStatus.PENDING)
    status_changed_at: Mapped[datetime] = mapped_column(default=clock.now)
    requested_by_kind: Mapped[str] = mapped_column(String(16))
    requested_by_id: Mapped[uuid.UUID | None]
    provider_refund_no: Mapped[str | None] = mapped_column(String(64))
    succeeded_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    next_check_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(String(200))
    history: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)


class PaymentNotification(Base):
    """Every provider notification as received (raw body), whether applied, duplicate or rejected."""

    __tablename__ = "payment_notifications"

    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))
    received_at: Mapped[datetime] = mapped_column(default=clock.now, index=True)
    content_type: Mapped[str | None] = mapped_column(String(100))
    body: Mapped[str] = mapped_column(Text)
    remote_addr: Mapped[str | None] = mapped_column(String(45))
    verified: Mapped[bool] = mapped_column(default=False)
    outcome: Mapped[str] = mapped_column(String(16))  # applied | duplicate | rejected | anomaly | ignored
    reason: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str | None] = mapped_column(String(16))  # payment | refund
    notify_id: Mapped[str | None] = mapped_column(String(128), index=True)
    out_trade_no: Mapped[str | None] = mapped_column(String(32), index=True)
    out_refund_no: Mapped[str | None] = mapped_column(String(64))
    order_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("payment_orders.id"))


class PaymentAnomaly(UUIDPrimaryKey, Timestamps, Base):
    """A payment that does not fit: needs an owner and a resolution (REL-07 item 7)."""

    __tablename__ = "payment_anomalies"
    __table_args__ = (Index("ix_payment_anomalies_status", "status", "created_at"),)

    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default=AnomalyStatus.OPEN)
    institution_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("institutions.id"), index=True)
    channel: Mapped[str] = mapped_column(String(16))
    out_trade_no: Mapped[str | None] = mapped_column(String(32), index=True)
    order_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("payment_orders.id"), index=True)
    bill_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("bills.id"))
    amount_fen: Mapped[int | None]
    # One anomaly per (kind, order/out_trade_no, dedupe detail): repeated notifications do not pile up.
    dedupe_key: Mapped[str] = mapped_column(String(160), unique=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    owner_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("staff_users.id"))
    resolution: Mapped[str | None] = mapped_column(Text)
    resolved_at: Mapped[datetime | None]
    resolved_by: Mapped[uuid.UUID | None]


class AggregateQr(UUIDPrimaryKey, Timestamps, CentreScoped, Base):
    """聚合收款码: one printable code per centre (or desk) for both wallets, opening the H5 cashier."""

    __tablename__ = "aggregate_qr_codes"

    token: Mapped[str] = mapped_column(String(32), unique=True)
    label: Mapped[str] = mapped_column(String(50))  # e.g. "一楼收费处"
    active: Mapped[bool] = mapped_column(default=True)
    created_by: Mapped[uuid.UUID | None]
    revoked_at: Mapped[datetime | None]
