"""The H5 cashier (`/pay/...`) and the aggregate QR codes, against the in-process sandboxes.

The real SDKs talk over HTTP to the loopback emulators: wechatpy's OAuth client and WeChat Pay
client, python-alipay-sdk's gateway client; the browser's OAuth redirects are followed over real
HTTP to the OAuth emulator (`payments.sandbox.oauth`).
"""

from __future__ import annotations

import http.client
import itertools
import re
import subprocess
import uuid
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import time_machine
from flask import Flask
from sqlalchemy import func, select

from app.billing import providers
from app.billing.models import (
    AggregateQr,
    Bill,
    BillSource,
    BillStatus,
    OrderState,
    PaymentOrder,
    PaymentOrderEvent,
)
from app.billing.routes import cashier as cashier_routes
from app.billing.services import cashier as cashier_service
from app.billing.services import orders, payer_identity
from app.core import clock
from app.core.auth import Actor, Role
from app.core.db import commit, db
from app.core.redis import get_redis
from app.institutions.models import Institution
from app.mp_accounts.models import BindingStatus, MpBinding, MpUser
from payments.base import Channel
from tests.audit.support import Http
from tests.factories import make_centre, make_staff, token_for
from tests.factories_residents import make_resident

WECHAT_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 MicroMessenger/8.0.50"
)
ALIPAY_UA = "Mozilla/5.0 (Linux; Android 13) AppleWebKit/537.36 AlipayClient/10.5.36"
CHROME_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"
_keys = itertools.count(1)


def key() -> str:
    return f"h5-test-{next(_keys)}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(autouse=True)
def _fresh_oauth_sandbox(app: Flask) -> None:
    payer_identity.oauth_sandbox(app).reset()


def _follow_emulator(location: str) -> str:
    """GET a URL of the OAuth emulator over HTTP (as the wallet's browser would); its redirect."""
    parts = urlsplit(location.split("#", 1)[0])
    assert parts.hostname == "127.0.0.1", location
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.request("GET", f"{parts.path}?{parts.query}")
        response = connection.getresponse()
        response.read()
        assert response.status == 302, response.status
        return str(response.getheader("Location"))
    finally:
        connection.close()


class Browser:
    """The payer's phone: a wallet's in-app browser (User-Agent, cookies) on our pages."""

    def __init__(self, app: Flask, user_agent: str) -> None:
        self.app = app
        self.user_agent = user_agent
        self.client = app.test_client()

    def request(self, method: str, path: str, headers: dict[str, str] | None = None, **kwargs: Any) -> Any:
        merged = {"User-Agent": self.user_agent, **(headers or {})}
        response = self.client.open(path, method=method, headers=merged, **kwargs)
        db.session.expire_all()
        return response

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs)

    def open_cashier(self, path: str) -> Any:
        """Open a cashier page, going through the wallet's OAuth if the payer is not known yet."""
        response = self.get(path)
        if response.status_code == 302 and not response.location.startswith("/"):
            back = urlsplit(_follow_emulator(response.location))
            returned = self.get(f"{back.path}?{back.query}")
            assert returned.status_code == 302, returned.get_data(as_text=True)
            response = self.get(returned.location)
        return response

    def pay(self, path: str, body: dict[str, Any], idempotency_key: str | None = None) -> Any:
        return self.post(path, json=body, headers={"Idempotency-Key": idempotency_key or key()})


def make_code(centre: Institution, label: str = "一楼收费处") -> AggregateQr:
    code = cashier_service.create_aggregate_qr(institution_id=centre.id, label=label, actor=Actor("system"))
    commit()
    return code


def make_bill(centre: Institution, amount_fen: int = 2500, *, resident_id: uuid.UUID | None = None) -> Bill:
    bill = orders.create_bill(
        institution_id=centre.id,
        amount_fen=amount_fen,
        subject="家庭医生签约服务费",
        actor=Actor("staff", None, Role.CASHIER.value),
        source=BillSource.OTHER,
        resident_id=resident_id,
    )
    commit()
    return bill


