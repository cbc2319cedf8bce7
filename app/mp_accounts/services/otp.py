"""SMS one-time codes (DATA-08): 6 digits, 5 minutes, single use, dead after 5 wrong tries.

A code is a *challenge* stored in Redis under the WeChat user and its purpose (one open challenge
per user and purpose; asking again replaces it). Redis holds a salted HMAC of the code, never the
code; the plaintext exists only in the (encrypted) outbox payload of its SMS.

Verification is one Lua script: the right code deletes the challenge and returns its payload (so
two concurrent confirmations cannot both win); a wrong code counts, and the 5th wrong one deletes
the challenge, so even the right code fails afterwards. Expiry is checked against the
application clock as well as by the key's TTL.

Redis unavailable: issuing and verifying raise `ProviderUnavailable` (fail closed).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from flask import current_app
from redis.exceptions import RedisError

from app.core import clock
from app.core.errors import BusinessRuleViolation, ProviderUnavailable
from app.core.redis import get_redis
from app.mp_accounts.services.limits import REDIS_DOWN_MESSAGE

CODE_LIFETIME = timedelta(minutes=5)
MAX_WRONG_ATTEMPTS = 5
DIGITS = 6

_VERIFY = """
local h = redis.call('HMGET', KEYS[1], 'code_hash', 'expires_at', 'payload')
if not h[1] then return {'missing'} end
if tonumber(h[2]) <= tonumber(ARGV[2]) then
  redis.call('DEL', KEYS[1])
  return {'expired'}
end
if h[1] == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return {'ok', h[3]}
end
local n = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
if n >= tonumber(ARGV[3]) then
  redis.call('DEL', KEYS[1])
  return {'dead', tostring(n)}
end
return {'wrong', tostring(n)}
"""

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IssuedCode:
    challenge_id: str
    code: str
    expires_at: datetime


def _key(purpose: str, user_id: uuid.UUID) -> str:
    return f"mp:otp:{purpose}:{user_id}"


def _hash(salt: str, code: str) -> str:
    secret = str(current_app.config["SECRET_KEY"]).encode()
    return hmac.new(secret, f"{salt}|{code}".encode(), hashlib.sha256).hexdigest()


def _unavailable(exc: RedisError) -> ProviderUnavailable:
    log.error("OTP store unavailable, refusing (fail closed)", extra={"error_type": type(exc).__name__})
    return ProviderUnavailable(REDIS_DOWN_MESSAGE, code="service_unavailable", headers={"Retry-After": "30"})


def prepare() -> IssuedCode:
    """A fresh code and challenge id (nothing stored yet: `store` after the SMS is queued)."""
    return IssuedCode(
        challenge_id=secrets.token_hex(8),
        code=f"{secrets.randbelow(10**DIGITS):0{DIGITS}d}",
        expires_at=clock.now() + CODE_LIFETIME,
    )


def store(purpose: str, user_id: uuid.UUID, issued: IssuedCode, payload: dict[str, Any]) -> None:
    """Open the challenge, replacing any open one of this user and purpose."""
    salt = secrets.token_hex(16)
    key = _key(purpose, user_id)
    try:
        pipe = get_redis().pipeline(transaction=True)
        pipe.delete(key)
        pipe.hset(
            key,
            mapping={
                "salt": salt,
                "challenge_id": issued.challenge_id,
                "code_hash": _hash(salt, issued.code),
                "expires_at": str(issued.expires_at.timestamp()),
                "attempts": 0,
                "payload": json.dumps(payload, sort_keys=True),
            },
        )
        pipe.expire(key, int(CODE_LIFETIME.total_seconds()) + 5)
        pipe.execute()
    except RedisError as exc:
        raise _unavailable(exc) from exc


def verify(purpose: str, user_id: uuid.UUID, code: str) -> dict[str, Any]:
    """The payload of the challenge if `code` is right (the challenge is then gone); else 422."""
    key = _key(purpose, user_id)
    try:
        redis = get_redis()
        raw_salt = redis.hget(key, "salt")
        if raw_salt is None:
            raise _invalid()
        salt = raw_salt.decode() if isinstance(raw_salt, bytes) else str(raw_salt)
        result = cast(Any, redis).eval(
            _VERIFY, 1, key, _hash(salt, code), str(clock.now().timestamp()), str(MAX_WRONG_ATTEMPTS)
        )
    except RedisError as exc:
        raise _unavailable(exc) from exc
    outcome = _text(result[0])
    if outcome == "ok":
        loaded: dict[str, Any] = json.loads(_text(result[1]))
        return loaded
    if outcome == "expired":
        raise BusinessRuleViolation("验证码已过期，请重新获取", code="otp_expired")
    if outcome == "dead":
        raise BusinessRuleViolation("验证码错误次数过多，已失效，请重新获取", code="otp_exhausted")
    if outcome == "wrong":
        left = MAX_WRONG_ATTEMPTS - int(_text(result[1]))
        raise BusinessRuleViolation(
            f"验证码错误，还可尝试 {left} 次",
            code="otp_wrong",
            errors={"otp": [f"验证码错误，还可尝试 {left} 次"]},
        )
    raise _invalid()


def _invalid() -> BusinessRuleViolation:
    return BusinessRuleViolation("验证码无效或已使用，请重新获取", code="otp_invalid")


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
