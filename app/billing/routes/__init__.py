"""Billing HTTP routes: staff API (`/api/v1/billing`), provider callbacks (`/callbacks`), H5 cashier (`/pay`)."""

from app.billing import jobs  # noqa: F401 - registers the billing outbox handlers
