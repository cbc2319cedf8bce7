"""Alipay adapter (`PaymentProvider`) on python-alipay-sdk 3.4.0, RSA2 public-key mode.

Modes: 主扫 `alipay.trade.precreate` (qr_code), 被扫 `alipay.trade.pay` scene bar_code, JSAPI
`alipay.trade.create` with the payer's buyer_id (client params `{"tradeNO": trade_no}` for
`AlipayJSBridge.call('tradePay', ...)` / `my.tradePay`).

SDK facts this module depends on (spec/payments.md B.2, RECIPES.md; the version is pinned):

- The SDK returns every *signed* reply as a dict whatever its `code`: we branch on `code`.
  10000 ok; 10003 (pay) waiting for the payer -> PAYING; 20000, a network error, a timeout, an
  unsigned or unverifiable reply -> `ProviderOutcomeUnknown`; 40004 -> `ProviderDeclined` with a
  Chinese message, except sub-codes that say "a trade with this number may exist" (unknown).
- `api_alipay_trade_create` looks the reply up under "alipay_trade_create" (no `_response`) and
  crashes on an unsigned error; we call `server_api("alipay.trade.create", ...)` instead.
- `build_body` stamps `timestamp` with the process's local time; `_Client` stamps China time.
- `_gateway` is a private attribute; `gateway=` overrides it (loopback emulator in tests).
- `verify(data, sign)` mutates `data`: it gets a copy.
- `ChargeRequest.app` and the `app=` of query/close/reverse/refund/query_refund are ignored:
  this adapter serves one Alipay application (`app_id`).

Money is fen everywhere outside this module; the yuan strings are made and read only with
`fen_to_yuan` / `yuan_to_fen` (exact, no float).
"""

from __future__ import annotations

import csv
import hashlib
import http.client
import io
import json
import re
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta, timezone
from typing import Any

from alipay import AliPay
from alipay.exceptions import AliPayException, AliPayValidationError
from alipay.utils import AliPayConfig

from payments.base import (
    Ack,
    Channel,
    ChargeRequest,
    ChargeResult,
    CloseResult,
    EventKind,
    InvalidCallback,
    PaymentEvent,
    PayMode,
    ProviderDeclined,
    ProviderOutcomeUnknown,
    RefundRequest,
    RefundState,
    RefundStatus,
    Statement,
    StatementCorrupt,
    StatementKind,
    StatementLine,
    StatementNotReady,
    TradeState,
    TradeStatus,
    fen_to_yuan,
    yuan_to_fen,
)

CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")  # no DST since 1991: a fixed offset is exact
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
PRODUCTION_GATEWAY = "https://openapi.alipay.com/gateway.do"

_TRADE_STATES = {
    "WAIT_BUYER_PAY": TradeState.PENDING,
    "TRADE_SUCCESS": TradeState.PAID,
    "TRADE_FINISHED": TradeState.PAID,
    "TRADE_CLOSED": TradeState.CLOSED,  # unpaid and closed, cancelled, or fully refunded (paid_at tells)
}

# 40004 sub-codes after which money may have moved for this out_trade_no: settle by query.
_UNKNOWN_SUB_CODES = frozenset({"ACQ.SYSTEM_ERROR", "AOP.ACQ.SYSTEM_ERROR", "ACQ.TRADE_HAS_SUCCESS"})
_CHARGE_UNKNOWN_SUB_CODES = _UNKNOWN_SUB_CODES | {"ACQ.CONTEXT_INCONSISTENT", "ACQ.TRADE_HAS_FINISHED"}

