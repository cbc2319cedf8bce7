"""A replaced refresh token presented again ends the whole session (token theft detection)."""

from sqlalchemy import select

from app.core.audit import AuditEvent
from app.core.auth import Role
from app.core.db import db
from tests.factories import PASSWORD, make_staff


def _login(client, username):
    response = client.post("/api/v1/auth/login", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200
    return response.json


def test_reusing_a_replaced_refresh_token_revokes_the_session(client, centre):
    user = make_staff(Role.NURSE, centre)
    first = _login(client, user.username)
    second = client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert second.status_code == 200

    replay = client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert replay.status_code == 401
    assert replay.json["code"] == "refresh_token_reused"

    # The legitimate holder of the newest pair is logged out too.
    me = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {second.json['access_token']}"})
    assert me.status_code == 401
    again = client.post("/api/v1/auth/refresh", json={"refresh_token": second.json["refresh_token"]})
    assert again.status_code == 401
    denied = (
        db.session.execute(select(AuditEvent).where(AuditEvent.purpose == "refresh_token_reused"))
        .scalars()
        .all()
    )
    assert len(denied) == 1 and denied[0].result == "denied"


def test_an_unknown_refresh_token_is_rejected_without_touching_sessions(client, centre):
    user = make_staff(Role.NURSE, centre)
    tokens = _login(client, user.username)
    response = client.post("/api/v1/auth/refresh", json={"refresh_token": "st_" + "x" * 40})
    assert response.status_code == 401
    assert response.json["code"] == "invalid_refresh_token"
    me = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert me.status_code == 200
