"""我的健康档案 in the mini-program (`/mp/v1/health-records`, `/mp/v1/health-forms/{id}`,
`/mp/v1/health-records/card`): own record, a bound family member's, a stranger's; the categories
the policy hides (DATA-05: `MP_HIDDEN_HEALTH_CATEGORIES` for the resident, 严重精神障碍 and 肺结核
always for a family member); every read audited; personal fields masked."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from app.core import clock
from app.core.audit import AuditEvent
from app.core.auth import Role
from app.core.db import commit, db
from app.health_records.models import HealthForm, HealthRecord
from app.health_records.services import cases, forms
from app.institutions.models import Institution
from app.residents.models import Resident
from tests.factories import ApiClient, as_principal, grant, make_staff, token_for
from tests.factories_residents import make_resident
from tests.health_records.factories import make_record, personal_info_payload, registered_note_forms
from tests.miniprogram.conftest import PHONE, Mp

RECORD, CARD, FORM = "/mp/v1/health-records", "/mp/v1/health-records/card", "/mp/v1/health-forms"
SMD_NOTE, TB_NOTE = "test_mp_smd_note", "test_mp_tb_note"


@pytest.fixture(autouse=True)
def special_notes() -> Iterator[None]:
    """Test-only forms of the two special categories (the real ones are tested with their modules)."""
    with registered_note_forms(SMD_NOTE, TB_NOTE):
        yield


@dataclass
class Patient:
    resident: Resident
    record: HealthRecord
    personal: HealthForm
    smd: HealthForm
    tb: HealthForm
    doctor_name: str


def _special(user: Any, record: HealthRecord, category: str, form_type: str) -> HealthForm:
    with as_principal(user):
        cases.open_case(
            record.resident_id,
            category,
            notified_at=clock.now() - timedelta(hours=2) if category == "tb" else None,
        )
        form = forms.create_form(
            record.id, form_type, {"visit_date": clock.today_local().isoformat(), "note": f"{category}随访"}
        )
        commit()
    return form


@pytest.fixture
def patient(home_centre: Institution, resident: Resident) -> Patient:
    """The conftest resident (张三) with a record: 个人基本信息表 (既往史 高血压, 严重精神障碍, 结核病),
    one 严重精神障碍 and one 肺结核 follow-up."""
    doctor = make_staff(Role.DOCTOR, home_centre)
    payload = personal_info_payload(
        contact_name="李四",
        contact_phone="13900139000",
        past_diseases=[
            {"disease_code": "2", "diagnosed_ym": "2021-03"},
            {"disease_code": "8", "diagnosed_ym": "2022-05"},
            {"disease_code": "9", "diagnosed_ym": "2023-07"},
        ],
    )
    record = make_record(resident, doctor, payload=payload, responsible_doctor=doctor)
    personal = db.session.execute(
        select(HealthForm).where(HealthForm.record_id == record.id, HealthForm.form_type == "personal_info")
    ).scalar_one()
    smd = _special(grant(make_staff(Role.PUBLIC_HEALTH, home_centre), "health:smd"), record, "smd", SMD_NOTE)
    tb = _special(grant(make_staff(Role.DOCTOR, home_centre), "health:tb"), record, "tb", TB_NOTE)
    return Patient(resident, record, personal, smd, tb, doctor.name)


@pytest.fixture
def alice(mp: Mp, resident: Resident) -> ApiClient:
    """The patient herself, after 实名认证."""
    client = mp.login("oAliceHealth")
    mp.bind_self(client, resident)
    return client


@pytest.fixture
def bob(mp: Mp, home_centre: Institution, resident: Resident) -> ApiClient:
    """The patient's son: himself a resident, and bound to act for his mother."""
    client = mp.login("oBobHealth")
    mp.bind_self(client, make_resident(home_centre, name="王五", phone="13712340000"))
    asked = client.post(
        "/mp/v1/family",
        json={"name": resident.name, "id_number": resident.id_number, "relationship": "child"},
    )
    assert asked.status_code == 202, asked.json
    confirmed = client.post("/mp/v1/family/confirm", json={"otp": mp.code_sent_to(PHONE)})
    assert confirmed.status_code == 201, confirmed.json
    return client


def _ids(response: Any) -> set[str]:
    assert response.status_code == 200, response.json
    return {f["id"] for f in response.json["forms"]}


def _audit(**where: Any) -> list[AuditEvent]:
    db.session.expire_all()
    statement = select(AuditEvent).order_by(AuditEvent.seq)
    for column, value in where.items():
        statement = statement.where(getattr(AuditEvent, column) == value)
    return list(db.session.execute(statement).scalars())


