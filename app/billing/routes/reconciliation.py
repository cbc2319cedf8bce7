"""Placeholder: filled in by the issue-4 work."""

from app.core.api import Blueprint

blp = Blueprint("billing_reconciliation", __name__, url_prefix="/api/v1/billing", description="统一支付")
