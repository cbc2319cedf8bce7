"""Unified registration: submit, validation, duplicates, scope, reading, listing."""

from __future__ import annotations

import uuid
from datetime import date

from sqlalchemy import select

from app.core.audit import AuditEvent
from app.core.auth import Role
from app.core.db import db
from app.doctors.models import Doctor, DoctorHistory
from tests.doctors.support import id_number, idem, licence, registration
from tests.factories import make_staff
from tests.factories_doctors import make_doctor

URL = "/api/v1/doctors"


def test_doctor_registers_themselves(api, centre):
    user = make_staff(Role.DOCTOR, centre)
    payload = registration()
    response = api(user).post(URL, json=payload, headers=idem())
    assert response.status_code == 201, response.json
    body = response.json
    assert body["status"] == "submitted" and body["status_label"] == "待审核"
    assert body["practice_status"] == "active"
    assert body["staff_user_id"] == str(user.id)
    assert body["institution"]["id"] == str(centre.id)
    assert body["phone"] == "138****8000"
    assert body["id_number"] == "*" * 14 + payload["id_number"][-4:]
    assert body["can_sign"] is False and "审核" in body["cannot_sign_reason"]
    assert body["signed_count"] == 0 and body["capacity"] == 2000 and body["remaining"] == 2000
    assert body["qualifications"][0]["issued_on"] == "2010-07-01"
    doctor = db.session.get(Doctor, uuid.UUID(body["id"]))
    assert doctor.name_initials == " zs " and doctor.phone == "13800138000"
    history = (
        db.session.execute(select(DoctorHistory).where(DoctorHistory.doctor_id == doctor.id)).scalars().all()
    )
    assert [(h.action, h.to_status, h.actor_id, h.actor_role, h.channel) for h in history] == [
        ("submit", "submitted", user.id, "doctor", "staff")
    ]


def test_registration_needs_login_a_clinical_role_and_an_idempotency_key(api, centre):
    assert api().post(URL, json=registration(), headers=idem()).status_code == 401
    cashier = make_staff(Role.CASHIER, centre)
    denied = api(cashier).post(URL, json=registration(), headers=idem())
    assert denied.status_code == 403 and denied.json["code"] == "permission_denied"
    doctor = make_staff(Role.DOCTOR, centre)
    missing = api(doctor).post(URL, json=registration())
    assert missing.status_code == 400 and missing.json["code"] == "idempotency_key_required"


def test_field_errors_are_chinese_and_per_field(api, centre):
    user = make_staff(Role.DOCTOR, centre)
    response = api(user).post(
        URL,
        headers=idem(),
        json=registration(
            practice_licence_no="12345",
            phone="12345",
            title="大夫",
            practice_scopes=[],
            sex="x",
            qualifications=[{"type": "医师资格证书", "number": "1", "issued_on": "2999-01-01"}],
        ),
    )
    assert response.status_code == 422
    errors = response.json["errors"]
    assert errors["phone"] == ["手机号格式不正确，应为 11 位手机号"]
    assert "须为以下之一" in errors["title"][0]
    assert errors["practice_scopes"] == ["长度须在 1 到 4 之间"]
    assert errors["qualifications"]["0"]["issued_on"] == ["发证日期不能晚于今天"]
    assert response.json["message"].startswith("提交的数据有误")


def test_licence_pattern_follows_the_title_series(api, centre):
    client = api(make_staff(Role.DOCTOR, centre))
    physician = client.post(URL, headers=idem(), json=registration(practice_licence_no="1234567890"))
    assert physician.status_code == 422
    assert physician.json["errors"]["practice_licence_no"] == ["医师执业证书编号须为 15 位数字"]
    missing = client.post(URL, headers=idem(), json=registration(practice_licence_no=None))
    assert missing.json["errors"]["practice_licence_no"] == ["此职称须填写执业证书编号"]
    nurse = api(make_staff(Role.NURSE, centre)).post(
        URL,
        headers=idem(),
        json=registration(title="护师", practice_scopes=["护理"], practice_licence_no="201744001234"),
    )
    assert nurse.status_code == 201, nurse.json


