"""The behaviour of the WeChat mini-program login API, shared by the HTTP emulator and the fake.

What is emulated (developers.weixin.qq.com, 小程序登录 / auth.code2Session, getAccessToken):

- `wx.login()` codes: issued by `issue_code(openid)` (the emulator's control API) or any code of
  the agreed shape ``code-<openid>`` / ``code-<openid>.<nonce>`` (handy in a demo: the mini-program
  developer tools can send ``code-oDemoResident01``). A code works once and lives 5 minutes;
  an unknown, expired or reused code answers errcode 40029.
- `jscode2session` returns `openid`, `session_key` and, when the user has one, `unionid`.
- `cgi-bin/token` returns a fresh access token with `expires_in` 7200.
- Faults are scripted per endpoint: a WeChat errcode (45011, 40226, -1, ...) or a transport
  fault (HTTP status, redirect, malformed body, huge body, delay).
"""

from __future__ import annotations

import base64
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

CODE_TTL_SECONDS = 300
TOKEN_EXPIRES_IN = 7200
ENDPOINTS = ("jscode2session", "token")

ERR_BUSY = -1
ERR_INVALID_APPID = 40013
ERR_INVALID_CODE = 40029
ERR_INVALID_GRANT = 40002
ERR_INVALID_SECRET = 40125
ERR_RATE_LIMITED = 45011
ERR_RISK_BLOCKED = 40226

ERRMSG: dict[int, str] = {
    ERR_BUSY: "system error",
    ERR_INVALID_APPID: "invalid appid",
    ERR_INVALID_CODE: "invalid code",
    ERR_INVALID_GRANT: "invalid grant_type",
    ERR_INVALID_SECRET: "invalid appsecret",
    ERR_RATE_LIMITED: "api minute-quota reach limit  mustslower  retry next minute",
    ERR_RISK_BLOCKED: "high risk user",
}

OPENID = re.compile(r"[A-Za-z0-9_-]{1,64}")
SHAPED_CODE = re.compile(r"code-(?P<openid>[A-Za-z0-9_-]{1,64})(?:\.[A-Za-z0-9_-]{1,32})?")


@dataclass(frozen=True)
class Fault:
    """One scripted misbehaviour of an endpoint. Exactly what is set happens."""

    errcode: int | None = None  # answer 200 with {"errcode": ..., "errmsg": ...}
    http_status: int | None = None  # answer this status (e.g. 500, 502)
    redirect_to: str | None = None  # answer 308 with this Location
    body: str | None = None  # answer 200 with this raw body (e.g. malformed JSON)
    size: int = 0  # answer 200 with a JSON body padded to this many bytes
    delay: float = 0.0  # sleep this many seconds before answering

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Fault:
        allowed = {"errcode", "http_status", "redirect_to", "body", "size", "delay"}
        unknown = set(data) - allowed
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        return cls(
            errcode=None if data.get("errcode") is None else int(data["errcode"]),
            http_status=None if data.get("http_status") is None else int(data["http_status"]),
            redirect_to=None if data.get("redirect_to") is None else str(data["redirect_to"]),
            body=None if data.get("body") is None else str(data["body"]),
            size=int(data.get("size") or 0),
            delay=float(data.get("delay") or 0.0),
        )


@dataclass
class _IssuedCode:
    openid: str
    unionid: str | None
    issued_at: float


@dataclass
class WeChatStats:
    token_requests: int = 0
    session_requests: int = 0
    sessions_issued: int = 0


@dataclass
class WeChatState:
    """The emulated WeChat side. Thread-safe; `clock` is moved by time-machine in tests."""

    appid: str | None = None  # None: accept any appid/secret (demo convenience)
    secret: str | None = None
    accept_shaped_codes: bool = True
    clock: Callable[[], float] = time.time
    stats: WeChatStats = field(default_factory=WeChatStats)
    _codes: dict[str, _IssuedCode] = field(default_factory=dict)
    _used: set[str] = field(default_factory=set)
    _faults: dict[str, deque[Fault]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # --- control -------------------------------------------------------------------------------

    def issue_code(self, openid: str, unionid: str | None = None) -> str:
        """What `wx.login()` would hand the mini-program of this WeChat user."""
        if not OPENID.fullmatch(openid) or (unionid is not None and not OPENID.fullmatch(unionid)):
            raise ValueError("openid/unionid must be 1-64 of A-Z a-z 0-9 _ -")
        code = "emu" + secrets.token_hex(14)
        with self._lock:
            self._codes[code] = _IssuedCode(openid, unionid, self.clock())
        return code

    def fail_next(self, endpoint: str, fault: Fault, times: int = 1) -> None:
        if endpoint not in ENDPOINTS:
            raise ValueError(f"endpoint must be one of {ENDPOINTS}")
        with self._lock:
            self._faults.setdefault(endpoint, deque()).extend([fault] * times)

    def take_fault(self, endpoint: str) -> Fault | None:
        with self._lock:
            queue = self._faults.get(endpoint)
            return queue.popleft() if queue else None

    def reset(self) -> None:
        with self._lock:
            self._codes.clear()
            self._used.clear()
            self._faults.clear()
            self.stats = WeChatStats()

    # --- the API -------------------------------------------------------------------------------

    def _credentials_error(self, appid: str, secret: str) -> dict[str, Any] | None:
        if self.appid is not None and appid != self.appid:
            return error(ERR_INVALID_APPID)
        if self.secret is not None and secret != self.secret:
            return error(ERR_INVALID_SECRET)
        return None

    def code_to_session(self, *, appid: str, secret: str, js_code: str, grant_type: str) -> dict[str, Any]:
        """The JSON body of `GET /sns/jscode2session`."""
        with self._lock:
            self.stats.session_requests += 1
        problem = self._credentials_error(appid, secret)
        if problem is not None:
            return problem
        if grant_type != "authorization_code":
            return error(ERR_INVALID_GRANT)
        with self._lock:
            if js_code in self._used:
                return error(ERR_INVALID_CODE)
            issued = self._codes.pop(js_code, None)
            if issued is None:
                shaped = SHAPED_CODE.fullmatch(js_code) if self.accept_shaped_codes else None
                if shaped is None:
                    return error(ERR_INVALID_CODE)
                issued = _IssuedCode(shaped["openid"], None, self.clock())
            self._used.add(js_code)
            if self.clock() - issued.issued_at > CODE_TTL_SECONDS:
                return error(ERR_INVALID_CODE)
            self.stats.sessions_issued += 1
        body: dict[str, Any] = {
            "openid": issued.openid,
            "session_key": base64.b64encode(secrets.token_bytes(16)).decode(),
        }
        if issued.unionid:
            body["unionid"] = issued.unionid
        return body

    def access_token(self, *, grant_type: str, appid: str, secret: str) -> dict[str, Any]:
        """The JSON body of `GET /cgi-bin/token`."""
        with self._lock:
            self.stats.token_requests += 1
        problem = self._credentials_error(appid, secret)
        if problem is not None:
            return problem
        if grant_type != "client_credential":
            return error(ERR_INVALID_GRANT)
        return {"access_token": "emu_at_" + secrets.token_urlsafe(24), "expires_in": TOKEN_EXPIRES_IN}


def error(errcode: int) -> dict[str, Any]:
    return {"errcode": errcode, "errmsg": ERRMSG.get(errcode, "error")}
