"""The review state machine: one and two levels, rejection and resubmission, history, guards."""

from __future__ import annotations

import threading
import uuid

import pytest
from flask import g
from sqlalchemy import select, update

from app.core.auth import Role
from app.core.db import commit, db, rollback
from app.core.errors import Conflict, DomainError, InvalidTransition
from app.doctors import services
from app.doctors.models import (
    REVIEW_TRANSITIONS,
    Doctor,
    DoctorHistory,
    ReviewAction,
    ReviewStatus,
    next_review_status,
)
from tests.doctors.support import idem, registration
from tests.factories import as_principal, make_staff, principal_of
from tests.factories_doctors import make_doctor

URL = "/api/v1/doctors"


def _history(doctor_id):
    db.session.expire_all()
    return list(
        db.session.execute(
            select(DoctorHistory)
            .where(DoctorHistory.doctor_id == uuid.UUID(str(doctor_id)))
            .order_by(DoctorHistory.id)
        ).scalars()
    )


@pytest.fixture
def submitted(api, centre):
    user = make_staff(Role.DOCTOR, centre)
    body = api(user).post(URL, headers=idem(), json=registration()).json
    return user, body["id"]


def test_transition_table_is_the_state_machine():
    assert next_review_status(None, ReviewAction.SUBMIT) == ReviewStatus.SUBMITTED
    for status in ReviewStatus:
        for action in ReviewAction:
            key = (status, action)
            if key in REVIEW_TRANSITIONS:
                assert next_review_status(status.value, action) == REVIEW_TRANSITIONS[key]
            else:
                with pytest.raises(InvalidTransition) as caught:
                    next_review_status(status.value, action)
                assert caught.value.code == "invalid_transition" and caught.value.status == 409
    # Every status can be left except approved, and approved is reachable.
    assert {s for s, _ in REVIEW_TRANSITIONS if s is not None} == {
        ReviewStatus.SUBMITTED,
        ReviewStatus.CENTRE_APPROVED,
        ReviewStatus.REJECTED,
    }


def test_one_level_centre_admin_approves(api, centre, submitted, setting):
    setting("DOCTOR_REVIEW_LEVELS", "centre")
    _, doctor_id = submitted
    admin = make_staff(Role.CENTRE_ADMIN, centre)
    response = api(admin).post(f"{URL}/{doctor_id}/approve", json={"reason": "资料齐全"})
    assert response.status_code == 200, response.json
    assert response.json["status"] == "approved" and response.json["approved_at"]
    # Approved, but without a 医保医师编码 it cannot sign yet (REQUIRE_MI_DOCTOR_CODE is on by default).
    assert response.json["can_sign"] is False and "医保医师编码" in response.json["cannot_sign_reason"]
    history = _history(doctor_id)
    assert [(h.action, h.from_status, h.to_status) for h in history] == [
        ("submit", None, "submitted"),
        ("approve", "submitted", "approved"),
    ]
    assert (history[1].actor_id, history[1].actor_role, history[1].reason, history[1].channel) == (
        admin.id,
        "centre_admin",
        "资料齐全",
        "staff",
    )
    again = api(admin).post(f"{URL}/{doctor_id}/approve", json={})
    assert again.status_code == 409 and again.json["code"] == "invalid_transition"
    reject = api(admin).post(f"{URL}/{doctor_id}/reject", json={"reason": "重复"})
    assert reject.status_code == 409 and reject.json["code"] == "invalid_transition"


def test_district_admin_may_approve_in_one_level_mode(api, submitted, setting):
    setting("DOCTOR_REVIEW_LEVELS", "centre")
    _, doctor_id = submitted
    response = api(make_staff(Role.DISTRICT_ADMIN)).post(f"{URL}/{doctor_id}/approve", json={})
    assert response.status_code == 200 and response.json["status"] == "approved"


