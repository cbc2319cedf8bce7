"""DATA-05: 严重精神障碍 and 肺结核 records are visible only to staff holding that category
permission in the responsible centre; absent from default lists; every access audited.

As the spec words the tests: a desk role (nurse) and a doctor without the category permission
GET the resident and the record: the special-category forms are absent; a direct GET of the form
id is a 404 with a denied audit row; the default list leaves them out; asking for the category is
a 403; the holder of the permission in the responsible centre sees them; the same permission held
in another centre is a 404.

The SMD/TB form modules are written separately: these tests register their own tiny forms of
each category (`test_smd_note`, `test_tb_note`), so they test the gate and nothing else.
"""

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

from app.accounts.models import StaffUser
from app.core import clock
from app.core.audit import AuditEvent
from app.core.auth import Role
from app.core.db import commit, db
from app.health_records.models import HealthCase, HealthForm, HealthRecord
from app.health_records.services import cases, forms, records
from app.institutions.models import Institution
from app.residents.models import Resident
from tests.audit.support import Http, idem
from tests.factories import as_principal, grant, make_centre, make_staff, token_for
from tests.factories_residents import make_resident
from tests.health_records.factories import registered_note_forms

SMD_NOTE, TB_NOTE = "test_smd_note", "test_tb_note"
SECRET = "测试随访内容-只限授权人员"


@pytest.fixture(autouse=True)
def special_notes() -> Iterator[None]:
    """Test-only forms of the two special categories, removed from the registry afterwards."""
    with registered_note_forms(SMD_NOTE, TB_NOTE):
        yield


@dataclass
class World:
    centre: Institution
    resident: Resident
    record: HealthRecord
    general: HealthForm  # 老年人生活自理能力评估表
    smd_case: HealthCase
    smd: HealthForm
    tb: HealthForm
    smd_holder: StaffUser  # public-health doctor with health:smd in the responsible centre
    tb_holder: StaffUser


def _special_form(user: StaffUser, record: HealthRecord, category: str, form_type: str) -> tuple[Any, Any]:
    with as_principal(user):
        case = cases.open_case(
            record.resident_id,
            category,
            notified_at=clock.now() - timedelta(hours=3) if category == "tb" else None,
        )
        form = forms.create_form(
            record.id, form_type, {"visit_date": clock.today_local().isoformat(), "note": SECRET}
        )
        commit()
    return case, form


@pytest.fixture
def world() -> World:
    centre = make_centre()
    doctor = make_staff(Role.DOCTOR, centre)
    smd_holder = grant(make_staff(Role.PUBLIC_HEALTH, centre), "health:smd")
    tb_holder = grant(make_staff(Role.DOCTOR, centre), "health:tb")
    resident = make_resident(
        centre, age=70, population_groups={"hypertension", "severe_mental_disorder", "tuberculosis"}
    )
    with as_principal(doctor):
        record = records.open_record(resident.id, responsible_doctor_id=doctor.id)
        general = forms.create_form(
            record.id,
            "elderly_selfcare",
            {
                "assessed_at": clock.today_local().isoformat(),
                "meal_level": "1",
                "grooming_level": "1",
                "dressing_level": "1",
                "toileting_level": "1",
                "activity_level": "1",
            },
        )
        commit()
    smd_case, smd = _special_form(smd_holder, record, "smd", SMD_NOTE)
    _, tb = _special_form(tb_holder, record, "tb", TB_NOTE)
    return World(centre, resident, record, general, smd_case, smd, tb, smd_holder, tb_holder)


def _http(app: Flask, user: StaffUser) -> Http:
    return Http(app, token_for(user))


def _text(response: Any) -> str:
    return json.dumps(response.json, ensure_ascii=False)


def _form_ids(response: Any) -> set[str]:
    assert response.status_code == 200, response.json
    body = response.json
    return {f["id"] for f in body.get("forms", body.get("items", []))}


