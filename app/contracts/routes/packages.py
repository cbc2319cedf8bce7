"""Service packages (`/api/v1/service-packages`): maintenance, versions, the eligibility picker.

Every staff member reads the district-wide packages and their own centre's (another centre's
package is a 404). District admins maintain every package; centre admins their own centre's
(`app.contracts.services.packages` has the rules). A published version never changes (409):
create a new version, edit the draft, publish it (the previous version is retired).
"""

from __future__ import annotations

import uuid
from typing import Any

from app.contracts.schemas.packages import (
    EligibleListSchema,
    EligibleQuerySchema,
    PackageCreateSchema,
    PackageQuerySchema,
    PackageSchema,
    PackageUpdateSchema,
)
from app.contracts.services import packages as services
from app.core import audit, clock
from app.core.api import Blueprint
from app.core.auth import ADMINS, ALL_STAFF, require_principal
from app.core.db import commit
from app.core.errors import BusinessRuleViolation
from app.core.pagination import Page, page_schema
from app.residents.services.common import HEALTH_VIEW_ROLES, get_resident, hidden_special_groups

blp = Blueprint(
    "contracts_packages",
    __name__,
    url_prefix="/api/v1/service-packages",
    description="家庭医生签约：服务包（基础包、个性化服务包）维护与版本",
)


@blp.route("", methods=["POST"])
@blp.auth(roles=ADMINS)
@blp.arguments(PackageCreateSchema)
@blp.response(201, PackageSchema)
def create_package(args: dict[str, Any]) -> Any:
    """Create a package as a draft (version 1). Basic packages are district-wide.
    Roles: district_admin (district-wide or a centre's), centre_admin (own centre)."""
    package = services.create_package(require_principal(), args)
    commit()
    return package


@blp.route("", methods=["GET"])
@blp.auth(roles=ALL_STAFF)
@blp.arguments(PackageQuerySchema, location="query")
@blp.response(200, page_schema(PackageSchema))
def list_packages(args: dict[str, Any]) -> Page[Any]:
    """District-wide packages and the caller's centre's (district roles: all), every version.
    Roles: all staff."""
    return services.list_packages(require_principal(), **args)


@blp.route("/eligible", methods=["GET"])
@blp.auth(roles=HEALTH_VIEW_ROLES)
@blp.arguments(EligibleQuerySchema, location="query")
@blp.response(200, EligibleListSchema)
def eligible_packages(args: dict[str, Any]) -> Any:
    """The published packages a resident could sign at the centre, each with `eligible` and the
    reason when not (age, group, sex, validity). Roles: nurse, doctor, team_leader, public_health,
    centre_admin, district_admin."""
    principal = require_principal()
    resident = get_resident(args["resident_id"])
    institution_id = args.get("institution_id") or principal.institution_id or resident.institution_id
    if (
        principal.institution_id is not None
        and args.get("institution_id") is not None
        and args["institution_id"] != principal.institution_id
    ):
        raise BusinessRuleViolation(
            "只能查询本社康中心可签约的服务包",
            code="other_centre",
            errors={"institution_id": ["须为本社康中心"]},
        )
    on = args.get("on") or clock.today_local()
    # DATA-05: judged as if the resident's special groups the caller may not see did not exist.
    hidden = frozenset(hidden_special_groups(principal))
    results = services.eligible_packages(resident, institution_id, on, hidden_groups=hidden)
    audit.record(
        "contract.eligible_packages",
        "resident",
        resident.id,
        resident_id=resident.id,
        detail={"on": on.isoformat(), "institution_id": str(institution_id)},
    )
    commit()
    return {"resident_id": resident.id, "institution_id": institution_id, "on": on, "packages": results}


@blp.route("/<uuid:package_id>", methods=["GET"])
@blp.auth(roles=ALL_STAFF)
@blp.response(200, PackageSchema)
def get_package(package_id: uuid.UUID) -> Any:
    """One package version with its items. Roles: all staff."""
    return services.get_package(package_id, require_principal())


@blp.route("/<uuid:package_id>", methods=["PATCH"])
@blp.auth(roles=ADMINS)
@blp.arguments(PackageUpdateSchema)
@blp.response(200, PackageSchema)
def update_package(args: dict[str, Any], package_id: uuid.UUID) -> Any:
    """Edit a draft (`items` replace the draft's items); a published or retired version is a 409.
    Roles: district_admin, centre_admin (own centre's packages)."""
    package = services.update_package(require_principal(), package_id, args)
    commit()
    return package


@blp.route("/<uuid:package_id>/publish", methods=["POST"])
@blp.auth(roles=ADMINS)
@blp.response(200, PackageSchema)
def publish_package(package_id: uuid.UUID) -> Any:
    """Publish a draft; the previously published version of the same code is retired.
    Roles: district_admin, centre_admin (own centre's packages)."""
    package = services.publish_package(require_principal(), package_id)
    commit()
    return package


@blp.route("/<uuid:package_id>/versions", methods=["POST"])
@blp.auth(roles=ADMINS)
@blp.response(201, PackageSchema)
def new_package_version(package_id: uuid.UUID) -> Any:
    """A new draft version copied from a published (or retired) one. 409 when a draft exists.
    Roles: district_admin, centre_admin (own centre's packages)."""
    package = services.new_package_version(require_principal(), package_id)
    commit()
    return package


@blp.route("/<uuid:package_id>/retire", methods=["POST"])
@blp.auth(roles=ADMINS)
@blp.response(200, PackageSchema)
def retire_package(package_id: uuid.UUID) -> Any:
    """Stop offering a version (draft or published); signed contracts keep it.
    Roles: district_admin, centre_admin (own centre's packages)."""
    package = services.retire_package(require_principal(), package_id)
    commit()
    return package
