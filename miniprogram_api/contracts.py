"""Online pre-signing in the mini-program (网络预申请), `/mp/v1`.

The caller acts for a resident they are bound to (`GET /mp/v1/family`; themselves after 实名认证):

1. `GET /mp/v1/contracts/options?resident_id=` (+ `team_id`, `doctor_id`, `package_ids`): the
   packages the resident may choose and the agreement previewed with the choice.
2. `POST /mp/v1/contract-applications` (Idempotency-Key): apply; the team reviews within
   CONTRACT_REVIEW_HOURS (accept or reject with a reason; an SMS says which).
3. `GET /mp/v1/contract-applications/{id}`: progress, the agreement text and its `agreement_sha256`.
4. `POST .../{id}/confirm` (Idempotency-Key) quoting that `agreement_sha256`: active at once when
   there is nothing to pay; otherwise the reply's `payment.bill_id` is paid with
   `POST /mp/v1/bills/{bill_id}/payments` (WeChat Pay JSAPI) and the contract becomes active when
   the payment is confirmed. Confirm (and pay) within CONTRACT_CONFIRM_HOURS of the acceptance.
5. `POST .../{id}/withdraw` at any time before it is active.

No rules here: `app.contracts.services.online`.
"""

from __future__ import annotations

import uuid
from typing import Any

from app.contracts.schemas.applications import (
    ApplicationConfirmSchema,
    ApplicationCreateSchema,
    ApplicationOptionsQuerySchema,
    ApplicationOptionsSchema,
    ApplicationWithdrawSchema,
    MpApplicationDetailSchema,
    MpApplicationSchema,
    MpConfirmationSchema,
)
from app.contracts.services import online
from app.core.api import Blueprint
from app.core.auth import require_principal
from app.core.db import commit
from app.mp_accounts.services.sessions import RESIDENT_ROLE, current_user
from miniprogram_api._docs import errors

RESIDENT = [RESIDENT_ROLE]

blp = Blueprint("mp_contracts", __name__, url_prefix="/mp/v1", description="家庭医生签约（小程序）")


def _user_id() -> uuid.UUID:
    return current_user(require_principal()).id


@blp.route("/contracts/options", methods=["GET"])
@blp.auth(roles=RESIDENT)
@blp.arguments(ApplicationOptionsQuerySchema, location="query")
@blp.response(200, ApplicationOptionsSchema)
@errors(blp, 404, 422)
def contract_options(args: dict[str, Any]) -> Any:
    """What this resident may apply for: eligible packages (at the chosen team's centre, else the
    resident's), the current agreement previewed with the chosen team, doctor and packages, and
    `can_apply` / `blocked_reason` when the resident is already signed or applying somewhere.
    404 `resident_not_bound` for a resident the caller does not act for."""
    found = online.options(
        _user_id(),
        args["resident_id"],
        team_id=args.get("team_id"),
        doctor_id=args.get("doctor_id"),
        package_ids=args.get("package_ids") or (),
    )
    commit()  # the audited read
    return found


@blp.route("/contract-applications", methods=["POST"])
@blp.auth(roles=RESIDENT)
@blp.idempotent()
@blp.arguments(ApplicationCreateSchema)
@blp.response(201, MpApplicationDetailSchema)
@errors(blp, 404, 409, 422)
def apply(args: dict[str, Any]) -> Any:
    """Apply for a family doctor for oneself or a bound family member (a minor: by a parent or
    guardian). 409 `resident_already_signed` names the centre and the date when the resident is
    already signed or applying anywhere in the district; 409 `doctor_capacity_full` when the doctor
    has no place left; 422 for package eligibility and the other signing rules."""
    contract = online.apply(_user_id(), **args)
    commit()
    return online.application_view(contract, with_agreement=True, with_history=True)


@blp.route("/contract-applications", methods=["GET"])
@blp.auth(roles=RESIDENT)
@blp.response(200, MpApplicationSchema(many=True))
def list_applications() -> Any:
    """The caller's and their family members' applications, newest first, with their progress."""
    found = online.my_applications(_user_id())
    commit()
    return [online.application_view(c) for c in found]


@blp.route("/contract-applications/<uuid:application_id>", methods=["GET"])
@blp.auth(roles=RESIDENT)
@blp.response(200, MpApplicationDetailSchema)
@errors(blp, 404)
def get_application(application_id: uuid.UUID) -> Any:
    """One application: progress, the agreement text with its `agreement_sha256`, the history."""
    contract = online.my_application(_user_id(), application_id)
    commit()
    return online.application_view(contract, with_agreement=True, with_history=True)


@blp.route("/contract-applications/<uuid:application_id>/withdraw", methods=["POST"])
@blp.auth(roles=RESIDENT)
@blp.arguments(ApplicationWithdrawSchema)
@blp.response(200, MpApplicationDetailSchema)
@errors(blp, 404, 409)
def withdraw_application(args: dict[str, Any], application_id: uuid.UUID) -> Any:
    """Withdraw before the contract is active; an unpaid bill is cancelled. 409
    `payment_in_progress` while a payment is still open at WeChat Pay (try again later)."""
    contract = online.withdraw(_user_id(), application_id, reason=args.get("reason"))
    commit()
    return online.application_view(contract, with_agreement=True, with_history=True)


@blp.route("/contract-applications/<uuid:application_id>/confirm", methods=["POST"])
@blp.auth(roles=RESIDENT)
@blp.idempotent()
@blp.arguments(ApplicationConfirmSchema)
@blp.response(200, MpConfirmationSchema)
@errors(blp, 404, 409, 422)
def confirm_application(args: dict[str, Any], application_id: uuid.UUID) -> Any:
    """Confirm the accepted agreement, quoting its `agreement_sha256` (409 `agreement_changed`
    when it is not the current text). Nothing to pay: active now. Otherwise `payment` names the
    bill to pay with `POST /mp/v1/bills/{bill_id}/payments`; the contract becomes active when paid."""
    done = online.confirm(_user_id(), application_id, agreement_sha256=args["agreement_sha256"])
    commit()
    view = online.application_view(done.contract)
    view["payment"] = None
    if done.bill_id is not None:
        due = online.confirm_due_at(done.contract)
        view["payment"] = {
            "bill_id": done.bill_id,
            "amount_fen": done.amount_fen,
            "pay_path": f"/mp/v1/bills/{done.bill_id}/payments",
            "pay_by": due,
            "message": f"请支付个人自付费用 {done.amount_fen // 100}.{done.amount_fen % 100:02d} 元，缴费成功后签约即生效",
        }
    return view
