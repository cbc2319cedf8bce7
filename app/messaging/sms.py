"""SMS via the outbox, with a global daily budget and its alarm (DATA-08, API4).

`send_sms(...)`, inside a business transaction:
  1. reserves one message of the day's budget (`SMS_DAILY_BUDGET`, China calendar day) in Redis;
     crossing `SMS_BUDGET_ALARM_PERCENT` fires the alarm once a day, and past the budget every
     request is refused (429 `sms_budget_exhausted`) and fires the alarm once more; Redis down
     means refused (503), never unmetered;
  2. writes an outbox row `sms.send` whose payload is *sealed* (AES-GCM with the field keys): the
     number and the code never sit in clear in the database.

The outbox handler `deliver` opens the payload, drops a message whose `not_after` has passed (a
one-time code nobody can use any more), and sends it through the configured `SmsSender`
(`SMS_BACKEND`: `console` logs the text, `fake` records it; a real provider comes later and
production refuses both). The dedupe key is the provider idempotency key.

Alarm hooks: `ALARM_HOOKS` (callables taking a `BudgetAlarm`); the default logs at ERROR and
counts in Redis (`sms:budget:alarms:<day>`), where monitoring can read it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any, cast

from flask import current_app
from redis.exceptions import RedisError

from app.core import clock, outbox
from app.core.crypto import keyring
from app.core.errors import ProviderUnavailable, RateLimited
from app.core.redis import get_redis
from notifications.fake import ConsoleSmsSender, FakeSmsSender
from notifications.sms import SmsMessage, SmsRejected, SmsSender

log = logging.getLogger(__name__)

TOPIC = "sms.send"
_SEAL_CONTEXT = "outbox.sms.send"
BACKENDS: dict[str, Callable[[], SmsSender]] = {"console": ConsoleSmsSender, "fake": FakeSmsSender}


@dataclass(frozen=True)
class BudgetAlarm:
    day: str  # ISO date, China time
    used: int
    budget: int
    kind: str  # "threshold" (crossed the alarm percentage) or "exhausted" (refusing)


def _log_alarm(alarm: BudgetAlarm) -> None:
    log.error(
        "SMS daily budget alarm",
        extra={"day": alarm.day, "used": alarm.used, "budget": alarm.budget, "alarm": alarm.kind},
    )


ALARM_HOOKS: list[Callable[[BudgetAlarm], None]] = [_log_alarm]
alarms_raised = 0  # this process's count, for tests and a future metrics endpoint


def _raise_alarm(alarm: BudgetAlarm) -> None:
    global alarms_raised
    alarms_raised += 1
    try:
        redis = get_redis()
        redis.incr(f"sms:budget:alarms:{alarm.day}")
        redis.expire(f"sms:budget:alarms:{alarm.day}", int(timedelta(days=30).total_seconds()))
    except RedisError:
        pass
    for hook in list(ALARM_HOOKS):
        try:
            hook(alarm)
        except Exception:
            log.exception("SMS budget alarm hook failed")


def _seconds_to_midnight() -> int:
    now = clock.local(clock.now())
    midnight = datetime.combine(now.date() + timedelta(days=1), time(0), tzinfo=clock.CHINA)
    return max(int((midnight - now).total_seconds()), 1)


def reserve_daily_budget() -> None:
    """Count one SMS against today's budget, or refuse (429 past it, 503 when Redis is down)."""
    budget = int(current_app.config["SMS_DAILY_BUDGET"])
    alarm_at = max(1, budget * int(current_app.config["SMS_BUDGET_ALARM_PERCENT"]) // 100)
    day = clock.today_local().isoformat()
    key = f"sms:budget:{day}"
    try:
        redis = get_redis()
        used = int(redis.incr(key))
        if used == 1:
            redis.expire(key, int(timedelta(days=2).total_seconds()))
    except RedisError as exc:
        log.error("SMS budget unavailable, refusing (fail closed)", extra={"error_type": type(exc).__name__})
        raise ProviderUnavailable(
            "服务繁忙，请稍后再试", code="service_unavailable", headers={"Retry-After": "30"}
        ) from exc
    if used > budget:
        if used == budget + 1:
            _raise_alarm(BudgetAlarm(day, used - 1, budget, "exhausted"))
        wait = _seconds_to_midnight()
        raise RateLimited(
            "今日短信发送量已达系统上限，请明天再试",
            code="sms_budget_exhausted",
            headers={"Retry-After": str(wait)},
        )
    if used == alarm_at:
        _raise_alarm(BudgetAlarm(day, used, budget, "threshold"))


def send_sms(
    *,
    phone: str,
    template: str,
    params: Mapping[str, str],
    dedupe_key: str,
    not_after: datetime | None = None,
) -> None:
    """Queue one SMS in the current transaction (after the budget check). Validates eagerly."""
    SmsMessage.create(phone=phone, template=template, params=params, idempotency_key=dedupe_key)
    reserve_daily_budget()
    sealed = keyring().encrypt(
        json.dumps({"phone": phone, "params": dict(params)}, ensure_ascii=False), _SEAL_CONTEXT
    )
    payload: dict[str, Any] = {
        "template": template,
        "sealed": sealed,
        "not_after": not_after.isoformat() if not_after else None,
    }
    outbox.enqueue(TOPIC, payload, dedupe_key=dedupe_key)


def sender() -> SmsSender:
    """The application's SMS sender (`app.extensions["sms_sender"]`, built from `SMS_BACKEND`)."""
    existing = current_app.extensions.get("sms_sender")
    if existing is not None:
        return cast(SmsSender, existing)
    if current_app.config["APP_ENV"] == "production":
        raise RuntimeError("no SMS provider is configured for production (console and fake send nothing)")
    backend = str(current_app.config["SMS_BACKEND"])
    if backend not in BACKENDS:
        raise RuntimeError(f"unknown SMS_BACKEND {backend!r}; one of {sorted(BACKENDS)}")
    built = BACKENDS[backend]()
    current_app.extensions["sms_sender"] = built
    return built


@outbox.handler(TOPIC)
def deliver(payload: dict[str, Any], dedupe_key: str) -> None:
    """Outbox handler: open, drop if expired, send. Raising means "retry later"."""
    not_after = payload.get("not_after")
    if not_after and clock.now() > datetime.fromisoformat(not_after):
        log.info("SMS dropped: expired before delivery", extra={"dedupe_key": dedupe_key})
        return
    opened = json.loads(keyring().decrypt(str(payload["sealed"]), _SEAL_CONTEXT))
    try:
        message = SmsMessage.create(
            phone=opened["phone"],
            template=str(payload["template"]),
            params=opened["params"],
            idempotency_key=dedupe_key,
        )
        sender().send(message)
    except SmsRejected as exc:
        # Permanent: retrying cannot help. Logged (without the number) for operators.
        log.error("SMS rejected", extra={"dedupe_key": dedupe_key, "reason": str(exc)})