def _denials(user: StaffUser) -> list[AuditEvent]:
    db.session.expire_all()
    return list(
        db.session.execute(
            select(AuditEvent)
            .where(AuditEvent.actor_id == str(user.id), AuditEvent.result == "denied")
            .order_by(AuditEvent.seq)
        ).scalars()
    )


def _reads(user: StaffUser, object_id: Any) -> list[AuditEvent]:
    db.session.expire_all()
    return list(
        db.session.execute(
            select(AuditEvent).where(
                AuditEvent.actor_id == str(user.id),
                AuditEvent.object_id == str(object_id),
                AuditEvent.result == "allowed",
            )
        ).scalars()
    )


# --- without the permission: the special forms do not exist ----------------------------------------


@pytest.mark.parametrize("role", [Role.NURSE, Role.DOCTOR, Role.TEAM_LEADER, Role.CENTRE_ADMIN])
def test_without_the_permission_the_special_records_are_absent(app: Flask, world: World, role: Role) -> None:
    user = make_staff(role, world.centre)
    if role is Role.DOCTOR:
        world.record.responsible_doctor_id = user.id  # even the responsible doctor: a grant, not a role
        commit()
    http = _http(app, user)

    resident = http.get(f"/api/v1/residents/{world.resident.id}")
    assert resident.status_code == 200, resident.json
    assert [g["code"] for g in resident.json["population_groups"]] == ["elderly_65", "hypertension"]
    assert "严重精神障碍" not in _text(resident) and "肺结核" not in _text(resident)

    for path in (
        f"/api/v1/health-records/{world.record.id}",
        f"/api/v1/residents/{world.resident.id}/health-record",
    ):
        shown = http.get(path)
        assert _form_ids(shown) == {str(world.general.id)}, path
        text = _text(shown)
        assert str(world.smd.id) not in text and str(world.tb.id) not in text and SECRET not in text

    listed = http.get("/api/v1/health-forms", query_string={"resident_id": str(world.resident.id)})
    assert _form_ids(listed) == {str(world.general.id)}
    assert _form_ids(http.get("/api/v1/health-forms")) == {str(world.general.id)}


@pytest.mark.parametrize("role", [Role.NURSE, Role.DOCTOR])
def test_a_direct_read_is_a_404_with_a_denied_audit_row(app: Flask, world: World, role: Role) -> None:
    user = make_staff(role, world.centre)
    http = _http(app, user)
    for form in (world.smd, world.tb):
        for suffix in ("", "/versions", "/print.pdf"):
            response = http.get(f"/api/v1/health-forms/{form.id}{suffix}")
            assert response.status_code == 404, (form.category, suffix)
            assert response.json == http.get(f"/api/v1/health-forms/{uuid.uuid4()}{suffix}").json
    denied = _denials(user)
    assert len(denied) == 6  # one per refused read of an existing form, none for the missing ids
    assert {d.object_id for d in denied} == {str(world.smd.id), str(world.tb.id)}
    assert {(d.object_type, d.purpose) for d in denied} == {("health_form", "special_category")}
    assert {d.subject_resident_id for d in denied} == {str(world.resident.id)}
    assert {d.detail["category"] for d in denied} == {"smd", "tb"}
    assert {d.action for d in denied} == {"read", "print"}
    assert _reads(user, world.smd.id) == []

    case = http.get(f"/api/v1/health-cases/{world.smd_case.id}")
    assert case.status_code == 404
    assert [d.object_type for d in _denials(user)][-1] == "health_case"


@pytest.mark.parametrize("category", ["smd", "tb"])
def test_asking_for_a_category_without_its_permission_is_403_and_audited(
    app: Flask, world: World, category: str
) -> None:
    nurse = make_staff(Role.NURSE, world.centre)
    response = _http(app, nurse).get(
        "/api/v1/health-forms", query_string={"category": category, "resident_id": str(world.resident.id)}
    )
    assert (response.status_code, response.json["code"]) == (403, "category_forbidden")
    [denied] = _denials(nurse)
    assert (denied.action, denied.object_type, denied.detail) == (
        "list",
        "health_form",
        {"category": category},
    )
    cases_list = _http(app, nurse).get("/api/v1/health-cases", query_string={"category": category})
    assert cases_list.status_code == 403


