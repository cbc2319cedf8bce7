"""Staff login, sessions and account administration (`/api/v1/auth`, `/api/v1/staff`)."""

from __future__ import annotations

import uuid
from typing import Any

from flask import request

from app.accounts import services
from app.accounts.schemas import (
    PasswordChangeSchema,
    ReasonSchema,
    RefreshSchema,
    RevokeReasonSchema,
    RoleChangeSchema,
    StaffCreateSchema,
    StaffGrantsSchema,
    StaffLoginSchema,
    StaffQuerySchema,
    StaffSchema,
    StaffUnmaskResultSchema,
    StaffUnmaskSchema,
    StaffUpdateSchema,
    TokenSchema,
    UnlockSchema,
)
from app.core.api import Blueprint
from app.core.auth import ADMINS, ALL_STAFF, Principal, register_authenticator, require_principal
from app.core.db import commit
from app.core.errors import BusinessRuleViolation, Unauthorized
from app.core.pagination import Page, page_schema

auth_blp = Blueprint("auth", __name__, url_prefix="/api/v1/auth", description="Staff login and sessions")
staff_blp = Blueprint("staff", __name__, url_prefix="/api/v1/staff", description="Staff accounts")


def _authenticate_staff(token: str) -> Principal:
    """Authenticator for `st_` tokens; commits a revocation or the sliding idle window."""
    try:
        principal = services.principal_for_token(token)
    except Unauthorized:
        commit()
        raise
    commit()
    return principal


register_authenticator(services.TOKEN_PREFIX, _authenticate_staff)


def _token_body(tokens: services.IssuedTokens) -> dict[str, Any]:
    session = tokens.session
    return {
        "access_token": tokens.access_token,
        "refresh_token": tokens.refresh_token,
        "token_type": "Bearer",
        "access_expires_at": session.access_expires_at,
        "expires_at": session.expires_at,
        "idle_timeout_seconds": int(services.idle_timeout().total_seconds()),
        "must_change_password": session.user.must_change_password,
        "user": session.user,
    }


@auth_blp.route("/login", methods=["POST"])
@auth_blp.auth(public=True)
@auth_blp.arguments(StaffLoginSchema)
@auth_blp.response(200, TokenSchema)
def login(args: dict[str, Any]) -> dict[str, Any]:
    """Log in with username and password.

    Five wrong passwords in a row lock the account for 15 minutes (423 `account_locked`); while
    locked, even the right password is refused.
    """
    outcome = services.login(
        username=args["username"],
        password=args["password"],
        client_address=request.remote_addr,
        user_agent=request.user_agent.string,
    )
    commit()
    if outcome.error is not None:
        raise outcome.error
    assert outcome.tokens is not None
    return _token_body(outcome.tokens)


@auth_blp.route("/refresh", methods=["POST"])
@auth_blp.auth(public=True)
@auth_blp.arguments(RefreshSchema)
@auth_blp.response(200, TokenSchema)
def refresh(args: dict[str, Any]) -> dict[str, Any]:
    """Exchange the refresh token for a new pair (the old pair stops working)."""
    try:
        tokens = services.refresh(refresh_token=args["refresh_token"])
    except Unauthorized:
        commit()
        raise
    commit()
    return _token_body(tokens)


@auth_blp.route("/logout", methods=["POST"])
@auth_blp.auth(roles=ALL_STAFF, during_password_change=True)
@auth_blp.response(204)
def logout() -> None:
    """End this session on the server: its tokens get 401 from now on."""
    services.logout(require_principal())
    commit()


@auth_blp.route("/me", methods=["GET"])
@auth_blp.auth(roles=ALL_STAFF, during_password_change=True)
@auth_blp.response(200, StaffSchema)
def me() -> Any:
    """The logged-in staff member."""
    return services.get_staff(require_principal().id)


@auth_blp.route("/password", methods=["POST"])
@auth_blp.auth(roles=ALL_STAFF, during_password_change=True)
@auth_blp.arguments(PasswordChangeSchema)
@auth_blp.response(204)
def change_password(args: dict[str, Any]) -> None:
    """Change one's own password (required after a temporary password); other sessions end."""
    services.change_password(require_principal(), **args)
    commit()


@staff_blp.route("", methods=["GET"])
@staff_blp.auth(roles=ALL_STAFF)
@staff_blp.arguments(StaffQuerySchema, location="query")
@staff_blp.response(200, page_schema(StaffSchema))
def list_staff(args: dict[str, Any]) -> Page[Any]:
    """Staff of the caller's centre (district roles: all centres), paged."""
    return services.with_grants(services.list_staff(**args))


@staff_blp.route("", methods=["POST"])
@staff_blp.auth(roles=ADMINS)
@staff_blp.idempotent()
@staff_blp.arguments(StaffCreateSchema)
@staff_blp.response(201, StaffSchema)
def create_staff(args: dict[str, Any]) -> Any:
    """Create a staff account with a temporary password (changed at first login)."""
    user = services.create_staff(require_principal(), **args)
    commit()
    return user


@staff_blp.route("/<uuid:staff_id>", methods=["GET"])
@staff_blp.auth(roles=ALL_STAFF)
@staff_blp.response(200, StaffSchema)
def get_staff(staff_id: uuid.UUID) -> Any:
    """One staff member (404 outside the caller's centre)."""
    return services.get_staff(staff_id)


