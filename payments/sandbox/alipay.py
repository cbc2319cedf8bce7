"""Loopback emulator of the Alipay OpenAPI gateway (v1, RSA2) over a `SandboxLedger` (a WSGI app).

Alipay side (what python-alipay-sdk 3.4.0 calls: a GET with every parameter in the query string):

    GET /gateway.do?app_id&method&charset&sign_type=RSA2&timestamp&version&biz_content&sign[&notify_url]
        alipay.trade.precreate        主扫: qr_code (the trade exists only after a scan)
        alipay.trade.pay              被扫 (scene bar_code): 10000 paid / 10003 waiting / 40004 failed
        alipay.trade.create           JSAPI: buyer_id | buyer_open_id -> trade_no for tradePay
        alipay.trade.query            trade_status WAIT_BUYER_PAY / TRADE_SUCCESS / TRADE_CLOSED
        alipay.trade.cancel           retry_flag, action close | refund
        alipay.trade.close
        alipay.trade.refund           out_request_no, fund_change
        alipay.trade.fastpay.refund.query   refund_status=REFUND_SUCCESS, or no data
        alipay.data.dataservice.bill.downloadurl.query   bill_download_url (this server, 30 s)
        alipay.system.oauth.token     grant_type=authorization_code, code -> user_id (H5 cashier)
    GET /downloadBillFile.resource?bill_file_code=...   the ZIP of GBK CSVs (trade-bill layout)

Every request is checked as Alipay does: app_id, charset, sign_type=RSA2, the RSA2 signature
(all parameters but `sign`, empty values dropped, sorted, joined as k=v without URL-encoding,
verified with the *app* public key) and a timestamp in China time within 15 minutes. Replies
are `{"<method>_response":<inner>,"sign":"<RSA2 of the exact inner JSON text>"}`, signed with the
*Alipay* private key; gateway-level errors are an unsigned `error_response`.

Notifications (`deliver_due`) are form-encoded `trade_status_sync` POSTs signed over every field
but `sign` and `sign_type`, retried on Alipay's schedule (4m, 10m, 10m, 1h, 2h, 6h, 15h) until the
body `success` comes back; `notify_id` stays the same across the retries of one notice.

Control API (tests, demos, browser tests; JSON; never exposed in production):

    POST /_emulator/payers        {"balance_fen"?, "payer_id"?}                 -> {"payer_id"}
    POST /_emulator/payer-codes   {"payer_id", "behaviour"?, "pay_after_s"?}    -> {"code"} (prefix 28)
    POST /_emulator/scan          {"qr_code", "payer_id", "pay_after_s"?}       -> trade
    POST /_emulator/jsapi-pay     {"trade_no", "payer_id"?}                     -> trade
    POST /_emulator/oauth-codes   {"payer_id"}                                  -> {"auth_code", "expires_in"}
    POST /_emulator/faults        {"endpoint", "kind", "times"?, "apply"?, "delay_s"?}
    POST /_emulator/notify-mode   {"mode": "normal" | "drop" | "duplicate"}
    POST /_emulator/deliver       deliver due notifications now                 -> {"delivered": n}
    POST /_emulator/reset
    GET  /_emulator/trades        -> {"trades": [...]}
    GET  /_emulator/payers/<id>   -> {"payer_id", "balance_fen", "charged_fen"}

Run it for a demo (127.0.0.1 only; keys are generated once into --keys-dir):

    python -m payments.sandbox.alipay --port 8791 --keys-dir .sandbox/alipay
"""

from __future__ import annotations

import argparse
import base64
import csv
import io
import json
import secrets
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, cast, get_args

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from payments.base import PayMode, RefundState, TradeState, fen_to_yuan, yuan_to_fen
from payments.sandbox import LOOPBACK, serve
from payments.sandbox.keys import cached_key_pair
from payments.sandbox.ledger import (
    Endpoint,
    Fault,
    FaultKind,
    Notice,
    SandboxDeclined,
    SandboxLedger,
    SimRefund,
    SimTrade,
)

CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")  # no DST since 1991: a fixed offset is exact
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
FORM = "application/x-www-form-urlencoded; charset=utf-8"

# Alipay's notification retry intervals after each failed attempt (4m,10m,10m,1h,2h,6h,15h).
NOTIFY_SCHEDULE: tuple[float, ...] = (240, 600, 600, 3600, 7200, 21600, 54000)  # seconds
BILL_URL_TTL_S = 30
OAUTH_CODE_TTL_S = 180
TIMESTAMP_WINDOW_S = 15 * 60
CANCEL_WINDOW_S = 24 * 3600
DEFAULT_STALL_S = 2  # a "timeout" fault without delay_s stalls this long (≥ any test client timeout)

METHOD_ENDPOINTS: dict[str, Endpoint] = {
    "alipay.trade.precreate": "charge",
    "alipay.trade.pay": "charge",
    "alipay.trade.create": "charge",
    "alipay.trade.query": "query",
    "alipay.trade.close": "close",
    "alipay.trade.cancel": "reverse",
    "alipay.trade.refund": "refund",
    "alipay.trade.fastpay.refund.query": "refund_query",
    "alipay.data.dataservice.bill.downloadurl.query": "bill",
    "alipay.system.oauth.token": "oauth",
}

# Neutral ledger refusals -> (sub_code, sub_msg) of a 40004 "Business Failed".
DECLINES: dict[str, tuple[str, str]] = {
    "insufficient_funds": ("ACQ.BUYER_BALANCE_NOT_ENOUGH", "买家余额不足"),
    "code_invalid": (
        "ACQ.PAYMENT_AUTH_CODE_INVALID",
        "支付失败，获取顾客账户信息失败，请顾客刷新付款码后重新收款",
    ),
    "code_used": ("ACQ.PAYMENT_AUTH_CODE_INVALID", "付款码已使用，请顾客刷新付款码后重新收款"),
    "code_expired": ("ACQ.PAYMENT_AUTH_CODE_INVALID", "付款码已过期，请顾客刷新付款码后重新收款"),
    "trade_exists": ("ACQ.CONTEXT_INCONSISTENT", "交易信息被篡改"),
    "trade_paid": ("ACQ.TRADE_HAS_SUCCESS", "交易已被支付"),
    "trade_closed": ("ACQ.TRADE_HAS_CLOSE", "交易已经关闭"),
    "trade_not_found": ("ACQ.TRADE_NOT_EXIST", "交易不存在"),
    "trade_not_paid": ("ACQ.TRADE_STATUS_ERROR", "交易状态不合法"),
    "trade_paying": ("ACQ.TRADE_STATUS_ERROR", "交易状态不合法"),
    "trade_refunded": ("ACQ.TRADE_STATUS_ERROR", "交易已有退款，不能撤销"),
    "invalid_amount": ("ACQ.INVALID_PARAMETER", "参数无效"),
    "refund_exceeds": ("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额超限"),
    "refund_mismatch": ("ACQ.DISCORDANT_REPEAT_REQUEST", "请求信息不一致"),
    "too_many_refunds": ("ACQ.TRADE_STATUS_ERROR", "退款次数超过限制"),
    "payer_mismatch": ("ACQ.BUYER_NOT_EXIST", "买家不存在"),
}