def test_two_levels_centre_then_district(api, centre, submitted, setting):
    setting("DOCTOR_REVIEW_LEVELS", "centre,district")
    _, doctor_id = submitted
    centre_admin = make_staff(Role.CENTRE_ADMIN, centre)
    district_admin = make_staff(Role.DISTRICT_ADMIN)
    early = api(district_admin).post(f"{URL}/{doctor_id}/approve", json={})
    assert early.status_code == 403 and early.json["code"] == "review_level_not_permitted"
    assert "社康中心管理员" in early.json["message"]
    first = api(centre_admin).post(f"{URL}/{doctor_id}/approve", json={})
    assert first.status_code == 200 and first.json["status"] == "centre_approved"
    assert first.json["status_label"] == "中心已审核，待区级审核" and first.json["can_sign"] is False
    twice = api(centre_admin).post(f"{URL}/{doctor_id}/approve", json={})
    assert twice.status_code == 403 and "区级管理员" in twice.json["message"]
    centre_reject = api(centre_admin).post(f"{URL}/{doctor_id}/reject", json={"reason": "撤回"})
    assert centre_reject.status_code == 403
    final = api(district_admin).post(f"{URL}/{doctor_id}/approve", json={"reason": "同意"})
    assert final.status_code == 200 and final.json["status"] == "approved"
    assert [(h.action, h.to_status, h.actor_role) for h in _history(doctor_id)] == [
        ("submit", "submitted", "doctor"),
        ("centre_approve", "centre_approved", "centre_admin"),
        ("approve", "approved", "district_admin"),
    ]


def test_district_admin_rejects_at_either_level(api, centre, submitted, setting):
    setting("DOCTOR_REVIEW_LEVELS", "centre,district")
    _, doctor_id = submitted
    response = api(make_staff(Role.DISTRICT_ADMIN)).post(
        f"{URL}/{doctor_id}/reject", json={"reason": "证书过期"}
    )
    assert response.status_code == 200 and response.json["status"] == "rejected"


def test_reject_needs_a_reason_then_resubmission(api, centre, submitted):
    user, doctor_id = submitted
    admin = make_staff(Role.CENTRE_ADMIN, centre)
    missing = api(admin).post(f"{URL}/{doctor_id}/reject", json={})
    assert missing.status_code == 422 and missing.json["errors"]["reason"] == ["此项必填"]
    rejected = api(admin).post(f"{URL}/{doctor_id}/reject", json={"reason": "执业证书照片不清晰"})
    assert rejected.status_code == 200
    assert rejected.json["status"] == "rejected" and rejected.json["rejection_reason"] == "执业证书照片不清晰"
    doctor = api(user)
    fixed = registration(introduction="补充了证书。")
    fixed["id_number"] = None
    resubmitted = doctor.post(f"{URL}/{doctor_id}/resubmit", json=fixed)
    assert resubmitted.status_code == 200, resubmitted.json
    assert resubmitted.json["status"] == "submitted" and resubmitted.json["rejection_reason"] is None
    assert resubmitted.json["introduction"] == "补充了证书。"
    again = doctor.post(f"{URL}/{doctor_id}/resubmit", json=fixed)
    assert again.status_code == 409 and again.json["code"] == "invalid_transition"
    history = _history(doctor_id)
    assert [(h.action, h.to_status) for h in history] == [
        ("submit", "submitted"),
        ("reject", "rejected"),
        ("resubmit", "submitted"),
    ]
    assert history[1].reason == "执业证书照片不清晰"
    assert "introduction" in history[2].detail["fields"]
    approved = api(admin).post(f"{URL}/{doctor_id}/approve", json={})
    assert approved.json["status"] == "approved"


