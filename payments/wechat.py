"""WeChat Pay API v2 (XML, MD5) adapter on wechatpy 1.8.18: the `PaymentProvider` of one merchant.

SDK pitfalls handled here (spec/payments.md B.1, RECIPES.md):

- `API_BASE_URL` is overridable per client (the loopback emulator in tests and demos).
- `client_ip` is always passed (otherwise wechatpy does a DNS lookup).
- Every number is sent as a string: wechatpy's signer drops falsy values, so an int 0 would be
  left out of the signature while still being sent.
- MD5 everywhere: wechatpy verifies notifications with MD5 only and `get_jsapi_params` signs MD5.
- wechatpy never verifies reply signatures: every reply is verified here, and one that does not
  verify (or has duplicate tags) is `ProviderOutcomeUnknown` — we cannot trust what it says.
- Network errors arrive as raw `requests` exceptions, HTTP errors as a WeChatPayException without
  return_code; both, SYSTEMERROR, BANKERROR and BIZERR_NEED_RETRY are `ProviderOutcomeUnknown`.
- USERPAYING (the payer is entering the password) is `ChargeResult(state=PAYING)`, not an error.
- Callbacks: duplicate XML tags are refused before anything else (the doc's own sample has one);
  refund notifications carry no signature and are authenticated by decrypting `req_info`.
- Bills: the BOM is not stripped by wechatpy 1.8.18; amounts are yuan; the totals line is checked.

One merchant, several apps: an openid belongs to one appid (the official account's H5 pages, the
mini-program), and WeChat refuses a JSAPI order whose appid is not the payer's app ("appid和openid
不匹配"). `app_ids` names the merchant's extra apps ({"mp": "wx..."}); `ChargeRequest.app` and the
`app=` of the trade-bound calls pick the wechatpy client of that appid (same mch_id, key and
certificate), so the unified order, the `paySign` and every later call of that trade use the
appid the trade was created with. Notifications of any configured appid are accepted.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any
from xml.parsers import expat

import requests
from wechatpy.exceptions import (
    InvalidAppIdException,
    InvalidMchIdException,
    InvalidSignatureException,
    WeChatPayException,
)
from wechatpy.pay import WeChatPay

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
    channel_for_payer_code,
    yuan_to_fen,
)

CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")  # no DST since 1991

# err_codes whose outcome is unknown: query (or retry with the same number), never mark failed.
UNKNOWN_ERR_CODES = frozenset({"SYSTEMERROR", "BANKERROR", "BIZERR_NEED_RETRY", "FREQUENCY_LIMITED"})

# Messages for the cashier / payer (Chinese), by WeChat err_code.
CHARGE_MESSAGES: dict[str, str] = {
    "NOTENOUGH": "付款人余额不足，请让付款人更换付款方式",
    "AUTHCODEEXPIRE": "付款码已过期，请让付款人刷新付款码后重新扫码",
    "AUTH_CODE_ERROR": "付款码已使用或有误，请让付款人刷新付款码后重新扫码",
    "AUTH_CODE_INVALID": "这不是有效的微信付款码，请让付款人出示微信付款码",
    "NOTSUPORTCARD": "付款人的银行卡不支持此交易，请让付款人更换付款方式",
    "BUYER_MISMATCH": "付款人与订单的付款人不一致，请重新下单",
    "TRADE_ERROR": "付款人账户受限，请让付款人更换付款方式",
    "ORDERPAID": "该订单已支付，请勿重复收款",
    "ORDERCLOSED": "该订单已关闭，请重新下单",
    "ORDERREVERSED": "该订单已撤销，请重新下单",
    "OUT_TRADE_NO_USED": "商户订单号重复，请重新下单",
    "ORDERNOTEXIST": "订单不存在",
    "NOAUTH": "商户未开通此支付权限，请联系管理员",
    "PARAM_ERROR": "支付参数有误，请联系管理员",
    "LACK_PARAMS": "支付参数缺失，请联系管理员",
    "APPID_NOT_EXIST": "微信支付配置有误（APPID），请联系管理员",
    "MCHID_NOT_EXIST": "微信支付配置有误（商户号），请联系管理员",
    "APPID_MCHID_NOT_MATCH": "微信支付配置有误（APPID与商户号不匹配），请联系管理员",
    "SIGNERROR": "微信支付配置有误（签名），请联系管理员",
    "RETURN_FAIL": "微信支付拒绝了请求，请联系管理员",
    "APP_NOT_CONFIGURED": "微信支付未配置该应用，请联系管理员",
}
REFUND_MESSAGES: dict[str, str] = {
    "NOTENOUGH": "商户账户余额不足，暂时无法退款，请稍后重试",
    "TRADE_OVERDUE": "订单已超过可退款期限，无法原路退款",
    "USER_ACCOUNT_ABNORMAL": "付款人账户异常，无法原路退款，请线下处理",
    "INVALID_REQUEST": "退款请求无效（金额超过可退金额或与原请求不一致）",
    "ERROR": "该订单无法退款（可能已超过退款次数上限）",
    "ORDERNOTEXIST": "原支付订单不存在，无法退款",
    "TRADE_STATE_ERROR": "订单状态不允许退款",
    "INVALID_TRANSACTIONID": "微信订单号有误，无法退款",
    "RETURN_FAIL": "微信支付拒绝了退款请求，请联系管理员",
}

_TRADE_STATES = {
    "SUCCESS": TradeState.PAID,
    "REFUND": TradeState.PAID,  # paid, later (partly) refunded
    "NOTPAY": TradeState.PENDING,
    "USERPAYING": TradeState.PAYING,
    "CLOSED": TradeState.CLOSED,
    "REVOKED": TradeState.REVERSED,
    "PAYERROR": TradeState.FAILED,
}
_REFUND_STATES = {
    "SUCCESS": RefundState.SUCCEEDED,
    "PROCESSING": RefundState.PROCESSING,
    "REFUNDCLOSE": RefundState.FAILED,
    "CHANGE": RefundState.ABNORMAL,
}

_SUCCESS_ACK = (
    b"<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>"
)
_FAIL_ACK = (
    b"<xml><return_code><![CDATA[FAIL]]></return_code><return_msg><![CDATA[ERROR]]></return_msg></xml>"
)

# Characters XML 1.0 cannot carry, plus line breaks/tabs (XML normalises \r, and wechatpy's parser
# strips surrounding whitespace: either would break the signature of an echoed field).
_UNSAFE_TEXT = re.compile("[\x00-\x1f\x7f\ufffe\uffff]")

# Bill summary column -> the line column it totals.
_BILL_TOTALS = {
    "应结订单总金额": "应结订单金额",
    "退款总金额": "退款金额",
    "充值券退款总金额": "充值券退款金额",
    "订单总金额": "订单金额",
    "申请退款总金额": "申请退款金额",
    "总交易额": "总金额",
}


def _clean_text(value: str, limit_bytes: int) -> str:
    """Text safe to sign, send and receive back: no control characters, no `]]>`, trimmed to the
    field's byte limit on a character boundary."""
    text = _UNSAFE_TEXT.sub(" ", value).replace("]]>", "]] >").strip()
    while len(text.encode("utf-8")) > limit_bytes:
        text = text[:-1].rstrip()
    return text


