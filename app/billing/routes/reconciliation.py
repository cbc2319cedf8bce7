"""Daily bill reconciliation (对账, PAY-13): staff routes. The jobs are in `app.billing.jobs.reconciliation`.

Routes: `GET /reconciliation/runs`, `GET /reconciliation/runs/{id}`, `POST /reconciliation/runs`
(run or re-run by hand), `GET /reconciliation/runs/{id}/report.csv`.
"""

from __future__ import annotations

import logging
import uuid
from datetime import date
from typing import Any

from flask import Response, current_app

from app.billing.jobs.reconciliation import ReconciliationFailed, reconcile
from app.billing.models import ReconciliationItem, ReconciliationRun, ReconRunStatus
from app.billing.schemas.reconciliation import (
    ReconciliationItemQuerySchema,
    ReconciliationRunCreateSchema,
    ReconciliationRunDetailSchema,
    ReconciliationRunQuerySchema,
    ReconciliationRunSchema,
)
from app.billing.services import reconciliation as recon
from app.billing.services.orders import actor_from_principal
from app.core import audit, clock
from app.core.api import Blueprint
from app.core.auth import Role
from app.core.db import commit, db
from app.core.errors import BusinessRuleViolation, Conflict
from app.core.pagination import Page, page_schema

log = logging.getLogger(__name__)

blp = Blueprint("billing_reconciliation", __name__, url_prefix="/api/v1/billing", description="统一支付")

READERS = frozenset({Role.DISTRICT_ADMIN, Role.AUDITOR})
RUNNERS = frozenset({Role.DISTRICT_ADMIN})


# --- routes -------------------------------------------------------------------------------------------


class _RunView:
    """A run with the items the caller may see (the detail schema reads both)."""

    def __init__(self, run: ReconciliationRun, items: list[ReconciliationItem]) -> None:
        self._run = run
        self.items = items

    def __getattr__(self, name: str) -> Any:
        return getattr(self._run, name)


@blp.route("/reconciliation/runs", methods=["GET"])
@blp.auth(roles=READERS)
@blp.arguments(ReconciliationRunQuerySchema, location="query")
@blp.response(200, page_schema(ReconciliationRunSchema))
def list_runs(args: dict[str, Any]) -> Page[Any]:
    """Reconciliation runs, newest bill date first. Roles: district_admin, auditor."""
    return recon.list_runs(**args)


@blp.route("/reconciliation/runs", methods=["POST"])
@blp.auth(roles=RUNNERS)
@blp.idempotent()
@blp.arguments(ReconciliationRunCreateSchema)
@blp.response(200, ReconciliationRunDetailSchema)
@blp.alt_response(409, response="DEFAULT_ERROR", description="reconciliation_running: 该日对账正在进行")
def run_reconciliation(args: dict[str, Any]) -> Any:
    """Reconcile (or re-reconcile) one channel's bill of one day now. The run comes back COMPLETED
    with its discrepancies, or FAILED with the reason (bill not ready, corrupt, not downloadable).
    Roles: district_admin."""
    day: date = args["bill_date"]
    if day >= clock.today_local():
        raise BusinessRuleViolation(
            "只能对今天以前的账单对账（渠道账单次日上午生成）",
            code="bill_date_not_past",
            errors={"bill_date": ["须早于今天"]},
        )
    audit.record(
        "reconciliation.request",
        "reconciliation_run",
        None,
        detail={"channel": args["channel"], "bill_date": day.isoformat()},
    )
    try:
        run = reconcile(args["channel"], day, actor=actor_from_principal())
    except ReconciliationFailed as exc:
        run = recon.get_run(exc.run_id)
    if run is None:
        raise Conflict("该日该渠道的对账正在进行中，请稍后查看结果", code="reconciliation_running")
    db.session.refresh(run)
    return _RunView(run, recon.run_items(run))


@blp.route("/reconciliation/runs/<uuid:run_id>", methods=["GET"])
@blp.auth(roles=READERS)
@blp.arguments(ReconciliationItemQuerySchema, location="query")
@blp.response(200, ReconciliationRunDetailSchema)
def get_run(args: dict[str, Any], run_id: uuid.UUID) -> Any:
    """A run's summary and its discrepancies (a centre-level auditor sees its centre's items only).
    Roles: district_admin, auditor."""
    run = recon.get_run(run_id)
    return _RunView(run, recon.run_items(run, kind=args.get("kind")))


@blp.route("/reconciliation/runs/<uuid:run_id>/report.csv", methods=["GET"])
@blp.auth(roles=READERS)
@blp.doc(
    responses={
        "200": {
            "description": "UTF-8 CSV with a BOM, Chinese headers, amounts in yuan",
            "content": {"text/csv": {"schema": {"type": "string"}}},
        }
    }
)
@blp.alt_response(
    409, response="DEFAULT_ERROR", description="reconciliation_not_completed: 对账失败或进行中，无报告"
)
def run_report(run_id: uuid.UUID) -> Response:
    """The run's discrepancy report as CSV (audited). Only for a COMPLETED run: a failed run has no
    report. Roles: district_admin, auditor."""
    run = recon.get_run(run_id)
    if run.status != ReconRunStatus.COMPLETED:
        raise Conflict(
            "该对账未完成（失败或进行中），没有对账报告；请重新对账后再下载",
            code="reconciliation_not_completed",
        )
    items = recon.run_items(run)
    audit.record(
        "reconciliation.report_export",
        "reconciliation_run",
        run.id,
        detail={"items": len(items)},
    )
    commit()
    body = "".join(recon.report_lines(run, items))
    response = current_app.response_class(body.encode("utf-8"), mimetype="text/csv")
    response.headers["Content-Type"] = "text/csv; charset=utf-8"
    response.headers["Content-Disposition"] = (
        f'attachment; filename="reconciliation-{run.channel}-{run.bill_date.isoformat()}.csv"'
    )
    response.headers["Cache-Control"] = "no-store"
    return response