@staff_blp.route("/<uuid:staff_id>", methods=["PATCH"])
@staff_blp.auth(roles=ADMINS)
@staff_blp.arguments(StaffUpdateSchema)
@staff_blp.response(200, StaffSchema)
def update_staff(args: dict[str, Any], staff_id: uuid.UUID) -> Any:
    """Correct a staff member's name or phone."""
    user = services.update_staff(require_principal(), staff_id, args)
    commit()
    return user


@staff_blp.route("/<uuid:staff_id>/role", methods=["POST"])
@staff_blp.auth(roles=ADMINS)
@staff_blp.arguments(RoleChangeSchema)
@staff_blp.response(200, StaffSchema)
def change_role(args: dict[str, Any], staff_id: uuid.UUID) -> Any:
    """Give a staff member another role; their open sessions end at once."""
    user = services.change_role(require_principal(), staff_id, **args)
    commit()
    return user


@staff_blp.route("/<uuid:staff_id>/disable", methods=["POST"])
@staff_blp.auth(roles=ADMINS)
@staff_blp.arguments(ReasonSchema)
@staff_blp.response(200, StaffSchema)
def disable_staff(args: dict[str, Any], staff_id: uuid.UUID) -> Any:
    """Disable an account (leaving, suspended); its sessions end at once."""
    user = services.set_active(require_principal(), staff_id, active=False, reason=args["reason"])
    commit()
    return user


@staff_blp.route("/<uuid:staff_id>/enable", methods=["POST"])
@staff_blp.auth(roles=ADMINS)
@staff_blp.arguments(ReasonSchema)
@staff_blp.response(200, StaffSchema)
def enable_staff(args: dict[str, Any], staff_id: uuid.UUID) -> Any:
    """Enable a disabled account again."""
    user = services.set_active(require_principal(), staff_id, active=True, reason=args["reason"])
    commit()
    return user


@staff_blp.route("/<uuid:staff_id>/unlock", methods=["POST"])
@staff_blp.auth(roles=ADMINS)
@staff_blp.arguments(UnlockSchema)
@staff_blp.response(200, StaffSchema)
def unlock_staff(args: dict[str, Any], staff_id: uuid.UUID) -> Any:
    """Unlock a locked account, optionally setting a new temporary password."""
    user = services.unlock(
        require_principal(), staff_id, reset_password=args.get("reset_password"), reason=args["reason"]
    )
    commit()
    return user


@staff_blp.route("/<uuid:staff_id>/unmask", methods=["POST"])
@staff_blp.auth(roles=ADMINS)
@staff_blp.arguments(StaffUnmaskSchema)
@staff_blp.response(200, StaffUnmaskResultSchema)
def unmask_staff_field(args: dict[str, Any], staff_id: uuid.UUID) -> dict[str, Any]:
    """Show one personal field in clear. Needs `pii:unmask` and a reason; writes an audit row."""
    value = services.unmask(
        require_principal(), staff_id, field=args["field"], reason=args["reason"], note=args.get("note")
    )
    commit()
    return {"field": args["field"], "value": value}


# --- category permissions (DATA-05) -----------------------------------------------------------


@staff_blp.route("/<uuid:staff_id>/grants", methods=["GET"])
@staff_blp.auth(roles=ALL_STAFF)
@staff_blp.response(200, StaffGrantsSchema)
def list_grants(staff_id: uuid.UUID) -> Any:
    """The permissions granted to a staff member (严重精神障碍 `health:smd`, 肺结核 `health:tb`) and
    those their role may hold. 404 outside the caller's centre."""
    return services.grants_view(staff_id)


@staff_blp.route("/<uuid:staff_id>/grants/<string:permission>", methods=["PUT"])
@staff_blp.auth(roles=ADMINS)
@staff_blp.arguments(ReasonSchema)
@staff_blp.response(200, StaffGrantsSchema)
def grant_permission(args: dict[str, Any], staff_id: uuid.UUID, permission: str) -> Any:
    """Grant a category permission (the centre's admin or a district admin), with a reason. Only
    doctors, nurses, public-health staff and team leaders may hold one (422
    `permission_not_for_role`); an unknown permission is 422 `permission_not_grantable`. Granting
    a permission already held answers 200 with the same state. Takes effect at the next request."""
    view = services.grant_permission(require_principal(), staff_id, permission, reason=args["reason"])
    commit()
    return view


@staff_blp.route("/<uuid:staff_id>/grants/<string:permission>", methods=["DELETE"])
@staff_blp.auth(roles=ADMINS)
@staff_blp.arguments(RevokeReasonSchema, location="query", as_kwargs=True)
@staff_blp.arguments(RevokeReasonSchema, location="json", required=False)
@staff_blp.response(200, StaffGrantsSchema)
def revoke_permission(body: dict[str, Any], staff_id: uuid.UUID, permission: str, **query: Any) -> Any:
    """Revoke a category permission, with a reason (`?reason=` or a JSON body `{"reason": ...}`).
    Revoking a permission not held answers 200 with the same state. Takes effect at once."""
    reason = body.get("reason") or query.get("reason")
    if not reason:
        raise BusinessRuleViolation(
            "请填写撤销权限的原因", code="validation_error", errors={"reason": ["请填写撤销权限的原因"]}
        )
    view = services.revoke_permission(require_principal(), staff_id, permission, reason=reason)
    commit()
    return view