def _wx_time(value: str | None) -> datetime | None:
    """yyyyMMddHHmmss in China time -> aware datetime."""
    if not value:
        return None
    return datetime.strptime(value, "%Y%m%d%H%M%S").replace(tzinfo=CHINA)


def _cn_time(value: str | None) -> datetime | None:
    """yyyy-MM-dd HH:mm:ss in China time -> aware datetime."""
    if not value:
        return None
    return datetime.strptime(value, "%Y-%m-%d %H:%M:%S").replace(tzinfo=CHINA)


def _int(value: Any) -> int | None:
    return None if value in (None, "") else int(value)


class _DuplicateTag(ValueError):
    pass


def parse_notification_xml(body: bytes) -> dict[str, str]:
    """A flat `<xml>` document as WeChat sends it; raises `_DuplicateTag` or ValueError otherwise.
    Text is whitespace-trimmed, as wechatpy's parser (which checks the signature) reads it."""
    result: dict[str, str] = {}
    depth = 0
    current: list[str] = []

    def start(name: str, attrs: dict[str, str]) -> None:
        nonlocal depth
        if depth == 0 and name != "xml":
            raise ValueError("root element must be <xml>")
        if depth >= 2:
            raise ValueError("nested element")
        if depth == 1 and name in result:
            raise _DuplicateTag(name)
        if depth == 1:
            result[name] = ""
        depth += 1
        current.clear()

    def end(name: str) -> None:
        nonlocal depth
        depth -= 1
        if depth == 1:
            result[name] = "".join(current).strip()

    def chars(data: str) -> None:
        if depth == 2:
            current.append(data)

    def forbidden(*_: Any) -> None:
        raise ValueError("DTD not allowed")

    parser = expat.ParserCreate("UTF-8")
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    parser.StartDoctypeDeclHandler = forbidden
    parser.EntityDeclHandler = forbidden
    try:
        parser.Parse(body, True)
    except expat.ExpatError as exc:
        raise ValueError(str(exc)) from None
    return result