# Chinese messages for the cashier / payer, by sub_code.
_MESSAGES = {
    "ACQ.BUYER_BALANCE_NOT_ENOUGH": "顾客支付宝余额不足，请顾客充值或更换付款方式后重新付款",
    "ACQ.BUYER_BANKCARD_BALANCE_NOT_ENOUGH": "顾客银行卡余额不足，请更换付款方式",
    "ACQ.PAYMENT_AUTH_CODE_INVALID": "付款码无效或已过期，请顾客刷新付款码后重新扫码",
    "ACQ.PAYMENT_FAIL": "支付失败，请顾客重新付款",
    "ACQ.BUYER_NOT_EXIST": "顾客的支付宝账户不存在",
    "ACQ.BUYER_ENABLE_STATUS_FORBID": "顾客的支付宝账户状态异常，请更换付款方式",
    "ACQ.TRADE_HAS_CLOSE": "该订单的交易已关闭，请重新下单",
    "ACQ.TRADE_NOT_EXIST": "支付宝查无此交易",
    "ACQ.TRADE_STATUS_ERROR": "交易当前状态不允许此操作",
    "ACQ.TOTAL_FEE_EXCEED": "订单金额超过支付宝限额",
    "ACQ.INVALID_PARAMETER": "支付参数有误，请联系管理员",
    "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL": "退款金额超过可退金额",
    "ACQ.DISCORDANT_REPEAT_REQUEST": "该退款单号已用于金额不同的退款",
    "ACQ.SELLER_BALANCE_NOT_ENOUGH": "商户支付宝账户余额不足，暂时无法退款",
    "ACQ.TRADE_CANCEL_TIME_OUT": "已超过撤销时限，请改用退款",
}
_CONFIG_MESSAGE = "支付宝接口配置或参数错误，请联系管理员"


def china_now() -> datetime:
    """Now in China time (reads `time.time()` through datetime, which time-machine moves)."""
    return datetime.now(CHINA)


