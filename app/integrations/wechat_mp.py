"""WeChat mini-program login (`auth.code2Session`) behind a neutral interface.

- `MiniProgramAuth` (Protocol): `code_to_session(code) -> WxSession`.
- Neutral errors: `InvalidCode` (40029, 40163: unknown, expired or used code), `RateLimited`
  (45011: the user's 100 calls a minute), `RiskBlocked` (40226), `ProviderBusy` (-1, 45009,
  timeouts, connection errors, 5xx; retry later) and `ProviderError` (anything else:
  credentials, redirects, malformed or oversized answers; an operator must look).
- `WeChatMiniProgram`: the real implementation on wechatpy's `WeChatClient`. Its base URL is
  configurable (the loopback emulator in `sandbox/`), its access token is cached in Redis through
  wechatpy's `RedisStorage`, and every HTTP call has connect/read timeouts, no redirects, a host
  allowlist and a response size cap (API-05, API10).
- `FakeMiniProgramAuth` (in `wechat_mp_fake.py`) runs the same behaviour in memory.

The `session_key` is only ever returned to the caller inside `WxSession` (hidden from `repr`); the
backend never sends it to the client and does not store it.

wechatpy quirk: `wxa.code_to_session` goes through the client's generic request path, which adds
an `access_token` to every call, so the first login of a process fetches (and caches) an access
token. That token is needed anyway for subscribe messages.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests
from redis import Redis
from redis.exceptions import LockError, RedisError
from wechatpy.client import WeChatClient
from wechatpy.exceptions import WeChatClientException
from wechatpy.session.redisstorage import RedisStorage

WECHAT_API_BASE = "https://api.weixin.qq.com/"
CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 10.0
MAX_RESPONSE_BYTES = 64 * 1024
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_OPENID = re.compile(r"[A-Za-z0-9_-]{1,64}")

# errcode -> error class (see the module docstring).
ERR_BUSY = -1
INVALID_CODE_ERRCODES = frozenset({40029, 40163})
RATE_LIMITED_ERRCODES = frozenset({45011})
RISK_BLOCKED_ERRCODES = frozenset({40226})
BUSY_ERRCODES = frozenset({ERR_BUSY, 45009})
TOKEN_ERRCODES = frozenset({40001, 40014, 42001})


@dataclass(frozen=True)
class WxSession:
    """The result of code2Session. `session_key` never leaves the backend."""

    openid: str
    unionid: str | None
    session_key: str = field(repr=False)


class MiniProgramError(Exception):
    """Base of the neutral errors; `errcode` is WeChat's when there was one."""

    def __init__(self, message: str, *, errcode: int | None = None) -> None:
        super().__init__(message)
        self.errcode = errcode


class InvalidCode(MiniProgramError):
    """The `wx.login` code is unknown, expired or already used: get a new one."""


class RateLimited(MiniProgramError):
    """The user exceeded WeChat's per-user frequency limit (45011)."""


class RiskBlocked(MiniProgramError):
    """WeChat refuses this user as high-risk (40226)."""


class ProviderBusy(MiniProgramError):
    """Transient: WeChat busy (-1), quota, timeout, connection error, 5xx. Retry later."""


class ProviderError(MiniProgramError):
    """Unexpected: bad credentials, a redirect, a malformed or oversized answer."""


class MiniProgramAuth(Protocol):
    def code_to_session(self, code: str) -> WxSession:
        """Exchange a `wx.login` code. Raises a `MiniProgramError` subclass."""
        ...


def error_for(errcode: int, errmsg: str = "") -> MiniProgramError:
    """The neutral error of a WeChat errcode (shared by the real and the fake implementation)."""
    message = f"WeChat errcode {errcode}: {errmsg}".strip()
    if errcode in INVALID_CODE_ERRCODES:
        return InvalidCode(message, errcode=errcode)
    if errcode in RATE_LIMITED_ERRCODES:
        return RateLimited(message, errcode=errcode)
    if errcode in RISK_BLOCKED_ERRCODES:
        return RiskBlocked(message, errcode=errcode)
    if errcode in BUSY_ERRCODES:
        return ProviderBusy(message, errcode=errcode)
    return ProviderError(message, errcode=errcode)


