"""`app.messaging.sms`: SMS through the outbox (sealed payload, expiry, retries) and the daily budget."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import select

from app.core import clock, outbox
from app.core.db import commit, db
from app.core.errors import ProviderUnavailable, RateLimited
from app.core.outbox import OutboxMessage, OutboxStatus
from app.messaging import sms as messaging
from notifications import SmsRejected, SmsUnavailable
from notifications.fake import ConsoleSmsSender, FakeSmsSender
from tests.miniprogram.conftest import redis_down

PHONE = "13812345678"
PARAMS = {"code": "246810", "minutes": "5", "purpose": "测试"}


@pytest.fixture
def sender(app: Flask) -> Iterator[FakeSmsSender]:
    fake = FakeSmsSender()
    app.extensions["sms_sender"] = fake
    yield fake
    app.extensions.pop("sms_sender", None)


def _queue(key: str | None = None, not_after_minutes: int | None = 5) -> OutboxMessage:
    key = key or f"sms:test:{uuid.uuid4().hex}"
    not_after = clock.now() + timedelta(minutes=not_after_minutes) if not_after_minutes is not None else None
    messaging.send_sms(phone=PHONE, template="otp", params=PARAMS, dedupe_key=key, not_after=not_after)
    commit()
    return db.session.execute(select(OutboxMessage).where(OutboxMessage.dedupe_key == key)).scalar_one()


def test_payload_is_sealed_and_delivered(app: Flask, sender: FakeSmsSender) -> None:
    message = _queue()
    stored = json.dumps(message.payload)
    assert PHONE not in stored and "246810" not in stored
    assert message.payload["template"] == "otp"

    assert outbox.deliver(str(message.id)) == "sent"

    assert [(m.phone, m.params_dict(), m.idempotency_key) for m in sender.sent] == [
        (PHONE, PARAMS, message.dedupe_key)
    ]


def test_redelivery_sends_once(app: Flask, sender: FakeSmsSender) -> None:
    message = _queue()
    messaging.deliver(dict(message.payload), message.dedupe_key)
    messaging.deliver(dict(message.payload), message.dedupe_key)
    assert sender.calls == 2
    assert len(sender.sent) == 1


def test_expired_code_is_dropped_not_sent(app: Flask, sender: FakeSmsSender) -> None:
    message = _queue(not_after_minutes=-1)
    assert outbox.deliver(str(message.id)) == "sent"  # done with: nothing left to do
    assert sender.calls == 0


def test_transient_failure_is_retried_by_the_outbox(app: Flask, sender: FakeSmsSender) -> None:
    sender.fail_next(SmsUnavailable("provider timeout"))
    message = _queue(not_after_minutes=None)

    assert outbox.deliver(str(message.id)) == "failed"
    db.session.refresh(message)
    assert (message.status, message.attempts) == (OutboxStatus.PENDING, 1)
    assert message.last_error is not None and PHONE not in message.last_error

    message.next_attempt_at = clock.now()
    commit()
    assert outbox.deliver(str(message.id)) == "sent"
    assert len(sender.sent) == 1


def test_permanent_rejection_is_not_retried(
    app: Flask, sender: FakeSmsSender, caplog: pytest.LogCaptureFixture
) -> None:
    sender.fail_next(SmsRejected("blocked recipient"))
    message = _queue()
    with caplog.at_level(logging.ERROR, logger="app.messaging.sms"):
        assert outbox.deliver(str(message.id)) == "sent"
    assert "SMS rejected" in caplog.text
    assert sender.sent == []


def test_invalid_messages_fail_fast(app: Flask, sender: FakeSmsSender) -> None:
    with pytest.raises(SmsRejected):
        messaging.send_sms(phone="123", template="otp", params=PARAMS, dedupe_key="k")
    with pytest.raises(SmsRejected):
        messaging.send_sms(phone=PHONE, template="nope", params=PARAMS, dedupe_key="k")


def test_budget_alarm_fires_once_at_the_threshold(
    app: Flask, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(app.config, "SMS_DAILY_BUDGET", 10)
    monkeypatch.setitem(app.config, "SMS_BUDGET_ALARM_PERCENT", 80)
    seen: list[messaging.BudgetAlarm] = []
    monkeypatch.setattr(messaging, "ALARM_HOOKS", [*messaging.ALARM_HOOKS, seen.append])
    before = messaging.alarms_raised
    with caplog.at_level(logging.ERROR, logger="app.messaging.sms"):
        for _ in range(10):
            messaging.reserve_daily_budget()
        with pytest.raises(RateLimited) as refused:
            messaging.reserve_daily_budget()
        with pytest.raises(RateLimited):
            messaging.reserve_daily_budget()
    assert [(a.kind, a.used) for a in seen] == [("threshold", 8), ("exhausted", 10)]
    assert messaging.alarms_raised == before + 2
    assert caplog.text.count("SMS daily budget alarm") == 2
    assert refused.value.code == "sms_budget_exhausted"
    assert refused.value.message == "今日短信发送量已达系统上限，请明天再试"


def test_a_failing_alarm_hook_does_not_break_sending(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(app.config, "SMS_DAILY_BUDGET", 1)
    monkeypatch.setitem(app.config, "SMS_BUDGET_ALARM_PERCENT", 100)

    def broken(alarm: messaging.BudgetAlarm) -> None:
        raise RuntimeError("pager down")

    monkeypatch.setattr(messaging, "ALARM_HOOKS", [broken])
    messaging.reserve_daily_budget()


def test_budget_fails_closed_without_redis(app: Flask) -> None:
    with redis_down(app), pytest.raises(ProviderUnavailable):
        messaging.reserve_daily_budget()


def test_sender_selection(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    app.extensions.pop("sms_sender", None)
    try:
        assert isinstance(messaging.sender(), ConsoleSmsSender)  # the development default
        app.extensions.pop("sms_sender")
        monkeypatch.setitem(app.config, "SMS_BACKEND", "fake")
        assert isinstance(messaging.sender(), FakeSmsSender)
        app.extensions.pop("sms_sender")
        monkeypatch.setitem(app.config, "SMS_BACKEND", "carrier-pigeon")
        with pytest.raises(RuntimeError, match="SMS_BACKEND"):
            messaging.sender()
        monkeypatch.setitem(app.config, "APP_ENV", "production")
        with pytest.raises(RuntimeError, match="production"):
            messaging.sender()
    finally:
        app.extensions.pop("sms_sender", None)
