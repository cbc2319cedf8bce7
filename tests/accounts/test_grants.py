"""DATA-05 category permissions granted per person (`/api/v1/staff/{id}/grants`): who may grant
and revoke what to whom, idempotency, history and audit of each change, the grants in the staff
schemas and in /auth/me, and that a grant or a revocation takes effect with the next request."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from app.accounts.models import StaffChange, StaffGrant, StaffUser
from app.core.auth import CLINICAL_ROLES, GRANTABLE_PERMISSIONS, Role
from app.core.db import db
from app.health_records.models import Category
from app.institutions.models import Institution
from app.residents.models.codes import SPECIAL_GROUP_PERMISSIONS
from tests.audit.support import CJK_RE, Http, audit_rows, http_as
from tests.factories import grant, make_centre, make_staff, token_for

STAFF = "/api/v1/staff"


@pytest.fixture
def admin(centre: Institution) -> StaffUser:
    return make_staff(Role.CENTRE_ADMIN, centre)


@pytest.fixture
def doctor(centre: Institution) -> StaffUser:
    return make_staff(Role.DOCTOR, centre)


def _grants(user: StaffUser) -> list[str]:
    db.session.expire_all()
    return sorted(
        db.session.execute(select(StaffGrant.permission).where(StaffGrant.user_id == user.id)).scalars()
    )


def _changes(user: StaffUser) -> list[StaffChange]:
    db.session.expire_all()
    return list(
        db.session.execute(
            select(StaffChange)
            .where(StaffChange.user_id == user.id, StaffChange.action.like("permission_%"))
            .order_by(StaffChange.id)
        ).scalars()
    )


def _put(http: Http, user: StaffUser, permission: str, reason: Any = "负责辖区严重精神障碍患者管理") -> Any:
    body = {} if reason is None else {"reason": reason}
    return http.request("PUT", f"{STAFF}/{user.id}/grants/{permission}", json=body)


def _delete(http: Http, user: StaffUser, permission: str, **kwargs: Any) -> Any:
    return http.request("DELETE", f"{STAFF}/{user.id}/grants/{permission}", **kwargs)


def test_the_permission_lists_agree() -> None:
    """One rule: every special population group and every special form category names a
    grantable permission, and only clinical roles may hold them."""
    assert set(SPECIAL_GROUP_PERMISSIONS.values()) == set(GRANTABLE_PERMISSIONS)
    assert {Category.SMD.permission, Category.TB.permission} == set(GRANTABLE_PERMISSIONS)
    assert SPECIAL_GROUP_PERMISSIONS == {"severe_mental_disorder": "health:smd", "tuberculosis": "health:tb"}
    assert all(roles == CLINICAL_ROLES for _, roles in GRANTABLE_PERMISSIONS.values())


def test_a_centre_admin_grants_with_a_reason_history_and_audit(
    app: Flask, admin: StaffUser, doctor: StaffUser
) -> None:
    http = http_as(app, admin)
    response = _put(http, doctor, "health:smd")
    assert response.status_code == 200, response.json
    body = response.json
    assert body["staff_id"] == str(doctor.id)
    [held] = body["grants"]
    assert held["permission"] == "health:smd" and held["label"] == "严重精神障碍患者健康管理"
    assert held["granted_by"] == f"staff:{admin.id}" and held["granted_at"]
    assert {p["permission"] for p in body["available"]} == {"health:smd", "health:tb"}
    assert _grants(doctor) == ["health:smd"]
    [change] = _changes(doctor)
    assert (change.action, change.actor_id, change.reason) == (
        "permission_granted",
        admin.id,
        "负责辖区严重精神障碍患者管理",
    )
    assert (change.before, change.after) == ({"grants": []}, {"grants": ["health:smd"]})
    [row] = audit_rows(object_id=doctor.id, action="permission_granted")
    assert row.result == "allowed" and row.actor_id == str(admin.id)
    assert row.institution_id == str(doctor.institution_id)

    # The grants show in the staff detail and list, and in the holder's /auth/me.
    assert http.get(f"{STAFF}/{doctor.id}").json["grants"] == ["health:smd"]
    listed = http.get(STAFF, query_string={"role": "doctor"}).json["items"]
    assert [u["grants"] for u in listed if u["id"] == str(doctor.id)] == [["health:smd"]]
    assert [u["grants"] for u in http.get(STAFF).json["items"] if u["id"] == str(admin.id)] == [[]]
    assert http_as(app, doctor).get("/api/v1/auth/me").json["grants"] == ["health:smd"]
    assert http.get(f"{STAFF}/{doctor.id}/grants").json["grants"][0]["permission"] == "health:smd"


def test_granting_twice_and_revoking_what_is_not_held_change_nothing(
    app: Flask, admin: StaffUser, doctor: StaffUser
) -> None:
    http = http_as(app, admin)
    first = _put(http, doctor, "health:tb")
    again = _put(http, doctor, "health:tb", reason="重复授权")
    assert (first.status_code, again.status_code) == (200, 200)
    assert first.json == again.json
    assert len(_changes(doctor)) == 1
    assert len(audit_rows(object_id=doctor.id, action="permission_granted")) == 1

    absent = _delete(http, doctor, "health:smd", query_string={"reason": "并未授权"})
    assert absent.status_code == 200 and absent.json == first.json
    assert len(_changes(doctor)) == 1


def test_revoking_takes_a_reason_in_the_query_or_the_body(
    app: Flask, admin: StaffUser, doctor: StaffUser
) -> None:
    grant(doctor, "health:smd", "health:tb")
    http = http_as(app, admin)
    missing = _delete(http, doctor, "health:smd")
    assert missing.status_code == 422 and "reason" in missing.json["errors"]
    assert _grants(doctor) == ["health:smd", "health:tb"]

    by_query = _delete(http, doctor, "health:smd", query_string={"reason": "调离精神卫生岗位"})
    assert by_query.status_code == 200, by_query.json
    assert [g["permission"] for g in by_query.json["grants"]] == ["health:tb"]
    by_body = _delete(http, doctor, "health:tb", json={"reason": "结核病患者已转出"})
    assert by_body.status_code == 200 and by_body.json["grants"] == []
    assert _grants(doctor) == []
    revoked = _changes(doctor)
    assert [(c.action, c.reason, c.after) for c in revoked] == [
        ("permission_revoked", "调离精神卫生岗位", {"grants": ["health:tb"]}),
        ("permission_revoked", "结核病患者已转出", {"grants": []}),
    ]
    assert len(audit_rows(object_id=doctor.id, action="permission_revoked")) == 2


def test_only_grantable_permissions_and_only_to_clinical_roles(
    app: Flask, admin: StaffUser, centre: Institution
) -> None:
    http = http_as(app, admin)
    doctor = make_staff(Role.DOCTOR, centre)
    unknown = _put(http, doctor, "pii:unmask")
    assert (unknown.status_code, unknown.json["code"]) == (422, "permission_not_grantable")
    assert CJK_RE.search(unknown.json["message"]) and "health:smd" in unknown.json["message"]
    assert _delete(http, doctor, "audit:read", query_string={"reason": "无此权限"}).status_code == 422
    for role in (Role.CASHIER, Role.CENTRE_ADMIN, Role.AUDITOR):
        refused = _put(http, make_staff(role, centre), "health:smd")
        assert (refused.status_code, refused.json["code"]) == (422, "permission_not_for_role"), role
        assert "严重精神障碍患者健康管理" in refused.json["message"]
    for role in sorted(CLINICAL_ROLES):
        assert _put(http, make_staff(role, centre), "health:tb").status_code == 200, role
    assert _put(http, doctor, "health:smd", reason=None).status_code == 422
    assert _put(http, doctor, "health:smd", reason="x").status_code == 422
    assert _grants(doctor) == []


def test_who_may_grant_read_and_revoke(app: Flask, doctor: StaffUser, centre: Institution) -> None:
    elsewhere = make_centre()
    other_admin = make_staff(Role.CENTRE_ADMIN, elsewhere)
    refused = _put(http_as(app, other_admin), doctor, "health:smd")
    assert refused.status_code == 404
    [denied] = audit_rows(actor_id=other_admin.id, result="denied")
    assert denied.object_id == str(doctor.id) and denied.purpose == "cross_centre_access"
    assert http_as(app, other_admin).get(f"{STAFF}/{doctor.id}/grants").status_code == 404
    for role in (Role.DOCTOR, Role.NURSE, Role.PUBLIC_HEALTH, Role.CASHIER):
        colleague = make_staff(role, centre)
        assert _put(http_as(app, colleague), doctor, "health:smd").status_code == 403, role
        assert (
            _delete(
                http_as(app, colleague), doctor, "health:smd", query_string={"reason": "越权"}
            ).status_code
            == 403
        )
        assert http_as(app, colleague).get(f"{STAFF}/{doctor.id}/grants").status_code == 200
    assert Http(app).get(f"{STAFF}/{doctor.id}/grants").status_code == 401
    assert _put(Http(app), doctor, "health:smd").status_code == 401
    assert (
        http_as(app, make_staff(Role.CENTRE_ADMIN, centre)).get(f"{STAFF}/{uuid.uuid4()}/grants").status_code
        == 404
    )

    district = http_as(app, make_staff(Role.DISTRICT_ADMIN, None))
    assert _put(district, doctor, "health:smd").status_code == 200
    assert _delete(district, doctor, "health:smd", json={"reason": "区级调整"}).status_code == 200
    assert _grants(doctor) == []


def test_a_grant_and_a_revocation_take_effect_with_the_next_request(
    app: Flask, admin: StaffUser, doctor: StaffUser
) -> None:
    """Grants are read per request: the holder's session needs no new login either way."""
    holder = Http(app, token_for(doctor))
    listing = "/api/v1/health-forms"
    assert holder.get(listing, query_string={"category": "smd"}).status_code == 403
    assert _put(http_as(app, admin), doctor, "health:smd").status_code == 200
    assert holder.get(listing, query_string={"category": "smd"}).status_code == 200
    assert holder.get(listing, query_string={"category": "tb"}).status_code == 403
    assert (
        _delete(http_as(app, admin), doctor, "health:smd", query_string={"reason": "调岗"}).status_code == 200
    )
    assert holder.get(listing, query_string={"category": "smd"}).status_code == 403


def test_a_role_change_drops_the_permissions_the_new_role_may_not_hold(
    app: Flask, admin: StaffUser, doctor: StaffUser
) -> None:
    grant(doctor, "health:smd")
    http = http_as(app, admin)
    assert (
        http.post(f"{STAFF}/{doctor.id}/role", json={"role": "nurse", "reason": "转岗护理"}).status_code
        == 200
    )
    assert _grants(doctor) == ["health:smd"]  # a nurse may hold it
    assert (
        http.post(f"{STAFF}/{doctor.id}/role", json={"role": "cashier", "reason": "转岗收费"}).status_code
        == 200
    )
    assert _grants(doctor) == []
    [change] = _changes(doctor)
    assert change.action == "permission_revoked" and change.reason == "角色变更：转岗收费"
