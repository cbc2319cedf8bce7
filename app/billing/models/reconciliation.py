"""Daily bill reconciliation (对账, PAY-13): runs, their discrepancy items, and the scratch pool.

A **run** is the comparison of one provider's daily bill (one channel, one China-time date) with
our orders and refunds. There is one run per (channel, bill_date): running a date again replaces
the run's findings (`attempts` counts the runs). A run whose bill could not be used (not ready,
corrupt, download failed) is FAILED with the reason and has no items: an empty report is never
produced for a bill we did not read.

Each **item** is one discrepancy, in roncoo-pay's terms:

    provider_only    长款: the bill has a trade/refund that we do not have, or do not consider paid
    local_only       短款: we have a PAID order that is in no bill
    amount_mismatch  both sides have it, with different amounts
    status_mismatch  both sides have it, in different states (e.g. a refund succeeded locally and
                     is not in the bill, a trade reversed at the provider and PAID here)

An item the run could settle by itself (a local order still UNKNOWN/PENDING that the bill shows
paid is queried and applied: "platform short" auto-fix) is kept with status FIXED, so the report
shows what was repaired.

The **scratch pool** (对账暂存池) holds what crosses midnight: an order paid a few minutes before
midnight that is missing from day D's bill is PARKED and re-checked against day D+1's bill before
it is flagged; a trade found in another day's bill than its local date is RESOLVED so that the
day of its local date does not report it as missing.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.core import clock
from app.core.db import Base, Timestamps, UUIDPrimaryKey

__all__ = [
    "DISCREPANCY_LABELS",
    "ITEM_STATUS_LABELS",
    "RUN_STATUS_LABELS",
    "SUBJECT_LABELS",
    "DiscrepancyKind",
    "DiscrepancySubject",
    "ReconItemStatus",
    "ReconRunStatus",
    "ReconScratchEntry",
    "ReconciliationItem",
    "ReconciliationRun",
    "ScratchStatus",
]

_MONEY = BigInteger().with_variant(Integer, "sqlite")


class ReconRunStatus(StrEnum):
    RUNNING = "running"  # claimed by a worker (a lease: a stale RUNNING run may be taken over)
    COMPLETED = "completed"  # the bill was read and compared; items are the discrepancies
    FAILED = "failed"  # the bill could not be used; no items


class DiscrepancyKind(StrEnum):
    PROVIDER_ONLY = "provider_only"  # 长款
    LOCAL_ONLY = "local_only"  # 短款
    AMOUNT_MISMATCH = "amount_mismatch"
    STATUS_MISMATCH = "status_mismatch"


class DiscrepancySubject(StrEnum):
    PAYMENT = "payment"
    REFUND = "refund"


class ReconItemStatus(StrEnum):
    OPEN = "open"  # needs a person (the PaymentAnomaly has the owner and the resolution)
    FIXED = "fixed"  # settled by the run itself (query and apply)


class ScratchStatus(StrEnum):
    PARKED = "parked"  # missing from its day's bill, to be re-checked against the next day's
    RESOLVED = "resolved"  # found in a bill (possibly another day's than its local date)
    FLAGGED = "flagged"  # still missing from the next day's bill: reported


RUN_STATUS_LABELS: dict[str, str] = {
    ReconRunStatus.RUNNING: "对账中",
    ReconRunStatus.COMPLETED: "已完成",
    ReconRunStatus.FAILED: "失败",
}
DISCREPANCY_LABELS: dict[str, str] = {
    DiscrepancyKind.PROVIDER_ONLY: "长款（渠道有，本地无或未支付）",
    DiscrepancyKind.LOCAL_ONLY: "短款（本地已支付，渠道账单无）",
    DiscrepancyKind.AMOUNT_MISMATCH: "金额不符",
    DiscrepancyKind.STATUS_MISMATCH: "状态不符",
}
SUBJECT_LABELS: dict[str, str] = {DiscrepancySubject.PAYMENT: "支付", DiscrepancySubject.REFUND: "退款"}
ITEM_STATUS_LABELS: dict[str, str] = {ReconItemStatus.OPEN: "待处理", ReconItemStatus.FIXED: "已自动处理"}


class ReconciliationRun(UUIDPrimaryKey, Timestamps, Base):
    """One channel's bill of one day compared with our books (district-wide: one merchant account)."""

    __tablename__ = "reconciliation_runs"
    __table_args__ = (
        UniqueConstraint("channel", "bill_date"),
        Index("ix_reconciliation_runs_bill_date", "bill_date"),
    )

    channel: Mapped[str] = mapped_column(String(16))
    bill_date: Mapped[date]
    status: Mapped[str] = mapped_column(String(16), default=ReconRunStatus.RUNNING)
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    started_at: Mapped[datetime] = mapped_column(default=clock.now)
    finished_at: Mapped[datetime | None]
    triggered_by_kind: Mapped[str] = mapped_column(String(16), default="system")  # system | staff
    triggered_by_id: Mapped[uuid.UUID | None]
    error_code: Mapped[str | None] = mapped_column(String(32))  # not_ready | corrupt | download_failed
    error_message: Mapped[str | None] = mapped_column(String(500))
    # The bill as read.
    statement_sha1: Mapped[str | None] = mapped_column(String(40))
    payment_lines: Mapped[int] = mapped_column(default=0, server_default="0")
    refund_lines: Mapped[int] = mapped_column(default=0, server_default="0")
    payment_total_fen: Mapped[int] = mapped_column(_MONEY, default=0, server_default="0")
    refund_total_fen: Mapped[int] = mapped_column(_MONEY, default=0, server_default="0")
    # The outcome.
    matched_count: Mapped[int] = mapped_column(default=0, server_default="0")
    provider_only_count: Mapped[int] = mapped_column(default=0, server_default="0")
    local_only_count: Mapped[int] = mapped_column(default=0, server_default="0")
    amount_mismatch_count: Mapped[int] = mapped_column(default=0, server_default="0")
    status_mismatch_count: Mapped[int] = mapped_column(default=0, server_default="0")
    fixed_count: Mapped[int] = mapped_column(default=0, server_default="0")
    parked_count: Mapped[int] = mapped_column(default=0, server_default="0")

    @property
    def discrepancy_count(self) -> int:
        return (
            self.provider_only_count
            + self.local_only_count
            + self.amount_mismatch_count
            + self.status_mismatch_count
        )


