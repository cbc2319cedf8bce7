"""The H5 cashier: pages under `/pay` (plain Flask, kept out of OpenAPI) and their JSON API under
`/pay/api` (flask-smorest, documented).

Pages (all public; the payer is identified by the wallet's OAuth, kept in a signed cookie):

    GET /pay/c/<qr token>      a centre's aggregate QR: the payer's pending bills, or an amount
    GET /pay/o/<bill token>    the same cashier for one bill (the desk shows this link as a QR)
    GET /pay/r/<order token>   the result page: polls until the server has confirmed the payment
    GET /pay/oauth/wechat      WeChat web OAuth return (code -> openid)
    GET /pay/oauth/alipay      Alipay OAuth return (auth_code -> user id)
    GET /pay/static/<file>     the page's own JS and CSS (no CDN, no inline script: strict CSP)

The wallet is detected from the User-Agent (MicroMessenger -> WeChat, AlipayClient -> Alipay);
any other browser gets "请使用微信或支付宝扫码". Bad or expired links get a Chinese error page.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from flask import Blueprint as FlaskBlueprint
from flask import Response, current_app, g, redirect, render_template, request
from flask.typing import ResponseReturnValue
from redis.exceptions import RedisError
from werkzeug.security import safe_join

from app.billing import flows, providers
from app.billing.models import BillStatus, OrderState, PaymentOrder
from app.billing.schemas.cashier import (
    CashierChargeSchema,
    CashierOrderSchema,
    CashierPayArgsSchema,
    EmptyArgsSchema,
)
from app.billing.services import cashier, payer_identity
from app.billing.services.payer_identity import Payer
from app.core.api import Blueprint, public_route
from app.core.auth import Actor, Principal
from app.core.db import commit, db, rollback
from app.core.errors import DomainError, PermissionDenied, Unauthorized
from app.core.redis import get_redis
from payments.base import Channel, fen_to_yuan

F = TypeVar("F", bound=Callable[..., Any])

BILLING = Path(__file__).resolve().parent.parent
STATIC_DIR = BILLING / "static" / "pay"
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
CONFIRM_THROTTLE_S = 2
CONFIRM_THROTTLE_KEY = "pay:confirm:{}"
_PAYER_NAMESPACE = uuid.UUID("5d0c4e4e-8a57-4bde-9a55-1f1b6f3cbd11")

web = FlaskBlueprint(
    "billing_cashier_pages", __name__, url_prefix="/pay", template_folder=str(BILLING / "templates")
)
blp = Blueprint(
    "billing_cashier",
    __name__,
    url_prefix="/pay/api",
    description="H5 收银台: the JSON API of the /pay pages (payer identified by a signed cookie set after "
    "the wallet's OAuth; bills and orders named by signed, expiring tokens)",
)


_ERROR_TEXT = {
    401: "付款页面已过期：请重新扫码",
    403: "请在微信或支付宝的付款页面内操作",
    404: "收款码、付款链接或订单无效或已过期",
    409: "账单已支付或已作废",
    422: "金额或所选账单有误",
    429: "操作过于频繁（见 Retry-After）",
}


def errors(*statuses: int) -> Callable[[F], F]:
    def decorator(func: F) -> F:
        for status in statuses:
            func = blp.alt_response(status, response="DEFAULT_ERROR", description=_ERROR_TEXT[status])(func)
        return func

    return decorator


@web.after_request
def _page_headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = PAGE_CSP
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def _client_ip() -> str:
    return request.remote_addr or "127.0.0.1"


def _cookie_secure() -> bool:
    return str(current_app.config["PAYMENT_PUBLIC_BASE_URL"]).startswith("https://")


SANDBOX_WALLET_COOKIE = "luohu_pay_sandbox_wallet"


def _wallet() -> Channel | None:
    """The payer's wallet from the User-Agent. In the payment sandbox only, an ordinary browser may
    pretend to be one (`?sandbox_wallet=wechat|alipay`, remembered in a cookie) for demos."""
    wallet = payer_identity.detect_wallet(request.headers.get("User-Agent"))
    if wallet is None and current_app.config["PAYMENT_SANDBOX"]:
        chosen = request.args.get("sandbox_wallet") or request.cookies.get(SANDBOX_WALLET_COOKIE)
        if chosen in (Channel.WECHAT, Channel.ALIPAY):
            wallet = Channel(chosen)
    return wallet


def _payer() -> Payer | None:
    wallet = _wallet()
    return payer_identity.payer_from_cookie(request.cookies.get(payer_identity.PAYER_COOKIE), wallet=wallet)


def _message(title: str, text: str, status: int, *, sandbox_wallets: bool = False) -> ResponseReturnValue:
    return render_template(
        "pay/message.html", title=title, text=text, sandbox_wallets=sandbox_wallets
    ), status


def _html_errors(view: F) -> F:
    """Domain errors of a page become a Chinese page with the same status (never JSON)."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return view(*args, **kwargs)
        except DomainError as exc:
            rollback()
            return _message("无法打开付款页面", exc.message, exc.status)

    return cast(F, wrapper)


