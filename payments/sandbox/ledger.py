"""The provider-neutral heart of the payment sandboxes: payers, trades, refunds, scripts, faults.

`wechat.py` and `alipay.py` in this package are wire front-ends (WeChat Pay v2 XML + MD5, the
Alipay gateway GET + RSA2) over one `SandboxLedger` each; `payments/fake.py` drives a ledger
directly in memory. The behaviour (who pays, when, what fails) therefore lives here once.

Time is `time.time()` read on every call (tests move it with time-machine), and scheduled
events (a payer who "enters the password after 10 s", a refund that completes later) are applied
lazily by `advance()`, which every front-end operation calls first, and by `deliver_due()`.

Scripting (tests and demos):

    payer = ledger.new_payer(balance_fen=100_000)
    code = ledger.payer_code(payer, behaviour="pay", pay_after_s=10)   # 被扫: password after 10 s
    code = ledger.payer_code(payer, behaviour="never")                 # USERPAYING until reversed
    code = ledger.payer_code(payer, behaviour="decline")               # 余额不足
    ledger.scan(qr_content, payer, pay_after_s=0)                     # 主扫: payer scans our QR
    ledger.pay_jsapi(reference, payer)                                 # JSAPI: payer confirms
    ledger.fail_next("charge", "timeout", times=1, apply=True)         # processed, reply lost
    ledger.script_refund(out_refund_no, outcome="fail")                # refund later fails
    ledger.notify_mode = "normal" | "drop" | "duplicate"              # what the notifier does

`charged_fen(payer)` and `payments_of(out_trade_no)` are the stub's own books: tests compare
them with ours to prove nobody was charged twice.
"""

from __future__ import annotations

import itertools
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from payments.base import PayMode, RefundState, TradeState

Endpoint = Literal["charge", "query", "close", "reverse", "refund", "refund_query", "bill", "oauth", "any"]
FaultKind = Literal["timeout", "http_500", "system_error", "bad_signature", "retry", "corrupt"]
PayerBehaviour = Literal["pay", "never", "decline"]

# Delay before a refund the provider accepted is final (seconds of sandbox time).
REFUND_COMPLETES_AFTER_S = 5