class ReconciliationItem(UUIDPrimaryKey, Base):
    """One discrepancy found by a run (replaced when the date is reconciled again)."""

    __tablename__ = "reconciliation_items"
    __table_args__ = (Index("ix_reconciliation_items_run_kind", "run_id", "kind"),)

    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("reconciliation_runs.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(24))  # DiscrepancyKind
    subject: Mapped[str] = mapped_column(String(16))  # DiscrepancySubject
    status: Mapped[str] = mapped_column(String(16), default=ReconItemStatus.OPEN)
    # The centre of the local order, when there is one (None: a trade we do not know at all).
    institution_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("institutions.id"), index=True)
    out_trade_no: Mapped[str] = mapped_column(String(64), index=True)
    out_refund_no: Mapped[str | None] = mapped_column(String(64))
    provider_trade_no: Mapped[str | None] = mapped_column(String(64))
    order_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("payment_orders.id"))
    refund_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("refunds.id"))
    local_amount_fen: Mapped[int | None] = mapped_column(_MONEY)
    provider_amount_fen: Mapped[int | None] = mapped_column(_MONEY)
    local_state: Mapped[str | None] = mapped_column(String(16))
    provider_state: Mapped[str | None] = mapped_column(String(32))
    occurred_at: Mapped[datetime | None]  # the provider's trade/refund time, or our paid time
    note: Mapped[str] = mapped_column(String(200))  # Chinese, for the report
    anomaly_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("payment_anomalies.id"))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=clock.now)


class ReconScratchEntry(UUIDPrimaryKey, Timestamps, Base):
    """对账暂存池: a trade or refund whose bill day differs from its local day (crossing midnight)."""

    __tablename__ = "reconciliation_scratch_pool"
    __table_args__ = (
        UniqueConstraint("channel", "subject", "reference"),
        Index("ix_reconciliation_scratch_pool_recheck", "channel", "status", "recheck_on"),
    )

    channel: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str] = mapped_column(String(16))  # DiscrepancySubject
    reference: Mapped[str] = mapped_column(String(64))  # out_refund_no for refunds, else out_trade_no
    out_trade_no: Mapped[str] = mapped_column(String(64))
    order_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("payment_orders.id"))
    refund_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("refunds.id"))
    institution_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("institutions.id"))
    amount_fen: Mapped[int] = mapped_column(_MONEY)
    local_at: Mapped[datetime]  # our paid_at / succeeded_at
    status: Mapped[str] = mapped_column(String(16), default=ScratchStatus.PARKED)
    parked_on: Mapped[date | None]  # the bill day it was missing from
    recheck_on: Mapped[date | None]  # the bill day that must contain it
    found_on: Mapped[date | None]  # the bill day that contained it
    flagged_on: Mapped[date | None]  # the bill day whose run reported it missing
