"""Sliding-window rate limits in Redis that fail closed (DATA-08, API4, REL-04).

A `Rule` allows `limit` events per `window` seconds for one key (a phone's blind index, a user,
an IP address). `hit(rules)` checks every rule and records the event against all of them in one
Lua script, so an event either counts everywhere or (when any rule is exhausted) nowhere. The
windows slide: "5 per hour" means any 60 minutes, with no burst at the top of the hour.

Time comes from `app.core.clock` (moved by time-machine in tests), never from the Redis server.
Any Redis failure raises `ProviderUnavailable` (503): an unavailable limiter refuses, it never
lets traffic through.
"""

from __future__ import annotations

import logging
import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

from redis.exceptions import RedisError

from app.core import clock
from app.core.errors import ProviderUnavailable, RateLimited
from app.core.redis import get_redis

log = logging.getLogger(__name__)

# KEYS: one sorted set per rule. ARGV: now, member, then (window, limit) per rule.
# Returns {index of the rule to wait for (1-based), seconds to wait} or {0, 0} when recorded.
_HIT = """
local now = tonumber(ARGV[1])
local worst, wait = 0, 0
for i, key in ipairs(KEYS) do
  local window = tonumber(ARGV[1 + 2 * i])
  local limit = tonumber(ARGV[2 + 2 * i])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  local count = redis.call('ZCARD', key)
  if count >= limit then
    local entry = redis.call('ZRANGE', key, count - limit, count - limit, 'WITHSCORES')
    local until_free = tonumber(entry[2]) + window - now
    if until_free > wait then worst, wait = i, until_free end
  end
end
if worst > 0 then return {worst, math.ceil(wait)} end
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, now, ARGV[2])
  redis.call('EXPIRE', key, math.ceil(tonumber(ARGV[1 + 2 * i])) + 60)
end
return {0, 0}
"""

REDIS_DOWN_MESSAGE = "服务繁忙，请稍后再试"


@dataclass(frozen=True)
class Rule:
    key: str
    window: int  # seconds
    limit: int
    message: str  # Chinese, shown when this rule refuses; "{when}" is replaced by the retry time


@dataclass(frozen=True)
class Refusal:
    rule: Rule
    retry_after: int  # seconds


def hit(rules: Sequence[Rule]) -> Refusal | None:
    """Record one event against every rule, or none if a rule is exhausted. Raises on Redis errors."""
    if not rules:
        return None
    argv: list[str | float | int] = [
        clock.now().timestamp(),
        f"{clock.now().timestamp()}:{secrets.token_hex(6)}",
    ]
    for rule in rules:
        argv += [rule.window, rule.limit]
    result = cast(Any, get_redis()).eval(_HIT, len(rules), *[r.key for r in rules], *argv)
    index, wait = int(result[0]), int(result[1])
    if index == 0:
        return None
    return Refusal(rules[index - 1], max(wait, 1))


def when_text(seconds: int) -> str:
    """The retry time as it reads after "请": "45秒后", "5分钟后", "于明天08:30后"."""
    if seconds < 120:
        return f"{seconds}秒后"
    if seconds < 3600:
        return f"{math.ceil(seconds / 60)}分钟后"
    at = clock.local(clock.now() + timedelta(seconds=seconds))
    today = clock.today_local()
    if at.date() == today:
        day = "今天"
    elif at.date() == today + timedelta(days=1):
        day = "明天"
    else:
        day = f"{at.month}月{at.day}日"
    return f"于{day}{at:%H:%M}后"


def enforce(rules: Sequence[Rule], *, code: str = "rate_limited") -> None:
    """`hit` for request handlers: 429 with Retry-After and a Chinese message; 503 when Redis is down."""
    try:
        refusal = hit(rules)
    except RedisError as exc:
        log.error(
            "rate limiter unavailable, refusing (fail closed)", extra={"error_type": type(exc).__name__}
        )
        raise ProviderUnavailable(
            REDIS_DOWN_MESSAGE, code="service_unavailable", headers={"Retry-After": "30"}
        ) from exc
    if refusal is not None:
        raise RateLimited(
            refusal.rule.message.format(when=when_text(refusal.retry_after)),
            code=code,
            headers={"Retry-After": str(refusal.retry_after)},
        )
