"""我的健康档案 in the mini-program (`/mp/v1/health-records`, `/mp/v1/health-forms/{id}`,
`/mp/v1/health-records/card`).

For the logged-in resident and the family members they act for (active bindings). Categories the
policy hides (DATA-05: `MP_HIDDEN_HEALTH_CATEGORIES` for the resident, 严重精神障碍 and 肺结核
always for a family member) are absent; anything else is a 404 audited as denied. Every read is
audited. No rules here: `app.health_records.services.mp`.
"""

# flask-smorest ships no type information: its decorators are untyped by nature.

from __future__ import annotations

import uuid
from typing import Any

from app.core.api import Blueprint
from app.core.auth import require_principal
from app.core.db import commit
from app.health_records.schemas.card import RecordCardSchema
from app.health_records.schemas.mp import MpHealthFormSchema, MpHealthRecordQuerySchema, MpHealthRecordSchema
from app.health_records.services import mp as services
from app.mp_accounts.services.sessions import RESIDENT_ROLE
from miniprogram_api._docs import errors

RESIDENT = [RESIDENT_ROLE]

blp = Blueprint("mp_health_records", __name__, url_prefix="/mp/v1", description="小程序：我的健康档案")


@blp.route("/health-records", methods=["GET"])
@blp.auth(roles=RESIDENT)
@blp.arguments(MpHealthRecordQuerySchema, location="query")
@blp.response(200, MpHealthRecordSchema)
@errors(blp, 404)
def my_record(args: dict[str, Any]) -> dict[str, Any]:
    """我的健康档案: the record of the caller, or of the bound family member `resident_id`: record
    number, managing centre, responsible doctor and the forms (newest first). 404
    `identity_not_bound` before 实名认证, `resident_not_found` for someone not bound,
    `health_record_not_found` before 建档."""
    view = services.my_record(require_principal(), args.get("resident_id"))
    commit()
    return view


@blp.route("/health-records/card", methods=["GET"])
@blp.auth(roles=RESIDENT)
@blp.arguments(MpHealthRecordQuerySchema, location="query")
@blp.response(200, RecordCardSchema)
@errors(blp, 404)
def my_card(args: dict[str, Any]) -> dict[str, Any]:
    """居民健康档案信息卡 (front and back; names, phones and the address masked)."""
    view = services.my_card(require_principal(), args.get("resident_id"))
    commit()
    return view


@blp.route("/health-forms/<uuid:form_id>", methods=["GET"])
@blp.auth(roles=RESIDENT)
@blp.response(200, MpHealthFormSchema)
@errors(blp, 404)
def my_form(form_id: uuid.UUID) -> dict[str, Any]:
    """One form with the printed labels and derived values (personal fields masked). 404
    `health_form_not_found` for a form of someone not bound or of a hidden category."""
    view = services.my_form(require_principal(), form_id)
    commit()
    return view
