"""Periodic jobs of the contracts domain (entry points: they commit).

`lapse_applications()` (cron every 5 minutes, `app/cron.py`): online applications whose deadline
has passed are withdrawn, each in its own transaction, re-checked under its row lock:

- pending_review past `review_due_at` (CONTRACT_REVIEW_HOURS): "团队未在规定时间内审核，申请已自动撤回";
- awaiting_confirmation / awaiting_payment more than CONTRACT_CONFIRM_HOURS after the acceptance:
  withdrawn; an unpaid bill is cancelled first, and an application whose payment is still open at
  the provider is left for a later run (the payment either completes, activating the contract, or
  the order expires and is closed by the billing recovery job);
- the resident's place and the doctor's and team's capacity are released by the contract core,
  and the applicant is told by SMS.

Idempotent and safe on several workers: a second worker skips a row that is locked (PostgreSQL
`SKIP LOCKED`) and finds nothing to do once the status has changed; one failing application
never stops the batch.
"""

from __future__ import annotations

import logging
from collections import Counter

from app.contracts.services import online
from app.core import clock
from app.core.db import commit, rollback

log = logging.getLogger(__name__)


def lapse_applications(limit: int = 500) -> dict[str, int]:
    """Withdraw every online application past its review or confirmation deadline. Returns counts
    per outcome (review_lapsed, confirm_lapsed, payment_lapsed, payment_in_progress, busy, not_due,
    error)."""
    counts: Counter[str] = Counter()
    due = online.due_lapses(clock.now(), limit)
    commit()  # end the read: each application gets a transaction of its own
    for contract_id in due:
        try:
            outcome = online.lapse_application(contract_id)
            commit()
        except Exception:
            rollback()
            log.exception("lapsing an application failed", extra={"contract_id": str(contract_id)})
            outcome = "error"
        counts[outcome] += 1
    if due:
        log.info("online applications lapsed", extra={"counts": dict(counts)})
    return dict(counts)