def test_writing_a_special_form_needs_the_permission(world: World) -> None:
    from app.core.errors import NotFound, PermissionDenied

    doctor = make_staff(Role.DOCTOR, world.centre)
    payload = {"visit_date": clock.today_local().isoformat(), "note": "无权限填写"}
    with as_principal(doctor), pytest.raises(NotFound):
        forms.create_form(world.record.id, SMD_NOTE, payload)
    with as_principal(doctor), pytest.raises(NotFound):
        forms.revise_form(world.smd.id, payload, base_version=1)
    other = make_resident(world.centre, age=40)
    with as_principal(doctor):
        records.open_record(other.id)
        commit()
    with as_principal(doctor), pytest.raises(PermissionDenied) as refused:
        cases.open_case(other.id, "smd")
    assert refused.value.code == "category_forbidden" and "严重精神障碍" in refused.value.message


# --- with the permission in the responsible centre -------------------------------------------------


def test_the_holder_in_the_responsible_centre_sees_the_category_and_only_that_one(
    app: Flask, world: World
) -> None:
    http = _http(app, world.smd_holder)
    shown = http.get(f"/api/v1/health-records/{world.record.id}")
    assert _form_ids(shown) == {str(world.general.id), str(world.smd.id)}
    assert _form_ids(http.get(f"/api/v1/residents/{world.resident.id}/health-record")) == {
        str(world.general.id),
        str(world.smd.id),
    }
    resident = http.get(f"/api/v1/residents/{world.resident.id}")
    assert [g["code"] for g in resident.json["population_groups"]] == [
        "elderly_65",
        "hypertension",
        "severe_mental_disorder",
    ]

    form = http.get(f"/api/v1/health-forms/{world.smd.id}")
    assert form.status_code == 200, form.json
    assert form.json["category"] == "smd" and form.json["data"]["note"] == SECRET
    assert [e.action for e in _reads(world.smd_holder, world.smd.id)] == ["create", "read"]
    assert http.get(f"/api/v1/health-forms/{world.smd.id}/versions").status_code == 200
    assert http.get(f"/api/v1/health-cases/{world.smd_case.id}").status_code == 200

    # Default lists leave special categories out even for holders; the category must be asked for.
    assert _form_ids(http.get("/api/v1/health-forms")) == {str(world.general.id)}
    assert _form_ids(http.get("/api/v1/health-forms", query_string={"category": "smd"})) == {
        str(world.smd.id)
    }
    assert http.get("/api/v1/health-forms", query_string={"category": "tb"}).status_code == 403
    assert http.get(f"/api/v1/health-forms/{world.tb.id}").status_code == 404
    assert [d.object_id for d in _denials(world.smd_holder)] == [None, str(world.tb.id)]


def test_a_nurse_with_the_grant_sees_it_and_loses_it_on_revocation(app: Flask, world: World) -> None:
    nurse = grant(make_staff(Role.NURSE, world.centre), "health:tb")
    http = _http(app, nurse)
    assert http.get(f"/api/v1/health-forms/{world.tb.id}").status_code == 200
    admin = make_staff(Role.CENTRE_ADMIN, world.centre)
    revoked = _http(app, admin).request(
        "DELETE", f"/api/v1/staff/{nurse.id}/grants/health:tb", query_string={"reason": "调离结核病管理"}
    )
    assert revoked.status_code == 200, revoked.json
    assert http.get(f"/api/v1/health-forms/{world.tb.id}").status_code == 404
    assert _form_ids(http.get(f"/api/v1/health-records/{world.record.id}")) == {str(world.general.id)}


# --- the same permission elsewhere -------------------------------------------------------------------


