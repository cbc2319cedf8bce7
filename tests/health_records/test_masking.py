"""DATA-02 inside forms: personal fields of a form (a contact's phone and name) are masked in
responses, and an edit that sends the masked value back keeps the stored one."""

from __future__ import annotations

import json

from flask import Flask
from sqlalchemy import select

from app.core.auth import Role
from app.core.db import db
from app.health_records.models import HealthForm, HealthFormVersion
from tests.audit.support import Http
from tests.factories import make_centre, make_staff, token_for
from tests.factories_residents import make_resident
from tests.health_records.factories import make_record, personal_info_payload


def _personal_form(record_id) -> HealthForm:
    return db.session.execute(
        select(HealthForm).where(HealthForm.record_id == record_id, HealthForm.form_type == "personal_info")
    ).scalar_one()


def _stored(form_id, version: int) -> dict:
    db.session.expire_all()
    row = db.session.execute(
        select(HealthFormVersion).where(
            HealthFormVersion.form_id == form_id, HealthFormVersion.version == version
        )
    ).scalar_one()
    return json.loads(row.payload_json)


def test_contact_fields_are_masked_and_a_masked_echo_keeps_the_stored_value(app: Flask) -> None:
    centre = make_centre()
    nurse = make_staff(Role.NURSE, centre)
    record = make_record(make_resident(centre), nurse)
    form = _personal_form(record.id)
    http = Http(app, token_for(nurse))

    shown = http.get(f"/api/v1/health-forms/{form.id}")
    assert shown.status_code == 200
    data = shown.json["data"]
    assert data["contact_phone"] == "138****8000" and data["contact_name"] == "张*"
    assert "13800138000" not in shown.get_data(as_text=True)

    # The tablet sends the form back as shown, with one real change: the masked fields stay as stored.
    edited = {**data, "education": "3"}
    saved = http.put(f"/api/v1/health-forms/{form.id}", json={"base_version": 1, "data": edited})
    assert saved.status_code == 200, saved.json
    assert saved.json["version"] == 2
    stored = _stored(form.id, 2)
    assert stored["contact_phone"] == "13800138000" and stored["contact_name"] == "张三"
    assert stored["education"] == "3"
    assert [v["changed_fields"] for v in http.get(f"/api/v1/health-forms/{form.id}/versions").json][1] == [
        "education"
    ]

    # A new number replaces the stored one.
    again = http.put(
        f"/api/v1/health-forms/{form.id}",
        json={"base_version": 2, "data": {**edited, "contact_phone": "13900139000"}},
    )
    assert again.status_code == 200, again.json
    assert _stored(form.id, 3)["contact_phone"] == "13900139000"


def test_a_masked_value_for_a_field_that_was_empty_is_refused(app: Flask) -> None:
    centre = make_centre()
    nurse = make_staff(Role.NURSE, centre)
    record = make_record(
        make_resident(centre), nurse, payload=personal_info_payload(contact_name=None, contact_phone=None)
    )
    form = _personal_form(record.id)
    body = {**personal_info_payload(), "contact_phone": "138****8000"}
    refused = Http(app, token_for(nurse)).put(
        f"/api/v1/health-forms/{form.id}", json={"base_version": 1, "data": body}
    )
    assert refused.status_code == 422
    assert "contact_phone" in refused.json["errors"]


def test_a_save_sent_again_after_a_lost_answer_returns_the_same_version(app: Flask) -> None:
    """A flaky network: the tablet's PUT succeeded but the answer was lost; the same PUT again
    answers 200 with the version it made, and makes no third version. Someone else's stale edit
    still gets the 409."""
    centre = make_centre()
    nurse = make_staff(Role.NURSE, centre)
    record = make_record(make_resident(centre), nurse)
    form = _personal_form(record.id)
    http = Http(app, token_for(nurse))
    body = {"base_version": 1, "data": personal_info_payload(education="4"), "reason": "更正文化程度"}
    first = http.put(f"/api/v1/health-forms/{form.id}", json=body)
    again = http.put(f"/api/v1/health-forms/{form.id}", json=body)
    assert (first.status_code, again.status_code) == (200, 200)
    assert first.json["version"] == again.json["version"] == 2
    assert len(http.get(f"/api/v1/health-forms/{form.id}/versions").json) == 2
    different = http.put(
        f"/api/v1/health-forms/{form.id}", json={**body, "data": personal_info_payload(education="5")}
    )
    assert (different.status_code, different.json["code"]) == (409, "form_version_conflict")
    colleague = Http(app, token_for(make_staff(Role.DOCTOR, centre)))
    assert colleague.put(f"/api/v1/health-forms/{form.id}", json=body).json["code"] == "form_version_conflict"