def _china_text(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("an aware datetime is required")
    return value.astimezone(CHINA).strftime(TIME_FORMAT)


def _parse_china_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.strptime(value[:19], TIME_FORMAT).replace(tzinfo=CHINA)
    except ValueError:
        return None


class _Client(AliPay):  # type: ignore[misc]  # the SDK is untyped
    """The SDK client with the request `timestamp` in China time whatever TZ the process has."""

    def build_body(self, method: str, biz_content: Any = None, **kwargs: Any) -> Any:
        kwargs.setdefault("timestamp", china_now().strftime(TIME_FORMAT))
        return super().build_body(method, biz_content, **kwargs)


def _raw_error(exc: AliPayException) -> dict[str, Any]:
    """The `error_response` node of an AliPayException (the SDK keeps the raw reply privately)."""
    raw = getattr(exc, "_AliPayException__message", "")
    try:
        parsed = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        return {}
    node = parsed.get("error_response") if isinstance(parsed, dict) else None
    return node if isinstance(node, dict) else {}


class AlipayProvider:
    """One Alipay app (app_id) collecting for one seller (seller_id, 2088...)."""

    channel = Channel.ALIPAY

    def __init__(
        self,
        *,
        app_id: str,
        seller_id: str,
        app_private_key_pem: str,
        alipay_public_key_pem: str,
        gateway: str | None = None,
        timeout: float = 10,  # seconds
    ) -> None:
        self.app_id = app_id
        self.merchant_id = seller_id
        self.timeout = timeout
        self._client = _Client(
            appid=app_id,
            app_notify_url=None,
            app_private_key_string=app_private_key_pem,
            alipay_public_key_string=alipay_public_key_pem,
            sign_type="RSA2",
            config=AliPayConfig(timeout=timeout),
        )
        if gateway is not None:
            self._client._gateway = gateway  # private attribute of the pinned SDK (covered by a test)

    @property
    def gateway(self) -> str:
        return str(self._client._gateway)

    # --- calling the SDK -------------------------------------------------------------------------

    def _call(self, fn: Callable[..., Any], *args: Any, _coded: bool = True, **kwargs: Any) -> dict[str, Any]:
        """Run one SDK call; every way it can fail without a trustworthy answer is "unknown".
        `_coded=False` for replies without `code` on success (alipay.system.oauth.token)."""
        try:
            reply = fn(*args, **kwargs)
        except AliPayValidationError as exc:
            raise ProviderOutcomeUnknown("alipay reply failed signature verification") from exc
        except AliPayException as exc:  # error_response or an unsigned reply: not trustworthy
            raise ProviderOutcomeUnknown(f"alipay error reply: {exc}") from exc
        except (OSError, http.client.HTTPException, ValueError, AttributeError, KeyError) as exc:
            # URLError/HTTPError/TimeoutError/connection reset, a truncated or non-JSON body, the SDK
            # tripping over an unexpected shape: the request may or may not have been processed.
            if isinstance(exc, urllib.error.HTTPError):
                exc.close()
            raise ProviderOutcomeUnknown(f"alipay call failed: {exc!r}") from exc
        if not isinstance(reply, dict):
            raise ProviderOutcomeUnknown("alipay reply is not an object")
        code = str(reply.get("code", ""))
        if not _coded and not code:
            return reply
        if code == "20000" or not code:  # isp.unknow-error: the outcome is unknown
            raise ProviderOutcomeUnknown(f"alipay answered {code or 'no code'}: {reply.get('sub_code')}")
        return reply

    @staticmethod
    def _refuse(
        reply: Mapping[str, Any], *, unknown: frozenset[str] = _UNKNOWN_SUB_CODES
    ) -> ProviderDeclined:
        """The error for a non-10000 signed reply (raise the result); unknown outcomes raise here."""
        code = str(reply.get("code", ""))
        sub_code = str(reply.get("sub_code") or code)
        sub_msg = str(reply.get("sub_msg") or reply.get("msg") or "")
        if code == "40004":
            if sub_code.upper() in unknown:
                raise ProviderOutcomeUnknown(f"alipay {sub_code}: {sub_msg}")
            message = _MESSAGES.get(sub_code) or f"支付宝拒绝了本次操作：{sub_msg or sub_code}"
            return ProviderDeclined(sub_code, message, provider_message=sub_msg)
        if code.startswith("4") or code == "20001":  # 40001/40002/40006, 20001 (auth): refused as such
            return ProviderDeclined(sub_code, _CONFIG_MESSAGE, provider_message=sub_msg)
        raise ProviderOutcomeUnknown(f"alipay answered unexpected code {code!r}")

    @staticmethod
    def _fen(reply: Mapping[str, Any], key: str) -> int | None:
        value = reply.get(key)
        if value is None or value == "":
            return None
        try:
            return yuan_to_fen(str(value))
        except ValueError as exc:
            raise ProviderOutcomeUnknown(f"alipay sent a malformed amount {key}={value!r}") from exc

    @staticmethod
    def _same_trade(reply: Mapping[str, Any], out_trade_no: str) -> None:
        echoed = reply.get("out_trade_no")
        if echoed not in (None, "", out_trade_no):
            raise ProviderOutcomeUnknown(f"alipay answered for another trade: {echoed!r}")

    # --- PaymentProvider -------------------------------------------------------------------------

    def charge(self, request: ChargeRequest) -> ChargeResult:
        amount = fen_to_yuan(request.amount_fen)
        extra: dict[str, Any] = {}
        if request.attach:
            extra["body"] = request.attach
        if request.mode is PayMode.MERCHANT_QR:
            reply = self._call(
                self._client.api_alipay_trade_precreate,
                request.subject,
                request.out_trade_no,
                amount,
                notify_url=request.notify_url,
                time_expire=_china_text(request.expires_at),
                **extra,
            )
            if reply.get("code") != "10000":
                raise self._refuse(reply, unknown=_CHARGE_UNKNOWN_SUB_CODES)
            self._same_trade(reply, request.out_trade_no)
            qr_code = reply.get("qr_code")
            if not isinstance(qr_code, str) or not qr_code:
                raise ProviderOutcomeUnknown("alipay precreate answered without qr_code")
            return ChargeResult(state=TradeState.PENDING, qr_content=qr_code, raw=reply)
        if request.mode is PayMode.PAYER_CODE:
            if not request.auth_code:
                raise ValueError("a PAYER_CODE charge needs auth_code")
            reply = self._call(
                self._client.api_alipay_trade_pay,
                request.out_trade_no,
                "bar_code",
                request.auth_code,
                request.subject,
                notify_url=request.notify_url,
                total_amount=amount,
                **extra,
            )
            code = reply.get("code")
            if code not in ("10000", "10003"):
                raise self._refuse(reply, unknown=_CHARGE_UNKNOWN_SUB_CODES)
            self._same_trade(reply, request.out_trade_no)
            trade_no = str(reply.get("trade_no") or "") or None
            payer = str(reply.get("buyer_user_id") or "") or None
            if code == "10003":  # the payer confirms in the wallet: poll query, then cancel
                return ChargeResult(
                    state=TradeState.PAYING, provider_trade_no=trade_no, payer_id=payer, raw=reply
                )
            return ChargeResult(
                state=TradeState.PAID,
                provider_trade_no=trade_no,
                paid_amount_fen=self._fen(reply, "total_amount"),
                paid_at=_parse_china_time(reply.get("gmt_payment")),
                payer_id=payer,
                raw=reply,
            )
        if not request.payer_id:
            raise ValueError("a JSAPI charge needs payer_id (the payer's Alipay buyer_id)")
        buyer_key = "buyer_id" if request.payer_id.startswith("2088") else "buyer_open_id"
        biz = {
            "subject": request.subject,
            "out_trade_no": request.out_trade_no,
            "total_amount": amount,
            buyer_key: request.payer_id,
            "product_code": "JSAPI_PAY",
            "time_expire": _china_text(request.expires_at),
            **extra,
        }
        # Not api_alipay_trade_create: it reads the reply under the wrong key (spec top finding 7).
        reply = self._call(self._client.server_api, "alipay.trade.create", biz, notify_url=request.notify_url)
        if reply.get("code") != "10000":
            raise self._refuse(reply, unknown=_CHARGE_UNKNOWN_SUB_CODES)
        self._same_trade(reply, request.out_trade_no)
        trade_no = reply.get("trade_no")
        if not isinstance(trade_no, str) or not trade_no:
            raise ProviderOutcomeUnknown("alipay trade.create answered without trade_no")
        return ChargeResult(
            state=TradeState.PENDING,
            client_params={"tradeNO": trade_no},
            provider_trade_no=trade_no,
            payer_id=request.payer_id,
            raw=reply,
        )

    def query(self, out_trade_no: str, *, app: str | None = None) -> TradeStatus:
        reply = self._call(self._client.api_alipay_trade_query, out_trade_no=out_trade_no)
        if reply.get("code") == "40004" and reply.get("sub_code") == "ACQ.TRADE_NOT_EXIST":
            # For a precreate this means "not scanned yet", not an error.
            return TradeStatus(out_trade_no=out_trade_no, state=TradeState.NOT_FOUND, raw=reply)
        if reply.get("code") != "10000":
            raise ProviderOutcomeUnknown(f"alipay query answered {reply.get('code')} {reply.get('sub_code')}")
        self._same_trade(reply, out_trade_no)
        state = _TRADE_STATES.get(str(reply.get("trade_status")))
        if state is None:
            raise ProviderOutcomeUnknown(f"unknown trade_status {reply.get('trade_status')!r}")
        return TradeStatus(
            out_trade_no=out_trade_no,
            state=state,
            amount_fen=self._fen(reply, "total_amount"),
            provider_trade_no=str(reply.get("trade_no") or "") or None,
            paid_at=_parse_china_time(reply.get("send_pay_date")),
            payer_id=str(reply.get("buyer_user_id") or "") or None,
            raw=reply,
        )

    def close(self, out_trade_no: str, *, app: str | None = None) -> CloseResult:
        reply = self._call(self._client.api_alipay_trade_close, out_trade_no=out_trade_no)
        if reply.get("code") == "10000":
            return CloseResult(done=True, raw=reply)
        sub_code = reply.get("sub_code")
        if reply.get("code") == "40004" and sub_code == "ACQ.TRADE_NOT_EXIST":
            # A precreate nobody scanned yet: Alipay cannot close it, the QR stays payable until
            # time_expire. Not done: query again after the expiry.
            return CloseResult(done=False, raw=reply)
        if reply.get("code") == "40004" and sub_code in ("ACQ.TRADE_HAS_SUCCESS", "ACQ.TRADE_HAS_FINISHED"):
            return CloseResult(done=False, already_paid=True, raw=reply)
        if reply.get("code") == "40004" and sub_code == "ACQ.TRADE_STATUS_ERROR":
            return CloseResult(done=False, raw=reply)  # paid or being paid: query it
        raise self._refuse(reply)

    def reverse(self, out_trade_no: str, *, app: str | None = None) -> CloseResult:
        reply = self._call(self._client.api_alipay_trade_cancel, out_trade_no=out_trade_no)
        if reply.get("code") == "10000":
            if reply.get("retry_flag") == "Y":
                return CloseResult(done=False, retry=True, raw=reply)
            return CloseResult(done=True, refunded=reply.get("action") == "refund", raw=reply)
        if reply.get("code") == "40004" and reply.get("sub_code") == "ACQ.TRADE_NOT_EXIST":
            return CloseResult(done=True, raw=reply)  # the pay request never created a trade
        raise self._refuse(reply)

    def refund(self, request: RefundRequest, *, app: str | None = None) -> RefundStatus:
        extra: dict[str, Any] = {"out_request_no": request.out_refund_no}
        if request.reason:
            extra["refund_reason"] = request.reason
        reply = self._call(
            self._client.api_alipay_trade_refund,
            fen_to_yuan(request.refund_fen),
            out_trade_no=request.out_trade_no,
            **extra,
        )
        if reply.get("code") != "10000":
            raise self._refuse(reply)
        self._same_trade(reply, request.out_trade_no)
        moved = reply.get("fund_change") == "Y"  # N on a repeat: the final word is query_refund
        return RefundStatus(
            out_trade_no=request.out_trade_no,
            out_refund_no=request.out_refund_no,
            state=RefundState.SUCCEEDED if moved else RefundState.PROCESSING,
            refund_fen=request.refund_fen,
            succeeded_at=_parse_china_time(reply.get("gmt_refund_pay")) if moved else None,
            raw=reply,
        )

    def query_refund(self, out_trade_no: str, out_refund_no: str, *, app: str | None = None) -> RefundStatus:
        biz = {
            "out_trade_no": out_trade_no,
            "out_request_no": out_refund_no,
            "query_options": ["gmt_refund_pay"],
        }
        reply = self._call(self._client.server_api, "alipay.trade.fastpay.refund.query", biz)
        if reply.get("code") == "40004" and reply.get("sub_code") == "ACQ.TRADE_NOT_EXIST":
            return RefundStatus(out_trade_no, out_refund_no, RefundState.NOT_FOUND, raw=reply)
        if reply.get("code") != "10000":
            raise ProviderOutcomeUnknown(
                f"alipay refund query answered {reply.get('code')} {reply.get('sub_code')}"
            )
        if reply.get("refund_status") != "REFUND_SUCCESS":
            # "No data" means not received, not processed yet, or failed; Alipay's procedure is
            # FAILED's: apply again with the same out_request_no (query ≥ 10 s after applying).
            return RefundStatus(out_trade_no, out_refund_no, RefundState.FAILED, raw=reply)
        if reply.get("out_request_no") not in (None, out_refund_no):
            raise ProviderOutcomeUnknown(
                f"alipay answered for another refund: {reply.get('out_request_no')!r}"
            )
        return RefundStatus(
            out_trade_no=out_trade_no,
            out_refund_no=out_refund_no,
            state=RefundState.SUCCEEDED,
            refund_fen=self._fen(reply, "refund_amount"),
            succeeded_at=_parse_china_time(reply.get("gmt_refund_pay")),
            raw=reply,
        )

    def oauth_user_id(self, auth_code: str) -> str:
        """The payer's user_id (2088...) for an H5 auth_code (alipay.system.oauth.token)."""
        try:
            reply = self._call(
                self._client.server_api,
                "alipay.system.oauth.token",
                _coded=False,
                grant_type="authorization_code",
                code=auth_code,
            )
        except ProviderOutcomeUnknown as exc:
            cause = exc.__cause__
            error = _raw_error(cause) if isinstance(cause, AliPayException) else {}
            if error.get("sub_code") in ("isv.code-invalid", "isv.invalid-auth-code"):
                raise ProviderDeclined(
                    str(error["sub_code"]),
                    "支付宝授权已失效，请重新打开支付页面",
                    provider_message=error.get("sub_msg"),
                ) from exc
            raise
        user_id = reply.get("user_id") or reply.get("open_id")
        if not isinstance(user_id, str) or not user_id:
            raise ProviderOutcomeUnknown("alipay oauth answered without user_id")
        return user_id

    # --- notifications -----------------------------------------------------------------------

    def parse_callback(self, body: bytes, content_type: str) -> PaymentEvent:
        if not content_type.lower().split(";")[0].strip() == "application/x-www-form-urlencoded":
            raise InvalidCallback("malformed")
        try:
            pairs = urllib.parse.parse_qsl(
                body.decode("utf-8"), keep_blank_values=True, strict_parsing=True, errors="strict"
            )
        except (UnicodeDecodeError, ValueError):
            raise InvalidCallback("malformed") from None
        fields: dict[str, str] = {}
        for key, value in pairs:
            if key in fields:
                raise InvalidCallback("duplicate_field")
            fields[key] = value
        signature = fields.get("sign", "")
        if not signature or fields.get("sign_type", "RSA2") != "RSA2":
            raise InvalidCallback("bad_signature")
        # Everything but sign and sign_type, empty values left out, as Alipay signs notifications.
        unsigned = {k: v for k, v in fields.items() if k not in ("sign", "sign_type") and v != ""}
        try:
            verified = bool(self._client.verify(dict(unsigned), signature))  # verify mutates: a copy
        except (ValueError, TypeError, AliPayException):
            verified = False
        if not verified:
            raise InvalidCallback("bad_signature")
        if fields.get("app_id") != self.app_id or fields.get("seller_id") != self.merchant_id:
            raise InvalidCallback("foreign_merchant")
        if fields.get("notify_type", "trade_status_sync") != "trade_status_sync":
            raise InvalidCallback("unsupported_notify_type")
        out_trade_no = fields.get("out_trade_no", "")
        state = _TRADE_STATES.get(fields.get("trade_status", ""))
        if not out_trade_no or state is None:
            raise InvalidCallback("malformed")
        try:
            amount = yuan_to_fen(fields.get("total_amount", ""))
            refunded = yuan_to_fen(fields["refund_fee"]) if fields.get("refund_fee") else None
        except ValueError:
            raise InvalidCallback("bad_amount") from None
        trade = TradeStatus(
            out_trade_no=out_trade_no,
            state=state,
            amount_fen=amount,
            provider_trade_no=fields.get("trade_no") or None,
            paid_at=_parse_china_time(fields.get("gmt_payment")),
            payer_id=fields.get("buyer_id") or fields.get("buyer_open_id") or None,
            refunded_fen=refunded,
            raw=fields,
        )
        return PaymentEvent(
            channel=Channel.ALIPAY,
            kind=EventKind.PAYMENT,
            app_id=fields["app_id"],
            merchant_id=fields["seller_id"],
            notify_id=fields.get("notify_id") or None,
            trade=trade,
            fields=fields,
        )

    def ack(self, ok: bool) -> Ack:
        """Alipay stops re-sending only on the exact body `success`."""
        return Ack(status=200, content_type="text/plain; charset=utf-8", body=b"success" if ok else b"fail")

    # --- bills -------------------------------------------------------------------------------

    def download_statement(self, bill_date: date) -> Statement:
        biz = {"bill_type": "trade", "bill_date": bill_date.isoformat()}
        reply = self._call(self._client.server_api, "alipay.data.dataservice.bill.downloadurl.query", biz)
        if reply.get("code") == "40004" and "BILL_NOT_EXIST" in str(reply.get("sub_code", "")).upper():
            raise StatementNotReady(f"alipay has no trade bill for {bill_date}")
        if reply.get("code") != "10000":
            raise self._refuse(reply)
        url = reply.get("bill_download_url")
        if not isinstance(url, str) or urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise ProviderOutcomeUnknown("alipay answered without a usable bill_download_url")
        content = self._fetch(url)  # the URL is valid for 30 s: fetched at once
        lines = parse_trade_bill(content)
        return Statement(
            channel=Channel.ALIPAY,
            bill_date=bill_date,
            lines=tuple(lines),
            sha1=hashlib.sha1(content, usedforsecurity=False).hexdigest(),
            raw=content,
        )

    def _fetch(self, url: str) -> bytes:
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as response:  # noqa: S310 - http(s) checked
                return bytes(response.read())
        except (OSError, http.client.HTTPException) as exc:
            if isinstance(exc, urllib.error.HTTPError):
                exc.close()
            raise ProviderOutcomeUnknown(f"bill download failed: {exc!r}") from exc


# --- the trade bill (业务明细) ------------------------------------------------------------------

_TOTALS = re.compile(r"#交易合计：(\d+)笔，退款合计：(\d+)笔")


def _bill_amount(text: str) -> int:
    """'12.30' / '-12.30' -> 1230 (the magnitude, exact)."""
    return yuan_to_fen(text[1:] if text.startswith("-") else text)


def parse_trade_bill(content: bytes) -> list[StatementLine]:
    """Lines of an Alipay trade bill ZIP (GBK CSVs). StatementCorrupt on anything unexpected."""
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            members = [archive.read(info) for info in archive.infolist() if not info.is_dir()]
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError) as exc:
        raise StatementCorrupt(f"not a readable zip: {exc!r}") from exc
    detail: list[str] | None = None
    for data in members:
        try:
            text = data.decode("gb18030")
        except UnicodeDecodeError as exc:
            raise StatementCorrupt("bill is not GBK text") from exc
        lines = text.splitlines()
        if any(line.startswith("支付宝交易号") for line in lines):
            detail = lines
            break
    if detail is None:
        raise StatementCorrupt("no 业务明细 file in the bill")
    header_at = next(i for i, line in enumerate(detail) if line.startswith("支付宝交易号"))
    header = [cell.strip() for cell in next(csv.reader([detail[header_at]]))]
    body: list[str] = []
    totals: re.Match[str] | None = None
    ended = False
    for line in detail[header_at + 1 :]:
        if line.startswith("#"):
            ended = ended or "业务明细列表结束" in line
            totals = totals or _TOTALS.search(line)
        elif line.strip() and not ended:
            body.append(line)
    if not ended or totals is None:
        raise StatementCorrupt("bill is truncated (no end marker or totals)")
    result: list[StatementLine] = []
    try:
        for cells in csv.reader(body):
            if len(cells) != len(header):
                raise StatementCorrupt(f"bill line has {len(cells)} columns, expected {len(header)}")
            row = {name: cell.strip() for name, cell in zip(header, cells, strict=True)}
            kind_text = row["业务类型"]
            is_refund = kind_text == "退款"
            occurred = _parse_china_time(row["完成时间"]) or _parse_china_time(row["创建时间"])
            if occurred is None or not row["支付宝交易号"] or not row["商户订单号"]:
                raise StatementCorrupt("bill line without trade numbers or time")
            result.append(
                StatementLine(
                    kind=StatementKind.REFUND if is_refund else StatementKind.PAYMENT,
                    out_trade_no=row["商户订单号"],
                    provider_trade_no=row["支付宝交易号"],
                    amount_fen=_bill_amount(row["商家实收（元）"] if is_refund else row["订单金额（元）"]),
                    occurred_at=occurred,
                    state=kind_text,
                    out_refund_no=row.get("退款批次号/请求号") or None,
                    fee_fen=_bill_amount(row.get("服务费（元）") or "0.00"),
                    raw=row,
                )
            )
    except (KeyError, ValueError, csv.Error) as exc:
        raise StatementCorrupt(f"unreadable bill line: {exc!r}") from exc
    refunds = sum(1 for line in result if line.kind is StatementKind.REFUND)
    if (int(totals.group(1)), int(totals.group(2))) != (len(result) - refunds, refunds):
        raise StatementCorrupt("bill totals do not match its lines")
    return result
