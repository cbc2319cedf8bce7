"""The WeChat harness: the real wechatpy adapter against the loopback WeChat Pay v2 emulator."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from payments.base import Channel, ChargeResult
from payments.sandbox import RunningServer, serve
from payments.sandbox.ledger import SandboxLedger
from payments.sandbox.wechat import WeChatPaySandbox
from payments.wechat import WeChatPayProvider
from tests.payments.harness import Harness

APPID = "wx2421b1c4370ec43b"
MCH_ID = "10000100"
API_KEY = "192006250b4c09247ec02edce69f6a2d"
NOTIFY_URL = "http://127.0.0.1:9/callbacks/wechat"  # never dialled: notifications are collected
# The adapter's timeout in tests; scripted timeouts stall a little longer than this.
CLIENT_TIMEOUT_S = 1.0
TIMEOUT_DELAY_S = 1.3


@dataclass
class WeChatRig:
    """Everything a WeChat-specific test may want to reach into."""

    harness: Harness
    sandbox: WeChatPaySandbox
    server: RunningServer
    provider: WeChatPayProvider
    delivered: list[tuple[str, bytes]]  # (url, body) of every notification the emulator sent


def _prepay_id(result: ChargeResult) -> str:
    prepay_id = result.raw.get("prepay_id")
    if prepay_id:
        return str(prepay_id)
    package = (result.client_params or {}).get("package", "")
    return package.removeprefix("prepay_id=")


@contextmanager
def make_wechat_rig(
    *, appid: str = APPID, mch_id: str = MCH_ID, api_key: str = API_KEY
) -> Iterator[WeChatRig]:
    ledger = SandboxLedger(id_prefix="42000", payer_prefix="o")
    sandbox = WeChatPaySandbox(ledger, appid=appid, mch_id=mch_id, api_key=api_key)
    server = serve(sandbox)
    provider = WeChatPayProvider(
        appid=appid,
        mch_id=mch_id,
        api_key=api_key,
        api_base=server.base_url,
        timeout=CLIENT_TIMEOUT_S,
        refund_notify_url=NOTIFY_URL,
    )
    delivered: list[tuple[str, bytes]] = []

    def collect_notifications() -> list[tuple[bytes, str]]:
        batch: list[bytes] = []

        def transport(url: str, body: bytes) -> tuple[int, bytes]:
            delivered.append((url, body))
            batch.append(body)
            ack = provider.ack(True)
            return ack.status, ack.body

        sandbox.deliver_due(transport=transport)
        return [(body, "text/xml") for body in batch]

    harness = Harness(
        name="wechat",
        channel=Channel.WECHAT,
        provider=provider,
        ledger=ledger,
        code_prefix="13",
        notify_url=NOTIFY_URL,
        collect_notifications=collect_notifications,
        jsapi_reference=_prepay_id,
    )
    try:
        yield WeChatRig(harness, sandbox, server, provider, delivered)
    finally:
        provider.close_http()
        server.shutdown()
        server.server.server_close()


@contextmanager
def make_wechat_harness() -> Iterator[Harness]:
    with make_wechat_rig() as rig:
        yield rig.harness
