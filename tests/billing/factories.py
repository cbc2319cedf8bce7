"""Factories and helpers shared by the billing tests (bills, fake providers, cashier clients).

- `install_fake_providers(app)` puts a fresh `payments.fake.FakeProvider` (each on its own
  `SandboxLedger`) in place of both channels' providers and returns `{channel: provider}`; the
  autouse `_payment_sandboxes` fixture of tests/conftest.py puts the configured ones back.
- `make_bill(centre, amount_fen=...)` commits an OPEN bill of a centre.
- `make_cashier(centre)`, `cashier_http(app, centre)`: a cashier and an HTTP client with their token.
- `payer_code(provider, behaviour=..., pay_after_s=...)`: a one-time payment code of that wallet.
- `idem()`: a fresh Idempotency-Key header.
"""

from __future__ import annotations

import itertools
import uuid
from typing import Any, Literal

from flask import Flask

from app.accounts.models import StaffUser
from app.billing import providers
from app.billing.models import Bill, BillSource
from app.billing.services import orders
from app.core.auth import Actor, Role
from app.core.db import commit
from app.institutions.models import Institution
from payments.base import Channel, PaymentProvider
from payments.fake import FakeProvider
from payments.sandbox.ledger import SandboxLedger
from tests.audit.support import Http, idem
from tests.factories import make_staff, token_for

__all__ = [
    "CODE_PREFIX",
    "cashier_http",
    "idem",
    "install_fake_providers",
    "install_providers",
    "ledger_payer_code",
    "make_bill",
    "make_cashier",
    "payer_code",
]

# A payer-code prefix of each wallet (WeChat 10-15, Alipay 25-30); the fake accepts 18 digits.
CODE_PREFIX: dict[Channel, str] = {Channel.WECHAT: "13", Channel.ALIPAY: "28"}
_counter = itertools.count(1)


def install_fake_providers(app: Flask) -> dict[Channel, FakeProvider]:
    """Swap both channels' providers for fresh in-memory fakes (one ledger each)."""
    fakes = {
        Channel.WECHAT: FakeProvider(
            channel=Channel.WECHAT, ledger=SandboxLedger(id_prefix="42000", payer_prefix="owx")
        ),
        Channel.ALIPAY: FakeProvider(
            channel=Channel.ALIPAY, ledger=SandboxLedger(id_prefix="2026", payer_prefix="2088")
        ),
    }
    install_providers(app, *fakes.values())
    return fakes


def install_providers(app: Flask, *installed: PaymentProvider) -> None:
    """`providers.install` each one (the autouse fixture restores the configured providers)."""
    try:
        for provider in installed:
            providers.install(app, provider)
    except ImportError:
        # The registry cannot build its configured providers (an adapter or sandbox module is
        # missing): the installed ones become the registry outright.
        registry: dict[Channel, PaymentProvider] = dict(app.extensions.get(providers.EXTENSION) or {})
        registry.update({Channel(p.channel): p for p in installed})
        app.extensions[providers.EXTENSION] = registry
        app.extensions[FALLBACK_MARK] = True


FALLBACK_MARK = "payment_providers_test_fallback"


def forget_fallback_registry(app: Flask) -> None:
    """After a test: drop a registry made by `install_providers`' fallback (it is rebuilt)."""
    if app.extensions.pop(FALLBACK_MARK, False):
        app.extensions[providers.EXTENSION] = None


def make_bill(
    centre: Institution,
    amount_fen: int = 2500,
    *,
    subject: str = "家庭医生签约服务费",
    source: BillSource | str = BillSource.OTHER,
    source_ref: str | None = None,
    items: list[dict[str, Any]] | None = None,
    cashier: StaffUser | None = None,
) -> Bill:
    """An OPEN bill of `centre`, committed."""
    bill = orders.create_bill(
        institution_id=centre.id,
        amount_fen=amount_fen,
        subject=subject,
        actor=Actor("staff", cashier.id if cashier else None, Role.CASHIER.value),
        items=items or (),
        source=source,
        source_ref=source_ref if source_ref is not None else f"TEST-{next(_counter)}-{uuid.uuid4().hex[:8]}",
        cashier_id=cashier.id if cashier else None,
    )
    commit()
    return bill


def make_cashier(centre: Institution | None) -> StaffUser:
    return make_staff(Role.CASHIER, centre)


def cashier_http(app: Flask, centre: Institution, role: Role = Role.CASHIER) -> Http:
    """An HTTP client (one application context per request) with a token of a new staff member."""
    return Http(app, token_for(make_staff(role, centre)))


def payer_code(
    provider: FakeProvider | Any,
    *,
    behaviour: Literal["pay", "never", "decline"] = "pay",
    pay_after_s: float = 0,
    balance_fen: int = 1_000_000,
) -> tuple[str, str]:
    """(payer id, one-time payment code) of a new payer of the fake provider's wallet."""
    return ledger_payer_code(
        provider.ledger,
        Channel(provider.channel),
        behaviour=behaviour,
        pay_after_s=pay_after_s,
        balance_fen=balance_fen,
    )


def ledger_payer_code(
    ledger: SandboxLedger,
    channel: Channel,
    *,
    behaviour: Literal["pay", "never", "decline"] = "pay",
    pay_after_s: float = 0,
    balance_fen: int = 1_000_000,
) -> tuple[str, str]:
    """(payer id, one-time payment code) on any sandbox ledger (fake or loopback emulator)."""
    payer = ledger.new_payer(balance_fen=balance_fen)
    code = ledger.payer_code(payer, behaviour=behaviour, pay_after_s=pay_after_s, prefix=CODE_PREFIX[channel])
    return payer, code
