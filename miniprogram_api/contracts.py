"""Placeholder: filled in by the issue-5 work."""

from app.core.api import Blueprint

blp = Blueprint("mp_contracts", __name__, url_prefix="/mp/v1", description="家庭医生签约（小程序）")
