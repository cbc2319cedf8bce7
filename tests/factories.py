"""Factories and fixtures for building test data quickly (no HTTP, no password hashing cost)."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask, g
from flask.testing import FlaskClient

from app.accounts import services as account_services
from app.accounts.models import StaffGrant, StaffSession, StaffUser
from app.core import clock
from app.core.auth import Principal, Role
from app.core.db import commit, db
from app.institutions.models import Institution
from app.institutions.services import _community, ensure_streets

PASSWORD = "Correct-Horse-9"
_PASSWORD_HASH = account_services.hash_password(PASSWORD)
_counter = itertools.count(1)

__all__ = [
    "PASSWORD",
    "ApiClient",
    "api_as",
    "as_principal",
    "centre",
    "make_centre",
    "make_staff",
    "other_centre",
    "principal_of",
    "token_for",
]


def make_centre(name: str | None = None, street: str = "桂园", community: str = "老围") -> Institution:
    n = next(_counter)
    streets = ensure_streets()
    comm = _community(streets[street], community)
    centre = Institution(
        id=uuid.uuid4(),
        his_code=f"T{n:04d}",
        name=name or f"测试社康中心{n}",
        street_id=streets[street].id,
        community_id=comm.id,
        address=f"深圳市罗湖区测试路{n}号",
        longitude=114.12,
        latitude=22.55,
        phone="0755-12345678",
        opening_hours="08:00-17:30",
    )
    db.session.add(centre)
    commit()
    return centre


def make_staff(
    role: Role | str = Role.DOCTOR,
    institution: Institution | None = None,
    *,
    username: str | None = None,
    phone: str | None = None,
    active: bool = True,
    must_change_password: bool = False,
) -> StaffUser:
    n = next(_counter)
    role = Role(role)
    user = StaffUser(
        id=uuid.uuid4(),
        username=username or f"{role.value}.{n}",
        name=f"测试{role.label}{n}",
        phone=phone or f"139{n:08d}",
        role=role.value,
        institution_id=institution.id if institution is not None else None,
        password_hash=_PASSWORD_HASH,
        must_change_password=must_change_password,
        is_active=active,
    )
    db.session.add(user)
    commit()
    return user


def token_for(user: StaffUser) -> str:
    """A live session for `user`, as if they had just logged in."""
    now = clock.now()
    session = StaffSession(
        id=uuid.uuid4(), user_id=user.id, user=user, created_at=now, expires_at=now + timedelta(hours=12)
    )
    tokens = account_services._issue(session, now)
    db.session.add(session)
    commit()
    return tokens.access_token


def principal_of(user: StaffUser) -> Principal:
    return Principal(
        kind="staff",
        id=user.id,
        role=user.role,
        institution_id=user.institution_id,
        display_name=user.name,
        grants=account_services.grants_of(user.id),
    )


def grant(user: StaffUser, *permissions: str) -> StaffUser:
    """Grant per-person permissions (DATA-05 categories: "health:smd", "health:tb")."""
    for permission in permissions:
        db.session.add(StaffGrant(user_id=user.id, permission=permission, granted_by="test"))
    commit()
    return user


@contextmanager
def as_principal(user: StaffUser) -> Iterator[Principal]:
    """Run service calls as `user` (sets the principal the scope and audit read)."""
    principal = principal_of(user)
    previous = g.get("principal")
    g.principal = principal
    try:
        yield principal
    finally:
        g.principal = previous


class ApiClient:
    """A test client that sends a bearer token with every request."""

    def __init__(self, client: FlaskClient, token: str | None) -> None:
        self.client = client
        self.token = token

    def _headers(self, headers: dict[str, str] | None) -> dict[str, str]:
        merged = dict(headers or {})
        if self.token:
            merged.setdefault("Authorization", f"Bearer {self.token}")
        return merged

    def __getattr__(self, method: str) -> Callable[..., Any]:
        if method not in {"get", "post", "put", "patch", "delete", "options"}:
            raise AttributeError(method)

        def call(path: str, headers: dict[str, str] | None = None, **kwargs: Any) -> Any:
            return getattr(self.client, method)(path, headers=self._headers(headers), **kwargs)

        return call


@pytest.fixture
def api_as(app: Flask) -> Callable[[StaffUser | None], ApiClient]:
    def build(user: StaffUser | None) -> ApiClient:
        return ApiClient(app.test_client(), token_for(user) if user is not None else None)

    return build


@pytest.fixture
def centre() -> Institution:
    return make_centre()


@pytest.fixture
def other_centre() -> Institution:
    return make_centre()