BILL_HEADER: tuple[str, ...] = tuple(
    [
        "支付宝交易号",
        "商户订单号",
        "业务类型",
        "商品名称",
        "创建时间",
        "完成时间",
        "门店编号",
        "门店名称",
        "操作员",
        "终端号",
        "对方账户",
        "订单金额（元）",
        "商家实收（元）",
        "支付宝红包（元）",
        "集分宝（元）",
        "支付宝优惠（元）",
        "商家优惠（元）",
        "券核销金额（元）",
        "券名称",
        "商家红包消费金额（元）",
        "卡消费金额（元）",
        "退款批次号/请求号",
        "服务费（元）",
        "分润（元）",
        "备注",
    ]
)
BILL_DETAIL_START = (
    "#-----------------------------------------业务明细列表----------------------------------------"
)
BILL_DETAIL_END = (
    "#-----------------------------------------业务明细列表结束------------------------------------"
)
FEE_PER_MILLE = 6  # 0.6 % service fee, shown (negative) on payment lines


# --- RSA2 helpers (also used by the tests) -----------------------------------------------------


def sign_content(params: Mapping[str, str]) -> str:
    """The string Alipay signs: non-empty parameters sorted by key, `k=v` joined by `&`, not encoded."""
    return "&".join(f"{key}={params[key]}" for key in sorted(params) if params[key] != "")


def load_private_key(pem: str) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(pem.encode("ascii"), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("not an RSA private key")
    return key


def load_public_key(pem: str) -> rsa.RSAPublicKey:
    key = serialization.load_pem_public_key(pem.encode("ascii"))
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("not an RSA public key")
    return key


def rsa2_sign(key: rsa.RSAPrivateKey, text: str) -> str:
    """SHA256withRSA (PKCS#1 v1.5), base64."""
    return base64.b64encode(key.sign(text.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())).decode(
        "ascii"
    )


def rsa2_verify(key: rsa.RSAPublicKey, text: str, signature: str) -> bool:
    try:
        raw = base64.b64decode(signature, validate=True)
        key.verify(raw, text.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


def china_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, CHINA).strftime(TIME_FORMAT)


def parse_china_time(text: str) -> float:
    return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=CHINA).timestamp()


def _yuan(fen: int) -> str:
    return fen_to_yuan(fen)


def _masked_logon(payer: str) -> str:
    digits = "".join(ch for ch in payer if ch.isdigit()).ljust(4, "0")
    return f"138****{digits[-4:]}"


