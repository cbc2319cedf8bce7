"""The H5 cashier in a real browser: headless Chromium (Debian's /usr/bin/chromium) driven by
Playwright against the app served by a real werkzeug server on 127.0.0.1, with a committing
database and the in-process WeChat Pay / Alipay / OAuth emulators.

The wallets' JS bridges are stubbed by an init script: `WeixinJSBridge.invoke(...)` and
`AlipayJSBridge.call(...)` hand the prepay id / trade number to the test (a Playwright binding,
which the page's strict CSP cannot block) and answer "ok" like the wallet does. The test decides
when the emulated payer really pays: the result page must not say 支付成功 before the server has
confirmed the payment by querying the provider.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from flask import Flask
from playwright.sync_api import ConsoleMessage, Page, expect, sync_playwright
from werkzeug.serving import make_server

from app.billing import providers
from app.billing.models import Bill, BillSource, OrderState, PaymentOrder
from app.billing.services import cashier as cashier_service
from app.billing.services import orders, payer_identity
from app.core.auth import Actor, Role
from app.core.db import commit, db, rollback
from payments.base import Channel
from tests.factories import make_centre

CHROMIUM = "/usr/bin/chromium"
WECHAT_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 MicroMessenger/8.0.50"
)
ALIPAY_UA = "Mozilla/5.0 (Linux; Android 13) AppleWebKit/537.36 AlipayClient/10.5.36"
WAIT_MS = 30_000

BRIDGES = """
window.WeixinJSBridge = {
  invoke: function (name, params, callback) {
    window.walletConfirm('wechat', name, params)
      .then(function () { callback({ err_msg: 'get_brand_wcpay_request:ok' }); });
  }
};
window.AlipayJSBridge = {
  call: function (name, params, callback) {
    window.walletConfirm('alipay', name, params)
      .then(function () { callback({ resultCode: '9000' }); });
  }
};
"""


@pytest.fixture
def live_app(app: Flask, committing_db: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The app on 127.0.0.1 (real werkzeug server, one thread per request), as the public base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="h5-cashier-live", daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    monkeypatch.setitem(app.config, "PAYMENT_PUBLIC_BASE_URL", base)
    payer_identity.oauth_sandbox(app).reset()
    try:
        yield base
    finally:
        server.shutdown()
        thread.join(timeout=10)
        # Close this test's session and every pooled connection the server threads used, before
        # committing_db (in another app context) empties the tables: a SQLite connection left with
        # an old WAL snapshot would otherwise still see the audit trigger it drops and re-creates.
        db.session.remove()
        db.engine.dispose()


class Wallet:
    """What the stubbed bridges report: the references the payer was asked to confirm."""

    def __init__(self, pay_now: bool) -> None:
        self.pay_now = pay_now
        # The ledgers themselves: the binding runs in Playwright's greenlet, outside the app context.
        self.ledgers = {str(channel): providers.sandbox(channel).ledger for channel in Channel}
        self.calls: list[tuple[str, str, dict[str, Any]]] = []  # (wallet, bridge method, parameters)
        self.references: list[tuple[str, str]] = []

    def confirm(self, channel: str, name: str, params: dict[str, Any]) -> bool:
        self.calls.append((channel, name, params))
        reference = params["package"].removeprefix("prepay_id=") if channel == "wechat" else params["tradeNO"]
        self.references.append((channel, reference))
        if self.pay_now:
            self.pay(channel, reference)
        return True

    def pay(self, channel: str, reference: str) -> None:
        self.ledgers[channel].pay_jsapi(reference)


@contextmanager
def _open(user_agent: str, wallet: Wallet) -> Iterator[tuple[Page, list[str]]]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            context = browser.new_context(
                user_agent=user_agent, locale="zh-CN", viewport={"width": 390, "height": 844}
            )
            context.expose_function("walletConfirm", wallet.confirm)
            context.add_init_script(BRIDGES)
            page = context.new_page()
            problems: list[str] = []

            def on_console(message: ConsoleMessage) -> None:
                if message.type == "error":
                    problems.append(message.text)

            page.on("console", on_console)
            page.on("pageerror", lambda error: problems.append(str(error)))
            yield page, problems
            context.close()
        finally:
            browser.close()


def _order() -> PaymentOrder:
    rollback()  # end the test's read transaction: see what the server committed
    found = db.session.query(PaymentOrder).order_by(PaymentOrder.created_at.desc()).all()
    assert len(found) == 1, found
    return found[0]


def test_wechat_payer_scans_the_aggregate_code_types_an_amount_and_sees_success_only_when_paid(live_app):
    centre = make_centre(name="罗湖区桂园社康中心")
    code = cashier_service.create_aggregate_qr(
        institution_id=centre.id, label="一楼收费处", actor=Actor("system")
    )
    commit()
    wallet = Wallet(pay_now=False)  # the bridge says "ok" before WeChat has the money
    with _open(WECHAT_UA, wallet) as (page, problems):
        page.goto(f"{live_app}/pay/c/{code.token}")  # -> OAuth emulator -> back, payer identified
        expect(page.get_by_role("heading", name="罗湖区桂园社康中心")).to_be_visible()
        assert page.url.split("#")[0] == f"{live_app}/pay/c/{code.token}"  # WeChat keeps its #wechat_redirect
        page.fill("#amount", "12.3")
        page.click("#next")
        expect(page.locator("#confirm-amount")).to_have_text("¥12.30")
        page.click("#pay")
        page.wait_for_url("**/pay/r/**", timeout=WAIT_MS)
        expect(page.locator("#waiting")).to_be_visible()
        expect(page.locator("#success")).to_be_hidden()

        assert [(w, name) for w, name, _ in wallet.calls] == [("wechat", "getBrandWCPayRequest")]
        assert set(wallet.calls[0][2]) == {"appId", "timeStamp", "nonceStr", "package", "signType", "paySign"}
        order = _order()
        assert order.state == OrderState.PENDING  # the page's "ok" changed nothing (PAY-07)
        assert order.amount_fen == 1230 and order.mode == "jsapi" and order.channel == Channel.WECHAT
        bill = db.session.get(Bill, order.bill_id)
        assert bill is not None and bill.source == BillSource.WALK_IN

        wallet.pay(*wallet.references[0])  # now the payer's money arrives at WeChat
        expect(page.locator("#success")).to_be_visible(timeout=WAIT_MS)
        expect(page.locator("#paid-amount")).to_have_text("¥12.30")
        expect(page.locator("#paid-centre")).to_have_text("罗湖区桂园社康中心")
        assert page.locator("#paid-time").inner_text().startswith("20")
        assert _order().state == OrderState.PAID
        assert problems == []


def test_alipay_payer_opens_a_bill_link_confirms_and_sees_success(live_app):
    centre = make_centre(name="罗湖区东门社康中心")
    bill = orders.create_bill(
        institution_id=centre.id,
        amount_fen=4580,
        subject="家庭医生签约个人自付",
        actor=Actor("staff", None, Role.CASHIER.value),
        source_ref=f"browser-{uuid.uuid4().hex[:8]}",
    )
    commit()
    link = cashier_service.bill_payment_url(bill)
    wallet = Wallet(pay_now=True)
    with _open(ALIPAY_UA, wallet) as (page, problems):
        page.goto(link)
        expect(page.locator("#confirm-amount")).to_have_text("¥45.80")  # one bill: straight to confirm
        expect(page.get_by_text("收款方：罗湖区东门社康中心")).to_be_visible()
        page.click("#pay")
        page.wait_for_url("**/pay/r/**", timeout=WAIT_MS)
        expect(page.locator("#success")).to_be_visible(timeout=WAIT_MS)
        expect(page.locator("#paid-amount")).to_have_text("¥45.80")
        assert [(w, name) for w, name, _ in wallet.calls] == [("alipay", "tradePay")]
        order = _order()
        assert order.state == OrderState.PAID and order.channel == Channel.ALIPAY
        assert providers.sandbox(Channel.ALIPAY).ledger.payments_of(order.out_trade_no) == 1
        assert problems == []


def test_a_desktop_browser_is_told_to_scan_with_a_wallet(live_app):
    centre = make_centre()
    code = cashier_service.create_aggregate_qr(institution_id=centre.id, label="门诊", actor=Actor("system"))
    commit()
    with _open("Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0", Wallet(pay_now=False)) as (page, problems):
        page.goto(f"{live_app}/pay/c/{code.token}")
        expect(page.get_by_role("heading", name="请使用微信或支付宝扫码")).to_be_visible()
        assert problems == []


def test_in_the_sandbox_a_desktop_browser_can_play_a_wallet_and_pay(live_app):
    """`make run`'s demo path: no wallet app, so the page offers to pretend to be one and the
    payment sheet is simulated by /_sandbox/jsapi-pay; success still waits for the server."""
    centre = make_centre(name="罗湖区翠竹社康中心")
    code = cashier_service.create_aggregate_qr(institution_id=centre.id, label="二楼", actor=Actor("system"))
    commit()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page(user_agent="Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0", locale="zh-CN")
            dialogs: list[str] = []

            def accept(dialog: Any) -> None:
                dialogs.append(dialog.message)
                dialog.accept()

            page.on("dialog", accept)
            page.goto(f"{live_app}/pay/c/{code.token}")
            page.click("text=用支付宝打开")  # -> sandbox OAuth -> back, payer identified
            page.fill("#amount", "8")
            page.click("#next")
            expect(page.locator("#confirm-amount")).to_have_text("¥8.00")
            page.click("#pay")
            page.wait_for_url("**/pay/r/**", timeout=WAIT_MS)
            expect(page.locator("#success")).to_be_visible(timeout=WAIT_MS)
            expect(page.locator("#paid-amount")).to_have_text("¥8.00")
        finally:
            browser.close()
    assert dialogs == ["【支付沙箱】模拟支付宝支付：确认付款？"]
    order = _order()
    assert order.state == OrderState.PAID and order.channel == Channel.ALIPAY and order.mode == "jsapi"
    assert providers.sandbox(Channel.ALIPAY).ledger.payments_of(order.out_trade_no) == 1
