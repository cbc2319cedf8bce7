"""Cross-cutting HTTP behaviour (app/core/http.py, errors.py, api.py; API-03, API-07, DATA-03).

Tests that need a route of their own build a fresh application with `create_app` (in-memory SQLite,
embedded fakeredis): routes cannot be added to the shared session app once it has served requests.
"""

from __future__ import annotations

import logging
import re
import socket
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.views import MethodView
from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from app import create_app
from app.core import crypto
from app.core.api import AUTH_ATTR, Api, Blueprint, check_route_auth, public_route, route_auth_specs
from app.core.auth import ALL_STAFF, Role
from tests.conftest import TEST_SETTINGS
from tests.factories import make_staff, token_for

ERROR_KEYS = {"code", "status", "message", "errors"}
ALLOWED_ORIGIN = "https://mp.luohu.example"
_CJK = re.compile(r"[\u4e00-\u9fff]")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def make_app() -> Iterator[Callable[..., Flask]]:
    """Fresh applications; the process-wide keyring and log handlers they install are put back."""
    ring = crypto.keyring()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    built: list[Flask] = []

    def build(**overrides: Any) -> Flask:
        settings = dict(TEST_SETTINGS, DATABASE_URL="sqlite://", REDIS_URL="")
        settings.update(overrides)
        application = create_app(settings)
        built.append(application)
        return application

    yield build
    crypto.configure(ring)
    root.handlers[:] = handlers
    root.setLevel(level)
    for application in built:
        application.extensions["db"].engine.dispose()


def _assert_error_shape(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status
    assert response.mimetype == "application/json"
    body: dict[str, Any] = response.json
    assert set(body) == ERROR_KEYS
    assert body["status"] == status
    assert isinstance(body["code"], str) and re.fullmatch(r"[a-z_]+", body["code"])
    assert _CJK.search(body["message"]), body["message"]
    assert isinstance(body["errors"], dict)
    return body


# --- request ids and headers ---------------------------------------------------------------------


def test_request_id_is_generated_and_echoed(client: Any) -> None:
    first, second = client.get("/healthz"), client.get("/healthz")
    assert re.fullmatch(r"[0-9a-f]{32}", first.headers["X-Request-ID"])
    assert first.headers["X-Request-ID"] != second.headers["X-Request-ID"]


def test_sane_incoming_request_id_is_kept(client: Any) -> None:
    incoming = "lb-2f1c9a7e-0001"
    assert client.get("/healthz", headers={"X-Request-ID": incoming}).headers["X-Request-ID"] == incoming


@pytest.mark.parametrize(
    "incoming",
    [
        "<script>alert(1)</script>",
        "short",
        "a" * 65,
        "abc def ghi jkl",
        "x'; DROP TABLE audit_events;--",
        "请求编号请求编号",
    ],
)
def test_malicious_request_id_is_replaced(client: Any, incoming: str) -> None:
    echoed = client.get("/healthz", headers={"X-Request-ID": incoming}).headers["X-Request-ID"]
    assert echoed != incoming
    assert re.fullmatch(r"[0-9a-f]{32}", echoed)


@pytest.mark.parametrize("path", ["/healthz", "/api/v1/auth/me", "/api/v1/no-such-thing"])
def test_security_headers(client: Any, path: str) -> None:
    response = client.get(path)
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"
    assert "Strict-Transport-Security" not in response.headers  # production only (see test_config)
    if path.startswith("/api/"):
        assert response.headers["Cache-Control"] == "no-store"


def test_docs_get_a_csp_that_lets_swagger_ui_run(client: Any) -> None:
    response = client.get("/docs")
    assert response.status_code == 200
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp


# --- CORS ----------------------------------------------------------------------------------------


def _preflight(client: Any, origin: str, path: str = "/api/v1/staff") -> Any:
    return client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
        },
    )


