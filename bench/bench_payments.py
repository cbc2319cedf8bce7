"""Benchmark of the payment hot paths (not part of the test suite).

    .venv/bin/python bench/bench_payments.py            # SQLite file in a temp dir + fakeredis
    DATABASE_URL=postgresql+psycopg://… .venv/bin/python bench/bench_payments.py

Everything runs in one process: the app (Flask test client), the real wechatpy / python-alipay-sdk
adapters and the loopback emulators they call over HTTP on 127.0.0.1. Reports medians and 95th/99th
percentiles in milliseconds, measured in one run (read ratios, not absolutes, on a shared machine):
- a cashier's "create bill + show WeChat QR" (two POSTs, one unified order over HTTP to the emulator);
- the provider's payment notification, verified, applied exactly once and acknowledged (PAY-06 asks
  for p99 well under WeChat's 5 s; the same for a duplicate notification, which must be cheaper);
- the same for Alipay (RSA2 verification instead of MD5);
- the notification signature checks alone (adapter level, no database).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app import create_app
from app.billing import providers
from app.core.db import Base, commit, db
from payments.base import Channel


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": round(statistics.median(ordered), 3),
        "p95_ms": round(ordered[max(int(len(ordered) * 0.95) - 1, 0)], 3),
        "p99_ms": round(ordered[max(int(len(ordered) * 0.99) - 1, 0)], 3),
        "n": len(ordered),
    }


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def main() -> None:
    rounds = int(os.environ.get("BENCH_ROUNDS", "200"))
    tmp = tempfile.mkdtemp()
    url = os.environ.get("DATABASE_URL") or f"sqlite:///{tmp}/bench.db"
    app = create_app({"DATABASE_URL": url, "LOG_LEVEL": "ERROR", "APP_ENV": "test"})
    from app.accounts.services import hash_password  # noqa: F401 - imported for parity with the app
    from app.core.auth import Role
    from tests.factories import make_centre, make_staff, token_for

    results: dict[str, Any] = {"database": url.split(":")[0], "rounds": rounds}
    with app.app_context():
        Base.metadata.drop_all(db.engine)
        Base.metadata.create_all(db.engine)
        centre = make_centre()
        cashier = make_staff(Role.CASHIER, centre)
        token = token_for(cashier)
        commit()
        sandboxes = {channel: providers.sandbox(channel) for channel in Channel}
        wechat_provider, alipay_provider = providers.get(Channel.WECHAT), providers.get(Channel.ALIPAY)

    client = app.test_client()
    auth = {"Authorization": f"Bearer {token}"}

    def post(path: str, body: dict[str, Any]) -> Any:
        response = client.post(path, json=body, headers={**auth, "Idempotency-Key": f"bench-{uuid.uuid4()}"})
        assert response.status_code == 201, response.get_json()
        return response.get_json()

    def deliver(path: str, body: bytes, content_type: str) -> float:
        start = time.perf_counter()
        response = client.post(path, data=body, headers={"Content-Type": content_type})
        elapsed = (time.perf_counter() - start) * 1000
        assert response.status_code == 200, response.get_data()
        return elapsed

    for channel, content_type in (
        (Channel.WECHAT, "text/xml"),
        (Channel.ALIPAY, "application/x-www-form-urlencoded"),
    ):
        sandbox = sandboxes[channel]
        create_ms: list[float] = []
        first_ms: list[float] = []
        duplicate_ms: list[float] = []
        for _ in range(rounds):
            order: dict[str, Any] = {}

            def create(order: dict[str, Any] = order, channel: Channel = channel) -> None:
                bill = post("/api/v1/billing/bills", {"subject": "门诊诊查费", "amount_fen": 2500})
                order.update(
                    post(
                        f"/api/v1/billing/bills/{bill['id']}/payments",
                        {"mode": "merchant_qr", "channel": str(channel)},
                    )
                )

            create_ms.append(timed(create))
            ledger = sandbox.ledger
            ledger.scan(order["qr_content"], ledger.new_payer())
            captured: list[tuple[str, bytes]] = []

            def capture(
                url: str, body: bytes, captured: list[tuple[str, bytes]] = captured
            ) -> tuple[int, bytes]:
                captured.append((url, body))
                return 599, b""  # not acknowledged: it is delivered below, timed

            sandbox.deliver_due(transport=capture)
            (notify_url, body) = captured[-1]
            path = urllib.parse.urlsplit(notify_url).path
            first_ms.append(deliver(path, body, content_type))
            duplicate_ms.append(deliver(path, body, content_type))
        results[f"{channel}: create bill + QR order (2 POSTs, 1 provider call)"] = summary(create_ms)
        results[f"{channel}: notification applied (verify, PAID, ack)"] = summary(first_ms)
        results[f"{channel}: duplicate notification (verify, ack)"] = summary(duplicate_ms)
        results[f"{channel}: duplicate/first median ratio"] = round(
            statistics.median(duplicate_ms) / statistics.median(first_ms), 2
        )
        provider = wechat_provider if channel is Channel.WECHAT else alipay_provider

        def verify(provider: Any = provider, body: bytes = body, kind: str = content_type) -> None:
            provider.parse_callback(body, kind)

        verify_ms = [timed(verify) for _ in range(rounds)]
        results[f"{channel}: signature check + parse only"] = summary(verify_ms)

    print(json.dumps(results, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