class SandboxDeclined(Exception):
    """A definite business refusal; `code` is neutral, each front-end maps it to its wire code."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(code)
        self.code = code  # insufficient_funds, code_expired, code_used, code_invalid, trade_exists,
        # trade_paid, trade_closed, trade_not_found, refund_exceeds, too_many_refunds, ...
        self.message = message


@dataclass
class Fault:
    endpoint: Endpoint
    kind: FaultKind
    times: int = 1
    apply: bool = True  # for timeout/http_500: perform the operation, then lose the reply
    delay_s: float = 0  # for timeout: how long to stall (front-ends stall ≥ the client's timeout)


@dataclass
class Payer:
    id: str
    balance_fen: int
    charged_fen: int = 0  # total ever debited (payments) minus refunds/reversals returned
    payments: list[str] = field(default_factory=list)  # out_trade_no of every debit


@dataclass
class PayerCode:
    code: str
    payer: str
    behaviour: PayerBehaviour
    pay_after_s: float
    used: bool = False


@dataclass
class SimRefund:
    out_refund_no: str
    out_trade_no: str
    amount_fen: int
    refund_id: str
    created_at: float
    state: RefundState = RefundState.PROCESSING
    completes_at: float | None = None
    outcome: Literal["succeed", "fail", "abnormal"] = "succeed"
    succeeded_at: float | None = None


@dataclass
class SimTrade:
    out_trade_no: str
    amount_fen: int
    mode: PayMode
    subject: str
    notify_url: str | None
    created_at: float
    expires_at: float | None
    provider_trade_no: str
    state: TradeState = TradeState.PENDING
    payer: str | None = None  # who pays (JSAPI: given at creation; QR: who scanned)
    reference: str = ""  # code_url / qr_code / prepay_id: what the payer's wallet sees
    scanned: bool = False  # Alipay precreate: the trade only "exists" after a scan
    pay_at: float | None = None  # scheduled completion (payer entering the password)
    paid_at: float | None = None
    refunds: dict[str, SimRefund] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # front-end specific (attach, product_id, ...)

    @property
    def refunded_fen(self) -> int:
        return sum(r.amount_fen for r in self.refunds.values() if r.state is not RefundState.FAILED)


@dataclass
class Notice:
    """One event to notify (payment success, refund result), with its delivery attempts."""

    id: int
    kind: Literal["payment", "refund", "closed"]
    out_trade_no: str
    out_refund_no: str | None
    url: str
    due_at: float
    attempts: int = 0
    acknowledged: bool = False
    bodies: list[bytes] = field(default_factory=list)


class SandboxLedger:
    """Thread-safe state of one emulated merchant account."""

    def __init__(self, *, id_prefix: str = "42000", payer_prefix: str = "o") -> None:
        self.lock = threading.RLock()
        self.id_prefix = id_prefix
        self.payer_prefix = payer_prefix
        self.payers: dict[str, Payer] = {}
        self.codes: dict[str, PayerCode] = {}
        self.trades: dict[str, SimTrade] = {}
        self.by_reference: dict[str, str] = {}
        self.faults: list[Fault] = []
        self.refund_scripts: dict[str, Literal["succeed", "fail", "abnormal"]] = {}
        self.notices: list[Notice] = []
        self.notify_mode: Literal["normal", "drop", "duplicate"] = "normal"
        self.calls: list[tuple[float, str, str]] = []  # (time, endpoint, out_trade_no) for tests
        # Reconciliation tests plant differences in the provider's bill: out_trade_no (or
        # out_refund_no) -> {"amount_fen": n} | {"state": "..."} | {"omit": True}.
        self.bill_overrides: dict[str, dict[str, Any]] = {}
        self._seq = itertools.count(1)

    # --- helpers -------------------------------------------------------------------------------

    @staticmethod
    def now() -> float:
        return time.time()

    def _next_id(self, width: int = 28) -> str:
        stamp = time.strftime("%Y%m%d", time.gmtime(self.now()))
        serial = str(next(self._seq)).zfill(width - len(self.id_prefix) - len(stamp))
        return f"{self.id_prefix}{stamp}{serial}"[:width]

    def record_call(self, endpoint: str, out_trade_no: str = "") -> None:
        with self.lock:
            self.calls.append((self.now(), endpoint, out_trade_no))

    def take_fault(self, endpoint: Endpoint) -> Fault | None:
        """The next scripted fault for this endpoint (consumed), or None."""
        with self.lock:
            for fault in self.faults:
                if fault.endpoint in (endpoint, "any") and fault.times > 0:
                    fault.times -= 1
                    if fault.times == 0:
                        self.faults.remove(fault)
                    return fault
        return None

    # --- scripting -----------------------------------------------------------------------------

    def new_payer(self, *, balance_fen: int = 10_000_000, payer_id: str | None = None) -> str:
        with self.lock:
            pid = payer_id or f"{self.payer_prefix}{secrets.token_hex(12)}"
            self.payers.setdefault(pid, Payer(pid, balance_fen))
            return pid

    def payer_code(
        self, payer: str, *, behaviour: PayerBehaviour = "pay", pay_after_s: float = 0, prefix: str = "13"
    ) -> str:
        """A one-time payment code as the payer's wallet shows it (prefix decides the wallet)."""
        with self.lock:
            self.new_payer(payer_id=payer)
            code = prefix + "".join(secrets.choice("0123456789") for _ in range(18 - len(prefix)))
            self.codes[code] = PayerCode(code, payer, behaviour, pay_after_s)
            return code

    def scan(self, reference: str, payer: str, *, pay_after_s: float = 0) -> SimTrade:
        """The payer scans our QR (code_url / qr_code) and pays now or after `pay_after_s`."""
        with self.lock:
            self.advance()
            trade = self._by_reference(reference)
            if trade.state is not TradeState.PENDING:
                return trade  # paid, closed or already being paid: a second scan changes nothing
            self.new_payer(payer_id=payer)
            trade.scanned = True
            trade.payer = payer
            trade.state = TradeState.PAYING if pay_after_s else TradeState.PENDING
            trade.pay_at = self.now() + pay_after_s
            self.advance()
            return trade

    def pay_jsapi(self, reference: str, payer: str | None = None) -> SimTrade:
        """The payer confirms a JSAPI payment in the wallet (prepay_id / trade_no)."""
        with self.lock:
            trade = self._by_reference(reference)
            who = payer or trade.payer
            if who is None:
                raise SandboxDeclined("payer_mismatch", "no payer for this trade")
            if trade.payer is not None and payer is not None and trade.payer != payer:
                raise SandboxDeclined("payer_mismatch", "another payer's order")
            trade.payer = who
            trade.scanned = True
            if trade.state in (TradeState.PENDING, TradeState.PAYING):
                trade.pay_at = self.now()
            self.advance()
            return trade

    def fail_next(
        self, endpoint: Endpoint, kind: FaultKind, *, times: int = 1, apply: bool = True, delay_s: float = 0
    ) -> None:
        with self.lock:
            self.faults.append(Fault(endpoint, kind, times, apply, delay_s))

    def script_refund(self, out_refund_no: str, outcome: Literal["succeed", "fail", "abnormal"]) -> None:
        with self.lock:
            self.refund_scripts[out_refund_no] = outcome

    def reset(self) -> None:
        lock = self.lock
        with lock:
            self.__init__(id_prefix=self.id_prefix, payer_prefix=self.payer_prefix)  # type: ignore[misc]
            self.lock = lock

    # --- the stub's own books ------------------------------------------------------------------

    def charged_fen(self, payer: str) -> int:
        with self.lock:
            self.advance()
            return self.payers[payer].charged_fen

    def payments_of(self, out_trade_no: str) -> int:
        """How many times money was taken for this trade (0 or 1; never 2)."""
        with self.lock:
            self.advance()
            return sum(p.payments.count(out_trade_no) for p in self.payers.values())

    def paid_trades(self) -> list[SimTrade]:
        with self.lock:
            self.advance()
            return [t for t in self.trades.values() if t.paid_at is not None and t.state is TradeState.PAID]

    # --- provider operations (front-ends call these) -------------------------------------------

    def create_trade(
        self,
        *,
        out_trade_no: str,
        amount_fen: int,
        mode: PayMode,
        subject: str,
        notify_url: str | None,
        expires_at: float | None,
        reference: str | None = None,
        payer: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> SimTrade:
        """Create (or, for an identical repeat, return) a QR/JSAPI trade."""
        with self.lock:
            self.advance()
            existing = self.trades.get(out_trade_no)
            if existing is not None:
                if existing.amount_fen != amount_fen or existing.mode is not mode:
                    raise SandboxDeclined("trade_exists", "out_trade_no used with other parameters")
                if existing.state is TradeState.PAID:
                    raise SandboxDeclined("trade_paid")
                if existing.state in (TradeState.CLOSED, TradeState.REVERSED):
                    raise SandboxDeclined("trade_closed")
                return existing
            if amount_fen <= 0:
                raise SandboxDeclined("invalid_amount")
            trade = SimTrade(
                out_trade_no=out_trade_no,
                amount_fen=amount_fen,
                mode=mode,
                subject=subject,
                notify_url=notify_url,
                created_at=self.now(),
                expires_at=expires_at,
                provider_trade_no=self._next_id(),
                payer=payer,
                reference=reference or f"sandbox://{out_trade_no}/{secrets.token_hex(6)}",
                scanned=mode is PayMode.JSAPI,
                extra=dict(extra or {}),
            )
            self.trades[out_trade_no] = trade
            self.by_reference[trade.reference] = out_trade_no
            return trade

    def pay_with_code(
        self,
        *,
        out_trade_no: str,
        amount_fen: int,
        subject: str,
        auth_code: str,
        notify_url: str | None = None,
    ) -> SimTrade:
        """被扫: charge the payer behind `auth_code`. PAID now, PAYING (password), or SandboxDeclined."""
        with self.lock:
            self.advance()
            if out_trade_no in self.trades:
                trade = self.trades[out_trade_no]
                if trade.state is TradeState.PAID:
                    raise SandboxDeclined("trade_paid")
                raise SandboxDeclined("trade_exists")
            code = self.codes.get(auth_code)
            if code is None:
                raise SandboxDeclined("code_invalid", "not a payment code of this wallet")
            if code.used:
                raise SandboxDeclined("code_used", "each payment code is usable once")
            payer = self.payers[code.payer]
            if code.behaviour == "decline" or payer.balance_fen < amount_fen:
                code.used = True
                raise SandboxDeclined("insufficient_funds", "余额不足")
            code.used = True
            trade = SimTrade(
                out_trade_no=out_trade_no,
                amount_fen=amount_fen,
                mode=PayMode.PAYER_CODE,
                subject=subject,
                notify_url=notify_url,
                created_at=self.now(),
                expires_at=None,
                provider_trade_no=self._next_id(),
                payer=code.payer,
                scanned=True,
            )
            self.trades[out_trade_no] = trade
            if code.behaviour == "never":
                trade.state = TradeState.PAYING
            elif code.pay_after_s > 0:
                trade.state = TradeState.PAYING
                trade.pay_at = self.now() + code.pay_after_s
            else:
                self._settle_payment(trade)
            return trade

    def query(self, out_trade_no: str) -> SimTrade | None:
        """The trade, or None if the provider has none (an unscanned precreate counts as none)."""
        with self.lock:
            self.advance()
            trade = self.trades.get(out_trade_no)
            if trade is None or not trade.scanned:
                return None
            return trade

    def lookup(self, out_trade_no: str) -> SimTrade | None:
        """Like `query` but also sees unscanned trades (front-ends decide what their API shows)."""
        with self.lock:
            self.advance()
            return self.trades.get(out_trade_no)

    def close(self, out_trade_no: str) -> SimTrade:
        """Close an unpaid trade. SandboxDeclined(trade_paid | trade_not_found)."""
        with self.lock:
            self.advance()
            trade = self.trades.get(out_trade_no)
            if trade is None:
                raise SandboxDeclined("trade_not_found")
            if trade.state is TradeState.PAID:
                raise SandboxDeclined("trade_paid")
            if trade.state in (TradeState.CLOSED, TradeState.REVERSED):
                return trade
            if trade.state is TradeState.PAYING and trade.mode is PayMode.PAYER_CODE:
                raise SandboxDeclined("trade_paying")
            trade.state = TradeState.CLOSED
            trade.pay_at = None
            return trade

    def reverse(self, out_trade_no: str) -> tuple[SimTrade | None, bool]:
        """Reverse/cancel: close if unpaid, refund in full if paid. Returns (trade, refunded)."""
        with self.lock:
            self.advance()
            trade = self.trades.get(out_trade_no)
            if trade is None:
                return None, False
            refunded = False
            if trade.state is TradeState.PAID:
                if trade.refunds:
                    raise SandboxDeclined("trade_refunded", "已有退款的交易不能撤销")
                payer = self.payers[trade.payer or ""]
                payer.balance_fen += trade.amount_fen
                payer.charged_fen -= trade.amount_fen
                refunded = True
            trade.state = TradeState.REVERSED
            trade.pay_at = None
            return trade, refunded

    def refund(
        self, *, out_trade_no: str, out_refund_no: str, amount_fen: int, max_refunds: int = 50
    ) -> SimRefund:
        """Accept a refund (PROCESSING; completes after REFUND_COMPLETES_AFTER_S). Same number = same refund."""
        with self.lock:
            self.advance()
            trade = self.trades.get(out_trade_no)
            if trade is None or not trade.scanned:
                raise SandboxDeclined("trade_not_found")
            existing = trade.refunds.get(out_refund_no)
            if existing is not None:
                if existing.amount_fen != amount_fen:
                    raise SandboxDeclined("refund_mismatch", "same refund number, different amount")
                if existing.state is RefundState.FAILED:  # a retry of a failed refund runs again
                    if trade.refunded_fen + existing.amount_fen > trade.amount_fen:
                        raise SandboxDeclined("refund_exceeds", "退款金额超过可退金额")
                    existing.state = RefundState.PROCESSING
                    existing.outcome = self.refund_scripts.pop(out_refund_no, "succeed")
                    existing.completes_at = self.now() + REFUND_COMPLETES_AFTER_S
                return existing
            if trade.state is not TradeState.PAID:
                raise SandboxDeclined("trade_not_paid")
            if len(trade.refunds) >= max_refunds:
                raise SandboxDeclined("too_many_refunds")
            if trade.refunded_fen + amount_fen > trade.amount_fen or amount_fen <= 0:
                raise SandboxDeclined("refund_exceeds", "退款金额超过可退金额")
            refund = SimRefund(
                out_refund_no=out_refund_no,
                out_trade_no=out_trade_no,
                amount_fen=amount_fen,
                refund_id=self._next_id(),
                created_at=self.now(),
                completes_at=self.now() + REFUND_COMPLETES_AFTER_S,
                outcome=self.refund_scripts.pop(out_refund_no, "succeed"),
            )
            trade.refunds[out_refund_no] = refund
            return refund

    def query_refund(self, out_trade_no: str, out_refund_no: str) -> SimRefund | None:
        with self.lock:
            self.advance()
            trade = self.trades.get(out_trade_no)
            return None if trade is None else trade.refunds.get(out_refund_no)

    # --- time --------------------------------------------------------------------------------

    def advance(self) -> None:
        """Apply everything scheduled up to now: payments completing, refunds finishing, expiry."""
        with self.lock:
            now = self.now()
            for trade in self.trades.values():
                if trade.state in (TradeState.PENDING, TradeState.PAYING):
                    expired = trade.expires_at is not None and now > trade.expires_at
                    in_time = trade.expires_at is None or (trade.pay_at or 0) <= trade.expires_at
                    if trade.pay_at is not None and trade.pay_at <= now and in_time:
                        self._settle_payment(trade)
                    elif expired:
                        trade.state, trade.pay_at = TradeState.CLOSED, None
                for refund in trade.refunds.values():
                    if refund.state is RefundState.PROCESSING and (refund.completes_at or 0) <= now:
                        self._finish_refund(trade, refund)

    def _settle_payment(self, trade: SimTrade) -> None:
        payer = self.payers[trade.payer or ""]
        if payer.balance_fen < trade.amount_fen:
            trade.state, trade.pay_at = TradeState.FAILED, None
            return
        payer.balance_fen -= trade.amount_fen
        payer.charged_fen += trade.amount_fen
        payer.payments.append(trade.out_trade_no)
        trade.state = TradeState.PAID
        trade.paid_at = trade.pay_at if trade.pay_at is not None else self.now()
        trade.pay_at = None
        if trade.notify_url:
            self._queue_notice("payment", trade, None)

    def _finish_refund(self, trade: SimTrade, refund: SimRefund) -> None:
        if refund.outcome == "fail":
            refund.state = RefundState.FAILED
        elif refund.outcome == "abnormal":
            refund.state = RefundState.ABNORMAL
        else:
            refund.state = RefundState.SUCCEEDED
            refund.succeeded_at = refund.completes_at or self.now()
            payer = self.payers[trade.payer or ""]
            payer.balance_fen += refund.amount_fen
            payer.charged_fen -= refund.amount_fen
        refund_url = trade.extra.get("refund_notify_url") or trade.notify_url
        if refund_url:
            self._queue_notice("refund", trade, refund, url=refund_url)

    # --- notifications -----------------------------------------------------------------------

    def _queue_notice(
        self,
        kind: Literal["payment", "refund", "closed"],
        trade: SimTrade,
        refund: SimRefund | None,
        url: str | None = None,
    ) -> None:
        if self.notify_mode == "drop":
            return
        target = url or trade.notify_url or ""
        notice = Notice(
            len(self.notices) + 1,
            kind,
            trade.out_trade_no,
            refund.out_refund_no if refund else None,
            target,
            self.now(),
        )
        self.notices.append(notice)

    def due_notices(self, schedule: tuple[float, ...]) -> list[Notice]:
        """Notices to (re)send now, given the provider's retry schedule (seconds after each attempt)."""
        with self.lock:
            self.advance()
            return [
                n
                for n in self.notices
                if not n.acknowledged and n.attempts <= len(schedule) and n.due_at <= self.now()
            ]

    def deliver_due(
        self,
        schedule: tuple[float, ...],
        render: Callable[[Notice], bytes],
        transport: Callable[[str, bytes], tuple[int, bytes]],
        is_ack: Callable[[int, bytes], bool],
    ) -> int:
        """Send every due notice once (twice in "duplicate" mode); reschedule the unacknowledged.
        Returns how many deliveries were attempted. Called outside the lock for the HTTP part."""
        sent = 0
        for notice in self.due_notices(schedule):
            body = render(notice)
            copies = 2 if self.notify_mode == "duplicate" else 1
            ok = False
            for _ in range(copies):
                try:
                    status, reply = transport(notice.url, body)
                    ok = is_ack(status, reply) or ok
                except OSError:
                    pass
                sent += 1
            with self.lock:
                notice.bodies.append(body)
                notice.attempts += 1
                notice.acknowledged = ok
                if not ok and notice.attempts <= len(schedule):
                    notice.due_at = self.now() + schedule[notice.attempts - 1]
        return sent

    def _by_reference(self, reference: str) -> SimTrade:
        out_trade_no = self.by_reference.get(reference)
        if out_trade_no is None:
            raise SandboxDeclined("trade_not_found", "unknown QR / prepay reference")
        return self.trades[out_trade_no]