class WeChatPayProvider:
    """`PaymentProvider` for one WeChat Pay merchant (API v2). Thread-safe; stateless apart from
    its configuration and wechatpy's HTTP sessions.

    `appid` is the default app (`app=None`); `app_ids` maps keys of the merchant's other apps to
    their appids, e.g. {"mp": "wx..."} for the mini-program. An `app` key that is not configured
    is refused with `ProviderDeclined("APP_NOT_CONFIGURED")` before anything is sent."""

    channel = Channel.WECHAT

    def __init__(
        self,
        *,
        appid: str,
        mch_id: str,
        api_key: str,
        api_base: str | None = None,
        mch_cert: str | None = None,
        mch_key: str | None = None,
        timeout: float = 10.0,  # float-ok: seconds
        refund_notify_url: str | None = None,
        app_ids: Mapping[str, str] | None = None,
    ) -> None:
        apps = dict(app_ids or {})
        for key, value in apps.items():
            if not key or not value:
                raise ValueError(f"app_ids needs a non-empty key and appid, got {key!r}: {value!r}")
        self.app_id = appid
        self.merchant_id = mch_id
        self.refund_notify_url = refund_notify_url
        self._apps: Mapping[str, str] = MappingProxyType(apps)
        self._clients: dict[str, Any] = {}  # appid -> wechatpy client; one per distinct appid
        for each in (appid, *apps.values()):
            if each in self._clients:
                continue
            client = WeChatPay(
                appid=each,
                api_key=api_key,
                mch_id=mch_id,
                mch_cert=mch_cert,
                mch_key=mch_key,
                timeout=timeout,
            )
            if api_base:
                client.API_BASE_URL = api_base if api_base.endswith("/") else api_base + "/"
            self._clients[each] = client
        self._client = self._clients[appid]

    @property
    def client(self) -> Any:
        """The default app's wechatpy client (tests; never call it around this adapter's checks)."""
        return self._client

    @property
    def app_ids(self) -> Mapping[str, str]:
        """The extra apps by key (read-only); the default app is `app_id`."""
        return self._apps

    @property
    def appids(self) -> frozenset[str]:
        """Every appid this merchant's calls and notifications may carry."""
        return frozenset(self._clients)

    def appid_for(self, app: str | None) -> str:
        """The appid of `app` (None: the default app). Raises ProviderDeclined for an unknown key."""
        if app is None:
            return self.app_id
        appid = self._apps.get(app)
        if appid is None:
            raise ProviderDeclined(
                "APP_NOT_CONFIGURED",
                CHARGE_MESSAGES["APP_NOT_CONFIGURED"],
                provider_message=f"no WeChat appid configured for app {app!r}",
            )
        return appid

    def client_for(self, app: str | None) -> Any:
        """The wechatpy client of `app` (tests; never call it around this adapter's checks)."""
        return self._clients[self.appid_for(app)]

    def close_http(self) -> None:
        """Release wechatpy's pooled HTTP connections (tests, shutdown)."""
        for client in self._clients.values():
            client._http.close()

    # --- calls ---------------------------------------------------------------------------------

    def _call(self, client: Any, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, str]:
        """Run a wechatpy call of `client`; return the verified reply (business FAIL included) or
        raise ProviderOutcomeUnknown for anything we cannot trust."""
        try:
            reply = fn(*args, **kwargs)
        except requests.RequestException as exc:  # timeouts, connection errors (not wrapped by wechatpy)
            raise ProviderOutcomeUnknown(f"WeChat Pay unreachable: {type(exc).__name__}") from exc
        except WeChatPayException as exc:
            if exc.return_code is None or exc.response is None:  # HTTP status error
                status = getattr(exc.response, "status_code", None)
                raise ProviderOutcomeUnknown(f"WeChat Pay HTTP error {status}") from exc
            try:
                fields = parse_notification_xml(exc.response.content)
            except ValueError:
                raise ProviderOutcomeUnknown("WeChat Pay reply is not well-formed XML") from exc
            return self._verified(fields, client)
        if not isinstance(reply, Mapping):
            raise ProviderOutcomeUnknown("WeChat Pay reply is not XML")
        return self._verified(reply, client)

    def _verified(self, reply: Mapping[str, Any], client: Any) -> dict[str, str]:
        fields: dict[str, str] = {}
        for key, value in reply.items():
            if value is not None and not isinstance(value, str):  # list: duplicate tag; dict: nested
                raise ProviderOutcomeUnknown(f"WeChat Pay reply has a malformed field {key!r}")
            fields[str(key)] = value or ""
        if not fields.get("sign") or not client.check_signature(fields):
            raise ProviderOutcomeUnknown("WeChat Pay reply signature does not verify")
        if fields.get("return_code") == "SUCCESS" and (
            fields.get("appid", client.appid) != client.appid
            or fields.get("mch_id", self.merchant_id) != self.merchant_id
        ):
            raise ProviderOutcomeUnknown("WeChat Pay reply is for another merchant")
        return fields

    @staticmethod
    def _err_code(fields: Mapping[str, str]) -> str | None:
        """None when the reply is a business success, else the error code (RETURN_FAIL for an
        envelope failure: the request was refused before processing)."""
        if fields.get("return_code") != "SUCCESS":
            return "RETURN_FAIL"
        if fields.get("result_code") != "SUCCESS":
            return fields.get("err_code") or "FAIL"
        return None

    @staticmethod
    def _declined(fields: Mapping[str, str], code: str, messages: Mapping[str, str]) -> ProviderDeclined:
        provider_message = fields.get("err_code_des") or fields.get("return_msg") or None
        default = f"微信支付未成功（{code}），请更换付款方式或稍后重试"
        return ProviderDeclined(code, messages.get(code, default), provider_message=provider_message)

    def _raise_for(self, fields: Mapping[str, str], messages: Mapping[str, str]) -> None:
        code = self._err_code(fields)
        if code is None:
            return
        if code in UNKNOWN_ERR_CODES:
            raise ProviderOutcomeUnknown(f"WeChat Pay {code}: {fields.get('err_code_des', '')}")
        raise self._declined(fields, code, messages)

    def _raise_unknown_on_error(self, what: str, fields: Mapping[str, str]) -> None:
        """A query that fails tells nothing about the trade: the state stays unknown."""
        code = self._err_code(fields)
        if code is not None:
            detail = fields.get("err_code_des") or fields.get("return_msg") or ""
            raise ProviderOutcomeUnknown(f"WeChat Pay {what} failed: {code} {detail}".strip())

    # --- PaymentProvider -------------------------------------------------------------------------

    def charge(self, request: ChargeRequest) -> ChargeResult:
        if request.amount_fen <= 0:
            raise ValueError("amount_fen must be positive")
        body = _clean_text(request.subject, 127) or "-"
        attach = _clean_text(request.attach, 127) if request.attach else None
        client = self.client_for(request.app)
        if request.mode is PayMode.PAYER_CODE:
            return self._micropay(client, request, body, attach)
        if not request.notify_url:
            raise ValueError("notify_url is required for NATIVE and JSAPI")
        if request.mode is PayMode.JSAPI and not request.payer_id:
            raise ValueError("payer_id (openid) is required for JSAPI")
        trade_type = "JSAPI" if request.mode is PayMode.JSAPI else "NATIVE"
        fields = self._call(
            client,
            client.order.create,
            trade_type=trade_type,
            body=body,
            total_fee=str(request.amount_fen),
            notify_url=request.notify_url,
            client_ip=request.client_ip,
            user_id=request.payer_id if trade_type == "JSAPI" else None,
            out_trade_no=request.out_trade_no,
            attach=attach,
            time_expire=request.expires_at.astimezone(CHINA),
            product_id=(request.product_id or request.out_trade_no) if trade_type == "NATIVE" else None,
        )
        self._raise_for(fields, CHARGE_MESSAGES)
        if trade_type == "NATIVE":
            if not fields.get("code_url"):
                raise ProviderOutcomeUnknown("unified order reply without code_url")
            return ChargeResult(state=TradeState.PENDING, qr_content=fields["code_url"], raw=fields)
        prepay_id = fields.get("prepay_id")
        if not prepay_id:
            raise ProviderOutcomeUnknown("unified order reply without prepay_id")
        params = client.jsapi.get_jsapi_params(prepay_id)  # appId and paySign of the payer's app
        return ChargeResult(
            state=TradeState.PENDING,
            client_params={str(k): str(v) for k, v in params.items()},
            payer_id=request.payer_id,
            raw=fields,
        )

    def _micropay(self, client: Any, request: ChargeRequest, body: str, attach: str | None) -> ChargeResult:
        code = request.auth_code or ""
        if channel_for_payer_code(code) is not Channel.WECHAT:
            raise ProviderDeclined("AUTH_CODE_INVALID", CHARGE_MESSAGES["AUTH_CODE_INVALID"])
        fields = self._call(
            client,
            client.micropay.create,
            body=body,
            total_fee=str(request.amount_fen),
            auth_code=code,
            client_ip=request.client_ip,
            out_trade_no=request.out_trade_no,
            attach=attach,
        )
        if self._err_code(fields) == "USERPAYING":
            return ChargeResult(state=TradeState.PAYING, raw=fields)
        self._raise_for(fields, CHARGE_MESSAGES)
        return ChargeResult(
            state=TradeState.PAID,
            provider_trade_no=fields.get("transaction_id") or None,
            paid_amount_fen=_int(fields.get("total_fee")),
            paid_at=_wx_time(fields.get("time_end")),
            payer_id=fields.get("openid") or None,
            raw=fields,
        )

    def query(self, out_trade_no: str, *, app: str | None = None) -> TradeStatus:
        client = self.client_for(app)
        fields = self._call(client, client.order.query, out_trade_no=out_trade_no)
        if self._err_code(fields) == "ORDERNOTEXIST":
            return TradeStatus(out_trade_no=out_trade_no, state=TradeState.NOT_FOUND, raw=fields)
        self._raise_unknown_on_error("order query", fields)
        if fields.get("out_trade_no", out_trade_no) != out_trade_no:
            raise ProviderOutcomeUnknown("order query answered for another out_trade_no")
        state = _TRADE_STATES.get(fields.get("trade_state", ""))
        if state is None:
            raise ProviderOutcomeUnknown(f"unknown trade_state {fields.get('trade_state')!r}")
        paid = state is TradeState.PAID
        return TradeStatus(
            out_trade_no=out_trade_no,
            state=state,
            amount_fen=_int(fields.get("total_fee")),
            currency=fields.get("fee_type") or "CNY",
            provider_trade_no=fields.get("transaction_id") or None,
            paid_at=_wx_time(fields.get("time_end")) if paid else None,
            payer_id=fields.get("openid") or None,
            raw=fields,
        )

    def close(self, out_trade_no: str, *, app: str | None = None) -> CloseResult:
        client = self.client_for(app)
        fields = self._call(client, client.order.close, out_trade_no)
        code = self._err_code(fields)
        if code is None or code in ("ORDERCLOSED", "ORDERNOTEXIST"):
            return CloseResult(done=True, raw=fields)
        if code == "ORDERPAID":
            return CloseResult(done=False, already_paid=True, raw=fields)
        if code in ("USERPAYING", "ORDERREVERSED"):  # a 被扫 trade: reverse it instead / already reversed
            return CloseResult(done=code == "ORDERREVERSED", raw=fields)
        self._raise_for(fields, CHARGE_MESSAGES)
        raise AssertionError("unreachable")  # pragma: no cover

    def reverse(self, out_trade_no: str, *, app: str | None = None) -> CloseResult:
        """Query, then reverse (WeChat: "query before close or reverse"). The reverse reply does
        not say whether money went back; `refunded` is True when the query saw the trade paid."""
        client = self.client_for(app)
        before = self.query(out_trade_no, app=app)
        fields = self._call(client, client.order.reverse, out_trade_no=out_trade_no)
        if fields.get("recall") == "Y":
            return CloseResult(done=False, retry=True, raw=fields)
        code = self._err_code(fields)
        if code is None or code == "ORDERNOTEXIST":
            return CloseResult(
                done=True, refunded=code is None and before.state is TradeState.PAID, raw=fields
            )
        self._raise_for(fields, CHARGE_MESSAGES)
        raise AssertionError("unreachable")  # pragma: no cover

    def refund(self, request: RefundRequest, *, app: str | None = None) -> RefundStatus:
        client = self.client_for(app)
        fields = self._call(
            client,
            client.refund.apply,
            total_fee=str(request.total_fen),
            refund_fee=str(request.refund_fen),
            out_refund_no=request.out_refund_no,
            out_trade_no=request.out_trade_no,
            refund_desc=_clean_text(request.reason, 80) if request.reason else None,
            notify_url=request.notify_url or self.refund_notify_url,
        )
        self._raise_for(fields, REFUND_MESSAGES)
        return RefundStatus(
            out_trade_no=request.out_trade_no,
            out_refund_no=request.out_refund_no,
            state=RefundState.PROCESSING,  # the apply reply only means "accepted"
            refund_fen=_int(fields.get("refund_fee")),
            provider_refund_no=fields.get("refund_id") or None,
            raw=fields,
        )

    def query_refund(self, out_trade_no: str, out_refund_no: str, *, app: str | None = None) -> RefundStatus:
        client = self.client_for(app)
        fields = self._call(
            client, client.refund.query, out_refund_no=out_refund_no, out_trade_no=out_trade_no
        )
        code = self._err_code(fields)
        if code in ("REFUNDNOTEXIST", "ORDERNOTEXIST"):
            return RefundStatus(out_trade_no, out_refund_no, RefundState.NOT_FOUND, raw=fields)
        self._raise_unknown_on_error("refund query", fields)
        count = _int(fields.get("refund_count")) or 0
        for n in range(count):
            if fields.get(f"out_refund_no_{n}") != out_refund_no:
                continue
            status = fields.get(f"refund_status_{n}", "")
            state = _REFUND_STATES.get(status)
            if state is None:
                raise ProviderOutcomeUnknown(f"unknown refund_status {status!r}")
            return RefundStatus(
                out_trade_no=out_trade_no,
                out_refund_no=out_refund_no,
                state=state,
                refund_fen=_int(fields.get(f"refund_fee_{n}")),
                provider_refund_no=fields.get(f"refund_id_{n}") or None,
                succeeded_at=_cn_time(fields.get(f"refund_success_time_{n}")),
                raw=fields,
            )
        return RefundStatus(out_trade_no, out_refund_no, RefundState.NOT_FOUND, raw=fields)

    # --- callbacks -------------------------------------------------------------------------------

    def parse_callback(self, body: bytes, content_type: str) -> PaymentEvent:
        try:
            outer = parse_notification_xml(body)
        except _DuplicateTag:
            raise InvalidCallback("duplicate_tag") from None
        except ValueError:
            raise InvalidCallback("malformed") from None
        if "req_info" in outer:
            return self._refund_event(body, outer)
        if not outer.get("sign"):
            raise InvalidCallback("missing_signature")
        if outer.get("sign_type", "MD5") != "MD5":
            raise InvalidCallback("unsupported_sign_type")
        try:
            self._client.parse_payment_result(body)
        except (InvalidSignatureException, ValueError, TypeError):
            raise InvalidCallback("bad_signature") from None
        if outer.get("appid") not in self._clients or outer.get("mch_id") != self.merchant_id:
            raise InvalidCallback("foreign_merchant")
        if outer.get("return_code") != "SUCCESS" or not outer.get("out_trade_no"):
            raise InvalidCallback("malformed")
        try:
            amount = _int(outer.get("total_fee"))
            paid_at = _wx_time(outer.get("time_end"))
        except ValueError:
            raise InvalidCallback("malformed") from None
        paid = outer.get("result_code") == "SUCCESS"
        trade = TradeStatus(
            out_trade_no=outer["out_trade_no"],
            state=TradeState.PAID if paid else TradeState.FAILED,
            amount_fen=amount,
            currency=outer.get("fee_type") or "CNY",
            provider_trade_no=outer.get("transaction_id") or None,
            paid_at=paid_at if paid else None,
            payer_id=outer.get("openid") or None,
            raw=outer,
        )
        return PaymentEvent(
            channel=Channel.WECHAT,
            kind=EventKind.PAYMENT,
            app_id=outer["appid"],
            merchant_id=outer["mch_id"],
            notify_id=None,
            trade=trade,
            fields=outer,
        )

    def _refund_event(self, body: bytes, outer: Mapping[str, str]) -> PaymentEvent:
        if outer.get("return_code") != "SUCCESS" or not outer.get("req_info"):
            raise InvalidCallback("malformed")
        # wechatpy checks appid and mch_id against the client before decrypting: use the client of
        # the notification's appid when it is one of ours (any other appid is foreign_merchant).
        client = self._clients.get(outer.get("appid", ""), self._client)
        try:
            inner = client.parse_refund_notify_result(body)
        except (InvalidAppIdException, InvalidMchIdException):
            raise InvalidCallback("foreign_merchant") from None
        except (ValueError, TypeError, KeyError, IndexError, expat.ExpatError):
            raise InvalidCallback("bad_signature") from None  # undecryptable: not our key
        if not isinstance(inner, Mapping) or any(
            v is not None and not isinstance(v, str | int) for v in inner.values()
        ):
            raise InvalidCallback("malformed")
        fields = {str(k): "" if v is None else str(v) for k, v in inner.items()}
        state = _REFUND_STATES.get(fields.get("refund_status", ""))
        if state is None or not fields.get("out_trade_no") or not fields.get("out_refund_no"):
            raise InvalidCallback("malformed")
        try:
            succeeded_at = _cn_time(fields.get("success_time"))
            refund_fen = _int(fields.get("refund_fee"))
        except ValueError:
            raise InvalidCallback("malformed") from None
        refund = RefundStatus(
            out_trade_no=fields["out_trade_no"],
            out_refund_no=fields["out_refund_no"],
            state=state,
            refund_fen=refund_fen,
            provider_refund_no=fields.get("refund_id") or None,
            succeeded_at=succeeded_at if state is RefundState.SUCCEEDED else None,
            raw=fields,
        )
        return PaymentEvent(
            channel=Channel.WECHAT,
            kind=EventKind.REFUND,
            app_id=outer["appid"],
            merchant_id=outer["mch_id"],
            notify_id=None,
            refund=refund,
            fields={**fields, "appid": outer["appid"], "mch_id": outer["mch_id"]},
        )

    def ack(self, ok: bool) -> Ack:
        return Ack(status=200, content_type="application/xml", body=_SUCCESS_ACK if ok else _FAIL_ACK)

    # --- bills -----------------------------------------------------------------------------------

    def download_statement(self, bill_date: date) -> Statement:
        try:
            reply = self._client.tools.download_bill(bill_date.strftime("%Y%m%d"), bill_type="ALL")
        except requests.RequestException as exc:
            raise ProviderOutcomeUnknown(f"WeChat Pay unreachable: {type(exc).__name__}") from exc
        except WeChatPayException as exc:
            if exc.return_code is None or exc.response is None:
                raise ProviderOutcomeUnknown("WeChat Pay HTTP error on downloadbill") from exc
            try:
                fields = parse_notification_xml(exc.response.content)
            except ValueError:
                raise StatementCorrupt("downloadbill error reply is not well-formed XML") from exc
            if "No Bill Exist" in fields.get("return_msg", ""):
                # No money depends on this answer: accepted even unsigned (WeChat does not sign it).
                raise StatementNotReady(f"no WeChat bill for {bill_date}") from exc
            self._verified(fields, self._client)
            raise ProviderOutcomeUnknown(f"downloadbill refused: {fields.get('return_msg')}") from exc
        if not isinstance(reply, str):
            raise StatementCorrupt("downloadbill answered XML instead of a bill")
        raw = reply.encode("utf-8")
        lines = parse_bill(reply)
        return Statement(
            channel=Channel.WECHAT,
            bill_date=bill_date,
            lines=lines,
            sha1=hashlib.sha1(raw).hexdigest(),  # noqa: S324 - a content fingerprint, not security
            raw=raw,
        )


