"""Settings and the production guard (app/config.py, create_app; API-07, DATA-09)."""

from __future__ import annotations

import base64
import logging
import os
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask

from app import config as config_module
from app import create_app
from app.config import ConfigurationError, check_production, load_settings
from app.core import crypto
from tests.conftest import TEST_SETTINGS


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _production(**overrides: Any) -> dict[str, Any]:
    """Settings a production start accepts. No server is contacted while the app is built."""
    values: dict[str, Any] = {
        "APP_ENV": "production",
        "SECRET_KEY": os.urandom(24).hex(),
        "DATABASE_URL": f"postgresql+psycopg://luohu@127.0.0.1:{_closed_port()}/luohu",
        "REDIS_URL": f"redis://127.0.0.1:{_closed_port()}/0",
        "FIELD_ENCRYPTION_KEYS": "prod1:" + base64.b64encode(os.urandom(32)).decode(),
        "BLIND_INDEX_KEY": os.urandom(24).hex(),
        "AUDIT_HMAC_KEY": os.urandom(24).hex(),
        "LOG_LEVEL": "WARNING",
        "CORS_ORIGINS": TEST_SETTINGS["CORS_ORIGINS"],
        "PAYMENT_SANDBOX": False,
        "PAYMENT_PUBLIC_BASE_URL": "https://pay.luohu.example",
        "WECHATPAY_API_KEY": os.urandom(16).hex(),
    }
    values.update(overrides)
    return values


@pytest.fixture
def make_app() -> Iterator[Callable[[dict[str, Any]], Flask]]:
    ring = crypto.keyring()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    built: list[Flask] = []

    def build(settings: dict[str, Any]) -> Flask:
        application = create_app(settings)
        built.append(application)
        return application

    yield build
    crypto.configure(ring)
    root.handlers[:] = handlers
    root.setLevel(level)
    for application in built:
        application.extensions["db"].engine.dispose()


@pytest.mark.parametrize("name", sorted(config_module._DEV_SECRETS))
def test_production_refuses_each_development_secret(
    name: str, make_app: Callable[[dict[str, Any]], Flask]
) -> None:
    settings = _production(**{name: config_module._DEV_SECRETS[name]})
    with pytest.raises(ConfigurationError, match=name):
        make_app(settings)


@pytest.mark.parametrize("url", ["sqlite:///instance/luohu.db", "sqlite://"])
def test_production_refuses_sqlite(url: str, make_app: Callable[[dict[str, Any]], Flask]) -> None:
    with pytest.raises(ConfigurationError, match="DATABASE_URL"):
        make_app(_production(DATABASE_URL=url))


def test_production_refuses_the_embedded_redis(make_app: Callable[[dict[str, Any]], Flask]) -> None:
    with pytest.raises(ConfigurationError, match="REDIS_URL"):
        make_app(_production(REDIS_URL=""))


def test_production_names_every_problem_at_once() -> None:
    with pytest.raises(ConfigurationError) as raised:
        check_production(
            _production(SECRET_KEY=config_module.DEV_SECRET_KEY, REDIS_URL="", DATABASE_URL="sqlite://")
        )
    message = str(raised.value)
    assert "SECRET_KEY" in message and "REDIS_URL" in message and "DATABASE_URL" in message


def test_production_with_proper_values_passes_the_check() -> None:
    check_production(_production())


def test_development_and_test_modes_accept_the_defaults() -> None:
    for env in ("development", "test"):
        check_production(load_settings({"APP_ENV": env, "DATABASE_URL": "sqlite://", "REDIS_URL": ""}))


def test_production_app_starts_without_debug_and_with_hsts(
    make_app: Callable[[dict[str, Any]], Flask],
) -> None:
    production = make_app(_production(DEBUG=True))  # even an explicit DEBUG is overridden
    assert production.debug is False
    assert production.config["DEBUG"] is False
    assert production.config["PROPAGATE_EXCEPTIONS"] is False
    response = production.test_client().get("/healthz")
    assert response.status_code == 200
    assert response.headers["Strict-Transport-Security"].startswith("max-age=31536000")
    # Nothing was reachable, and nothing needed to be: readiness says so instead of crashing.
    assert production.test_client().get("/readyz").status_code == 503


def test_test_app_is_not_in_debug_mode(app: Flask) -> None:
    assert app.debug is False
    assert app.config["DEBUG"] is False
    assert app.config["APP_ENV"] == "test"


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_POOL_SIZE", "7")
    monkeypatch.setenv("LOG_JSON", "0")
    monkeypatch.setenv("RQ_ASYNC", "yes")
    monkeypatch.setenv("CORS_ORIGINS", "https://a.example")
    settings = load_settings({"DATABASE_URL": "sqlite://"})
    assert settings["DB_POOL_SIZE"] == 7
    assert settings["LOG_JSON"] is False
    assert settings["RQ_ASYNC"] is True
    assert settings["CORS_ORIGINS"] == "https://a.example"
    # Explicit overrides win over the environment.
    assert load_settings({"DATABASE_URL": "sqlite://", "DB_POOL_SIZE": 3})["DB_POOL_SIZE"] == 3


def test_empty_environment_values_fall_back_to_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SESSION_IDLE_MINUTES", "")
    assert load_settings({"DATABASE_URL": "sqlite://"})["SESSION_IDLE_MINUTES"] == 15


def test_every_setting_is_documented() -> None:
    for setting in config_module.SETTINGS:
        assert setting.doc, setting.name
    names = [s.name for s in config_module.SETTINGS]
    assert len(names) == len(set(names))