def test_cors_preflight_from_an_allowed_origin(client: Any) -> None:
    for origin in TEST_SETTINGS["CORS_ORIGINS"].split(","):
        response = _preflight(client, origin)
        assert response.status_code == 200
        assert response.headers["Access-Control-Allow-Origin"] == origin
        allowed = {h.strip().lower() for h in response.headers["Access-Control-Allow-Headers"].split(",")}
        assert {"authorization", "idempotency-key"} <= allowed
        assert "Origin" in response.headers.get("Vary", "")
        assert response.headers.get("Access-Control-Allow-Origin") != "*"


@pytest.mark.parametrize(
    "origin",
    ["https://evil.example", "https://mp.luohu.example.evil.example", "http://mp.luohu.example", "null"],
)
def test_cors_refuses_other_origins(client: Any, origin: str) -> None:
    response = _preflight(client, origin)
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Access-Control-Allow-Headers" not in response.headers
    simple = client.get("/api/v1/auth/me", headers={"Origin": origin})
    assert "Access-Control-Allow-Origin" not in simple.headers


def test_cors_is_limited_to_the_api_prefixes(client: Any) -> None:
    assert "Access-Control-Allow-Origin" not in _preflight(client, ALLOWED_ORIGIN, "/healthz").headers


# --- health --------------------------------------------------------------------------------------


def test_healthz(client: Any) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok"}


def test_readyz_ok(client: Any) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}


def test_readyz_503_when_redis_is_down(app: Flask, client: Any) -> None:
    working = app.extensions["redis"]
    app.extensions["redis"] = Redis(
        host="127.0.0.1", port=_closed_port(), socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
    )
    try:
        response = client.get("/readyz")
    finally:
        app.extensions["redis"] = working
    assert response.status_code == 503
    assert response.json["status"] == "unavailable"
    assert response.json["checks"]["database"] == "ok"
    assert response.json["checks"]["redis"] == "error: ConnectionError"
    assert client.get("/readyz").status_code == 200


def test_readyz_503_when_the_database_is_down(make_app: Callable[..., Flask]) -> None:
    down = make_app(DATABASE_URL=f"postgresql+psycopg://nobody@127.0.0.1:{_closed_port()}/nothing")
    response = down.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["checks"] == {"database": "error: OperationalError", "redis": "ok"}
    assert "127.0.0.1" not in response.get_data(as_text=True)  # no connection details leak


# --- the error shape -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/no-such-page", "/api/v1/no-such-thing", f"/api/v1/staff/{uuid.uuid4()}/x"]
)
def test_unknown_path_is_404_in_the_error_shape(client: Any, path: str) -> None:
    body = _assert_error_shape(client.get(path), 404)
    assert body["code"] == "not_found"


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("delete", "/api/v1/auth/login", {"POST", "OPTIONS"}),
        ("post", "/healthz", {"GET", "HEAD", "OPTIONS"}),
        ("put", "/api/v1/staff", {"GET", "POST", "HEAD", "OPTIONS"}),
    ],
)
def test_wrong_method_is_405_with_allow(client: Any, method: str, path: str, allowed: set[str]) -> None:
    response = getattr(client, method)(path)
    body = _assert_error_shape(response, 405)
    assert body["code"] == "method_not_allowed"
    assert {m.strip() for m in response.headers["Allow"].split(",")} == allowed


def test_invalid_json_is_400_in_chinese(client: Any) -> None:
    response = client.post("/api/v1/auth/login", data='{"username": "a", ', content_type="application/json")
    body = _assert_error_shape(response, 400)
    assert body["code"] == "bad_request"
    assert "Invalid" not in body["message"]
    assert body["errors"] == {"json": ["请求体不是有效的 JSON"]}


def test_json_that_is_not_an_object_is_422(client: Any) -> None:
    body = _assert_error_shape(client.post("/api/v1/auth/login", json=["a", "b"]), 422)
    assert body["errors"] == {"_schema": ["须为 JSON 对象"]}


def test_oversized_body_is_413(client: Any) -> None:
    response = client.post(
        "/api/v1/auth/login", data=b"x" * (20 * 1024 * 1024 + 1), content_type="application/json"
    )
    assert _assert_error_shape(response, 413)["code"] == "payload_too_large"


