"""Loopback emulators of the payment providers, for tests and the demo (never production).

- `ledger.py`: the provider-neutral state (payers, trades, refunds, scripts, faults, notices).
- `wechat.py`: WeChat Pay API v2 (XML, MD5) over a ledger, as a WSGI app.
- `alipay.py`: the Alipay OpenAPI gateway (GET, RSA2) over a ledger, as a WSGI app.
- `serve()` below runs any of them on 127.0.0.1 on a free port in a background thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from werkzeug.serving import BaseWSGIServer, make_server

LOOPBACK = "127.0.0.1"


@dataclass
class RunningServer:
    server: BaseWSGIServer
    thread: threading.Thread

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.server.server_port}/"

    def shutdown(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=5)
        self.server.server_close()


def serve(app: Callable[..., Any], port: int = 0) -> RunningServer:
    """Serve a WSGI app on 127.0.0.1 (threaded) until `shutdown()`."""
    server = make_server(LOOPBACK, port, app, threaded=True)
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},  # float-ok: seconds (a quick shutdown)
        name=f"sandbox-{server.server_port}",
        daemon=True,
    )
    thread.start()
    return RunningServer(server, thread)


class Ticker:
    """Calls `fn` every `interval` seconds in a daemon thread (notification delivery in demos)."""

    def __init__(self, fn: Callable[[], object], interval: float = 0.5) -> None:  # float-ok: seconds
        self._fn, self._interval = fn, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sandbox-ticker", daemon=True)

    def start(self) -> Ticker:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._fn()
            except Exception:  # noqa: S112 - a demo ticker must survive one bad delivery
                continue