# --- bill parsing ----------------------------------------------------------------------------------


def _split_bill_line(line: str) -> list[str]:
    if not line.startswith("`"):
        raise StatementCorrupt(f"bill line without the back-tick prefix: {line[:40]!r}")
    return line[1:].split(",`")


def _fee_fen(value: str) -> int:
    try:
        return int((Decimal(value) * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    except InvalidOperation:
        raise StatementCorrupt(f"bad fee {value!r}") from None


def parse_bill(text: str) -> tuple[StatementLine, ...]:
    """Parse a WeChat v2 bill (bill_type ALL): BOM, back-ticks, yuan amounts, totals verified."""
    lines = [line for line in text.lstrip("\ufeff").splitlines() if line.strip()]
    if len(lines) < 3:
        raise StatementCorrupt("bill too short")
    header = lines[0].split(",")
    if "商户订单号" not in header or "交易状态" not in header:
        raise StatementCorrupt("not a WeChat bill header")
    summary_header, summary = lines[-2].split(","), _split_bill_line(lines[-1])
    if summary_header[0] != "总交易单数" or len(summary) != len(summary_header):
        raise StatementCorrupt("bill summary missing or malformed")
    result: list[StatementLine] = []
    sums: dict[str, int] = {}
    fee_total = Decimal(0)
    try:
        for line in lines[1:-2]:
            values = _split_bill_line(line)
            if len(values) != len(header):
                raise StatementCorrupt(f"bill line has {len(values)} fields, header {len(header)}")
            row = dict(zip(header, values, strict=True))
            for column in _BILL_TOTALS.values():
                if column in row:
                    sums[column] = sums.get(column, 0) + yuan_to_fen(row[column])
            fee = row.get("手续费", "0")
            fee_total += Decimal(fee)
            occurred = _cn_time(row["交易时间"])
            if occurred is None:
                raise StatementCorrupt("bill line without time")
            is_refund = row["交易状态"] == "REFUND" or row.get("微信退款单号", "0") not in ("", "0")
            if is_refund:
                result.append(
                    StatementLine(
                        kind=StatementKind.REFUND,
                        out_trade_no=row["商户订单号"],
                        provider_trade_no=row["微信订单号"],
                        amount_fen=yuan_to_fen(row["退款金额"]),
                        occurred_at=occurred,
                        state=row.get("退款状态") or row["交易状态"],
                        out_refund_no=row["商户退款单号"],
                        fee_fen=_fee_fen(fee),
                        raw=row,
                    )
                )
            else:
                amount = row.get("订单金额") or row.get("应结订单金额") or row["总金额"]
                result.append(
                    StatementLine(
                        kind=StatementKind.PAYMENT,
                        out_trade_no=row["商户订单号"],
                        provider_trade_no=row["微信订单号"],
                        amount_fen=yuan_to_fen(amount),
                        occurred_at=occurred,
                        state=row["交易状态"],
                        fee_fen=_fee_fen(fee),
                        raw=row,
                    )
                )
        totals = dict(zip(summary_header, summary, strict=True))
        if int(totals["总交易单数"]) != len(result):
            raise StatementCorrupt("bill line count does not match its summary")
        for name, column in _BILL_TOTALS.items():
            if name in totals and column in sums and yuan_to_fen(totals[name]) != sums[column]:
                raise StatementCorrupt(f"bill {name} does not match its lines")
        if "手续费总金额" in totals and Decimal(totals["手续费总金额"]) != fee_total:
            raise StatementCorrupt("bill fee total does not match its lines")
    except (KeyError, ValueError, InvalidOperation) as exc:
        raise StatementCorrupt(f"unreadable bill: {exc}") from None
    return tuple(result)
