"""居民健康档案信息卡 (spec §3), generated from the record and its 个人基本信息表.

GET /api/v1/health-records/{id}/card        the card as JSON (front and back, masked)
GET /api/v1/health-records/{id}/card.pdf    the card-sized PDF: page 1 front, page 2 back
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response, current_app

from app.core.api import Blueprint
from app.core.db import commit
from app.health_records.schemas.card import RecordCardSchema
from app.health_records.services import access, card

blp = Blueprint("health_record_card", __name__, url_prefix="/api/v1", description="居民健康档案")

READERS = sorted(access.READER_ROLES)


@blp.route("/health-records/<uuid:record_id>/card", methods=["GET"])
@blp.auth(roles=READERS)
@blp.response(200, RecordCardSchema)
def get_card(record_id: uuid.UUID) -> dict[str, Any]:
    """The 居民健康档案信息卡 (names, phones and the address masked; audited)."""
    shown = card.read_card(record_id)
    commit()
    return shown


@blp.route("/health-records/<uuid:record_id>/card.pdf", methods=["GET"])
@blp.auth(roles=READERS)
@blp.doc(
    responses={
        "200": {
            "description": "The card (85.6 × 54 mm, page 1 front, page 2 back; Chinese font embedded)",
            "content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}},
        }
    }
)
def print_card(record_id: uuid.UUID) -> Response:
    """Print the card (audited); phones and the address are masked as on every printed copy."""
    printed = card.print_card(record_id)
    commit()
    response = current_app.response_class(printed.data, mimetype="application/pdf")
    response.headers["Content-Disposition"] = f'inline; filename="{printed.filename}"'
    response.headers["Cache-Control"] = "private, no-store"
    return response
