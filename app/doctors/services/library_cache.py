"""Redis cache of the public doctor library, invalidated in O(1) by a version counter.

Every cached response is stored under `doctor_library:v<version>:<kind>:<sha256(normalised
query)>` with a TTL (`DOCTOR_LIBRARY_CACHE_SECONDS`). Whatever changes what the library shows (a
profile, a review or practice status, a team or its membership, a capacity or a signed count)
calls `invalidate()`, which increments the version *after the commit*: readers then miss every
old key at once, and the old keys expire by themselves. Bumping after the commit (not before)
means a reader can never cache pre-change data under the new version.

The cache is an optimisation only: when Redis fails, reads go to the database and a failed bump
leaves stale entries for at most one TTL (logged).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from flask import current_app
from redis.exceptions import RedisError

from app.core.db import on_commit
from app.core.redis import get_redis

log = logging.getLogger(__name__)

VERSION_KEY = "doctor_library:version"


def _ttl() -> int:
    return max(int(current_app.config["DOCTOR_LIBRARY_CACHE_SECONDS"]), 1)


def cache_key(kind: str, params: Mapping[str, Any], version: int) -> str:
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    return f"doctor_library:v{version}:{kind}:{digest}"


def current_version() -> int:
    raw = get_redis().get(VERSION_KEY)
    return int(raw) if raw is not None else 0


def cached(kind: str, params: Mapping[str, Any], compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The JSON-able result of `compute()` for these (already normalised) params, from cache if fresh."""
    try:
        redis = get_redis()
        key = cache_key(kind, params, current_version())
        raw = redis.get(key)
    except RedisError:
        log.warning("doctor library cache unavailable; reading the database", exc_info=True)
        return compute()
    if raw is not None:
        value: dict[str, Any] = json.loads(raw)
        return value
    value = compute()
    try:
        redis.set(key, json.dumps(value, ensure_ascii=False, separators=(",", ":")), ex=_ttl())
    except RedisError:
        log.warning("doctor library cache write failed", exc_info=True)
    return value


def _bump() -> None:
    try:
        get_redis().incr(VERSION_KEY)
    except RedisError:
        log.warning("doctor library cache version bump failed; entries stay until their TTL", exc_info=True)


def invalidate() -> None:
    """Invalidate every cached library response once the current transaction commits."""
    on_commit(_bump)
