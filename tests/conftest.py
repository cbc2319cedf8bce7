"""Test harness.

- The database is `TEST_DATABASE_URL` or `DATABASE_URL` (PostgreSQL in CI), else a throwaway
  SQLite file. Redis is `REDIS_URL` (a real server in CI), else a fresh fakeredis per test.
- Each test runs inside one outer transaction that is rolled back at the end; the code under test
  commits SAVEPOINTs (SQLAlchemy's "join_transaction_mode=create_savepoint" recipe).
- Tests that need real commits from several connections (concurrency) use `committing_db`, which
  truncates every table afterwards.
- Any network connection that is not to the loopback interface fails the test.
"""

from __future__ import annotations

import contextvars
import os
import socket
import tempfile
from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text
from sqlalchemy.orm import sessionmaker

from app import create_app
from app.billing import providers as payment_providers
from app.core.db import Base, db

_LOOPBACK = {"127.0.0.1", "::1", "localhost"}
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _guarded(address: Any) -> None:
    if isinstance(address, tuple) and address and address[0] not in _LOOPBACK:
        raise RuntimeError(f"test tried to reach the network: {address!r}")


def _connect(self: socket.socket, address: Any) -> Any:
    _guarded(address)
    return _real_connect(self, address)


def _connect_ex(self: socket.socket, address: Any) -> Any:
    _guarded(address)
    return _real_connect_ex(self, address)


@pytest.fixture(autouse=True, scope="session")
def _loopback_only() -> Iterator[None]:
    socket.socket.connect = _connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _connect_ex  # type: ignore[method-assign]
    yield
    socket.socket.connect = _real_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _real_connect_ex  # type: ignore[method-assign]


def _database_url(tmp_dir: str) -> str:
    url = os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL") or ""
    return url or f"sqlite:///{tmp_dir}/test.db"


TEST_SETTINGS: dict[str, Any] = {
    "APP_ENV": "test",
    "LOG_LEVEL": "WARNING",
    "CORS_ORIGINS": "https://mp.luohu.example,https://admin.luohu.example",
}


class IsolatedClient(FlaskClient):
    """Every request runs in its own application context, as in production.

    Without this, Flask reuses the test's pushed app context for the request: `g` (the principal
    and its centre scope) and the database session would leak between the test and its requests.
    """

    def open(self, *args: Any, **kwargs: Any) -> Any:
        return contextvars.Context().run(super().open, *args, **kwargs)


@pytest.fixture(scope="session")
def app() -> Iterator[Flask]:
    with tempfile.TemporaryDirectory() as tmp_dir:
        settings = dict(
            TEST_SETTINGS, DATABASE_URL=_database_url(tmp_dir), REDIS_URL=os.environ.get("REDIS_URL", "")
        )
        application = create_app(settings)
        application.test_client_class = IsolatedClient
        with application.app_context():
            Base.metadata.drop_all(db.engine)
            Base.metadata.create_all(db.engine)
        yield application
        with application.app_context():
            db.engine.dispose()


@pytest.fixture(scope="session")
def is_postgres(app: Flask) -> bool:
    return app.config["DATABASE_URL"].startswith("postgresql")


@pytest.fixture(autouse=True)
def _payment_sandboxes(app: Flask) -> Iterator[None]:
    """Each test starts with empty payment-sandbox ledgers and gets back any provider it swapped."""
    yield
    payment_providers.restore(app)
    for sandbox in app.extensions.get("payment_sandboxes", {}).values():
        sandbox.ledger.reset()
        if hasattr(sandbox, "rejected"):
            sandbox.rejected.clear()


@pytest.fixture(autouse=True)
def _fresh_redis(app: Flask) -> Iterator[None]:
    if app.config["REDIS_URL"]:
        app.extensions["redis"].flushdb()
    else:
        app.extensions["redis"] = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    yield


@pytest.fixture(autouse=True)
def _transactional_db(app: Flask, request: pytest.FixtureRequest) -> Iterator[None]:
    """Roll back everything a test did (unless it asked for `committing_db`)."""
    if "committing_db" in request.fixturenames:
        yield
        return
    bound = db.bound(app)
    original = bound.sessionmaker
    connection = bound.engine.connect()
    outer = connection.begin()
    bound.sessionmaker = sessionmaker(
        bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
    )
    try:
        with app.app_context():
            yield
    finally:
        bound.sessionmaker = original
        outer.rollback()
        connection.close()


@pytest.fixture
def committing_db(app: Flask) -> Iterator[None]:
    """Real commits (for concurrency tests); every table is emptied afterwards."""
    try:
        with app.app_context():
            try:
                yield
            finally:
                db.session.remove()  # the test's own session: its connection goes back to the pool
    finally:
        with app.app_context():
            db.session.remove()
            with db.engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
                    conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
                else:
                    conn.exec_driver_sql("DROP TRIGGER IF EXISTS audit_events_no_delete")
                    for table in reversed(Base.metadata.sorted_tables):
                        conn.execute(table.delete())
            with db.engine.begin() as conn:
                from app.core.audit import append_only_ddl

                if conn.dialect.name == "sqlite":
                    for statement in append_only_ddl("sqlite")[1:]:
                        conn.exec_driver_sql(statement)


@pytest.fixture
def client(app: Flask) -> Any:
    return app.test_client()


from tests.factories import *  # noqa: E402,F403  (fixtures)
