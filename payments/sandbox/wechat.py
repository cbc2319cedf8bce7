"""Loopback emulator of the WeChat Pay API v2 (XML, MD5) over a `SandboxLedger`, as a WSGI app.

What wechatpy 1.8.18 calls (every request's signature, appid and mch_id are checked as WeChat does;
every reply is signed with MD5 over all its fields):

    POST /pay/unifiedorder      NATIVE -> code_url (weixin://wxpay/bizpayurl?pr=...), JSAPI -> prepay_id
    POST /pay/micropay          被扫; USERPAYING while the payer enters the password
    POST /pay/orderquery        trade_state SUCCESS/REFUND/NOTPAY/CLOSED/REVOKED/USERPAYING/PAYERROR
    POST /pay/closeorder
    POST /secapi/pay/reverse    recall=Y/N
    POST /secapi/pay/refund
    POST /pay/refundquery       refund_status_0
    POST /pay/downloadbill      the bill text (BOM, back-ticks, summary lines) or "No Bill Exist"

Control API (JSON; tests, the demo and browser tests drive the emulator over HTTP):

    POST /_emulator/payers        {"balance_fen"?, "payer_id"?}                 -> {"payer": openid}
    POST /_emulator/payer_codes   {"payer", "behaviour"?, "pay_after_s"?}        -> {"code": "13..."}
    POST /_emulator/scan          {"code_url", "payer", "pay_after_s"?}          -> trade
    POST /_emulator/jsapi_pay     {"prepay_id", "payer"?}                        -> trade
    POST /_emulator/faults        {"endpoint", "kind", "times"?, "apply"?, "delay_s"?}
    POST /_emulator/refund_scripts {"out_refund_no", "outcome"}
    POST /_emulator/notify_mode   {"mode": "normal" | "drop" | "duplicate"}
    POST /_emulator/deliver       deliver the due notifications now              -> {"sent": n}
    POST /_emulator/reset
    GET  /_emulator/trades[/<out_trade_no>], GET /_emulator/calls

Faults (`ledger.fail_next(endpoint, kind, ...)`, endpoints charge/query/close/reverse/refund/
refund_query/bill): "timeout" (apply, then stall `delay_s`), "http_500", "system_error"
(err_code SYSTEMERROR), "bad_signature" (reply signed with a wrong key), "retry" (reverse answers
recall=Y without reversing; refund answers BIZERR_NEED_RETRY), "corrupt" (a garbled body).

Several apps of one merchant (the official account and the mini-program): requests signed for the
`appid` or any of `extra_appids` are accepted. Each trade remembers the appid it was created with;
replies echo the request's appid, notifications and bill lines carry the trade's. A call about an
existing trade with another of the merchant's appids is refused (PARAM_ERROR "appid与订单不匹配",
recorded in `rejected`): WeChat does not document that case, and refusing it makes a caller that
forgets which app a trade belongs to fail loudly in tests instead of passing by accident.

Run it for a demo (binds to 127.0.0.1 only; delivers notifications every half second):

    python -m payments.sandbox.wechat --port 8791 --appid wx... --mch-id 1900000109 --api-key <32 chars> \
        [--extra-appid wx<mini-program> ...]
"""

from __future__ import annotations

import argparse
import base64
import contextvars
import hashlib
import hmac
import json
import secrets
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime, timedelta, timezone
from typing import Any
from xml.parsers import expat

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from payments.base import Channel, PayMode, RefundState, TradeState, channel_for_payer_code, fen_to_yuan
from payments.sandbox.ledger import (
    Endpoint,
    Fault,
    Notice,
    SandboxDeclined,
    SandboxLedger,
    SimRefund,
    SimTrade,
)

CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")

# WeChat re-sends an unacknowledged notification after these intervals (seconds), spec A.3.
NOTIFY_SCHEDULE: tuple[float, ...] = (15, 15, 30, 180, 1800, 1800, 1800, 1800, 3600)

SUCCESS_ACK = (
    b"<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>"
)

BILL_HEADER = (
    "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,"
    "货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,"
    "商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注"
)
BILL_SUMMARY_HEADER = (
    "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额"
)
FEE_RATE_PER_MILLE = 6  # 0.60%

# SandboxDeclined.code -> (err_code, err_code_des) as WeChat sends them.
_DECLINES: dict[str, tuple[str, str]] = {
    "insufficient_funds": ("NOTENOUGH", "余额不足"),
    "code_expired": ("AUTHCODEEXPIRE", "二维码已过期，请用户在微信上刷新后再试"),
    "code_used": ("AUTH_CODE_ERROR", "每个二维码仅限使用一次，请刷新再试"),
    "code_invalid": ("AUTH_CODE_INVALID", "请扫描微信支付授权码"),
    "trade_exists": ("OUT_TRADE_NO_USED", "商户订单号重复"),
    "trade_paid": ("ORDERPAID", "该订单已支付"),
    "trade_closed": ("ORDERCLOSED", "该订单已关闭"),
    "trade_reversed": ("ORDERREVERSED", "该订单已撤销"),
    "trade_not_found": ("ORDERNOTEXIST", "此交易订单号不存在"),
    "trade_paying": ("USERPAYING", "用户支付中"),
    "trade_not_paid": ("TRADE_STATE_ERROR", "订单状态错误"),
    "trade_refunded": ("TRADE_STATE_ERROR", "订单已发生退款，不能撤销"),
    "invalid_amount": ("PARAM_ERROR", "total_fee 参数错误"),
    "refund_exceeds": ("INVALID_REQUEST", "退款金额大于订单可退金额"),
    "refund_mismatch": ("INVALID_REQUEST", "同一退款单号的退款金额与之前请求不一致"),
    "too_many_refunds": ("ERROR", "订单已经超过可退款的最大次数"),
    "payer_mismatch": ("BUYER_MISMATCH", "支付帐号错误"),
}

