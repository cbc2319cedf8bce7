"""An in-memory `PaymentProvider` on a `SandboxLedger`: no HTTP, no SDK, same contract.

Used by fast tests and the demo. It drives the provider-neutral ledger directly, so the payers,
scheduled payments, refunds, scripted faults and bill overrides behave exactly as behind the
WeChat and Alipay loopback emulators; only the wire format is its own:

- Notifications are JSON objects carrying every field plus `sign`, the lowercase hex
  HMAC-SHA256 (key = the fake merchant's secret) of the canonical JSON of the other fields
  (`sort_keys`, no spaces, UTF-8). `render_notice` builds them, `deliver_due` posts them through
  a caller-supplied transport on the channel's retry schedule, `parse_callback` verifies them.
- Faults scripted with `ledger.fail_next(endpoint, kind, apply=...)` are honoured without any
  sleeping: timeout / http_500 / system_error / bad_signature become `ProviderOutcomeUnknown`
  after the operation was (apply=True) or was not (apply=False) performed; `retry` on close /
  reverse answers "call again"; `corrupt` on the bill raises `StatementCorrupt`.
- `channel=Channel.ALIPAY` makes it behave like Alipay where the providers differ in kind: an
  unscanned QR trade does not exist yet (query NOT_FOUND, close does not close it), and the
  notification retry schedule is Alipay's.

Payer codes: any 18-digit code the ledger issued (`ledger.payer_code(...)`), whatever its prefix.
`ChargeRequest.app` and the `app=` of query/close/reverse/refund/query_refund are ignored: the
fake has one app.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import hmac
import io
import json
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from typing import Any

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
)
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
CONTENT_TYPE = "application/json"

# The providers' documented re-notification schedules (seconds after each failed attempt).
NOTIFY_SCHEDULES: dict[Channel, tuple[int, ...]] = {
    Channel.WECHAT: (15, 15, 30, 180, 1800, 1800, 1800, 1800, 3600),
    Channel.ALIPAY: (240, 600, 600, 3600, 7200, 21600, 54000),
}

# Neutral ledger refusals -> (provider-style code, Chinese message for the cashier / payer).
DECLINES: dict[str, tuple[str, str]] = {
    "insufficient_funds": ("NOTENOUGH", "用户余额不足，请更换付款方式"),
    "code_expired": ("AUTHCODEEXPIRE", "付款码已过期，请刷新后重新扫码"),
    "code_used": ("AUTH_CODE_ERROR", "付款码已使用，请刷新后重新扫码"),
    "code_invalid": ("AUTH_CODE_INVALID", "付款码无效，请核对后重新扫码"),
    "trade_exists": ("OUT_TRADE_NO_USED", "商户订单号重复"),
    "trade_paid": ("ORDERPAID", "订单已支付"),
    "trade_closed": ("ORDERCLOSED", "订单已关闭"),
    "trade_not_found": ("ORDERNOTEXIST", "订单不存在"),
    "trade_not_paid": ("TRADE_NOT_PAID", "订单未支付，不能退款"),
    "trade_paying": ("TRADE_PAYING", "订单支付中，请查询或撤销"),
    "trade_refunded": ("TRADE_REFUNDED", "订单已有退款，不能撤销"),
    "refund_exceeds": ("REFUND_FEE_INVALID", "退款金额超过订单可退金额"),
    "refund_mismatch": ("REFUND_MISMATCH", "退款单号已用于不同金额的退款"),
    "too_many_refunds": ("REFUND_TOO_MANY", "该订单退款次数已达上限"),
    "invalid_amount": ("PARAM_ERROR", "金额无效"),
    "payer_mismatch": ("BUYER_MISMATCH", "付款人与订单不符"),
}
_UNKNOWN_DECLINE = ("TRADE_ERROR", "交易失败，请重试")


def _declined(error: SandboxDeclined) -> ProviderDeclined:
    code, message = DECLINES.get(error.code, _UNKNOWN_DECLINE)
    return ProviderDeclined(code, message, provider_message=error.message or error.code)


def _aware(timestamp: float | None) -> datetime | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, CHINA)


def _iso(timestamp: float | None) -> str | None:
    moment = _aware(timestamp)
    return None if moment is None else moment.isoformat()


def _from_iso(value: object) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidCallback("malformed")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as error:
        raise InvalidCallback("malformed") from error
    if moment.tzinfo is None:
        raise InvalidCallback("malformed")
    return moment


def canonical_json(fields: Mapping[str, Any]) -> bytes:
    """The signed text: sorted keys, no whitespace, UTF-8."""
    return json.dumps(dict(fields), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sign_fields(fields: Mapping[str, Any], secret: bytes) -> str:
    return hmac.new(secret, canonical_json(fields), hashlib.sha256).hexdigest()


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise InvalidCallback("duplicate_tag")
        result[key] = value
    return result


class FakeProvider:
    """`PaymentProvider` over a `SandboxLedger`, in memory (thread-safe through the ledger's lock)."""

    def __init__(
        self,
        *,
        channel: Channel = Channel.WECHAT,
        ledger: SandboxLedger | None = None,
        app_id: str = "fake-app",
        merchant_id: str = "fake-mch",
        secret: bytes = b"fake-secret",
    ) -> None:
        self.channel = channel
        self.ledger = ledger if ledger is not None else SandboxLedger()
        self.app_id = app_id
        self.merchant_id = merchant_id
        self._secret = secret

    # --- faults --------------------------------------------------------------------------------

    def _fault(self, endpoint: Endpoint, out_trade_no: str = "") -> Fault | None:
        self.ledger.record_call(endpoint, out_trade_no)
        return self.ledger.take_fault(endpoint)

    @staticmethod
    def _lost(fault: Fault, operation: Callable[[], object]) -> ProviderOutcomeUnknown:
        """Perform the operation if the fault says so, then report the reply as lost."""
        if fault.apply:
            with contextlib.suppress(SandboxDeclined):  # a refusal is lost with the reply as well
                operation()
        return ProviderOutcomeUnknown(f"fake provider: {fault.kind} on {fault.endpoint}")

    # --- charge --------------------------------------------------------------------------------

    def charge(self, request: ChargeRequest) -> ChargeResult:
        operation = self._charge_operation(request)
        fault = self._fault("charge", request.out_trade_no)
        if fault is not None:
            raise self._lost(fault, operation)
        try:
            trade = operation()
        except SandboxDeclined as error:
            raise _declined(error) from error
        return self._charge_result(request, trade)

    def _charge_operation(self, request: ChargeRequest) -> Callable[[], SimTrade]:
        if request.amount_fen <= 0 or isinstance(request.amount_fen, bool):
            raise ProviderDeclined("PARAM_ERROR", "金额必须大于零")
        if request.mode is PayMode.PAYER_CODE:
            code = request.auth_code or ""
            if len(code) != 18 or not code.isdigit():
                raise ProviderDeclined("AUTH_CODE_INVALID", "付款码无效，请核对后重新扫码")
            return lambda: self.ledger.pay_with_code(
                out_trade_no=request.out_trade_no,
                amount_fen=request.amount_fen,
                subject=request.subject,
                auth_code=code,
                notify_url=request.notify_url,
            )
        if request.mode is PayMode.JSAPI and not request.payer_id:
            raise ProviderDeclined("PARAM_ERROR", "缺少付款人标识")
        extra = {"attach": request.attach, "product_id": request.product_id, "client_ip": request.client_ip}
        return lambda: self.ledger.create_trade(
            out_trade_no=request.out_trade_no,
            amount_fen=request.amount_fen,
            mode=request.mode,
            subject=request.subject,
            notify_url=request.notify_url,
            expires_at=request.expires_at.timestamp(),
            payer=request.payer_id,
            extra={k: v for k, v in extra.items() if v is not None},
        )

    def _charge_result(self, request: ChargeRequest, trade: SimTrade) -> ChargeResult:
        raw = self._trade_fields(trade)
        if request.mode is PayMode.MERCHANT_QR:
            return ChargeResult(state=TradeState.PENDING, qr_content=trade.reference, raw=raw)
        if request.mode is PayMode.JSAPI:
            return ChargeResult(state=TradeState.PENDING, client_params={"prepay": trade.reference}, raw=raw)
        paid = trade.state is TradeState.PAID
        return ChargeResult(
            state=trade.state,
            provider_trade_no=trade.provider_trade_no,
            paid_amount_fen=trade.amount_fen if paid else None,
            paid_at=_aware(trade.paid_at) if paid else None,
            payer_id=trade.payer,
            raw=raw,
        )

    # --- query / close / reverse ---------------------------------------------------------------

    def _visible(self, out_trade_no: str) -> SimTrade | None:
        if self.channel is Channel.ALIPAY:  # a precreate exists only once scanned
            return self.ledger.query(out_trade_no)
        return self.ledger.lookup(out_trade_no)

    def query(self, out_trade_no: str, *, app: str | None = None) -> TradeStatus:
        if self._fault("query", out_trade_no) is not None:
            raise ProviderOutcomeUnknown("fake provider: query failed")
        trade = self._visible(out_trade_no)
        if trade is None:
            return TradeStatus(out_trade_no=out_trade_no, state=TradeState.NOT_FOUND)
        return self._status(trade)

    def close(self, out_trade_no: str, *, app: str | None = None) -> CloseResult:
        fault = self._fault("close", out_trade_no)
        if fault is not None and fault.kind == "retry":
            if fault.apply:
                self._try(lambda: self.ledger.close(out_trade_no))
            return CloseResult(done=False, retry=True, raw={"fault": "retry"})
        if fault is not None:
            raise self._lost(fault, lambda: self.ledger.close(out_trade_no))
        if self._visible(out_trade_no) is None:
            # Nothing the provider knows of. On Alipay an unscanned precreate also answers
            # TRADE_NOT_EXIST and stays payable until it expires: close does not touch it.
            return CloseResult(done=self.channel is not Channel.ALIPAY, raw={"code": "trade_not_found"})
        try:
            trade = self.ledger.close(out_trade_no)
        except SandboxDeclined as error:
            if error.code == "trade_paid":
                return CloseResult(done=False, already_paid=True, raw={"code": error.code})
            raise _declined(error) from error
        return CloseResult(done=True, raw=self._trade_fields(trade))

    def reverse(self, out_trade_no: str, *, app: str | None = None) -> CloseResult:
        fault = self._fault("reverse", out_trade_no)
        if fault is not None and fault.kind == "retry":
            refunded = False
            if fault.apply:
                refunded = bool(self._try(lambda: self.ledger.reverse(out_trade_no)[1]))
            return CloseResult(done=False, retry=True, refunded=refunded, raw={"fault": "retry"})
        if fault is not None:
            raise self._lost(fault, lambda: self.ledger.reverse(out_trade_no))
        try:
            trade, refunded = self.ledger.reverse(out_trade_no)
        except SandboxDeclined as error:
            raise _declined(error) from error
        raw = self._trade_fields(trade) if trade is not None else {"code": "trade_not_found"}
        return CloseResult(done=True, refunded=refunded, raw=raw)

    @staticmethod
    def _try(operation: Callable[[], object]) -> object:
        try:
            return operation()
        except SandboxDeclined:
            return None

    # --- refunds -------------------------------------------------------------------------------

    def refund(self, request: RefundRequest, *, app: str | None = None) -> RefundStatus:
        def operation() -> SimRefund:
            with self.ledger.lock:
                trade = self.ledger.lookup(request.out_trade_no)
                if trade is not None and trade.amount_fen != request.total_fen:
                    raise SandboxDeclined("invalid_amount", "total_fen differs from the order amount")
                if trade is not None and request.notify_url:
                    trade.extra["refund_notify_url"] = request.notify_url
                return self.ledger.refund(
                    out_trade_no=request.out_trade_no,
                    out_refund_no=request.out_refund_no,
                    amount_fen=request.refund_fen,
                )

        fault = self._fault("refund", request.out_trade_no)
        if fault is not None:
            raise self._lost(fault, operation)
        try:
            refund = operation()
        except SandboxDeclined as error:
            if error.code == "invalid_amount":
                raise ProviderDeclined("INVALID_REQUEST", "订单金额与原订单不符") from error
            raise _declined(error) from error
        return self._refund_status(refund)

    def query_refund(self, out_trade_no: str, out_refund_no: str, *, app: str | None = None) -> RefundStatus:
        if self._fault("refund_query", out_trade_no) is not None:
            raise ProviderOutcomeUnknown("fake provider: refund query failed")
        refund = self.ledger.query_refund(out_trade_no, out_refund_no)
        if refund is None:
            return RefundStatus(out_trade_no, out_refund_no, RefundState.NOT_FOUND)
        return self._refund_status(refund)

    # --- notifications -------------------------------------------------------------------------

    def render_notice(self, notice: Notice) -> bytes:
        """The signed JSON body the fake provider POSTs for one ledger notice."""
        with self.ledger.lock:
            trade = self.ledger.trades[notice.out_trade_no]
            fields: dict[str, Any] = {
                "kind": EventKind.REFUND.value if notice.kind == "refund" else EventKind.PAYMENT.value,
                "channel": self.channel.value,
                "app_id": self.app_id,
                "merchant_id": self.merchant_id,
                "notify_id": f"{self.merchant_id}-{notice.id}",
                "notify_time": _iso(self.ledger.now()),
                **self._trade_fields(trade),
            }
            if notice.kind == "payment":
                fields["state"] = TradeState.PAID.value
            if notice.kind == "refund" and notice.out_refund_no is not None:
                fields.update(self._refund_fields(trade.refunds[notice.out_refund_no]))
        return self.sign(fields)

    def sign(self, fields: Mapping[str, Any]) -> bytes:
        """A notification body: the fields plus their signature (tests build forged ones with it)."""
        body = dict(fields, sign=sign_fields(fields, self._secret))
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()

    def is_ack(self, status: int, body: bytes) -> bool:
        try:
            reply = json.loads(body)
        except ValueError:
            return False
        return status == 200 and isinstance(reply, dict) and reply.get("code") == "SUCCESS"

    def deliver_due(self, transport: Callable[[str, bytes], tuple[int, bytes]]) -> int:
        """POST every due notice through `transport(url, body) -> (status, reply)`; returns the count."""
        return self.ledger.deliver_due(
            NOTIFY_SCHEDULES[self.channel], self.render_notice, transport, self.is_ack
        )

    def parse_callback(self, body: bytes, content_type: str) -> PaymentEvent:
        if content_type.split(";")[0].strip().lower() != CONTENT_TYPE:
            raise InvalidCallback("malformed")
        try:
            data = json.loads(body.decode("utf-8"), object_pairs_hook=_no_duplicates)
        except (UnicodeDecodeError, ValueError) as error:
            raise InvalidCallback("malformed") from error
        if not isinstance(data, dict):
            raise InvalidCallback("malformed")
        signature = data.pop("sign", None)
        if not isinstance(signature, str) or not signature:
            raise InvalidCallback("missing_signature")
        if not hmac.compare_digest(signature, sign_fields(data, self._secret)):
            raise InvalidCallback("bad_signature")
        if data.get("app_id") != self.app_id or data.get("merchant_id") != self.merchant_id:
            raise InvalidCallback("foreign_merchant")
        return self._event(data)

    def _event(self, data: dict[str, Any]) -> PaymentEvent:
        try:
            kind = EventKind(data["kind"])
            trade = TradeStatus(
                out_trade_no=str(data["out_trade_no"]),
                state=TradeState(data["state"]),
                amount_fen=self._int(data["amount_fen"]),
                provider_trade_no=data.get("provider_trade_no"),
                paid_at=_from_iso(data.get("paid_at")),
                payer_id=data.get("payer_id"),
                refunded_fen=self._int(data.get("refunded_fen", 0)),
                raw=dict(data),
            )
            refund = None
            if kind is EventKind.REFUND:
                refund = RefundStatus(
                    out_trade_no=trade.out_trade_no,
                    out_refund_no=str(data["out_refund_no"]),
                    state=RefundState(data["refund_state"]),
                    refund_fen=self._int(data["refund_fen"]),
                    provider_refund_no=data.get("provider_refund_no"),
                    succeeded_at=_from_iso(data.get("succeeded_at")),
                    raw=dict(data),
                )
        except (KeyError, ValueError, TypeError) as error:
            raise InvalidCallback("malformed") from error
        return PaymentEvent(
            channel=self.channel,
            kind=kind,
            app_id=str(data["app_id"]),
            merchant_id=str(data["merchant_id"]),
            notify_id=data.get("notify_id"),
            trade=trade,
            refund=refund,
            fields=dict(data),
        )

    @staticmethod
    def _int(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"not an integer amount: {value!r}")
        return value

    def ack(self, ok: bool) -> Ack:
        reply = {"code": "SUCCESS", "message": "成功"} if ok else {"code": "FAIL", "message": "处理失败"}
        return Ack(200, CONTENT_TYPE, json.dumps(reply, ensure_ascii=False).encode())

    # --- statements ----------------------------------------------------------------------------

    def download_statement(self, bill_date: date) -> Statement:
        fault = self._fault("bill")
        if fault is not None and fault.kind == "corrupt":
            raise StatementCorrupt("fake provider: corrupt bill")
        if fault is not None:
            raise ProviderOutcomeUnknown(f"fake provider: {fault.kind} on bill")
        today = datetime.fromtimestamp(self.ledger.now(), CHINA).date()
        if bill_date > today:
            raise StatementNotReady(f"no bill for {bill_date.isoformat()} yet")
        lines, raw = self._render_bill(sorted(self._statement_lines(bill_date), key=lambda x: x.occurred_at))
        return Statement(self.channel, bill_date, lines, hashlib.sha1(raw).hexdigest(), raw)  # noqa: S324

    def _statement_lines(self, bill_date: date) -> list[StatementLine]:
        def on_day(timestamp: float | None) -> bool:
            return timestamp is not None and datetime.fromtimestamp(timestamp, CHINA).date() == bill_date

        lines: list[StatementLine] = []
        with self.ledger.lock:
            self.ledger.advance()
            overrides = self.ledger.bill_overrides
            for trade in self.ledger.trades.values():
                if trade.paid_at is not None and on_day(trade.paid_at):
                    state = "REVOKED" if trade.state is TradeState.REVERSED else "SUCCESS"
                    line = StatementLine(
                        kind=StatementKind.PAYMENT,
                        out_trade_no=trade.out_trade_no,
                        provider_trade_no=trade.provider_trade_no,
                        amount_fen=trade.amount_fen,
                        occurred_at=datetime.fromtimestamp(trade.paid_at, CHINA),
                        state=state,
                    )
                    lines.extend(self._override(line, overrides.get(trade.out_trade_no)))
                for refund in trade.refunds.values():
                    if refund.state is RefundState.SUCCEEDED and on_day(refund.succeeded_at):
                        line = StatementLine(
                            kind=StatementKind.REFUND,
                            out_trade_no=trade.out_trade_no,
                            provider_trade_no=trade.provider_trade_no,
                            amount_fen=refund.amount_fen,
                            occurred_at=datetime.fromtimestamp(refund.succeeded_at or 0, CHINA),
                            state="REFUND",
                            out_refund_no=refund.out_refund_no,
                        )
                        lines.extend(self._override(line, overrides.get(refund.out_refund_no)))
        return lines

    @staticmethod
    def _override(line: StatementLine, override: Mapping[str, Any] | None) -> list[StatementLine]:
        if not override:
            return [line]
        if override.get("omit"):
            return []
        amount = override.get("amount_fen", line.amount_fen)
        state = override.get("state", line.state)
        return [
            StatementLine(
                kind=line.kind,
                out_trade_no=line.out_trade_no,
                provider_trade_no=line.provider_trade_no,
                amount_fen=int(amount),
                occurred_at=line.occurred_at,
                state=str(state),
                out_refund_no=line.out_refund_no,
                fee_fen=line.fee_fen,
            )
        ]

    @staticmethod
    def _render_bill(lines: list[StatementLine]) -> tuple[tuple[StatementLine, ...], bytes]:
        """The raw bill: CSV, one row per line, amounts in fen; each line keeps its row as `raw`."""
        header = [
            "occurred_at",
            "kind",
            "out_trade_no",
            "provider_trade_no",
            "out_refund_no",
            "amount_fen",
            "state",
        ]
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
        rendered: list[StatementLine] = []
        for line in lines:
            row = [
                line.occurred_at.isoformat(),
                line.kind.value,
                line.out_trade_no,
                line.provider_trade_no,
                line.out_refund_no or "",
                str(line.amount_fen),
                line.state,
            ]
            writer.writerow(row)
            rendered.append(replace(line, raw=dict(zip(header, row, strict=True))))
        return tuple(rendered), out.getvalue().encode()

    # --- conversions ---------------------------------------------------------------------------

    def _trade_fields(self, trade: SimTrade) -> dict[str, Any]:
        return {
            "out_trade_no": trade.out_trade_no,
            "provider_trade_no": trade.provider_trade_no,
            "mode": trade.mode.value,
            "state": trade.state.value,
            "amount_fen": trade.amount_fen,
            "paid_at": _iso(trade.paid_at),
            "payer_id": trade.payer,
            "refunded_fen": self._refunded(trade),
        }

    @staticmethod
    def _refunded(trade: SimTrade) -> int:
        return sum(r.amount_fen for r in trade.refunds.values() if r.state is RefundState.SUCCEEDED)

    @staticmethod
    def _refund_fields(refund: SimRefund) -> dict[str, Any]:
        return {
            "out_refund_no": refund.out_refund_no,
            "provider_refund_no": refund.refund_id,
            "refund_state": refund.state.value,
            "refund_fen": refund.amount_fen,
            "succeeded_at": _iso(refund.succeeded_at),
        }

    def _status(self, trade: SimTrade) -> TradeStatus:
        return TradeStatus(
            out_trade_no=trade.out_trade_no,
            state=trade.state,
            amount_fen=trade.amount_fen,
            provider_trade_no=trade.provider_trade_no,
            paid_at=_aware(trade.paid_at),
            payer_id=trade.payer if trade.scanned else None,
            refunded_fen=self._refunded(trade),
            raw=self._trade_fields(trade),
        )

    def _refund_status(self, refund: SimRefund) -> RefundStatus:
        return RefundStatus(
            out_trade_no=refund.out_trade_no,
            out_refund_no=refund.out_refund_no,
            state=refund.state,
            refund_fen=refund.amount_fen,
            provider_refund_no=refund.refund_id,
            succeeded_at=_aware(refund.succeeded_at),
            raw=self._refund_fields(refund),
        )


__all__ = ["CHINA", "DECLINES", "NOTIFY_SCHEDULES", "FakeProvider", "canonical_json", "sign_fields"]
