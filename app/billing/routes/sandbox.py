"""The payment sandbox's payer simulator (development and demos only; 404 unless PAYMENT_SANDBOX).

The in-process WeChat Pay and Alipay emulators play the providers; these endpoints play the
*payer* so that a newcomer can go through every payment mode with `make run` and curl:

    POST /_sandbox/scan          {"qr_content": "...", "pay_after_s": 0}      a payer scans our QR and pays
    POST /_sandbox/payer-codes   {"channel": "wechat", "behaviour": "pay"|"never"|"decline",
                                  "pay_after_s": 10}                         a payment code to scan at the desk
    POST /_sandbox/jsapi-pay     {"channel": "wechat", "reference": "<prepay_id or trade_no>"}
    POST /_sandbox/deliver       deliver due provider notifications now
    GET  /_sandbox/trades        what the emulated providers hold

Notifications are also delivered every second by a background ticker, over HTTP, to
PAYMENT_PUBLIC_BASE_URL + /callbacks/..., exactly as the providers would.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from app.billing import providers
from app.core.api import public_route
from payments.base import Channel
from payments.sandbox.ledger import SandboxDeclined

web = Blueprint("billing_sandbox", __name__, url_prefix="/_sandbox")

CODE_PREFIX = {Channel.WECHAT: "13", Channel.ALIPAY: "28"}


def _require_sandbox() -> None:
    if not current_app.config["PAYMENT_SANDBOX"]:
        abort(404)


def _body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        abort(400, description="请求体必须是 JSON 对象")
    return body


def _channel(value: object) -> Channel:
    try:
        return Channel(str(value))
    except ValueError:
        abort(400, description="channel 必须是 wechat 或 alipay")


def _seconds(value: object) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 3600:
        abort(400, description="pay_after_s 必须是 0–3600 之间的秒数")
    return float(value)  # float-ok: seconds


@web.post("/scan")
@public_route
def scan() -> ResponseReturnValue:
    _require_sandbox()
    body = _body()
    qr_content = str(body.get("qr_content", ""))
    delay = _seconds(body.get("pay_after_s", 0))
    for channel in Channel:
        ledger = providers.sandbox(channel).ledger
        if qr_content in ledger.by_reference:
            payer = ledger.new_payer()
            trade = ledger.scan(qr_content, payer, pay_after_s=delay)
            return jsonify(channel=channel, payer=payer, out_trade_no=trade.out_trade_no, state=trade.state)
    abort(404, description="沙箱中没有这个收款码，请先创建支付订单")


@web.post("/payer-codes")
@public_route
def payer_code() -> ResponseReturnValue:
    _require_sandbox()
    body = _body()
    channel = _channel(body.get("channel", "wechat"))
    behaviour = body.get("behaviour", "pay")
    if behaviour not in ("pay", "never", "decline"):
        abort(400, description="behaviour 必须是 pay、never 或 decline")
    ledger = providers.sandbox(channel).ledger
    payer = ledger.new_payer()
    code = ledger.payer_code(
        payer,
        behaviour=behaviour,
        pay_after_s=_seconds(body.get("pay_after_s", 0)),
        prefix=CODE_PREFIX[channel],
    )
    return jsonify(channel=channel, payer=payer, auth_code=code), 201


@web.post("/jsapi-pay")
@public_route
def jsapi_pay() -> ResponseReturnValue:
    _require_sandbox()
    body = _body()
    ledger = providers.sandbox(_channel(body.get("channel", "wechat"))).ledger
    try:
        trade = ledger.pay_jsapi(str(body.get("reference", "")), body.get("payer"))
    except SandboxDeclined as exc:
        abort(404, description=f"沙箱拒绝：{exc.code}")
    return jsonify(out_trade_no=trade.out_trade_no, state=trade.state)


@web.post("/deliver")
@public_route
def deliver() -> ResponseReturnValue:
    _require_sandbox()
    sent = {str(channel): providers.sandbox(channel).deliver_due() for channel in Channel}
    return jsonify(sent=sent)


@web.get("/trades")
@public_route
def trades() -> ResponseReturnValue:
    _require_sandbox()
    result = []
    for channel in Channel:
        ledger = providers.sandbox(channel).ledger
        with ledger.lock:
            ledger.advance()
            for trade in ledger.trades.values():
                result.append(
                    {
                        "channel": channel,
                        "out_trade_no": trade.out_trade_no,
                        "amount_fen": trade.amount_fen,
                        "mode": trade.mode,
                        "state": trade.state,
                        "refunded_fen": trade.refunded_fen,
                    }
                )
    return jsonify(trades=result)