def test_only_the_person_or_an_admin_resubmits(api, centre, other_centre, submitted):
    _, doctor_id = submitted
    api(make_staff(Role.CENTRE_ADMIN, centre)).post(f"{URL}/{doctor_id}/reject", json={"reason": "补充资料"})
    colleague = api(make_staff(Role.DOCTOR, centre)).post(f"{URL}/{doctor_id}/resubmit", json=registration())
    assert colleague.status_code == 403 and colleague.json["code"] == "not_own_registration"
    outsider = api(make_staff(Role.CENTRE_ADMIN, other_centre)).post(
        f"{URL}/{doctor_id}/resubmit", json=registration()
    )
    assert outsider.status_code == 404
    invalid = api(make_staff(Role.CENTRE_ADMIN, centre)).post(
        f"{URL}/{doctor_id}/resubmit", json=registration(id_number=None, institution_id=str(centre.id))
    )
    assert invalid.status_code == 422 and invalid.json["errors"]["institution_id"] == ["不允许的字段"]
    admin = api(make_staff(Role.CENTRE_ADMIN, centre)).post(
        f"{URL}/{doctor_id}/resubmit", json=registration(id_number=None)
    )
    assert admin.status_code == 200 and admin.json["status"] == "submitted"


def test_review_roles(api, centre, other_centre, submitted):
    _, doctor_id = submitted
    assert api().post(f"{URL}/{doctor_id}/approve", json={}).status_code == 401
    for role in (Role.DOCTOR, Role.TEAM_LEADER, Role.NURSE, Role.CASHIER):
        response = api(make_staff(role, centre)).post(f"{URL}/{doctor_id}/approve", json={})
        assert response.status_code == 403, role
    assert (
        api(make_staff(Role.CENTRE_ADMIN, other_centre))
        .post(f"{URL}/{doctor_id}/approve", json={})
        .status_code
        == 404
    )
    assert (
        api(make_staff(Role.CENTRE_ADMIN, centre))
        .post(f"{URL}/{doctor_id}/approve", json={"status": "approved"})
        .status_code
        == 422
    )


def test_a_stale_review_loses_to_a_concurrent_one(centre):
    doctor = make_doctor(centre, approved=False)
    admin = make_staff(Role.CENTRE_ADMIN, centre)
    with as_principal(admin) as principal:
        loaded = services.get_doctor(doctor.id)
        assert loaded.status == "submitted"
        # Another reviewer rejects it meanwhile; this session still holds the stale object.
        db.session.execute(
            update(Doctor)
            .where(Doctor.id == doctor.id)
            .values(status="rejected")
            .execution_options(synchronize_session=False)
        )
        with pytest.raises(Conflict) as caught:
            services.approve(principal, doctor.id)
    assert caught.value.code == "concurrent_transition" and caught.value.status == 409
    assert (
        db.session.execute(select(DoctorHistory).where(DoctorHistory.doctor_id == doctor.id)).first() is None
    )


def test_self_review_is_refused(centre):
    admin = make_staff(Role.CENTRE_ADMIN, centre)
    doctor = make_doctor(centre, approved=False, staff_user=admin)
    with as_principal(admin) as principal, pytest.raises(DomainError) as caught:
        services.approve(principal, doctor.id)
    assert caught.value.code == "self_review"


@pytest.mark.postgres
def test_concurrent_reviews_exactly_one_wins(app, pg_only, committing_db):
    from tests.factories import make_centre

    centre = make_centre()
    doctor_id = make_doctor(centre, approved=False).id
    admins = [make_staff(Role.CENTRE_ADMIN, centre) for _ in range(8)]
    barrier = threading.Barrier(len(admins))
    outcomes: list[str] = []
    lock = threading.Lock()

    def review(index: int) -> None:
        with app.app_context():
            g.principal = principal_of(admins[index])
            barrier.wait(timeout=30)
            try:
                if index % 2:
                    services.approve(g.principal, doctor_id)
                else:
                    services.reject(g.principal, doctor_id, reason="并发驳回")
                commit()
                result = "ok"
            except DomainError as exc:
                rollback()
                result = exc.code
            finally:
                db.session.remove()
            with lock:
                outcomes.append(result)

    threads = [threading.Thread(target=review, args=(i,)) for i in range(len(admins))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("ok") == 1, outcomes
    assert set(outcomes) - {"ok"} <= {"concurrent_transition", "invalid_transition"}
    history = (
        db.session.execute(select(DoctorHistory.action).where(DoctorHistory.doctor_id == doctor_id))
        .scalars()
        .all()
    )
    assert len(history) == 1