def pay_in_wallet(charge: dict[str, Any]) -> None:
    """The payer confirms in the wallet (the emulator takes the money; no notification is sent)."""
    params = charge["client_params"]
    if charge["channel"] == Channel.WECHAT:
        reference = params["package"].removeprefix("prepay_id=")
        providers.sandbox(Channel.WECHAT).ledger.pay_jsapi(reference)
    else:
        providers.sandbox(Channel.ALIPAY).ledger.pay_jsapi(params["tradeNO"])


def order_of(charge: dict[str, Any]) -> PaymentOrder:
    return cashier_service.order_from_token(charge["order"])


def confirm(browser: Browser, charge: dict[str, Any]) -> Any:
    order = order_of(charge)
    get_redis().delete(cashier_routes.CONFIRM_THROTTLE_KEY.format(order.id))
    return browser.post(f"/pay/api/orders/{charge['order']}/confirm")


@pytest.fixture
def code(centre: Institution) -> AggregateQr:
    return make_code(centre)


# --- wallet detection and pages ---------------------------------------------------------------------


def test_the_wallet_is_detected_from_the_user_agent():
    assert payer_identity.detect_wallet(WECHAT_UA) is Channel.WECHAT
    assert payer_identity.detect_wallet(ALIPAY_UA) is Channel.ALIPAY
    assert payer_identity.detect_wallet(CHROME_UA) is None
    assert payer_identity.detect_wallet(None) is None


def test_another_browser_is_asked_to_scan_with_a_wallet(app, code):
    response = Browser(app, CHROME_UA).get(f"/pay/c/{code.token}")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "请使用微信或支付宝扫码" in page
    assert "text/html" in response.content_type


def test_unknown_and_revoked_codes_show_a_chinese_404_page(app, code):
    browser = Browser(app, WECHAT_UA)
    unknown = browser.get("/pay/c/not-a-real-code-at-all")
    assert unknown.status_code == 404
    assert "该收款码无效或已停用" in unknown.get_data(as_text=True)
    cashier_service.revoke_aggregate_qr(code, actor=Actor("system"))
    commit()
    revoked = browser.get(f"/pay/c/{code.token}")
    assert revoked.status_code == 404
    assert "text/html" in revoked.content_type


def test_pages_carry_a_strict_csp_and_no_inline_script(app, code):
    page = Browser(app, WECHAT_UA).open_cashier(f"/pay/c/{code.token}")
    assert page.status_code == 200
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    html = page.get_data(as_text=True)
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S)
    assert scripts and all('src="/pay/static/' in attrs and not body.strip() for attrs, body in scripts)
    assert page.headers["Cache-Control"] == "no-store"
    asset = Browser(app, WECHAT_UA).get("/pay/static/cashier.js")
    assert asset.status_code == 200 and "getBrandWCPayRequest" in asset.get_data(as_text=True)


# --- OAuth ------------------------------------------------------------------------------------------


def test_wechat_oauth_round_trip_keeps_the_openid_in_a_signed_cookie(app, centre, code):
    sandbox = payer_identity.oauth_sandbox(app)
    sandbox.login_as("wechat", "oPayerWeChat0001")
    browser = Browser(app, WECHAT_UA)
    first = browser.get(f"/pay/c/{code.token}")
    assert first.status_code == 302
    authorize = urlsplit(first.location)
    query = parse_qs(authorize.query)
    assert authorize.path == "/connect/oauth2/authorize"
    assert query["appid"] == [app.config["WECHATPAY_APPID"]]
    assert query["scope"] == ["snsapi_base"]
    assert query["redirect_uri"] == [app.config["PAYMENT_PUBLIC_BASE_URL"] + "/pay/oauth/wechat"]
    assert first.location.endswith("#wechat_redirect")
    back = _follow_emulator(first.location)
    returned = browser.get(urlsplit(back).path + "?" + urlsplit(back).query)
    assert returned.status_code == 302 and returned.location == f"/pay/c/{code.token}"
    assert "oPayerWeChat0001" not in returned.location
    cookie = browser.client.get_cookie(payer_identity.PAYER_COOKIE, path="/pay")
    assert cookie is not None and cookie.http_only and cookie.same_site == "Lax"
    page = browser.get(f"/pay/c/{code.token}")
    assert page.status_code == 200
    assert centre.name in page.get_data(as_text=True)
    # The cookie is signed: a forged one is ignored (back to OAuth).
    browser.client.set_cookie(payer_identity.PAYER_COOKIE, cookie.value[:-2] + "xx", path="/pay")
    assert browser.get(f"/pay/c/{code.token}").status_code == 302


