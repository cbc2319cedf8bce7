from app.core.auth import Role
from tests.factories import PASSWORD, make_staff


def test_login_then_me_then_logout(client, centre):
    user = make_staff(Role.CASHIER, centre)
    login = client.post("/api/v1/auth/login", json={"username": user.username, "password": PASSWORD})
    assert login.status_code == 200, login.json
    headers = {"Authorization": f"Bearer {login.json['access_token']}"}
    me = client.get("/api/v1/auth/me", headers=headers)
    assert me.status_code == 200
    assert me.json["username"] == user.username
    assert client.post("/api/v1/auth/logout", headers=headers).status_code == 204
    again = client.get("/api/v1/auth/me", headers=headers)
    assert again.status_code == 401
    assert again.json["code"] == "session_revoked"