# The appid of the request being handled (replies echo it); None outside a request.
_REQUEST_APPID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "wechat_request_appid", default=None
)

_TRADE_TYPES = {PayMode.MERCHANT_QR: "NATIVE", PayMode.JSAPI: "JSAPI", PayMode.PAYER_CODE: "MICROPAY"}
_REFUND_STATUS = {
    RefundState.PROCESSING: "PROCESSING",
    RefundState.SUCCEEDED: "SUCCESS",
    RefundState.FAILED: "REFUNDCLOSE",
    RefundState.ABNORMAL: "CHANGE",
}


# --- wire helpers (independent of wechatpy on purpose: the emulator cross-checks the SDK) ------------


def sign(params: Mapping[str, Any], api_key: str, sign_type: str = "MD5") -> str:
    """WeChat v2 signature: non-empty fields except `sign`, ASCII-sorted, `&key=`, MD5/HMAC, upper hex."""
    pairs = [f"{k}={params[k]}" for k in sorted(params) if k != "sign" and params[k] not in (None, "")]
    text = "&".join([*pairs, f"key={api_key}"]).encode("utf-8")
    if sign_type == "HMAC-SHA256":
        return hmac.new(api_key.encode(), text, hashlib.sha256).hexdigest().upper()
    return hashlib.md5(text).hexdigest().upper()  # noqa: S324 - WeChat Pay v2 mandates MD5


def _cdata(value: str) -> str:
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def to_xml(fields: Mapping[str, Any]) -> bytes:
    """`<xml>` with one element per field; digits bare, everything else in CDATA (as WeChat writes)."""
    parts = ["<xml>"]
    for key, value in fields.items():
        text = str(value)
        parts.append(f"<{key}>{text if text.isascii() and text.isdigit() else _cdata(text)}</{key}>")
    parts.append("</xml>")
    return "".join(parts).encode("utf-8")


def signed_xml(fields: Mapping[str, Any], api_key: str) -> bytes:
    clean = {k: str(v) for k, v in fields.items() if v is not None}
    return to_xml({**clean, "sign": sign(clean, api_key)})


class MalformedXml(ValueError):
    pass


def parse_flat_xml(body: bytes, *, root: str = "xml") -> dict[str, str]:
    """A flat `<xml><k>v</k>...</xml>` document, exact text; no DTD, no nesting, no duplicate tags."""
    result: dict[str, str] = {}
    stack: list[str] = []
    text: list[str] = []

    def start(name: str, attrs: dict[str, str]) -> None:
        if len(stack) == 0 and name != root:
            raise MalformedXml(f"root element must be <{root}>")
        if len(stack) >= 2:
            raise MalformedXml("nested element")
        if len(stack) == 1 and name in result:
            raise MalformedXml(f"duplicate element <{name}>")
        stack.append(name)
        text.clear()

    def end(name: str) -> None:
        stack.pop()
        if len(stack) == 1:
            result[name] = "".join(text)
        text.clear()

    def chars(data: str) -> None:
        if len(stack) == 2:
            text.append(data)

    def doctype(*_: Any) -> None:
        raise MalformedXml("DTD not allowed")

    parser = expat.ParserCreate("UTF-8")
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    parser.StartDoctypeDeclHandler = doctype
    parser.EntityDeclHandler = doctype
    try:
        parser.Parse(body, True)
    except expat.ExpatError as exc:
        raise MalformedXml(str(exc)) from None
    return result


def _china(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, CHINA)


def _wx_time(ts: float) -> str:
    return _china(ts).strftime("%Y%m%d%H%M%S")


def _nonce() -> str:
    return secrets.token_hex(16)


def refund_notify_key(api_key: str) -> bytes:
    """AES-256 key of the refund notification: lower-case hex MD5 of the API key (32 ASCII bytes)."""
    return hashlib.md5(api_key.encode()).hexdigest().encode()  # noqa: S324 - WeChat's scheme


def encrypt_req_info(plaintext: bytes, api_key: str) -> str:
    """req_info as WeChat sends it: AES-256-ECB, PKCS7, base64."""
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(algorithms.AES(refund_notify_key(api_key)), modes.ECB()).encryptor()  # noqa: S305
    return base64.b64encode(encryptor.update(padded) + encryptor.finalize()).decode()


def _bill_text(value: str) -> str:
    return value.replace("`", "'").replace(",", "，").replace("\r", " ").replace("\n", " ")


def _fee(amount_fen: int) -> str:
    """Fee in yuan with five decimals (0.60% of the amount, exact), e.g. 990 fen -> 0.05940."""
    return _fee_from_units(amount_fen * FEE_RATE_PER_MILLE)  # units of 1e-5 yuan


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body, ensure_ascii=False), status=status, content_type="application/json")


def trade_json(trade: SimTrade) -> dict[str, Any]:
    return {
        "out_trade_no": trade.out_trade_no,
        "transaction_id": trade.provider_trade_no,
        "amount_fen": trade.amount_fen,
        "mode": str(trade.mode),
        "state": str(trade.state),
        "payer": trade.payer,
        "reference": trade.reference,
        "appid": trade.extra.get("appid"),
        "paid_at": trade.paid_at,
        "refunds": [
            {"out_refund_no": r.out_refund_no, "amount_fen": r.amount_fen, "state": str(r.state)}
            for r in trade.refunds.values()
        ],
    }


