"""Staff accounts: login, sessions, password policy, and administration within a scope.

Sessions live in the database (revocable at once, survive a Redis outage). A session has an
access token (short-lived, refreshable), a refresh token (rotated on use; reusing an old one
revokes the session), an idle timeout and an absolute lifetime, all from settings.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app
from redis.exceptions import RedisError
from sqlalchemy import CursorResult, Select, delete, or_, select, update
from sqlalchemy.exc import IntegrityError

from app.accounts.models import PasswordHistory, StaffChange, StaffGrant, StaffSession, StaffUser
from app.core import audit, clock
from app.core.auth import (
    DISTRICT_CAPABLE_ROLES,
    DISTRICT_ONLY_ROLES,
    GRANTABLE_PERMISSIONS,
    ROLE_LABELS,
    Principal,
    Role,
)
from app.core.crypto import blind_index
from app.core.db import db
from app.core.errors import (
    BusinessRuleViolation,
    Conflict,
    DomainError,
    Locked,
    PermissionDenied,
    Unauthorized,
)
from app.core.pagination import Page, paginate
from app.core.redis import get_redis
from app.core.scope import get_or_404
from app.institutions.models import Institution

TOKEN_PREFIX = "st_"  # noqa: S105 - a prefix, not a secret
_hasher = PasswordHasher()  # argon2id, memory-hard (64 MiB, 3 passes by default)
# A real hash to verify against when the username does not exist: equal timing, no user probing.
_DUMMY_HASH = _hasher.hash("dummy-password-for-timing-1A!")
PASSWORD_HISTORY_DEPTH = 5

# What a centre admin may grant; district admins may grant every role.
CENTRE_GRANTABLE: frozenset[str] = frozenset(
    {Role.TEAM_LEADER, Role.DOCTOR, Role.NURSE, Role.PUBLIC_HEALTH, Role.CASHIER}
)


# --- tokens and passwords -------------------------------------------------------------------


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def password_problems(password: str, username: str = "") -> list[str]:
    """Password policy: at least 8 characters of at least 3 classes, not containing the username."""
    problems: list[str] = []
    if len(password) < 8:
        problems.append("密码至少 8 位")
    if len(password) > 128:
        problems.append("密码不能超过 128 位")
    classes = sum(
        bool(re.search(pattern, password)) for pattern in (r"[a-z]", r"[A-Z]", r"\d", r"[^A-Za-z0-9]")
    )
    if classes < 3:
        problems.append("密码须包含大写字母、小写字母、数字、符号中的至少 3 类")
    if username and len(username) >= 3 and username.lower() in password.lower():
        problems.append("密码不能包含用户名")
    return problems


def check_password_policy(password: str, username: str = "", field: str = "password") -> None:
    problems = password_problems(password, username)
    if problems:
        raise BusinessRuleViolation(
            "密码不符合安全要求：" + "；".join(problems), code="weak_password", errors={field: problems}
        )


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


# --- sessions ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedTokens:
    session: StaffSession
    access_token: str
    refresh_token: str


def _settings() -> dict[str, timedelta]:
    config = current_app.config
    return {
        "idle": timedelta(minutes=int(config["SESSION_IDLE_MINUTES"])),
        "absolute": timedelta(hours=int(config["SESSION_ABSOLUTE_HOURS"])),
        "access": timedelta(minutes=int(config["ACCESS_TOKEN_MINUTES"])),
        "lock": timedelta(minutes=int(config["LOGIN_LOCK_MINUTES"])),
    }


def idle_timeout() -> timedelta:
    return _settings()["idle"]


def _issue(session: StaffSession, now: datetime) -> IssuedTokens:
    access, refresh = _new_token(), _new_token()
    session.previous_refresh_token_hash = session.refresh_token_hash
    session.access_token_hash = _token_hash(access)
    session.refresh_token_hash = _token_hash(refresh)
    session.access_expires_at = min(now + _settings()["access"], session.expires_at)
    session.last_seen_at = now
    return IssuedTokens(session, access, refresh)


@dataclass(frozen=True)
class LoginOutcome:
    """Login must commit failure counters even when it refuses, so it returns instead of raising."""

    tokens: IssuedTokens | None = None
    error: DomainError | None = None


def _wrong_password(left: int) -> Unauthorized:
    return Unauthorized(f"用户名或密码错误，再错 {left} 次账号将被锁定", code="invalid_credentials")


def _locked_now(max_failures: int) -> Locked:
    minutes = int(_settings()["lock"].total_seconds() // 60)
    return Locked(f"连续 {max_failures} 次密码错误，账号已锁定 {minutes} 分钟", code="account_locked")


def _locked_until(until: datetime) -> Locked:
    at = clock.local(until).strftime("%H:%M")
    return Locked(
        f"连续输错密码次数过多，账号已锁定，请于 {at} 后再试或联系管理员解锁", code="account_locked"
    )


_UNKNOWN_USER_KEY = "login:unknown:"
_UNKNOWN_USER_TTL = 24 * 3600


def _unknown_user_failure(username: str, now: datetime) -> DomainError:
    """Answer a login for a username that does not exist exactly like a wrong password.

    The countdown and the lock of a real account are replayed from a short-lived counter in
    Redis (keyed by a hash of the username), so that neither the message nor the sequence of
    answers tells an attacker whether the account exists. Losing the counter only restarts the
    countdown; without Redis the first answer of the countdown is given.
    """
    max_failures = int(current_app.config["LOGIN_MAX_FAILURES"])
    key = _UNKNOWN_USER_KEY + hashlib.sha256(username.encode()).hexdigest()
    try:
        redis = get_redis()
        locked_until = redis.get(key + ":locked")
        if locked_until is not None:
            until = datetime.fromtimestamp(float(locked_until), UTC)
            if until > now:
                return _locked_until(until)
        failures = int(redis.incr(key))
        redis.expire(key, _UNKNOWN_USER_TTL)
        if failures >= max_failures:
            until = now + _settings()["lock"]
            redis.set(key + ":locked", str(until.timestamp()), ex=_UNKNOWN_USER_TTL)
            redis.delete(key)
            return _locked_now(max_failures)
    except RedisError:
        failures = 1
    return _wrong_password(max_failures - failures)


def login(
    *, username: str, password: str, client_address: str | None, user_agent: str | None
) -> LoginOutcome:
    now = clock.now()
    username = username.strip().lower()
    user = db.session.execute(select(StaffUser).where(StaffUser.username == username)).scalar_one_or_none()
    if user is None:
        _verify(_DUMMY_HASH, password)
        return LoginOutcome(error=_unknown_user_failure(username, now))
    if user.is_locked(now):
        assert user.locked_until is not None
        audit.record(
            "login",
            "staff_user",
            user.id,
            result=audit.DENIED,
            purpose="account_locked",
            institution_id=user.institution_id,
        )
        return LoginOutcome(error=_locked_until(user.locked_until))
    if not _verify(user.password_hash, password):
        max_failures = int(current_app.config["LOGIN_MAX_FAILURES"])
        # Atomic increment: concurrent wrong guesses all count.
        db.session.execute(
            update(StaffUser)
            .where(StaffUser.id == user.id)
            .values(failed_login_count=StaffUser.failed_login_count + 1)
            .execution_options(synchronize_session=False)
        )
        db.session.refresh(user)
        audit.record(
            "login",
            "staff_user",
            user.id,
            result=audit.DENIED,
            purpose="wrong_password",
            institution_id=user.institution_id,
        )
        if user.failed_login_count >= max_failures:
            user.locked_until = now + _settings()["lock"]
            user.failed_login_count = 0
            return LoginOutcome(error=_locked_now(max_failures))
        return LoginOutcome(error=_wrong_password(max_failures - user.failed_login_count))
    if not user.is_active:
        audit.record(
            "login",
            "staff_user",
            user.id,
            result=audit.DENIED,
            purpose="account_disabled",
            institution_id=user.institution_id,
        )
        return LoginOutcome(error=Unauthorized("账号已停用，请联系管理员", code="account_disabled"))
    user.failed_login_count = 0
    user.locked_until = None
    user.last_login_at = now
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    session = StaffSession(
        id=uuid.uuid4(),
        user=user,
        user_id=user.id,
        created_at=now,
        expires_at=now + _settings()["absolute"],
        client_address=client_address,
        user_agent=(user_agent or "")[:200] or None,
    )
    tokens = _issue(session, now)
    db.session.add(session)
    audit.record("login", "staff_user", user.id, institution_id=user.institution_id)
    return LoginOutcome(tokens=tokens)


def _session_by_access_token(token: str) -> StaffSession | None:
    return db.session.execute(
        select(StaffSession).where(StaffSession.access_token_hash == _token_hash(token))
    ).scalar_one_or_none()


def _check_alive(session: StaffSession, now: datetime) -> None:
    if session.revoked_at is not None:
        raise Unauthorized("登录已失效，请重新登录", code="session_revoked")
    if now >= session.expires_at:
        _revoke(session, now, "expired")
        raise Unauthorized("登录已超过最长有效期，请重新登录", code="session_expired")
    if now - session.last_seen_at > _settings()["idle"]:
        _revoke(session, now, "idle_timeout")
        raise Unauthorized("长时间未操作，已自动退出，请重新登录", code="session_idle_timeout")
    if not session.user.is_active:
        _revoke(session, now, "user_disabled")
        raise Unauthorized("账号已停用，请联系管理员", code="account_disabled")


def _revoke(session: StaffSession, now: datetime, reason: str) -> None:
    session.revoked_at = now
    session.revoke_reason = reason


def principal_for_token(token: str) -> Principal:
    """Resolve a staff access token.

    May leave changes in the session (a revocation on timeout, the sliding `last_seen_at`): the
    caller commits them whether this returns or raises `Unauthorized`.
    """
    now = clock.now()
    session = _session_by_access_token(token)
    if session is None:
        raise Unauthorized("登录凭证无效，请重新登录", code="invalid_token")
    _check_alive(session, now)
    if now >= session.access_expires_at:
        raise Unauthorized("访问令牌已过期，请用刷新令牌换取新令牌", code="access_token_expired")
    if now - session.last_seen_at > timedelta(seconds=30):
        # Throttled sliding window: one small write per half minute of activity.
        db.session.execute(
            update(StaffSession)
            .where(StaffSession.id == session.id)
            .values(last_seen_at=now)
            .execution_options(synchronize_session=False)
        )
    user = session.user
    return Principal(
        kind="staff",
        id=user.id,
        role=user.role,
        institution_id=user.institution_id,
        session_id=session.id,
        display_name=user.name,
        grants=grants_of(user.id),
        extra={"must_change_password": user.must_change_password},
    )


def grants_of(user_id: uuid.UUID) -> frozenset[str]:
    """The permissions granted to one member of staff (read at every request: a revocation takes
    effect at once)."""
    rows = db.session.execute(select(StaffGrant.permission).where(StaffGrant.user_id == user_id)).scalars()
    return frozenset(rows)


def refresh(*, refresh_token: str) -> IssuedTokens:
    """Rotate the token pair. Reusing a replaced refresh token revokes the whole session.

    A legitimate client never presents a refresh token twice, so a second use means the token was
    copied: both the thief and the user are logged out (the caller commits before raising).
    """
    now = clock.now()
    presented = _token_hash(refresh_token)
    session = db.session.execute(
        select(StaffSession).where(StaffSession.refresh_token_hash == presented)
    ).scalar_one_or_none()
    if session is None:
        replaced = db.session.execute(
            select(StaffSession).where(StaffSession.previous_refresh_token_hash == presented)
        ).scalar_one_or_none()
        if replaced is not None and replaced.revoked_at is None:
            _revoke(replaced, now, "refresh_token_reused")
            audit.record(
                "refresh",
                "staff_session",
                replaced.id,
                result=audit.DENIED,
                purpose="refresh_token_reused",
                institution_id=replaced.user.institution_id,
            )
            raise Unauthorized(
                "刷新令牌已被使用过，为安全起见已退出登录，请重新登录", code="refresh_token_reused"
            )
        raise Unauthorized("刷新令牌无效，请重新登录", code="invalid_refresh_token")
    _check_alive(session, now)
    return _issue(session, now)


def logout(principal: Principal) -> None:
    session = db.session.get(StaffSession, principal.session_id)
    if session is not None and session.revoked_at is None:
        session.revoked_at = clock.now()
        session.revoke_reason = "logout"
    audit.record("logout", "staff_user", principal.id)


def revoke_all_sessions(user_id: uuid.UUID, reason: str) -> int:
    result = db.session.execute(
        update(StaffSession)
        .where(StaffSession.user_id == user_id, StaffSession.revoked_at.is_(None))
        .values(revoked_at=clock.now(), revoke_reason=reason)
        .execution_options(synchronize_session=False)
    )
    return int(cast(CursorResult[Any], result).rowcount or 0)


def change_password(principal: Principal, *, current_password: str, new_password: str) -> None:
    user = db.session.get_one(StaffUser, principal.id)
    if not _verify(user.password_hash, current_password):
        raise BusinessRuleViolation(
            "当前密码不正确", code="wrong_current_password", errors={"current_password": ["当前密码不正确"]}
        )
    check_password_policy(new_password, user.username, field="new_password")
    _set_password(user, new_password, temporary=False)
    # Other sessions end; this one continues.
    db.session.execute(
        update(StaffSession)
        .where(
            StaffSession.user_id == user.id,
            StaffSession.revoked_at.is_(None),
            StaffSession.id != principal.session_id,
        )
        .values(revoked_at=clock.now(), revoke_reason="password_changed")
        .execution_options(synchronize_session=False)
    )
    _history(user, principal.id, "password_changed", {}, {}, None)


def _set_password(user: StaffUser, password: str, *, temporary: bool) -> None:
    recent = db.session.execute(
        select(PasswordHistory.password_hash)
        .where(PasswordHistory.user_id == user.id)
        .order_by(PasswordHistory.created_at.desc(), PasswordHistory.id.desc())
        .limit(PASSWORD_HISTORY_DEPTH)
    ).scalars()
    # The current hash counts too: accounts created outside `create_staff` (demo seed, imports)
    # have no history rows, and "changing" a password to itself is a reuse.
    if _verify(user.password_hash, password) or any(_verify(old, password) for old in recent):
        raise BusinessRuleViolation(
            f"新密码不能与最近 {PASSWORD_HISTORY_DEPTH} 次使用过的密码相同",
            code="password_reused",
            errors={"new_password": ["不能与最近用过的密码相同"]},
        )
    user.password_hash = hash_password(password)
    user.password_changed_at = clock.now()
    user.must_change_password = temporary
    db.session.add(PasswordHistory(user_id=user.id, password_hash=user.password_hash))


# --- administration -------------------------------------------------------------------------


def _history(
    user: StaffUser,
    actor_id: uuid.UUID | None,
    action: str,
    before: dict[str, Any],
    after: dict[str, Any],
    reason: str | None,
) -> None:
    db.session.add(
        StaffChange(
            user_id=user.id, actor_id=actor_id, action=action, before=before, after=after, reason=reason
        )
    )
    audit.record(
        action,
        "staff_user",
        user.id,
        institution_id=user.institution_id,
        purpose=reason,
        detail={"after": {k: v for k, v in after.items() if k != "phone"}},
    )


def _check_grant(actor: Principal, role: str, institution_id: uuid.UUID | None) -> None:
    target = Role(role)
    if actor.role == Role.CENTRE_ADMIN and role not in CENTRE_GRANTABLE:
        raise PermissionDenied(
            f"社康中心管理员不能授予“{ROLE_LABELS[target]}”角色，请联系区级管理员", code="role_not_grantable"
        )
    if target in DISTRICT_ONLY_ROLES and institution_id is not None:
        raise BusinessRuleViolation(
            f"“{ROLE_LABELS[target]}”是区级角色，不能归属社康中心",
            code="district_role_with_centre",
            errors={"institution_id": ["区级角色不填"]},
        )
    if target not in DISTRICT_CAPABLE_ROLES and institution_id is None:
        raise BusinessRuleViolation(
            f"“{ROLE_LABELS[target]}”须归属一个社康中心",
            code="centre_required",
            errors={"institution_id": ["请选择所属社康中心"]},
        )


def _target_institution(actor: Principal, requested: uuid.UUID | None) -> uuid.UUID | None:
    if actor.is_district:
        if requested is not None and db.session.get(Institution, requested) is None:
            raise BusinessRuleViolation(
                "所属社康中心不存在",
                code="institution_not_found",
                errors={"institution_id": ["所属社康中心不存在"]},
            )
        return requested
    if requested is not None and requested != actor.institution_id:
        raise PermissionDenied("只能管理本中心的人员", code="outside_scope")
    return actor.institution_id


def create_staff(
    actor: Principal,
    *,
    username: str,
    name: str,
    role: str,
    password: str,
    phone: str | None = None,
    institution_id: uuid.UUID | None = None,
) -> StaffUser:
    username = username.strip().lower()
    institution = _target_institution(actor, institution_id)
    _check_grant(actor, role, institution)
    check_password_policy(password, username)
    taken = db.session.execute(
        select(StaffUser.id).where(StaffUser.username == username).execution_options(skip_centre_scope=True)
    ).first()
    if taken:
        raise Conflict(
            f"用户名“{username}”已被使用", code="username_taken", errors={"username": ["已被使用"]}
        )
    user = StaffUser(
        id=uuid.uuid4(),
        username=username,
        name=name.strip(),
        role=role,
        phone=phone,
        institution_id=institution,
        password_hash="",
    )
    db.session.add(user)
    _set_password(user, password, temporary=True)
    _history(user, actor.id, "staff_created", {}, {"role": role, "institution_id": str(institution)}, None)
    return user


def get_staff(staff_id: uuid.UUID) -> StaffUser:
    return get_or_404(StaffUser, staff_id, object_type="staff_user")


def list_staff(
    *,
    page: int,
    size: int,
    role: str | None = None,
    institution_id: uuid.UUID | None = None,
    q: str | None = None,
    is_active: bool | None = None,
) -> Page[StaffUser]:
    statement: Select[Any] = select(StaffUser).order_by(StaffUser.institution_id, StaffUser.username)
    if role:
        statement = statement.where(StaffUser.role == role)
    if institution_id:
        statement = statement.where(StaffUser.institution_id == institution_id)
    if is_active is not None:
        statement = statement.where(StaffUser.is_active.is_(is_active))
    if q:
        term = q.strip()
        conditions = [
            StaffUser.name.contains(term, autoescape=True),
            StaffUser.username.contains(term.lower(), autoescape=True),
        ]
        if re.fullmatch(r"\+?\d{11,13}", term):
            conditions.append(StaffUser.phone_bidx == blind_index(term, "phone"))
        statement = statement.where(or_(*conditions))
    return paginate(statement, page, size)


def _not_self(actor: Principal, user: StaffUser) -> None:
    if user.id == actor.id:
        raise PermissionDenied("不能修改自己的角色或状态，请联系其他管理员", code="self_administration")


def _check_administrable(actor: Principal, user: StaffUser, message: str) -> None:
    """A centre admin administers only the roles it may grant, never a peer admin or an auditor."""
    if actor.role == Role.CENTRE_ADMIN and user.role not in CENTRE_GRANTABLE:
        raise PermissionDenied(message, code="role_not_grantable")


def update_staff(actor: Principal, staff_id: uuid.UUID, changes: dict[str, Any]) -> StaffUser:
    user = get_or_404(StaffUser, staff_id, object_type="staff_user", action="update")
    if user.id != actor.id:
        _check_administrable(actor, user, "社康中心管理员不能修改该人员的资料")
    before = {"name": user.name}
    for field in ("name", "phone"):
        if field in changes:
            setattr(
                user, field, changes[field].strip() if isinstance(changes[field], str) else changes[field]
            )
    _history(user, actor.id, "staff_updated", before, {"name": user.name}, None)
    return user


def change_role(actor: Principal, staff_id: uuid.UUID, *, role: str, reason: str) -> StaffUser:
    user = get_or_404(StaffUser, staff_id, object_type="staff_user", action="update")
    _not_self(actor, user)
    if actor.role == Role.CENTRE_ADMIN and user.role not in CENTRE_GRANTABLE:
        raise PermissionDenied("社康中心管理员不能调整该人员的角色", code="role_not_grantable")
    _check_grant(actor, role, user.institution_id)
    if role == user.role:
        raise Conflict("该人员已是此角色", code="role_unchanged")
    before = {"role": user.role}
    user.role = role
    revoke_all_sessions(user.id, "role_changed")
    _history(user, actor.id, "role_changed", before, {"role": role}, reason)
    _drop_grants_the_role_may_not_hold(actor, user, reason)
    return user


def set_active(actor: Principal, staff_id: uuid.UUID, *, active: bool, reason: str) -> StaffUser:
    user = get_or_404(StaffUser, staff_id, object_type="staff_user", action="update")
    _not_self(actor, user)
    if actor.role == Role.CENTRE_ADMIN and user.role not in CENTRE_GRANTABLE:
        raise PermissionDenied("社康中心管理员不能停用或启用该人员", code="role_not_grantable")
    if user.is_active == active:
        raise Conflict("账号已是该状态", code="status_unchanged")
    user.is_active = active
    if not active:
        revoke_all_sessions(user.id, "user_disabled")
    _history(
        user,
        actor.id,
        "staff_enabled" if active else "staff_disabled",
        {"is_active": not active},
        {"is_active": active},
        reason,
    )
    return user


def unlock(actor: Principal, staff_id: uuid.UUID, *, reset_password: str | None, reason: str) -> StaffUser:
    user = get_or_404(StaffUser, staff_id, object_type="staff_user", action="update")
    _not_self(actor, user)
    # Resetting a peer admin's password would let one centre admin log in as another.
    _check_administrable(actor, user, "社康中心管理员不能解锁或重置该人员的密码")
    user.locked_until = None
    user.failed_login_count = 0
    if reset_password is not None:
        check_password_policy(reset_password, user.username)
        _set_password(user, reset_password, temporary=True)
        revoke_all_sessions(user.id, "password_reset")
    _history(user, actor.id, "staff_unlocked", {}, {"password_reset": reset_password is not None}, reason)
    return user


UNMASK_REASONS: dict[str, str] = {
    "verify_identity": "核实身份",
    "contact_person": "联系本人",
    "official_inquiry": "公务核查",
    "other": "其他（须说明）",
}


def unmask(actor: Principal, staff_id: uuid.UUID, *, field: str, reason: str, note: str | None) -> str | None:
    """The unmask pattern (DATA-02): permission + reason + one field + one audit row."""
    if not actor.can("pii:unmask"):
        raise PermissionDenied("您没有查看完整个人信息的权限", code="unmask_not_permitted")
    if reason == "other" and not (note and note.strip()):
        raise BusinessRuleViolation(
            "原因为“其他”时须填写说明", code="unmask_note_required", errors={"note": ["请填写查看原因"]}
        )
    user = get_or_404(StaffUser, staff_id, object_type="staff_user")
    audit.record(
        "unmask",
        "staff_user",
        user.id,
        institution_id=user.institution_id,
        purpose=f"{reason}:{(note or '').strip()[:150]}",
        detail={"field": field},
    )
    value: str | None = getattr(user, field)
    return value


# --- category permissions (DATA-05 grants) ------------------------------------------------------
#
# 严重精神障碍 and 肺结核 records are visible only to staff holding that category's permission
# (`health:smd`, `health:tb`), granted to one person at a time by the centre's administrator or a
# district administrator. Grants are read at every request (`grants_of`): a change takes effect
# at once. Granting what is held, or revoking what is not, changes nothing and answers the same.


@dataclass(frozen=True)
class StaffListItem:
    """A staff row of a list with its grants read in one query for the whole page."""

    user: StaffUser
    grants: list[str]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.user, name)


def with_grants(found: Page[StaffUser]) -> Page[StaffListItem]:
    held: dict[uuid.UUID, list[str]] = {user.id: [] for user in found.items}
    if held:
        rows = db.session.execute(
            select(StaffGrant.user_id, StaffGrant.permission)
            .where(StaffGrant.user_id.in_(list(held)))
            .order_by(StaffGrant.permission)
        )
        for user_id, permission in rows:
            held[user_id].append(permission)
    return Page([StaffListItem(u, held[u.id]) for u in found.items], found.page, found.size, found.total)


def permissions_of(user: StaffUser | StaffListItem) -> list[str]:
    """The permissions granted to a member of staff, sorted (what the staff schemas show)."""
    if isinstance(user, StaffListItem):
        return user.grants
    return sorted(grants_of(user.id))


@dataclass(frozen=True)
class GrantsView:
    """What the grants screen shows: the grants held and the permissions the user's role may hold."""

    user: StaffUser
    grants: list[StaffGrant]

    @property
    def staff_id(self) -> uuid.UUID:
        return self.user.id

    @property
    def available(self) -> list[dict[str, str]]:
        return [
            {"permission": permission, "label": label}
            for permission, (label, roles) in GRANTABLE_PERMISSIONS.items()
            if self.user.role in roles
        ]


