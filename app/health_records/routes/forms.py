"""The national forms of a record: fill, revise (versioned), void, read, history, print.

    POST /api/v1/health-records/{record_id}/forms       fill a form (version 1)
    GET  /api/v1/health-forms                           list (general forms unless a category is asked)
    GET  /api/v1/health-forms/{id}[?version=n]          one form (current or an earlier version)
    PUT  /api/v1/health-forms/{id}                      a new version (base_version: the one edited)
    POST /api/v1/health-forms/{id}/void                 作废 with a reason
    GET  /api/v1/health-forms/{id}/versions             who changed what, when, why
    GET  /api/v1/health-forms/{id}/print.pdf            the national form layout (A4)

严重精神障碍 and 肺结核 forms exist only for staff holding that category permission in the
responsible centre (DATA-05); for anyone else they are 404 (audited as denied).
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response, current_app

from app.core.api import Blueprint
from app.core.db import commit
from app.core.pagination import Page, page_schema
from app.health_records.schemas.forms import (
    HealthFormCreateSchema,
    HealthFormQuerySchema,
    HealthFormReviseSchema,
    HealthFormSchema,
    HealthFormSummarySchema,
    HealthFormVersionQuerySchema,
    HealthFormVersionSchema,
    HealthFormVoidSchema,
)
from app.health_records.services import access, printing, views
from app.health_records.services import forms as services

blp = Blueprint("health_forms", __name__, url_prefix="/api/v1", description="居民健康档案")

READERS = sorted(access.READER_ROLES)
WRITERS = sorted(access.WRITER_ROLES)


@blp.route("/health-records/<uuid:record_id>/forms", methods=["POST"])
@blp.auth(roles=WRITERS)
@blp.idempotent()
@blp.arguments(HealthFormCreateSchema)
@blp.response(201, HealthFormSchema)
@blp.alt_response(422, response="DEFAULT_ERROR", description="表单填写有误（errors 按字段给出中文说明）")
def create_form(args: dict[str, Any], record_id: uuid.UUID) -> dict[str, Any]:
    """Fill one form. `form_type`: personal_info, health_exam, elderly_selfcare, tb_first_visit,
    tb_follow_up, smd_supplement, smd_follow_up (see GET /health-records/codes for the fields)."""
    form = services.create_form(
        record_id, args["form_type"], args["data"], case_id=args["case_id"], reason=args["reason"]
    )
    commit()
    return views.form_view(
        services.FormView(form, services.definition(form.form_type), services.current_version(form))
    )


@blp.route("/health-forms", methods=["GET"])
@blp.auth(roles=READERS)
@blp.arguments(HealthFormQuerySchema, location="query")
@blp.response(200, page_schema(HealthFormSummarySchema))
def list_forms(args: dict[str, Any]) -> Page[Any]:
    """Forms of the caller's centre, newest first. Without `category` or `case_id`: general forms only."""
    found = services.list_forms(**args)
    commit()
    return Page([views.form_summary(f) for f in found.items], found.page, found.size, found.total)


@blp.route("/health-forms/<uuid:form_id>", methods=["GET"])
@blp.auth(roles=READERS)
@blp.arguments(HealthFormVersionQuerySchema, location="query")
@blp.response(200, HealthFormSchema)
def get_form(args: dict[str, Any], form_id: uuid.UUID) -> dict[str, Any]:
    """One form with its labels and derived values; `version` shows an earlier version."""
    shown = views.form_view(services.view_form(form_id, args.get("version")))
    commit()
    return shown


@blp.route("/health-forms/<uuid:form_id>", methods=["PUT"])
@blp.auth(roles=WRITERS)
@blp.arguments(HealthFormReviseSchema)
@blp.response(200, HealthFormSchema)
@blp.alt_response(409, response="DEFAULT_ERROR", description="已被他人修改（form_version_conflict）")
def revise_form(args: dict[str, Any], form_id: uuid.UUID) -> dict[str, Any]:
    """Save a new version (the whole form). The previous version is kept."""
    form = services.revise_form(
        form_id, args["data"], base_version=args["base_version"], reason=args["reason"]
    )
    commit()
    return views.form_view(
        services.FormView(form, services.definition(form.form_type), services.current_version(form))
    )


@blp.route("/health-forms/<uuid:form_id>/void", methods=["POST"])
@blp.auth(roles=WRITERS)
@blp.arguments(HealthFormVoidSchema)
@blp.response(200, HealthFormSummarySchema)
def void_form(args: dict[str, Any], form_id: uuid.UUID) -> dict[str, Any]:
    """作废 a form filled in error (kept with its versions; out of lists)."""
    form = services.void_form(form_id, reason=args["reason"])
    commit()
    return views.form_summary(form)


@blp.route("/health-forms/<uuid:form_id>/versions", methods=["GET"])
@blp.auth(roles=READERS)
@blp.response(200, HealthFormVersionSchema(many=True))
def versions(form_id: uuid.UUID) -> list[Any]:
    """Every version: which fields changed, who, when, why (no content: read a version for that)."""
    rows = services.list_versions(form_id)
    commit()
    return rows


@blp.route("/health-forms/<uuid:form_id>/print.pdf", methods=["GET"])
@blp.auth(roles=READERS)
@blp.arguments(HealthFormVersionQuerySchema, location="query")
@blp.doc(
    responses={
        "200": {
            "description": "The form in the national layout (A4 PDF, Chinese font embedded)",
            "content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}},
        }
    }
)
def print_form(args: dict[str, Any], form_id: uuid.UUID) -> Response:
    """Print the form (audited) for the centre's paper file."""
    printed = printing.print_form(form_id, args.get("version"))
    commit()
    response = current_app.response_class(printed.data, mimetype="application/pdf")
    response.headers["Content-Disposition"] = f'inline; filename="{printed.filename}"'
    response.headers["Cache-Control"] = "private, no-store"
    return response
