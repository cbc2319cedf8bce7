"""Races decided by the database (PostgreSQL; SQLite serialises writers): the same ID number
registered at two desks at once, two status changes, two consents, two transfers."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import date
from functools import partial
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from app.core.auth import Role
from app.core.db import db
from app.residents.models import Resident, ResidentConsent, ResidentTransfer
from tests.factories import make_centre, make_staff, token_for
from tests.factories_residents import make_resident, random_id_number
from tests.races import race

THREADS = 8


@pytest.fixture
def postgres_only(is_postgres: bool) -> None:
    if not is_postgres:
        pytest.skip("concurrent writers need PostgreSQL (set DATABASE_URL); SQLite serialises writers")


@pytest.fixture
def world(postgres_only: None, committing_db: None) -> Iterator[dict[str, Any]]:
    centre, elsewhere = make_centre(), make_centre()
    tokens = [token_for(make_staff(Role.CENTRE_ADMIN, centre)) for _ in range(THREADS)]
    yield {"centre": centre, "elsewhere": elsewhere, "tokens": tokens}


def _race(app: Flask, tokens: list[str], send: Callable[[Any, dict[str, str]], Any]) -> list[Any]:
    return race(app, [partial(send, headers={"Authorization": f"Bearer {token}"}) for token in tokens])


def _codes(results: list[Any]) -> list[tuple[int, str | None]]:
    return sorted((r.status_code, (r.json or {}).get("code")) for r in results)


@pytest.mark.postgres
def test_one_id_number_registered_at_many_desks_at_once(app: Flask, world: dict[str, Any]) -> None:
    number = random_id_number(date(1970, 1, 1))
    body = {
        "name": "赵六",
        "id_number": number,
        "current_address": "深圳市罗湖区并发路1号",
        "community_id": str(world["centre"].community_id),
    }

    def send(client: Any, headers: dict[str, str]) -> Any:
        return client.post(
            "/api/v1/residents", json=body, headers={**headers, "Idempotency-Key": f"k-{uuid.uuid4().hex}"}
        )

    results = _race(app, world["tokens"], send)
    assert _codes(results) == [(201, None)] + [(409, "resident_exists")] * (THREADS - 1)
    with app.app_context():
        assert db.session.execute(select(func.count()).select_from(Resident)).scalar_one() == 1


@pytest.mark.postgres
def test_concurrent_status_changes_apply_once(app: Flask, world: dict[str, Any]) -> None:
    resident = make_resident(world["centre"])

    def send(client: Any, headers: dict[str, str]) -> Any:
        return client.post(
            f"/api/v1/residents/{resident.id}/status",
            json={"status": "deceased", "effective_date": "2024-01-02"},
            headers=headers,
        )

    codes = _codes(_race(app, world["tokens"], send))
    assert codes[0] == (200, None) and all(status == 409 for status, _ in codes[1:]), codes


@pytest.mark.postgres
def test_concurrent_consents_leave_one_active(app: Flask, world: dict[str, Any]) -> None:
    resident = make_resident(world["centre"], birth_date=date(1980, 1, 1))
    body = {"purpose": "online_services", "text_version": "1", "granted_by": "self", "channel": "desk"}

    def send(client: Any, headers: dict[str, str]) -> Any:
        return client.post(f"/api/v1/residents/{resident.id}/consents", json=body, headers=headers)

    codes = _codes(_race(app, world["tokens"], send))
    assert codes[0] == (201, None) and all(status == 409 for status, _ in codes[1:]), codes
    with app.app_context():
        active = select(func.count()).select_from(ResidentConsent).where(ResidentConsent.ended_at.is_(None))
        assert db.session.execute(active).scalar_one() == 1


@pytest.mark.postgres
def test_concurrent_transfers_move_once(app: Flask, world: dict[str, Any]) -> None:
    resident = make_resident(world["centre"])
    body = {"to_institution_id": str(world["elsewhere"].id), "reason": "同时提交"}

    def send(client: Any, headers: dict[str, str]) -> Any:
        return client.post(f"/api/v1/residents/{resident.id}/transfer", json=body, headers=headers)

    codes = _codes(_race(app, world["tokens"], send))
    assert codes[0] == (200, None), codes
    assert all(status in (404, 409) for status, _ in codes[1:]), codes
    with app.app_context():
        assert db.session.execute(select(func.count()).select_from(ResidentTransfer)).scalar_one() == 1
