"""Staff login (DATA-07): tokens, masked user, failure countdown, lock-out, no user probing."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
import time_machine
from flask import Flask
from sqlalchemy import select

from app.accounts.models import StaffSession, StaffUser
from app.core import clock
from app.core.auth import Role
from app.core.db import db
from app.core.redis import get_redis
from tests.audit.support import (
    CJK_RE,
    Http,
    ResponseRecorder,
    assert_no_clear_phone,
    audit_rows,
)
from tests.factories import PASSWORD, make_staff, token_for

LOGIN = "/api/v1/auth/login"


@pytest.fixture(autouse=True)
def _no_clear_phone_in_any_response(app: Flask) -> Iterator[None]:
    with ResponseRecorder(app) as recorder:
        yield
    assert_no_clear_phone(recorder.responses)


@pytest.fixture
def frozen() -> Iterator[time_machine.Coordinates]:
    with time_machine.travel(clock.now(), tick=False) as traveller:
        yield traveller


def _login(app: Flask, username: str, password: str) -> tuple[int, dict]:
    response = Http(app).post(LOGIN, json={"username": username, "password": password})
    return response.status_code, response.json


def _sessions_of(user: StaffUser) -> list[StaffSession]:
    db.session.expire_all()
    return list(db.session.execute(select(StaffSession).where(StaffSession.user_id == user.id)).scalars())


def _max_failures(app: Flask) -> int:
    return int(app.config["LOGIN_MAX_FAILURES"])


def test_login_returns_tokens_and_a_masked_user(app, centre, frozen):
    user = make_staff(Role.CASHIER, centre, phone="13812345678")
    login_time = clock.now()

    response = Http(app).post(LOGIN, json={"username": user.username, "password": PASSWORD})

    assert response.status_code == 200, response.json
    body = response.json
    assert body["token_type"] == "Bearer"
    assert body["access_token"].startswith("st_") and body["refresh_token"].startswith("st_")
    assert body["access_token"] != body["refresh_token"]
    assert body["must_change_password"] is False
    assert body["idle_timeout_seconds"] == int(app.config["SESSION_IDLE_MINUTES"]) * 60
    expires_at = datetime.fromisoformat(body["expires_at"])
    assert expires_at == login_time + timedelta(hours=int(app.config["SESSION_ABSOLUTE_HOURS"]))
    assert body["user"]["id"] == str(user.id)
    assert body["user"]["username"] == user.username
    assert body["user"]["role"] == "cashier"
    assert body["user"]["institution"]["id"] == str(centre.id)
    assert body["user"]["phone"] == "138****5678"
    text = response.get_data(as_text=True)
    assert "13812345678" not in text
    assert PASSWORD not in text and "password_hash" not in text and "argon2" not in text

    # The server keeps only hashes of the tokens.
    [session] = _sessions_of(user)
    assert session.access_token_hash == hashlib.sha256(body["access_token"].encode()).hexdigest()
    assert session.refresh_token_hash == hashlib.sha256(body["refresh_token"].encode()).hexdigest()
    assert session.revoked_at is None

    me = Http(app, body["access_token"]).get("/api/v1/auth/me")
    assert me.status_code == 200 and me.json["id"] == str(user.id)
    [event] = audit_rows(action="login", object_id=user.id)
    assert event.result == "allowed" and event.institution_id == str(centre.id)


def test_username_is_matched_case_insensitively(app, centre):
    user = make_staff(Role.NURSE, centre)
    status, body = _login(app, f"  {user.username.upper()} ", PASSWORD)
    assert status == 200, body
    assert body["user"]["id"] == str(user.id)


def test_wrong_password_counts_down(app, centre):
    user = make_staff(Role.DOCTOR, centre)
    limit = _max_failures(app)
    for attempt in range(1, limit):
        status, body = _login(app, user.username, "Wrong-Password-1")
        assert status == 401
        assert body["code"] == "invalid_credentials"
        assert f"再错 {limit - attempt} 次" in body["message"]
        assert CJK_RE.search(body["message"])
    denied = audit_rows(action="login", object_id=user.id, result="denied")
    assert [e.purpose for e in denied] == ["wrong_password"] * (limit - 1)
    assert _sessions_of(user) == []


def test_lockout_refuses_the_right_password_until_the_window_has_passed(app, centre, frozen):
    user = make_staff(Role.DOCTOR, centre)
    limit = _max_failures(app)
    lock = timedelta(minutes=int(app.config["LOGIN_LOCK_MINUTES"]))
    for _ in range(limit - 1):
        assert _login(app, user.username, "Wrong-Password-1")[0] == 401

    status, body = _login(app, user.username, "Wrong-Password-1")
    assert status == 423
    assert body["code"] == "account_locked"
    assert CJK_RE.search(body["message"])

    # The next attempt, with the RIGHT password, is refused too, and names the unlock time.
    status, body = _login(app, user.username, PASSWORD)
    assert status == 423
    assert body["code"] == "account_locked"
    assert clock.local(clock.now() + lock).strftime("%H:%M") in body["message"]
    assert _sessions_of(user) == []

    frozen.shift(lock - timedelta(seconds=1))
    assert _login(app, user.username, PASSWORD)[0] == 423

    frozen.shift(timedelta(seconds=2))
    status, body = _login(app, user.username, PASSWORD)
    assert status == 200, body
    assert len(_sessions_of(user)) == 1

    # A successful login starts the countdown afresh.
    status, body = _login(app, user.username, "Wrong-Password-1")
    assert status == 401
    assert f"再错 {limit - 1} 次" in body["message"]

    purposes = [e.purpose for e in audit_rows(action="login", object_id=user.id, result="denied")]
    assert purposes.count("account_locked") == 2
    assert purposes.count("wrong_password") == limit + 1


def test_unknown_username_is_answered_exactly_like_a_wrong_password(app, centre, frozen):
    user = make_staff(Role.DOCTOR, centre)
    limit = _max_failures(app)

    known = [_login(app, user.username, "Wrong-Password-1") for _ in range(limit + 1)]
    unknown = [_login(app, "nobody.here", "Wrong-Password-1") for _ in range(limit + 1)]

    assert unknown == known
    assert known[0][0] == 401 and known[0][1]["code"] == "invalid_credentials"
    assert [status for status, _ in known[limit - 1 :]] == [423, 423]


def test_unknown_username_without_redis_still_gets_the_first_answer(app, centre, monkeypatch):
    from redis.exceptions import ConnectionError as RedisConnectionError

    user = make_staff(Role.DOCTOR, centre)
    first_wrong = _login(app, user.username, "Wrong-Password-1")

    def broken(*_args, **_kwargs):
        raise RedisConnectionError("down")

    redis = get_redis()
    monkeypatch.setattr(redis, "get", broken)
    monkeypatch.setattr(redis, "incr", broken)
    assert _login(app, "nobody.here", "Wrong-Password-1") == first_wrong


def test_disabled_account_cannot_log_in(app, centre):
    user = make_staff(Role.NURSE, centre, active=False)
    status, body = _login(app, user.username, PASSWORD)
    assert status == 401
    assert body["code"] == "account_disabled"
    assert CJK_RE.search(body["message"])
    assert "access_token" not in body
    assert _sessions_of(user) == []
    [event] = audit_rows(action="login", object_id=user.id)
    assert (event.result, event.purpose) == ("denied", "account_disabled")


def test_every_login_gets_a_new_session(app, centre):
    user = make_staff(Role.DOCTOR, centre)
    earlier = token_for(user)
    [before] = _sessions_of(user)

    first = Http(app).post(LOGIN, json={"username": user.username, "password": PASSWORD}).json
    second = Http(app).post(LOGIN, json={"username": user.username, "password": PASSWORD}).json

    sessions = _sessions_of(user)
    ids = {s.id for s in sessions}
    assert len(sessions) == 3 and len(ids) == 3
    assert before.id in ids
    assert len({earlier, first["access_token"], second["access_token"]}) == 3
    for token in (earlier, first["access_token"], second["access_token"]):
        assert Http(app, token).get("/api/v1/auth/me").status_code == 200


def test_login_rejects_unknown_fields_and_missing_password(app, centre):
    user = make_staff(Role.DOCTOR, centre)
    http = Http(app)
    extra = http.post(LOGIN, json={"username": user.username, "password": PASSWORD, "role": "district_admin"})
    assert extra.status_code == 422
    assert "role" in extra.json["errors"]
    missing = http.post(LOGIN, json={"username": user.username})
    assert missing.status_code == 422
    assert "password" in missing.json["errors"]
    assert _sessions_of(user) == []
