"""Server-side staff sessions (DATA-07, API2): logout, refresh rotation, idle and absolute
timeouts, and immediate revocation when an account's permissions change."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
import time_machine
from flask import Flask
from sqlalchemy import select

from app.accounts.models import StaffSession, StaffUser
from app.core import clock
from app.core.auth import Role
from app.core.db import commit, db
from tests.audit.support import Http, ResponseRecorder, assert_no_clear_phone, http_as
from tests.factories import PASSWORD, make_staff, token_for

ME = "/api/v1/auth/me"
REFRESH = "/api/v1/auth/refresh"


@pytest.fixture(autouse=True)
def _no_clear_phone_in_any_response(app: Flask) -> Iterator[None]:
    with ResponseRecorder(app) as recorder:
        yield
    assert_no_clear_phone(recorder.responses)


@pytest.fixture
def frozen() -> Iterator[time_machine.Coordinates]:
    with time_machine.travel(clock.now(), tick=False) as traveller:
        yield traveller


def _login(app: Flask, user: StaffUser, password: str = PASSWORD) -> dict:
    response = Http(app).post("/api/v1/auth/login", json={"username": user.username, "password": password})
    assert response.status_code == 200, response.json
    return response.json


def _me(app: Flask, token: str) -> tuple[int, str | None]:
    response = Http(app, token).get(ME)
    return response.status_code, (response.json or {}).get("code")


def _refresh(app: Flask, refresh_token: str) -> tuple[int, dict]:
    response = Http(app).post(REFRESH, json={"refresh_token": refresh_token})
    return response.status_code, response.json


def _sessions_of(user: StaffUser) -> list[StaffSession]:
    db.session.expire_all()
    return list(db.session.execute(select(StaffSession).where(StaffSession.user_id == user.id)).scalars())


def test_missing_or_forged_tokens_get_401(app, centre):
    assert Http(app).get(ME).status_code == 401
    assert Http(app).get(ME).json["code"] == "unauthorized"
    for token in ("st_" + "A" * 43, "not-a-staff-token", "st_"):
        status, code = _me(app, token)
        assert status == 401
        assert code == "invalid_token"
    response = Http(app).get(ME, headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert response.status_code == 401


def test_a_logged_out_token_gets_401(app, centre):
    user = make_staff(Role.DOCTOR, centre)
    tokens = _login(app, user)
    other_session = token_for(user)

    response = Http(app, tokens["access_token"]).post("/api/v1/auth/logout")
    assert response.status_code == 204

    assert _me(app, tokens["access_token"]) == (401, "session_revoked")
    status, body = _refresh(app, tokens["refresh_token"])
    assert status == 401 and body["code"] == "session_revoked"
    # Only this session ended.
    assert _me(app, other_session) == (200, None)
    revoked = [s for s in _sessions_of(user) if s.revoked_at is not None]
    assert [s.revoke_reason for s in revoked] == ["logout"]


def test_refresh_rotates_both_tokens(app, centre):
    user = make_staff(Role.NURSE, centre)
    old = _login(app, user)

    status, new = _refresh(app, old["refresh_token"])

    assert status == 200, new
    assert new["access_token"] != old["access_token"]
    assert new["refresh_token"] != old["refresh_token"]
    assert new["user"]["id"] == str(user.id)
    assert _me(app, new["access_token"]) == (200, None)
    assert _me(app, old["access_token"]) == (401, "invalid_token")
    # (Presenting the replaced refresh token again ends the session: tests/accounts/test_refresh_reuse.py.)
    # Rotation keeps the same server-side session.
    assert len(_sessions_of(user)) == 1
    # The new refresh token rotates again.
    status, newer = _refresh(app, new["refresh_token"])
    assert status == 200
    assert _me(app, new["access_token"])[0] == 401
    assert _me(app, newer["access_token"]) == (200, None)


def test_refresh_rejects_an_access_token(app, centre):
    user = make_staff(Role.NURSE, centre)
    tokens = _login(app, user)
    status, body = _refresh(app, tokens["access_token"])
    assert status == 401 and body["code"] == "invalid_refresh_token"


def test_a_token_idle_for_16_minutes_is_refused(app, centre, frozen):
    user = make_staff(Role.CASHIER, centre)
    tokens = _login(app, user)

    frozen.shift(timedelta(minutes=16))

    assert _me(app, tokens["access_token"]) == (401, "session_idle_timeout")
    # The session is over for good: the token and the refresh token stay dead.
    assert _me(app, tokens["access_token"]) == (401, "session_revoked")
    assert _refresh(app, tokens["refresh_token"])[0] == 401
    [session] = _sessions_of(user)
    assert session.revoke_reason == "idle_timeout"


def test_a_token_idle_for_14_minutes_still_works(app, centre, frozen):
    user = make_staff(Role.CASHIER, centre)
    tokens = _login(app, user)
    frozen.shift(timedelta(minutes=14))
    assert _me(app, tokens["access_token"]) == (200, None)


def test_an_idle_session_cannot_be_revived_by_refresh(app, centre, frozen):
    user = make_staff(Role.CASHIER, centre)
    tokens = _login(app, user)
    frozen.shift(timedelta(minutes=16))
    status, body = _refresh(app, tokens["refresh_token"])
    assert status == 401 and body["code"] == "session_idle_timeout"
    assert _me(app, tokens["access_token"]) == (401, "session_revoked")


def test_a_session_used_every_10_minutes_stays_alive_until_its_absolute_lifetime(app, centre, frozen):
    user = make_staff(Role.DOCTOR, centre)
    started = clock.now()
    tokens = _login(app, user)
    lifetime = timedelta(hours=int(app.config["SESSION_ABSOLUTE_HOURS"]))
    access_lifetime = timedelta(minutes=int(app.config["ACCESS_TOKEN_MINUTES"]))
    step = timedelta(minutes=10)
    refreshed = 0

    while clock.now() + step < started + lifetime:
        frozen.shift(step)
        status, code = _me(app, tokens["access_token"])
        if code == "access_token_expired":
            # The short-lived access token ran out; the session did not: the client refreshes.
            status, tokens = _refresh(app, tokens["refresh_token"])
            assert status == 200, tokens
            refreshed += 1
            status, code = _me(app, tokens["access_token"])
        assert (status, code) == (200, None), f"refused after {clock.now() - started}"

    assert refreshed >= int(lifetime / access_lifetime) - 1
    assert len(_sessions_of(user)) == 1

    frozen.shift(started + lifetime - clock.now())
    status, code = _me(app, tokens["access_token"])
    assert (status, code) == (401, "session_expired")
    assert _refresh(app, tokens["refresh_token"])[0] == 401
    [session] = _sessions_of(user)
    assert session.revoke_reason == "expired"


def test_refresh_does_not_extend_the_absolute_lifetime(app, centre, frozen):
    user = make_staff(Role.DOCTOR, centre)
    tokens = _login(app, user)
    for _ in range(3):
        frozen.shift(timedelta(minutes=10))
        status, refreshed = _refresh(app, tokens["refresh_token"])
        assert status == 200
        assert refreshed["expires_at"] == tokens["expires_at"]
        assert refreshed["access_expires_at"] > tokens["access_expires_at"]
        tokens = refreshed


@pytest.mark.parametrize("admin_role", [Role.CENTRE_ADMIN, Role.DISTRICT_ADMIN])
def test_changing_a_role_revokes_every_open_session_at_once(app, centre, admin_role):
    doctor = make_staff(Role.DOCTOR, centre)
    admin = make_staff(admin_role, centre if admin_role == Role.CENTRE_ADMIN else None)
    tokens = [_login(app, doctor)["access_token"], token_for(doctor)]
    assert all(_me(app, t) == (200, None) for t in tokens)

    response = http_as(app, admin).post(
        f"/api/v1/staff/{doctor.id}/role", json={"role": "nurse", "reason": "转岗到护理组"}
    )

    assert response.status_code == 200, response.json
    assert response.json["role"] == "nurse"
    for token in tokens:
        assert _me(app, token) == (401, "session_revoked")
    assert {s.revoke_reason for s in _sessions_of(doctor)} == {"role_changed"}
    # A new login carries the new role.
    assert _login(app, doctor)["user"]["role"] == "nurse"


def test_disabling_an_account_revokes_its_sessions_and_blocks_login(app, centre):
    nurse = make_staff(Role.NURSE, centre)
    admin = make_staff(Role.CENTRE_ADMIN, centre)
    tokens = _login(app, nurse)
    admin_http = http_as(app, admin)

    response = admin_http.post(f"/api/v1/staff/{nurse.id}/disable", json={"reason": "离职"})

    assert response.status_code == 200, response.json
    assert response.json["is_active"] is False
    assert _me(app, tokens["access_token"]) == (401, "session_revoked")
    assert _refresh(app, tokens["refresh_token"])[0] == 401
    login = Http(app).post("/api/v1/auth/login", json={"username": nurse.username, "password": PASSWORD})
    assert login.status_code == 401 and login.json["code"] == "account_disabled"

    assert admin_http.post(f"/api/v1/staff/{nurse.id}/enable", json={"reason": "返岗"}).status_code == 200
    assert _me(app, _login(app, nurse)["access_token"]) == (200, None)


def test_a_session_of_an_account_disabled_directly_in_the_database_is_refused(app, centre):
    nurse = make_staff(Role.NURSE, centre)
    token = token_for(nurse)
    nurse.is_active = False
    commit()
    assert _me(app, token) == (401, "account_disabled")
    assert _me(app, token) == (401, "session_revoked")


def test_an_admin_password_reset_revokes_sessions_and_forces_a_change(app, centre):
    doctor = make_staff(Role.DOCTOR, centre)
    admin = make_staff(Role.CENTRE_ADMIN, centre)
    token = token_for(doctor)

    response = http_as(app, admin).post(
        f"/api/v1/staff/{doctor.id}/unlock", json={"reason": "忘记密码", "reset_password": "Temp-Pass-2024"}
    )

    assert response.status_code == 200, response.json
    assert response.json["must_change_password"] is True
    assert _me(app, token) == (401, "session_revoked")
    login = Http(app).post("/api/v1/auth/login", json={"username": doctor.username, "password": PASSWORD})
    assert login.status_code == 401
    assert _login(app, doctor, "Temp-Pass-2024")["must_change_password"] is True
