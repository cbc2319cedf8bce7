"""The payment-provider contract: modes, neutral frozen dataclasses, the `PaymentProvider` protocol.

Adapters (`wechat.py` on wechatpy, `alipay.py` on python-alipay-sdk, `fake.py` in memory) turn
these neutral values into each provider's wire format and back. They import neither Flask nor
the database: everything a caller needs comes back in these dataclasses, and everything that can
go wrong is one of the errors below.

Outcome rules (spec/payments.md; the callers in `app/billing` depend on them):

- `ProviderOutcomeUnknown` means "we do not know whether money moved": a network error, a timeout,
  WeChat SYSTEMERROR/BANKERROR, Alipay 20000, an unverifiable reply. The caller must mark its
  order UNKNOWN and settle it by query, never FAILED and never by re-charging.
- `ProviderDeclined` is a definite business refusal for that `out_trade_no` (insufficient funds,
  expired payment code, ...): nothing was charged; `message` is Chinese and fit for a cashier.
- A charge that is waiting for the payer (WeChat USERPAYING, Alipay 10003) is not an error:
  `ChargeResult.state` is `TradeState.PAYING`.

Money is an integer number of fen everywhere; only the Alipay adapter converts to a yuan string
(`fen_to_yuan` / `yuan_to_fen` below, exact, no float).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable


class Channel(StrEnum):
    WECHAT = "wechat"  # 微信支付
    ALIPAY = "alipay"  # 支付宝


class PayMode(StrEnum):
    MERCHANT_QR = "merchant_qr"  # 主扫: we show a QR (WeChat NATIVE code_url, Alipay precreate qr_code)
    PAYER_CODE = "payer_code"  # 被扫: the cashier scans the payer's code (micropay, trade.pay bar_code)
    JSAPI = "jsapi"  # 公众号/小程序/服务窗: WeChat JSAPI prepay, Alipay trade.create with buyer id


class TradeState(StrEnum):
    """The provider's view of one trade (`out_trade_no`), in neutral terms."""

    NOT_FOUND = "not_found"  # no such trade (WeChat ORDERNOTEXIST; Alipay precreate not scanned yet)
    PENDING = "pending"  # created, waiting for the payer (NOTPAY, WAIT_BUYER_PAY)
    PAYING = "paying"  # payer is confirming / entering the password (USERPAYING, 10003)
    PAID = "paid"  # SUCCESS, REFUND (paid, later refunded), TRADE_SUCCESS, TRADE_FINISHED
    CLOSED = "closed"  # closed unpaid (CLOSED, TRADE_CLOSED without a payment)
    REVERSED = "reversed"  # reversed/cancelled (WeChat REVOKED; Alipay cancel)
    FAILED = "failed"  # definite failure (WeChat PAYERROR)


class RefundState(StrEnum):
    PROCESSING = "processing"  # accepted by the provider, not final
    SUCCEEDED = "succeeded"  # WeChat SUCCESS; Alipay fund_change=Y / refund query returned data
    FAILED = "failed"  # WeChat REFUNDCLOSE; definite refusal: retry with the same out_refund_no
    ABNORMAL = "abnormal"  # WeChat CHANGE (退款异常): needs manual handling at the merchant platform
    NOT_FOUND = "not_found"  # the provider has no such refund (e.g. the apply never arrived)


# --- payer codes (被扫) -----------------------------------------------------------------------------

_WECHAT_CODE = re.compile(r"1[0-5]\d{16}")  # 18 digits starting 10-15
_ALIPAY_CODE = re.compile(r"(2[5-9]|30)\d{14,22}")  # 16-24 digits starting 25-30


def channel_for_payer_code(code: str) -> Channel | None:
    """Route a scanned payment code by its prefix (WeChat 10–15, Alipay 25–30); None if neither."""
    if _WECHAT_CODE.fullmatch(code):
        return Channel.WECHAT
    if _ALIPAY_CODE.fullmatch(code):
        return Channel.ALIPAY
    return None


# --- money ------------------------------------------------------------------------------------------

_YUAN = re.compile(r"(0|[1-9]\d{0,11})(?:\.(\d{1,2}))?")


def fen_to_yuan(amount_fen: int) -> str:
    """1230 -> "12.30". Exact; refuses negatives and non-integers."""
    if isinstance(amount_fen, bool) or not isinstance(amount_fen, int) or amount_fen < 0:
        raise ValueError(f"amount must be a non-negative integer number of fen, got {amount_fen!r}")
    return f"{amount_fen // 100}.{amount_fen % 100:02d}"


