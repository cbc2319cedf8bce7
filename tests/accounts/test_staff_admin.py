"""Staff administration within a scope: who may create whom, self-administration, masking and
unmasking (DATA-02), history and audit of every write, centre isolation (API-01) and mass
assignment (API-02)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from app.accounts import services
from app.accounts.models import StaffChange, StaffUser
from app.core.auth import Role
from app.core.db import db
from app.core.errors import PermissionDenied
from app.institutions.models import Institution
from tests.audit.support import (
    CJK_RE,
    Http,
    ResponseRecorder,
    assert_no_clear_phone,
    audit_rows,
    http_as,
    idem,
)
from tests.factories import PASSWORD, as_principal, make_staff, principal_of

STAFF = "/api/v1/staff"
CENTRE_GRANTABLE = ["team_leader", "doctor", "nurse", "public_health", "cashier"]


@pytest.fixture(autouse=True)
def _no_clear_phone_in_any_response(app: Flask) -> Iterator[None]:
    """DATA-02: no response of this module, apart from the unmask endpoint, shows a phone in clear."""
    with ResponseRecorder(app) as recorder:
        yield
    phones = [p for p in db.session.execute(select(StaffUser.phone)).scalars() if p]
    assert_no_clear_phone(recorder.responses, phones)


@pytest.fixture
def district_admin() -> StaffUser:
    return make_staff(Role.DISTRICT_ADMIN, None)


@pytest.fixture
def admin_a(centre: Institution) -> StaffUser:
    return make_staff(Role.CENTRE_ADMIN, centre)


def _new_staff(**overrides: Any) -> dict[str, Any]:
    body = {
        "username": "chen.jing",
        "name": "陈静",
        "phone": "13712345678",
        "role": "doctor",
        "password": "Temp-Pass-2024",
    }
    body.update(overrides)
    return body


def _user(username: str) -> StaffUser | None:
    db.session.expire_all()
    return db.session.execute(select(StaffUser).where(StaffUser.username == username)).scalar_one_or_none()


def _changes(user_id: Any) -> list[StaffChange]:
    db.session.expire_all()
    return list(
        db.session.execute(
            select(StaffChange).where(StaffChange.user_id == user_id).order_by(StaffChange.id)
        ).scalars()
    )


# --- creating staff ----------------------------------------------------------------------------


def test_district_admin_creates_staff_in_any_centre(app, centre, other_centre, district_admin):
    http = http_as(app, district_admin)
    for target in (centre, other_centre):
        username = f"doc.{target.his_code.lower()}"
        response = http.post(
            STAFF, headers=idem(), json=_new_staff(username=username, institution_id=str(target.id))
        )
        assert response.status_code == 201, response.json
        assert response.json["institution"]["id"] == str(target.id)
        assert response.json["phone"] == "137****5678"
        assert response.json["must_change_password"] is True
        user = _user(username)
        assert user is not None and user.institution_id == target.id and user.role == "doctor"
        [change] = _changes(user.id)
        assert (change.action, change.actor_id) == ("staff_created", district_admin.id)
        [event] = audit_rows(action="staff_created", object_id=user.id)
        assert event.actor_id == str(district_admin.id) and event.institution_id == str(target.id)
        assert "13712345678" not in str(event.detail)
    # The temporary password works, and asks for a change.
    login = Http(app).post(
        "/api/v1/auth/login",
        json={"username": f"doc.{centre.his_code.lower()}", "password": "Temp-Pass-2024"},
    )
    assert login.status_code == 200 and login.json["must_change_password"] is True


def test_centre_admin_creates_staff_in_their_own_centre(app, centre, admin_a):
    http = http_as(app, admin_a)
    implicit = http.post(STAFF, headers=idem(), json=_new_staff(username="implicit.centre"))
    explicit = http.post(
        STAFF, headers=idem(), json=_new_staff(username="explicit.centre", institution_id=str(centre.id))
    )
    assert implicit.status_code == 201 and explicit.status_code == 201
    assert implicit.json["institution"]["id"] == str(centre.id)
    assert explicit.json["institution"]["id"] == str(centre.id)


def test_centre_admin_cannot_create_staff_in_another_centre(app, other_centre, admin_a):
    response = http_as(app, admin_a).post(
        STAFF, headers=idem(), json=_new_staff(institution_id=str(other_centre.id))
    )
    assert response.status_code == 403
    assert response.json["code"] == "outside_scope"
    assert CJK_RE.search(response.json["message"])
    assert _user("chen.jing") is None


@pytest.mark.parametrize("role", ["centre_admin", "district_admin", "auditor"])
def test_centre_admin_cannot_grant_admin_or_auditor_roles(app, admin_a, role):
    response = http_as(app, admin_a).post(STAFF, headers=idem(), json=_new_staff(role=role))
    assert response.status_code == 403
    assert response.json["code"] == "role_not_grantable"
    assert _user("chen.jing") is None


@pytest.mark.parametrize("role", CENTRE_GRANTABLE)
def test_centre_admin_grants_the_centre_roles(app, centre, admin_a, role):
    response = http_as(app, admin_a).post(STAFF, headers=idem(), json=_new_staff(role=role))
    assert response.status_code == 201, response.json
    assert response.json["role"] == role


def test_a_district_role_with_a_centre_is_refused(app, centre, district_admin):
    response = http_as(app, district_admin).post(
        STAFF, headers=idem(), json=_new_staff(role="district_admin", institution_id=str(centre.id))
    )
    assert response.status_code == 422
    assert response.json["code"] == "district_role_with_centre"
    assert "institution_id" in response.json["errors"]
    assert _user("chen.jing") is None


@pytest.mark.parametrize("role", ["centre_admin", *CENTRE_GRANTABLE])
def test_a_centre_role_without_a_centre_is_refused(app, district_admin, role):
    response = http_as(app, district_admin).post(STAFF, headers=idem(), json=_new_staff(role=role))
    assert response.status_code == 422
    assert response.json["code"] == "centre_required"
    assert _user("chen.jing") is None


def test_auditors_may_be_district_wide_or_belong_to_a_centre(app, centre, district_admin):
    http = http_as(app, district_admin)
    district = http.post(STAFF, headers=idem(), json=_new_staff(username="aud.district", role="auditor"))
    local = http.post(
        STAFF,
        headers=idem(),
        json=_new_staff(username="aud.local", role="auditor", institution_id=str(centre.id)),
    )
    assert district.status_code == 201 and district.json["institution"] is None
    assert local.status_code == 201 and local.json["institution"]["id"] == str(centre.id)


def test_an_unknown_centre_is_refused(app, district_admin):
    response = http_as(app, district_admin).post(
        STAFF, headers=idem(), json=_new_staff(institution_id=str(uuid.uuid4()))
    )
    assert response.status_code == 422
    assert response.json["code"] == "institution_not_found"


def test_a_duplicate_username_is_409_across_centres_and_letter_case(
    app, centre, other_centre, district_admin, admin_a
):
    first = http_as(app, district_admin).post(
        STAFF, headers=idem(), json=_new_staff(username="liu.yang", institution_id=str(other_centre.id))
    )
    assert first.status_code == 201
    again = http_as(app, admin_a).post(STAFF, headers=idem(), json=_new_staff(username="Liu.Yang"))
    assert again.status_code == 409
    assert again.json["code"] == "username_taken"
    assert (
        db.session.execute(
            select(func.count()).select_from(StaffUser).where(StaffUser.username == "liu.yang")
        ).scalar_one()
        == 1
    )


def test_creating_staff_requires_an_idempotency_key(app, admin_a):
    http = http_as(app, admin_a)
    for headers in ({}, {"Idempotency-Key": "short"}, {"Idempotency-Key": "has spaces in it"}):
        response = http.post(STAFF, headers=headers, json=_new_staff())
        assert response.status_code == 400
        assert response.json["code"] == "idempotency_key_required"
    assert _user("chen.jing") is None


def test_a_repeated_create_with_the_same_key_is_replayed_not_repeated(app, admin_a):
    http = http_as(app, admin_a)
    key = idem()
    first = http.post(STAFF, headers=key, json=_new_staff())
    second = http.post(STAFF, headers=key, json=_new_staff())
    assert first.status_code == second.status_code == 201
    assert second.headers.get("Idempotent-Replayed") == "true"
    assert second.json == first.json
    assert (
        db.session.execute(
            select(func.count()).select_from(StaffUser).where(StaffUser.username == "chen.jing")
        ).scalar_one()
        == 1
    )
    other_body = http.post(STAFF, headers=key, json=_new_staff(username="someone.else"))
    assert other_body.status_code == 422
    assert other_body.json["code"] == "idempotency_key_mismatch"
    assert _user("someone.else") is None


def test_a_failed_create_does_not_burn_its_idempotency_key(app, admin_a):
    http = http_as(app, admin_a)
    key = idem()
    weak = http.post(STAFF, headers=key, json=_new_staff(password="weak"))
    assert weak.status_code == 422
    assert http.post(STAFF, headers=key, json=_new_staff(password="weak")).status_code == 422
    assert _user("chen.jing") is None


# --- self-administration and peer admins --------------------------------------------------------


@pytest.mark.parametrize("role", [Role.DISTRICT_ADMIN, Role.CENTRE_ADMIN])
def test_nobody_changes_their_own_role_or_status(app, centre, role):
    admin = make_staff(role, centre if role == Role.CENTRE_ADMIN else None)
    http = http_as(app, admin)
    attempts = [
        (f"{STAFF}/{admin.id}/role", {"role": "doctor", "reason": "试一试"}),
        (f"{STAFF}/{admin.id}/disable", {"reason": "试一试"}),
        (f"{STAFF}/{admin.id}/unlock", {"reason": "试一试", "reset_password": "Other-Pass-77"}),
    ]
    for path, body in attempts:
        response = http.post(path, json=body)
        assert response.status_code == 403, path
        assert response.json["code"] == "self_administration"
    db.session.expire_all()
    me = db.session.get(StaffUser, admin.id)
    assert (me.role, me.is_active) == (role.value, True)
    assert _changes(admin.id) == []


def test_a_centre_admin_cannot_administer_a_peer_admin(app, centre, admin_a, district_admin):
    peer = make_staff(Role.CENTRE_ADMIN, centre, phone="13655556666")
    http = http_as(app, admin_a)
    attempts = [
        ("POST", f"{STAFF}/{peer.id}/role", {"role": "doctor", "reason": "调整"}),
        ("POST", f"{STAFF}/{peer.id}/disable", {"reason": "调整"}),
        # A password reset would let one admin log in as the other.
        ("POST", f"{STAFF}/{peer.id}/unlock", {"reason": "重置", "reset_password": "Takeover-Pass-1"}),
        ("PATCH", f"{STAFF}/{peer.id}", {"phone": "13011112222"}),
    ]
    for method, path, body in attempts:
        response = http.request(method, path, json=body)
        assert response.status_code == 403, (method, path, response.json)
        assert response.json["code"] == "role_not_grantable"
    db.session.expire_all()
    unchanged = db.session.get(StaffUser, peer.id)
    assert (unchanged.role, unchanged.is_active, unchanged.phone) == ("centre_admin", True, "13655556666")
    assert (
        Http(app)
        .post("/api/v1/auth/login", json={"username": peer.username, "password": PASSWORD})
        .status_code
        == 200
    )
    # The district admin may.
    district = http_as(app, district_admin)
    assert (
        district.post(f"{STAFF}/{peer.id}/role", json={"role": "doctor", "reason": "调整"}).status_code == 200
    )


def test_an_admin_may_correct_their_own_name_and_phone(app, admin_a):
    response = http_as(app, admin_a).patch(
        f"{STAFF}/{admin_a.id}", json={"name": "新名字", "phone": "13566667777"}
    )
    assert response.status_code == 200
    assert response.json["name"] == "新名字"
    assert response.json["phone"] == "135****7777"


# --- history and audit of every write ------------------------------------------------------------


def test_every_admin_write_leaves_a_history_row_and_an_audit_row(app, centre, admin_a):
    http = http_as(app, admin_a)
    created = http.post(STAFF, headers=idem(), json=_new_staff())
    assert created.status_code == 201
    staff_id = uuid.UUID(created.json["id"])
    writes = [
        ("PATCH", f"{STAFF}/{staff_id}", {"name": "陈静怡", "phone": "13798765432"}, "staff_updated"),
        ("POST", f"{STAFF}/{staff_id}/role", {"role": "nurse", "reason": "转岗"}, "role_changed"),
        ("POST", f"{STAFF}/{staff_id}/disable", {"reason": "长期病假"}, "staff_disabled"),
        ("POST", f"{STAFF}/{staff_id}/enable", {"reason": "返岗"}, "staff_enabled"),
        (
            "POST",
            f"{STAFF}/{staff_id}/unlock",
            {"reason": "忘记密码", "reset_password": "Reset-Pass-99"},
            "staff_unlocked",
        ),
    ]
    for method, path, body, action in writes:
        response = http.request(method, path, json=body)
        assert response.status_code == 200, (path, response.json)
        change = _changes(staff_id)[-1]
        assert (change.action, change.actor_id) == (action, admin_a.id)
        [event] = audit_rows(action=action, object_id=staff_id)
        assert event.actor_id == str(admin_a.id) and event.result == "allowed"
        assert event.institution_id == str(centre.id)
        if "reason" in body:
            assert change.reason == body["reason"] == event.purpose
    assert [c.action for c in _changes(staff_id)] == ["staff_created"] + [w[3] for w in writes]
    role_change = _changes(staff_id)[2]
    assert (role_change.before, role_change.after) == ({"role": "doctor"}, {"role": "nurse"})
    # Personal data stays out of the history and the audit trail.
    assert not any("13798765432" in str(c.after) + str(c.before) for c in _changes(staff_id))
    assert not any("13798765432" in str(e.detail) for e in audit_rows(object_id=staff_id))


def test_state_changes_that_change_nothing_are_409(app, centre, admin_a):
    doctor = make_staff(Role.DOCTOR, centre)
    http = http_as(app, admin_a)
    assert (
        http.post(f"{STAFF}/{doctor.id}/enable", json={"reason": "重复"}).json["code"] == "status_unchanged"
    )
    assert (
        http.post(f"{STAFF}/{doctor.id}/role", json={"role": "doctor", "reason": "重复"}).json["code"]
        == "role_unchanged"
    )
    assert _changes(doctor.id) == []


# --- unmasking -----------------------------------------------------------------------------------


def test_centre_admin_unmasks_a_phone_with_a_reason_and_one_audit_row(app, centre, admin_a):
    nurse = make_staff(Role.NURSE, centre, phone="13812340000")
    http = http_as(app, admin_a)
    assert http.get(f"{STAFF}/{nurse.id}").json["phone"] == "138****0000"

    response = http.post(f"{STAFF}/{nurse.id}/unmask", json={"field": "phone", "reason": "contact_person"})

    assert response.status_code == 200, response.json
    assert response.json == {"field": "phone", "value": "13812340000"}
    [event] = audit_rows(action="unmask", object_id=nurse.id)
    assert event.actor_id == str(admin_a.id) and event.result == "allowed"
    assert event.purpose.startswith("contact_person")
    assert event.detail == {"field": "phone"}
    assert "13812340000" not in event.purpose + str(event.detail)


def test_unmask_with_reason_other_needs_a_note(app, centre, admin_a):
    nurse = make_staff(Role.NURSE, centre)
    http = http_as(app, admin_a)
    for body in ({"field": "phone", "reason": "other"}, {"field": "phone", "reason": "other", "note": "   "}):
        response = http.post(f"{STAFF}/{nurse.id}/unmask", json=body)
        assert response.status_code == 422
        assert response.json["code"] == "unmask_note_required"
        assert CJK_RE.search(response.json["message"])
    assert audit_rows(action="unmask", object_id=nurse.id) == []

    ok = http.post(
        f"{STAFF}/{nurse.id}/unmask", json={"field": "phone", "reason": "other", "note": "核对排班"}
    )
    assert ok.status_code == 200
    [event] = audit_rows(action="unmask", object_id=nurse.id)
    assert event.purpose == "other:核对排班"


@pytest.mark.parametrize(
    "body",
    [
        {"field": "phone"},
        {"field": "phone", "reason": "curiosity"},
        {"field": "password_hash", "reason": "verify_identity"},
        {"field": "phone", "reason": "verify_identity", "extra": 1},
    ],
)
def test_unmask_requests_are_validated(app, centre, admin_a, body):
    nurse = make_staff(Role.NURSE, centre)
    response = http_as(app, admin_a).post(f"{STAFF}/{nurse.id}/unmask", json=body)
    assert response.status_code == 422
    assert audit_rows(action="unmask") == []


@pytest.mark.parametrize("role", [r for r in Role if r not in (Role.DISTRICT_ADMIN, Role.CENTRE_ADMIN)])
def test_roles_without_the_unmask_permission_get_403(app, centre, role):
    nurse = make_staff(Role.NURSE, centre)
    caller = make_staff(role, centre)
    response = http_as(app, caller).post(
        f"{STAFF}/{nurse.id}/unmask", json={"field": "phone", "reason": "verify_identity"}
    )
    assert response.status_code == 403
    assert audit_rows(action="unmask") == []
    # The service refuses on its own too (defence in depth behind the route's role gate).
    with as_principal(caller), pytest.raises(PermissionDenied) as caught:
        services.unmask(principal_of(caller), nurse.id, field="phone", reason="verify_identity", note=None)
    assert caught.value.code == "unmask_not_permitted"


# --- centre isolation ----------------------------------------------------------------------------


def test_a_cashier_gets_404_for_staff_of_another_centre_and_the_denial_is_audited(app, centre, other_centre):
    cashier = make_staff(Role.CASHIER, centre)
    stranger = make_staff(Role.DOCTOR, other_centre)
    http = http_as(app, cashier)

    response = http.get(f"{STAFF}/{stranger.id}")
    missing = http.get(f"{STAFF}/{uuid.uuid4()}")

    assert response.status_code == 404
    # Exactly the answer for an id that does not exist: existence does not leak.
    assert response.json == missing.json
    [event] = audit_rows(object_id=stranger.id)
    assert (event.result, event.action, event.purpose) == ("denied", "read", "cross_centre_access")
    # Filed under the caller's centre; the owner of the object is named in the detail.
    assert event.actor_id == str(cashier.id) and event.institution_id == str(centre.id)
    assert event.detail == {"target_institution_id": str(other_centre.id)}
    assert event.request_id


def test_the_staff_list_of_a_centre_never_shows_another_centre(app, centre, other_centre):
    cashier = make_staff(Role.CASHIER, centre)
    mine = make_staff(Role.DOCTOR, centre)
    theirs = make_staff(Role.DOCTOR, other_centre, phone="13900001111")
    make_staff(Role.DISTRICT_ADMIN, None)
    http = http_as(app, cashier)

    listing = http.get(STAFF, query_string={"size": 100}).json
    ids = {item["id"] for item in listing["items"]}
    assert {str(cashier.id), str(mine.id)} <= ids
    assert {item["institution"]["id"] for item in listing["items"]} == {str(centre.id)}
    assert listing["total"] == len(listing["items"])
    for query in (
        {"institution_id": str(other_centre.id)},
        {"q": theirs.name},
        {"q": theirs.username},
        {"q": "13900001111"},
        {"role": "doctor", "institution_id": str(other_centre.id)},
    ):
        found = http.get(STAFF, query_string=query).json
        assert str(theirs.id) not in {item["id"] for item in found["items"]}, query
        assert {item["institution"]["id"] for item in found["items"]} <= {str(centre.id)}


@pytest.mark.parametrize("role", [Role.DISTRICT_ADMIN, Role.AUDITOR])
def test_district_roles_see_every_centre(app, centre, other_centre, role):
    viewer = make_staff(role, None)
    a = make_staff(Role.DOCTOR, centre)
    b = make_staff(Role.NURSE, other_centre, phone="13900002222")
    http = http_as(app, viewer)
    listing = http.get(STAFF, query_string={"size": 100}).json
    assert {str(a.id), str(b.id)} <= {item["id"] for item in listing["items"]}
    assert http.get(f"{STAFF}/{b.id}").status_code == 200
    by_phone = http.get(STAFF, query_string={"q": "13900002222"}).json
    assert [item["id"] for item in by_phone["items"]] == [str(b.id)]
    assert http.get(STAFF, query_string={"institution_id": str(other_centre.id)}).json["total"] == 1


def test_page_size_is_capped(app, centre):
    cashier = make_staff(Role.CASHIER, centre)
    response = http_as(app, cashier).get(STAFF, query_string={"size": 100000})
    assert response.status_code == 422
    assert "size" in str(response.json["errors"])


# --- mass assignment -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("role", "district_admin"),
        ("is_active", False),
        ("institution_id", None),
        ("username", "renamed"),
        ("must_change_password", False),
        ("password_hash", "x"),
        ("locked_until", None),
        ("failed_login_count", 0),
    ],
)
def test_patch_rejects_server_owned_fields_and_changes_nothing(
    app, centre, other_centre, admin_a, field, value
):
    doctor = make_staff(Role.DOCTOR, centre)
    if field == "institution_id":
        value = str(other_centre.id)
    before = {c: getattr(doctor, c) for c in ("role", "is_active", "institution_id", "username", "name")}

    response = http_as(app, admin_a).patch(f"{STAFF}/{doctor.id}", json={"name": "改名", field: value})

    assert response.status_code == 422
    assert field in response.json["errors"]
    db.session.expire_all()
    after = db.session.get(StaffUser, doctor.id)
    assert {c: getattr(after, c) for c in before} == before
    assert _changes(doctor.id) == []


@pytest.mark.parametrize(
    "extra", [{"is_active": False}, {"must_change_password": False}, {"id": "x"}, {"locked_until": None}]
)
def test_create_rejects_server_owned_fields(app, admin_a, extra):
    response = http_as(app, admin_a).post(STAFF, headers=idem(), json=_new_staff(**extra))
    assert response.status_code == 422
    assert set(extra) <= set(response.json["errors"])
    assert _user("chen.jing") is None


def test_role_change_rejects_a_centre_move(app, centre, other_centre, district_admin):
    doctor = make_staff(Role.DOCTOR, centre)
    response = http_as(app, district_admin).post(
        f"{STAFF}/{doctor.id}/role",
        json={"role": "nurse", "reason": "调动", "institution_id": str(other_centre.id)},
    )
    assert response.status_code == 422
    db.session.expire_all()
    assert db.session.get(StaffUser, doctor.id).institution_id == centre.id
    assert db.session.get(StaffUser, doctor.id).role == "doctor"
