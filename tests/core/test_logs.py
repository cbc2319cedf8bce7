"""No personal data or secrets in logs (app/core/logs.py; DATA-03).

The JSON handler that `create_app` installs on the root logger is pointed at a StringIO and the root
level lowered to DEBUG, so every record any library writes is captured as it would be shipped.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask

from app import create_app
from app.core import crypto
from app.core.api import public_route
from app.core.auth import Role
from app.core.logs import ScrubFilter, scrub
from tests.conftest import TEST_SETTINGS
from tests.factories import PASSWORD, make_staff, token_for

ID_CANARIES = ["11010519491231002X", "44030319850615123x", "440303 19900101 0017"]
PHONE_CANARIES = ["13912345678", "+8615812345678", "186 1234 5678", "177-8765-4321"]
SECRET_CANARY = "Canary-Pass-7731!"


def _luohu_handler() -> logging.StreamHandler[Any]:
    found = [h for h in logging.getLogger().handlers if getattr(h, "_luohu", False)]
    assert len(found) == 1
    handler = found[0]
    assert isinstance(handler, logging.StreamHandler)
    return handler


@pytest.fixture
def captured() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """Capture what the project's log handler writes, at every level."""
    root = logging.getLogger()
    level = root.level
    buffers: list[tuple[logging.StreamHandler[Any], io.StringIO, Any]] = []

    def attach() -> None:
        handler = _luohu_handler()
        buffer = io.StringIO()
        buffers.append((handler, buffer, handler.setStream(buffer)))

    def lines() -> list[dict[str, Any]]:
        return [
            json.loads(line) for _, buffer, _ in buffers for line in buffer.getvalue().splitlines() if line
        ]

    attach()
    root.setLevel(logging.DEBUG)
    lines.attach = attach  # type: ignore[attr-defined]
    yield lines
    root.setLevel(level)
    for handler, _, previous in buffers:
        handler.setStream(previous)


def _assert_clean(text: str) -> None:
    for canary in [*ID_CANARIES, *PHONE_CANARIES, SECRET_CANARY, "13912345678", "15812345678"]:
        assert canary not in text, f"{canary!r} leaked"
        assert canary.replace(" ", "").replace("-", "") not in text, f"{canary!r} leaked"


# --- scrub --------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ID_CANARIES)
def test_scrub_masks_id_numbers(value: str) -> None:
    assert scrub(f"证件 {value} 不符") == "证件 [身份证号] 不符"


@pytest.mark.parametrize("value", [*PHONE_CANARIES, "008613912345678", "86 139 1234 5678"])
def test_scrub_masks_mobile_numbers(value: str) -> None:
    assert scrub(f"phone={value};") == "phone=[手机号];"


def test_scrub_masks_tokens() -> None:
    assert scrub("Authorization: Bearer abc.def-123") == "Authorization: Bearer [token]"
    token = "st_" + "Ab3_-" * 9
    assert scrub(f"session {token} expired") == "session st_[token] expired"


@pytest.mark.parametrize(
    "value",
    [
        "订单号 202603021234567890123",  # a long number, not an ID
        "amount_fen=13800",
        "2026-03-02T13:45:12+08:00",
        "HIS 机构编码 T0001",
        "12345678901",  # 11 digits that are not a mobile number
        "request_started_at_2026_03_02_x",
    ],
)
def test_scrub_leaves_ordinary_text_alone(value: str) -> None:
    assert scrub(value) == value


def test_filter_scrubs_arguments_extras_dict_messages_and_tracebacks() -> None:
    def record(msg: Any, args: Any = None, exc: bool = False, **extra: Any) -> logging.LogRecord:
        exc_info = None
        if exc:
            try:
                raise ValueError("bad id 11010519491231002X")
            except ValueError:
                import sys

                exc_info = sys.exc_info()
        made = logging.LogRecord("t", logging.ERROR, __file__, 1, msg, args, exc_info)
        for key, value in extra.items():
            setattr(made, key, value)
        assert ScrubFilter().filter(made) is True
        return made

    assert record("phone %s", ("13912345678",)).getMessage() == "phone [手机号]"
    assert record("x", who={"phone": ["13912345678"]}).who == {"phone": ["[手机号]"]}  # type: ignore[attr-defined]
    assert record({"event": "login", "id": "11010519491231002X"}).msg == {
        "event": "login",
        "id": "[身份证号]",
    }
    assert record(ValueError("13912345678")).msg == "[手机号]"
    failed = record("failed", exc=True)
    assert failed.exc_info is None
    assert failed.exc_text is not None
    assert "ValueError: bad id [身份证号]" in failed.exc_text and "Traceback" in failed.exc_text


