"""Residents and households for desk and tablet (`/api/v1/residents`, `/api/v1/households`).

Roles (the role sets live in `app.residents.services.common`):

- desk roles (nurse, doctor, team_leader, public_health, centre_admin, district_admin): create,
  update, status, guardian, households, consents, and everything below;
- auditor: read a resident (without health data), history, transfers, consents, households;
- cashier: search, and read a resident's basic record (without health data);
- centre_admin of the current centre, district_admin: transfer to another centre;
- holders of `pii:unmask` (today centre_admin, district_admin): unmask one field, with a reason.

Centre staff see their own centre's residents only (404 otherwise, audited as denied); district
roles see all. Every read is audited (one row), every write is audited and written to history.
"""

from __future__ import annotations

import uuid
from typing import Any

from app.core.api import Blueprint
from app.core.auth import ALL_STAFF, require_principal
from app.core.db import commit
from app.core.pagination import Page, page_schema
from app.residents import services
from app.residents.schemas import (
    ConsentGrantSchema,
    ConsentRevokeSchema,
    GuardianRequestSchema,
    HeadChangeSchema,
    HouseholdCreateSchema,
    HouseholdMemberInputSchema,
    HouseholdQuerySchema,
    HouseholdRelationshipSchema,
    HouseholdSchema,
    ResidentChangeSchema,
    ResidentCodesSchema,
    ResidentConsentSchema,
    ResidentCreateSchema,
    ResidentHistoryQuerySchema,
    ResidentQuerySchema,
    ResidentSchema,
    ResidentStatusChangeSchema,
    ResidentSummarySchema,
    ResidentTransferSchema,
    ResidentUnmaskResultSchema,
    ResidentUnmaskSchema,
    ResidentUpdateSchema,
    TransferRequestSchema,
    code_lists,
)
from app.residents.services import DESK_ROLES, FINDER_ROLES, READER_ROLES, TRANSFER_ROLES

blp = Blueprint(
    "residents",
    __name__,
    url_prefix="/api/v1",
    description="Residents, households, guardians, consent and transfer between centres",
)

RESIDENT = "/residents/<uuid:resident_id>"
HOUSEHOLD = "/households/<uuid:household_id>"


# --- residents --------------------------------------------------------------------------------


@blp.route("/residents/codes", methods=["GET"])
@blp.auth(roles=ALL_STAFF)
@blp.response(200, ResidentCodesSchema)
def codes() -> dict[str, Any]:
    """Code lists with Chinese labels: ID types, population groups, relationships, consent purposes
    (with the current text version), channels and unmask reasons. All staff."""
    return code_lists()


@blp.route("/residents", methods=["POST"])
@blp.auth(roles=DESK_ROLES)
@blp.idempotent()
@blp.arguments(ResidentCreateSchema)
@blp.response(201, ResidentSchema)
@blp.alt_response(409, response="DEFAULT_ERROR", description="resident_exists: 该证件号码已在某中心建档")
def create_resident(args: dict[str, Any]) -> Any:
    """建档 (desk roles). Needs an `Idempotency-Key`. 身份证 numbers are checked (checksum) and give
    sex and birth date; under 14 a guardian is required. A known ID number is 409 `resident_exists`
    naming only the managing centre."""
    resident = services.create_resident(require_principal(), **args)
    commit()
    return resident


@blp.route("/residents", methods=["GET"])
@blp.auth(roles=FINDER_ROLES)
@blp.arguments(ResidentQuerySchema, location="query")
@blp.response(200, page_schema(ResidentSummarySchema))
def search_residents(args: dict[str, Any]) -> Page[Any]:
    """Find residents (desk roles, auditor, cashier): exact ID number or mobile (blind index), name
    or pinyin initials, household, community, status. Masked, no health data; audited as one search."""
    found = services.search_residents(**args)
    commit()
    return found


@blp.route(RESIDENT, methods=["GET"])
@blp.auth(roles=FINDER_ROLES)
@blp.response(200, ResidentSchema)
def get_resident(resident_id: uuid.UUID) -> Any:
    """One resident (desk roles, auditor, cashier), masked; population groups only for care roles and
    special categories only for doctors and public-health staff. Audited read; 404 outside scope."""
    resident = services.view_resident(resident_id)
    commit()
    return resident


