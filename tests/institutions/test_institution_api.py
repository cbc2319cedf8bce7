"""Centres and streets over HTTP: list, get, and patch within scope."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from app.core.auth import Role
from app.core.db import commit, db
from app.institutions.models import STREETS, Institution
from tests.audit.support import audit_rows, http_as
from tests.factories import make_centre, make_staff

INSTITUTIONS = "/api/v1/institutions"


def _centre(centre_id: uuid.UUID) -> Institution:
    db.session.expire_all()
    return db.session.execute(select(Institution).where(Institution.id == centre_id)).scalar_one()


@pytest.mark.parametrize("role", list(Role))
def test_every_staff_role_lists_the_centres(app, centre, other_centre, role):
    caller = make_staff(role, None if role in (Role.DISTRICT_ADMIN, Role.AUDITOR) else centre)
    response = http_as(app, caller).get(INSTITUTIONS, query_string={"size": 100})
    assert response.status_code == 200
    ids = {item["id"] for item in response.json["items"]}
    assert {str(centre.id), str(other_centre.id)} <= ids
    assert response.json["total"] == len(response.json["items"])


def test_the_list_filters_by_street_and_text(app):
    in_donghu = make_centre(name="罗湖区东湖测试社康中心", street="东湖", community="大望")
    in_guiyuan = make_centre(name="罗湖区桂园测试社康中心", street="桂园", community="老围")
    http = http_as(app, make_staff(Role.NURSE, in_guiyuan))
    street_id = str(in_donghu.street_id)

    by_street = http.get(INSTITUTIONS, query_string={"street_id": street_id}).json
    assert [item["id"] for item in by_street["items"]] == [str(in_donghu.id)]
    assert by_street["items"][0]["street"]["name"] == "东湖"
    by_text = http.get(INSTITUTIONS, query_string={"q": "桂园测试"}).json
    assert [item["id"] for item in by_text["items"]] == [str(in_guiyuan.id)]
    assert http.get(INSTITUTIONS, query_string={"size": 1000}).status_code == 422
    assert http.get(INSTITUTIONS, query_string={"street_id": "not-a-uuid"}).status_code == 422


def test_an_inactive_centre_is_not_listed(app, centre, other_centre):
    other_centre.is_active = False
    commit()
    listing = http_as(app, make_staff(Role.NURSE, centre)).get(INSTITUTIONS, query_string={"size": 100}).json
    assert str(other_centre.id) not in {item["id"] for item in listing["items"]}


def test_get_one_centre(app, centre):
    http = http_as(app, make_staff(Role.CASHIER, centre))
    response = http.get(f"{INSTITUTIONS}/{centre.id}")
    assert response.status_code == 200
    body = response.json
    assert (body["id"], body["his_code"], body["name"]) == (str(centre.id), centre.his_code, centre.name)
    assert body["street"]["id"] == str(centre.street_id)
    assert body["community"]["id"] == str(centre.community_id)
    missing = http.get(f"{INSTITUTIONS}/{uuid.uuid4()}")
    assert missing.status_code == 404 and missing.json["code"] == "not_found"


def test_the_ten_streets_are_listed(app, centre):
    make_centre(street="清水河", community="草埔")
    streets = http_as(app, make_staff(Role.DOCTOR, centre)).get("/api/v1/streets").json
    assert [s["name"] for s in streets] == [name for _, name in STREETS]
    assert [s["code"] for s in streets] == [code for code, _ in STREETS]
    by_name = {s["name"]: s for s in streets}
    assert "草埔" in {c["name"] for c in by_name["清水河"]["communities"]}


def test_a_centre_admin_updates_their_own_centre(app, centre):
    admin = make_staff(Role.CENTRE_ADMIN, centre)
    changes = {
        "address": "深圳市罗湖区新址路8号",
        "phone": "0755-87654321",
        "opening_hours": "周一至周日 08:00-20:00",
        "longitude": 114.15,
        "latitude": 22.56,
    }

    response = http_as(app, admin).patch(f"{INSTITUTIONS}/{centre.id}", json=changes)

    assert response.status_code == 200, response.json
    assert {k: response.json[k] for k in changes} == changes
    saved = _centre(centre.id)
    assert {k: getattr(saved, k) for k in changes} == changes
    [event] = audit_rows(action="update", object_type="institution", object_id=centre.id)
    assert event.result == "allowed" and event.actor_id == str(admin.id)
    assert event.detail == {"fields": sorted(changes)}


def test_a_centre_admin_gets_404_for_another_centre_and_the_denial_is_audited(app, centre, other_centre):
    admin = make_staff(Role.CENTRE_ADMIN, centre)
    before = _centre(other_centre.id).address

    response = http_as(app, admin).patch(f"{INSTITUTIONS}/{other_centre.id}", json={"address": "篡改的地址"})

    assert response.status_code == 404
    assert _centre(other_centre.id).address == before
    [event] = audit_rows(object_type="institution", object_id=other_centre.id)
    assert (event.result, event.action, event.purpose) == ("denied", "update", "cross_centre_access")
    assert event.actor_id == str(admin.id)


def test_the_district_admin_updates_any_centre(app, centre, other_centre):
    admin = make_staff(Role.DISTRICT_ADMIN, None)
    http = http_as(app, admin)
    for target in (centre, other_centre):
        response = http.patch(f"{INSTITUTIONS}/{target.id}", json={"opening_hours": "24小时"})
        assert response.status_code == 200
        assert _centre(target.id).opening_hours == "24小时"
    assert http.patch(f"{INSTITUTIONS}/{uuid.uuid4()}", json={"opening_hours": "x"}).status_code == 404


@pytest.mark.parametrize("role", [r for r in Role if r not in (Role.CENTRE_ADMIN, Role.DISTRICT_ADMIN)])
def test_other_roles_cannot_update_a_centre(app, centre, role):
    caller = make_staff(role, centre)
    response = http_as(app, caller).patch(f"{INSTITUTIONS}/{centre.id}", json={"address": "某地址123"})
    assert response.status_code == 403
    assert _centre(centre.id).address != "某地址123"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "改名的中心"),
        ("his_code", "X999"),
        ("is_demo", True),
        ("is_active", False),
        ("street_id", None),
        ("community_id", None),
        ("id", None),
    ],
)
def test_server_owned_centre_fields_cannot_be_assigned(app, centre, other_centre, field, value):
    if field in ("street_id", "community_id"):
        value = str(getattr(other_centre, field))
    elif field == "id":
        value = str(uuid.uuid4())
    admin = make_staff(Role.DISTRICT_ADMIN, None)
    before = {
        c: getattr(_centre(centre.id), c) for c in ("name", "his_code", "is_demo", "is_active", "street_id")
    }

    response = http_as(app, admin).patch(
        f"{INSTITUTIONS}/{centre.id}", json={"opening_hours": "改了", field: value}
    )

    assert response.status_code == 422
    assert field in response.json["errors"]
    saved = _centre(centre.id)
    assert {c: getattr(saved, c) for c in before} == before
    assert saved.opening_hours != "改了"


@pytest.mark.parametrize(
    "changes", [{"longitude": 116.4}, {"latitude": 39.9}, {"phone": "电话"}, {"address": "x"}]
)
def test_invalid_centre_details_are_422(app, centre, changes):
    admin = make_staff(Role.CENTRE_ADMIN, centre)
    response = http_as(app, admin).patch(f"{INSTITUTIONS}/{centre.id}", json=changes)
    assert response.status_code == 422
    assert set(changes) <= set(response.json["errors"])


def test_a_missing_centre_is_404_without_a_denial_row(app, centre):
    admin = make_staff(Role.CENTRE_ADMIN, centre)
    missing = uuid.uuid4()
    response = http_as(app, admin).patch(f"{INSTITUTIONS}/{missing}", json={"address": "某地址123"})
    assert response.status_code == 404
    assert audit_rows(object_id=missing) == []
