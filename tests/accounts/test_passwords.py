"""Password policy, password history and the first-login password change (DATA-07)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from argon2 import PasswordHasher
from flask import Flask
from sqlalchemy import func, select

from app.accounts import services
from app.accounts.models import PasswordHistory, StaffChange, StaffSession, StaffUser
from app.core.auth import Role
from app.core.db import db
from app.core.errors import BusinessRuleViolation
from tests.audit.support import (
    CJK_RE,
    Http,
    ResponseRecorder,
    assert_no_clear_phone,
    http_as,
    idem,
)
from tests.factories import PASSWORD, make_staff, token_for

PASSWORD_URL = "/api/v1/auth/password"


@pytest.fixture(autouse=True)
def _no_clear_phone_in_any_response(app: Flask) -> Iterator[None]:
    with ResponseRecorder(app) as recorder:
        yield
    assert_no_clear_phone(recorder.responses)


def _login(app: Flask, username: str, password: str) -> Http:
    response = Http(app).post("/api/v1/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.json
    return Http(app, response.json["access_token"])


def _change(http: Http, current: str, new: str):
    return http.post(PASSWORD_URL, json={"current_password": current, "new_password": new})


@pytest.mark.parametrize(
    ("password", "problem"),
    [
        ("Ab1!xyz", "至少 8 位"),  # 7 characters, 4 classes
        ("abcdefgh12", "至少 3 类"),  # lower case and digits only
        ("ABCDEFGH!!", "至少 3 类"),  # upper case and symbols only
        ("{username}-X9", "不能包含用户名"),  # long and varied, but contains the username
    ],
)
def test_a_weak_new_password_is_refused_with_a_chinese_message(app, centre, password, problem):
    user = make_staff(Role.DOCTOR, centre, username="wangfang")
    http = Http(app, token_for(user))
    before = db.session.get(StaffUser, user.id).password_hash

    response = _change(http, PASSWORD, password.format(username=user.username.upper()))

    assert response.status_code == 422
    assert response.json["code"] == "weak_password"
    assert CJK_RE.search(response.json["message"])
    assert any(problem in message for message in response.json["errors"]["new_password"])
    db.session.expire_all()
    assert db.session.get(StaffUser, user.id).password_hash == before


def test_policy_function_accepts_a_good_password_and_lists_every_problem():
    assert services.password_problems("Good-Pass-2024", "zhang.wei") == []
    problems = services.password_problems("zhang", "zhang")
    assert len(problems) == 3  # too short, too few classes, contains the username
    with pytest.raises(BusinessRuleViolation) as caught:
        services.check_password_policy("short", "someone")
    assert caught.value.code == "weak_password"


def test_a_weak_temporary_password_is_refused_when_creating_staff(app, centre):
    admin = make_staff(Role.CENTRE_ADMIN, centre)
    response = http_as(app, admin).post(
        "/api/v1/staff",
        headers=idem(),
        json={"username": "li.na", "name": "李娜", "role": "nurse", "password": "12345678"},
    )
    assert response.status_code == 422
    assert response.json["code"] == "weak_password"
    assert CJK_RE.search(response.json["message"])
    assert db.session.execute(select(StaffUser).where(StaffUser.username == "li.na")).first() is None


def test_the_current_password_must_be_given(app, centre):
    user = make_staff(Role.DOCTOR, centre)
    response = _change(Http(app, token_for(user)), "Not-The-Password-1", "Brand-New-Pass-1")
    assert response.status_code == 422
    assert response.json["code"] == "wrong_current_password"
    assert CJK_RE.search(response.json["message"])


def test_changing_the_password_ends_the_other_sessions_but_not_this_one(app, centre):
    user = make_staff(Role.DOCTOR, centre)
    other = token_for(user)
    this = _login(app, user.username, PASSWORD)

    assert _change(this, PASSWORD, "Brand-New-Pass-1").status_code == 204

    assert this.get("/api/v1/auth/me").status_code == 200
    assert Http(app, other).get("/api/v1/auth/me").json["code"] == "session_revoked"
    assert (
        Http(app)
        .post("/api/v1/auth/login", json={"username": user.username, "password": PASSWORD})
        .status_code
        == 401
    )
    _login(app, user.username, "Brand-New-Pass-1")
    changes = db.session.execute(select(StaffChange).where(StaffChange.user_id == user.id)).scalars().all()
    assert [c.action for c in changes] == ["password_changed"]
    assert changes[0].actor_id == user.id


def test_none_of_the_last_five_passwords_may_be_reused(app, centre, monkeypatch):
    # The rule is under test here, not argon2's cost: hash cheaply (hashes stay verifiable).
    monkeypatch.setattr(services, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    user = make_staff(Role.DOCTOR, centre)
    http = Http(app, token_for(user))
    history = [f"History-Pass-{n}x" for n in range(6)]
    current = PASSWORD
    for new in history:
        assert _change(http, current, new).status_code == 204
        current = new

    depth = services.PASSWORD_HISTORY_DEPTH
    recent, older = history[-depth:], history[:-depth]
    for old in recent:
        response = _change(http, current, old)
        assert response.status_code == 422, old
        assert response.json["code"] == "password_reused"
        assert CJK_RE.search(response.json["message"])
    # The sixth-newest password is out of the window again.
    assert _change(http, current, older[-1]).status_code == 204


def test_the_current_password_counts_even_without_history_rows(app, centre):
    # Accounts made outside `create_staff` (factories, the demo seed) have no history rows.
    user = make_staff(Role.DOCTOR, centre)
    assert (
        db.session.execute(
            select(func.count()).select_from(PasswordHistory).where(PasswordHistory.user_id == user.id)
        ).scalar_one()
        == 0
    )
    response = _change(Http(app, token_for(user)), PASSWORD, PASSWORD)
    assert response.status_code == 422
    assert response.json["code"] == "password_reused"


def test_a_temporary_password_must_be_changed_before_anything_else(app, centre):
    admin = make_staff(Role.CENTRE_ADMIN, centre)
    created = http_as(app, admin).post(
        "/api/v1/staff",
        headers=idem(),
        json={"username": "zhao.lei", "name": "赵磊", "role": "doctor", "password": "Temp-Pass-2024"},
    )
    assert created.status_code == 201, created.json
    assert created.json["must_change_password"] is True

    login = Http(app).post("/api/v1/auth/login", json={"username": "zhao.lei", "password": "Temp-Pass-2024"})
    assert login.status_code == 200
    assert login.json["must_change_password"] is True
    http = Http(app, login.json["access_token"])

    for path in ("/api/v1/staff", "/api/v1/institutions", f"/api/v1/staff/{admin.id}", "/api/v1/streets"):
        response = http.get(path)
        assert response.status_code == 403, path
        assert response.json["code"] == "password_change_required"
        assert CJK_RE.search(response.json["message"])

    assert http.get("/api/v1/auth/me").status_code == 200
    assert _change(http, "Temp-Pass-2024", "Temp-Pass-2024").json["code"] == "password_reused"
    assert _change(http, "Temp-Pass-2024", "Own-Secret-77").status_code == 204
    assert http.get("/api/v1/staff").status_code == 200
    assert http.get("/api/v1/auth/me").json["must_change_password"] is False


def test_logout_is_allowed_while_a_password_change_is_pending(app, centre):
    user = make_staff(Role.NURSE, centre, must_change_password=True)
    http = _login(app, user.username, PASSWORD)
    assert http.get("/api/v1/staff").json["code"] == "password_change_required"
    assert http.post("/api/v1/auth/logout").status_code == 204
    assert http.get("/api/v1/auth/me").status_code == 401
    sessions = db.session.execute(select(StaffSession).where(StaffSession.user_id == user.id)).scalars().all()
    assert [s.revoke_reason for s in sessions] == ["logout"]
