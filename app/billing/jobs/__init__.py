"""Billing entry points that run outside a request: rq jobs, periodic sweeps, outbox handlers.

Like routes, these commit (through `app.core.db.commit`); the rules live in `app/billing/services`.
Importing the package registers the outbox handlers.
"""

from app.billing.jobs import passive, reconciliation, recovery, refunds  # noqa: F401 - registers outbox handlers
