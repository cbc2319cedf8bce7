"""The SMS adapter contract: a `SmsSender` protocol, neutral frozen dataclasses and templates.

Providers (Aliyun dysms, Tencent Cloud SMS) send *templates* approved in advance with named
parameters, never free text, so a message is a template id plus parameters. The Chinese text
below is what the approved template reads; the console and fake senders render it locally.

Delivery is at least once (the outbox retries): every message carries an `idempotency_key`
(the outbox dedupe key) and a sender must not send the same key twice.

Errors: `SmsRejected` is permanent (bad number, unknown template, blocked recipient; do not
retry), `SmsUnavailable` is transient (timeout, throttling, provider down; retry later).
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

MOBILE = re.compile(r"1[3-9]\d{9}")


class SmsError(Exception):
    """Base of the SMS adapter errors."""


class SmsRejected(SmsError):
    """Permanent refusal: retrying the same message cannot succeed."""


class SmsUnavailable(SmsError):
    """Transient failure: retry later."""


@dataclass(frozen=True)
class SmsTemplate:
    id: str
    text: str  # str.format-style placeholders, e.g. "{code}"

    @property
    def params(self) -> frozenset[str]:
        return frozenset(name for _, name, _, _ in string.Formatter().parse(self.text) if name)


TEMPLATES: Mapping[str, SmsTemplate] = {
    template.id: template
    for template in (
        SmsTemplate(
            "otp",
            "【罗湖社康】您的验证码为{code}，{minutes}分钟内有效，用于{purpose}。如非本人操作，请忽略本短信。",
        ),
        SmsTemplate(
            "contract_application_received",
            "【罗湖社康】{name}的家庭医生签约申请已提交至{centre}{team}，团队将于{deadline}前审核，请留意小程序中的办理进度。",
        ),
        SmsTemplate(
            "contract_application_accepted",
            "【罗湖社康】{name}的家庭医生签约申请已通过{team}审核，请于{deadline}前在微信小程序阅读协议并确认签约，逾期申请将自动撤回。",
        ),
        SmsTemplate(
            "contract_application_rejected",
            "【罗湖社康】很抱歉，{name}的家庭医生签约申请未通过{team}审核，原因：{reason}。如有疑问请咨询{centre}。",
        ),
        SmsTemplate(
            "contract_application_withdrawn",
            "【罗湖社康】{name}的家庭医生签约申请已自动撤回：{reason}。如需签约，请在微信小程序重新申请。",
        ),
    )
}


@dataclass(frozen=True)
class SmsMessage:
    """One SMS to one mainland mobile number."""

    phone: str
    template: str
    params: tuple[tuple[str, str], ...]
    idempotency_key: str

    @classmethod
    def create(
        cls, *, phone: str, template: str, params: Mapping[str, str], idempotency_key: str
    ) -> SmsMessage:
        """Validate and build a message; raises `SmsRejected` for what no retry could fix."""
        if not MOBILE.fullmatch(phone):
            raise SmsRejected("not a mainland mobile number")
        known = TEMPLATES.get(template)
        if known is None:
            raise SmsRejected(f"unknown SMS template {template!r}")
        if set(params) != known.params:
            raise SmsRejected(f"template {template!r} needs parameters {sorted(known.params)}")
        if not idempotency_key:
            raise SmsRejected("an idempotency key is required")
        return cls(phone, template, tuple(sorted((k, str(v)) for k, v in params.items())), idempotency_key)

    def params_dict(self) -> dict[str, str]:
        return dict(self.params)


@dataclass(frozen=True)
class SmsReceipt:
    """The provider accepted the message (delivery reports arrive later, if at all)."""

    message_id: str
    accepted_at: datetime
    duplicate: bool = False  # the idempotency key had been sent before; nothing was sent again


class SmsSender(Protocol):
    def send(self, message: SmsMessage) -> SmsReceipt:
        """Send once per idempotency key. Raises `SmsRejected` or `SmsUnavailable`."""
        ...


def render(message: SmsMessage) -> str:
    """The text the recipient reads."""
    return TEMPLATES[message.template].text.format(**message.params_dict())


def mask_phone(phone: str) -> str:
    """138****1234 (the adapters log no full numbers)."""
    return f"{phone[:3]}****{phone[-4:]}" if len(phone) == 11 else "*" * max(len(phone) - 4, 0) + phone[-4:]
