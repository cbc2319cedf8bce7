"""Which WeChat mini-program adapter the application uses.

| settings                                         | adapter                                          |
|--------------------------------------------------|--------------------------------------------------|
| `WECHAT_MP_APPID` + `WECHAT_MP_SECRET`           | real wechatpy client; `WECHAT_API_BASE` or WeChat |
| no credentials, `WECHAT_API_BASE` set (dev/test) | real wechatpy client against that emulator       |
| no credentials, no base (dev/test)               | in-process fake (accepts `code-<openid>` codes)  |
| production without credentials, or a plain-http  | refused: login answers 503 `wechat_not_configured` |
| or loopback base                                 |                                                  |

Tests (and tools) may put any `MiniProgramAuth` in `app.extensions["wechat_mp"]`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, cast
from urllib.parse import urlsplit

from flask import current_app
from redis import Redis

from app.core.redis import get_redis
from app.integrations.wechat_mp import MiniProgramAuth, WeChatMiniProgram
from app.integrations.wechat_mp_fake import FakeMiniProgramAuth

log = logging.getLogger(__name__)

# Credentials the emulator accepts by default (it accepts any unless started with --appid/--secret).
EMULATOR_APPID = "wx-emulator-appid"
EMULATOR_SECRET = "emulator-secret"  # noqa: S105 - not a secret: the emulator's placeholder
_CACHE = "_wechat_mp_auto"


class NotConfigured(RuntimeError):
    """The WeChat adapter cannot be used with these settings (production without credentials)."""


def build(config: Mapping[str, Any], redis: Redis[bytes]) -> MiniProgramAuth:
    appid, secret = str(config["WECHAT_MP_APPID"]), str(config["WECHAT_MP_SECRET"])
    base = str(config["WECHAT_API_BASE"])
    production = config["APP_ENV"] == "production"
    if production:
        if not (appid and secret):
            raise NotConfigured("WECHAT_MP_APPID and WECHAT_MP_SECRET are required in production")
        if base and urlsplit(base).scheme != "https":
            raise NotConfigured("WECHAT_API_BASE must be https in production (the emulator is not)")
    if appid and secret:
        return WeChatMiniProgram(appid, secret, redis=redis, api_base=base)
    if base:
        return WeChatMiniProgram(EMULATOR_APPID, EMULATOR_SECRET, redis=redis, api_base=base)
    return FakeMiniProgramAuth()


def mini_program() -> MiniProgramAuth:
    """The adapter of the current application (built once per app and Redis connection)."""
    override = current_app.extensions.get("wechat_mp")
    if override is not None:
        return cast(MiniProgramAuth, override)
    redis = get_redis()
    cached = current_app.extensions.get(_CACHE)
    if cached is not None and cached[0] is redis:
        return cast(MiniProgramAuth, cached[1])
    adapter = build(current_app.config, redis)
    current_app.extensions[_CACHE] = (redis, adapter)
    return adapter
