"""The real adapter only: wechatpy's token cache in Redis, credentials, and the outbound-call guard."""

from __future__ import annotations

import socket

import pytest
from flask import Flask

from app.integrations.sandbox.wechat_api import EmulatorControl, RunningEmulator
from app.integrations.sandbox.wechat_state import Fault
from app.integrations.wechat_mp import GuardedHttp, ProviderBusy, ProviderError, WeChatMiniProgram
from tests.integrations.conftest import APPID, SECRET, TIMEOUT, real_adapter


def test_access_token_is_fetched_once_and_cached_in_redis(
    app: Flask, wechat_emulator: RunningEmulator
) -> None:
    control = EmulatorControl(wechat_emulator.url)
    adapter = real_adapter(app, wechat_emulator)
    for n in range(3):
        adapter.code_to_session(control.issue_code(f"oUser{n}"))

    assert control.stats()["token_requests"] == 1
    assert control.stats()["session_requests"] == 3
    redis = app.extensions["redis"]
    assert redis.get(adapter.access_token_key) is not None
    # Cached 5 minutes short of WeChat's 7200 s, so a cached token is never about to expire.
    assert 0 < redis.ttl(adapter.access_token_key) <= 7200 - 300


def test_cached_token_is_shared_between_adapters(app: Flask, wechat_emulator: RunningEmulator) -> None:
    """Another process (another adapter on the same Redis) reuses the token."""
    control = EmulatorControl(wechat_emulator.url)
    real_adapter(app, wechat_emulator).code_to_session(control.issue_code("oA"))
    real_adapter(app, wechat_emulator).code_to_session(control.issue_code("oB"))

    assert control.stats()["token_requests"] == 1


def test_token_is_fetched_again_when_the_cache_is_gone(app: Flask, wechat_emulator: RunningEmulator) -> None:
    control = EmulatorControl(wechat_emulator.url)
    adapter = real_adapter(app, wechat_emulator)
    adapter.code_to_session(control.issue_code("oA"))
    app.extensions["redis"].delete(adapter.access_token_key)

    adapter.code_to_session(control.issue_code("oA"))

    assert control.stats()["token_requests"] == 2


def test_refused_access_token_is_evicted(app: Flask, wechat_emulator: RunningEmulator) -> None:
    control = EmulatorControl(wechat_emulator.url)
    adapter = real_adapter(app, wechat_emulator)
    adapter.code_to_session(control.issue_code("oA"))
    control.fail_next("jscode2session", Fault(errcode=40001))

    with pytest.raises(ProviderBusy):
        adapter.code_to_session(control.issue_code("oA"))

    assert app.extensions["redis"].get(adapter.access_token_key) is None
    adapter.code_to_session(control.issue_code("oA"))
    assert control.stats()["token_requests"] == 2


def test_wrong_secret_is_a_provider_error(app: Flask, wechat_emulator: RunningEmulator) -> None:
    adapter = WeChatMiniProgram(
        APPID, "wrong-secret", redis=app.extensions["redis"], api_base=wechat_emulator.url, timeout=TIMEOUT
    )
    with pytest.raises(ProviderError) as caught:
        adapter.code_to_session(EmulatorControl(wechat_emulator.url).issue_code("oA"))
    assert caught.value.errcode == 40125


def test_emulator_down_is_provider_busy(app: Flask) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    adapter = WeChatMiniProgram(
        APPID, SECRET, redis=app.extensions["redis"], api_base=f"http://127.0.0.1:{port}/", timeout=TIMEOUT
    )
    with pytest.raises(ProviderBusy):
        adapter.code_to_session("code-oA")


def test_redis_down_is_provider_busy(app: Flask, wechat_emulator: RunningEmulator) -> None:
    from redis import Redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dead = Redis(
        host="127.0.0.1",
        port=port,
        socket_connect_timeout=0.5,
        socket_timeout=0.5,
        retry=Retry(NoBackoff(), 0),
    )
    adapter = WeChatMiniProgram(APPID, SECRET, redis=dead, api_base=wechat_emulator.url, timeout=TIMEOUT)
    with pytest.raises(ProviderBusy):
        adapter.code_to_session("code-oA")


def test_redirect_target_is_never_contacted(app: Flask, wechat_emulator: RunningEmulator) -> None:
    """The 308 points at a jscode2session URL of the emulator: following it would be counted."""
    control = EmulatorControl(wechat_emulator.url)
    adapter = real_adapter(app, wechat_emulator)
    adapter.code_to_session(control.issue_code("oA"))
    before = control.stats()
    target = (
        wechat_emulator.url + f"sns/jscode2session?appid={APPID}&secret={SECRET}"
        "&js_code=code-oFollowed&grant_type=authorization_code"
    )
    control.fail_next("jscode2session", Fault(redirect_to=target))

    with pytest.raises(ProviderError, match="redirect"):
        adapter.code_to_session("code-oA")

    assert control.stats() == before


def test_guard_refuses_hosts_off_the_allowlist_before_connecting() -> None:
    guard = GuardedHttp(frozenset({"api.weixin.qq.com"}), timeout=TIMEOUT)
    with pytest.raises(ProviderError, match="allowlist"):
        guard.get("https://169.254.169.254/latest/meta-data")
    with pytest.raises(ProviderError, match="allowlist"):
        guard.get("http://127.0.0.1:6379/")


def test_guard_refuses_plain_http_off_loopback() -> None:
    guard = GuardedHttp(frozenset({"api.weixin.qq.com"}), timeout=TIMEOUT)
    with pytest.raises(ProviderError, match="loopback"):
        guard.get("http://api.weixin.qq.com/sns/jscode2session")


@pytest.mark.parametrize("base", ["http://api.example.com/", "ftp://127.0.0.1/"])
def test_base_url_must_be_https_or_loopback(app: Flask, base: str) -> None:
    with pytest.raises(ValueError, match="https"):
        WeChatMiniProgram(APPID, SECRET, redis=app.extensions["redis"], api_base=base)


def test_default_base_is_wechat(app: Flask) -> None:
    adapter = WeChatMiniProgram(APPID, SECRET, redis=app.extensions["redis"])
    assert adapter.base_url == "https://api.weixin.qq.com/"
    assert adapter.http.timeout == (3.0, 10.0)
