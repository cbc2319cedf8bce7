"""Who is paying: the payer identities JSAPI payments need, from the wallets' web OAuth.

- WeChat official-account web OAuth (网页授权, `snsapi_base`: silent, no consent page): the browser
  is sent to `open.weixin.qq.com/connect/oauth2/authorize`, comes back with `code`, and
  `sns/oauth2/access_token` turns the code into the payer's `openid` for our AppID (what a JSAPI
  unified order needs). Built on `wechatpy.oauth.WeChatOAuth` with overridable base URLs, so the
  real SDK talks to the loopback emulator (`payments.sandbox.oauth`) in development and tests.
- Alipay (`auth_base`): the browser is sent to `openauth.alipay.com/oauth2/publicAppAuthorize.htm`,
  comes back with `auth_code`; the Alipay adapter exchanges it with `alipay.system.oauth.token`
  (`AlipayProvider.oauth_user_id`). Only the authorize URL is built here.

No Flask, no database: the caller keeps the identity (a signed, short-lived cookie) and decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import requests
from wechatpy.exceptions import WeChatOAuthException
from wechatpy.oauth import WeChatOAuth

from payments.base import PaymentError

WECHAT_AUTHORIZE_URL = "https://open.weixin.qq.com/connect/oauth2/authorize"
WECHAT_API_BASE = "https://api.weixin.qq.com/"
ALIPAY_AUTHORIZE_URL = "https://openauth.alipay.com/oauth2/publicAppAuthorize.htm"

# WeChat error codes meaning "this code is no good" (invalid, used, expired), not an outage.
_INVALID_CODE_ERRORS = frozenset({40029, 40163, 42003, 40030})


class OAuthCodeInvalid(PaymentError):
    """The authorization code was refused (invalid, already used, expired): authorize again."""


class OAuthUnavailable(PaymentError):
    """The wallet's OAuth service did not answer usably (network, timeout, configuration)."""


@dataclass(frozen=True)
class WeChatWebIdentity:
    openid: str  # for our official-account AppID
    unionid: str | None = None  # only when the AppID is bound to an open-platform account
    scope: str = "snsapi_base"


class _Client(WeChatOAuth):  # type: ignore[misc]  # wechatpy is untyped
    """`WeChatOAuth` with per-instance base URLs and a timeout on every call."""

    def __init__(self, app_id: str, secret: str, *, api_base: str, timeout: float) -> None:
        super().__init__(app_id, secret, redirect_uri="", scope="snsapi_base")
        self.API_BASE_URL = api_base if api_base.endswith("/") else api_base + "/"
        self._timeout = timeout

    def _request(self, method: str, url_or_endpoint: str, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", self._timeout)
        return super()._request(method, url_or_endpoint, **kwargs)


class WeChatWebOAuth:
    """WeChat official-account web OAuth for one AppID."""

    def __init__(
        self,
        *,
        appid: str,
        secret: str,
        authorize_url: str = WECHAT_AUTHORIZE_URL,
        api_base: str = WECHAT_API_BASE,
        timeout: float = 10,
    ) -> None:
        if not appid:
            raise ValueError("WeChat OAuth needs an AppID")
        self.appid = appid
        self._secret = secret
        self._authorize = authorize_url
        self._api_base = api_base
        self._timeout = timeout

    def authorize_url(self, redirect_uri: str, state: str, *, scope: str = "snsapi_base") -> str:
        """Where to send the browser; WeChat redirects to `redirect_uri?code=...&state=...`.

        Parameter order and the `#wechat_redirect` suffix are as WeChat documents them."""
        return (
            f"{self._authorize}?appid={quote(self.appid, safe='')}"
            f"&redirect_uri={quote(redirect_uri, safe='')}"
            f"&response_type=code&scope={quote(scope, safe='')}&state={quote(state, safe='')}"
            "#wechat_redirect"
        )

    def exchange(self, code: str) -> WeChatWebIdentity:
        """`sns/oauth2/access_token`: the payer's openid (and unionid when WeChat gives one)."""
        client = _Client(self.appid, self._secret, api_base=self._api_base, timeout=self._timeout)
        try:
            result = client.fetch_access_token(code)
        except WeChatOAuthException as exc:
            errcode = getattr(exc, "errcode", None)
            if errcode is not None and int(errcode) in _INVALID_CODE_ERRORS:
                raise OAuthCodeInvalid(f"wechat oauth: {errcode} {getattr(exc, 'errmsg', '')}") from exc
            raise OAuthUnavailable(f"wechat oauth: {errcode} {getattr(exc, 'errmsg', '')}") from exc
        except (requests.RequestException, ValueError, KeyError) as exc:
            raise OAuthUnavailable(f"wechat oauth: {type(exc).__name__}") from exc
        openid = result.get("openid") if isinstance(result, dict) else None
        if not isinstance(openid, str) or not openid:
            raise OAuthUnavailable("wechat oauth: no openid in the reply")
        unionid = result.get("unionid")
        return WeChatWebIdentity(
            openid=openid,
            unionid=unionid if isinstance(unionid, str) and unionid else None,
            scope=str(result.get("scope") or "snsapi_base"),
        )


def alipay_authorize_url(
    *,
    app_id: str,
    redirect_uri: str,
    state: str,
    scope: str = "auth_base",
    authorize_url: str = ALIPAY_AUTHORIZE_URL,
) -> str:
    """Where to send the browser; Alipay redirects to `redirect_uri?auth_code=...&state=...`."""
    query = urlencode({"app_id": app_id, "scope": scope, "redirect_uri": redirect_uri, "state": state})
    return f"{authorize_url}?{query}"
