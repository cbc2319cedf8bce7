"""DATA-08 / API4: OTP limits per phone, per WeChat user, per network and the global budget.

Every refusal is a 429 with Retry-After and a Chinese message saying when to retry, writes no
outbox row and sends no SMS.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from flask import Flask

from app.core import clock
from app.institutions.models import Institution
from app.messaging import sms as messaging
from app.mp_accounts.services import identity
from app.residents.models import Resident
from notifications.fake import FakeSmsSender
from tests.factories_residents import make_resident
from tests.miniprogram.conftest import PHONE, Mp


def _bind(client, resident: Resident):
    return client.post("/mp/v1/identity/bind", json={"name": resident.name, "id_number": resident.id_number})


def test_second_request_within_a_minute_is_429_and_sends_nothing(
    mp: Mp, resident: Resident, sms: FakeSmsSender
) -> None:
    with time_machine.travel(clock.now(), tick=False) as traveller:
        alice = mp.login()
        assert _bind(alice, resident).status_code == 202
        traveller.shift(timedelta(seconds=20))
        again = _bind(alice, resident)

    assert again.status_code == 429
    assert again.json["code"] == "otp_rate_limited"
    assert again.headers["Retry-After"] == "40"
    assert again.json["message"] == "验证码已发送，请40秒后再获取"
    mp.run_jobs()
    assert sms.calls == 1
    assert mp.outbox_count() == 1


def test_sixth_request_in_an_hour_is_429(mp: Mp, resident: Resident, sms: FakeSmsSender) -> None:
    with time_machine.travel(clock.now(), tick=False) as traveller:
        alice = mp.login()
        for _ in range(5):
            assert _bind(alice, resident).status_code == 202
            mp.run_jobs()
            traveller.shift(timedelta(seconds=61))
        sixth = _bind(alice, resident)
        mp.run_jobs()

    assert sixth.status_code == 429
    assert int(sixth.headers["Retry-After"]) == 3600 - 5 * 61
    assert sixth.json["message"] == "该手机号获取验证码过于频繁，请55分钟后再试"
    assert len(sms.sent) == 5


def test_eleventh_request_in_a_day_is_429(mp: Mp, resident: Resident, sms: FakeSmsSender) -> None:
    with time_machine.travel(clock.now(), tick=False) as traveller:
        alice = mp.login()
        for _ in range(10):
            assert _bind(alice, resident).status_code == 202
            mp.run_jobs()  # each code is delivered while it is still alive
            traveller.shift(timedelta(minutes=15))
        eleventh = _bind(alice, resident)
        later = clock.local(clock.now() + timedelta(seconds=int(eleventh.headers["Retry-After"])))
        mp.run_jobs()

    assert eleventh.status_code == 429
    assert int(eleventh.headers["Retry-After"]) == 86400 - 10 * 15 * 60
    assert eleventh.json["message"].startswith("该手机号今日获取验证码次数已达上限，请于")
    assert f"{later:%H:%M}后再试" in eleventh.json["message"]
    assert len(sms.sent) == 10


def test_limits_are_per_phone(mp: Mp, resident: Resident, home_centre: Institution) -> None:
    alice, bob = mp.login("oAlice"), mp.login("oBob")
    other = make_resident(home_centre, phone="13900000001")
    assert _bind(alice, resident).status_code == 202
    assert _bind(bob, other).status_code == 202
    assert _bind(bob, resident).status_code == 429  # same phone as Alice's request


def test_per_user_limit_across_phones(mp: Mp, home_centre: Institution, sms: FakeSmsSender) -> None:
    alice = mp.login()
    residents = [make_resident(home_centre, phone=f"1390000{n:04d}") for n in range(9)]
    answers = [_bind(alice, r) for r in residents]
    assert [a.status_code for a in answers] == [202] * 8 + [429]
    assert answers[-1].json["message"].startswith("您获取验证码过于频繁")
    mp.run_jobs()
    assert len(sms.sent) == 8


def test_per_network_limit(mp: Mp, home_centre: Institution, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(identity, "IP_OTP_RULES", ((3600, 2, "当前网络获取验证码过于频繁，请{when}再试"),))
    people = [(mp.login(f"oUser{n}"), make_resident(home_centre, phone=f"1380000{n:04d}")) for n in range(3)]
    answers = [_bind(client, r) for client, r in people]
    assert [a.status_code for a in answers] == [202, 202, 429]
    assert answers[-1].json["message"].startswith("当前网络获取验证码过于频繁")


def test_identity_guessing_is_limited(mp: Mp, resident: Resident) -> None:
    alice = mp.login()
    for _ in range(10):
        wrong = alice.post("/mp/v1/identity/bind", json={"name": "王五", "id_number": resident.id_number})
        assert wrong.json["code"] == "identity_mismatch"
    right = _bind(alice, resident)
    assert (right.status_code, right.json["code"]) == (429, "identity_attempts_exceeded")
    assert "实名核验尝试次数过多" in right.json["message"]


def test_daily_budget_alarm_and_cap(
    app: Flask, mp: Mp, home_centre: Institution, sms: FakeSmsSender, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(app.config, "SMS_DAILY_BUDGET", 4)
    monkeypatch.setitem(app.config, "SMS_BUDGET_ALARM_PERCENT", 50)
    alarms: list[messaging.BudgetAlarm] = []
    monkeypatch.setattr(messaging, "ALARM_HOOKS", [*messaging.ALARM_HOOKS, alarms.append])
    people = [(mp.login(f"oUser{n}"), make_resident(home_centre, phone=f"1370000{n:04d}")) for n in range(5)]

    answers = [_bind(client, r) for client, r in people]

    assert [a.status_code for a in answers] == [202, 202, 202, 202, 429]
    assert answers[-1].json["code"] == "sms_budget_exhausted"
    assert 0 < int(answers[-1].headers["Retry-After"]) <= 86400
    assert [(a.kind, a.used, a.budget) for a in alarms] == [("threshold", 2, 4), ("exhausted", 4, 4)]
    assert int(app.extensions["redis"].get(f"sms:budget:alarms:{clock.today_local().isoformat()}")) == 2
    mp.run_jobs()
    assert len(sms.sent) == 4
    assert mp.outbox_count() == 4
    assert PHONE not in [m.phone for m in sms.sent]