def http_transport(url: str, body: bytes, timeout: float = 5.0) -> tuple[int, bytes]:  # float-ok: seconds
    """POST a notification (loopback URLs only: the emulator never reaches the network)."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or parsed.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise OSError(f"refusing to notify a non-loopback URL: {url}")
    request = urllib.request.Request(  # noqa: S310 - scheme and host checked above
        url, data=body, method="POST", headers={"Content-Type": "text/xml; charset=utf-8"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return int(exc.code), bytes(exc.read())


def is_success_ack(status: int, body: bytes) -> bool:
    """Only the pure SUCCESS XML acknowledges a notification (not "success", JSON or HTML)."""
    if status != 200:
        return False
    try:
        fields = parse_flat_xml(body.strip())
    except MalformedXml:
        return False
    return fields.get("return_code", "").strip() == "SUCCESS"


class _Reply(Exception):
    """Short-circuits a handler with a ready response."""

    def __init__(self, response: Response) -> None:
        super().__init__("reply")
        self.response = response


class WeChatPaySandbox:
    """The WSGI application; `ledger` may be inspected and scripted in-process as well."""

    def __init__(
        self,
        ledger: SandboxLedger | None = None,
        *,
        appid: str,
        mch_id: str,
        api_key: str,
        extra_appids: Iterable[str] = (),
    ) -> None:
        self.ledger = ledger or SandboxLedger(id_prefix="42000", payer_prefix="o")
        self.appid, self.mch_id, self.api_key = appid, mch_id, api_key
        # Every app of this merchant: the default one and e.g. the mini-program's.
        self.appids: frozenset[str] = frozenset({appid, *(a for a in extra_appids if a)})
        self.bill_bom = True  # real bills often start with a UTF-8 BOM
        self.rejected: list[tuple[str, str]] = []  # (path, reason) of requests refused before processing
        self.url_map = Map(
            [
                Rule("/pay/unifiedorder", endpoint="unifiedorder", methods=["POST"]),
                Rule("/pay/micropay", endpoint="micropay", methods=["POST"]),
                Rule("/pay/orderquery", endpoint="orderquery", methods=["POST"]),
                Rule("/pay/closeorder", endpoint="closeorder", methods=["POST"]),
                Rule("/secapi/pay/reverse", endpoint="reverse", methods=["POST"]),
                Rule("/secapi/pay/refund", endpoint="refund", methods=["POST"]),
                Rule("/pay/refundquery", endpoint="refundquery", methods=["POST"]),
                Rule("/pay/downloadbill", endpoint="downloadbill", methods=["POST"]),
                Rule("/_emulator/payers", endpoint="c_payers", methods=["POST"]),
                Rule("/_emulator/payer_codes", endpoint="c_payer_codes", methods=["POST"]),
                Rule("/_emulator/scan", endpoint="c_scan", methods=["POST"]),
                Rule("/_emulator/jsapi_pay", endpoint="c_jsapi_pay", methods=["POST"]),
                Rule("/_emulator/faults", endpoint="c_faults", methods=["POST"]),
                Rule("/_emulator/refund_scripts", endpoint="c_refund_scripts", methods=["POST"]),
                Rule("/_emulator/notify_mode", endpoint="c_notify_mode", methods=["POST"]),
                Rule("/_emulator/deliver", endpoint="c_deliver", methods=["POST"]),
                Rule("/_emulator/reset", endpoint="c_reset", methods=["POST"]),
                Rule("/_emulator/trades", endpoint="c_trades", methods=["GET"]),
                Rule("/_emulator/trades/<out_trade_no>", endpoint="c_trade", methods=["GET"]),
                Rule("/_emulator/calls", endpoint="c_calls", methods=["GET"]),
            ]
        )

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        token = _REQUEST_APPID.set(None)
        try:
            return self._handle(environ, start_response)
        finally:
            _REQUEST_APPID.reset(token)

    def _handle(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        try:
            endpoint, args = self.url_map.bind_to_environ(environ).match()
            response = getattr(self, f"_{endpoint}")(request, **args)
        except _Reply as reply:
            response = reply.response
        except HTTPException as exc:
            response = _json({"error": exc.name, "message": exc.description}, exc.code or 400)
        except SandboxDeclined as exc:
            response = _json({"error": exc.code, "message": exc.message}, 409)
        except (ValueError, TypeError, KeyError) as exc:
            response = _json({"error": "bad_request", "message": str(exc)}, 400)
        result: Iterable[bytes] = response(environ, start_response)
        return result

    # --- envelope ------------------------------------------------------------------------------

    def _xml(self, fields: Mapping[str, Any], *, key: str | None = None, status: int = 200) -> Response:
        return Response(signed_xml(fields, key or self.api_key), status=status, content_type="text/xml")

    def _return_fail(self, msg: str, **extra: str) -> Response:
        return self._xml({"return_code": "FAIL", "return_msg": msg, **extra})

    def _base(self) -> dict[str, str]:
        return {
            "return_code": "SUCCESS",
            "return_msg": "OK",
            "appid": _REQUEST_APPID.get() or self.appid,  # WeChat echoes the request's appid
            "mch_id": self.mch_id,
            "nonce_str": _nonce(),
        }

    def _ok(self, **fields: Any) -> dict[str, Any]:
        return {**self._base(), "result_code": "SUCCESS", **fields}

    def _err(self, err_code: str, des: str, **fields: Any) -> dict[str, Any]:
        return {**self._base(), "result_code": "FAIL", "err_code": err_code, "err_code_des": des, **fields}

    def _declined(self, exc: SandboxDeclined) -> dict[str, Any]:
        err_code, des = _DECLINES.get(exc.code, ("PARAM_ERROR", exc.message or exc.code))
        return self._err(err_code, des)

    def _authenticate(self, request: Request, required: tuple[str, ...] = ()) -> dict[str, str]:
        """Parse and check a request exactly as WeChat does, or reply FAIL (return_code)."""
        try:
            fields = parse_flat_xml(request.get_data())
        except MalformedXml:
            self.rejected.append((request.path, "xml"))
            raise _Reply(self._return_fail("XML格式错误")) from None
        sign_type = fields.get("sign_type") or "MD5"
        if sign_type not in ("MD5", "HMAC-SHA256"):
            self.rejected.append((request.path, "sign_type"))
            raise _Reply(self._return_fail("签名类型错误"))
        given = fields.get("sign", "")
        expected = sign(fields, self.api_key, sign_type)
        if not given or not hmac.compare_digest(given.encode(), expected.encode()):
            self.rejected.append((request.path, "signature"))
            raise _Reply(self._return_fail("签名错误"))
        if not fields.get("nonce_str"):
            self.rejected.append((request.path, "nonce_str"))
            raise _Reply(self._return_fail("缺少参数nonce_str"))
        if fields.get("mch_id") != self.mch_id:
            self.rejected.append((request.path, "mch_id"))
            raise _Reply(self._return_fail("mch_id参数错误"))
        if fields.get("appid") not in self.appids:
            self.rejected.append((request.path, "appid"))
            raise _Reply(self._return_fail("appid和mch_id不匹配"))
        _REQUEST_APPID.set(fields["appid"])
        for name in required:
            if not fields.get(name):
                self.rejected.append((request.path, f"missing {name}"))
                raise _Reply(self._return_fail(f"缺少参数{name}"))
        return fields

    def trade_appid(self, trade: SimTrade) -> str:
        """The appid a trade was created with (the default app for trades made in-process)."""
        return str(trade.extra.get("appid") or self.appid)

    def _check_trade_app(self, request: Request, fields: Mapping[str, str], out_trade_no: str) -> None:
        """Refuse a call about an existing trade made with the appid of another of our apps."""
        trade = self.ledger.lookup(out_trade_no) if out_trade_no else None
        if trade is not None and self.trade_appid(trade) != fields.get("appid"):
            self.rejected.append((request.path, "appid_of_trade"))
            raise _Reply(self._xml(self._err("PARAM_ERROR", "appid与订单不匹配")))

    def _run(
        self,
        endpoint: Endpoint,
        out_trade_no: str,
        operation: Callable[[], dict[str, Any]],
        *,
        retry: Callable[[], dict[str, Any]] | None = None,
    ) -> Response:
        """Record the call, then run `operation` under whatever fault is scripted for `endpoint`."""
        self.ledger.record_call(endpoint, out_trade_no)
        fault: Fault | None = self.ledger.take_fault(endpoint)
        if fault is None:
            return self._xml(operation())
        if fault.kind == "retry":
            return self._xml(retry() if retry else self._err("SYSTEMERROR", "系统超时"))
        fields = operation() if fault.apply else None
        if fault.kind == "timeout":
            time.sleep(fault.delay_s)
            return self._xml(fields if fields is not None else self._err("SYSTEMERROR", "系统超时"))
        if fault.kind == "http_500":
            return Response(
                "<html><body>500 Internal Server Error</body></html>", 500, content_type="text/html"
            )
        if fault.kind == "bad_signature":
            body = fields if fields is not None else self._err("SYSTEMERROR", "系统超时")
            return self._xml(body, key=self.api_key[::-1] + "x")
        if fault.kind == "corrupt":
            return Response(
                b"\x1f\x8b\x08\x00garbled\xff\xfe<xml><return_code>SUC", 200, content_type="text/plain"
            )
        return self._xml(self._err("SYSTEMERROR", "系统超时"))  # system_error

    # --- WeChat endpoints ------------------------------------------------------------------------

    def _unifiedorder(self, request: Request) -> Response:
        fields = self._authenticate(
            request, ("body", "out_trade_no", "total_fee", "spbill_create_ip", "notify_url", "trade_type")
        )
        trade_type = fields["trade_type"]
        if trade_type not in ("NATIVE", "JSAPI"):
            return self._return_fail(f"不支持的交易类型 {trade_type}")
        if trade_type == "JSAPI" and not fields.get("openid"):
            return self._return_fail("JSAPI支付必须传openid")
        if trade_type == "NATIVE" and not fields.get("product_id"):
            return self._return_fail("NATIVE支付必须传product_id")
        if not fields["total_fee"].isdigit():
            return self._return_fail("total_fee参数格式错误")
        out_trade_no = fields["out_trade_no"]
        self._check_trade_app(request, fields, out_trade_no)

        def operation() -> dict[str, Any]:
            mode = PayMode.JSAPI if trade_type == "JSAPI" else PayMode.MERCHANT_QR
            if trade_type == "JSAPI":
                reference = f"wx{_wx_time(time.time())}{secrets.token_hex(11)}"
                payer: str | None = self.ledger.new_payer(payer_id=fields["openid"])
            else:
                reference = "weixin://wxpay/bizpayurl?pr=" + secrets.token_urlsafe(6)[:7]
                payer = None
            try:
                trade = self.ledger.create_trade(
                    out_trade_no=out_trade_no,
                    amount_fen=int(fields["total_fee"]),
                    mode=mode,
                    subject=fields["body"],
                    notify_url=fields["notify_url"],
                    expires_at=_parse_wx_time(fields.get("time_expire")),
                    reference=reference,
                    payer=payer,
                    extra={
                        "attach": fields.get("attach"),
                        "product_id": fields.get("product_id"),
                        "appid": fields["appid"],
                    },
                )
            except SandboxDeclined as exc:
                return self._declined(exc)
            if trade_type == "JSAPI":
                return self._ok(trade_type="JSAPI", prepay_id=trade.reference)
            return self._ok(
                trade_type="NATIVE", prepay_id=f"wx{trade.provider_trade_no[-26:]}", code_url=trade.reference
            )

        return self._run("charge", out_trade_no, operation)

    def _micropay(self, request: Request) -> Response:
        fields = self._authenticate(
            request, ("body", "out_trade_no", "total_fee", "spbill_create_ip", "auth_code")
        )
        if not fields["total_fee"].isdigit():
            return self._return_fail("total_fee参数格式错误")
        out_trade_no = fields["out_trade_no"]
        self._check_trade_app(request, fields, out_trade_no)

        def operation() -> dict[str, Any]:
            if channel_for_payer_code(fields["auth_code"]) is not Channel.WECHAT:
                return self._declined(SandboxDeclined("code_invalid"))
            existing = self.ledger.lookup(out_trade_no)
            if existing is not None and existing.state is TradeState.REVERSED:
                return self._declined(SandboxDeclined("trade_reversed"))
            if existing is not None and existing.state is TradeState.CLOSED:
                return self._declined(SandboxDeclined("trade_closed"))
            try:
                trade = self.ledger.pay_with_code(
                    out_trade_no=out_trade_no,
                    amount_fen=int(fields["total_fee"]),
                    subject=fields["body"],
                    auth_code=fields["auth_code"],
                )
            except SandboxDeclined as exc:
                return self._declined(exc)
            trade.extra["attach"] = fields.get("attach")
            trade.extra.setdefault("appid", fields["appid"])
            if trade.state is TradeState.PAID:
                return self._ok(**self._paid_fields(trade))
            return self._err("USERPAYING", "需要用户输入支付密码")

        return self._run("charge", out_trade_no, operation)

    def _paid_fields(self, trade: SimTrade) -> dict[str, Any]:
        return {
            "openid": trade.payer,
            "is_subscribe": "N",
            "trade_type": _TRADE_TYPES[trade.mode],
            "bank_type": "OTHERS",
            "fee_type": "CNY",
            "total_fee": trade.amount_fen,
            "cash_fee_type": "CNY",
            "cash_fee": trade.amount_fen,
            "transaction_id": trade.provider_trade_no,
            "out_trade_no": trade.out_trade_no,
            "attach": trade.extra.get("attach") or None,
            "time_end": _wx_time(trade.paid_at or time.time()),
        }

    def _orderquery(self, request: Request) -> Response:
        fields = self._authenticate(request)
        out_trade_no = self._resolve_out_trade_no(fields)
        if not out_trade_no:
            return self._return_fail("缺少参数out_trade_no")
        self._check_trade_app(request, fields, out_trade_no)

        def operation() -> dict[str, Any]:
            trade = self.ledger.lookup(out_trade_no)
            if trade is None:
                return self._err("ORDERNOTEXIST", "订单不存在")
            state, desc = self._trade_state(trade)
            body: dict[str, Any] = {
                "out_trade_no": trade.out_trade_no,
                "trade_type": _TRADE_TYPES[trade.mode],
                "trade_state": state,
                "trade_state_desc": desc,
                "total_fee": trade.amount_fen,
                "fee_type": "CNY",
                "attach": trade.extra.get("attach") or None,
            }
            if trade.paid_at is not None:
                body.update(self._paid_fields(trade))
            elif trade.scanned or trade.mode is PayMode.PAYER_CODE:
                body["transaction_id"] = trade.provider_trade_no
                body["openid"] = trade.payer
            return self._ok(**body)

        return self._run("query", out_trade_no, operation)

    @staticmethod
    def _trade_state(trade: SimTrade) -> tuple[str, str]:
        if trade.state is TradeState.PAID:
            return ("REFUND", "转入退款") if trade.refunds else ("SUCCESS", "支付成功")
        if trade.state is TradeState.PAYING and trade.mode is PayMode.PAYER_CODE:
            return "USERPAYING", "用户支付中（输入密码）"
        if trade.state in (TradeState.PENDING, TradeState.PAYING):
            return "NOTPAY", "订单未支付"
        if trade.state is TradeState.CLOSED:
            return "CLOSED", "订单已关闭"
        if trade.state is TradeState.REVERSED:
            return "REVOKED", "订单已撤销"
        return "PAYERROR", "支付失败，请重新下单支付"

    def _resolve_out_trade_no(self, fields: Mapping[str, str]) -> str:
        transaction_id = fields.get("transaction_id")
        if transaction_id:
            with self.ledger.lock:
                for trade in self.ledger.trades.values():
                    if trade.provider_trade_no == transaction_id:
                        return trade.out_trade_no
            return f"transaction:{transaction_id}"  # unknown: queries answer ORDERNOTEXIST
        return fields.get("out_trade_no", "")

    def _closeorder(self, request: Request) -> Response:
        fields = self._authenticate(request, ("out_trade_no",))
        out_trade_no = fields["out_trade_no"]
        self._check_trade_app(request, fields, out_trade_no)

        def operation() -> dict[str, Any]:
            trade = self.ledger.lookup(out_trade_no)
            if trade is not None and trade.state is TradeState.CLOSED:
                return self._ok()  # closing a closed order again succeeds
            if trade is not None and trade.state is TradeState.REVERSED:
                return self._declined(SandboxDeclined("trade_reversed"))
            try:
                self.ledger.close(out_trade_no)
            except SandboxDeclined as exc:
                return self._declined(exc)
            return self._ok()

        return self._run("close", out_trade_no, operation)

    def _reverse(self, request: Request) -> Response:
        fields = self._authenticate(request)
        out_trade_no = self._resolve_out_trade_no(fields)
        if not out_trade_no:
            return self._return_fail("缺少参数out_trade_no")
        self._check_trade_app(request, fields, out_trade_no)

        def operation() -> dict[str, Any]:
            try:
                trade, _ = self.ledger.reverse(out_trade_no)
            except SandboxDeclined as exc:
                return {**self._declined(exc), "recall": "N"}
            if trade is None:
                return self._err("ORDERNOTEXIST", "订单不存在", recall="N")
            return self._ok(recall="N")

        return self._run(
            "reverse",
            out_trade_no,
            operation,
            retry=lambda: self._err("SYSTEMERROR", "请重试撤销", recall="Y"),
        )

    def _refund(self, request: Request) -> Response:
        fields = self._authenticate(request, ("out_refund_no", "total_fee", "refund_fee"))
        out_trade_no = self._resolve_out_trade_no(fields)
        if not out_trade_no:
            return self._return_fail("缺少参数out_trade_no")
        if not (fields["total_fee"].isdigit() and fields["refund_fee"].isdigit()):
            return self._return_fail("total_fee或refund_fee参数格式错误")
        self._check_trade_app(request, fields, out_trade_no)

        def operation() -> dict[str, Any]:
            trade = self.ledger.lookup(out_trade_no)
            if trade is None or not trade.scanned:
                return self._err("ORDERNOTEXIST", "订单不存在")
            if int(fields["total_fee"]) != trade.amount_fen:
                return self._err("INVALID_REQUEST", "订单金额与原订单不一致")
            if fields.get("notify_url"):
                trade.extra["refund_notify_url"] = fields["notify_url"]
            try:
                refund = self.ledger.refund(
                    out_trade_no=out_trade_no,
                    out_refund_no=fields["out_refund_no"],
                    amount_fen=int(fields["refund_fee"]),
                )
            except SandboxDeclined as exc:
                return self._declined(exc)
            return self._ok(
                transaction_id=trade.provider_trade_no,
                out_trade_no=trade.out_trade_no,
                out_refund_no=refund.out_refund_no,
                refund_id=refund.refund_id,
                refund_fee=refund.amount_fen,
                total_fee=trade.amount_fen,
                cash_fee=trade.amount_fen,
                cash_refund_fee=refund.amount_fen,
                refund_channel=None,
            )

        return self._run(
            "refund",
            out_trade_no,
            operation,
            retry=lambda: self._err("BIZERR_NEED_RETRY", "退款业务流程错误，需要商户触发重试来解决"),
        )

    def _refundquery(self, request: Request) -> Response:
        fields = self._authenticate(request)
        out_trade_no = self._resolve_out_trade_no(fields)
        out_refund_no, refund_id = fields.get("out_refund_no"), fields.get("refund_id")
        if not (out_trade_no or out_refund_no or refund_id):
            return self._return_fail("缺少参数out_refund_no")
        self._check_trade_app(request, fields, out_trade_no)

        def operation() -> dict[str, Any]:
            found = self._find_refunds(out_trade_no, out_refund_no, refund_id)
            if not found:
                return self._err("REFUNDNOTEXIST", "退款订单查询失败")
            trade = found[0][0]
            body: dict[str, Any] = {
                "transaction_id": trade.provider_trade_no,
                "out_trade_no": trade.out_trade_no,
                "total_fee": trade.amount_fen,
                "cash_fee": trade.amount_fen,
                "refund_count": len(found),
            }
            for n, (_, refund) in enumerate(found):
                body[f"out_refund_no_{n}"] = refund.out_refund_no
                body[f"refund_id_{n}"] = refund.refund_id
                body[f"refund_fee_{n}"] = refund.amount_fen
                body[f"refund_status_{n}"] = _REFUND_STATUS[refund.state]
                body[f"refund_recv_accout_{n}"] = "支付用户的零钱"
                if refund.succeeded_at is not None:
                    body[f"refund_success_time_{n}"] = _china(refund.succeeded_at).strftime(
                        "%Y-%m-%d %H:%M:%S"
                    )
            return self._ok(**body)

        return self._run("refund_query", out_trade_no or "", operation)

    def _find_refunds(
        self, out_trade_no: str, out_refund_no: str | None, refund_id: str | None
    ) -> list[tuple[SimTrade, SimRefund]]:
        with self.ledger.lock:
            self.ledger.advance()
            found = []
            for trade in self.ledger.trades.values():
                if out_trade_no and trade.out_trade_no != out_trade_no:
                    continue
                for refund in trade.refunds.values():
                    if refund_id and refund.refund_id != refund_id:
                        continue
                    if out_refund_no and refund.out_refund_no != out_refund_no:
                        continue
                    found.append((trade, refund))
            return found

    def _downloadbill(self, request: Request) -> Response:
        fields = self._authenticate(request, ("bill_date",))
        raw_date = fields["bill_date"]
        try:
            bill_date = datetime.strptime(raw_date, "%Y%m%d").date()  # noqa: DTZ007 - a calendar date
        except ValueError:
            return self._xml(
                {"return_code": "FAIL", "return_msg": "invalid bill_date", "error_code": "20001"}
            )
        bill_type = fields.get("bill_type") or "ALL"
        self.ledger.record_call("bill", raw_date)
        fault = self.ledger.take_fault("bill")
        if fault is not None and fault.kind == "timeout":
            time.sleep(fault.delay_s)
        elif fault is not None and fault.kind == "http_500":
            return Response("500 Internal Server Error", 500, content_type="text/plain")
        elif fault is not None and fault.kind == "corrupt":
            good = self.render_bill(bill_date, bill_type) or BILL_HEADER.encode()
            return Response(
                good[: len(good) * 2 // 3] + b"\xe4\xb8\x00\x00garbled\r\n`", 200, content_type="text/plain"
            )
        elif fault is not None:
            return self._xml({"return_code": "FAIL", "return_msg": "SYSTEMERROR", "error_code": "20007"})
        text = self.render_bill(bill_date, bill_type)
        if text is None:
            return self._xml({"return_code": "FAIL", "return_msg": "No Bill Exist", "error_code": "20002"})
        return Response(text, 200, content_type="text/plain;charset=utf-8")

    # --- bills ------------------------------------------------------------------------------------

    def render_bill(self, bill_date: date, bill_type: str = "ALL") -> bytes | None:
        """The bill of one day (China time) as WeChat writes it, or None when there is no bill."""
        if bill_date > datetime.now(CHINA).date():
            return None
        start = datetime(bill_date.year, bill_date.month, bill_date.day, tzinfo=CHINA).timestamp()
        end = start + 86_400
        rows: list[tuple[float, list[str]]] = []
        with self.ledger.lock:
            self.ledger.advance()
            overrides = self.ledger.bill_overrides
            for trade in self.ledger.trades.values():
                if (
                    trade.paid_at is not None
                    and start <= trade.paid_at < end
                    and bill_type in ("ALL", "SUCCESS")
                ):
                    override = overrides.get(trade.out_trade_no, {})
                    if not override.get("omit"):
                        rows.append((trade.paid_at, self._payment_row(trade, override)))
                for refund in trade.refunds.values():
                    if (
                        refund.state is RefundState.SUCCEEDED
                        and start <= refund.created_at < end
                        and bill_type in ("ALL", "REFUND")
                    ):
                        override = overrides.get(refund.out_refund_no, {})
                        if not override.get("omit"):
                            rows.append((refund.created_at, self._refund_row(trade, refund, override)))
        if not rows:
            return None
        rows.sort(key=lambda row: row[0])
        columns = BILL_HEADER.split(",")
        index = {name: i for i, name in enumerate(columns)}

        def total(name: str) -> int:
            return sum(_yuan_fen(row[index[name]]) for _, row in rows)

        fee_units = sum(_fee_units(row[index["手续费"]]) for _, row in rows)
        summary = [
            str(len(rows)),
            fen_to_yuan(total("应结订单金额")),
            fen_to_yuan(total("退款金额")),
            fen_to_yuan(total("充值券退款金额")),
            _fee_from_units(fee_units),
            fen_to_yuan(total("订单金额")),
            fen_to_yuan(total("申请退款金额")),
        ]
        lines = [BILL_HEADER]
        lines += ["`" + ",`".join(row) for _, row in rows]
        lines += [BILL_SUMMARY_HEADER, "`" + ",`".join(summary)]
        text = "\r\n".join(lines) + "\r\n"
        return ("\ufeff" if self.bill_bom else "").encode() + text.encode("utf-8")

    def _row(self, trade: SimTrade, when: float) -> dict[str, str]:
        return {
            "交易时间": _china(when).strftime("%Y-%m-%d %H:%M:%S"),
            "公众账号ID": self.trade_appid(trade),
            "商户号": self.mch_id,
            "特约商户号": "0",
            "设备号": "",
            "微信订单号": trade.provider_trade_no,
            "商户订单号": trade.out_trade_no,
            "用户标识": trade.payer or "",
            "交易类型": _TRADE_TYPES[trade.mode],
            "付款银行": "OTHERS",
            "货币种类": "CNY",
            "代金券金额": "0.00",
            "充值券退款金额": "0.00",
            "商品名称": _bill_text(trade.subject),
            "商户数据包": _bill_text(str(trade.extra.get("attach") or "")),
            "费率": "0.60%",
            "费率备注": "",
        }

    def _payment_row(self, trade: SimTrade, override: Mapping[str, Any]) -> list[str]:
        amount = int(override.get("amount_fen", trade.amount_fen))
        state = str(override.get("state") or ("REVOKED" if trade.state is TradeState.REVERSED else "SUCCESS"))
        settled = amount if state == "SUCCESS" else 0
        row = self._row(trade, trade.paid_at if trade.paid_at is not None else trade.created_at)
        row.update(
            {
                "交易状态": state,
                "应结订单金额": fen_to_yuan(settled),
                "微信退款单号": "0",
                "商户退款单号": "0",
                "退款金额": "0.00",
                "退款类型": "",
                "退款状态": "",
                "手续费": _fee(settled),
                "订单金额": fen_to_yuan(amount),
                "申请退款金额": "0.00",
            }
        )
        return [row[name] for name in BILL_HEADER.split(",")]

    def _refund_row(self, trade: SimTrade, refund: SimRefund, override: Mapping[str, Any]) -> list[str]:
        amount = int(override.get("amount_fen", refund.amount_fen))
        row = self._row(trade, refund.created_at)
        row.update(
            {
                "交易状态": "REFUND",
                "应结订单金额": "0.00",
                "微信退款单号": refund.refund_id,
                "商户退款单号": refund.out_refund_no,
                "退款金额": fen_to_yuan(amount),
                "退款类型": "ORIGINAL",
                "退款状态": str(override.get("state") or "SUCCESS"),
                "手续费": _fee(-amount),
                "订单金额": "0.00",
                "申请退款金额": fen_to_yuan(amount),
            }
        )
        return [row[name] for name in BILL_HEADER.split(",")]

    # --- notifications ----------------------------------------------------------------------------

    def deliver_due(self, transport: Callable[[str, bytes], tuple[int, bytes]] | None = None) -> int:
        """Send every due notification on WeChat's retry schedule; only the SUCCESS XML acknowledges."""
        return self.ledger.deliver_due(
            NOTIFY_SCHEDULE, self.render_notice, transport or http_transport, is_success_ack
        )

    def render_notice(self, notice: Notice) -> bytes:
        with self.ledger.lock:
            trade = self.ledger.trades[notice.out_trade_no]
            if notice.kind == "refund" and notice.out_refund_no is not None:
                return self._refund_notice(trade, trade.refunds[notice.out_refund_no])
            return self._payment_notice(trade)

    def _payment_notice(self, trade: SimTrade) -> bytes:
        fields: dict[str, Any] = {
            "appid": self.trade_appid(trade),
            "mch_id": self.mch_id,
            "nonce_str": _nonce(),
            "sign_type": "MD5",
            "result_code": "SUCCESS",
            "return_code": "SUCCESS",
            **self._paid_fields(trade),
        }
        return signed_xml(fields, self.api_key)

    def _refund_notice(self, trade: SimTrade, refund: SimRefund) -> bytes:
        inner: dict[str, Any] = {
            "transaction_id": trade.provider_trade_no,
            "out_trade_no": trade.out_trade_no,
            "refund_id": refund.refund_id,
            "out_refund_no": refund.out_refund_no,
            "total_fee": trade.amount_fen,
            "refund_fee": refund.amount_fen,
            "settlement_refund_fee": refund.amount_fen,
            "refund_status": _REFUND_STATUS[refund.state],
            "refund_recv_accout": "支付用户的零钱",
            "refund_account": "REFUND_SOURCE_UNSETTLED_FUNDS",
            "refund_request_source": "API",
        }
        if refund.succeeded_at is not None:
            inner["success_time"] = _china(refund.succeeded_at).strftime("%Y-%m-%d %H:%M:%S")
        plaintext = to_xml(inner).replace(b"<xml>", b"<root>", 1).replace(b"</xml>", b"</root>")
        outer = {
            "return_code": "SUCCESS",
            "appid": self.trade_appid(trade),
            "mch_id": self.mch_id,
            "nonce_str": _nonce(),
            "req_info": encrypt_req_info(plaintext, self.api_key),
        }
        return to_xml(outer)  # no sign: authenticity comes from the encryption

    # --- control API ------------------------------------------------------------------------------

    @staticmethod
    def _body(request: Request) -> dict[str, Any]:
        data = request.get_json(force=True, silent=True)
        return dict(data) if isinstance(data, dict) else {}

    def _c_payers(self, request: Request) -> Response:
        data = self._body(request)
        payer = self.ledger.new_payer(
            balance_fen=int(data.get("balance_fen", 10_000_000)), payer_id=data.get("payer_id")
        )
        return _json({"payer": payer}, 201)

    def _c_payer_codes(self, request: Request) -> Response:
        data = self._body(request)
        code = self.ledger.payer_code(
            str(data["payer"]),
            behaviour=data.get("behaviour", "pay"),
            pay_after_s=float(data.get("pay_after_s", 0)),  # float-ok: seconds
            prefix=str(data.get("prefix", "13")),
        )
        return _json({"code": code}, 201)

    def _c_scan(self, request: Request) -> Response:
        data = self._body(request)
        reference = str(data.get("code_url") or data["reference"])
        delay = float(data.get("pay_after_s", 0))  # float-ok: seconds
        trade = self.ledger.scan(reference, str(data["payer"]), pay_after_s=delay)
        return _json(trade_json(trade))

    def _c_jsapi_pay(self, request: Request) -> Response:
        data = self._body(request)
        reference = str(data.get("prepay_id") or data["reference"])
        trade = self.ledger.pay_jsapi(reference, data.get("payer"))
        return _json(trade_json(trade))

    def _c_faults(self, request: Request) -> Response:
        data = self._body(request)
        if data.get("kind") not in (
            "timeout",
            "http_500",
            "system_error",
            "bad_signature",
            "retry",
            "corrupt",
        ):
            raise ValueError("unknown fault kind")
        self.ledger.fail_next(
            data["endpoint"],
            data["kind"],
            times=int(data.get("times", 1)),
            apply=bool(data.get("apply", True)),
            delay_s=float(data.get("delay_s", 0)),  # float-ok: seconds
        )
        return _json({"scheduled": True}, 201)

    def _c_refund_scripts(self, request: Request) -> Response:
        data = self._body(request)
        if data.get("outcome") not in ("succeed", "fail", "abnormal"):
            raise ValueError("outcome must be succeed, fail or abnormal")
        self.ledger.script_refund(str(data["out_refund_no"]), data["outcome"])
        return _json({"scheduled": True}, 201)

    def _c_notify_mode(self, request: Request) -> Response:
        mode = self._body(request).get("mode")
        if mode not in ("normal", "drop", "duplicate"):
            raise ValueError("mode must be normal, drop or duplicate")
        self.ledger.notify_mode = mode
        return _json({"mode": mode})

    def _c_deliver(self, request: Request) -> Response:
        return _json({"sent": self.deliver_due()})

    def _c_reset(self, request: Request) -> Response:
        self.ledger.reset()
        self.rejected.clear()
        return _json({"reset": True})

    def _c_trades(self, request: Request) -> Response:
        with self.ledger.lock:
            self.ledger.advance()
            return _json([trade_json(t) for t in self.ledger.trades.values()])

    def _c_trade(self, request: Request, out_trade_no: str) -> Response:
        trade = self.ledger.lookup(out_trade_no)
        if trade is None:
            return _json({"error": "trade_not_found"}, 404)
        return _json(trade_json(trade))

    def _c_calls(self, request: Request) -> Response:
        with self.ledger.lock:
            return _json([{"at": at, "endpoint": ep, "out_trade_no": no} for at, ep, no in self.ledger.calls])