@blp.route(RESIDENT, methods=["PATCH"])
@blp.auth(roles=DESK_ROLES)
@blp.arguments(ResidentUpdateSchema)
@blp.response(200, ResidentSchema)
def update_resident(args: dict[str, Any], resident_id: uuid.UUID) -> Any:
    """Correct a resident's details (desk roles); history names the changed fields. `status` and the
    managing centre have their own endpoints."""
    reason = args.pop("reason", None)
    resident = services.update_resident(require_principal(), resident_id, args, reason=reason)
    commit()
    return resident


@blp.route(f"{RESIDENT}/status", methods=["POST"])
@blp.auth(roles=DESK_ROLES)
@blp.arguments(ResidentStatusChangeSchema)
@blp.response(200, ResidentSchema)
def change_status(args: dict[str, Any], resident_id: uuid.UUID) -> Any:
    """迁出 / 死亡 / 迁回 with a date (desk roles). 409 for a transition the status machine refuses."""
    resident = services.change_status(require_principal(), resident_id, **args)
    commit()
    return resident


@blp.route(f"{RESIDENT}/transfer", methods=["POST"])
@blp.auth(roles=TRANSFER_ROLES)
@blp.arguments(TransferRequestSchema)
@blp.response(200, ResidentTransferSchema)
def transfer_resident(args: dict[str, Any], resident_id: uuid.UUID) -> Any:
    """管理机构变更 (centre_admin of the current centre, district_admin): one record is kept, with a
    history row. A household head with other members moves with `include_household`."""
    transfer = services.transfer_resident(require_principal(), resident_id, **args)
    commit()
    return transfer


@blp.route(f"{RESIDENT}/transfers", methods=["GET"])
@blp.auth(roles=READER_ROLES)
@blp.response(200, ResidentTransferSchema(many=True))
def list_transfers(resident_id: uuid.UUID) -> Any:
    """The resident's transfers between centres, newest first (desk roles, auditor). Audited."""
    found = services.list_transfers(resident_id)
    commit()
    return found


@blp.route(f"{RESIDENT}/changes", methods=["GET"])
@blp.auth(roles=READER_ROLES)
@blp.arguments(ResidentHistoryQuerySchema, location="query")
@blp.response(200, page_schema(ResidentChangeSchema))
def list_changes(args: dict[str, Any], resident_id: uuid.UUID) -> Page[Any]:
    """Change history: action, changed field names, who, when, why; never values (desk roles, auditor)."""
    found = services.list_changes(resident_id, **args)
    commit()
    return found


@blp.route(f"{RESIDENT}/guardian", methods=["PUT"])
@blp.auth(roles=DESK_ROLES)
@blp.arguments(GuardianRequestSchema)
@blp.response(200, ResidentSchema)
def set_guardian(args: dict[str, Any], resident_id: uuid.UUID) -> Any:
    """Set or replace the guardian (desk roles): an adult, active resident of the same scope."""
    resident = services.set_guardian(require_principal(), resident_id, **args)
    commit()
    return resident


@blp.route(f"{RESIDENT}/guardian", methods=["DELETE"])
@blp.auth(roles=DESK_ROLES)
@blp.response(200, ResidentSchema)
def remove_guardian(resident_id: uuid.UUID) -> Any:
    """Remove the guardian (desk roles); 409 under 14, where a guardian is required."""
    resident = services.remove_guardian(require_principal(), resident_id)
    commit()
    return resident


@blp.route(f"{RESIDENT}/consents", methods=["GET"])
@blp.auth(roles=READER_ROLES)
@blp.response(200, ResidentConsentSchema(many=True))
def list_consents(resident_id: uuid.UUID) -> Any:
    """Every consent record, active, revoked or superseded (desk roles, auditor). Audited."""
    found = services.list_consents(resident_id)
    commit()
    return found


@blp.route(f"{RESIDENT}/consents", methods=["POST"])
@blp.auth(roles=DESK_ROLES)
@blp.arguments(ConsentGrantSchema)
@blp.response(201, ResidentConsentSchema)
def grant_consent(args: dict[str, Any], resident_id: uuid.UUID) -> Any:
    """Record a consent to the current text of one purpose (desk roles); under 14 the guardian grants.
    A consent to an older text is superseded; the same version again is 409."""
    consent = services.grant_consent(require_principal(), resident_id, **args)
    commit()
    return consent