def yuan_to_fen(amount: str) -> int:
    """ "12.3" -> 1230, "0.10" -> 10. Exact; "0.105", "-1", "1e2", " 1" raise ValueError."""
    match = _YUAN.fullmatch(amount) if isinstance(amount, str) else None
    if match is None:
        raise ValueError(f"not a yuan amount with at most two decimals: {amount!r}")
    whole, cents = match.group(1), (match.group(2) or "").ljust(2, "0")
    return int(whole) * 100 + int(cents)


# --- errors -----------------------------------------------------------------------------------------


class PaymentError(Exception):
    """Base of the adapter errors."""


class ProviderOutcomeUnknown(PaymentError):
    """The call may or may not have taken effect: settle by query (never mark FAILED)."""


class ProviderDeclined(PaymentError):
    """A definite business refusal; nothing was charged for this out_trade_no."""

    def __init__(self, code: str, message: str, *, provider_message: str | None = None) -> None:
        super().__init__(f"{code}: {provider_message or message}")
        self.code = code  # the provider's error code, e.g. NOTENOUGH, ACQ.TRADE_HAS_CLOSE
        self.message = message  # Chinese, for the cashier or payer
        self.provider_message = provider_message


class InvalidCallback(PaymentError):
    """A callback that failed verification (signature, format, merchant/app of another account)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason  # stable machine code: bad_signature, malformed, duplicate_tag, ...


class StatementNotReady(PaymentError):
    """The provider has no bill for that date yet (WeChat "No Bill Exist", Alipay BILL_NOT_EXIST)."""


class StatementCorrupt(PaymentError):
    """A bill was downloaded but is unusable (hash mismatch, unparseable, totals do not add up)."""


# --- values -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChargeRequest:
    out_trade_no: str  # ours, ≤ 32 characters, persisted before the call
    amount_fen: int
    subject: str  # shown to the payer (商品描述 / subject), ≤ 64 characters
    mode: PayMode
    client_ip: str  # always given (wechatpy otherwise does a DNS lookup)
    expires_at: datetime  # aware; the provider stops accepting payment after it
    notify_url: str | None = None  # not used for PAYER_CODE on WeChat (synchronous)
    auth_code: str | None = None  # PAYER_CODE: the scanned code
    payer_id: str | None = None  # JSAPI: WeChat openid / Alipay buyer_id (2088...)
    product_id: str | None = None  # MERCHANT_QR on WeChat NATIVE (required there)
    attach: str | None = None  # echoed back in notifications (we put nothing sensitive here)
    # Which of the merchant's apps the payer is in: None = the default app; e.g. "mp" = the WeChat
    # mini-program. WeChat binds an openid to one appid: the unified order and the JSAPI client
    # parameters must use the app the payer_id belongs to. Alipay and the fake ignore it.
    app: str | None = None


@dataclass(frozen=True)
class ChargeResult:
    state: TradeState  # PENDING (QR / prepay ready), PAYING (payer confirming), PAID (micropay done)
    qr_content: str | None = None  # MERCHANT_QR: WeChat code_url / Alipay qr_code, to render as a QR
    client_params: Mapping[str, str] | None = None  # JSAPI: wx.requestPayment params / {"tradeNO": ...}
    provider_trade_no: str | None = None  # transaction_id / trade_no when already known
    paid_amount_fen: int | None = None
    paid_at: datetime | None = None
    payer_id: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TradeStatus:
    """A trade as the provider reports it (query reply or verified notification)."""

    out_trade_no: str
    state: TradeState
    amount_fen: int | None = None  # the order total (WeChat total_fee, Alipay total_amount), not cash paid
    currency: str = "CNY"
    provider_trade_no: str | None = None
    paid_at: datetime | None = None  # aware
    payer_id: str | None = None  # openid / buyer_id
    refunded_fen: int | None = None  # Alipay refund_fee on a trade notification, when present
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CloseResult:
    """Result of close (unpaid trade) or reverse/cancel (被扫 trade of unclear outcome)."""

    done: bool  # the provider confirmed: the trade can no longer be paid
    retry: bool = False  # WeChat recall=Y / Alipay retry_flag=Y: call again
    refunded: bool = False  # reverse/cancel returned money that had been paid (Alipay action=refund)
    already_paid: bool = False  # close refused because the trade is paid (WeChat ORDERPAID, Alipay ...)
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RefundRequest:
    out_trade_no: str
    out_refund_no: str  # ours, persisted before the call, reused on every retry
    total_fen: int  # the order's amount
    refund_fen: int
    reason: str | None = None
    notify_url: str | None = None  # WeChat refund notification URL


@dataclass(frozen=True)
class RefundStatus:
    out_trade_no: str
    out_refund_no: str
    state: RefundState
    refund_fen: int | None = None
    provider_refund_no: str | None = None
    succeeded_at: datetime | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)


class EventKind(StrEnum):
    PAYMENT = "payment"
    REFUND = "refund"


@dataclass(frozen=True)
class PaymentEvent:
    """A verified provider notification. Only `parse_callback` creates one, after the signature
    (or, for WeChat refunds, the decryption) checked out against *our* merchant's key."""

    channel: Channel
    kind: EventKind
    app_id: str  # WeChat appid / Alipay app_id as sent
    merchant_id: str  # WeChat mch_id / Alipay seller_id as sent
    notify_id: str | None  # Alipay notify_id; WeChat v2 has none (None)
    trade: TradeStatus | None = None  # kind == PAYMENT (Alipay refund notifications also carry it)
    refund: RefundStatus | None = None  # kind == REFUND
    fields: Mapping[str, Any] = field(default_factory=dict)  # every verified field as received


