"""Who is paying on the H5 cashier: the wallet, the payer's WeChat openid or Alipay user id.

JSAPI payments need the payer's identity for our app: WeChat official-account web OAuth
(`snsapi_base`, silent) gives the openid, Alipay `auth_base` gives the user id (2088...). The
identity is kept in a signed, short-lived, HttpOnly cookie (itsdangerous with SECRET_KEY), never
in a URL. The OAuth round trip carries a signed `state` bound to a nonce cookie of the browser
that started it (login CSRF), and the page to return to (only paths under /pay/).

In sandbox mode (PAYMENT_SANDBOX) the authorize steps are served by `payments.sandbox.oauth`
(started on first use on 127.0.0.1); Alipay codes are minted by the Alipay gateway emulator,
which later answers `alipay.system.oauth.token` for them.

Settings (read with defaults; see the issue-4 report): WECHAT_OAUTH_APPID (default
WECHATPAY_APPID), WECHAT_OAUTH_SECRET, WECHAT_OAUTH_AUTHORIZE_URL, WECHAT_OAUTH_API_BASE,
ALIPAY_OAUTH_AUTHORIZE_URL, PAYMENT_PAYER_SESSION_MINUTES (30).
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app
from itsdangerous import BadSignature, URLSafeTimedSerializer

from app.billing import providers
from app.core.errors import BusinessRuleViolation, ProviderUnavailable
from payments.base import Channel, ProviderDeclined, ProviderOutcomeUnknown
from payments.oauth import (
    ALIPAY_AUTHORIZE_URL,
    WECHAT_API_BASE,
    WECHAT_AUTHORIZE_URL,
    OAuthCodeInvalid,
    OAuthUnavailable,
    WeChatWebOAuth,
    alipay_authorize_url,
)

log = logging.getLogger(__name__)

PAYER_COOKIE = "luohu_pay_payer"
STATE_COOKIE = "luohu_pay_state"
COOKIE_PATH = "/pay"
STATE_MAX_AGE_S = 600
SANDBOX_OAUTH_SECRET = "sandbox-oauth-secret"  # noqa: S105 - the loopback emulator's, never production
_PAYER_SALT = "luohu.pay.payer"
_STATE_SALT = "luohu.pay.oauth-state"
_RETURN_PATH = re.compile(r"/pay/[A-Za-z0-9_./-]{1,300}")
_SANDBOX_EXTENSION = "payment_oauth_sandbox"
_LOCK = threading.Lock()


@dataclass(frozen=True)
class Payer:
    """The payer of this browser, as the wallet identified them to us."""

    channel: Channel
    account: str  # WeChat openid (our AppID) / Alipay user id (2088...)
    unionid: str | None = None  # WeChat only, when the AppID is bound to an open-platform account


# --- wallet detection --------------------------------------------------------------------------


def detect_wallet(user_agent: str | None) -> Channel | None:
    """WeChat's in-app browser says MicroMessenger; Alipay's says AlipayClient."""
    text = user_agent or ""
    if "MicroMessenger" in text:
        return Channel.WECHAT
    if "AlipayClient" in text:
        return Channel.ALIPAY
    return None


# --- signed values -----------------------------------------------------------------------------


def _serializer(salt: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=salt)


def session_minutes() -> int:
    return int(current_app.config.get("PAYMENT_PAYER_SESSION_MINUTES", 30))


def payer_cookie_value(payer: Payer) -> str:
    return str(
        _serializer(_PAYER_SALT).dumps({"c": str(payer.channel), "a": payer.account, "u": payer.unionid})
    )


def payer_from_cookie(value: str | None, *, wallet: Channel | None) -> Payer | None:
    """The payer of a valid, unexpired cookie for this wallet, else None."""
    if not value or wallet is None:
        return None
    try:
        data = _serializer(_PAYER_SALT).loads(value, max_age=session_minutes() * 60)
    except BadSignature:
        return None
    if not isinstance(data, dict) or data.get("c") != str(wallet):
        return None
    account, unionid = data.get("a"), data.get("u")
    if not isinstance(account, str) or not account:
        return None
    return Payer(wallet, account, unionid if isinstance(unionid, str) and unionid else None)


def new_state(channel: Channel, return_path: str) -> tuple[str, str]:
    """(state for the authorize URL, nonce for the browser's state cookie)."""
    if not _RETURN_PATH.fullmatch(return_path) or ".." in return_path:
        raise ValueError("return path must be a page under /pay/")
    nonce = secrets.token_urlsafe(16)
    state = str(_serializer(_STATE_SALT).dumps({"n": nonce, "r": return_path, "c": str(channel)}))
    return state, nonce


def check_state(state: str | None, nonce: str | None, channel: Channel) -> str:
    """The return path of a state this browser started for this wallet; else 400 (Chinese)."""
    refused = BusinessRuleViolation(
        "授权已失效，请返回重新扫码付款", code="oauth_state_invalid", errors={"state": ["无效或已过期"]}
    )
    if not state or not nonce:
        raise refused
    try:
        data = _serializer(_STATE_SALT).loads(state, max_age=STATE_MAX_AGE_S)
    except BadSignature:
        raise refused from None
    if (
        not isinstance(data, dict)
        or data.get("c") != str(channel)
        or not isinstance(data.get("n"), str)
        or not secrets.compare_digest(str(data["n"]), nonce)
        or not isinstance(data.get("r"), str)
        or not _RETURN_PATH.fullmatch(data["r"])
    ):
        raise refused
    return str(data["r"])


# --- OAuth -------------------------------------------------------------------------------------


def public_url(path: str) -> str:
    return str(current_app.config["PAYMENT_PUBLIC_BASE_URL"]).rstrip("/") + path


def _settings(app: Flask) -> dict[str, str]:
    config = app.config
    values = {
        "wechat_appid": str(config.get("WECHAT_OAUTH_APPID") or config["WECHATPAY_APPID"]),
        "wechat_secret": str(config.get("WECHAT_OAUTH_SECRET") or ""),
        "wechat_authorize": str(config.get("WECHAT_OAUTH_AUTHORIZE_URL") or WECHAT_AUTHORIZE_URL),
        "wechat_api_base": str(config.get("WECHAT_OAUTH_API_BASE") or WECHAT_API_BASE),
        "alipay_app_id": str(config["ALIPAY_APP_ID"]),
        "alipay_authorize": str(config.get("ALIPAY_OAUTH_AUTHORIZE_URL") or ALIPAY_AUTHORIZE_URL),
    }
    if config["PAYMENT_SANDBOX"]:
        base = oauth_sandbox_url(app)
        values.update(
            wechat_secret=values["wechat_secret"] or SANDBOX_OAUTH_SECRET,
            wechat_authorize=base + "connect/oauth2/authorize",
            wechat_api_base=base,
            alipay_authorize=base + "oauth2/publicAppAuthorize.htm",
        )
    return values


def oauth_sandbox(app: Flask | None = None) -> Any:
    """The running OAuth emulator (sandbox mode only), started on first use."""
    target = app or current_app
    oauth_sandbox_url(target)
    return target.extensions[_SANDBOX_EXTENSION][0]


def oauth_sandbox_url(app: Flask) -> str:
    with _LOCK:
        running = app.extensions.get(_SANDBOX_EXTENSION)
        if running is None:
            from payments.sandbox import serve
            from payments.sandbox.oauth import OAuthSandbox

            with app.app_context():
                wechat, alipay = providers.sandbox(Channel.WECHAT), providers.sandbox(Channel.ALIPAY)
            emulator = OAuthSandbox(
                wechat_appid=str(app.config.get("WECHAT_OAUTH_APPID") or app.config["WECHATPAY_APPID"]),
                wechat_secret=str(app.config.get("WECHAT_OAUTH_SECRET") or SANDBOX_OAUTH_SECRET),
                alipay_app_id=str(app.config["ALIPAY_APP_ID"]),
                wechat_ledger=wechat.ledger,
                alipay_ledger=alipay.ledger,
                alipay_code_minter=getattr(alipay, "oauth_code", None),
            )
            running = (emulator, serve(emulator))
            app.extensions[_SANDBOX_EXTENSION] = running
            log.info("wallet OAuth sandbox running", extra={"base_url": running[1].base_url})
        return str(running[1].base_url)


def authorize_url(channel: Channel, state: str) -> str:
    """Where to send the browser to learn who the payer is."""
    values = _settings(current_app)
    if channel is Channel.WECHAT:
        client = WeChatWebOAuth(
            appid=values["wechat_appid"],
            secret=values["wechat_secret"],
            authorize_url=values["wechat_authorize"],
            api_base=values["wechat_api_base"],
        )
        return client.authorize_url(public_url("/pay/oauth/wechat"), state)
    return alipay_authorize_url(
        app_id=values["alipay_app_id"],
        redirect_uri=public_url("/pay/oauth/alipay"),
        state=state,
        authorize_url=values["alipay_authorize"],
    )


def identify(channel: Channel, code: str) -> Payer:
    """Exchange the wallet's authorization code for the payer (a network call: no transaction
    may be open). Invalid codes are 422, an unreachable wallet 503, both in Chinese."""
    if not code or len(code) > 128:
        raise _code_refused()
    values = _settings(current_app)
    timeout = int(current_app.config["PAYMENT_TIMEOUT_SECONDS"])
    if channel is Channel.WECHAT:
        client = WeChatWebOAuth(
            appid=values["wechat_appid"],
            secret=values["wechat_secret"],
            authorize_url=values["wechat_authorize"],
            api_base=values["wechat_api_base"],
            timeout=timeout,
        )
        try:
            identity = client.exchange(code)
        except OAuthCodeInvalid as exc:
            raise _code_refused() from exc
        except OAuthUnavailable as exc:
            log.warning("wechat web oauth failed", extra={"error": str(exc)})
            raise _unavailable() from exc
        return Payer(Channel.WECHAT, identity.openid, identity.unionid)
    provider = providers.get(Channel.ALIPAY)
    lookup = getattr(provider, "oauth_user_id", None)
    if lookup is None:
        raise _unavailable()
    try:
        user_id = lookup(code)
    except ProviderDeclined as exc:
        raise _code_refused() from exc
    except ProviderOutcomeUnknown as exc:
        log.warning("alipay oauth failed", extra={"error": str(exc)})
        raise _unavailable() from exc
    return Payer(Channel.ALIPAY, str(user_id))


def _code_refused() -> BusinessRuleViolation:
    return BusinessRuleViolation(
        "授权已失效，请返回重新扫码付款", code="oauth_code_invalid", errors={"code": ["无效或已使用"]}
    )


def _unavailable() -> ProviderUnavailable:
    return ProviderUnavailable(
        "暂时无法确认您的付款身份，请稍后重新扫码", code="oauth_unavailable", headers={"Retry-After": "10"}
    )
