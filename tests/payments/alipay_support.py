"""The Alipay harness: the real python-alipay-sdk (via `AlipayProvider`) against the loopback Alipay
gateway emulator (`payments.sandbox.alipay.AlipaySandbox`) served on 127.0.0.1.

RSA key generation is the slow part (2048 bits), so the two test key pairs (app, Alipay) are made
once per test session and shared by every harness.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from payments.alipay import AlipayProvider
from payments.base import Channel, ChargeResult
from payments.sandbox import RunningServer, serve
from payments.sandbox.alipay import FORM, AlipaySandbox
from payments.sandbox.keys import KeyPair, generate_key_pair
from payments.sandbox.ledger import SandboxLedger
from tests.payments.harness import Harness

APP_ID = "2021000117650001"
SELLER_ID = "2088621000000001"
NOTIFY_URL = "http://127.0.0.1:9/callbacks/alipay/notify"  # never contacted: collect_notifications captures
CLIENT_TIMEOUT_S = 1.0


@functools.cache
def session_keys() -> tuple[KeyPair, KeyPair]:
    """(app key pair, Alipay key pair), generated once per session."""
    return generate_key_pair(), generate_key_pair()


@functools.cache
def foreign_keys() -> KeyPair:
    """A third pair: "another Alipay" / an attacker's key."""
    return generate_key_pair()


@dataclass
class AlipayEnv:
    harness: Harness
    sandbox: AlipaySandbox
    server: RunningServer
    provider: AlipayProvider
    app_keys: KeyPair
    alipay_keys: KeyPair

    @property
    def gateway(self) -> str:
        return self.server.base_url + "gateway.do"

    def make_provider(self, **overrides: object) -> AlipayProvider:
        """Another adapter on the same emulator (e.g. a foreign seller_id or the wrong key)."""
        kwargs: dict[str, object] = {
            "app_id": APP_ID,
            "seller_id": SELLER_ID,
            "app_private_key_pem": self.app_keys.private_pem,
            "alipay_public_key_pem": self.alipay_keys.public_pem,
            "gateway": self.gateway,
            "timeout": CLIENT_TIMEOUT_S,
        }
        kwargs.update(overrides)
        return AlipayProvider(**kwargs)  # type: ignore[arg-type]


def _jsapi_reference(result: ChargeResult) -> str:
    assert result.client_params is not None
    return result.client_params["tradeNO"]


@contextmanager
def alipay_env() -> Iterator[AlipayEnv]:
    app_keys, alipay_keys = session_keys()
    ledger = SandboxLedger(id_prefix="", payer_prefix="2088")
    sandbox = AlipaySandbox(
        ledger,
        app_id=APP_ID,
        seller_id=SELLER_ID,
        app_public_key_pem=app_keys.public_pem,
        alipay_private_key_pem=alipay_keys.private_pem,
        stall_s=CLIENT_TIMEOUT_S + 0.5,
    )
    server = serve(sandbox)
    try:
        provider = AlipayProvider(
            app_id=APP_ID,
            seller_id=SELLER_ID,
            app_private_key_pem=app_keys.private_pem,
            alipay_public_key_pem=alipay_keys.public_pem,
            gateway=server.base_url + "gateway.do",
            timeout=CLIENT_TIMEOUT_S,
        )

        def collect_notifications() -> list[tuple[bytes, str]]:
            captured: list[tuple[bytes, str]] = []

            def transport(_url: str, body: bytes) -> tuple[int, bytes]:
                captured.append((body, FORM))
                return 200, b"success"

            sandbox.deliver_due(transport)
            return captured

        harness = Harness(
            name="alipay",
            channel=Channel.ALIPAY,
            provider=provider,
            ledger=ledger,
            code_prefix="28",
            notify_url=NOTIFY_URL,
            collect_notifications=collect_notifications,
            jsapi_reference=_jsapi_reference,
        )
        yield AlipayEnv(harness, sandbox, server, provider, app_keys, alipay_keys)
    finally:
        server.shutdown()
        server.server.server_close()


@contextmanager
def make_alipay_harness() -> Iterator[Harness]:
    with alipay_env() as env:
        yield env.harness
