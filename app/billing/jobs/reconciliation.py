"""Daily bill reconciliation (对账, PAY-13): the entry points, which commit.

    reconcile(channel, bill_date)   one channel's bill of one China-time day; re-running a date
                                    replaces that date's run. A bill that is not ready, corrupt or
                                    not downloadable FAILS the run loudly (ERROR log, raise: rq
                                    retries) and no report is produced.
    reconcile_yesterday()           the periodic job: after 10:00 China time, yesterday's bills of
                                    both channels (those not completed yet).

Cron (app/cron.py): ("billing-reconcile", "app.billing.jobs.reconciliation:reconcile_yesterday", 3600)
"""

from __future__ import annotations

import logging
import uuid
from datetime import date

from app.billing import flows, providers
from app.billing.models import OrderState, PaymentOrder, ReconciliationRun, ReconRunStatus
from app.billing.services import reconciliation as recon
from app.billing.services.orders import SYSTEM
from app.core.auth import Actor
from app.core.db import commit, db, rollback
from payments.base import Channel, Statement, StatementCorrupt, StatementNotReady

log = logging.getLogger(__name__)


class ReconciliationFailed(Exception):
    """The bill of a date could not be reconciled (the run is FAILED): rq retries the job."""

    def __init__(self, run: ReconciliationRun) -> None:
        super().__init__(
            f"reconciliation {run.channel} {run.bill_date}: {run.error_code}: {run.error_message}"
        )
        self.run_id = run.id
        self.code = run.error_code


def reconcile(
    channel: Channel | str, bill_date: date | str, *, actor: Actor = SYSTEM
) -> ReconciliationRun | None:
    """Reconcile one channel's bill of one day (commits). Returns the run, or None when another
    worker is reconciling that date right now. Raises ReconciliationFailed when the bill is unusable."""
    channel = Channel(channel)
    day = bill_date if isinstance(bill_date, date) else date.fromisoformat(bill_date)
    run = recon.claim_run(channel, day, actor=actor)
    commit()
    if run is None:
        log.info(
            "reconciliation already running", extra={"channel": str(channel), "bill_date": day.isoformat()}
        )
        return None
    run_id = run.id
    try:  # no transaction is open here: the download is a network call
        statement: Statement = providers.get(channel).download_statement(day)
        recon.check_statement(statement, channel, day)
    except StatementNotReady as exc:
        return _failed(run_id, "not_ready", f"渠道对账单尚未生成（{exc}），稍后将自动重试")
    except StatementCorrupt as exc:
        return _failed(run_id, "corrupt", f"渠道对账单校验失败（{exc}），已告警并将重新下载")
    except Exception as exc:  # network errors, adapter bugs: fail loudly, never report on no bill
        log.exception("bill download failed", extra={"channel": str(channel), "bill_date": day.isoformat()})
        return _failed(
            run_id, "download_failed", f"下载渠道对账单失败（{type(exc).__name__}），稍后将自动重试"
        )
    # "Platform short" auto-fix: orders the bill shows settled but we do not are queried and applied.
    settled: dict[uuid.UUID, str] = {}
    settled_from: dict[uuid.UUID, str] = {}
    for order_id in recon.orders_to_settle(channel, statement):
        before = db.session.get(PaymentOrder, order_id)
        settled_from[order_id] = before.state if before is not None else str(OrderState.UNKNOWN)
        settled[order_id] = flows.query_and_apply(order_id, source="reconciliation", actor=SYSTEM)
    commit()
    run = recon.apply_statement(run_id, statement, settled=settled, settled_from=settled_from)
    commit()
    return run


def _failed(run_id: uuid.UUID, code: str, message: str) -> ReconciliationRun:
    rollback()
    run = recon.fail_run(run_id, code=code, message=message)
    commit()
    raise ReconciliationFailed(run)


def reconcile_yesterday() -> dict[str, str]:
    """Periodic: after 10:00 China time, yesterday's bills of both channels not completed yet.
    Every channel is tried; if any failed, raises after the others ran (so the job is retried)."""
    day = recon.due_bill_date()
    if day is None:
        return {}
    outcome: dict[str, str] = {}
    failures: list[ReconciliationFailed] = []
    channels = recon.channels_to_reconcile(day)
    commit()
    for channel in channels:
        try:
            run = reconcile(channel, day)
            outcome[str(channel)] = "busy" if run is None else run.status
        except ReconciliationFailed as exc:
            outcome[str(channel)] = ReconRunStatus.FAILED
            failures.append(exc)
    if failures:
        raise failures[0]
    return outcome
