"""Identity binding (实名绑定) and family members (代理) (`/mp/v1/identity`, `/mp/v1/family`)."""

# flask-smorest ships no type information: its decorators are untyped by nature.

from __future__ import annotations

import uuid
from typing import Any

from flask import request

from app.core.api import Blueprint
from app.core.auth import require_principal
from app.core.db import commit
from app.mp_accounts.services import identity
from app.mp_accounts.services.sessions import RESIDENT_ROLE
from miniprogram_api._docs import errors
from miniprogram_api.schemas import (
    BindingSchema,
    ChallengeSchema,
    FamilyRequestSchema,
    IdentitySchema,
    OtpSchema,
)

RESIDENT = [RESIDENT_ROLE]

blp = Blueprint(
    "mp_identity",
    __name__,
    url_prefix="/mp/v1",
    description="Mini-program: identity binding and family members (SMS one-time codes)",
)


@blp.route("/identity/bind", methods=["POST"])
@blp.auth(roles=RESIDENT)
@blp.arguments(IdentitySchema)
@blp.response(202, ChallengeSchema)
@errors(blp, 409, 429, 503)
def request_identity(args: dict[str, Any]) -> Any:
    """Step 1 of 实名认证: name + ID number; an SMS code goes to the phone on the resident's record.

    422 `identity_mismatch` when the name and number do not match a record (the same answer
    whether or not the number exists). 429 with Retry-After: per phone 1 code a minute, 5 an
    hour, 10 a day; also per WeChat user and per network. Codes live 5 minutes.
    """
    challenge = identity.request_self_binding(
        require_principal(),
        name=args["name"],
        id_number=args["id_number"],
        client_address=request.remote_addr,
    )
    commit()
    return challenge


@blp.route("/identity/confirm", methods=["POST"])
@blp.auth(roles=RESIDENT)
@blp.arguments(OtpSchema)
@blp.response(201, BindingSchema)
@errors(blp, 409, 503)
def confirm_identity(args: dict[str, Any]) -> Any:
    """Step 2: the SMS code. Binds this WeChat user to the resident (relationship `self`).

    422 `otp_wrong` (tries left in the message), `otp_exhausted` (5 wrong tries: the code is
    dead), `otp_expired`, `otp_invalid` (none pending, or already used).
    """
    binding = identity.confirm_self_binding(require_principal(), code=args["otp"])
    commit()
    return binding


@blp.route("/identity", methods=["GET"])
@blp.auth(roles=RESIDENT)
@blp.response(200, BindingSchema)
@errors(blp, 404)
def get_identity() -> Any:
    """The caller's own binding (masked); 404 `identity_not_bound` before 实名认证."""
    binding = identity.self_binding(require_principal())
    commit()  # the audited read
    return binding


@blp.route("/identity", methods=["DELETE"])
@blp.auth(roles=RESIDENT)
@blp.response(204)
@errors(blp, 404)
def remove_identity() -> None:
    """Unbind the caller from their resident record (family bindings stay)."""
    identity.remove_self_binding(require_principal())
    commit()


@blp.route("/family", methods=["POST"])
@blp.auth(roles=RESIDENT)
@blp.arguments(FamilyRequestSchema)
@blp.response(202, ChallengeSchema)
@errors(blp, 409, 429, 503)
def request_family(args: dict[str, Any]) -> Any:
    """Step 1 of adding a family member to act for (a child, an elderly parent, ...).

    Needs the caller's own 实名认证 first. The SMS code goes to the phone on the *family
    member's* record; the relationship says what the caller is to them.
    """
    challenge = identity.request_family_binding(
        require_principal(),
        name=args["name"],
        id_number=args["id_number"],
        relationship=args["relationship"],
        client_address=request.remote_addr,
    )
    commit()
    return challenge


@blp.route("/family/confirm", methods=["POST"])
@blp.auth(roles=RESIDENT)
@blp.arguments(OtpSchema)
@blp.response(201, BindingSchema)
@errors(blp, 409, 503)
def confirm_family(args: dict[str, Any]) -> Any:
    """Step 2: the SMS code. Records the proxy binding with its relationship."""
    binding = identity.confirm_family_binding(require_principal(), code=args["otp"])
    commit()
    return binding


@blp.route("/family", methods=["GET"])
@blp.auth(roles=RESIDENT)
@blp.response(200, BindingSchema(many=True))
def list_family() -> Any:
    """The caller's family members (at most 10; masked)."""
    bindings = identity.list_family(require_principal())
    commit()  # the audited reads
    return bindings


@blp.route("/family/<uuid:binding_id>", methods=["GET"])
@blp.auth(roles=RESIDENT)
@blp.response(200, BindingSchema)
@errors(blp, 404)
def get_family(binding_id: uuid.UUID) -> Any:
    """One of the caller's family members; anyone else's is 404."""
    binding = identity.get_family(require_principal(), binding_id)
    commit()
    return binding


@blp.route("/family/<uuid:binding_id>", methods=["DELETE"])
@blp.auth(roles=RESIDENT)
@blp.response(204)
@errors(blp, 404)
def remove_family(binding_id: uuid.UUID) -> None:
    """Stop acting for this family member."""
    identity.remove_family(require_principal(), binding_id)
    commit()
