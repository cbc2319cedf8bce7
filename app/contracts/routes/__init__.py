"""Contracts HTTP routes (staff `/api/v1`)."""

from app.contracts.services import core  # noqa: F401 - registers the billing listener (paid bill -> active)
