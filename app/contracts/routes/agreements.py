"""Agreement templates and clauses (`/api/v1/agreement-templates`): maintenance, versions, the
current template of a centre and the preview a doctor sees before signing.

Every staff member reads the district-wide templates and their own centre's (another centre's
template is a 404). District admins maintain every template; centre admins their own centre's. A
published version never changes (409): create a new version, edit the draft, publish it.
"""

from __future__ import annotations

import uuid
from typing import Any

from app.contracts.schemas.agreements import (
    AgreementTemplateSchema,
    CurrentTemplateQuerySchema,
    TemplateCreateSchema,
    TemplatePlaceholderSchema,
    TemplatePreviewInSchema,
    TemplatePreviewSchema,
    TemplateQuerySchema,
    TemplateUpdateSchema,
)
from app.contracts.services import agreements as services
from app.core.api import Blueprint
from app.core.auth import ADMINS, ALL_STAFF, require_principal
from app.core.db import commit
from app.core.errors import BusinessRuleViolation, NotFound
from app.core.pagination import Page, page_schema
from app.residents.services.common import HEALTH_VIEW_ROLES

blp = Blueprint(
    "contracts_agreements",
    __name__,
    url_prefix="/api/v1/agreement-templates",
    description="家庭医生签约：协议模板与条款维护、版本、预览",
)


@blp.route("", methods=["POST"])
@blp.auth(roles=ADMINS)
@blp.arguments(TemplateCreateSchema)
@blp.response(201, AgreementTemplateSchema)
def create_template(args: dict[str, Any]) -> Any:
    """Create a template as a draft (version 1); clause placeholders are checked (422 naming an
    unknown one). Roles: district_admin (district-wide or a centre's), centre_admin (own centre)."""
    template = services.create_template(require_principal(), args)
    commit()
    return template


@blp.route("", methods=["GET"])
@blp.auth(roles=ALL_STAFF)
@blp.arguments(TemplateQuerySchema, location="query")
@blp.response(200, page_schema(AgreementTemplateSchema))
def list_templates(args: dict[str, Any]) -> Page[Any]:
    """District-wide templates and the caller's centre's (district roles: all), every version.
    Roles: all staff."""
    return services.list_templates(require_principal(), **args)


@blp.route("/current", methods=["GET"])
@blp.auth(roles=ALL_STAFF)
@blp.arguments(CurrentTemplateQuerySchema, location="query")
@blp.response(200, AgreementTemplateSchema)
def current_template(args: dict[str, Any]) -> Any:
    """The template new contracts of the centre are signed with: the centre's published template,
    else the district's. 404 when none is published. Roles: all staff."""
    principal = require_principal()
    requested = args.get("institution_id")
    if principal.institution_id is not None and requested not in (None, principal.institution_id):
        raise BusinessRuleViolation(
            "只能查看本社康中心的协议模板", code="other_centre", errors={"institution_id": ["须为本社康中心"]}
        )
    template = services.current_template(requested or principal.institution_id)
    if template is None:
        raise NotFound("尚未发布签约协议模板", code="agreement_template_not_found")
    return template


@blp.route("/placeholders", methods=["GET"])
@blp.auth(roles=ALL_STAFF)
@blp.response(200, TemplatePlaceholderSchema(many=True))
def placeholders() -> Any:
    """The placeholders clause text may use, with their Chinese meaning. Roles: all staff."""
    return [{"name": name, "label": label} for name, label in services.PLACEHOLDERS.items()]


@blp.route("/<uuid:template_id>", methods=["GET"])
@blp.auth(roles=ALL_STAFF)
@blp.response(200, AgreementTemplateSchema)
def get_template(template_id: uuid.UUID) -> Any:
    """One template version with its clauses. Roles: all staff."""
    return services.get_template(template_id, require_principal())


@blp.route("/<uuid:template_id>", methods=["PATCH"])
@blp.auth(roles=ADMINS)
@blp.arguments(TemplateUpdateSchema)
@blp.response(200, AgreementTemplateSchema)
def update_template(args: dict[str, Any], template_id: uuid.UUID) -> Any:
    """Edit a draft (`clauses` replace all its clauses); a published or retired version is a 409.
    Roles: district_admin, centre_admin (own centre's templates)."""
    template = services.update_template(require_principal(), template_id, args)
    commit()
    return template


@blp.route("/<uuid:template_id>/publish", methods=["POST"])
@blp.auth(roles=ADMINS)
@blp.response(200, AgreementTemplateSchema)
def publish_template(template_id: uuid.UUID) -> Any:
    """Publish a draft; the previously published version of the same code is retired.
    Roles: district_admin, centre_admin (own centre's templates)."""
    template = services.publish_template(require_principal(), template_id)
    commit()
    return template


@blp.route("/<uuid:template_id>/versions", methods=["POST"])
@blp.auth(roles=ADMINS)
@blp.response(201, AgreementTemplateSchema)
def new_template_version(template_id: uuid.UUID) -> Any:
    """A new draft version copied from a published (or retired) one. 409 when a draft exists.
    Roles: district_admin, centre_admin (own centre's templates)."""
    template = services.new_template_version(require_principal(), template_id)
    commit()
    return template


@blp.route("/<uuid:template_id>/retire", methods=["POST"])
@blp.auth(roles=ADMINS)
@blp.response(200, AgreementTemplateSchema)
def retire_template(template_id: uuid.UUID) -> Any:
    """Stop using a version (draft or published); signed contracts keep their text.
    Roles: district_admin, centre_admin (own centre's templates)."""
    template = services.retire_template(require_principal(), template_id)
    commit()
    return template


@blp.route("/<uuid:template_id>/preview", methods=["POST"])
@blp.auth(roles=HEALTH_VIEW_ROLES)
@blp.arguments(TemplatePreviewInSchema)
@blp.response(200, TemplatePreviewSchema)
def preview_template(args: dict[str, Any], template_id: uuid.UUID) -> Any:
    """The template rendered for a resident, a team (and doctor) and packages, with overrides of
    the personalisable clauses; shows which clauses may be personalised. Saves nothing (one audit
    row). Roles: nurse, doctor, team_leader, public_health, centre_admin, district_admin."""
    preview = services.preview_template(require_principal(), template_id, **args)
    commit()  # the audit row of reading the resident
    return preview
