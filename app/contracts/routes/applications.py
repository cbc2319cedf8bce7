"""The team's review of online applications (网络预申请审核), `/api/v1/contract-applications`.

Roles: team_leader and doctor (the applications of their own teams), centre_admin (the centre's);
district_admin reads. Another centre's application is a 404 (audited). Rules are in
`app.contracts.services.online`.
"""

from __future__ import annotations

import uuid
from typing import Any

from app.contracts.schemas.applications import (
    ApplicationAcceptSchema,
    ApplicationQueueQuerySchema,
    ApplicationRejectSchema,
    StaffApplicationDetailSchema,
    StaffApplicationSchema,
)
from app.contracts.services import online
from app.core.api import Blueprint
from app.core.auth import require_principal
from app.core.db import commit
from app.core.pagination import Page, page_schema

blp = Blueprint("contracts_applications", __name__, url_prefix="/api/v1", description="家庭医生签约")

READERS = sorted(online.READ_ROLES)
REVIEWERS = sorted(online.REVIEW_ROLES)


@blp.route("/contract-applications", methods=["GET"])
@blp.auth(roles=READERS)
@blp.arguments(ApplicationQueueQuerySchema, location="query")
@blp.response(200, page_schema(StaffApplicationSchema))
def review_queue(args: dict[str, Any]) -> Page[Any]:
    """The pending applications queue, oldest first, with the time left before `review_due_at`
    (`review_seconds_left`, negative when overdue). Filters: `team_id`, `status` (default
    pending_review; `open` = pending_review + awaiting_confirmation + awaiting_payment), `overdue`.
    Doctors and team leaders see their own teams' applications.
    Roles: team_leader, doctor, centre_admin, district_admin."""
    page = online.review_queue(require_principal(), **args)
    commit()  # the audited reads
    return Page([online.application_view(c) for c in page.items], page.page, page.size, page.total)


@blp.route("/contract-applications/<uuid:application_id>", methods=["GET"])
@blp.auth(roles=READERS)
@blp.response(200, StaffApplicationDetailSchema)
def get_application(application_id: uuid.UUID) -> Any:
    """One application: the agreement as it stands and the history (actor, role, channel, reason).
    Roles: team_leader, doctor, centre_admin, district_admin."""
    contract = online.staff_application(require_principal(), application_id)
    commit()
    return online.application_view(contract, with_agreement=True, with_history=True)


@blp.route("/contract-applications/<uuid:application_id>/accept", methods=["POST"])
@blp.auth(roles=REVIEWERS)
@blp.arguments(ApplicationAcceptSchema)
@blp.response(200, StaffApplicationDetailSchema)
def accept_application(args: dict[str, Any], application_id: uuid.UUID) -> Any:
    """Accept: personalisable clauses may be rewritten (`clause_overrides`; a locked or unknown
    clause is 422), the agreement is re-rendered (new `agreement_sha256`), one place of the doctor
    and the team is reserved (409 `doctor_capacity_full` / `team_capacity_full`), and the resident
    is asked by SMS to confirm within CONTRACT_CONFIRM_HOURS. 409 `review_overdue` past the deadline.
    Roles: team_leader, doctor (own team), centre_admin."""
    contract = online.accept(
        require_principal(),
        application_id,
        clause_overrides=args.get("clause_overrides"),
        note=args.get("note"),
    )
    commit()
    return online.application_view(contract, with_agreement=True, with_history=True)


@blp.route("/contract-applications/<uuid:application_id>/reject", methods=["POST"])
@blp.auth(roles=REVIEWERS)
@blp.arguments(ApplicationRejectSchema)
@blp.response(200, StaffApplicationDetailSchema)
def reject_application(args: dict[str, Any], application_id: uuid.UUID) -> Any:
    """Reject with a reason (the resident reads it and gets an SMS).
    Roles: team_leader, doctor (own team), centre_admin."""
    contract = online.reject(require_principal(), application_id, reason=args["reason"])
    commit()
    return online.application_view(contract, with_agreement=True, with_history=True)
