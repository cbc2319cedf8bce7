"""DATA-04: every read of health data writes exactly one audit row naming the resident."""

from __future__ import annotations

import pytest
from flask import Flask
from sqlalchemy import select

from app.core.audit import AuditEvent
from app.core.auth import Role
from app.core.db import commit, db
from app.health_records.services import forms, records
from tests.audit.support import Http
from tests.factories import as_principal, make_centre, make_staff, token_for
from tests.factories_residents import make_resident

SELFCARE = {
    "assessed_at": "2026-02-01",
    "meal_level": "1",
    "grooming_level": "1",
    "dressing_level": "3",
    "toileting_level": "1",
    "activity_level": "2",
}


@pytest.fixture
def world(app: Flask) -> dict:
    centre = make_centre()
    doctor = make_staff(Role.DOCTOR, centre)
    resident = make_resident(centre, age=70)
    with as_principal(doctor):
        record = records.open_record(resident.id)
        form = forms.create_form(record.id, "elderly_selfcare", SELFCARE)
    commit()
    return {"doctor": doctor, "resident": resident, "record": record, "form": form}


def _rows(actor_id: str) -> list[AuditEvent]:
    db.session.expire_all()
    return list(db.session.execute(select(AuditEvent).where(AuditEvent.actor_id == actor_id)).scalars())


@pytest.mark.parametrize(
    ("path", "object_type", "action"),
    [
        ("/api/v1/health-records/{record}", "health_record", "read"),
        ("/api/v1/residents/{resident}/health-record", "health_record", "read"),
        ("/api/v1/health-forms/{form}", "health_form", "read"),
        ("/api/v1/health-forms/{form}?version=1", "health_form", "read"),
        ("/api/v1/health-forms/{form}/versions", "health_form", "read_history"),
        ("/api/v1/health-forms/{form}/print.pdf", "health_form", "print"),
    ],
)
def test_each_read_of_health_data_writes_one_audit_row(
    app: Flask, world: dict, path: str, object_type: str, action: str
) -> None:
    doctor = world["doctor"]
    url = path.format(record=world["record"].id, resident=world["resident"].id, form=world["form"].id)
    before = len(_rows(str(doctor.id)))
    response = Http(app, token_for(doctor)).get(url)
    assert response.status_code == 200, response.get_data()[:200]
    rows = _rows(str(doctor.id))[before:]
    assert len(rows) == 1, [(r.object_type, r.action) for r in rows]
    [row] = rows
    assert (row.object_type, row.action, row.result) == (object_type, action, "allowed")
    assert row.subject_resident_id == str(world["resident"].id)
    assert row.institution_id == str(doctor.institution_id)
    assert row.role == Role.DOCTOR.value and row.request_id


def test_a_list_of_forms_is_one_audit_row_naming_the_ids_returned(app: Flask, world: dict) -> None:
    doctor = world["doctor"]
    before = len(_rows(str(doctor.id)))
    response = Http(app, token_for(doctor)).get(f"/api/v1/health-forms?resident_id={world['resident'].id}")
    assert response.status_code == 200
    assert [item["id"] for item in response.json["items"]] == [str(world["form"].id)]
    [row] = _rows(str(doctor.id))[before:]
    assert (row.object_type, row.action) == ("health_form", "list")
    assert row.detail["ids"] == [str(world["form"].id)] and row.detail["criteria"] == ["resident_id"]