def _parse_wx_time(value: str | None) -> float | None:
    if not value:
        return None
    return datetime.strptime(value, "%Y%m%d%H%M%S").replace(tzinfo=CHINA).timestamp()


def _yuan_fen(value: str) -> int:
    whole, _, cents = value.partition(".")
    return int(whole) * 100 + int(cents.ljust(2, "0")[:2])


def _fee_units(value: str) -> int:
    negative = value.startswith("-")
    whole, _, frac = value.lstrip("-").partition(".")
    units = int(whole) * 100_000 + int(frac.ljust(5, "0")[:5])
    return -units if negative else units


def _fee_from_units(units: int) -> str:
    sign_ = "-" if units < 0 else ""
    units = abs(units)
    return f"{sign_}{units // 100_000}.{units % 100_000:05d}"


# --- demo ------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    from payments.sandbox import Ticker, serve

    parser = argparse.ArgumentParser(description="Loopback emulator of the WeChat Pay API v2")
    parser.add_argument("--port", type=int, default=8791)
    parser.add_argument("--appid", default="wx2421b1c4370ec43b")
    parser.add_argument("--mch-id", default="10000100")
    parser.add_argument("--api-key", default="192006250b4c09247ec02edce69f6a2d")
    parser.add_argument(
        "--extra-appid", action="append", default=[], help="another app of the merchant (mini-program)"
    )
    args = parser.parse_args(argv)
    sandbox = WeChatPaySandbox(
        appid=args.appid, mch_id=args.mch_id, api_key=args.api_key, extra_appids=args.extra_appid
    )
    running = serve(sandbox, port=args.port)
    ticker = Ticker(sandbox.deliver_due).start()
    sys.stdout.write(f"WeChat Pay v2 emulator on {running.base_url} (the adapter's api_base)\n")
    sys.stdout.flush()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        ticker.stop()
        running.shutdown()


if __name__ == "__main__":
    main()