@dataclass(frozen=True)
class Ack:
    """What to answer the provider: sent only after our transaction committed."""

    status: int
    content_type: str
    body: bytes


class StatementKind(StrEnum):
    PAYMENT = "payment"
    REFUND = "refund"


@dataclass(frozen=True)
class StatementLine:
    kind: StatementKind
    out_trade_no: str
    provider_trade_no: str
    amount_fen: int  # payment: order amount; refund: refund amount
    occurred_at: datetime  # aware; trade time (payment) or refund time
    state: str  # provider's status text as in the bill (SUCCESS, REFUND, REVOKED, 交易, 退款, ...)
    out_refund_no: str | None = None
    fee_fen: int = 0  # 手续费, when the bill has it (fen, rounded as in the bill)
    raw: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Statement:
    channel: Channel
    bill_date: date
    lines: tuple[StatementLine, ...]
    sha1: str  # of the raw file as downloaded
    raw: bytes = b""


@runtime_checkable
class PaymentProvider(Protocol):
    """One merchant account at one provider. Implementations are thread-safe and stateless
    apart from their configuration; every method may raise `ProviderOutcomeUnknown`."""

    channel: Channel
    app_id: str
    merchant_id: str  # WeChat mch_id / Alipay seller_id (2088...)

    def charge(self, request: ChargeRequest) -> ChargeResult:
        """Create the trade in the given mode. Raises ProviderDeclined or ProviderOutcomeUnknown."""
        ...

    def query(self, out_trade_no: str, *, app: str | None = None) -> TradeStatus:
        """The trade's current state (NOT_FOUND when the provider has none).

        `app` (here and in close/reverse/refund/query_refund): the `ChargeRequest.app` the trade
        was created with. WeChat needs the appid the order was created with; Alipay and the fake
        ignore it."""
        ...

    def close(self, out_trade_no: str, *, app: str | None = None) -> CloseResult:
        """Close an unpaid trade so it can never be paid (WeChat closeorder, Alipay trade.close)."""
        ...

    def reverse(self, out_trade_no: str, *, app: str | None = None) -> CloseResult:
        """Reverse a 被扫 trade of unclear outcome (WeChat reverse, Alipay trade.cancel): closes it
        if unpaid, refunds it if paid."""
        ...

    def refund(self, request: RefundRequest, *, app: str | None = None) -> RefundStatus:
        """Apply for a refund. The reply only means "accepted" (PROCESSING) unless the provider
        states money moved; the final state comes from `query_refund` or a notification."""
        ...

    def query_refund(
        self, out_trade_no: str, out_refund_no: str, *, app: str | None = None
    ) -> RefundStatus: ...

    def parse_callback(self, body: bytes, content_type: str) -> PaymentEvent:
        """Verify and parse a notification body. Raises InvalidCallback; never trusts a field
        before the signature checked out."""
        ...

    def ack(self, ok: bool) -> Ack:
        """The provider's expected reply: WeChat SUCCESS/FAIL XML, Alipay `success`/`fail`."""
        ...

    def download_statement(self, bill_date: date) -> Statement:
        """The provider's bill of one day (China time). Raises StatementNotReady / StatementCorrupt."""
        ...
