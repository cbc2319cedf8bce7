"""The contract-test harness of the in-memory fake provider (no servers to start)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from payments.base import Channel, ChargeResult
from payments.fake import CONTENT_TYPE, FakeProvider
from payments.sandbox.ledger import SandboxLedger
from tests.payments.harness import Harness

FAKE_NOTIFY_URL = "http://127.0.0.1:9/callbacks/fake/pay"


def _jsapi_reference(result: ChargeResult) -> str:
    assert result.client_params is not None, "a JSAPI charge returns client parameters"
    return result.client_params["prepay"]


@contextmanager
def make_fake_harness(channel: Channel = Channel.WECHAT) -> Iterator[Harness]:
    ledger = SandboxLedger(id_prefix="99000", payer_prefix="ofake")
    provider = FakeProvider(channel=channel, ledger=ledger)

    def collect_notifications() -> list[tuple[bytes, str]]:
        received: list[tuple[bytes, str]] = []

        def transport(url: str, body: bytes) -> tuple[int, bytes]:
            received.append((body, CONTENT_TYPE))
            ack = provider.ack(True)
            return ack.status, ack.body

        provider.deliver_due(transport)
        return received

    yield Harness(
        name="fake",
        channel=channel,
        provider=provider,
        ledger=ledger,
        code_prefix="13" if channel is Channel.WECHAT else "28",
        notify_url=FAKE_NOTIFY_URL,
        collect_notifications=collect_notifications,
        jsapi_reference=_jsapi_reference,
    )