# --- end to end ---------------------------------------------------------------------------------


def test_requests_with_canaries_leave_no_trace_in_logs(
    app: Flask, centre: Any, captured: Callable[[], list[dict[str, Any]]], caplog: pytest.LogCaptureFixture
) -> None:
    admin = make_staff(Role.CENTRE_ADMIN, centre)
    token = token_for(admin)
    make_staff(Role.DOCTOR, centre, username="canary.user")
    auth = {"Authorization": f"Bearer {token}"}
    responses = []
    with caplog.at_level(logging.DEBUG):
        for n, phone in enumerate(PHONE_CANARIES):
            with app.app_context():
                client = app.test_client()
                responses.append(
                    client.post(
                        "/api/v1/staff",
                        headers={**auth, "Idempotency-Key": f"canary-key-{n}"},
                        json={
                            "username": f"canary.{n}",
                            "name": "金丝雀",
                            "role": "doctor",
                            "password": "Temp-Pass-2026",
                            "phone": phone,
                        },
                    )
                )
        with app.app_context():
            client = app.test_client()
            for id_number in ID_CANARIES:
                # Unknown fields, a bad phone and query strings carrying the canaries.
                responses.append(
                    client.post(
                        "/api/v1/staff",
                        headers={**auth, "Idempotency-Key": "canary-key-x"},
                        json={"username": "x", "id_number": id_number, "phone": id_number},
                    )
                )
                responses.append(
                    client.get(f"/api/v1/staff?q={id_number}&phone={PHONE_CANARIES[0]}", headers=auth)
                )
                responses.append(client.get(f"/api/v1/nothing/{id_number}", headers=auth))
            responses.append(client.get("/api/v1/staff", query_string={"q": "13912345678"}, headers=auth))
            # Logins with a bad password (known user, unknown user named like an ID or a phone).
            responses.append(
                client.post("/api/v1/auth/login", json={"username": "canary.user", "password": SECRET_CANARY})
            )
            for username in (ID_CANARIES[0], PHONE_CANARIES[0]):
                responses.append(
                    client.post("/api/v1/auth/login", json={"username": username, "password": SECRET_CANARY})
                )
            ok = client.post("/api/v1/auth/login", json={"username": "canary.user", "password": PASSWORD})
            assert ok.status_code == 200
    assert [r.status_code for r in responses[:4]] == [201, 201, 201, 201]
    assert {r.status_code for r in responses[4:]} <= {200, 401, 404, 422}

    lines = captured()
    assert any(line.get("logger") == "luohu.access" for line in lines), "access log not captured"
    output = "\n".join(json.dumps(line, ensure_ascii=False) for line in lines)
    _assert_clean(output)
    assert ok.json["access_token"] not in output
    assert ok.json["refresh_token"] not in output
    assert token not in output
    # Every record as pytest's handler saw it, too.
    for record in caplog.records:
        _assert_clean(record.getMessage())
        _assert_clean(json.dumps({k: str(v) for k, v in vars(record).items()}, ensure_ascii=False))
    # Error responses do not echo the request either.
    for response in responses:
        if response.status_code >= 400:
            _assert_clean(response.get_data(as_text=True))


@pytest.fixture
def fresh_app() -> Iterator[Flask]:
    ring = crypto.keyring()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    application = create_app(dict(TEST_SETTINGS, DATABASE_URL="sqlite://", REDIS_URL=""))
    yield application
    crypto.configure(ring)
    root.handlers[:] = handlers
    root.setLevel(level)
    application.extensions["db"].engine.dispose()


def test_unexpected_error_is_logged_without_the_values(
    fresh_app: Flask, captured: Callable[[], list[dict[str, Any]]]
) -> None:
    captured.attach()  # type: ignore[attr-defined]

    @fresh_app.post("/explode")
    @public_route
    def explode() -> Any:
        raise ValueError(f"cannot match {ID_CANARIES[0]} with phone {PHONE_CANARIES[0]}")

    response = fresh_app.test_client().post(
        "/explode", json={"id_number": ID_CANARIES[0]}, headers={"X-Request-ID": "explode-0001"}
    )
    assert response.status_code == 500
    errors = [line for line in captured() if line.get("level") == "ERROR"]
    assert len(errors) == 1
    assert errors[0]["message"] == "unhandled error"
    assert errors[0]["request_id"] == "explode-0001"
    assert errors[0]["error_type"] == "ValueError"
    assert "Traceback" in errors[0]["exc_info"]
    assert "cannot match [身份证号] with phone [手机号]" in errors[0]["exc_info"]
    _assert_clean(json.dumps(captured(), ensure_ascii=False))
    _assert_clean(response.get_data(as_text=True))