def test_an_oauth_return_from_another_browser_or_with_a_forged_state_is_refused(app, code):
    started = Browser(app, WECHAT_UA).get(f"/pay/c/{code.token}")
    back = urlsplit(_follow_emulator(started.location))
    stranger = Browser(app, WECHAT_UA)  # no state cookie: someone else's OAuth link
    refused = stranger.get(f"{back.path}?{back.query}")
    assert refused.status_code == 422
    assert "授权已失效" in refused.get_data(as_text=True)
    forged = Browser(app, WECHAT_UA).get("/pay/oauth/wechat?code=abc&state=forged.state.value")
    assert forged.status_code == 422
    assert "text/html" in forged.content_type


def test_an_oauth_code_works_once(app, code):
    browser = Browser(app, WECHAT_UA)
    started = browser.get(f"/pay/c/{code.token}")
    back = urlsplit(_follow_emulator(started.location))
    assert browser.get(f"{back.path}?{back.query}").status_code == 302
    # Replaying the same return URL (a new state cookie is needed, so start again with its code).
    again = browser.get(f"/pay/c/{code.token}")
    assert again.status_code == 200
    state_start = Browser(app, WECHAT_UA)
    restarted = state_start.get(f"/pay/c/{code.token}")
    state = parse_qs(urlsplit(restarted.location).query)["state"][0]
    reused = state_start.get(f"/pay/oauth/wechat?code={parse_qs(back.query)['code'][0]}&state={state}")
    assert reused.status_code == 422
    assert "授权已失效" in reused.get_data(as_text=True)


def test_the_wechat_oauth_service_failing_is_a_503_page(app, code):
    providers.sandbox(Channel.WECHAT).ledger.fail_next("oauth", "http_500")
    browser = Browser(app, WECHAT_UA)
    started = browser.get(f"/pay/c/{code.token}")
    back = urlsplit(_follow_emulator(started.location))
    failed = browser.get(f"{back.path}?{back.query}")
    assert failed.status_code == 503
    assert "暂时无法确认您的付款身份" in failed.get_data(as_text=True)


# --- paying -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("user_agent", [WECHAT_UA, ALIPAY_UA], ids=["wechat", "alipay"])
def test_a_walk_in_payment_is_paid_only_after_the_server_query_confirms_it(app, centre, code, user_agent):
    """PAY-07: the page's confirm on an unpaid order leaves it PENDING; once the sandbox has the
    money, confirm marks it PAID exactly once."""
    browser = Browser(app, user_agent)
    assert browser.open_cashier(f"/pay/c/{code.token}").status_code == 200
    reply = browser.pay(f"/pay/api/c/{code.token}/payments", {"amount_fen": 1230})
    assert reply.status_code == 201, reply.json
    charge = reply.json
    assert charge["state"] == "pending" and charge["amount_text"] == "¥12.30"
    assert charge["centre_name"] == centre.name
    assert charge["result_url"] == f"/pay/r/{charge['order']}"
    if user_agent == WECHAT_UA:
        assert set(charge["client_params"]) == {
            "appId",
            "timeStamp",
            "nonceStr",
            "package",
            "signType",
            "paySign",
        }
    else:
        assert set(charge["client_params"]) == {"tradeNO"}
    order = order_of(charge)
    assert order.mode == "jsapi" and order.amount_fen == 1230
    bill = db.session.get(Bill, order.bill_id)
    assert bill is not None and bill.source == BillSource.WALK_IN and bill.created_by_kind == "payer"

    unpaid = confirm(browser, charge)
    assert unpaid.status_code == 200 and unpaid.json["state"] == "pending"
    assert order_of(charge).state == OrderState.PENDING

    pay_in_wallet(charge)
    paid = confirm(browser, charge)
    assert paid.json["paid"] is True and paid.json["state_text"] == "支付成功"
    again = confirm(browser, charge)
    assert again.json["paid"] is True
    order = order_of(charge)
    assert order.state == OrderState.PAID
    to_paid = db.session.execute(
        select(func.count())
        .select_from(PaymentOrderEvent)
        .where(PaymentOrderEvent.order_id == order.id, PaymentOrderEvent.to_state == OrderState.PAID)
    ).scalar_one()
    assert to_paid == 1
    assert providers.sandbox(order.channel).ledger.payments_of(order.out_trade_no) == 1
    status = browser.get(f"/pay/api/orders/{charge['order']}")
    assert status.json["paid"] is True and status.json["paid_at"]
    result = browser.get(f"/pay/r/{charge['order']}")
    assert result.status_code == 200 and "正在确认支付结果" in result.get_data(as_text=True)


