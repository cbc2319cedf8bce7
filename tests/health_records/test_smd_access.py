"""DATA-05 for 严重精神障碍 forms: only holders of `health:smd` in the responsible centre see them.

For anyone else the forms do not exist: a direct read is a 404 with a denied audit row, the record
leaves them out, the default list leaves them out and asking for the category is a 403.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from flask import Flask
from sqlalchemy import select

from app.accounts.models import StaffUser
from app.core.audit import AuditEvent
from app.core.auth import Role
from app.core.db import db
from app.health_records.models import HealthForm
from tests.factories import grant, make_centre, make_staff, token_for
from tests.health_records.smd_support import World, fill, make_world, supplement, visit

SELFCARE = {
    "assessed_at": "2026-02-01",
    "meal_level": "1",
    "grooming_level": "1",
    "dressing_level": "1",
    "toileting_level": "1",
    "activity_level": "1",
}


@dataclass
class Setting:
    world: World
    supplement: HealthForm
    follow_up: HealthForm
    general: HealthForm


@pytest.fixture
def setting(app: Flask) -> Setting:
    world = make_world()
    return Setting(
        world,
        fill(world, "smd_supplement", supplement()),
        fill(world, "smd_follow_up", visit()),
        fill(world, "elderly_selfcare", SELFCARE),
    )


def get(app: Flask, user: StaffUser, path: str, **query: str):  # type: ignore[no-untyped-def]
    return app.test_client().get(
        path, query_string=query, headers={"Authorization": f"Bearer {token_for(user)}"}
    )


def denied_rows(user: StaffUser, form: HealthForm) -> list[AuditEvent]:
    db.session.expire_all()
    return list(
        db.session.execute(
            select(AuditEvent).where(
                AuditEvent.actor_id == str(user.id),
                AuditEvent.object_id == str(form.id),
                AuditEvent.result == "denied",
            )
        ).scalars()
    )


@pytest.mark.parametrize("role", [Role.NURSE, Role.DOCTOR])
def test_staff_without_the_grant_cannot_see_smd_forms(app: Flask, setting: Setting, role: Role) -> None:
    world = setting.world
    user = make_staff(role, world.centre)  # same centre, no health:smd
    for form in (setting.supplement, setting.follow_up):
        response = get(app, user, f"/api/v1/health-forms/{form.id}")
        assert response.status_code == 404, response.get_json()
        assert response.get_json()["code"] == "not_found"
        [row] = denied_rows(user, form)
        assert (row.object_type, row.action, row.purpose) == ("health_form", "read", "special_category")
        assert row.subject_resident_id == str(world.resident.id) and row.detail == {"category": "smd"}
        for path in (f"/api/v1/health-forms/{form.id}/print.pdf", f"/api/v1/health-forms/{form.id}/versions"):
            assert get(app, user, path).status_code == 404

    # the record is there, without its 严重精神障碍 forms
    record = get(app, user, f"/api/v1/health-records/{world.record.id}")
    assert record.status_code == 200
    assert [f["form_type"] for f in record.get_json()["forms"]] == ["elderly_selfcare"]

    # the default list leaves them out; asking for the category is refused
    listed = get(app, user, "/api/v1/health-forms", resident_id=str(world.resident.id))
    assert listed.status_code == 200
    assert [item["id"] for item in listed.get_json()["items"]] == [str(setting.general.id)]
    refused = get(app, user, "/api/v1/health-forms", category="smd")
    assert refused.status_code == 403 and refused.get_json()["code"] == "category_forbidden"
    by_case = get(app, user, "/api/v1/health-forms", case_id=str(world.case.id))
    assert by_case.status_code == 404
    cases = get(app, user, "/api/v1/health-cases", category="smd")
    assert cases.status_code == 403


def test_a_nurse_with_the_grant_in_the_responsible_centre_sees_them(app: Flask, setting: Setting) -> None:
    world = setting.world
    nurse = grant(make_staff(Role.NURSE, world.centre), "health:smd")
    response = get(app, nurse, f"/api/v1/health-forms/{setting.follow_up.id}")
    assert response.status_code == 200
    body = response.get_json()
    assert body["form_type"] == "smd_follow_up" and body["labels"]["visit_class"] == "稳定"
    record = get(app, nurse, f"/api/v1/health-records/{world.record.id}").get_json()
    assert sorted(f["form_type"] for f in record["forms"]) == [
        "elderly_selfcare",
        "smd_follow_up",
        "smd_supplement",
    ]
    listed = get(app, nurse, "/api/v1/health-forms", category="smd").get_json()
    assert {item["id"] for item in listed["items"]} == {str(setting.supplement.id), str(setting.follow_up.id)}
    default = get(app, nurse, "/api/v1/health-forms").get_json()  # still general forms only by default
    assert [item["id"] for item in default["items"]] == [str(setting.general.id)]
    assert get(app, nurse, f"/api/v1/health-forms/{setting.supplement.id}/print.pdf").status_code == 200


def test_a_holder_of_the_grant_in_another_centre_gets_a_404(app: Flask, setting: Setting) -> None:
    elsewhere = grant(make_staff(Role.NURSE, make_centre()), "health:smd")
    form = setting.follow_up
    response = get(app, elsewhere, f"/api/v1/health-forms/{form.id}")
    assert response.status_code == 404
    assert len(denied_rows(elsewhere, form)) == 1
    listed = get(app, elsewhere, "/api/v1/health-forms", category="smd").get_json()
    assert listed["items"] == []