def test_id_number_is_checked_against_birth_date_and_sex(api, centre):
    client = api(make_staff(Role.DOCTOR, centre))
    bad_checksum = client.post(URL, headers=idem(), json=registration(id_number="440303198506150010"))
    assert bad_checksum.json["errors"]["id_number"] == ["身份证号格式或校验位不正确"]
    other = client.post(
        URL, headers=idem(), json=registration(id_number=id_number(date(1990, 1, 2), male=False))
    )
    assert other.status_code == 422
    assert other.json["errors"]["birth_date"] == ["与身份证号中的出生日期不一致"]
    assert other.json["errors"]["sex"] == ["与身份证号中的性别不一致"]


def test_server_owned_fields_and_photo_urls_are_rejected(api, centre):
    client = api(make_staff(Role.DOCTOR, centre))
    for field, value in (
        ("status", "approved"),
        ("signed_count", 0),
        ("mi_doctor_code", "D440303000001"),
        ("photo_url", "http://169.254.169.254/latest/meta-data/"),
        ("capacity_override", 9),
    ):
        response = client.post(URL, headers=idem(), json=registration(**{field: value}))
        assert response.status_code == 422, field
        assert response.json["errors"][field] == ["不允许的字段"]
    assert db.session.execute(select(Doctor)).first() is None


def test_duplicates_are_409_across_centres(api, centre, other_centre):
    existing = make_doctor(other_centre, practice_licence_no="110440300012345")
    client = api(make_staff(Role.DOCTOR, centre))
    response = client.post(
        URL, headers=idem(), json=registration(practice_licence_no=existing.practice_licence_no)
    )
    assert response.status_code == 409 and response.json["code"] == "licence_taken"
    assert "另一" not in response.json["message"] and other_centre.name not in response.json["message"]
    first = client.post(URL, headers=idem(), json=registration())
    assert first.status_code == 201
    again = client.post(URL, headers=idem(), json=registration(practice_licence_no=licence(), id_number=None))
    assert again.status_code == 409 and again.json["code"] == "already_registered"


def test_same_id_number_cannot_register_twice(api, centre):
    number = id_number(date(1985, 6, 15))
    assert (
        api(make_staff(Role.DOCTOR, centre))
        .post(URL, headers=idem(), json=registration(id_number=number))
        .status_code
        == 201
    )
    second = api(make_staff(Role.DOCTOR, centre)).post(
        URL, headers=idem(), json=registration(id_number=number)
    )
    assert second.status_code == 409 and second.json["code"] == "id_number_taken"


def test_self_registration_is_for_ones_own_centre_and_account(api, centre, other_centre):
    user = make_staff(Role.TEAM_LEADER, centre)
    colleague = make_staff(Role.DOCTOR, centre)
    elsewhere = api(user).post(URL, headers=idem(), json=registration(institution_id=str(other_centre.id)))
    assert elsewhere.status_code == 403 and elsewhere.json["code"] == "outside_scope"
    for_other = api(user).post(URL, headers=idem(), json=registration(staff_user_id=str(colleague.id)))
    assert for_other.status_code == 403 and for_other.json["code"] == "not_own_registration"


def test_centre_admin_registers_staff_of_their_centre(api, centre, other_centre):
    admin = make_staff(Role.CENTRE_ADMIN, centre)
    nurse = make_staff(Role.NURSE, centre)
    foreign = make_staff(Role.NURSE, other_centre)
    cashier = make_staff(Role.CASHIER, centre)
    client = api(admin)
    body = registration(title="护士", practice_scopes=["护理"], practice_licence_no="201744001234")
    wrong_centre = client.post(URL, headers=idem(), json={**body, "staff_user_id": str(foreign.id)})
    assert wrong_centre.status_code == 422 and wrong_centre.json["code"] == "staff_not_in_centre"
    not_clinical = client.post(URL, headers=idem(), json={**body, "staff_user_id": str(cashier.id)})
    assert not_clinical.status_code == 422 and not_clinical.json["code"] == "staff_role_not_clinical"
    created = client.post(URL, headers=idem(), json={**body, "staff_user_id": str(nurse.id)})
    assert created.status_code == 201, created.json
    assert created.json["staff_user_id"] == str(nurse.id) and created.json["institution"]["id"] == str(
        centre.id
    )
    without_account = client.post(
        URL,
        headers=idem(),
        json=registration(
            title="无职称", practice_scopes=["其他"], practice_licence_no=None, id_number=None, name="李健康"
        ),
    )
    assert without_account.status_code == 201 and without_account.json["staff_user_id"] is None


