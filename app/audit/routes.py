"""The audit trail for auditors (`/api/v1/audit`)."""

from __future__ import annotations

from typing import Any

from app.audit import services
from app.audit.schemas import AuditEventSchema, AuditQuerySchema
from app.core.api import Blueprint
from app.core.auth import Role, require_principal
from app.core.db import commit
from app.core.pagination import Page, page_schema

blp = Blueprint("audit", __name__, url_prefix="/api/v1/audit", description="Audit trail (append-only)")


@blp.route("/events", methods=["GET"])
@blp.auth(roles=[Role.DISTRICT_ADMIN, Role.AUDITOR])
@blp.arguments(AuditQuerySchema, location="query")
@blp.response(200, page_schema(AuditEventSchema))
def search_events(args: dict[str, Any]) -> Page[Any]:
    """Search audit events, newest first (centre auditors: their centre only)."""
    found = services.search_events(require_principal(), **args)
    commit()
    return found
