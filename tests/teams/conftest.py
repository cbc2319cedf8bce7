from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask


@pytest.fixture
def setting(app: Flask, monkeypatch: pytest.MonkeyPatch) -> Callable[[str, object], None]:
    """Change one setting for this test only."""

    def set_(name: str, value: object) -> None:
        monkeypatch.setitem(app.config, name, value)

    return set_


@pytest.fixture
def pg_only(is_postgres: bool) -> None:
    if not is_postgres:
        pytest.skip("concurrency test: needs PostgreSQL (set DATABASE_URL); SQLite serialises writers")


@pytest.fixture
def api(app: Flask):
    """`api(user)`: an Http client for `user` (None: anonymous)."""
    from tests.doctors.support import http_as

    return lambda user=None: http_as(app, user)