def test_walk_in_amounts_are_capped_and_validated(app, code):
    browser = Browser(app, WECHAT_UA)
    browser.open_cashier(f"/pay/c/{code.token}")
    path = f"/pay/api/c/{code.token}/payments"
    cap = cashier_service.walk_in_max_fen()
    over = browser.pay(path, {"amount_fen": cap + 1})
    assert over.status_code == 422 and over.json["code"] == "walk_in_amount_invalid"
    assert "元" in over.json["message"]
    assert browser.pay(path, {"amount_fen": 0}).status_code == 422
    assert browser.pay(path, {"amount_fen": 12.5}).status_code == 422
    assert browser.pay(path, {"amount_fen": "100"}).status_code == 422
    assert browser.pay(path, {}).status_code == 422
    assert browser.pay(path, {"amount_fen": 100, "bill": "x"}).status_code == 422
    assert browser.pay(path, {"amount_fen": cap}).status_code == 201


def test_walk_in_bills_are_rate_limited_per_payer(app, code):
    browser = Browser(app, WECHAT_UA)
    browser.open_cashier(f"/pay/c/{code.token}")
    path = f"/pay/api/c/{code.token}/payments"
    for amount in range(101, 106):
        assert browser.pay(path, {"amount_fen": amount}).status_code == 201
    limited = browser.pay(path, {"amount_fen": 106})
    assert limited.status_code == 429 and limited.json["code"] == "walk_in_rate_limited"
    assert "Retry-After" in limited.headers


def test_the_payer_sees_only_bills_addressed_to_them(app, centre, code):
    mine = make_resident(centre)
    theirs = make_resident(centre)
    user = MpUser(id=uuid.uuid4(), openid="oMiniProgramOpenid01", unionid="uUnion0001")
    db.session.add(user)
    db.session.flush()
    db.session.add(
        MpBinding(
            id=uuid.uuid4(),
            user_id=user.id,
            resident_id=mine.id,
            relationship="self",
            status=BindingStatus.ACTIVE,
            verified_at=clock.now(),
        )
    )
    commit()
    my_bill = make_bill(centre, 3300, resident_id=mine.id)
    their_bill = make_bill(centre, 4400, resident_id=theirs.id)
    other_centre_bill = make_bill(make_centre(), 5500, resident_id=mine.id)
    payer_identity.oauth_sandbox(app).login_as("wechat", "oOfficialAccount01", unionid="uUnion0001")
    browser = Browser(app, WECHAT_UA)
    page = browser.open_cashier(f"/pay/c/{code.token}").get_data(as_text=True)
    assert "¥33.00" in page
    assert "¥44.00" not in page and "¥55.00" not in page
    assert cashier_service.bill_token(their_bill) not in page
    assert other_centre_bill.id  # other centres' bills are not on this centre's code
    path = f"/pay/api/c/{code.token}/payments"
    foreign = browser.pay(path, {"bill": cashier_service.bill_token(their_bill)})
    assert foreign.status_code == 404 and foreign.json["code"] == "payment_link_invalid"
    paid = browser.pay(path, {"bill": cashier_service.bill_token(my_bill)})
    assert paid.status_code == 201 and paid.json["amount_fen"] == 3300
    # A stranger on the same code sees neither bill.
    payer_identity.oauth_sandbox(app).login_as("wechat", "oStranger000001")
    stranger = Browser(app, WECHAT_UA).open_cashier(f"/pay/c/{code.token}").get_data(as_text=True)
    assert "¥33.00" not in stranger and "¥44.00" not in stranger


