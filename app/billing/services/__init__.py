"""Billing use cases. Importing the package registers the outbox handlers and paid listeners."""

from app.billing.services import orders, refunds  # noqa: F401 - registers outbox handlers
