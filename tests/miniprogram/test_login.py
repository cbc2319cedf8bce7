"""POST /mp/v1/auth/login and the resident token (`rt_`): issue, use, expire, log out."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import pytest
import time_machine
from flask import Flask
from sqlalchemy import select

from app.core import clock
from app.core.audit import AuditEvent
from app.core.auth import Role
from app.core.db import db
from app.integrations.sandbox.wechat_api import EmulatorControl, RunningEmulator, serve
from app.integrations.sandbox.wechat_state import Fault, WeChatState
from app.integrations.wechat_mp import WeChatMiniProgram
from app.integrations.wechat_mp_fake import FakeMiniProgramAuth
from app.mp_accounts import providers
from app.mp_accounts.models import MpSession, MpUser
from app.mp_accounts.services import sessions
from tests.factories import make_staff, token_for
from tests.miniprogram.conftest import Mp, redis_down

APPID, SECRET = "wx-login-test", "login-test-secret"


def test_login_issues_a_resident_token_and_never_the_session_key(client, wechat: FakeMiniProgramAuth) -> None:
    response = client.post("/mp/v1/auth/login", json={"code": wechat.issue_code("oAlice", "uAlice")})

    assert response.status_code == 200, response.json
    body = response.json
    assert body["token"].startswith("rt_")
    assert body["token_type"] == "Bearer"
    assert body["is_new_user"] is True
    assert body["user"]["identity_bound"] is False
    assert body["idle_timeout_seconds"] == 120 * 60
    assert "session_key" not in response.get_data(as_text=True)
    assert "oAlice" not in response.get_data(as_text=True)  # the openid stays on the server
    user = db.session.execute(select(MpUser).where(MpUser.openid == "oAlice")).scalar_one()
    assert (str(user.id), user.unionid) == (body["user"]["id"], "uAlice")
    session = db.session.execute(select(MpSession).where(MpSession.user_id == user.id)).scalar_one()
    assert session.token_hash != body["token"] and body["token"] not in session.token_hash
    assert not any("session" in column.name and "key" in column.name for column in MpUser.__table__.columns)


def test_second_login_finds_the_same_user(mp: Mp) -> None:
    first = mp.login("oAlice").get("/mp/v1/auth/me").json
    second = mp.login("oAlice").get("/mp/v1/auth/me").json
    assert first["id"] == second["id"]
    assert db.session.execute(select(MpUser).where(MpUser.openid == "oAlice")).scalars().all().__len__() == 1


def test_login_is_audited(mp: Mp) -> None:
    me = mp.login("oAudit").get("/mp/v1/auth/me").json
    rows = (
        db.session.execute(
            select(AuditEvent).where(AuditEvent.object_type == "mp_user", AuditEvent.action == "login")
        )
        .scalars()
        .all()
    )
    assert [row.object_id for row in rows] == [me["id"]]


def test_reused_code_is_401(client, wechat: FakeMiniProgramAuth) -> None:
    code = wechat.issue_code("oAlice")
    assert client.post("/mp/v1/auth/login", json={"code": code}).status_code == 200

    again = client.post("/mp/v1/auth/login", json={"code": code})

    assert again.status_code == 401
    assert again.json["code"] == "wechat_code_invalid"
    assert "重新" in again.json["message"]


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        (Fault(errcode=45011), 429, "wechat_rate_limited"),
        (Fault(errcode=40226), 403, "wechat_risk_blocked"),
        (Fault(errcode=-1), 503, "wechat_unavailable"),
        (Fault(errcode=40013), 503, "wechat_unavailable"),
        (Fault(redirect_to="https://attacker.example/"), 503, "wechat_unavailable"),
    ],
)
def test_wechat_errors_are_clear_4xx_or_503(
    client, wechat: FakeMiniProgramAuth, fault: Fault, status: int, code: str
) -> None:
    wechat.fail_next("jscode2session", fault)
    response = client.post("/mp/v1/auth/login", json={"code": wechat.issue_code("oAlice")})
    assert response.status_code == status
    assert response.json["code"] == code
    if status == 429:
        assert response.headers["Retry-After"] == "60"
    assert db.session.execute(select(MpUser)).first() is None


@pytest.mark.parametrize(
    "body", [{}, {"code": ""}, {"code": "x" * 129}, {"code": "a b"}, {"code": "abc", "openid": "oEve"}]
)
def test_bad_login_bodies_are_422(client, body: dict) -> None:
    response = client.post("/mp/v1/auth/login", json=body)
    assert response.status_code == 422
    assert response.json["code"] == "validation_error"


# --- the real wechatpy client against the loopback emulator ------------------------------------


@pytest.fixture
def emulated(app: Flask) -> Iterator[tuple[EmulatorControl, WeChatMiniProgram]]:
    running: RunningEmulator = serve(WeChatState(appid=APPID, secret=SECRET))
    adapter = WeChatMiniProgram(
        APPID, SECRET, redis=app.extensions["redis"], api_base=running.url, timeout=(1.0, 1.0)
    )
    app.extensions["wechat_mp"] = adapter
    yield EmulatorControl(running.url), adapter
    adapter.close()
    running.stop()


def test_login_through_wechatpy_and_the_emulator(
    client, app: Flask, emulated: tuple[EmulatorControl, WeChatMiniProgram]
) -> None:
    control, adapter = emulated
    code = control.issue_code("oReal01", "uReal01")

    first = client.post("/mp/v1/auth/login", json={"code": code})
    assert first.status_code == 200, first.json
    assert "session_key" not in first.get_data(as_text=True)

    reused = client.post("/mp/v1/auth/login", json={"code": code})
    assert (reused.status_code, reused.json["code"]) == (401, "wechat_code_invalid")

    control.fail_next("jscode2session", Fault(errcode=45011))
    limited = client.post("/mp/v1/auth/login", json={"code": control.issue_code("oReal01")})
    assert (limited.status_code, limited.json["code"]) == (429, "wechat_rate_limited")

    second = client.post("/mp/v1/auth/login", json={"code": control.issue_code("oReal01")})
    assert second.status_code == 200
    assert second.json["user"]["id"] == first.json["user"]["id"]
    # One access token for all those calls, cached in Redis.
    assert control.stats()["token_requests"] == 1
    assert app.extensions["redis"].get(adapter.access_token_key) is not None


def test_emulator_shaped_codes_work_through_wechatpy(client, emulated) -> None:
    response = client.post("/mp/v1/auth/login", json={"code": "code-oDemoResident01"})
    assert response.status_code == 200


def test_wechat_timeout_is_503_within_budget(client, emulated) -> None:
    control, _ = emulated
    control.fail_next("jscode2session", Fault(delay=2.0))
    response = client.post("/mp/v1/auth/login", json={"code": control.issue_code("oSlow")})
    assert (response.status_code, response.json["code"]) == (503, "wechat_unavailable")


# --- the resident token ------------------------------------------------------------------------


def test_me_and_logout(mp: Mp) -> None:
    resident = mp.login()
    assert resident.get("/mp/v1/auth/me").status_code == 200

    assert resident.post("/mp/v1/auth/logout").status_code == 204

    after = resident.get("/mp/v1/auth/me")
    assert (after.status_code, after.json["code"]) == (401, "session_revoked")


def test_no_token_and_unknown_token_are_401(client) -> None:
    assert client.get("/mp/v1/auth/me").status_code == 401
    forged = client.get("/mp/v1/auth/me", headers={"Authorization": "Bearer rt_forged-token-value"})
    assert (forged.status_code, forged.json["code"]) == (401, "invalid_token")


def test_idle_token_is_401(mp: Mp) -> None:
    with time_machine.travel(clock.now(), tick=False) as traveller:
        resident = mp.login()
        traveller.shift(timedelta(minutes=119))
        assert resident.get("/mp/v1/auth/me").status_code == 200
        traveller.shift(timedelta(minutes=121))
        idle = resident.get("/mp/v1/auth/me")
    assert (idle.status_code, idle.json["code"]) == (401, "session_idle_timeout")


def test_token_expires_after_its_absolute_lifetime_even_when_used(mp: Mp) -> None:
    with time_machine.travel(clock.now(), tick=False) as traveller:
        resident = mp.login()
        for _ in range(24):
            traveller.shift(timedelta(minutes=59))
            assert resident.get("/mp/v1/auth/me").status_code == 200
        traveller.shift(timedelta(minutes=60))
        expired = resident.get("/mp/v1/auth/me")
    assert (expired.status_code, expired.json["code"]) == (401, "session_expired")
    assert resident.get("/mp/v1/auth/me").json["code"] == "session_revoked"


def test_staff_token_cannot_use_resident_routes_and_resident_token_not_staff_routes(
    api_as, centre, mp: Mp
) -> None:
    nurse = api_as(make_staff(Role.NURSE, centre))
    assert nurse.get("/mp/v1/auth/me").status_code == 403
    resident = mp.login()
    assert resident.get("/api/v1/staff").status_code == 403


def test_resident_principal(mp: Mp, app: Flask) -> None:
    token = mp.login("oPrincipal").token
    assert token is not None
    principal = sessions.principal_for_token(token)
    assert (principal.kind, principal.role, principal.institution_id) == ("resident", "resident", None)


# --- limits and configuration ------------------------------------------------------------------


def test_login_rate_limit_per_address(client, wechat: FakeMiniProgramAuth, monkeypatch) -> None:
    monkeypatch.setattr(sessions, "LOGIN_IP_LIMITS", ((60, 3),))
    for _ in range(3):
        assert client.post("/mp/v1/auth/login", json={"code": wechat.issue_code("oAlice")}).status_code == 200
    limited = client.post("/mp/v1/auth/login", json={"code": wechat.issue_code("oAlice")})
    assert (limited.status_code, limited.json["code"]) == (429, "login_rate_limited")
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert "秒后再试" in limited.json["message"]


def test_login_fails_closed_when_redis_is_down(app: Flask, client, wechat: FakeMiniProgramAuth) -> None:
    with redis_down(app):
        response = client.post("/mp/v1/auth/login", json={"code": wechat.issue_code("oAlice")})
    assert (response.status_code, response.json["code"]) == (503, "service_unavailable")
    assert response.headers["Retry-After"] == "30"


def test_tokens_still_work_when_redis_is_down(app: Flask, mp: Mp) -> None:
    resident = mp.login()
    with redis_down(app):
        assert resident.get("/mp/v1/auth/me").status_code == 200


def test_adapter_choice(app: Flask) -> None:
    redis = app.extensions["redis"]
    base = dict(app.config)
    assert isinstance(providers.build(base, redis), FakeMiniProgramAuth)
    emulator = providers.build(dict(base, WECHAT_API_BASE="http://127.0.0.1:8790/"), redis)
    assert isinstance(emulator, WeChatMiniProgram) and emulator.base_url == "http://127.0.0.1:8790/"
    real = providers.build(dict(base, WECHAT_MP_APPID="wx1", WECHAT_MP_SECRET="s"), redis)
    assert isinstance(real, WeChatMiniProgram) and real.base_url == "https://api.weixin.qq.com/"
    with pytest.raises(providers.NotConfigured):
        providers.build(dict(base, APP_ENV="production"), redis)
    with pytest.raises(providers.NotConfigured):
        providers.build(
            dict(
                base,
                APP_ENV="production",
                WECHAT_MP_APPID="wx1",
                WECHAT_MP_SECRET="s",
                WECHAT_API_BASE="http://127.0.0.1:8790/",
            ),
            redis,
        )


def test_unconfigured_production_login_is_503(app: Flask, client, monkeypatch) -> None:
    app.extensions.pop("wechat_mp")
    app.extensions.pop("_wechat_mp_auto", None)
    monkeypatch.setitem(app.config, "APP_ENV", "production")
    response = client.post("/mp/v1/auth/login", json={"code": "code-oAlice"})
    assert (response.status_code, response.json["code"]) == (503, "wechat_not_configured")


def test_development_default_accepts_shaped_codes(app: Flask, client) -> None:
    app.extensions.pop("wechat_mp")
    app.extensions.pop("_wechat_mp_auto", None)
    response = client.post("/mp/v1/auth/login", json={"code": "code-oDevResident"})
    assert response.status_code == 200
    assert json.loads(response.get_data())["token"].startswith("rt_")
    app.extensions.pop("_wechat_mp_auto", None)


def test_token_for_staff_is_not_a_resident_token(centre) -> None:
    assert token_for(make_staff(Role.NURSE, centre)).startswith("st_")


def test_ended_sessions_are_purged_after_a_week(mp: Mp) -> None:
    from app.mp_accounts.jobs import purge_sessions

    with time_machine.travel(clock.now(), tick=False) as traveller:
        ended, alive = mp.login("oEnded"), mp.login("oAlive")
        assert ended.post("/mp/v1/auth/logout").status_code == 204
        traveller.shift(timedelta(days=7, minutes=1))
        assert purge_sessions() == 1
        assert purge_sessions() == 0
    assert db.session.execute(select(MpSession)).scalars().all().__len__() == 1
    assert alive.token is not None


def test_wechat_sandbox_command(app: Flask, monkeypatch) -> None:
    import app.integrations.sandbox.wechat_api as sandbox

    calls: list[tuple] = []
    monkeypatch.setattr(sandbox, "run_forever", lambda *args: calls.append(args))
    runner = app.test_cli_runner()
    result = runner.invoke(args=["wechat-sandbox", "--port", "8791"])
    assert result.exit_code == 0, result.output
    assert calls == [(8791, None, None)]
    monkeypatch.setitem(app.config, "APP_ENV", "production")
    refused = runner.invoke(args=["wechat-sandbox"])
    assert refused.exit_code != 0
    assert "development and tests only" in refused.output
