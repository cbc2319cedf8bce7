"""Loopback emulator of the wallets' web OAuth (the step before a JSAPI payment), as a WSGI app.

WeChat official-account web OAuth (what `wechatpy.oauth.WeChatOAuth` and `payments.oauth` call):

    GET /connect/oauth2/authorize?appid&redirect_uri&response_type=code&scope&state
        -> 302 redirect_uri?code=...&state=...   (snsapi_base is silent: no consent page)
    GET /sns/oauth2/access_token?appid&secret&code&grant_type=authorization_code
        -> {"access_token", "expires_in": 7200, "refresh_token", "openid", "scope"[, "unionid"]}
        or {"errcode": 40029, "errmsg": "invalid code"} (codes are single use and live 5 minutes)

Alipay (the authorize step only; the code is exchanged by `alipay.system.oauth.token` at the
Alipay gateway emulator, which asks `alipay_user_for_code` here unless it mints its own codes):

    GET /oauth2/publicAppAuthorize.htm?app_id&scope&redirect_uri&state
        -> 302 redirect_uri?auth_code=...&app_id=...&scope=...&state=...

Who is logged into the wallet: the user scripted with `login_as(wallet, user)` (or
`POST /_emulator/oauth/login_as {"wallet", "user", "unionid"?}`), else the user remembered in a
cookie of this emulator's origin (one browser = one phone), else a new user. Every user is also
a payer of the wallet's `SandboxLedger` (when given) so JSAPI payments can be confirmed.

Control API: `POST /_emulator/oauth/codes {"openid", "unionid"?}` -> {"code"} (a WeChat code without
the browser round trip), `POST /_emulator/oauth/login_as`, `POST /_emulator/oauth/reset`,
`GET /_emulator/oauth/calls`. Faults: `wechat_ledger.fail_next("oauth", "http_500" | "timeout" |
"system_error")` applies to `sns/oauth2/access_token`.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlencode, urlsplit

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from payments.sandbox.ledger import SandboxLedger

Wallet = Literal["wechat", "alipay"]
CODE_TTL_S = 300
_COOKIES: dict[str, str] = {"wechat": "sandbox_wechat_user", "alipay": "sandbox_alipay_user"}


@dataclass
class IssuedCode:
    wallet: Wallet
    user: str
    unionid: str | None
    issued_at: float
    used: bool = False


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body, ensure_ascii=False), status=status, content_type="application/json")


class OAuthSandbox:
    """The WSGI application; scriptable in-process as well."""

    def __init__(
        self,
        *,
        wechat_appid: str,
        wechat_secret: str,
        alipay_app_id: str = "",
        wechat_ledger: SandboxLedger | None = None,
        alipay_ledger: SandboxLedger | None = None,
        alipay_code_minter: Callable[[str], str] | None = None,
        redirect_prefixes: Iterable[str] = (),
    ) -> None:
        self.wechat_appid, self.wechat_secret, self.alipay_app_id = wechat_appid, wechat_secret, alipay_app_id
        self.wechat_ledger, self.alipay_ledger = wechat_ledger, alipay_ledger
        # The Alipay gateway emulator may mint the auth codes it will later accept.
        self.alipay_code_minter = alipay_code_minter
        self.redirect_prefixes = tuple(redirect_prefixes)
        self.lock = threading.RLock()
        self.codes: dict[str, IssuedCode] = {}
        self.logged_in: dict[str, tuple[str, str | None]] = {}  # wallet -> (user, unionid)
        self.unionids: dict[str, str] = {}  # openid -> unionid
        self.calls: list[tuple[float, str]] = []
        self.url_map = Map(
            [
                Rule("/connect/oauth2/authorize", endpoint="wx_authorize", methods=["GET"]),
                Rule("/sns/oauth2/access_token", endpoint="wx_token", methods=["GET"]),
                Rule("/oauth2/publicAppAuthorize.htm", endpoint="ali_authorize", methods=["GET"]),
                Rule("/_emulator/oauth/codes", endpoint="c_codes", methods=["POST"]),
                Rule("/_emulator/oauth/login_as", endpoint="c_login_as", methods=["POST"]),
                Rule("/_emulator/oauth/reset", endpoint="c_reset", methods=["POST"]),
                Rule("/_emulator/oauth/calls", endpoint="c_calls", methods=["GET"]),
            ]
        )

    # --- scripting -----------------------------------------------------------------------------

    def login_as(self, wallet: Wallet, user: str, *, unionid: str | None = None) -> None:
        """Who the next authorize requests of this wallet log in as (until changed or reset)."""
        with self.lock:
            self.logged_in[wallet] = (user, unionid)
            if unionid and wallet == "wechat":
                self.unionids[user] = unionid
            self._ensure_payer(wallet, user)

    def issue_code(self, openid: str, *, unionid: str | None = None) -> str:
        """A WeChat web-OAuth code for `openid`, as the authorize redirect would carry it."""
        return self._mint("wechat", openid, unionid)

    def alipay_user_for_code(self, auth_code: str) -> str | None:
        """The Alipay user id behind an auth code minted here (single use), or None."""
        with self.lock:
            issued = self.codes.get(auth_code)
            if issued is None or issued.wallet != "alipay" or issued.used or self._expired(issued):
                return None
            issued.used = True
            return issued.user

    def reset(self) -> None:
        with self.lock:
            self.codes.clear()
            self.logged_in.clear()
            self.unionids.clear()
            self.calls.clear()

    # --- helpers -------------------------------------------------------------------------------

    @staticmethod
    def _expired(issued: IssuedCode) -> bool:
        return time.time() - issued.issued_at > CODE_TTL_S

    def _ensure_payer(self, wallet: Wallet, user: str) -> None:
        ledger = self.wechat_ledger if wallet == "wechat" else self.alipay_ledger
        if ledger is not None:
            ledger.new_payer(payer_id=user)

    def _mint(self, wallet: Wallet, user: str, unionid: str | None) -> str:
        with self.lock:
            self._ensure_payer(wallet, user)
            if unionid and wallet == "wechat":
                self.unionids[user] = unionid
            if wallet == "alipay" and self.alipay_code_minter is not None:
                return self.alipay_code_minter(user)
            code = secrets.token_hex(16)
            self.codes[code] = IssuedCode(wallet, user, unionid or self.unionids.get(user), time.time())
            return code

    @staticmethod
    def _new_user(wallet: Wallet) -> str:
        if wallet == "wechat":
            return "o" + secrets.token_urlsafe(21)[:27]
        return "2088" + "".join(secrets.choice("0123456789") for _ in range(12))

    def _current_user(self, wallet: Wallet, request: Request) -> tuple[str, str | None, bool]:
        """(user, unionid, from_cookie_or_script)."""
        with self.lock:
            scripted = self.logged_in.get(wallet)
        if scripted is not None:
            return scripted[0], scripted[1], True
        remembered = request.cookies.get(_COOKIES[wallet])
        if remembered:
            return remembered, self.unionids.get(remembered), True
        return self._new_user(wallet), None, False

    def _check_redirect(self, redirect_uri: str) -> None:
        parts = urlsplit(redirect_uri)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise _Refused("redirect_uri 参数错误")
        if self.redirect_prefixes and not redirect_uri.startswith(self.redirect_prefixes):
            raise _Refused("redirect_uri 域名与后台配置不一致")

    def _authorize(
        self, request: Request, wallet: Wallet, code_param: str, extra: dict[str, str]
    ) -> Response:
        redirect_uri = request.args.get("redirect_uri", "")
        self._check_redirect(redirect_uri)
        user, unionid, known = self._current_user(wallet, request)
        code = self._mint(wallet, user, unionid)
        query = urlencode({code_param: code, **extra, "state": request.args.get("state", "")})
        separator = "&" if "?" in redirect_uri else "?"
        response = Response(status=302, headers={"Location": f"{redirect_uri}{separator}{query}"})
        if not known:
            response.set_cookie(_COOKIES[wallet], user, httponly=True, samesite="Lax")
        return response

    # --- endpoints -----------------------------------------------------------------------------

    def on_wx_authorize(self, request: Request) -> Response:
        if request.args.get("appid") != self.wechat_appid:
            raise _Refused("appid 参数错误")
        if request.args.get("response_type") != "code":
            raise _Refused("response_type 参数错误")
        if request.args.get("scope") not in ("snsapi_base", "snsapi_userinfo"):
            raise _Refused("scope 参数错误")
        return self._authorize(request, "wechat", "code", {})

    def on_wx_token(self, request: Request) -> Response:
        args = request.args
        fault = self.wechat_ledger.take_fault("oauth") if self.wechat_ledger is not None else None
        if fault is not None:
            if fault.kind == "timeout":
                time.sleep(fault.delay_s)
            if fault.kind in ("timeout", "http_500"):
                return Response("Internal Server Error", status=500)
            return _json({"errcode": -1, "errmsg": "system error"})
        if args.get("appid") != self.wechat_appid:
            return _json({"errcode": 40013, "errmsg": "invalid appid"})
        if not secrets.compare_digest(args.get("secret", ""), self.wechat_secret):
            return _json({"errcode": 40125, "errmsg": "invalid appsecret"})
        if args.get("grant_type") != "authorization_code":
            return _json({"errcode": 40002, "errmsg": "invalid grant_type"})
        with self.lock:
            issued = self.codes.get(args.get("code", ""))
            if issued is None or issued.wallet != "wechat":
                return _json({"errcode": 40029, "errmsg": "invalid code"})
            if issued.used:
                return _json({"errcode": 40163, "errmsg": "code been used"})
            if self._expired(issued):
                return _json({"errcode": 42003, "errmsg": "code expired"})
            issued.used = True
        body: dict[str, Any] = {
            "access_token": secrets.token_urlsafe(24),
            "expires_in": 7200,
            "refresh_token": secrets.token_urlsafe(24),
            "openid": issued.user,
            "scope": "snsapi_base",
        }
        if issued.unionid:
            body["unionid"] = issued.unionid
        return _json(body)

    def on_ali_authorize(self, request: Request) -> Response:
        if self.alipay_app_id and request.args.get("app_id") != self.alipay_app_id:
            raise _Refused("app_id 参数错误")
        scope = request.args.get("scope", "")
        if scope not in ("auth_base", "auth_user"):
            raise _Refused("scope 参数错误")
        return self._authorize(
            request, "alipay", "auth_code", {"app_id": request.args.get("app_id", ""), "scope": scope}
        )

    def on_c_codes(self, request: Request) -> Response:
        body = request.get_json(silent=True) or {}
        openid = str(body.get("openid") or self._new_user("wechat"))
        unionid = body.get("unionid")
        return _json({"code": self.issue_code(openid, unionid=str(unionid) if unionid else None)})

    def on_c_login_as(self, request: Request) -> Response:
        body = request.get_json(silent=True) or {}
        wallet = body.get("wallet")
        if wallet not in ("wechat", "alipay") or not body.get("user"):
            return _json({"error": "wallet (wechat|alipay) and user are required"}, 400)
        unionid = body.get("unionid")
        self.login_as(wallet, str(body["user"]), unionid=str(unionid) if unionid else None)
        return _json({"ok": True})

    def on_c_reset(self, request: Request) -> Response:
        self.reset()
        return _json({"ok": True})

    def on_c_calls(self, request: Request) -> Response:
        with self.lock:
            return _json({"calls": [{"at": at, "path": path} for at, path in self.calls]})

    # --- WSGI ----------------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        with self.lock:
            self.calls.append((time.time(), request.path))
        try:
            endpoint, values = self.url_map.bind_to_environ(environ).match()
            response: Response = getattr(self, f"on_{endpoint}")(request, **values)
        except _Refused as refused:
            response = Response(
                f"<!doctype html><meta charset=utf-8><title>授权失败</title><p>{refused.message}</p>",
                status=400,
                content_type="text/html; charset=utf-8",
            )
        except HTTPException as exc:
            response = exc.get_response()
        return response(environ, start_response)


class _Refused(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