def post_form(url: str, body: bytes) -> tuple[int, bytes]:
    """Default notification transport: POST the form to a loopback URL (the sandbox never leaves
    the machine); returns (status, body)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise OSError(f"sandbox notifications are delivered to loopback URLs only: {url}")
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": FORM})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - loopback only
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


# --- the emulator ------------------------------------------------------------------------------


class _GatewayError(Exception):
    """Answer with an `error_response` node (unsigned unless `signed`)."""

    def __init__(self, code: str, msg: str, sub_code: str, sub_msg: str, *, signed: bool = False) -> None:
        super().__init__(sub_code)
        self.body = {"code": code, "msg": msg, "sub_code": sub_code, "sub_msg": sub_msg}
        self.signed = signed


def _business_failure(sub_code: str, sub_msg: str, **extra: str) -> dict[str, Any]:
    return {"code": "40004", "msg": "Business Failed", "sub_code": sub_code, "sub_msg": sub_msg, **extra}


def _declined(exc: SandboxDeclined, **extra: str) -> dict[str, Any]:
    sub_code, sub_msg = DECLINES.get(exc.code, ("ACQ.INVALID_PARAMETER", exc.message or exc.code))
    return _business_failure(sub_code, sub_msg, **extra)


def _success(**fields: Any) -> dict[str, Any]:
    return {"code": "10000", "msg": "Success", **fields}


@dataclass
class _Bill:
    content: bytes
    created_at: float


@dataclass
class _OAuthCode:
    payer: str
    expires_at: float


Handler = Callable[[dict[str, str], dict[str, Any], Request, Fault | None], dict[str, Any]]


class AlipaySandbox:
    """The WSGI application. `ledger` may be scripted in-process as well (tests)."""

    def __init__(
        self,
        ledger: SandboxLedger | None = None,
        *,
        app_id: str,
        seller_id: str,
        app_public_key_pem: str,
        alipay_private_key_pem: str,
        stall_s: float = DEFAULT_STALL_S,
    ) -> None:
        self.ledger = ledger or SandboxLedger(id_prefix="", payer_prefix="2088")
        self.app_id = app_id
        self.seller_id = seller_id
        self.stall_s = stall_s
        self._app_public_key = load_public_key(app_public_key_pem)
        self._alipay_private_key = load_private_key(alipay_private_key_pem)
        self._bills: dict[str, _Bill] = {}
        self._oauth_codes: dict[str, _OAuthCode] = {}
        self._notice_fields: dict[int, tuple[Notice, dict[str, str]]] = {}
        self._handlers: dict[str, Handler] = {
            "alipay.trade.precreate": self._precreate,
            "alipay.trade.pay": self._pay,
            "alipay.trade.create": self._create,
            "alipay.trade.query": self._query,
            "alipay.trade.close": self._close,
            "alipay.trade.cancel": self._cancel,
            "alipay.trade.refund": self._refund,
            "alipay.trade.fastpay.refund.query": self._refund_query,
            "alipay.data.dataservice.bill.downloadurl.query": self._bill_url,
            "alipay.system.oauth.token": self._oauth_token,
        }
        self.url_map = Map(
            [
                Rule("/gateway.do", endpoint="gateway", methods=["GET"]),
                Rule("/downloadBillFile.resource", endpoint="bill_file", methods=["GET"]),
                Rule("/_emulator/payers", endpoint="control_payers", methods=["POST"]),
                Rule("/_emulator/payers/<payer_id>", endpoint="control_payer", methods=["GET"]),
                Rule("/_emulator/payer-codes", endpoint="control_payer_codes", methods=["POST"]),
                Rule("/_emulator/scan", endpoint="control_scan", methods=["POST"]),
                Rule("/_emulator/jsapi-pay", endpoint="control_jsapi_pay", methods=["POST"]),
                Rule("/_emulator/oauth-codes", endpoint="control_oauth_codes", methods=["POST"]),
                Rule("/_emulator/faults", endpoint="control_faults", methods=["POST"]),
                Rule("/_emulator/notify-mode", endpoint="control_notify_mode", methods=["POST"]),
                Rule("/_emulator/deliver", endpoint="control_deliver", methods=["POST"]),
                Rule("/_emulator/reset", endpoint="control_reset", methods=["POST"]),
                Rule("/_emulator/trades", endpoint="control_trades", methods=["GET"]),
            ]
        )

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        try:
            endpoint, values = self.url_map.bind_to_environ(environ).match()
            response: Response = getattr(self, f"_{endpoint}")(request, **values)
        except HTTPException as exc:
            status = exc.code or 400
            response = _json({"error": "not_found" if isinstance(exc, NotFound) else "bad_request"}, status)
        except SandboxDeclined as exc:
            response = _json({"error": exc.code, "message": exc.message}, 409)
        except (ValueError, TypeError, KeyError) as exc:
            response = _json({"error": "bad_request", "message": str(exc)}, 400)
        result: Iterable[bytes] = response(environ, start_response)
        return result

    # --- wire format -----------------------------------------------------------------------------

    def _signed(self, key: str, inner: Mapping[str, Any]) -> Response:
        text = json.dumps(inner, ensure_ascii=False, separators=(",", ":"))
        sign = rsa2_sign(self._alipay_private_key, text)
        return _gateway_text(f'{{"{key}":{text},"sign":"{sign}"}}')

    def _reply(self, method: str, inner: Mapping[str, Any]) -> Response:
        return self._signed(method.replace(".", "_") + "_response", inner)

    def _error(self, error: _GatewayError) -> Response:
        if error.signed:
            return self._signed("error_response", error.body)
        text = json.dumps({"error_response": error.body}, ensure_ascii=False, separators=(",", ":"))
        return _gateway_text(text)

    def _check_request(self, request: Request) -> dict[str, str]:
        params: dict[str, str] = {}
        for key, values in request.args.lists():
            if len(values) != 1:
                raise _GatewayError(
                    "40002", "Invalid Arguments", "isv.invalid-parameter", f"重复的参数 {key}"
                )
            params[key] = values[0]
        for key, name in (
            ("app_id", "app-id"),
            ("method", "method"),
            ("sign_type", "signature-type"),
            ("sign", "signature"),
            ("timestamp", "timestamp"),
            ("version", "version"),
        ):
            if not params.get(key):
                raise _GatewayError(
                    "40001", "Missing Required Arguments", f"isv.missing-{name}", f"缺少{key}参数"
                )
        if params["app_id"] != self.app_id:
            raise _GatewayError("40002", "Invalid Arguments", "isv.invalid-app-id", "无效的AppID参数")
        if params["sign_type"] != "RSA2":
            raise _GatewayError("40002", "Invalid Arguments", "isv.invalid-signature-type", "无效的签名类型")
        if params.get("charset", "utf-8").lower() != "utf-8":
            raise _GatewayError("40002", "Invalid Arguments", "isv.invalid-charset", "字符集错误")
        unsigned = {k: v for k, v in params.items() if k != "sign"}
        if not rsa2_verify(self._app_public_key, sign_content(unsigned), params["sign"]):
            raise _GatewayError(
                "40002",
                "Invalid Arguments",
                "isv.invalid-signature",
                "验签出错，建议检查签名字符串或签名私钥与应用公钥是否匹配",
            )
        try:
            skew = abs(parse_china_time(params["timestamp"]) - time.time())
        except ValueError:
            skew = None
        if skew is None or skew > TIMESTAMP_WINDOW_S:
            raise _GatewayError("40002", "Invalid Arguments", "isv.invalid-timestamp", "非法的时间戳参数")
        if params["version"] != "1.0":
            raise _GatewayError("40002", "Invalid Arguments", "isv.invalid-version", "版本号错误")
        if params["method"] not in self._handlers:
            raise _GatewayError("40002", "Invalid Arguments", "isv.invalid-method", "不存在的方法名")
        return params

    def _gateway(self, request: Request) -> Response:
        try:
            params = self._check_request(request)
            try:
                biz = json.loads(params.get("biz_content") or "{}")
            except ValueError:
                biz = None
            if not isinstance(biz, dict):
                raise _GatewayError(
                    "40002", "Invalid Arguments", "isv.invalid-parameter", "biz_content 不是 JSON 对象"
                )
        except _GatewayError as error:
            return self._error(error)
        method = params["method"]
        endpoint = METHOD_ENDPOINTS[method]
        self.ledger.record_call(endpoint, str(biz.get("out_trade_no") or biz.get("trade_no") or ""))
        fault = self.ledger.take_fault(endpoint)
        handler = self._handlers[method]

        def run() -> Response:
            try:
                return self._reply(method, handler(params, biz, request, fault))
            except _GatewayError as error:
                return self._error(error)

        if fault is None:
            return run()
        if fault.kind == "retry" and method == "alipay.trade.cancel":
            return self._reply(
                method, _success(out_trade_no=str(biz.get("out_trade_no", "")), retry_flag="Y")
            )
        if fault.kind == "timeout":
            response = run() if fault.apply else None
            time.sleep(fault.delay_s or self.stall_s)  # the client has given up by now
            return response if response is not None else Response("", status=504)
        if fault.kind == "corrupt" and method != "alipay.data.dataservice.bill.downloadurl.query":
            if fault.apply:
                run()
            return _gateway_text('{"' + method.replace(".", "_") + '_response":{"code":"100')
        if fault.kind == "corrupt":  # the bill handler serves a broken zip
            return run()
        applied = run() if fault.apply else None
        if fault.kind == "http_500":
            return Response("<html><body>500 Internal Server Error</body></html>", status=500)
        if fault.kind == "bad_signature":
            body = applied.get_data(as_text=True) if applied is not None else ""
            if '"sign":"' not in body:
                body = json.dumps({method.replace(".", "_") + "_response": _success(), "sign": ""})
            head, _, tail = body.rpartition('"sign":"')
            forged = rsa2_sign(self._alipay_private_key, "forged " + secrets.token_hex(4))
            return _gateway_text(head + '"sign":"' + forged + tail[tail.index('"') :])
        # system_error (and "retry" on anything but cancel): Alipay's "outcome unknown" answer
        return self._reply(
            method,
            {
                "code": "20000",
                "msg": "Service Currently Unavailable",
                "sub_code": "isp.unknow-error",
                "sub_msg": "系统繁忙",
            },
        )

    # --- helpers over the ledger -----------------------------------------------------------------

    def _expiry(self, biz: Mapping[str, Any]) -> float | None:
        if biz.get("time_expire"):
            try:
                return parse_china_time(str(biz["time_expire"]))
            except ValueError:
                raise _GatewayError(
                    "40002", "Invalid Arguments", "isv.invalid-parameter", "time_expire 格式错误"
                ) from None
        express = str(biz.get("timeout_express") or "")
        units = {"m": 60, "h": 3600, "d": 86400}
        if express[:-1].isdigit() and express[-1:] in units:
            return time.time() + int(express[:-1]) * units[express[-1]]
        if express == "1c":  # until the end of the day (China time)
            today = datetime.fromtimestamp(time.time(), CHINA).date()
            return datetime.combine(today + timedelta(days=1), datetime.min.time(), CHINA).timestamp()
        return None

    @staticmethod
    def _amount(biz: Mapping[str, Any], key: str) -> int:
        try:
            return yuan_to_fen(str(biz[key]))
        except (KeyError, ValueError):
            raise _GatewayError(
                "40002", "Invalid Arguments", "isv.invalid-parameter", f"{key} 无效"
            ) from None

    def _find(self, biz: Mapping[str, Any], *, include_unscanned: bool = False) -> SimTrade | None:
        out_trade_no = str(biz.get("out_trade_no") or "")
        if not out_trade_no and biz.get("trade_no"):
            with self.ledger.lock:
                out_trade_no = next(
                    (
                        t.out_trade_no
                        for t in self.ledger.trades.values()
                        if t.provider_trade_no == biz["trade_no"]
                    ),
                    "",
                )
        if not out_trade_no:
            return None
        if include_unscanned:
            return self.ledger.lookup(out_trade_no)
        return self.ledger.query(out_trade_no)

    @staticmethod
    def _succeeded_refund_fen(trade: SimTrade, until: float | None = None) -> int:
        return sum(
            r.amount_fen
            for r in trade.refunds.values()
            if r.state is RefundState.SUCCEEDED and (until is None or (r.succeeded_at or 0) <= until)
        )

    def _trade_status(self, trade: SimTrade) -> str:
        if trade.state in (TradeState.PENDING, TradeState.PAYING):
            return "WAIT_BUYER_PAY"
        if trade.state is TradeState.PAID:
            return (
                "TRADE_CLOSED" if self._succeeded_refund_fen(trade) >= trade.amount_fen else "TRADE_SUCCESS"
            )
        return "TRADE_CLOSED"

    def _paid_fields(self, trade: SimTrade) -> dict[str, Any]:
        amount = _yuan(trade.amount_fen)
        paid = trade.paid_at is not None
        fields: dict[str, Any] = {
            "out_trade_no": trade.out_trade_no,
            "trade_no": trade.provider_trade_no,
            "total_amount": amount,
            "receipt_amount": amount if paid else "0.00",
            "buyer_pay_amount": amount if paid else "0.00",
            "invoice_amount": amount if paid else "0.00",
            "point_amount": "0.00",
        }
        if trade.payer:
            fields["buyer_user_id"] = trade.payer
            fields["buyer_logon_id"] = _masked_logon(trade.payer)
        if trade.paid_at is not None:
            fields["gmt_payment"] = china_time(trade.paid_at)
            fields["fund_bill_list"] = [{"amount": amount, "fund_channel": "ALIPAYACCOUNT"}]
        return fields

    # --- gateway methods (params, biz_content, request, fault) -> inner reply ----------------------

    def _precreate(
        self, params: dict[str, str], biz: dict[str, Any], _r: Request, _f: Fault | None
    ) -> dict[str, Any]:
        out_trade_no = str(biz.get("out_trade_no") or "")
        if not out_trade_no:
            return _business_failure("ACQ.INVALID_PARAMETER", "参数无效: out_trade_no")
        amount = self._amount(biz, "total_amount")
        reference = "https://qr.alipay.com/bax" + "".join(
            secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(20)
        )
        try:
            trade = self.ledger.create_trade(
                out_trade_no=out_trade_no,
                amount_fen=amount,
                mode=PayMode.MERCHANT_QR,
                subject=str(biz.get("subject") or ""),
                notify_url=params.get("notify_url") or None,
                expires_at=self._expiry(biz),
                reference=reference,
            )
        except SandboxDeclined as exc:
            return _declined(exc, out_trade_no=out_trade_no)
        return _success(out_trade_no=out_trade_no, qr_code=trade.reference)

    def _pay(
        self, params: dict[str, str], biz: dict[str, Any], _r: Request, _f: Fault | None
    ) -> dict[str, Any]:
        out_trade_no = str(biz.get("out_trade_no") or "")
        auth_code = str(biz.get("auth_code") or "")
        if not out_trade_no or not auth_code or biz.get("scene") not in ("bar_code", "wave_code"):
            return _business_failure("ACQ.INVALID_PARAMETER", "参数无效: out_trade_no/auth_code/scene")
        amount = self._amount(biz, "total_amount")
        existing = self.ledger.lookup(out_trade_no)
        if existing is not None:  # a repeat of the same request answers the trade's current state
            if existing.mode is not PayMode.PAYER_CODE or existing.amount_fen != amount:
                return _declined(SandboxDeclined("trade_exists"), out_trade_no=out_trade_no)
            if existing.state is TradeState.PAID:
                return _declined(SandboxDeclined("trade_paid"), out_trade_no=out_trade_no)
            if existing.state is TradeState.PAYING:
                return self._paying_reply(existing)
            return _declined(SandboxDeclined("trade_closed"), out_trade_no=out_trade_no)
        try:
            trade = self.ledger.pay_with_code(
                out_trade_no=out_trade_no,
                amount_fen=amount,
                subject=str(biz.get("subject") or ""),
                auth_code=auth_code,
                notify_url=params.get("notify_url") or None,
            )
        except SandboxDeclined as exc:
            return _declined(exc, out_trade_no=out_trade_no)
        if trade.state is TradeState.PAID:
            return _success(**self._paid_fields(trade))
        return self._paying_reply(trade)

    def _paying_reply(self, trade: SimTrade) -> dict[str, Any]:
        return {"code": "10003", "msg": "order success pay inprocess", **self._paid_fields(trade)}

    def _create(
        self, params: dict[str, str], biz: dict[str, Any], _r: Request, _f: Fault | None
    ) -> dict[str, Any]:
        out_trade_no = str(biz.get("out_trade_no") or "")
        buyer = str(biz.get("buyer_id") or biz.get("buyer_open_id") or "")
        if not out_trade_no:
            return _business_failure("ACQ.INVALID_PARAMETER", "参数无效: out_trade_no")
        if not buyer:
            return _business_failure("ACQ.INVALID_PARAMETER", "buyer_id 与 buyer_open_id 不能同时为空")
        amount = self._amount(biz, "total_amount")
        with self.ledger.lock:
            self.ledger.new_payer(payer_id=buyer)
            try:
                trade = self.ledger.create_trade(
                    out_trade_no=out_trade_no,
                    amount_fen=amount,
                    mode=PayMode.JSAPI,
                    subject=str(biz.get("subject") or ""),
                    notify_url=params.get("notify_url") or None,
                    expires_at=self._expiry(biz),
                    payer=buyer,
                )
            except SandboxDeclined as exc:
                return _declined(exc, out_trade_no=out_trade_no)
            if trade.reference != trade.provider_trade_no:  # the wallet pays the trade_no itself
                self.ledger.by_reference.pop(trade.reference, None)
                trade.reference = trade.provider_trade_no
                self.ledger.by_reference[trade.reference] = trade.out_trade_no
        return _success(out_trade_no=out_trade_no, trade_no=trade.provider_trade_no)

    def _query(
        self, _p: dict[str, str], biz: dict[str, Any], _r: Request, _f: Fault | None
    ) -> dict[str, Any]:
        trade = self._find(biz)
        if trade is None:
            return _declined(SandboxDeclined("trade_not_found"))
        with self.ledger.lock:
            fields = self._paid_fields(trade)
            fields.pop("gmt_payment", None)
            if trade.paid_at is not None:
                fields["send_pay_date"] = china_time(trade.paid_at)
            return _success(trade_status=self._trade_status(trade), **fields)

    def _close(
        self, _p: dict[str, str], biz: dict[str, Any], _r: Request, _f: Fault | None
    ) -> dict[str, Any]:
        trade = self._find(biz)  # an unscanned precreate does not exist yet: nothing is closed
        if trade is None:
            return _declined(SandboxDeclined("trade_not_found"))
        ids = {"out_trade_no": trade.out_trade_no, "trade_no": trade.provider_trade_no}
        if trade.state in (TradeState.CLOSED, TradeState.REVERSED):
            return _success(**ids)
        try:
            self.ledger.close(trade.out_trade_no)
        except SandboxDeclined as exc:
            return _declined(exc, **ids)
        return _success(**ids)

    def _cancel(
        self, _p: dict[str, str], biz: dict[str, Any], _r: Request, _f: Fault | None
    ) -> dict[str, Any]:
        trade = self._find(biz)
        if trade is None:
            return _declined(SandboxDeclined("trade_not_found"))
        ids = {"out_trade_no": trade.out_trade_no, "trade_no": trade.provider_trade_no}
        with self.ledger.lock:
            if trade.state is TradeState.REVERSED and "cancel_action" in trade.extra:
                return _success(retry_flag="N", action=trade.extra["cancel_action"], **ids)
            if time.time() - trade.created_at > CANCEL_WINDOW_S:
                return _business_failure("ACQ.TRADE_CANCEL_TIME_OUT", "超过撤销时间范围", **ids)
            try:
                _, refunded = self.ledger.reverse(trade.out_trade_no)
            except SandboxDeclined as exc:
                return _declined(exc, **ids)
            action = "refund" if refunded else "close"
            trade.extra["cancel_action"] = action
            trade.extra["cancelled_at"] = time.time()
        fields: dict[str, Any] = {"retry_flag": "N", "action": action, **ids}
        if refunded:
            fields["gmt_refund_pay"] = china_time(trade.extra["cancelled_at"])
        return _success(**fields)

    def _refund(
        self, _p: dict[str, str], biz: dict[str, Any], _r: Request, _f: Fault | None
    ) -> dict[str, Any]:
        trade = self._find(biz)
        if trade is None:
            return _declined(SandboxDeclined("trade_not_found"))
        amount = self._amount(biz, "refund_amount")
        out_request_no = str(biz.get("out_request_no") or trade.out_trade_no)
        ids = {"out_trade_no": trade.out_trade_no, "trade_no": trade.provider_trade_no}
        try:
            refund = self.ledger.refund(
                out_trade_no=trade.out_trade_no, out_refund_no=out_request_no, amount_fen=amount
            )
        except SandboxDeclined as exc:
            return _declined(exc, **ids)
        with self.ledger.lock:
            fields: dict[str, Any] = {
                **ids,
                "buyer_user_id": trade.payer or "",
                "buyer_logon_id": _masked_logon(trade.payer or ""),
                "fund_change": "Y" if refund.state is RefundState.SUCCEEDED else "N",
                "refund_fee": _yuan(trade.refunded_fen),
                "send_back_fee": _yuan(refund.amount_fen if refund.state is RefundState.SUCCEEDED else 0),
            }
            if refund.succeeded_at is not None:
                fields["gmt_refund_pay"] = china_time(refund.succeeded_at)
        return _success(**fields)

    def _refund_query(
        self, _p: dict[str, str], biz: dict[str, Any], _r: Request, _f: Fault | None
    ) -> dict[str, Any]:
        trade = self._find(biz)
        if trade is None:
            return _declined(SandboxDeclined("trade_not_found"))
        refund = self.ledger.query_refund(trade.out_trade_no, str(biz.get("out_request_no") or ""))
        if refund is None or refund.state is not RefundState.SUCCEEDED:
            return _success()  # "no data": not received, not done yet, or failed
        return _success(
            out_trade_no=trade.out_trade_no,
            trade_no=trade.provider_trade_no,
            out_request_no=refund.out_refund_no,
            total_amount=_yuan(trade.amount_fen),
            refund_amount=_yuan(refund.amount_fen),
            refund_status="REFUND_SUCCESS",
            gmt_refund_pay=china_time(refund.succeeded_at or refund.created_at),
        )

    def _bill_url(
        self, _p: dict[str, str], biz: dict[str, Any], request: Request, fault: Fault | None
    ) -> dict[str, Any]:
        not_exist = _business_failure("isp.bill_not_exist", "账单不存在")
        if biz.get("bill_type") != "trade":
            return not_exist
        try:
            bill_date = date.fromisoformat(str(biz.get("bill_date") or ""))
        except ValueError:
            return not_exist
        if bill_date > datetime.fromtimestamp(time.time(), CHINA).date():
            return not_exist  # (Alipay publishes a day's bill at T+1 ~09:00; the sandbox serves today's too)
        content = self.bill_zip(bill_date)
        if content is None:
            return not_exist
        if fault is not None and fault.kind == "corrupt":
            content = content[: len(content) // 2] + b"\x00garbage" + content[-10:]
        token = secrets.token_urlsafe(16)
        with self.ledger.lock:
            self._bills[token] = _Bill(content, time.time())
        query = urllib.parse.urlencode({"bill_file_code": token, "bizType": "trade", "fileType": "csv.zip"})
        return _success(bill_download_url=f"{request.host_url}downloadBillFile.resource?{query}")

    def _oauth_token(
        self, params: dict[str, str], _b: dict[str, Any], _r: Request, _f: Fault | None
    ) -> dict[str, Any]:
        if params.get("grant_type") != "authorization_code":
            raise _GatewayError(
                "40002", "Invalid Arguments", "isv.grant-type-invalid", "grant_type 无效", signed=True
            )
        with self.ledger.lock:
            code = self._oauth_codes.pop(params.get("code") or "", None)
        if code is None or code.expires_at < time.time():
            raise _GatewayError(
                "40002", "Invalid Arguments", "isv.code-invalid", "授权码code无效", signed=True
            )
        return {
            "access_token": "authusrB" + secrets.token_hex(16),
            "alipay_user_id": code.payer,
            "expires_in": 1296000,
            "re_expires_in": 2592000,
            "refresh_token": "authusrB" + secrets.token_hex(16),
            "user_id": code.payer,
        }

    # --- bills ---------------------------------------------------------------------------------

    def bill_rows(self, bill_date: date) -> list[list[str]]:
        """The trade-bill lines of one China day (payments and refunds), `ledger.bill_overrides` applied."""
        start = datetime.combine(bill_date, datetime.min.time(), CHINA).timestamp()
        end = start + 86400
        rows: list[list[str]] = []
        overrides = self.ledger.bill_overrides
        with self.ledger.lock:
            self.ledger.advance()
            events: list[tuple[float, str, SimTrade, SimRefund | None, int]] = []
            for trade in self.ledger.trades.values():
                if trade.paid_at is not None and start <= trade.paid_at < end:
                    events.append((trade.paid_at, "交易", trade, None, trade.amount_fen))
                for item in trade.refunds.values():
                    at = item.succeeded_at
                    if item.state is RefundState.SUCCEEDED and at is not None and start <= at < end:
                        events.append((at, "退款", trade, item, item.amount_fen))
                cancelled_at = _seconds(trade.extra.get("cancelled_at", 0))
                if trade.extra.get("cancel_action") == "refund" and start <= cancelled_at < end:
                    events.append((cancelled_at, "退款", trade, None, trade.amount_fen))
            for at, kind, trade, refund, amount in sorted(events, key=lambda e: e[0]):
                key = refund.out_refund_no if refund is not None else trade.out_trade_no
                override = overrides.get(key, {}) if (kind == "交易" or refund is not None) else {}
                if override.get("omit"):
                    continue
                amount = int(override.get("amount_fen", amount))
                kind = str(override.get("state", kind))
                created = refund.created_at if refund is not None else trade.created_at
                fee = (trade.amount_fen * FEE_PER_MILLE + 500) // 1000 if kind == "交易" else 0
                row = {name: ("0.00" if name.endswith("（元）") else "") for name in BILL_HEADER}
                row.update(
                    {
                        "支付宝交易号": trade.provider_trade_no + "\t",
                        "商户订单号": trade.out_trade_no + "\t",
                        "业务类型": kind,
                        "商品名称": trade.subject,
                        "创建时间": china_time(created),
                        "完成时间": china_time(at),
                        "对方账户": _masked_logon(trade.payer or ""),
                        "订单金额（元）": _yuan(trade.amount_fen if kind == "退款" else amount),
                        "商家实收（元）": f"-{_yuan(amount)}" if kind == "退款" else _yuan(amount),
                        "券名称": "",
                        "退款批次号/请求号": (refund.out_refund_no + "\t") if refund is not None else "",
                        "服务费（元）": f"-{_yuan(fee)}" if kind == "交易" else "0.00",
                    }
                )
                rows.append([row[name] for name in BILL_HEADER])
        return rows

    def bill_zip(self, bill_date: date) -> bytes | None:
        """The ZIP Alipay would serve for that day, or None when it has no trade (BILL_NOT_EXIST)."""
        rows = self.bill_rows(bill_date)
        if not rows:
            return None
        day = bill_date.strftime("%Y年%m月%d日")
        next_day = (bill_date + timedelta(days=1)).strftime("%Y年%m月%d日")
        exported = datetime.fromtimestamp(time.time(), CHINA).strftime("%Y年%m月%d日 %H:%M:%S")
        refunds = sum(1 for row in rows if row[2] == "退款")
        detail = io.StringIO()
        writer = csv.writer(detail, lineterminator="\r\n")
        detail.write("#支付宝业务明细查询\r\n")
        detail.write(f"#账号：[{self.seller_id}0156]\r\n")
        detail.write(f"#起始日期：[{day} 00:00:00]   终止日期：[{next_day} 00:00:00]\r\n")
        detail.write(BILL_DETAIL_START + "\r\n")
        writer.writerow(BILL_HEADER)
        writer.writerows(rows)
        detail.write(BILL_DETAIL_END + "\r\n")
        detail.write(f"#交易合计：{len(rows) - refunds}笔，退款合计：{refunds}笔\r\n")
        detail.write(f"#导出时间：[{exported}]\r\n")
        summary = io.StringIO()
        summary.write("#支付宝业务汇总查询\r\n")
        summary.write(f"#账号：[{self.seller_id}0156]\r\n")
        summary.write(f"#起始日期：[{day} 00:00:00]   终止日期：[{next_day} 00:00:00]\r\n")
        summary.write(
            "#-----------------------------------------业务汇总列表----------------------------------------\r\n"
        )
        summary_writer = csv.writer(summary, lineterminator="\r\n")
        summary_writer.writerow(
            ["门店编号", "门店名称", "交易订单总笔数", "退款订单总笔数", "订单金额（元）", "商家实收（元）"]
        )
        total = sum(yuan_to_fen(row[12].lstrip("-")) * (-1 if row[12].startswith("-") else 1) for row in rows)
        paid = sum(yuan_to_fen(row[11]) for row in rows if row[2] != "退款")
        sign = "-" if total < 0 else ""
        summary_writer.writerow(
            ["合计", "", len(rows) - refunds, refunds, _yuan(paid), sign + _yuan(abs(total))]
        )
        summary.write(
            "#-----------------------------------------业务汇总列表结束------------------------------------\r\n"
        )
        summary.write(f"#导出时间：[{exported}]\r\n")
        stamp = bill_date.strftime("%Y%m%d")
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(f"{self.seller_id}_{stamp}_业务明细.csv", detail.getvalue().encode("gbk"))
            archive.writestr(f"{self.seller_id}_{stamp}_业务明细(汇总).csv", summary.getvalue().encode("gbk"))
        return buffer.getvalue()

    def _bill_file(self, request: Request) -> Response:
        token = request.args.get("bill_file_code", "")
        with self.ledger.lock:
            bill = self._bills.get(token)
        if bill is None or time.time() - bill.created_at > BILL_URL_TTL_S:
            return Response("<error>file not exist or expired</error>", status=404, content_type="text/xml")
        return Response(bill.content, content_type="application/zip")

    # --- notifications -------------------------------------------------------------------------

    def deliver_due(self, transport: Callable[[str, bytes], tuple[int, bytes]] | None = None) -> int:
        """Send every due notification (Alipay's retry schedule); only the body `success` acknowledges.
        Returns how many deliveries were attempted."""
        with self.ledger.lock:
            self.ledger.advance()
            for notice in self.ledger.notices:  # Alipay only notifies refunds that went through
                if notice.kind == "refund" and not notice.acknowledged:
                    trade = self.ledger.trades.get(notice.out_trade_no)
                    refund = trade.refunds.get(notice.out_refund_no or "") if trade else None
                    if refund is None or refund.state is not RefundState.SUCCEEDED:
                        notice.acknowledged = True
        return self.ledger.deliver_due(NOTIFY_SCHEDULE, self.render_notice, transport or post_form, _is_ack)

    def render_notice(self, notice: Notice) -> bytes:
        """The signed form body of one notice (same notify_id on every retry)."""
        with self.ledger.lock:
            cached = self._notice_fields.get(id(notice))
            if cached is None:
                cached = (notice, self._notice_snapshot(notice))
                self._notice_fields[id(notice)] = cached
            fields = dict(cached[1], notify_time=china_time(time.time()))
        fields = {k: v for k, v in fields.items() if v != ""}
        fields["sign"] = rsa2_sign(self._alipay_private_key, sign_content(fields))
        fields["sign_type"] = "RSA2"
        return urllib.parse.urlencode(fields).encode("ascii")

    def _notice_snapshot(self, notice: Notice) -> dict[str, str]:
        trade = self.ledger.trades[notice.out_trade_no]
        amount = _yuan(trade.amount_fen)
        paid_at = trade.paid_at or trade.created_at
        fields = {
            "notify_type": "trade_status_sync",
            "notify_id": secrets.token_hex(17)[:34],
            "app_id": self.app_id,
            "auth_app_id": self.app_id,
            "charset": "utf-8",
            "version": "1.0",
            "trade_no": trade.provider_trade_no,
            "out_trade_no": trade.out_trade_no,
            "buyer_id": trade.payer or "",
            "buyer_logon_id": _masked_logon(trade.payer or ""),
            "seller_id": self.seller_id,
            "trade_status": "TRADE_SUCCESS",
            "total_amount": amount,
            "receipt_amount": amount,
            "invoice_amount": amount,
            "buyer_pay_amount": amount,
            "point_amount": "0.00",
            "subject": trade.subject,
            "gmt_create": china_time(trade.created_at),
            "gmt_payment": china_time(paid_at),
            "fund_bill_list": json.dumps(
                [{"amount": amount, "fundChannel": "ALIPAYACCOUNT"}], separators=(",", ":")
            ),
        }
        if notice.kind == "refund" and notice.out_refund_no:
            refund = trade.refunds[notice.out_refund_no]
            refunded = self._succeeded_refund_fen(trade, until=refund.succeeded_at)
            refunded_at = refund.succeeded_at or time.time()
            fields["out_biz_no"] = refund.out_refund_no
            fields["refund_fee"] = _yuan(refunded)
            fields["gmt_refund"] = datetime.fromtimestamp(refunded_at, CHINA).strftime(
                "%Y-%m-%d %H:%M:%S.%f"
            )[:-3]
            if refunded >= trade.amount_fen:
                fields["trade_status"] = "TRADE_CLOSED"
                fields["gmt_close"] = china_time(refunded_at)
        elif notice.kind == "closed":
            fields["trade_status"] = "TRADE_CLOSED"
            fields["gmt_close"] = china_time(time.time())
            for key in (
                "gmt_payment",
                "fund_bill_list",
                "receipt_amount",
                "invoice_amount",
                "buyer_pay_amount",
            ):
                fields.pop(key)
        return fields

    # --- control API ---------------------------------------------------------------------------

    def new_payer(self, *, balance_fen: int = 10_000_000, payer_id: str | None = None) -> str:
        """A payer with an Alipay-shaped user id (2088 + 12 digits)."""
        pid = payer_id or "2088" + "".join(secrets.choice("0123456789") for _ in range(12))
        return self.ledger.new_payer(balance_fen=balance_fen, payer_id=pid)

    def payer_code(self, payer: str, *, behaviour: str = "pay", pay_after_s: float = 0) -> str:
        if behaviour not in ("pay", "never", "decline"):
            raise ValueError("behaviour must be pay, never or decline")
        return self.ledger.payer_code(payer, behaviour=behaviour, pay_after_s=pay_after_s, prefix="28")  # type: ignore[arg-type]

    def oauth_code(self, payer: str) -> str:
        """An auth_code the H5 page would receive after the payer consents (one use, 3 minutes)."""
        self.ledger.new_payer(payer_id=payer)
        code = secrets.token_hex(16)
        with self.ledger.lock:
            self._oauth_codes[code] = _OAuthCode(payer, time.time() + OAUTH_CODE_TTL_S)
        return code

    def reset(self) -> None:
        with self.ledger.lock:
            self.ledger.reset()
            self._bills.clear()
            self._oauth_codes.clear()
            self._notice_fields.clear()

    def _control_payers(self, request: Request) -> Response:
        data = _body(request)
        payer = self.new_payer(
            balance_fen=int(data.get("balance_fen", 10_000_000)), payer_id=data.get("payer_id")
        )
        return _json({"payer_id": payer}, 201)

    def _control_payer(self, _request: Request, payer_id: str) -> Response:
        with self.ledger.lock:
            payer = self.ledger.payers.get(payer_id)
            if payer is None:
                raise NotFound()
            return _json(
                {"payer_id": payer.id, "balance_fen": payer.balance_fen, "charged_fen": payer.charged_fen}
            )

    def _control_payer_codes(self, request: Request) -> Response:
        data = _body(request)
        code = self.payer_code(
            str(data["payer_id"]),
            behaviour=str(data.get("behaviour", "pay")),
            pay_after_s=_seconds(data.get("pay_after_s", 0)),
        )
        return _json({"code": code}, 201)

    def _control_scan(self, request: Request) -> Response:
        data = _body(request)
        trade = self.ledger.scan(
            str(data["qr_code"]), str(data["payer_id"]), pay_after_s=_seconds(data.get("pay_after_s", 0))
        )
        return _json(self._trade_json(trade))

    def _control_jsapi_pay(self, request: Request) -> Response:
        data = _body(request)
        payer = data.get("payer_id")
        trade = self.ledger.pay_jsapi(str(data["trade_no"]), str(payer) if payer else None)
        return _json(self._trade_json(trade))

    def _control_oauth_codes(self, request: Request) -> Response:
        data = _body(request)
        return _json(
            {"auth_code": self.oauth_code(str(data["payer_id"])), "expires_in": int(OAUTH_CODE_TTL_S)}, 201
        )

    def _control_faults(self, request: Request) -> Response:
        data = _body(request)
        endpoint, kind = str(data["endpoint"]), str(data["kind"])
        if endpoint not in get_args(Endpoint) or kind not in get_args(FaultKind):
            raise ValueError(
                f"endpoint must be one of {get_args(Endpoint)}, kind one of {get_args(FaultKind)}"
            )
        times = int(data.get("times", 1))
        self.ledger.fail_next(
            cast(Endpoint, endpoint),
            cast(FaultKind, kind),
            times=times,
            apply=bool(data.get("apply", True)),
            delay_s=_seconds(data.get("delay_s", 0)),
        )
        return _json({"endpoint": endpoint, "kind": kind, "times": times}, 201)

    def _control_notify_mode(self, request: Request) -> Response:
        mode = str(_body(request)["mode"])
        if mode not in ("normal", "drop", "duplicate"):
            raise ValueError("mode must be normal, drop or duplicate")
        with self.ledger.lock:
            self.ledger.notify_mode = mode  # type: ignore[assignment]
        return _json({"mode": mode})

    def _control_deliver(self, _request: Request) -> Response:
        return _json({"delivered": self.deliver_due()})

    def _control_reset(self, _request: Request) -> Response:
        self.reset()
        return _json({"reset": True})

    def _control_trades(self, _request: Request) -> Response:
        with self.ledger.lock:
            self.ledger.advance()
            trades = [self._trade_json(t) for t in self.ledger.trades.values()]
        return _json({"trades": trades})

    def _trade_json(self, trade: SimTrade) -> dict[str, Any]:
        with self.ledger.lock:
            return {
                "out_trade_no": trade.out_trade_no,
                "trade_no": trade.provider_trade_no,
                "mode": str(trade.mode),
                "state": str(trade.state),
                "trade_status": self._trade_status(trade),
                "amount_fen": trade.amount_fen,
                "subject": trade.subject,
                "reference": trade.reference,
                "payer_id": trade.payer,
                "scanned": trade.scanned,
                "paid_at": china_time(trade.paid_at) if trade.paid_at is not None else None,
                "refunds": [
                    {"out_request_no": r.out_refund_no, "amount_fen": r.amount_fen, "state": str(r.state)}
                    for r in trade.refunds.values()
                ],
            }


def _seconds(value: object) -> float:
    """A JSON number of seconds (no float() on this path: the money-path lint forbids it)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"a non-negative number of seconds is expected, got {value!r}")
    return value