@blp.route(f"{RESIDENT}/consents/<uuid:consent_id>/revoke", methods=["POST"])
@blp.auth(roles=DESK_ROLES)
@blp.arguments(ConsentRevokeSchema)
@blp.response(200, ResidentConsentSchema)
def revoke_consent(args: dict[str, Any], resident_id: uuid.UUID, consent_id: uuid.UUID) -> Any:
    """Withdraw a consent (desk roles); processing for the purpose stops. 409 if already ended."""
    consent = services.revoke_consent(require_principal(), resident_id, consent_id, **args)
    commit()
    return consent


@blp.route(f"{RESIDENT}/unmask", methods=["POST"])
@blp.auth(roles=READER_ROLES)
@blp.arguments(ResidentUnmaskSchema)
@blp.response(200, ResidentUnmaskResultSchema)
def unmask(args: dict[str, Any], resident_id: uuid.UUID) -> dict[str, Any]:
    """One personal field in clear (name, ID number, phone, an address). Needs the `pii:unmask`
    permission (403 `unmask_not_permitted` otherwise) and a reason; writes an audit row."""
    value = services.unmask(
        require_principal(), resident_id, field=args["field"], reason=args["reason"], note=args.get("note")
    )
    commit()
    return {"field": args["field"], "value": value}


# --- households -------------------------------------------------------------------------------


@blp.route("/households", methods=["POST"])
@blp.auth(roles=DESK_ROLES)
@blp.arguments(HouseholdCreateSchema)
@blp.response(201, HouseholdSchema)
def create_household(args: dict[str, Any]) -> Any:
    """A household with its head and members (desk roles); each resident is in one household at most."""
    household = services.create_household(require_principal(), **args)
    commit()
    return household


@blp.route("/households", methods=["GET"])
@blp.auth(roles=READER_ROLES)
@blp.arguments(HouseholdQuerySchema, location="query")
@blp.response(200, page_schema(HouseholdSchema))
def list_households(args: dict[str, Any]) -> Page[Any]:
    """Households in scope, by member or by the head's community (desk roles, auditor). Audited."""
    found = services.list_households(**args)
    commit()
    return found


@blp.route(HOUSEHOLD, methods=["GET"])
@blp.auth(roles=READER_ROLES)
@blp.response(200, HouseholdSchema)
def get_household(household_id: uuid.UUID) -> Any:
    """One household with its members, masked (desk roles, auditor). Audited; 404 outside scope."""
    household = services.view_household(household_id)
    commit()
    return household


@blp.route(HOUSEHOLD, methods=["DELETE"])
@blp.auth(roles=DESK_ROLES)
@blp.response(204)
def dissolve_household(household_id: uuid.UUID) -> None:
    """Dissolve a household (desk roles); the residents stay, their memberships end (in history)."""
    services.dissolve_household(require_principal(), household_id)
    commit()


@blp.route(f"{HOUSEHOLD}/head", methods=["PUT"])
@blp.auth(roles=DESK_ROLES)
@blp.arguments(HeadChangeSchema)
@blp.response(200, HouseholdSchema)
def change_head(args: dict[str, Any], household_id: uuid.UUID) -> Any:
    """变更户主 (desk roles): every other member's relationship to the new head is given again."""
    household = services.change_head(require_principal(), household_id, **args)
    commit()
    return household


@blp.route(f"{HOUSEHOLD}/members", methods=["POST"])
@blp.auth(roles=DESK_ROLES)
@blp.arguments(HouseholdMemberInputSchema)
@blp.response(201, HouseholdSchema)
def add_member(args: dict[str, Any], household_id: uuid.UUID) -> Any:
    """Add a resident of the same centre to the household (desk roles)."""
    household = services.add_member(require_principal(), household_id, **args)
    commit()
    return household


@blp.route(f"{HOUSEHOLD}/members/<uuid:resident_id>", methods=["PATCH"])
@blp.auth(roles=DESK_ROLES)
@blp.arguments(HouseholdRelationshipSchema)
@blp.response(200, HouseholdSchema)
def change_member_relationship(args: dict[str, Any], household_id: uuid.UUID, resident_id: uuid.UUID) -> Any:
    """Correct a member's relationship to the head (desk roles)."""
    household = services.change_member_relationship(require_principal(), household_id, resident_id, **args)
    commit()
    return household


@blp.route(f"{HOUSEHOLD}/members/<uuid:resident_id>", methods=["DELETE"])
@blp.auth(roles=DESK_ROLES)
@blp.response(200, HouseholdSchema)
def remove_member(household_id: uuid.UUID, resident_id: uuid.UUID) -> Any:
    """Remove a member other than the head (desk roles)."""
    household = services.remove_member(require_principal(), household_id, resident_id)
    commit()
    return household