def _cashier_page(*, centre_id: uuid.UUID, label: str, pay_url: str, bills: list[Any], walk_in: bool) -> str:
    wallet = _wallet()
    return render_template(
        "pay/cashier.html",
        centre=cashier.centre_name(centre_id),
        label=label,
        wallet=str(wallet),
        pay_url=pay_url,
        bills=bills,
        walk_in=walk_in,
        max_text=f"{fen_to_yuan(cashier.walk_in_max_fen())} 元",
        sandbox=bool(current_app.config["PAYMENT_SANDBOX"]),
    )


def _identify_first() -> ResponseReturnValue | None:
    """None when the payer is known; else the page to show (wrong browser) or the OAuth redirect."""
    wallet = _wallet()
    if wallet is None:
        return _message(
            "请使用微信或支付宝扫码",
            "请使用微信或支付宝“扫一扫”扫描收款码付款。",
            200,
            sandbox_wallets=bool(current_app.config["PAYMENT_SANDBOX"]),
        )
    if _payer() is not None:
        return None
    state, nonce = payer_identity.new_state(wallet, request.path)
    response = redirect(payer_identity.authorize_url(wallet, state))
    if request.args.get("sandbox_wallet") == wallet and current_app.config["PAYMENT_SANDBOX"]:
        response.set_cookie(
            SANDBOX_WALLET_COOKIE, str(wallet), path=payer_identity.COOKIE_PATH, httponly=True
        )
    response.set_cookie(
        payer_identity.STATE_COOKIE,
        nonce,
        max_age=payer_identity.STATE_MAX_AGE_S,
        path=payer_identity.COOKIE_PATH,
        httponly=True,
        secure=_cookie_secure(),
        samesite="Lax",
    )
    return response


@web.get("/c/<token>")
@public_route
@_html_errors
def aggregate_page(token: str) -> ResponseReturnValue:
    code = cashier.active_aggregate_qr(token)
    first = _identify_first()
    if first is not None:
        return first
    payer = _payer()
    assert payer is not None
    bills = [cashier.public_bill(b) for b in cashier.pending_bills(payer, code.institution_id)]
    return _cashier_page(
        centre_id=code.institution_id,
        label=code.label,
        pay_url=f"/pay/api/c/{code.token}/payments",
        bills=bills,
        walk_in=True,
    )


@web.get("/o/<token>")
@public_route
@_html_errors
def bill_page(token: str) -> ResponseReturnValue:
    bill = cashier.bill_from_token(token)
    first = _identify_first()
    if first is not None:
        return first
    if bill.status != BillStatus.OPEN:
        text = (
            "该账单已支付，无需重复付款。" if bill.status == BillStatus.PAID else "该账单已作废，无需支付。"
        )
        return _message("无需付款", text, 200)
    return _cashier_page(
        centre_id=bill.institution_id,
        label="",
        pay_url=f"/pay/api/bills/{token}/payments",
        bills=[cashier.public_bill(bill)],
        walk_in=False,
    )


@web.get("/r/<token>")
@public_route
@_html_errors
def result_page(token: str) -> ResponseReturnValue:
    cashier.order_from_token(token)  # a bad or expired link is a 404 page, not a page that polls forever
    return render_template(
        "pay/result.html",
        status_url=f"/pay/api/orders/{token}",
        confirm_url=f"/pay/api/orders/{token}/confirm",
    )


@web.get("/oauth/<wallet>")
@public_route
@_html_errors
def oauth_return(wallet: str) -> ResponseReturnValue:
    try:
        channel = Channel(wallet)
    except ValueError:
        return _message("无法打开付款页面", "请求的地址不存在。", 404)
    code = request.args.get("code" if channel is Channel.WECHAT else "auth_code", "")
    return_path = payer_identity.check_state(
        request.args.get("state"), request.cookies.get(payer_identity.STATE_COOKIE), channel
    )
    if not code:
        return _message("未完成授权", "需要您的授权才能付款，请返回重新扫码。", 400)
    payer = payer_identity.identify(channel, code)  # network: no transaction is open here
    response = redirect(return_path)
    response.set_cookie(
        payer_identity.PAYER_COOKIE,
        payer_identity.payer_cookie_value(payer),
        max_age=payer_identity.session_minutes() * 60,
        path=payer_identity.COOKIE_PATH,
        httponly=True,
        secure=_cookie_secure(),
        samesite="Lax",
    )
    response.delete_cookie(payer_identity.STATE_COOKIE, path=payer_identity.COOKIE_PATH)
    return response


_ASSET_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


@web.get("/static/<path:filename>")
@public_route
def static_file(filename: str) -> ResponseReturnValue:
    """The page's own scripts and style sheet (small: read whole, no file handle left open)."""
    path = safe_join(str(STATIC_DIR), filename)
    mimetype = _ASSET_TYPES.get(Path(filename).suffix)
    if path is None or mimetype is None or not Path(path).is_file():
        return _message("无法打开付款页面", "请求的地址不存在。", 404)
    response = Response(Path(path).read_bytes(), content_type=mimetype)
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


