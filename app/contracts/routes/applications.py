"""Placeholder: filled in by the issue-5 work."""

from app.core.api import Blueprint

blp = Blueprint("contracts_applications", __name__, url_prefix="/api/v1", description="家庭医生签约")