def _text(response: Any) -> str:
    return json.dumps(response.json, ensure_ascii=False)


# --- the resident's own record -----------------------------------------------------------------------


def test_my_record_shows_number_centre_doctor_and_forms_without_smd(
    alice: ApiClient, patient: Patient, home_centre: Institution
) -> None:
    response = alice.get(RECORD)
    assert _ids(response) == {str(patient.personal.id), str(patient.tb.id)}
    body = response.json
    assert body["record_no"] == patient.record.record_no and len(body["record_no"]) == 17
    assert body["resident_name"] == "张*" and body["relationship"] == "self"
    assert body["centre"]["name"] == home_centre.name
    assert body["responsible_doctor_name"] == patient.doctor_name
    assert {f["title"] for f in body["forms"]} == {"个人基本信息表", "测试肺结核随访"}
    assert str(patient.smd.id) not in _text(response) and "严重精神障碍" not in _text(response)
    [row] = _audit(object_type="health_record", object_id=str(patient.record.id), actor_kind="resident")
    assert (row.action, row.result, row.purpose) == ("read", "allowed", "mp_health_record")
    assert row.subject_resident_id == str(patient.resident.id)
    assert row.institution_id == str(home_centre.id)
    assert alice.get(RECORD, query_string={"resident_id": str(patient.resident.id)}).json == body


def test_a_form_with_labels_derived_values_and_masked_personal_fields(
    alice: ApiClient, patient: Patient
) -> None:
    response = alice.get(f"{FORM}/{patient.personal.id}")
    assert response.status_code == 200, response.json
    form = response.json
    assert form["form_type"] == "personal_info" and form["record_no"] == patient.record.record_no
    assert form["data"]["contact_name"] == "李*" and form["data"]["contact_phone"] == "139****9000"
    assert "13900139000" not in _text(response) and "李四" not in _text(response)
    assert form["labels"]["blood_type_abo"] == "A型"
    # 既往史: 严重精神障碍 is hidden from the resident (default setting), 结核病 is not.
    assert [r["disease_code"] for r in form["data"]["past_diseases"]] == ["2", "9"]
    assert "严重精神障碍" not in _text(response)
    assert isinstance(form["derived"], dict)
    [row] = _audit(object_type="health_form", object_id=str(patient.personal.id), actor_kind="resident")
    assert (row.result, row.purpose, row.detail["relationship"]) == ("allowed", "mp_health_record", "self")

    tb = alice.get(f"{FORM}/{patient.tb.id}")
    assert tb.status_code == 200 and tb.json["category"] == "tb" and tb.json["data"]["note"] == "tb随访"


def test_a_hidden_form_by_id_is_a_404_with_a_denied_audit_row(alice: ApiClient, patient: Patient) -> None:
    hidden = alice.get(f"{FORM}/{patient.smd.id}")
    missing = alice.get(f"{FORM}/{uuid.uuid4()}")
    assert hidden.status_code == 404 and hidden.json == missing.json
    [denied] = _audit(result="denied")
    assert (denied.object_type, denied.object_id, denied.purpose) == (
        "health_form",
        str(patient.smd.id),
        "hidden_category",
    )
    assert denied.subject_resident_id == str(patient.resident.id) and denied.detail == {"category": "smd"}


