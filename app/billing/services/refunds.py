"""Refund delivery: apply at the provider, query, notifications, retry and cancel (PAY-12)."""

from __future__ import annotations

from typing import Any

from app.core import outbox


@outbox.handler("billing.refund_apply")
def deliver_refund(payload: dict[str, Any], dedupe_key: str) -> None:
    raise NotImplementedError("refund delivery is being written")