def permission_label(permission: str) -> str:
    found = GRANTABLE_PERMISSIONS.get(permission)
    return found[0] if found is not None else permission


def _grantable(permission: str) -> tuple[str, frozenset[Role]]:
    found = GRANTABLE_PERMISSIONS.get(permission)
    if found is None:
        choices = "、".join(f"{code}（{label}）" for code, (label, _) in GRANTABLE_PERMISSIONS.items())
        message = f"“{permission[:40]}”不是可授予的权限，可授予的权限为：{choices}"
        raise BusinessRuleViolation(
            message, code="permission_not_grantable", errors={"permission": [message]}
        )
    return found


def _grant_rows(user_id: uuid.UUID) -> list[StaffGrant]:
    return list(
        db.session.execute(
            select(StaffGrant).where(StaffGrant.user_id == user_id).order_by(StaffGrant.permission)
        ).scalars()
    )


def grants_view(staff_id: uuid.UUID) -> GrantsView:
    """The grants of one member of staff (404 outside the caller's centre)."""
    user = get_staff(staff_id)
    return GrantsView(user, _grant_rows(user.id))


def grant_permission(actor: Principal, staff_id: uuid.UUID, permission: str, *, reason: str) -> GrantsView:
    """Grant a category permission. Only the roles `GRANTABLE_PERMISSIONS` names may hold it (422)."""
    label, roles = _grantable(permission)
    user = get_or_404(StaffUser, staff_id, object_type="staff_user", action="update")
    if user.role not in roles:
        allowed = "、".join(ROLE_LABELS[r] for r in sorted(roles))
        message = f"“{label}”权限只能授予{allowed}，该人员的角色是{ROLE_LABELS[Role(user.role)]}"
        raise BusinessRuleViolation(message, code="permission_not_for_role", errors={"permission": [message]})
    before = sorted(grants_of(user.id))
    if permission not in before:
        try:
            with db.session.begin_nested():
                db.session.add(
                    StaffGrant(
                        user_id=user.id,
                        permission=permission,
                        granted_by=actor.actor_ref,
                        granted_at=clock.now(),
                    )
                )
        except IntegrityError:  # granted at the same moment by another administrator: same state
            pass
        else:
            after = sorted({*before, permission})
            _history(
                user, actor.id, "permission_granted", {"grants": before}, {"grants": after}, reason.strip()
            )
    return GrantsView(user, _grant_rows(user.id))