def test_validation_messages_are_chinese(client: Any) -> None:
    missing = _assert_error_shape(client.post("/api/v1/auth/login", json={}), 422)
    assert missing["code"] == "validation_error"
    assert missing["errors"] == {"username": ["此项必填"], "password": ["此项必填"]}
    assert missing["message"].startswith("提交的数据有误：")
    assert "此项必填" in missing["message"]

    unknown = _assert_error_shape(
        client.post("/api/v1/auth/login", json={"username": "a", "password": "b", "is_admin": True}), 422
    )
    assert unknown["errors"] == {"is_admin": ["不允许的字段"]}

    too_long = _assert_error_shape(
        client.post("/api/v1/auth/login", json={"username": "a" * 65, "password": "b"}), 422
    )
    assert too_long["errors"] == {"username": ["长度须在 1 到 64 之间"]}


def test_query_validation_names_the_location(client: Any, centre: Any) -> None:
    token = token_for(make_staff(Role.CENTRE_ADMIN, centre))
    response = client.get(
        "/api/v1/staff", query_string={"size": "abc"}, headers={"Authorization": f"Bearer {token}"}
    )
    body = _assert_error_shape(response, 422)
    assert body["errors"] == {"query.size": ["须为整数"]}


def test_domain_errors_use_the_shape(client: Any) -> None:
    body = _assert_error_shape(client.get("/api/v1/auth/me"), 401)
    assert body == {"code": "unauthorized", "status": 401, "message": "请先登录", "errors": {}}
    body = _assert_error_shape(
        client.get("/api/v1/auth/me", headers={"Authorization": "Bearer st_forged"}), 401
    )
    assert body["code"] == "invalid_token"


