"""我的家庭医生 in the mini-program (`/mp/v1/my-doctor`, `/mp/v1/contracts/{id}/history`,
`/mp/v1/contracts/{id}/agreement.pdf`).

For the logged-in resident and the family members they act for (active bindings); any other
resident or contract is a 404 audited as denied. No rules here: `app.contracts.services.views`.
"""

# flask-smorest ships no type information: its decorators are untyped by nature.

from __future__ import annotations

import uuid
from typing import Any

from flask import Response, current_app

from app.contracts.schemas.contracts import ContractEventViewSchema, MyDoctorQuerySchema, MyDoctorSchema
from app.contracts.services import views
from app.core.api import Blueprint
from app.core.auth import require_principal
from app.core.db import commit
from app.mp_accounts.services.sessions import RESIDENT_ROLE
from miniprogram_api._docs import errors

RESIDENT = [RESIDENT_ROLE]

blp = Blueprint("mp_my_doctor", __name__, url_prefix="/mp/v1", description="家庭医生签约（小程序）")

PDF_RESPONSE = {
    "200": {
        "description": "The agreement as signed (PDF)",
        "content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}},
    }
}


@blp.route("/my-doctor", methods=["GET"])
@blp.auth(roles=RESIDENT)
@blp.arguments(MyDoctorQuerySchema, location="query")
@blp.response(200, MyDoctorSchema)
@errors(blp, 404)
def my_doctor(args: dict[str, Any]) -> dict[str, Any]:
    """我的家庭医生: the current contract (or the latest application) of the caller, or of the
    family member `resident_id`: doctor (name, title, photo), team, centre (address, phone),
    packages with their services and frequencies, period and days remaining, status, payment,
    application progress (提交申请 → 团队审核 → 居民确认 → 缴费 → 生效) and the links to the
    agreement PDF and the history. `has_contract` false: never signed or applied.
    404 `identity_not_bound` before 实名认证; `resident_not_found` for someone not bound."""
    view = views.my_doctor(require_principal(), args.get("resident_id"))
    commit()
    return view


@blp.route("/contracts/<uuid:contract_id>/history", methods=["GET"])
@blp.auth(roles=RESIDENT)
@blp.response(200, ContractEventViewSchema(many=True))
@errors(blp, 404)
def history(contract_id: uuid.UUID) -> list[dict[str, Any]]:
    """The contract's history, oldest first; staff appear by role only (not by name)."""
    rows = views.mp_history(require_principal(), contract_id)
    commit()
    return rows


@blp.route("/contracts/<uuid:contract_id>/agreement.pdf", methods=["GET"])
@blp.auth(roles=RESIDENT)
@blp.doc(responses=PDF_RESPONSE)
@errors(blp, 404)
def agreement_pdf(contract_id: uuid.UUID) -> Response:
    """The agreement as signed, as a PDF (Chinese, with the contract number and its QR code). For
    the resident's own and their family's contracts; audited as a download (not a staff print)."""
    pdf, filename = views.mp_agreement_pdf(require_principal(), contract_id)
    commit()
    response = current_app.response_class(pdf, mimetype="application/pdf")
    response.headers["Content-Disposition"] = f'inline; filename="{filename}"'
    response.headers["Cache-Control"] = "private, no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
