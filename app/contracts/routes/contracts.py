"""Contract views for staff (`/api/v1/contracts`): the signed-resident list, a contract's full
record, its history, the signature images and the code lists.

Roles: doctor, nurse, team_leader, centre_admin, public_health, district_admin, auditor (read).
Centre staff see their own centre's contracts (another centre's id is a 404, audited as denied);
district roles see every centre. Every read writes one audit row. Names and ID numbers are masked;
population groups follow the residents module's rules (null for auditors; 严重精神障碍/肺结核
only for doctors and public-health staff).
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response, current_app, request

from app.contracts.schemas.contracts import (
    ContractCodesSchema,
    ContractQuerySchema,
    ContractRecordSchema,
    ContractRowSchema,
    StaffContractEventSchema,
)
from app.contracts.services import views
from app.core.api import Blueprint
from app.core.auth import require_principal
from app.core.db import commit
from app.core.pagination import Page, page_schema

blp = Blueprint("contracts_contracts", __name__, url_prefix="/api/v1", description="家庭医生签约")

CONTRACT = "/contracts/<uuid:contract_id>"
READERS = views.VIEW_ROLES
PNG_RESPONSE = {
    "200": {
        "description": "The signature image",
        "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
    }
}


@blp.route("/contracts/codes", methods=["GET"])
@blp.auth(roles=READERS)
@blp.response(200, ContractCodesSchema)
def codes() -> dict[str, Any]:
    """Statuses, channels, signing ways, history actions, actor kinds, signature roles, attachment
    kinds, package kinds, payment statuses and progress steps, each with its Chinese label."""
    return views.code_lists()


@blp.route("/contracts", methods=["GET"])
@blp.auth(roles=READERS)
@blp.arguments(ContractQuerySchema, location="query")
@blp.response(200, page_schema(ContractRowSchema))
def list_contracts(args: dict[str, Any]) -> Page[dict[str, Any]]:
    """Signed residents (签约居民): by team, doctor, status (default 已签约), package, population group,
    channel, expiry month, signed date range and resident (exact ID number or mobile, pinyin
    initials, name). Newest first; by end date with `expiry_month`. Audited as one search.
    403 `special_group_not_permitted` / `population_group_not_permitted` for a group the role may
    not filter by."""
    found = views.list_contracts(require_principal(), **args)
    commit()
    return found


@blp.route(CONTRACT, methods=["GET"])
@blp.auth(roles=READERS)
@blp.response(200, ContractRecordSchema)
@blp.alt_response(404, response="DEFAULT_ERROR", description="未找到（或不属于本中心）")
def get_contract(contract_id: uuid.UUID) -> dict[str, Any]:
    """A contract's full record: parties, packages with fees and items, the agreement as signed and
    its SHA-256, signatures present (images: `.../signatures/{role}`), the signer (proxy, guardian),
    period, bill and payment, print count, attachments. Audited."""
    record = views.view_contract(require_principal(), contract_id)
    commit()
    return record


@blp.route(f"{CONTRACT}/history", methods=["GET"])
@blp.auth(roles=READERS)
@blp.response(200, StaffContractEventSchema(many=True))
@blp.alt_response(404, response="DEFAULT_ERROR", description="未找到（或不属于本中心）")
def get_history(contract_id: uuid.UUID) -> list[dict[str, Any]]:
    """Every event of the contract, oldest first: action, status change, actor (kind, role, name
    for staff), channel, reason, time. Audited."""
    rows = views.contract_history(contract_id)
    commit()
    return rows


def _png(contract_id: uuid.UUID, role: str) -> Response:
    signature = views.signature_image(contract_id, role)
    commit()
    response = current_app.response_class(signature.image, mimetype="image/png")
    response.set_etag(signature.sha256)
    response.headers["Cache-Control"] = "private, no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.make_conditional(request)
    return response


@blp.route(f"{CONTRACT}/signatures/resident", methods=["GET"])
@blp.auth(roles=READERS)
@blp.doc(responses=PNG_RESPONSE)
@blp.alt_response(404, response="DEFAULT_ERROR", description="未找到签约或没有居民签名")
def get_resident_signature(contract_id: uuid.UUID) -> Response:
    """The resident's (or their signer's) signature image, PNG. Staff of the contract's centre;
    audited."""
    return _png(contract_id, "resident")


@blp.route(f"{CONTRACT}/signatures/doctor", methods=["GET"])
@blp.auth(roles=READERS)
@blp.doc(responses=PNG_RESPONSE)
@blp.alt_response(404, response="DEFAULT_ERROR", description="未找到签约或没有医生签名")
def get_doctor_signature(contract_id: uuid.UUID) -> Response:
    """The family doctor's signature image, PNG. Staff of the contract's centre; audited."""
    return _png(contract_id, "doctor")