def test_unexpected_exception_is_a_generic_500(
    make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    fresh = make_app()

    @fresh.get("/boom")
    @public_route
    def boom() -> Any:
        raise RuntimeError("secret detail: resident 11010519491231002X at /srv/app/secret.py")

    with caplog.at_level(logging.ERROR, logger="app.core.errors"):
        response = fresh.test_client().get("/boom", headers={"X-Request-ID": "trace-500-abcdef"})
    body = _assert_error_shape(response, 500)
    assert body["code"] == "internal_error"
    assert body["errors"] == {}
    assert "trace-500-abcdef" in body["message"]
    assert response.headers["X-Request-ID"] == "trace-500-abcdef"
    text = response.get_data(as_text=True)
    for leak in ("Traceback", "RuntimeError", "secret", "11010519491231002X", ".py"):
        assert leak not in text
    assert [r.getMessage() for r in caplog.records if r.name == "app.core.errors"] == ["unhandled error"]
    assert fresh.debug is False


# --- route declarations (API-03) -----------------------------------------------------------------


def test_every_route_of_the_app_declares_who_may_call_it(app: Flask) -> None:
    specs = route_auth_specs(app)
    assert specs, "no routes found"
    assert [route for route, spec in specs.items() if spec is None] == []
    assert specs[("/healthz", "GET")] is not None and specs[("/healthz", "GET")].public  # type: ignore[union-attr]
    assert specs[("/api/v1/staff", "POST")].roles == frozenset({Role.DISTRICT_ADMIN, Role.CENTRE_ADMIN})  # type: ignore[union-attr]


def _bare_app() -> tuple[Flask, Api]:
    bare = Flask("route_check")
    bare.config.update(API_TITLE="t", API_VERSION="v1", OPENAPI_VERSION="3.0.3")
    return bare, Api(bare)


def test_check_route_auth_refuses_an_undeclared_blueprint_route() -> None:
    bare, api = _bare_app()
    blp = Blueprint("undeclared", __name__, url_prefix="/x")

    @blp.route("/declared")
    @blp.auth(roles=ALL_STAFF)
    def declared() -> str:
        return "ok"

    @blp.route("/forgotten")
    def forgotten() -> str:
        return "oops"

    @blp.route("/mixed")
    class Mixed(MethodView):
        @blp.auth(public=True)
        def get(self) -> str:
            return "ok"

        def post(self) -> str:
            return "oops"

    api.register_blueprint(blp)
    with pytest.raises(RuntimeError, match=r"without an @blp\.auth declaration") as raised:
        check_route_auth(bare)
    message = str(raised.value)
    assert "GET /x/forgotten" in message
    assert "POST /x/mixed" in message
    assert "/x/declared" not in message
    assert "GET /x/mixed" not in message


def test_check_route_auth_refuses_a_plain_flask_view() -> None:
    bare, _ = _bare_app()
    bare.add_url_rule("/plain", "plain", lambda: "x")
    bare.add_url_rule("/public", "public", public_route(lambda: "x"))
    with pytest.raises(RuntimeError, match="GET /plain"):
        check_route_auth(bare)


def test_check_route_auth_accepts_a_fully_declared_app() -> None:
    bare, api = _bare_app()
    blp = Blueprint("declared", __name__, url_prefix="/y")

    @blp.route("/a", methods=["GET", "POST"])
    @blp.auth(roles=[Role.DOCTOR])
    def a() -> str:
        return "ok"

    api.register_blueprint(blp)
    check_route_auth(bare)
    assert getattr(bare.view_functions["declared.a"], AUTH_ATTR).roles == frozenset({"doctor"})


def test_create_app_refuses_to_start_with_an_undeclared_route(
    monkeypatch: pytest.MonkeyPatch, make_app: Callable[..., Flask]
) -> None:
    import app as app_package

    original = app_package._register_blueprints
    blp = Blueprint("sneaky", __name__, url_prefix="/debug")

    @blp.route("/dump")
    def dump() -> str:
        return "everything"

    def register(api: Api, app: Flask) -> None:
        original(api, app)
        api.register_blueprint(blp)

    monkeypatch.setattr(app_package, "_register_blueprints", register)
    with pytest.raises(RuntimeError, match="GET /debug/dump"):
        make_app()


@pytest.mark.parametrize("kwargs", [{}, {"roles": [Role.DOCTOR], "public": True}])
def test_auth_needs_exactly_one_of_roles_or_public(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="roles"):
        Blueprint("bad", __name__).auth(**kwargs)


def test_role_gate_is_403_in_the_error_shape(client: Any, centre: Any) -> None:
    token = token_for(make_staff(Role.DOCTOR, centre))
    response = client.post(
        "/api/v1/staff",
        json={},
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "role-gate-test-1"},
    )
    assert _assert_error_shape(response, 403)["code"] == "permission_denied"


def test_health_checks_are_in_the_openapi_document(client: Any) -> None:
    paths = client.get("/openapi.json").json["paths"]
    assert set(paths["/healthz"]) == {"get"}
    assert set(paths["/healthz"]["get"]["responses"]) == {"200"}
    assert set(paths["/readyz"]["get"]["responses"]) == {"200", "503"}
    assert paths["/readyz"]["get"]["security"] == []
    assert "/api/v1/staff" in paths  # the generated paths are still there


def test_nul_characters_are_refused_after_authentication_and_before_any_handler(client, centre):
    body = client.post(
        "/api/v1/auth/login",
        data='{"username": "a\\u0000b", "password": "x"}',
        content_type="application/json",
    )
    assert body.status_code == 422
    assert body.json["code"] == "invalid_characters"
    assert body.json["errors"] == {"username": ["不能包含空字符"]}
    # Without credentials the answer is 401, whatever the input (authentication comes first).
    assert client.get("/api/v1/institutions?q=a%00b").status_code == 401
    token = token_for(make_staff(Role.NURSE, centre))
    query = client.get("/api/v1/institutions?q=a%00b", headers={"Authorization": f"Bearer {token}"})
    assert query.status_code == 422
    assert query.json["errors"] == {"query.q": ["不能包含空字符"]}
