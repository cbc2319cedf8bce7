"""The payment providers of this process: real adapters from settings, pointed at the in-process
loopback emulators when `PAYMENT_SANDBOX` is on (development, tests, the demo).

`get(channel)` is how services reach a provider; `sandbox(channel)` gives the emulator (tests and
the demo's payer simulator drive it). Tests may swap a provider with `install(app, provider)`.

One WeChat Pay merchant serves several WeChat apps, and an openid belongs to one appid: JSAPI
orders must be made (and later queried, closed, refunded) with the payer's app. The default app
is `WECHATPAY_APPID`; `wechat_app_ids(config)` names the others, by the keys stored in
`PaymentOrder.payer_app`:

- "mp": the mini-program (`WECHAT_MP_APPID`; in sandbox mode, when empty, `SANDBOX_MP_APPID` so the
  demo exercises the path; outside both, the default appid, as before);
- "oa": the official account of the H5 cashier's web OAuth, when `WECHAT_OAUTH_APPID` is set (its
  orders use "oa" only when it differs from `WECHATPAY_APPID`: `h5_payer_app`).

In sandbox mode the WeChat emulator accepts requests signed for any of these appids.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask, current_app

from payments.base import Channel, PaymentProvider

log = logging.getLogger(__name__)

EXTENSION = "payment_providers"
SANDBOX_EXTENSION = "payment_sandboxes"


_LOCK = threading.Lock()

MP_APP = "mp"  # PaymentOrder.payer_app of mini-program payments (WECHAT_MP_APPID)
OA_APP = "oa"  # PaymentOrder.payer_app of H5 payments when WECHAT_OAUTH_APPID != WECHATPAY_APPID
SANDBOX_MP_APPID = "wxsandboxminiprog"  # the mini-program's appid in sandbox mode when none is set


def wechat_app_ids(config: Mapping[str, Any]) -> dict[str, str]:
    """The WeChat apps of the merchant besides the default one (`WECHATPAY_APPID`), by key."""
    default = str(config["WECHATPAY_APPID"])
    mp = str(config.get("WECHAT_MP_APPID") or "")
    if not mp:
        mp = SANDBOX_MP_APPID if config.get("PAYMENT_SANDBOX") else default
    apps = {MP_APP: mp}
    oa = str(config.get("WECHAT_OAUTH_APPID") or "")
    if oa:
        apps[OA_APP] = oa
    return apps


def h5_payer_app(channel: Channel | str) -> str | None:
    """The `payer_app` of an H5 cashier (official-account) payer: None (the default app) unless
    the web OAuth runs on another appid than WECHATPAY_APPID (then its openids belong to it)."""
    if Channel(channel) is not Channel.WECHAT:
        return None
    oa = str(current_app.config.get("WECHAT_OAUTH_APPID") or "")
    return OA_APP if oa and oa != current_app.config["WECHATPAY_APPID"] else None


def init_app(app: Flask) -> None:
    """Nothing is built at start-up: the providers (and the sandboxes) come up on first use."""
    app.extensions.setdefault(EXTENSION, None)


def _ensure(app: Flask) -> dict[Channel, PaymentProvider]:
    with _LOCK:
        if app.extensions.get(EXTENSION) is None:
            _build(app)
        providers: dict[Channel, PaymentProvider] = app.extensions[EXTENSION]
        return providers


def _build(app: Flask) -> None:
    providers: dict[Channel, PaymentProvider] = {}
    sandboxes: dict[Channel, Any] = {}
    timeout = float(app.config["PAYMENT_TIMEOUT_SECONDS"])  # float-ok: seconds
    wechat_base = app.config["WECHATPAY_API_BASE"] or None
    alipay_gateway = app.config["ALIPAY_GATEWAY"] or None
    if app.config["PAYMENT_SANDBOX"]:
        wechat_base, alipay_gateway, sandboxes = _start_sandboxes(app)
    from payments.alipay import AlipayProvider
    from payments.wechat import WeChatPayProvider

    providers[Channel.WECHAT] = WeChatPayProvider(
        appid=app.config["WECHATPAY_APPID"],
        mch_id=app.config["WECHATPAY_MCH_ID"],
        api_key=app.config["WECHATPAY_API_KEY"],
        api_base=wechat_base,
        mch_cert=app.config["WECHATPAY_CERT_PATH"] or None,
        mch_key=app.config["WECHATPAY_KEY_PATH"] or None,
        timeout=timeout,
        refund_notify_url=_notify_url(app, Channel.WECHAT, "refund"),
        app_ids=wechat_app_ids(app.config),
    )
    private_pem, public_pem = _alipay_keys(app)
    providers[Channel.ALIPAY] = AlipayProvider(
        app_id=app.config["ALIPAY_APP_ID"],
        seller_id=app.config["ALIPAY_SELLER_ID"],
        app_private_key_pem=private_pem,
        alipay_public_key_pem=public_pem,
        gateway=alipay_gateway,
        timeout=timeout,
    )
    app.extensions[EXTENSION] = providers
    app.extensions[SANDBOX_EXTENSION] = sandboxes


def _sandbox_dir(app: Flask) -> Path:
    path = Path(app.instance_path) / "payment-sandbox"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _alipay_keys(app: Flask) -> tuple[str, str]:
    if app.config["ALIPAY_APP_PRIVATE_KEY_PATH"]:
        private_pem = Path(app.config["ALIPAY_APP_PRIVATE_KEY_PATH"]).read_text()
        public_pem = Path(app.config["ALIPAY_PUBLIC_KEY_PATH"]).read_text()
        return private_pem, public_pem
    keys = app.extensions["payment_sandbox_keys"]
    return keys["app_private"], keys["alipay_public"]


def _start_sandboxes(app: Flask) -> tuple[str, str, dict[Channel, Any]]:
    from payments.sandbox import Ticker, serve
    from payments.sandbox.alipay import AlipaySandbox
    from payments.sandbox.keys import cached_key_pair
    from payments.sandbox.wechat import WeChatPaySandbox

    directory = _sandbox_dir(app)
    app_keys = cached_key_pair(directory, "alipay-app")
    platform_keys = cached_key_pair(directory, "alipay-platform")
    app.extensions["payment_sandbox_keys"] = {
        "app_private": app_keys.private_pem,
        "alipay_public": platform_keys.public_pem,
    }
    wechat = WeChatPaySandbox(
        appid=app.config["WECHATPAY_APPID"],
        mch_id=app.config["WECHATPAY_MCH_ID"],
        api_key=app.config["WECHATPAY_API_KEY"],
        extra_appids=wechat_app_ids(app.config).values(),  # the mini-program, the official account
    )
    alipay = AlipaySandbox(
        app_id=app.config["ALIPAY_APP_ID"],
        seller_id=app.config["ALIPAY_SELLER_ID"],
        app_public_key_pem=app_keys.public_pem,
        alipay_private_key_pem=platform_keys.private_pem,
    )
    wechat_server, alipay_server = serve(wechat), serve(alipay)
    sandboxes: dict[Channel, Any] = {Channel.WECHAT: wechat, Channel.ALIPAY: alipay}
    app.extensions["payment_sandbox_servers"] = {Channel.WECHAT: wechat_server, Channel.ALIPAY: alipay_server}
    if app.config.get("LUOHU_EMBEDDED_WORKER") or app.config["APP_ENV"] == "development":
        # The demo: deliver the emulators' notifications over HTTP like the providers do.
        for sandbox in sandboxes.values():
            Ticker(sandbox.deliver_due, interval=1).start()
    log.info(
        "payment sandboxes running",
        extra={"wechat": wechat_server.base_url, "alipay": alipay_server.base_url + "gateway.do"},
    )
    return wechat_server.base_url, alipay_server.base_url + "gateway.do", sandboxes


def _notify_url(app: Flask, channel: Channel, kind: str = "pay") -> str:
    return f"{app.config['PAYMENT_PUBLIC_BASE_URL'].rstrip('/')}/callbacks/{channel}/{kind}"


def notify_url(channel: Channel, kind: str = "pay") -> str:
    return _notify_url(current_app, channel, kind)


def get(channel: Channel | str) -> PaymentProvider:
    return _ensure(current_app)[Channel(channel)]


def sandbox(channel: Channel | str) -> Any:
    """The in-process emulator of a channel (None when PAYMENT_SANDBOX is off)."""
    _ensure(current_app)
    return current_app.extensions.get(SANDBOX_EXTENSION, {}).get(Channel(channel))


def install(app: Flask, provider: PaymentProvider) -> None:
    """Replace one channel's provider (tests); `restore(app)` puts the configured one back."""
    built = _ensure(app)
    channel = Channel(provider.channel)
    app.extensions.setdefault("payment_providers_replaced", {}).setdefault(channel, built[channel])
    built[channel] = provider


def restore(app: Flask) -> None:
    replaced: dict[Channel, PaymentProvider] = app.extensions.pop("payment_providers_replaced", {})
    if replaced:
        app.extensions[EXTENSION].update(replaced)
