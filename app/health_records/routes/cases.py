"""专案管理 of 肺结核 and 严重精神障碍 patients: open, work list (what is due), read, close.

    POST /api/v1/health-cases                  open a case (TB: with the notice time: 72 h clock)
    GET  /api/v1/health-cases?category=tb      the centre's cases, soonest due first
    GET  /api/v1/health-cases/{id}             one case, its schedule and its forms
    POST /api/v1/health-cases/{id}/close       结案
    POST /api/v1/health-cases/{id}/missed-visits   肺结核: a home visit that did not find the patient

Only staff holding the category permission in the responsible centre (DATA-05).
"""

from __future__ import annotations

import uuid
from typing import Any

from app.core.api import Blueprint
from app.core.db import commit
from app.core.pagination import Page, page_schema
from app.health_records.schemas.forms import (
    HealthCaseCloseSchema,
    HealthCaseCreateSchema,
    HealthCaseDetailSchema,
    HealthCaseMissedVisitSchema,
    HealthCaseQuerySchema,
    HealthCaseSchema,
)
from app.health_records.services import access, cases, views

blp = Blueprint("health_cases", __name__, url_prefix="/api/v1", description="居民健康档案")

WRITERS = sorted(access.WRITER_ROLES)


@blp.route("/health-cases", methods=["POST"])
@blp.auth(roles=WRITERS)
@blp.idempotent()
@blp.arguments(HealthCaseCreateSchema)
@blp.response(201, HealthCaseDetailSchema)
@blp.alt_response(409, response="DEFAULT_ERROR", description="已有进行中的同类专案")
def open_case(args: dict[str, Any]) -> dict[str, Any]:
    """Open a case in the resident's managing centre (which becomes responsible for it)."""
    case = cases.open_case(args.pop("resident_id"), args.pop("category"), **args)
    commit()
    return views.case_view(case, with_forms=True)


@blp.route("/health-cases", methods=["GET"])
@blp.auth(roles=WRITERS)
@blp.arguments(HealthCaseQuerySchema, location="query")
@blp.response(200, page_schema(HealthCaseSchema))
def list_cases(args: dict[str, Any]) -> Page[Any]:
    """The work list: cases of one category, soonest due first (`due_before` for what is due)."""
    status = args.pop("status")
    found = cases.list_cases(args.pop("category"), status=None if status == "all" else status, **args)
    commit()
    return Page([views.case_view(c) for c in found.items], found.page, found.size, found.total)


@blp.route("/health-cases/<uuid:case_id>", methods=["GET"])
@blp.auth(roles=WRITERS)
@blp.response(200, HealthCaseDetailSchema)
def get_case(case_id: uuid.UUID) -> dict[str, Any]:
    case = cases.view_case(case_id)
    commit()
    return views.case_view(case, with_forms=True)


@blp.route("/health-cases/<uuid:case_id>/close", methods=["POST"])
@blp.auth(roles=WRITERS)
@blp.arguments(HealthCaseCloseSchema)
@blp.response(200, HealthCaseDetailSchema)
def close_case(args: dict[str, Any], case_id: uuid.UUID) -> dict[str, Any]:
    """结案 (TB: treatment stopped; SMD: moved away, died …)."""
    case = cases.close_case(case_id, **args)
    commit()
    return views.case_view(case, with_forms=True)


@blp.route("/health-cases/<uuid:case_id>/missed-visits", methods=["POST"])
@blp.auth(roles=WRITERS)
@blp.arguments(HealthCaseMissedVisitSchema)
@blp.response(200, HealthCaseDetailSchema)
@blp.alt_response(409, response="DEFAULT_ERROR", description="已完成第一次入户随访 / 已结案")
def missed_visit(args: dict[str, Any], case_id: uuid.UUID) -> dict[str, Any]:
    """肺结核: record a home visit before the first visit that did not find the patient. The second
    within 72 h of the notice makes the report to the higher-level institution due (`tb_report`)."""
    case = cases.record_missed_first_visit(case_id, attempted_at=args["attempted_at"])
    commit()
    return views.case_view(case, with_forms=True)