def _is_ack(status: int, body: bytes) -> bool:
    return status == 200 and body.strip() == b"success"


def _json(body: Mapping[str, Any], status: int = 200) -> Response:
    return Response(json.dumps(body, ensure_ascii=False), status=status, content_type="application/json")


def _gateway_text(text: str) -> Response:
    return Response(text.encode("utf-8"), content_type="text/html;charset=utf-8")


def _body(request: Request) -> dict[str, Any]:
    data = request.get_json(force=True, silent=True)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError("a JSON object is expected")
    return data


# --- demo ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Loopback emulator of the Alipay OpenAPI gateway (RSA2)")
    parser.add_argument("--port", type=int, default=8791)
    parser.add_argument("--keys-dir", default=".sandbox/alipay", help="where generated test keys are kept")
    parser.add_argument("--app-id", default="2021000000000001")
    parser.add_argument("--seller-id", default="2088000000000001")
    args = parser.parse_args(argv)
    app_keys = cached_key_pair(args.keys_dir, "app")
    alipay_keys = cached_key_pair(args.keys_dir, "alipay")
    Path(args.keys_dir, "alipay_public.pem").write_text(alipay_keys.public_pem, "ascii")
    sandbox = AlipaySandbox(
        app_id=args.app_id,
        seller_id=args.seller_id,
        app_public_key_pem=app_keys.public_pem,
        alipay_private_key_pem=alipay_keys.private_pem,
    )
    running = serve(sandbox, port=args.port)
    sys.stdout.write(
        f"Alipay gateway emulator on http://{LOOPBACK}:{running.server.server_port}/gateway.do\n"
        f"app_id={args.app_id} seller_id={args.seller_id}\n"
        f"app private key: {Path(args.keys_dir, 'app.pem')}\n"
        f"alipay public key: {Path(args.keys_dir, 'alipay_public.pem')}\n"
    )
    sys.stdout.flush()
    try:
        while True:
            time.sleep(0.5)  # float-ok: seconds
            sandbox.deliver_due()
    except KeyboardInterrupt:
        pass
    finally:
        running.shutdown()


if __name__ == "__main__":
    main()
