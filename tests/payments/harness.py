"""One shape for every provider under contract test: the adapter, its sandbox ledger, and how to
collect the notifications the sandbox would POST to us.

Each provider's support module builds one:
- `tests/payments/fake_support.py::make_fake_harness()`
- `tests/payments/wechat_support.py::make_wechat_harness()` (real wechatpy -> loopback WeChat Pay v2 emulator)
- `tests/payments/alipay_support.py::make_alipay_harness()` (real python-alipay-sdk -> loopback Alipay gateway)
each a context manager yielding a `Harness` (servers are shut down on exit).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from payments.base import Channel, ChargeResult, PaymentProvider
from payments.sandbox.ledger import SandboxLedger


@dataclass
class Harness:
    name: str  # "fake" | "wechat" | "alipay"
    channel: Channel
    provider: PaymentProvider
    ledger: SandboxLedger
    code_prefix: str  # a payer-code prefix of this wallet ("13" WeChat, "28" Alipay)
    notify_url: str  # what to pass as ChargeRequest.notify_url / RefundRequest.notify_url
    # Deliver every due notification now and return them as (body, content_type), acknowledging each.
    collect_notifications: Callable[[], list[tuple[bytes, str]]]
    # What the payer's wallet uses to confirm a JSAPI payment (WeChat prepay_id, Alipay trade_no).
    jsapi_reference: Callable[[ChargeResult], str]
