"""居民健康档案信息卡 (placeholder: filled by its helper)."""

from __future__ import annotations

from app.core.api import Blueprint

blp = Blueprint("health_record_card", __name__, url_prefix="/api/v1", description="居民健康档案")
