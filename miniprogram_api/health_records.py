"""我的健康档案 in the mini-program (placeholder: filled by its helper)."""

from __future__ import annotations

from app.core.api import Blueprint

blp = Blueprint("mp_health_records", __name__, url_prefix="/mp/v1", description="小程序：我的健康档案")
