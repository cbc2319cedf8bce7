"""Mini-program login and resident tokens.

`login(code)` exchanges a `wx.login` code with WeChat (code2Session) *before* touching the
database (no network call inside a transaction), finds or creates the `MpUser` of the openid, and
issues our own opaque token `rt_<random>`, stored as a SHA-256 hash. The WeChat `session_key` is
neither returned nor stored: nothing here needs it (the phone-number API takes its own code).

A token has an idle timeout and an absolute lifetime (`MP_TOKEN_IDLE_MINUTES`,
`MP_TOKEN_ABSOLUTE_HOURS`); the mini-program logs in again silently with a fresh `wx.login`
code when it gets 401. Sessions live in the database, so a Redis outage does not log anyone out.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import IntegrityError

from app.core import audit, clock
from app.core.auth import Principal
from app.core.db import db
from app.core.errors import PermissionDenied, ProviderUnavailable, RateLimited, Unauthorized
from app.integrations import wechat_mp
from app.mp_accounts import providers
from app.mp_accounts.models import MpSession, MpUser
from app.mp_accounts.services import limits

log = logging.getLogger(__name__)

TOKEN_PREFIX = "rt_"  # noqa: S105 - a token prefix, not a secret
RESIDENT_ROLE = "resident"
# Logins per client address (CGNAT puts many phones behind one address: generous, but bounded).
LOGIN_IP_LIMITS = ((60, 60), (3600, 1200))


@dataclass(frozen=True)
class IssuedToken:
    session: MpSession
    token: str
    is_new_user: bool


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def idle_timeout() -> timedelta:
    return timedelta(minutes=int(current_app.config["MP_TOKEN_IDLE_MINUTES"]))


def absolute_lifetime() -> timedelta:
    return timedelta(hours=int(current_app.config["MP_TOKEN_ABSOLUTE_HOURS"]))


def _exchange(code: str) -> wechat_mp.WxSession:
    """code2Session, with WeChat's errors translated into the API's (never a 500)."""
    try:
        adapter = providers.mini_program()
    except (providers.NotConfigured, ValueError) as exc:
        log.error("WeChat login is not configured", extra={"reason": str(exc)})
        raise ProviderUnavailable("微信登录暂不可用，请稍后再试", code="wechat_not_configured") from exc
    try:
        return adapter.code_to_session(code)
    except wechat_mp.InvalidCode as exc:
        raise Unauthorized(
            "微信登录凭证无效或已过期，请重新打开小程序再试", code="wechat_code_invalid"
        ) from exc
    except wechat_mp.RateLimited as exc:
        raise RateLimited(
            "微信登录过于频繁，请 1 分钟后再试", code="wechat_rate_limited", headers={"Retry-After": "60"}
        ) from exc
    except wechat_mp.RiskBlocked as exc:
        raise PermissionDenied(
            "微信提示您的账号存在安全风险，暂时无法登录", code="wechat_risk_blocked"
        ) from exc
    except wechat_mp.ProviderBusy as exc:
        log.warning("WeChat login unavailable", extra={"reason": str(exc), "errcode": exc.errcode})
        raise ProviderUnavailable(
            "微信服务繁忙，请稍后再试", code="wechat_unavailable", headers={"Retry-After": "10"}
        ) from exc
    except wechat_mp.MiniProgramError as exc:
        log.error("WeChat login failed", extra={"reason": str(exc), "errcode": exc.errcode})
        raise ProviderUnavailable("微信登录暂不可用，请稍后再试", code="wechat_unavailable") from exc


def _find_or_create_user(wx: wechat_mp.WxSession, now: datetime) -> tuple[MpUser, bool]:
    user = db.session.execute(select(MpUser).where(MpUser.openid == wx.openid)).scalar_one_or_none()
    created = False
    if user is None:
        try:
            with db.session.begin_nested():
                user = MpUser(id=uuid.uuid4(), openid=wx.openid, unionid=wx.unionid, created_at=now)
                db.session.add(user)
            created = True
        except IntegrityError:  # the same user logging in twice at once: the other insert won
            user = db.session.execute(select(MpUser).where(MpUser.openid == wx.openid)).scalar_one()
    if wx.unionid and user.unionid != wx.unionid:
        user.unionid = wx.unionid
    user.last_login_at = now
    return user, created


def login(*, code: str, client_address: str | None) -> IssuedToken:
    ip = client_address or "unknown"
    limits.enforce(
        [
            limits.Rule(f"mp:rl:login:ip:{ip}:{window}", window, limit, "登录过于频繁，请{when}再试")
            for window, limit in LOGIN_IP_LIMITS
        ],
        code="login_rate_limited",
    )
    wx = _exchange(code)  # network: before the first query opens a transaction
    now = clock.now()
    user, created = _find_or_create_user(wx, now)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session = MpSession(
        id=uuid.uuid4(),
        user_id=user.id,
        user=user,
        token_hash=_token_hash(token),
        created_at=now,
        last_seen_at=now,
        expires_at=now + absolute_lifetime(),
        client_address=client_address,
    )
    db.session.add(session)
    db.session.flush()
    audit.record("login", "mp_user", user.id, detail={"new_user": created})
    return IssuedToken(session, token, created)


def _revoke(session: MpSession, now: datetime, reason: str) -> None:
    session.revoked_at = now
    session.revoke_reason = reason


def principal_for_token(token: str) -> Principal:
    """Resolve a resident token. May leave a revocation or the sliding `last_seen_at` to commit."""
    now = clock.now()
    session = db.session.execute(
        select(MpSession).where(MpSession.token_hash == _token_hash(token))
    ).scalar_one_or_none()
    if session is None:
        raise Unauthorized("登录凭证无效，请重新登录", code="invalid_token")
    if session.revoked_at is not None:
        raise Unauthorized("登录已失效，请重新登录", code="session_revoked")
    if now >= session.expires_at:
        _revoke(session, now, "expired")
        raise Unauthorized("登录已过期，请重新登录", code="session_expired")
    if now - session.last_seen_at > idle_timeout():
        _revoke(session, now, "idle_timeout")
        raise Unauthorized("长时间未操作，请重新登录", code="session_idle_timeout")
    if now - session.last_seen_at > timedelta(seconds=30):
        db.session.execute(
            update(MpSession)
            .where(MpSession.id == session.id)
            .values(last_seen_at=now)
            .execution_options(synchronize_session=False)
        )
    return Principal(
        kind="resident", id=session.user_id, role=RESIDENT_ROLE, institution_id=None, session_id=session.id
    )


def logout(principal: Principal) -> None:
    session = db.session.get(MpSession, principal.session_id)
    if session is not None and session.revoked_at is None:
        _revoke(session, clock.now(), "logout")
    audit.record("logout", "mp_user", principal.id)


def current_user(principal: Principal) -> MpUser:
    if principal.kind != "resident":
        raise Unauthorized()
    return current_user_by_id(principal.id)


def current_user_by_id(user_id: uuid.UUID) -> MpUser:
    user = db.session.get(MpUser, user_id)
    if user is None:
        raise Unauthorized()
    return user


def purge_sessions(keep: timedelta = timedelta(days=7)) -> int:
    """Periodic job: delete sessions that ended (expired or revoked) more than `keep` ago."""
    cutoff = clock.now() - keep
    result = db.session.execute(
        delete(MpSession)
        .where(or_(MpSession.expires_at < cutoff, MpSession.revoked_at < cutoff))
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)