def test_the_setting_decides_what_the_resident_sees_of_their_own_record(
    app: Flask, alice: ApiClient, patient: Patient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(app.config, "MP_HIDDEN_HEALTH_CATEGORIES", "smd, tb")
    assert _ids(alice.get(RECORD)) == {str(patient.personal.id)}
    assert alice.get(f"{FORM}/{patient.tb.id}").status_code == 404
    past = alice.get(f"{FORM}/{patient.personal.id}").json["data"]["past_diseases"]
    assert [r["disease_code"] for r in past] == ["2"]

    monkeypatch.setitem(app.config, "MP_HIDDEN_HEALTH_CATEGORIES", "")
    assert _ids(alice.get(RECORD)) == {str(patient.personal.id), str(patient.smd.id), str(patient.tb.id)}
    assert alice.get(f"{FORM}/{patient.smd.id}").status_code == 200


def test_my_record_card(alice: ApiClient, patient: Patient) -> None:
    response = alice.get(CARD)
    assert response.status_code == 200, response.json
    card = response.json
    assert card["front"]["name"] == "张*" and card["front"]["record_no"] == patient.record.record_no
    assert card["front"]["chronic_disease_labels"] == ["高血压", "其他疾病"]
    assert card["front"]["chronic_other"] == "结核病"  # 严重精神障碍 hidden by the default setting
    assert (
        card["back"]["emergency_contact"] == "李*"
        and card["back"]["emergency_contact_phone"] == "139****9000"
    )
    assert PHONE not in _text(response) and "严重精神障碍" not in _text(response)
    [row] = _audit(object_type="health_record_card", actor_kind="resident")
    assert (row.result, row.purpose, row.object_id) == ("allowed", "mp_health_record", str(patient.record.id))


# --- a family member ---------------------------------------------------------------------------------


def test_a_family_member_never_sees_smd_or_tb(
    app: Flask, bob: ApiClient, patient: Patient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(app.config, "MP_HIDDEN_HEALTH_CATEGORIES", "")  # even when the resident sees all
    query = {"resident_id": str(patient.resident.id)}
    record = bob.get(RECORD, query_string=query)
    assert _ids(record) == {str(patient.personal.id)}
    assert record.json["relationship"] == "child"
    for form in (patient.smd, patient.tb):
        assert bob.get(f"{FORM}/{form.id}").status_code == 404
    denied = _audit(result="denied")
    assert [(d.object_id, d.purpose) for d in denied] == [
        (str(patient.smd.id), "hidden_category"),
        (str(patient.tb.id), "hidden_category"),
    ]
    personal = bob.get(f"{FORM}/{patient.personal.id}")
    assert [r["disease_code"] for r in personal.json["data"]["past_diseases"]] == ["2"]
    card = bob.get(CARD, query_string=query)
    assert card.status_code == 200, card.json
    assert (
        card.json["front"]["chronic_disease_labels"] == ["高血压"]
        and card.json["front"]["chronic_other"] is None
    )
    for response in (record, personal, card):
        assert "严重精神障碍" not in _text(response) and "结核" not in _text(response)
    # His own record does not exist yet.
    own = bob.get(RECORD)
    assert (own.status_code, own.json["code"]) == (404, "health_record_not_found")


# --- anyone else ---------------------------------------------------------------------------------------


def test_a_stranger_gets_404s_audited_as_denied(mp: Mp, home_centre: Institution, patient: Patient) -> None:
    carol = mp.login("oCarolHealth")
    mp.bind_self(carol, make_resident(home_centre, name="赵六", phone="13612340000"))
    query = {"resident_id": str(patient.resident.id)}
    for path in (RECORD, CARD):
        response = carol.get(path, query_string=query)
        assert (response.status_code, response.json["code"]) == (404, "resident_not_found"), path
        unknown = carol.get(path, query_string={"resident_id": str(uuid.uuid4())})
        assert unknown.json == response.json
    form = carol.get(f"{FORM}/{patient.personal.id}")
    assert form.status_code == 404 and form.json == carol.get(f"{FORM}/{uuid.uuid4()}").json
    denied = _audit(result="denied")
    assert [
        (d.object_type, d.purpose) for d in denied if d.subject_resident_id == str(patient.resident.id)
    ] == [
        ("health_record", "not_bound_resident"),
        ("health_record_card", "not_bound_resident"),
        ("health_form", "not_bound_resident"),
    ]
    assert not _audit(result="allowed", subject_resident_id=str(patient.resident.id), actor_kind="resident")


def test_before_identity_binding_and_without_a_resident_token(
    app: Flask, mp: Mp, patient: Patient, home_centre: Institution
) -> None:
    newcomer = mp.login("oNewcomerHealth")
    response = newcomer.get(RECORD)
    assert (response.status_code, response.json["code"]) == (404, "identity_not_bound")
    assert newcomer.get(CARD).status_code == 404
    anonymous = app.test_client()
    assert anonymous.get(RECORD).status_code == 401
    assert anonymous.get(f"{FORM}/{patient.personal.id}").status_code == 401
    staff = ApiClient(app.test_client(), token_for(make_staff(Role.DOCTOR, home_centre)))
    assert staff.get(RECORD).status_code == 403
    assert staff.get(f"{FORM}/{patient.personal.id}").status_code == 403
    assert newcomer.get(RECORD, query_string={"resident_id": "not-a-uuid"}).status_code == 422


def test_a_voided_form_is_gone(alice: ApiClient, patient: Patient, home_centre: Institution) -> None:
    with as_principal(grant(make_staff(Role.DOCTOR, home_centre), "health:tb")):
        forms.void_form(patient.tb.id, reason="填错患者")
        commit()
    assert _ids(alice.get(RECORD)) == {str(patient.personal.id)}
    assert alice.get(f"{FORM}/{patient.tb.id}").status_code == 404