def session_from(result: object) -> WxSession:
    """Validate a code2Session answer (untrusted input, API10)."""
    if not isinstance(result, dict):
        raise ProviderError("code2Session answer is not a JSON object")
    openid, session_key, unionid = result.get("openid"), result.get("session_key"), result.get("unionid")
    if not isinstance(openid, str) or not _OPENID.fullmatch(openid):
        raise ProviderError("code2Session answer has no valid openid")
    if not isinstance(session_key, str) or not session_key:
        raise ProviderError("code2Session answer has no session_key")
    if unionid is not None and (not isinstance(unionid, str) or not _OPENID.fullmatch(unionid)):
        raise ProviderError("code2Session answer has an invalid unionid")
    return WxSession(openid=openid, unionid=unionid or None, session_key=session_key)


class _Refused(ProviderError):
    """The guarded HTTP session refused a request or a response."""


class GuardedHttp:
    """The HTTP session wechatpy uses (`client._http`): the outbound-call rules of API-05.

    - only hosts on the allowlist, only https (plain http only to loopback: the emulator);
    - connect and read timeouts on every call, including wechatpy's token fetch, which passes none;
    - redirects are never followed (a 3xx is an error);
    - answers larger than `max_bytes` are refused.
    """

    def __init__(
        self,
        allowed_hosts: frozenset[str],
        *,
        timeout: tuple[float, float],
        max_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        self.allowed_hosts = allowed_hosts
        self.timeout = timeout
        self.max_bytes = max_bytes
        self._session = requests.Session()
        self._session.trust_env = False  # no proxies or .netrc from the environment

    def request(self, method: str, url: str, **kwargs: Any) -> Any:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if host not in self.allowed_hosts:
            raise _Refused(f"host {host!r} is not on the allowlist")
        if parts.scheme != "https" and not (parts.scheme == "http" and host in LOOPBACK_HOSTS):
            raise _Refused("plain http is allowed to loopback only")
        kwargs["allow_redirects"] = False
        kwargs["stream"] = True
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        response = self._session.request(method, url, **kwargs)
        try:
            if 300 <= response.status_code < 400:
                raise _Refused(f"redirect ({response.status_code}) not followed")
            body = response.raw.read(self.max_bytes + 1, decode_content=True)
        finally:
            response.close()
        if len(body) > self.max_bytes:
            raise _Refused(f"answer larger than {self.max_bytes} bytes")
        response._content = body
        response._content_consumed = True
        return response

    def get(self, url: str, **kwargs: Any) -> Any:
        return self.request("GET", url, **kwargs)

    def close(self) -> None:
        self._session.close()


class _Client(WeChatClient):  # type: ignore[misc,unused-ignore]  # wechatpy is untyped
    """WeChatClient with every URL under `base_url` and a Redis-locked token fetch."""

    def __init__(
        self,
        appid: str,
        secret: str,
        *,
        base_url: str,
        storage: RedisStorage,
        redis: Redis[Any],
        http: GuardedHttp,
    ) -> None:
        super().__init__(appid, secret, session=storage, timeout=http.timeout, auto_retry=False)
        self._http = http
        self._redis = redis
        self.API_BASE_URL = base_url + "cgi-bin/"
        self.wxa.API_BASE_URL = base_url
        self._token_url = base_url + "cgi-bin/token"

    def fetch_access_token(self) -> dict[str, Any]:
        """Fetch a token (wechatpy hard-codes the real URL here, hence the override).

        One fetch at a time per app id across processes (a Redis lock); a process that waited
        takes the token the other one stored. The token is cached 5 minutes short of its life,
        so a cached token is never one WeChat is about to expire.
        """
        lock = self._redis.lock(
            f"{self.session.prefix}:token-lock:{self.appid}", timeout=15, blocking_timeout=5
        )
        acquired = lock.acquire()
        try:
            cached = self.session.get(self.access_token_key)
            if cached:
                return {"access_token": cached}
            response = self._http.get(
                self._token_url,
                params={
                    "grant_type": "client_credential",
                    "appid": self.appid,
                    "secret": self.secret,
                },
            )
            if response.status_code >= 500:
                raise ProviderBusy(f"token endpoint answered {response.status_code}")
            if response.status_code != 200:
                raise ProviderError(f"token endpoint answered {response.status_code}")
            try:
                result = response.json()
            except ValueError as exc:
                raise ProviderError("token answer is not JSON") from exc
            if not isinstance(result, dict):
                raise ProviderError("token answer is not a JSON object")
            errcode = result.get("errcode")
            if errcode not in (None, 0):
                raise error_for(int(errcode), str(result.get("errmsg", "")))
            token, expires_in = result.get("access_token"), result.get("expires_in", 7200)
            if not isinstance(token, str) or not token or not isinstance(expires_in, int):
                raise ProviderError("token answer lacks access_token/expires_in")
            self.session.set(self.access_token_key, token, max(60, expires_in - 300))
            self.expires_at = None  # the Redis TTL is the expiry: wechatpy trusts the cache
            return result
        finally:
            if acquired:
                with contextlib.suppress(LockError):
                    lock.release()


class WeChatMiniProgram:
    """The real adapter (wechatpy). `api_base` points at WeChat or at the loopback emulator."""

    def __init__(
        self,
        appid: str,
        secret: str,
        *,
        redis: Redis[Any],
        api_base: str = "",
        timeout: tuple[float, float] = (CONNECT_TIMEOUT, READ_TIMEOUT),
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        cache_prefix: str = "wechat",
    ) -> None:
        if not appid or not secret:
            raise ValueError("appid and secret are required")
        base = (api_base or WECHAT_API_BASE).rstrip("/") + "/"
        parts = urlsplit(base)
        host = parts.hostname or ""
        if parts.scheme != "https" and not (parts.scheme == "http" and host in LOOPBACK_HOSTS):
            raise ValueError("the WeChat API base must be https (plain http only on loopback)")
        self.base_url = base
        self.appid = appid
        self.http = GuardedHttp(
            frozenset({"api.weixin.qq.com", host}), timeout=timeout, max_bytes=max_response_bytes
        )
        self.storage = RedisStorage(redis, prefix=cache_prefix)
        self._client = _Client(
            appid, secret, base_url=base, storage=self.storage, redis=redis, http=self.http
        )

    def code_to_session(self, code: str) -> WxSession:
        try:
            result = self._client.wxa.code_to_session(code)
        except MiniProgramError:
            raise
        except WeChatClientException as exc:
            raise self._translate(exc) from exc
        except requests.Timeout as exc:
            raise ProviderBusy("WeChat did not answer in time") from exc
        except requests.ConnectionError as exc:
            raise ProviderBusy("could not reach WeChat") from exc
        except requests.RequestException as exc:
            raise ProviderError(f"HTTP error: {type(exc).__name__}") from exc
        except RedisError as exc:
            raise ProviderBusy("access token cache unavailable") from exc
        return session_from(result)

    def _translate(self, exc: WeChatClientException) -> MiniProgramError:
        if exc.errcode is None:  # an HTTP error status (wechatpy's raise_for_status)
            status = getattr(exc.response, "status_code", None) or 0
            if status >= 500 or status == 429:
                return ProviderBusy(f"WeChat answered HTTP {status}")
            return ProviderError(f"WeChat answered HTTP {status}")
        errcode = int(exc.errcode)
        if errcode in TOKEN_ERRCODES:
            # The cached token was refused: drop it so that the next call fetches a new one.
            with contextlib.suppress(RedisError):
                self.storage.delete(self._client.access_token_key)
            return ProviderBusy(f"WeChat refused the access token ({errcode})", errcode=errcode)
        return error_for(errcode, str(exc.errmsg or ""))

    @property
    def access_token_key(self) -> str:
        """The Redis key of the cached access token (for operators and tests)."""
        return str(self.storage.key_name(self._client.access_token_key))

    def close(self) -> None:
        self.http.close()
