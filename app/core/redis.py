"""Redis: a real server from REDIS_URL, or an embedded fakeredis when it is empty (development)."""

from __future__ import annotations

from typing import cast

import fakeredis
from flask import Flask, current_app
from redis import Redis


def make_redis(url: str) -> Redis[bytes]:
    if not url:
        return cast("Redis[bytes]", fakeredis.FakeRedis(server=fakeredis.FakeServer()))
    return Redis.from_url(url, socket_connect_timeout=2, socket_timeout=3, health_check_interval=30)


def init_app(app: Flask, connection: Redis[bytes] | None = None) -> None:
    app.extensions["redis"] = connection or make_redis(app.config["REDIS_URL"])


def get_redis() -> Redis[bytes]:
    return cast("Redis[bytes]", current_app.extensions["redis"])