def revoke_permission(actor: Principal, staff_id: uuid.UUID, permission: str, *, reason: str) -> GrantsView:
    """Revoke a category permission; the holder loses access with their next request."""
    _grantable(permission)
    user = get_or_404(StaffUser, staff_id, object_type="staff_user", action="update")
    before = sorted(grants_of(user.id))
    if permission in before:
        _revoke_grants(actor, user, [permission], before, reason.strip())
    return GrantsView(user, _grant_rows(user.id))


def _revoke_grants(
    actor: Principal, user: StaffUser, permissions: list[str], before: list[str], reason: str
) -> None:
    result = db.session.execute(
        delete(StaffGrant)
        .where(StaffGrant.user_id == user.id, StaffGrant.permission.in_(permissions))
        .execution_options(synchronize_session=False)
    )
    if int(cast(CursorResult[Any], result).rowcount or 0) == 0:  # revoked at the same moment elsewhere
        return
    after = sorted(set(before) - set(permissions))
    _history(user, actor.id, "permission_revoked", {"grants": before}, {"grants": after}, reason)


def _drop_grants_the_role_may_not_hold(actor: Principal, user: StaffUser, reason: str) -> None:
    """After a role change: a permission the new role may not hold is revoked with it."""
    before = sorted(grants_of(user.id))
    lost = [p for p in before if p in GRANTABLE_PERMISSIONS and user.role not in GRANTABLE_PERMISSIONS[p][1]]
    if lost:
        _revoke_grants(actor, user, lost, before, f"角色变更：{reason}")
