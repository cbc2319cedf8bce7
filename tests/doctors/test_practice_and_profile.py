"""Practice status (在岗/停诊/离岗), the leaving block, the signing gate, profile, 医保 code, capacity."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.core.auth import Role
from app.core.db import db
from app.core.errors import BusinessRuleViolation
from app.doctors import services
from app.doctors.models import DoctorHistory
from tests.factories import make_staff
from tests.factories_doctors import make_doctor

URL = "/api/v1/doctors"


def _actions(doctor_id):
    return [
        h.action
        for h in db.session.execute(
            select(DoctorHistory).where(DoctorHistory.doctor_id == doctor_id).order_by(DoctorHistory.id)
        ).scalars()
    ]


def test_suspend_resume_leave_rejoin(api, centre):
    doctor = make_doctor(centre)
    admin = api(make_staff(Role.CENTRE_ADMIN, centre))
    path = f"{URL}/{doctor.id}/practice-status"
    suspended = admin.post(path, json={"status": "suspended", "reason": "外出进修"})
    assert suspended.status_code == 200 and suspended.json["practice_status_label"] == "停诊"
    assert suspended.json["can_sign"] is False and "停诊" in suspended.json["cannot_sign_reason"]
    same = admin.post(path, json={"status": "suspended", "reason": "重复"})
    assert same.status_code == 409 and same.json["code"] == "invalid_transition"
    assert (
        admin.post(path, json={"status": "active", "reason": "进修结束"}).json["practice_status"] == "active"
    )
    left = admin.post(path, json={"status": "left", "reason": "调离"})
    assert left.status_code == 200 and left.json["practice_status"] == "left"
    to_suspended = admin.post(path, json={"status": "suspended", "reason": "x2"})
    assert to_suspended.status_code == 409
    assert admin.post(path, json={"status": "active", "reason": "返岗"}).json["practice_status"] == "active"
    history = (
        db.session.execute(
            select(DoctorHistory).where(DoctorHistory.doctor_id == doctor.id).order_by(DoctorHistory.id)
        )
        .scalars()
        .all()
    )
    assert [(h.from_status, h.to_status, h.reason) for h in history] == [
        ("active", "suspended", "外出进修"),
        ("suspended", "active", "进修结束"),
        ("active", "left", "调离"),
        ("left", "active", "返岗"),
    ]


def test_a_doctor_with_signed_residents_cannot_leave(api, centre):
    doctor = make_doctor(centre, signed_count=3)
    admin = api(make_staff(Role.CENTRE_ADMIN, centre))
    response = admin.post(f"{URL}/{doctor.id}/practice-status", json={"status": "left", "reason": "离职"})
    assert response.status_code == 409 and response.json["code"] == "doctor_has_residents"
    assert "3 位签约居民" in response.json["message"] and response.json["errors"]["signed_count"] == ["3"]
    assert admin.get(f"{URL}/{doctor.id}").json["practice_status"] == "active"
    # Suspending is still possible: the residents stay signed.
    assert (
        admin.post(
            f"{URL}/{doctor.id}/practice-status", json={"status": "suspended", "reason": "病假"}
        ).status_code
        == 200
    )
    blocked = admin.post(f"{URL}/{doctor.id}/practice-status", json={"status": "left", "reason": "离职"})
    assert blocked.status_code == 409 and blocked.json["code"] == "doctor_has_residents"


def test_practice_status_roles_and_validation(api, centre, other_centre):
    doctor = make_doctor(centre)
    path = f"{URL}/{doctor.id}/practice-status"
    assert api().post(path, json={"status": "left", "reason": "离职"}).status_code == 401
    assert (
        api(make_staff(Role.DOCTOR, centre)).post(path, json={"status": "left", "reason": "离职"}).status_code
        == 403
    )
    assert (
        api(make_staff(Role.CENTRE_ADMIN, other_centre))
        .post(path, json={"status": "left", "reason": "离职"})
        .status_code
        == 404
    )
    invalid = api(make_staff(Role.CENTRE_ADMIN, centre)).post(path, json={"status": "retired", "reason": "x"})
    assert invalid.status_code == 422
    assert set(invalid.json["errors"]) == {"status", "reason"}


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"approved": False}, "doctor_not_approved"),
        ({"practice_status": "suspended"}, "doctor_not_active"),
        ({"practice_status": "left"}, "doctor_not_active"),
        ({"mi_doctor_code": None}, "doctor_mi_code_missing"),
        ({"mi_doctor_code": "D44030312345"}, "doctor_mi_code_missing"),
    ],
)
def test_assert_can_sign_refuses_with_a_clear_422(centre, kwargs, code):
    doctor = make_doctor(centre, **kwargs)
    with pytest.raises(BusinessRuleViolation) as caught:
        services.assert_can_sign(doctor)
    assert caught.value.code == code and caught.value.status == 422
    assert "不能签约" in caught.value.message or "暂不能签约" in caught.value.message


def test_the_mi_code_requirement_is_a_setting(centre, setting):
    doctor = make_doctor(centre, mi_doctor_code=None)
    setting("REQUIRE_MI_DOCTOR_CODE", False)
    services.assert_can_sign(doctor)
    services.assert_can_sign(make_doctor(centre))


def test_profile_update_without_re_review(api, centre):
    user = make_staff(Role.DOCTOR, centre)
    doctor = make_doctor(centre, staff_user=user)
    client = api(user)
    response = client.patch(
        f"{URL}/{doctor.id}/profile",
        json={"specialties": ["儿童保健", "儿童保健", " 中医调理 "], "introduction": "新简介"},
    )
    assert response.status_code == 200, response.json
    assert response.json["specialties"] == ["儿童保健", "中医调理"] and response.json["status"] == "approved"
    assert client.patch(f"{URL}/{doctor.id}/profile", json={}).status_code == 422
    assert client.patch(f"{URL}/{doctor.id}/profile", json={"title": "主任医师"}).status_code == 422
    other = api(make_staff(Role.DOCTOR, centre)).patch(
        f"{URL}/{doctor.id}/profile", json={"introduction": "x"}
    )
    assert other.status_code == 403 and other.json["code"] == "not_own_registration"
    assert _actions(doctor.id) == ["profile_updated"]


def test_set_mi_code(api, centre, other_centre):
    doctor = make_doctor(centre, mi_doctor_code=None)
    holder = make_doctor(other_centre, mi_doctor_code="D440303777777")
    admin = api(make_staff(Role.CENTRE_ADMIN, centre))
    path = f"{URL}/{doctor.id}/mi-code"
    bad = admin.put(path, json={"mi_doctor_code": "440303000001"})
    assert bad.status_code == 422 and "D + 6 位行政区划代码" in bad.json["errors"]["mi_doctor_code"][0]
    bad_area = admin.put(path, json={"mi_doctor_code": "D990303000001"})
    assert bad_area.json["errors"]["mi_doctor_code"] == ["医保医师编码中的行政区划代码不正确"]
    taken = admin.put(path, json={"mi_doctor_code": holder.mi_doctor_code})
    assert taken.status_code == 409 and taken.json["code"] == "mi_code_taken"
    ok = admin.put(path, json={"mi_doctor_code": "d440303000123", "reason": "医保局下发"})
    assert ok.status_code == 200 and ok.json["mi_doctor_code"] == "D440303000123" and ok.json["mi_code_valid"]
    assert ok.json["can_sign"] is True
    assert (
        api(make_staff(Role.DOCTOR, centre)).put(path, json={"mi_doctor_code": "D440303000124"}).status_code
        == 403
    )
    assert _actions(doctor.id) == ["mi_code_set"]


def test_doctor_capacity_override(api, centre):
    doctor = make_doctor(centre, signed_count=5)
    admin = api(make_staff(Role.CENTRE_ADMIN, centre))
    response = admin.put(f"{URL}/{doctor.id}/capacity", json={"capacity_override": 8})
    assert (response.json["capacity"], response.json["signed_count"], response.json["remaining"]) == (8, 5, 3)
    reset = admin.put(f"{URL}/{doctor.id}/capacity", json={"capacity_override": None})
    assert reset.json["capacity"] == 2000 and reset.json["capacity_override"] is None
    assert admin.put(f"{URL}/{doctor.id}/capacity", json={"capacity_override": -1}).status_code == 422
    assert admin.put(f"{URL}/{doctor.id}/capacity", json={}).status_code == 422


def test_history_endpoint(api, centre, other_centre):
    doctor = make_doctor(centre)
    admin = api(make_staff(Role.CENTRE_ADMIN, centre))
    admin.post(f"{URL}/{doctor.id}/practice-status", json={"status": "suspended", "reason": "进修"})
    history = api(make_staff(Role.NURSE, centre)).get(f"{URL}/{doctor.id}/history")
    assert history.status_code == 200
    assert [(h["action"], h["from_status"], h["to_status"], h["reason"]) for h in history.json] == [
        ("practice_status", "active", "suspended", "进修")
    ]
    assert api(make_staff(Role.NURSE, other_centre)).get(f"{URL}/{doctor.id}/history").status_code == 404