def test_the_same_grant_held_in_another_centre_is_a_404(app: Flask, world: World) -> None:
    stranger = grant(make_staff(Role.PUBLIC_HEALTH, make_centre()), "health:smd", "health:tb")
    http = _http(app, stranger)
    for path in (
        f"/api/v1/health-forms/{world.smd.id}",
        f"/api/v1/health-forms/{world.tb.id}",
        f"/api/v1/health-records/{world.record.id}",
        f"/api/v1/health-cases/{world.smd_case.id}",
        f"/api/v1/residents/{world.resident.id}/health-record",
    ):
        assert http.get(path).status_code == 404, path
    denied = _denials(stranger)
    assert len(denied) == 5 and all(d.institution_id == str(stranger.institution_id) for d in denied)
    own = http.get("/api/v1/health-forms", query_string={"category": "smd"})
    assert own.status_code == 200 and own.json["items"] == []


def test_district_admins_never_see_special_records(app: Flask, world: World) -> None:
    district = make_staff(Role.DISTRICT_ADMIN, None)
    http = _http(app, district)
    assert _form_ids(http.get(f"/api/v1/health-records/{world.record.id}")) == {str(world.general.id)}
    assert http.get(f"/api/v1/health-forms/{world.smd.id}").status_code == 404
    assert [d.purpose for d in _denials(district)] == ["special_category"]


def test_the_responsible_centre_keeps_the_case_when_the_resident_moves(app: Flask, world: World) -> None:
    """The record follows the resident to the new centre; the open 专案 stays with the centre
    responsible for it, so a holder in the new centre sees the record without those forms."""
    from app.residents.services import transfer_resident

    new_centre = make_centre()
    with as_principal(make_staff(Role.DISTRICT_ADMIN, None)) as actor:
        transfer_resident(actor, world.resident.id, to_institution_id=new_centre.id, reason="迁居")
        commit()
    holder_there = grant(make_staff(Role.PUBLIC_HEALTH, new_centre), "health:smd")
    shown = _http(app, holder_there).get(f"/api/v1/residents/{world.resident.id}/health-record")
    assert _form_ids(shown) == {str(world.general.id)}
    assert _http(app, holder_there).get(f"/api/v1/health-forms/{world.smd.id}").status_code == 404
    kept = _http(app, world.smd_holder).get("/api/v1/health-forms", query_string={"category": "smd"})
    assert _form_ids(kept) == {str(world.smd.id)}


def test_the_responsible_centre_keeps_working_on_the_case_after_the_move(app: Flask, world: World) -> None:
    """After the resident moved, the holder in the responsible centre still reads, prints and adds
    to the case's forms (the record now belongs to the new centre); the new centre cannot add to it."""
    from app.residents.services import transfer_resident

    new_centre = make_centre()
    with as_principal(make_staff(Role.DISTRICT_ADMIN, None)) as actor:
        transfer_resident(actor, world.resident.id, to_institution_id=new_centre.id, reason="迁居")
        commit()
    http = _http(app, world.smd_holder)
    shown = http.get(f"/api/v1/health-forms/{world.smd.id}")
    assert shown.status_code == 200, shown.json
    assert shown.json["record_no"] == world.record.record_no
    added = http.post(
        f"/api/v1/health-records/{world.record.id}/forms",
        json={"form_type": SMD_NOTE, "data": {"visit_date": "2026-01-10", "note": "迁居后电话随访"}},
        headers=idem(),
    )
    assert added.status_code == 201, added.json
    assert added.json["institution_id"] == str(world.smd_case.institution_id)
    # A general form is the new centre's business now: the old centre no longer sees the record.
    general = http.post(
        f"/api/v1/health-records/{world.record.id}/forms",
        json={"form_type": "elderly_selfcare", "data": {"assessed_at": "2026-01-10"}},
        headers=idem(),
    )
    assert general.status_code == 404
    holder_there = grant(make_staff(Role.PUBLIC_HEALTH, new_centre), "health:smd")
    refused = _http(app, holder_there).post(
        f"/api/v1/health-records/{world.record.id}/forms",
        json={"form_type": SMD_NOTE, "data": {"visit_date": "2026-01-10", "note": "新中心"}},
        headers=idem(),
    )
    assert refused.status_code == 422 and refused.json["code"] == "case_required"
