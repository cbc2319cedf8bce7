"""In-memory `MiniProgramAuth`: the emulator's behaviour without HTTP (tests, development).

It shares `WeChatState` with the loopback emulator, so codes, expiry, one-time use and scripted
faults behave alike; transport faults (HTTP status, redirect, malformed or huge body, delay) are
translated into the errors the real adapter raises for them. The contract tests in
`tests/integrations/` run the same cases against this fake and against the real wechatpy adapter.
"""

from __future__ import annotations

import json
from typing import Any

from app.integrations.sandbox.wechat_state import Fault, WeChatState, error
from app.integrations.wechat_mp import (
    MAX_RESPONSE_BYTES,
    READ_TIMEOUT,
    ProviderBusy,
    ProviderError,
    WxSession,
    error_for,
    session_from,
)

FAKE_APPID = "wx-fake-appid"
FAKE_SECRET = "fake-secret"  # noqa: S105 - not a secret: the fake's own placeholder


class FakeMiniProgramAuth:
    """Drive it like the emulator: `issue_code(openid)`, `fail_next("jscode2session", Fault(...))`."""

    def __init__(self, state: WeChatState | None = None, *, read_timeout: float = READ_TIMEOUT) -> None:
        self.state = state or WeChatState(appid=FAKE_APPID, secret=FAKE_SECRET)
        self.read_timeout = read_timeout
        self._appid = self.state.appid or FAKE_APPID
        self._secret = self.state.secret or FAKE_SECRET
        self._token_cached = False

    def issue_code(self, openid: str, unionid: str | None = None) -> str:
        return self.state.issue_code(openid, unionid)

    def fail_next(self, endpoint: str, fault: Fault, times: int = 1) -> None:
        self.state.fail_next(endpoint, fault, times)

    def forget_token(self) -> None:
        """As if the cached access token expired: the next login fetches one."""
        self._token_cached = False

    def code_to_session(self, code: str) -> WxSession:
        # wechatpy fetches an access token before its first call and caches it; mirror that.
        if not self._token_cached:
            fault = self.state.take_fault("token")
            answer = self._answer(fault) if fault is not None else None
            if answer is None:
                answer = self.state.access_token(
                    grant_type="client_credential", appid=self._appid, secret=self._secret
                )
            errcode = answer.get("errcode")
            if errcode not in (None, 0):
                raise error_for(int(errcode), str(answer.get("errmsg", "")))
            self._token_cached = True
        fault = self.state.take_fault("jscode2session")
        answer = self._answer(fault) if fault is not None else None
        if answer is None:
            answer = self.state.code_to_session(
                appid=self._appid, secret=self._secret, js_code=code, grant_type="authorization_code"
            )
        errcode = answer.get("errcode")
        if errcode not in (None, 0):
            raise error_for(int(errcode), str(answer.get("errmsg", "")))
        return session_from(answer)

    def _answer(self, fault: Fault) -> dict[str, Any] | None:
        """What the real adapter would make of a transport fault: an error, or a JSON answer."""
        if fault.delay > self.read_timeout:
            raise ProviderBusy("WeChat did not answer in time")
        if fault.http_status is not None:
            if fault.http_status >= 500 or fault.http_status == 429:
                raise ProviderBusy(f"WeChat answered HTTP {fault.http_status}")
            raise ProviderError(f"WeChat answered HTTP {fault.http_status}")
        if fault.redirect_to is not None:
            raise ProviderError("redirect (308) not followed")
        if fault.size > MAX_RESPONSE_BYTES:
            raise ProviderError(f"answer larger than {MAX_RESPONSE_BYTES} bytes")
        if fault.body is not None:
            try:
                parsed = json.loads(fault.body)
            except ValueError as exc:
                raise ProviderError("answer is not JSON") from exc
            if not isinstance(parsed, dict):
                raise ProviderError("answer is not a JSON object")
            return parsed
        if fault.errcode is not None:
            return error(fault.errcode)
        return None
