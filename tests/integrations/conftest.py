"""Fixtures for the WeChat adapter tests: the loopback emulator and both adapters under one contract."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import pytest
from flask import Flask

from app.integrations.sandbox.wechat_api import EmulatorControl, RunningEmulator, serve
from app.integrations.sandbox.wechat_state import Fault, WeChatState
from app.integrations.wechat_mp import MiniProgramAuth, WeChatMiniProgram
from app.integrations.wechat_mp_fake import FakeMiniProgramAuth

APPID = "wx-test-appid"
SECRET = "test-secret-value"
TIMEOUT = (1.0, 0.5)  # connect, read: short, so that the stall test is quick


class Control(Protocol):
    def issue_code(self, openid: str, unionid: str | None = None) -> str: ...
    def fail_next(self, endpoint: str, fault: Fault, times: int = 1) -> None: ...


@dataclass
class Harness:
    kind: str
    adapter: MiniProgramAuth
    control: Control


@pytest.fixture
def wechat_emulator() -> Iterator[RunningEmulator]:
    running = serve(WeChatState(appid=APPID, secret=SECRET))
    yield running
    running.stop()


def real_adapter(app: Flask, emulator: RunningEmulator, **kwargs: Any) -> WeChatMiniProgram:
    return WeChatMiniProgram(
        APPID, SECRET, redis=app.extensions["redis"], api_base=emulator.url, timeout=TIMEOUT, **kwargs
    )


@pytest.fixture(params=["fake", "real"])
def harness(request: pytest.FixtureRequest, app: Flask) -> Iterator[Harness]:
    """The same contract, on the in-memory fake and on wechatpy against the emulator over HTTP."""
    if request.param == "fake":
        fake = FakeMiniProgramAuth(WeChatState(appid=APPID, secret=SECRET), read_timeout=TIMEOUT[1])
        yield Harness("fake", fake, fake)
        return
    emulator = request.getfixturevalue("wechat_emulator")
    adapter = real_adapter(app, emulator)
    yield Harness("real", adapter, EmulatorControl(emulator.url))
    adapter.close()