def test_district_admin_must_name_the_centre(api, centre):
    client = api(make_staff(Role.DISTRICT_ADMIN))
    missing = client.post(URL, headers=idem(), json=registration())
    assert missing.status_code == 422 and missing.json["errors"]["institution_id"] == ["请选择所属社康中心"]
    ok = client.post(URL, headers=idem(), json=registration(institution_id=str(centre.id)))
    assert ok.status_code == 201 and ok.json["institution"]["id"] == str(centre.id)


def test_get_me_and_cross_centre_404_is_audited(api, centre, other_centre):
    user = make_staff(Role.DOCTOR, centre)
    client = api(user)
    assert client.get(f"{URL}/me").status_code == 404
    assert client.get(f"{URL}/me").json["code"] == "not_registered"
    created = client.post(URL, headers=idem(), json=registration()).json
    assert client.get(f"{URL}/me").json["id"] == created["id"]
    assert client.get(f"{URL}/{created['id']}").status_code == 200
    outsider = make_staff(Role.CENTRE_ADMIN, other_centre)
    response = api(outsider).get(f"{URL}/{created['id']}")
    assert response.status_code == 404
    denied = (
        db.session.execute(
            select(AuditEvent).where(AuditEvent.object_id == created["id"], AuditEvent.result == "denied")
        )
        .scalars()
        .all()
    )
    assert [(e.object_type, e.purpose, e.actor_id) for e in denied] == [
        ("doctor", "cross_centre_access", str(outsider.id))
    ]


def test_list_filters_by_status_and_pinyin(api, centre, other_centre):
    make_doctor(centre, name="曾小贤")
    make_doctor(centre, name="王五", approved=False)
    make_doctor(other_centre, name="张伟")
    client = api(make_staff(Role.NURSE, centre))
    everyone = client.get(URL).json
    assert everyone["total"] == 2
    assert [d["name"] for d in client.get(URL, query_string={"q": "zxx"}).json["items"]] == ["曾小贤"]
    assert [d["name"] for d in client.get(URL, query_string={"q": "cxx"}).json["items"]] == ["曾小贤"]
    assert [d["name"] for d in client.get(URL, query_string={"q": "小贤"}).json["items"]] == ["曾小贤"]
    assert [d["name"] for d in client.get(URL, query_string={"status": "submitted"}).json["items"]] == [
        "王五"
    ]
    district = api(make_staff(Role.DISTRICT_ADMIN)).get(
        URL, query_string={"institution_id": str(other_centre.id)}
    )
    assert [d["name"] for d in district.json["items"]] == ["张伟"]
    assert client.get(URL, query_string={"status": "bogus"}).status_code == 422


def test_nul_characters_are_a_422_not_a_database_error(api, centre):
    client = api(make_staff(Role.DOCTOR, centre))
    response = client.post(
        URL, headers=idem(), json=registration(introduction="简介\x00", specialties=["a\x00"])
    )
    assert response.status_code == 422
    # Refused by the global guard in app/core/http.py, field by field, before any handler runs.
    assert response.json["code"] == "invalid_characters"
    assert response.json["errors"] == {"introduction": ["不能包含空字符"], "specialties": ["不能包含空字符"]}
    assert client.get(URL, query_string={"q": "z\x00"}).status_code == 422
    assert api().get("/mp/v1/doctors", query_string={"q": "\x00"}).status_code == 422
    team = api(make_staff(Role.CENTRE_ADMIN, centre)).post("/api/v1/teams", json={"name": "队\x00"})
    assert team.status_code == 422 and team.json["errors"]["name"] == ["不能包含空字符"]