def test_a_bill_link_pays_one_bill_and_reuses_its_prepay(app, centre):
    bill = make_bill(centre, 2500)
    link = cashier_service.bill_payment_url(bill)
    assert link.startswith(app.config["PAYMENT_PUBLIC_BASE_URL"] + "/pay/o/")
    token = link.rsplit("/", 1)[1]
    browser = Browser(app, WECHAT_UA)
    page = browser.open_cashier(f"/pay/o/{token}")
    assert page.status_code == 200 and "¥25.00" in page.get_data(as_text=True)
    first = browser.pay(f"/pay/api/bills/{token}/payments", {})
    second = browser.pay(f"/pay/api/bills/{token}/payments", {})  # cancelled the sheet, tapped again
    assert first.status_code == second.status_code == 201
    assert first.json["order"] == second.json["order"]
    assert first.json["client_params"]["package"] == second.json["client_params"]["package"]
    assert len(providers.sandbox(Channel.WECHAT).ledger.trades) == 1
    replay = browser.pay(f"/pay/api/bills/{token}/payments", {}, idempotency_key="same-key-0001")
    replayed = browser.pay(f"/pay/api/bills/{token}/payments", {}, idempotency_key="same-key-0001")
    assert replayed.headers.get("Idempotent-Replayed") == "true" and replayed.json == replay.json
    pay_in_wallet(first.json)
    confirm(browser, first.json)
    assert db.session.get(Bill, bill.id).status == BillStatus.PAID
    done = browser.open_cashier(f"/pay/o/{token}")
    assert done.status_code == 200 and "该账单已支付" in done.get_data(as_text=True)
    assert browser.pay(f"/pay/api/bills/{token}/payments", {}).status_code == 409


def test_tampered_and_expired_tokens_are_chinese_404s(app, centre):
    bill = make_bill(centre)
    token = cashier_service.bill_token(bill)
    browser = Browser(app, WECHAT_UA)
    tampered = token[:-3] + ("aaa" if not token.endswith("aaa") else "bbb")
    page = browser.get(f"/pay/o/{tampered}")
    assert page.status_code == 404 and "付款链接无效或已过期" in page.get_data(as_text=True)
    assert browser.get(f"/pay/r/{tampered}").status_code == 404
    api = browser.get(f"/pay/api/orders/{tampered}")
    assert api.status_code == 404 and api.json["code"] == "payment_link_invalid"
    assert browser.post(f"/pay/api/orders/{tampered}/confirm").status_code == 404
    # A bill token is not an order token (different salts), and tokens expire.
    assert browser.get(f"/pay/api/orders/{token}").status_code == 404
    with time_machine.travel(clock.now() + timedelta(hours=25)):
        expired = browser.get(f"/pay/o/{token}")
    assert expired.status_code == 404


def test_the_pay_api_needs_the_payer_cookie_and_our_origin(app, code):
    browser = Browser(app, WECHAT_UA)
    missing = browser.pay(f"/pay/api/c/{code.token}/payments", {"amount_fen": 100})
    assert missing.status_code == 401 and missing.json["code"] == "payer_session_missing"
    browser.open_cashier(f"/pay/c/{code.token}")
    foreign = browser.post(
        f"/pay/api/c/{code.token}/payments",
        json={"amount_fen": 100},
        headers={"Idempotency-Key": key(), "Origin": "https://evil.example"},
    )
    assert foreign.status_code == 403
    no_key = browser.post(f"/pay/api/c/{code.token}/payments", json={"amount_fen": 100})
    assert no_key.status_code == 400 and no_key.json["code"] == "idempotency_key_required"


