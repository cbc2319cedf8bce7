"""Races decided by the database (PostgreSQL; SQLite serialises writers): eight nurses numbering
records in one 居委会 at once get eight different consecutive numbers; eight tablets creating the
same resident's record make one record; two editors of one form make one new version."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from app.core.auth import Role
from app.core.db import db
from app.health_records.models import HealthForm, HealthFormVersion, HealthRecord
from tests.factories import make_centre, make_staff, token_for
from tests.factories_residents import make_resident
from tests.health_records.factories import make_record, personal_info_payload
from tests.races import race

THREADS = 8


@pytest.fixture
def world(is_postgres: bool, committing_db: None) -> Iterator[dict[str, Any]]:
    if not is_postgres:
        pytest.skip("concurrent writers need PostgreSQL (set DATABASE_URL); SQLite serialises writers")
    centre = make_centre()
    nurses = [make_staff(Role.NURSE, centre) for _ in range(THREADS)]
    yield {"centre": centre, "nurses": nurses, "tokens": [token_for(n) for n in nurses]}


def _create(token: str, resident_id: uuid.UUID) -> Callable[[Any], Any]:
    def call(client: Any) -> Any:
        return client.post(
            "/api/v1/health-records",
            json={"resident_id": str(resident_id), "personal_info": personal_info_payload()},
            headers={"Authorization": f"Bearer {token}", "Idempotency-Key": f"k-{uuid.uuid4().hex}"},
        )

    return call


@pytest.mark.postgres
def test_records_created_at_once_in_one_community_get_consecutive_distinct_numbers(
    app: Flask, world: dict[str, Any]
) -> None:
    residents = [make_resident(world["centre"]) for _ in range(THREADS)]
    results = race(app, [_create(t, r.id) for t, r in zip(world["tokens"], residents, strict=True)])
    assert sorted(r.status_code for r in results) == [201] * THREADS
    numbers = sorted(r.json["record_no"] for r in results)
    area = numbers[0][:12]
    assert numbers == [f"{area}{n:05d}" for n in range(1, THREADS + 1)]


@pytest.mark.postgres
def test_one_resident_created_on_many_tablets_at_once_has_one_record(
    app: Flask, world: dict[str, Any]
) -> None:
    resident = make_resident(world["centre"])
    results = race(app, [_create(t, resident.id) for t in world["tokens"]])
    codes = sorted((r.status_code, (r.json or {}).get("code")) for r in results)
    assert codes == [(201, None)] + [(409, "health_record_exists")] * (THREADS - 1)
    with app.app_context():
        count = db.session.execute(
            select(func.count()).select_from(HealthRecord).where(HealthRecord.resident_id == resident.id)
        ).scalar_one()
        assert count == 1


@pytest.mark.postgres
def test_two_editors_of_one_form_make_one_new_version(app: Flask, world: dict[str, Any]) -> None:
    record = make_record(make_resident(world["centre"]), world["nurses"][0])
    with app.app_context():
        form_id = db.session.execute(
            select(HealthForm.id).where(
                HealthForm.record_id == record.id, HealthForm.form_type == "personal_info"
            )
        ).scalar_one()

    def edit(token: str, education: str) -> Callable[[Any], Any]:
        def call(client: Any) -> Any:
            return client.put(
                f"/api/v1/health-forms/{form_id}",
                json={"base_version": 1, "data": personal_info_payload(education=education)},
                headers={"Authorization": f"Bearer {token}"},
            )

        return call

    results = race(app, [edit(t, str(n + 3)) for n, t in enumerate(world["tokens"][:4])])
    codes = sorted((r.status_code, (r.json or {}).get("code")) for r in results)
    assert codes == [(200, None)] + [(409, "form_version_conflict")] * 3
    with app.app_context():
        versions = db.session.execute(
            select(func.count()).select_from(HealthFormVersion).where(HealthFormVersion.form_id == form_id)
        ).scalar_one()
        assert versions == 2
