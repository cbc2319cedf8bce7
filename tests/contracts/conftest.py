"""Shared fixtures of the contracts tests (factories: `tests/contracts/factories.py`).

- `world`: a centre ready to sign (see `signing_world`).
- `api(user)`: a staff HTTP client for `user` (None: anonymous), one app context per request.
- `setting(name, value)`: change one setting for this test only.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask

from app.accounts.models import StaffUser
from tests.contracts.factories import SigningWorld, signing_world
from tests.doctors.support import Http, http_as


@pytest.fixture
def world(app: Flask) -> SigningWorld:
    """A centre ready to sign: doctor + nurse team, adult resident, basic package, template."""
    return signing_world()


@pytest.fixture
def api(app: Flask) -> Callable[..., Http]:
    """`api(user)`: an Http client for `user` (None: anonymous)."""

    def build(user: StaffUser | None = None) -> Http:
        return http_as(app, user)

    return build


@pytest.fixture
def setting(app: Flask, monkeypatch: pytest.MonkeyPatch) -> Callable[[str, object], None]:
    """Change one setting for this test only."""

    def set_(name: str, value: object) -> None:
        monkeypatch.setitem(app.config, name, value)

    return set_
