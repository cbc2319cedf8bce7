"""Mini-program login and resident tokens (`/mp/v1/auth`), and `flask wechat-sandbox`."""

# flask-smorest ships no type information: its decorators are untyped by nature.

from __future__ import annotations

from typing import Any

import click
from flask import current_app, request

from app.core.api import Blueprint
from app.core.auth import Principal, register_authenticator, require_principal
from app.core.db import commit
from app.core.errors import Unauthorized
from app.mp_accounts.services import identity, sessions
from miniprogram_api._docs import errors
from miniprogram_api.schemas import LoginSchema, MpTokenSchema, MpUserSchema

RESIDENT = [sessions.RESIDENT_ROLE]

blp = Blueprint(
    "mp_auth",
    __name__,
    url_prefix="/mp/v1/auth",
    description="Mini-program: WeChat login and resident tokens",
    cli_group=None,
)


def _authenticate_resident(token: str) -> Principal:
    """Authenticator for `rt_` tokens; commits a revocation or the sliding idle window."""
    try:
        principal = sessions.principal_for_token(token)
    except Unauthorized:
        commit()
        raise
    commit()
    return principal


register_authenticator(sessions.TOKEN_PREFIX, _authenticate_resident)


def _user_body(principal_id: Any) -> dict[str, Any]:
    user = sessions.current_user_by_id(principal_id)
    return {
        "id": user.id,
        "identity_bound": identity.has_self_binding(user.id),
        "family_members": identity.count_family(user.id),
        "created_at": user.created_at,
    }


@blp.route("/login", methods=["POST"])
@blp.auth(public=True)
@blp.arguments(LoginSchema)
@blp.response(200, MpTokenSchema)
@errors(blp, 401, 403, 429, 503)
def login(args: dict[str, Any]) -> dict[str, Any]:
    """Exchange a `wx.login()` code for a resident token.

    The backend calls WeChat `code2Session`; WeChat's `session_key` is never returned (nor kept).
    401 `wechat_code_invalid`: the code is unknown, expired or used (call `wx.login()` again);
    429 `wechat_rate_limited` / `login_rate_limited`; 403 `wechat_risk_blocked`;
    503 `wechat_unavailable`. On a 401 from any other endpoint, log in again the same way.
    """
    issued = sessions.login(code=args["code"], client_address=request.remote_addr)
    commit()
    return {
        "token": issued.token,
        "token_type": "Bearer",
        "expires_at": issued.session.expires_at,
        "idle_timeout_seconds": int(sessions.idle_timeout().total_seconds()),
        "is_new_user": issued.is_new_user,
        "user": _user_body(issued.session.user_id),
    }


@blp.route("/logout", methods=["POST"])
@blp.auth(roles=RESIDENT)
@blp.response(204)
def logout() -> None:
    """End this token on the server: it gets 401 from now on."""
    sessions.logout(require_principal())
    commit()


@blp.route("/me", methods=["GET"])
@blp.auth(roles=RESIDENT)
@blp.response(200, MpUserSchema)
def me() -> dict[str, Any]:
    """The logged-in WeChat user: whether identity is confirmed, how many family members."""
    return _user_body(require_principal().id)


@blp.cli.command("wechat-sandbox")
@click.option("--port", default=8790, show_default=True, help="Port on 127.0.0.1")
@click.option("--appid", default=None, help="Accept only this appid (default: any)")
@click.option("--secret", default=None, help="Accept only this secret (default: any)")
def wechat_sandbox(port: int, appid: str | None, secret: str | None) -> None:
    """Run the loopback WeChat API emulator (jscode2session, token) for demos.

    Then start the app with WECHAT_API_BASE=http://127.0.0.1:<port>/ and log in with any code of
    the shape code-<openid> (e.g. code-oDemoResident01), or one from POST /_emulator/codes.
    """
    if current_app.config["APP_ENV"] == "production":
        raise click.ClickException("the WeChat emulator is for development and tests only")
    from app.integrations.sandbox.wechat_api import run_forever

    run_forever(port, appid, secret)
