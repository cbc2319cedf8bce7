"""The periodic job table, read by `rq cron app/cron.py` (and by the embedded development worker).

Each entry: (name, "module:function", interval in seconds). Every job is idempotent.
"""

from __future__ import annotations

from rq import cron

from app.jobs import run

CRON_TABLE: tuple[tuple[str, str, int], ...] = (
    ("outbox-sweep", "app.core.outbox:deliver_due", 60),
    ("idempotency-purge", "app.core.idempotency:purge_expired", 3600),
    ("mp-sessions-purge", "app.mp_accounts.jobs:purge_sessions", 3600),
    # Payments (issue 4). Each step re-checks and locks; several workers may run them.
    (
        "billing-passive-sweep",
        "app.billing.jobs.passive:sweep_passive",
        60,
    ),  # 被扫 polling/reversal safety net
    (
        "billing-recover-orders",
        "app.billing.jobs.recovery:recover_orders",
        60,
    ),  # 补单 + expiry close (PAY-08)
    ("billing-poll-refunds", "app.billing.jobs.refunds:poll_refunds", 60),  # refund final states (PAY-12)
    (
        "billing-reconcile",
        "app.billing.jobs.reconciliation:reconcile_yesterday",
        3600,
    ),  # after 10:00 (PAY-13)
)


def due_cron_jobs() -> tuple[tuple[str, str, int], ...]:
    return CRON_TABLE


for _name, _path, _every in CRON_TABLE:
    cron.register(run, "default", args=(_path,), interval=_every, name=_name)
