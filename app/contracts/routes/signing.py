"""Signing in person (`/api/v1/contracts`): desk (诊间签约), home visit on a tablet (上门签约) with an
offline batch upload, and household signing (家庭签约).

Roles: doctor, nurse, team_leader, centre_admin — of the team's centre (another centre's team,
resident or household is a 404). The rules are in `app.contracts.services.signing` and `core`.
"""

from __future__ import annotations

from typing import Any

from app.contracts.schemas.signing import (
    BatchResultSchema,
    DeskSignSchema,
    HomeVisitBatchSchema,
    HomeVisitSignSchema,
    HouseholdResultSchema,
    HouseholdSignSchema,
    SigningResultSchema,
)
from app.contracts.services import signing
from app.core.api import Blueprint
from app.core.db import commit

blp = Blueprint("contracts_signing", __name__, url_prefix="/api/v1", description="家庭医生签约")

ROLES = signing.SIGNING_ROLES


@blp.route("/contracts", methods=["POST"])
@blp.auth(roles=ROLES)
@blp.idempotent()
@blp.arguments(DeskSignSchema)
@blp.response(201, SigningResultSchema)
@blp.alt_response(404, response="DEFAULT_ERROR", description="居民、团队、医生不存在或不属于本中心")
def sign_at_desk(args: dict[str, Any]) -> Any:
    """诊间签约: create and sign a contract in one step (requires `Idempotency-Key`).

    Active at once when nothing is to be paid, else `awaiting_payment` with a bill for the cashier;
    the reply says what to do next (print the agreement; pay the bill). 409 `resident_already_signed`
    names where and since when; 409 `doctor_capacity_full` when the doctor is full.
    Roles: doctor, nurse, team_leader, centre_admin.
    """
    reply = signing.sign_at_desk(args)
    commit()
    return reply


@blp.route("/contracts/home-visit", methods=["POST"])
@blp.auth(roles=ROLES)
@blp.arguments(HomeVisitSignSchema)
@blp.response(201, SigningResultSchema)
@blp.alt_response(
    200, schema=SigningResultSchema, description="A retry: the contract this submission created"
)
@blp.alt_response(404, response="DEFAULT_ERROR", description="居民、团队、医生不存在或不属于本中心")
@blp.alt_response(409, response="DEFAULT_ERROR", description="已签约、医生已满或 submission_conflict")
def sign_home_visit(args: dict[str, Any]) -> Any:
    """上门签约 from a tablet, with both signatures (PNG) and an optional photo.

    `client_submission_id` makes it safe to retry: the same id and body return the same contract
    (200, identical body, also when the first response was lost); the same id with another body is
    409 `submission_conflict`. Roles: doctor, nurse, team_leader, centre_admin.
    """
    outcome = signing.sign_home_visit(args)
    commit()
    return outcome.reply, 201 if outcome.created else 200


@blp.route("/contracts/home-visit/batch", methods=["POST"])
@blp.auth(roles=ROLES)
@blp.arguments(HomeVisitBatchSchema)
@blp.response(200, BatchResultSchema)
def upload_home_visits(args: dict[str, Any]) -> Any:
    """Upload the home-visit signings a tablet queued offline (≤ 50), one result per item in order:
    `created`, `already_exists` (a retry), `conflict` (the reason: already signed where/since, doctor
    full, package not eligible, submission_conflict) or `invalid` (field errors). Each item is
    committed on its own. Roles: doctor, nurse, team_leader, centre_admin.
    """
    results = []
    for index, item in enumerate(args["items"]):
        results.append(signing.upload_item(index, item))
        commit()
    return {"summary": signing.summarise(results), "results": results}


@blp.route("/contracts/household", methods=["POST"])
@blp.auth(roles=ROLES)
@blp.idempotent()
@blp.arguments(HouseholdSignSchema)
@blp.response(201, HouseholdResultSchema)
@blp.alt_response(404, response="DEFAULT_ERROR", description="家庭、团队、医生不存在或不属于本中心")
def sign_household(args: dict[str, Any]) -> Any:
    """家庭签约: sign the listed members of a household together (one `household_batch`), all or none;
    a refusal names each member's reason. A minor is signed by the guardian (the representative when
    registered as the guardian, else the member's `guardian`). Requires `Idempotency-Key`.
    Roles: doctor, nurse, team_leader, centre_admin.
    """
    reply = signing.sign_household(args)
    commit()
    return reply