# --- aggregate QR codes (staff) -------------------------------------------------------------------


def test_centre_admins_create_list_print_and_revoke_aggregate_codes(app, centre, other_centre):
    admin = Http(app, token_for(make_staff(Role.CENTRE_ADMIN, centre)))
    desk = Http(app, token_for(make_staff(Role.CASHIER, centre)))
    created = admin.post("/api/v1/billing/aggregate-qr", json={"label": "一楼收费处"})
    assert created.status_code == 201, created.json
    view = created.json
    assert view["url"].startswith(app.config["PAYMENT_PUBLIC_BASE_URL"] + "/pay/c/")
    assert view["institution_id"] == str(centre.id)
    assert desk.post("/api/v1/billing/aggregate-qr", json={"label": "x"}).status_code == 403
    assert [c["id"] for c in desk.get("/api/v1/billing/aggregate-qr").json] == [view["id"]]

    png = desk.get(f"/api/v1/billing/aggregate-qr/{view['id']}/qr.png")
    assert png.status_code == 200 and png.mimetype == "image/png"
    decoded = subprocess.run(
        ["zbarimg", "--quiet", "--raw", "-"], input=png.data, capture_output=True, check=True
    )
    assert decoded.stdout.decode().strip() == view["url"]
    svg = desk.get(f"/api/v1/billing/aggregate-qr/{view['id']}/qr.svg")
    assert svg.mimetype == "image/svg+xml" and b"<svg" in svg.data
    poster = desk.get(f"/api/v1/billing/aggregate-qr/{view['id']}/poster.png?size=A6")
    assert poster.status_code == 200 and poster.data[:8] == b"\x89PNG\r\n\x1a\n"
    decoded_poster = subprocess.run(
        ["zbarimg", "--quiet", "--raw", "-"], input=poster.data, capture_output=True, check=True
    )
    assert decoded_poster.stdout.decode().strip() == view["url"]
    poster_svg = desk.get(f"/api/v1/billing/aggregate-qr/{view['id']}/poster.svg?size=A5")
    text = poster_svg.data.decode()
    assert centre.name in text and "微信/支付宝扫码付款" in text and "一楼收费处" in text
    assert desk.get(f"/api/v1/billing/aggregate-qr/{view['id']}/poster.png?size=A3").status_code == 422

    foreign = Http(app, token_for(make_staff(Role.CENTRE_ADMIN, other_centre)))
    assert foreign.get(f"/api/v1/billing/aggregate-qr/{view['id']}").status_code == 404
    assert foreign.post(f"/api/v1/billing/aggregate-qr/{view['id']}/revoke").status_code == 404

    revoked = admin.post(f"/api/v1/billing/aggregate-qr/{view['id']}/revoke")
    assert revoked.status_code == 200 and revoked.json["active"] is False
    assert admin.post(f"/api/v1/billing/aggregate-qr/{view['id']}/revoke").status_code == 409
    assert desk.get("/api/v1/billing/aggregate-qr").json == []
    assert len(desk.get("/api/v1/billing/aggregate-qr?include_revoked=true").json) == 1
    assert desk.get(f"/api/v1/billing/aggregate-qr/{view['id']}/qr.png").status_code == 422


def test_district_admins_name_the_centre_of_a_code(app, centre):
    district = Http(app, token_for(make_staff(Role.DISTRICT_ADMIN, None)))
    missing = district.post("/api/v1/billing/aggregate-qr", json={"label": "门诊"})
    assert missing.status_code == 422 and missing.json["code"] == "centre_required"
    unknown = district.post(
        "/api/v1/billing/aggregate-qr", json={"label": "门诊", "institution_id": str(uuid.uuid4())}
    )
    assert unknown.status_code == 422
    made = district.post(
        "/api/v1/billing/aggregate-qr", json={"label": "门诊", "institution_id": str(centre.id)}
    )
    assert made.status_code == 201 and made.json["institution_id"] == str(centre.id)
    assert district.get("/api/v1/billing/aggregate-qr").status_code == 200