# --- JSON API ------------------------------------------------------------------------------------


def _payer_actor(payer: Payer) -> Actor:
    return Actor("payer", uuid.uuid5(_PAYER_NAMESPACE, f"{payer.channel}:{payer.account}"))


def _as_payer(func: F) -> F:
    """The payer of this browser becomes the request's principal (idempotency keys are scoped to
    it). A foreign Origin is refused (the cookie is SameSite=Lax; this is the second lock)."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        origin = request.headers.get("Origin")
        if origin:
            allowed = {request.host_url.rstrip("/"), _origin(current_app.config["PAYMENT_PUBLIC_BASE_URL"])}
            if origin.rstrip("/") not in allowed:
                raise PermissionDenied("请在付款页面内操作", code="foreign_origin")
        payer = _payer()
        if payer is None:
            raise Unauthorized("付款页面已过期，请重新扫码", code="payer_session_missing")
        actor = _payer_actor(payer)
        assert actor.id is not None
        g.principal = Principal(kind="payer", id=actor.id, role="payer", institution_id=None)
        g.cashier_payer = payer
        return func(*args, **kwargs)

    return cast(F, wrapper)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _pay(bill_loader: Callable[[Payer], Any]) -> dict[str, Any]:
    payer: Payer = g.cashier_payer
    actor = _payer_actor(payer)
    bill = bill_loader(payer)
    start = cashier.start_jsapi(
        bill,
        channel=payer.channel,
        payer_account=payer.account,
        client_ip=_client_ip(),
        actor=actor,
        payer_app=providers.h5_payer_app(payer.channel),  # the official account's openid
    )
    commit()  # the order and its out_trade_no exist before the provider hears of it
    order: PaymentOrder = start.order
    if start.needs_charge:
        order = flows.charge(order.id, actor=actor)
    return cashier.charge_view(order)


@blp.route("/c/<qr_token>/payments", methods=["POST"])
@blp.auth(public=True)
@_as_payer
@blp.idempotent()
@blp.arguments(CashierPayArgsSchema)
@blp.response(201, CashierChargeSchema)
@errors(401, 403, 404, 409, 422, 429)
def pay_at_aggregate(args: dict[str, Any], qr_token: str) -> Any:
    """Pay on an aggregate code: one of the payer's pending bills (`bill`), or a typed amount
    (`amount_fen`, walk-in: capped, rate-limited). JSAPI with the payer's openid / buyer id; the
    reply carries the wallet's client parameters. A failed or not-yet-known charge is answered
    201 with `state` failed/unknown (the result page settles it by query)."""

    def load(payer: Payer) -> Any:
        code = cashier.active_aggregate_qr(qr_token)
        if "bill" in args:
            return cashier.bill_for_aggregate(code, payer, args["bill"])
        return cashier.create_walk_in_bill(code, payer, amount_fen=args["amount_fen"], client_ip=_client_ip())

    return _pay(load)


@blp.route("/bills/<bill_token>/payments", methods=["POST"])
@blp.auth(public=True)
@_as_payer
@blp.idempotent()
@blp.arguments(EmptyArgsSchema)
@blp.response(201, CashierChargeSchema)
@errors(401, 403, 404, 409, 422)
def pay_bill(args: dict[str, Any], bill_token: str) -> Any:
    """Pay the bill of a bill link (`/pay/o/<token>`) in JSAPI mode."""
    return _pay(lambda payer: cashier.bill_from_token(bill_token))


@blp.route("/orders/<order_token>", methods=["GET"])
@blp.auth(public=True)
@blp.response(200, CashierOrderSchema)
@errors(404)
def order_status(order_token: str) -> Any:
    """The order as the result page shows it (polled until `final`)."""
    return cashier.public_order(cashier.order_from_token(order_token))


@blp.route("/orders/<order_token>/confirm", methods=["POST"])
@blp.auth(public=True)
@blp.response(200, CashierOrderSchema)
@errors(404)
def confirm_order(order_token: str) -> Any:
    """ "I have paid" from the page (wallet callback): never marks anything paid by itself; it only
    makes the server query the provider (PAY-07) and answers the order as it then stands."""
    order = cashier.order_from_token(order_token)
    if not OrderState(order.state).is_final and _may_query(order):
        order_id = order.id
        flows.query_and_apply(order_id, source="query", actor=Actor("payer"))
        order = db.session.get(PaymentOrder, order_id) or order
        db.session.refresh(order)
    return cashier.public_order(order)


def _may_query(order: PaymentOrder) -> bool:
    """At most one provider query per order every CONFIRM_THROTTLE_S seconds from the page."""
    try:
        return bool(
            get_redis().set(CONFIRM_THROTTLE_KEY.format(order.id), "1", nx=True, ex=CONFIRM_THROTTLE_S)
        )
    except RedisError:
        return True
