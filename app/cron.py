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
)


def due_cron_jobs() -> tuple[tuple[str, str, int], ...]:
    return CRON_TABLE


for _name, _path, _every in CRON_TABLE:
    cron.register(run, "default", args=(_path,), interval=_every, name=_name)
