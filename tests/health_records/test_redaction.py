"""DATA-05 inside general forms: a 既往史 row 严重精神障碍 (or 结核病) of the 个人基本信息表 and the card
is shown only to holders of that category's permission, and an edit by someone who could not see
it keeps it."""

from __future__ import annotations

import json

from flask import Flask
from sqlalchemy import select

from app.core.auth import Role
from app.core.db import db
from app.health_records.models import HealthForm, HealthFormVersion
from tests.audit.support import Http
from tests.factories import grant, make_centre, make_staff, token_for
from tests.factories_residents import make_resident
from tests.health_records.factories import make_record, personal_info_payload

HISTORY = [
    {"disease_code": "2", "diagnosed_ym": "2015-03"},  # 高血压
    {"disease_code": "8", "diagnosed_ym": "2010-06"},  # 严重精神障碍
]


def _setup() -> tuple[object, object, object, HealthForm]:
    centre = make_centre()
    holder = grant(make_staff(Role.DOCTOR, centre), "health:smd")
    nurse = make_staff(Role.NURSE, centre)
    record = make_record(make_resident(centre), holder, payload=personal_info_payload(past_diseases=HISTORY))
    form = db.session.execute(
        select(HealthForm).where(HealthForm.record_id == record.id, HealthForm.form_type == "personal_info")
    ).scalar_one()
    return record, holder, nurse, form


def _stored_codes(form_id, version: int) -> list[str]:
    db.session.expire_all()
    row = db.session.execute(
        select(HealthFormVersion).where(
            HealthFormVersion.form_id == form_id, HealthFormVersion.version == version
        )
    ).scalar_one()
    return [r["disease_code"] for r in json.loads(row.payload_json)["past_diseases"]]


def test_the_row_is_shown_to_the_holder_only(app: Flask) -> None:
    record, holder, nurse, form = _setup()
    seen_by_holder = Http(app, token_for(holder)).get(f"/api/v1/health-forms/{form.id}").json
    assert [r["disease_code"] for r in seen_by_holder["data"]["past_diseases"]] == ["2", "8"]
    seen_by_nurse = Http(app, token_for(nurse)).get(f"/api/v1/health-forms/{form.id}").json
    assert [r["disease_code"] for r in seen_by_nurse["data"]["past_diseases"]] == ["2"]
    assert "严重精神障碍" not in json.dumps(seen_by_nurse, ensure_ascii=False)
    card_for_nurse = Http(app, token_for(nurse)).get(f"/api/v1/health-records/{record.id}/card").json
    assert "严重精神障碍" not in json.dumps(card_for_nurse, ensure_ascii=False)
    card_for_holder = Http(app, token_for(holder)).get(f"/api/v1/health-records/{record.id}/card").json
    assert "严重精神障碍" in (card_for_holder["front"]["chronic_other"] or "")


def test_an_edit_by_someone_who_could_not_see_the_row_keeps_it(app: Flask) -> None:
    _, _, nurse, form = _setup()
    http = Http(app, token_for(nurse))
    shown = http.get(f"/api/v1/health-forms/{form.id}").json["data"]
    saved = http.put(
        f"/api/v1/health-forms/{form.id}", json={"base_version": 1, "data": {**shown, "education": "3"}}
    )
    assert saved.status_code == 200, saved.json
    assert _stored_codes(form.id, 2) == ["2", "8"]
    # "无" sent beside a row the nurse could not see: the row stays, the contradiction is dropped.
    again = http.put(
        f"/api/v1/health-forms/{form.id}",
        json={
            "base_version": 2,
            "data": {**shown, "education": "3", "past_diseases": [{"disease_code": "1"}]},
        },
    )
    assert again.status_code == 200, again.json
    assert _stored_codes(form.id, 3) == ["8"]
