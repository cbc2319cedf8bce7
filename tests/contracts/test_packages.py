"""Service packages: maintenance, versioning, visibility by centre, eligibility (services and HTTP)."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from app.contracts.models import PackageStatus, ServicePackage
from app.contracts.services import packages as services
from app.core import clock
from app.core.audit import AuditEvent
from app.core.auth import Role
from app.core.db import db
from tests.contracts.factories import make_basic_package, make_package
from tests.factories import grant, make_centre, make_staff
from tests.factories_residents import make_resident

BASE = "/api/v1/service-packages"


def body(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "code": f"pkg-{uuid.uuid4().hex[:8]}",
        "name": "高血压随访包",
        "kind": "personalised",
        "target_groups": ["hypertension"],
        "min_age": 35,
        "price_fen": 12000,
        "subsidy_fen": 10000,
        "self_pay_fen": 2000,
        "items": [
            {
                "code": "follow_up",
                "name": "高血压面对面随访",
                "service_type": "hypertension_follow_up",
                "times_per_period": 4,
            },
            {"code": "exam", "name": "年度健康检查", "service_type": "health_exam"},
        ],
    }
    values.update(overrides)
    return values


@pytest.fixture
def district_admin() -> Any:
    return make_staff(Role.DISTRICT_ADMIN, None)


# --- the version lifecycle -------------------------------------------------------------------------


def test_create_edit_publish_version_and_retire(api, district_admin):
    http = api(district_admin)
    created = http.post(BASE, json=body(code="htn"))
    assert created.status_code == 201, created.json
    package = created.json
    assert (package["status"], package["version"], package["scope"]) == ("draft", 1, "district")
    assert [i["times_per_period"] for i in package["items"]] == [4, 1]
    assert package["target_group_labels"] == ["高血压"]

    edited = http.patch(f"{BASE}/{package['id']}", json={"name": "高血压管理包", "min_age": 18})
    assert edited.status_code == 200, edited.json
    assert (edited.json["name"], edited.json["min_age"]) == ("高血压管理包", 18)

    published = http.post(f"{BASE}/{package['id']}/publish")
    assert published.status_code == 200, published.json
    assert published.json["status"] == "published" and published.json["published_at"]

    locked = http.patch(f"{BASE}/{package['id']}", json={"name": "偷偷改名"})
    assert locked.status_code == 409
    assert locked.json["code"] == "version_immutable"
    assert "新版本" in locked.json["message"]
    again = http.post(f"{BASE}/{package['id']}/publish")
    assert (again.status_code, again.json["code"]) == (409, "not_a_draft")

    v2 = http.post(f"{BASE}/{package['id']}/versions")
    assert v2.status_code == 201, v2.json
    assert (v2.json["version"], v2.json["status"], v2.json["code"]) == (2, "draft", "htn")
    assert [i["code"] for i in v2.json["items"]] == ["follow_up", "exam"]
    assert {i["id"] for i in v2.json["items"]}.isdisjoint({i["id"] for i in package["items"]})
    twice = http.post(f"{BASE}/{package['id']}/versions")
    assert (twice.status_code, twice.json["code"]) == (409, "draft_exists")
    from_draft = http.post(f"{BASE}/{v2.json['id']}/versions")
    assert (from_draft.status_code, from_draft.json["code"]) == (409, "is_draft")

    new_items = [
        {"code": "follow_up", "name": "随访", "service_type": "hypertension_follow_up", "times_per_period": 6}
    ]
    assert (
        http.patch(
            f"{BASE}/{v2.json['id']}", json={"self_pay_fen": 0, "subsidy_fen": 12000, "items": new_items}
        ).status_code
        == 200
    )
    assert http.post(f"{BASE}/{v2.json['id']}/publish").status_code == 200
    v1 = http.get(f"{BASE}/{package['id']}").json
    assert v1["status"] == "retired"
    current = http.get(f"{BASE}/{v2.json['id']}").json
    assert current["status"] == "published"
    assert [(i["code"], i["times_per_period"]) for i in current["items"]] == [("follow_up", 6)]

    retired = http.post(f"{BASE}/{v2.json['id']}/retire")
    assert (retired.status_code, retired.json["status"]) == (200, "retired")
    retired_again = http.post(f"{BASE}/{v2.json['id']}/retire")
    assert (retired_again.status_code, retired_again.json["code"]) == (409, "already_retired")
    # A new version may start from a retired one (reinstating a package).
    v3 = http.post(f"{BASE}/{v2.json['id']}/versions")
    assert (v3.status_code, v3.json["version"]) == (201, 3)

    versions = http.get(BASE, query_string={"code": "htn"}).json
    assert [(p["version"], p["status"]) for p in versions["items"]] == [
        (3, "draft"),
        (2, "retired"),
        (1, "retired"),
    ]
    actions = set(
        db.session.execute(select(AuditEvent.action).where(AuditEvent.object_id == package["id"])).scalars()
    )
    assert {"service_package.create", "service_package.update", "service_package.publish"} <= actions


def test_publishing_retires_only_the_same_code(district_admin):
    from tests.factories import as_principal

    other = make_package("other-code")
    first = make_package("same-code")
    with as_principal(district_admin) as actor:
        draft = services.new_package_version(actor, first.id)
        services.publish_package(actor, draft.id)
    db.session.expire_all()
    assert db.session.get(ServicePackage, first.id).status == PackageStatus.RETIRED
    assert db.session.get(ServicePackage, other.id).status == PackageStatus.PUBLISHED
    published = db.session.execute(
        select(ServicePackage.version).where(
            ServicePackage.code == "same-code", ServicePackage.status == PackageStatus.PUBLISHED
        )
    ).scalars()
    assert list(published) == [2]


# --- validation -------------------------------------------------------------------------------------


def test_price_must_be_subsidy_plus_self_pay(api, district_admin):
    response = api(district_admin).post(
        BASE, json=body(price_fen=12000, subsidy_fen=10000, self_pay_fen=1000)
    )
    assert response.status_code == 422
    assert response.json["code"] == "price_mismatch"
    assert "120.00元" in response.json["message"] and "10.00元" in response.json["message"]


def test_editing_a_draft_keeps_the_price_rule(api, district_admin):
    http = api(district_admin)
    draft = http.post(BASE, json=body()).json
    response = http.patch(f"{BASE}/{draft['id']}", json={"self_pay_fen": 5000})
    assert (response.status_code, response.json["code"]) == (422, "price_mismatch")


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"target_groups": ["martians"]}, "target_groups"),
        ({"min_age": 151}, "min_age"),
        ({"max_age": -1}, "max_age"),
        ({"price_fen": 12000.5}, "price_fen"),
        ({"items": []}, "items"),
        (
            {"items": [{"code": "x1", "name": "随访", "service_type": "follow_up", "times_per_period": 0}]},
            "items",
        ),
        ({"kind": "premium"}, "kind"),
        ({"code": "Bad Code"}, "code"),
        ({"sex": "other"}, "sex"),
        ({"status": "published"}, "status"),
    ],
)
def test_schema_rejects_bad_input(api, district_admin, overrides, field):
    response = api(district_admin).post(BASE, json=body(**overrides))
    assert response.status_code == 422, response.json
    assert response.json["code"] == "validation_error"
    assert field in str(response.json["errors"])


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"min_age": 70, "max_age": 65}, "age_range"),
        ({"valid_from": "2027-01-01", "valid_to": "2026-01-01"}, "validity_range"),
        ({"target_groups": ["maternal"], "sex": "male"}, "sex_group_mismatch"),
        (
            {
                "items": [
                    {"code": "a1", "name": "随访", "service_type": "follow_up"},
                    {"code": "a1", "name": "体检", "service_type": "health_exam"},
                ]
            },
            "duplicate_item",
        ),
    ],
)
def test_business_rules_are_422_with_a_chinese_message(api, district_admin, overrides, code):
    response = api(district_admin).post(BASE, json=body(**overrides))
    assert (response.status_code, response.json["code"]) == (422, code), response.json
    assert any("\u4e00" <= ch <= "\u9fff" for ch in response.json["message"])


def test_a_code_is_used_once_across_versions(api, district_admin):
    make_package("taken-code")
    response = api(district_admin).post(BASE, json=body(code="taken-code"))
    assert (response.status_code, response.json["code"]) == (409, "code_taken")


def test_unknown_package_is_404(api, district_admin):
    response = api(district_admin).get(f"{BASE}/{uuid.uuid4()}")
    assert (response.status_code, response.json["code"]) == (404, "service_package_not_found")


# --- who may do what ----------------------------------------------------------------------------------


def test_anonymous_401_and_non_admins_403(api, centre):
    package = make_package(institution_id=centre.id, status=PackageStatus.DRAFT)
    assert api(None).get(BASE).status_code == 401
    assert api(None).post(BASE, json=body()).status_code == 401
    doctor = make_staff(Role.DOCTOR, centre)
    assert api(doctor).get(BASE).status_code == 200
    assert api(doctor).post(BASE, json=body()).status_code == 403
    for path in ("publish", "versions", "retire"):
        assert api(doctor).post(f"{BASE}/{package.id}/{path}").status_code == 403
    assert api(doctor).patch(f"{BASE}/{package.id}", json={"name": "x"}).status_code == 403


def test_centre_admin_makes_personalised_packages_of_their_own_centre(api, centre):
    admin = make_staff(Role.CENTRE_ADMIN, centre)
    http = api(admin)
    created = http.post(BASE, json=body())
    assert created.status_code == 201, created.json
    assert (created.json["institution_id"], created.json["scope"]) == (str(centre.id), "centre")
    assert http.post(f"{BASE}/{created.json['id']}/publish").status_code == 200

    basic = http.post(BASE, json=body(kind="basic"))
    assert (basic.status_code, basic.json["code"]) == (422, "basic_is_district")
    elsewhere = http.post(BASE, json=body(institution_id=str(make_centre().id)))
    assert (elsewhere.status_code, elsewhere.json["code"]) == (403, "other_centre")
    same = http.post(BASE, json=body(institution_id=str(centre.id)))
    assert same.status_code == 201


def test_district_packages_are_maintained_by_the_district_only(api, centre, district_admin):
    district = make_package(status=PackageStatus.DRAFT)
    admin = make_staff(Role.CENTRE_ADMIN, centre)
    response = api(admin).patch(f"{BASE}/{district.id}", json={"name": "中心改名"})
    assert (response.status_code, response.json["code"]) == (403, "district_owned")
    assert api(admin).post(f"{BASE}/{district.id}/publish").status_code == 403
    # The district admin may also maintain a centre's package (supervision).
    own = make_package(institution_id=centre.id, status=PackageStatus.DRAFT)
    assert api(district_admin).post(f"{BASE}/{own.id}/publish").status_code == 200
    created = api(district_admin).post(BASE, json=body(institution_id=str(centre.id)))
    assert (created.status_code, created.json["institution_id"]) == (201, str(centre.id))
    missing = api(district_admin).post(BASE, json=body(institution_id=str(uuid.uuid4())))
    assert (missing.status_code, missing.json["code"]) == (422, "centre_not_found")


def test_staff_see_district_and_own_centre_packages_only(api, centre, other_centre, district_admin):
    district = make_package(name="区级包")
    own = make_package(name="本中心包", institution_id=centre.id)
    theirs = make_package(name="他中心包", institution_id=other_centre.id)
    nurse = make_staff(Role.NURSE, centre)
    listed = api(nurse).get(BASE, query_string={"size": 100}).json["items"]
    ids = {p["id"] for p in listed}
    assert {str(district.id), str(own.id)} <= ids
    assert str(theirs.id) not in ids
    assert api(nurse).get(f"{BASE}/{own.id}").status_code == 200

    hidden = api(nurse).get(f"{BASE}/{theirs.id}")
    assert hidden.status_code == 404
    denial = db.session.execute(
        select(AuditEvent).where(AuditEvent.actor_id == str(nurse.id), AuditEvent.result == "denied")
    ).scalar_one()
    assert (denial.object_id, denial.purpose) == (str(theirs.id), "cross_centre_access")
    assert denial.institution_id == str(centre.id)
    admin_b = make_staff(Role.CENTRE_ADMIN, centre)
    assert api(admin_b).post(f"{BASE}/{theirs.id}/retire").status_code == 404

    everything = api(district_admin).get(BASE, query_string={"size": 100}).json["items"]
    assert {str(district.id), str(own.id), str(theirs.id)} <= {p["id"] for p in everything}


def test_list_filters(api, centre):
    make_basic_package(code="f-basic")
    make_package("f-elderly", target_groups=["elderly_65", "hypertension"], name="老年高血压包")
    make_package("f-child", target_groups=["child_0_6"], status=PackageStatus.DRAFT)
    make_package("f-centre", institution_id=centre.id, name="中心特色包")
    http = api(make_staff(Role.DOCTOR, centre))

    def codes(**query: Any) -> set[str]:
        response = http.get(BASE, query_string={"size": 100, **query})
        assert response.status_code == 200, response.json
        return {p["code"] for p in response.json["items"] if p["code"].startswith("f-")}

    assert codes(kind="basic") == {"f-basic"}
    assert codes(group="hypertension") == {"f-elderly"}
    assert codes(group="elderly_65") == {"f-elderly"}
    assert codes(status="draft") == {"f-child"}
    assert codes(scope="centre") == {"f-centre"}
    assert codes(scope="district") == {"f-basic", "f-elderly", "f-child"}
    assert codes(q="老年") == {"f-elderly"}
    assert codes(q="%") == set()
    assert http.get(BASE, query_string={"group": "martians"}).status_code == 422


# --- eligibility ----------------------------------------------------------------------------------------


def test_eligibility_reasons(centre, other_centre):
    today = clock.today_local()
    adult = make_resident(centre, age=40, sex="male", population_groups={"hypertension"})
    elderly_pkg = make_package(name="老年包", target_groups=["elderly_65"], min_age=65)
    htn = make_package(name="高血压包", target_groups=["hypertension"], min_age=35)
    young_only = make_package(name="青年包", max_age=30)
    maternal = make_package(name="孕产妇包", target_groups=["maternal"], sex="female")
    female_only = make_package(name="女性包", sex="female")
    expired = make_package(name="旧包", valid_to=today - timedelta(days=1))
    future = make_package(name="新包", valid_from=today + timedelta(days=1))
    theirs = make_package(name="他中心包", institution_id=other_centre.id)
    draft = make_package(name="草稿包", status=PackageStatus.DRAFT)

    def reason(package: ServicePackage) -> str | None:
        return services.package_reason(package, adult, centre.id, today)

    assert reason(htn) is None
    assert reason(elderly_pkg) == "服务包“老年包”的服务对象与该居民的人群分类不符"
    assert reason(young_only) == "服务包“青年包”仅限 30 岁及以下居民"
    assert reason(maternal) == "服务包“孕产妇包”的服务对象与该居民的人群分类不符"
    assert reason(female_only) == "服务包“女性包”不适用于该居民的性别"
    assert reason(expired) == "服务包“旧包”不在有效期内"
    assert reason(future) == "服务包“新包”不在有效期内"
    assert reason(theirs) == "服务包“他中心包”不属于本社康中心"
    assert reason(draft) == "服务包“草稿包”未发布或已停用"
    age_only = make_package(name="老人包", min_age=65)
    assert reason(age_only) == "服务包“老人包”仅限 65 岁及以上居民"
    # The same package is fine at the centre it belongs to, once valid, for the right resident.
    assert services.package_reason(expired, adult, centre.id, today - timedelta(days=1)) is None


def test_eligible_packages_lists_the_pickable_ones_with_reasons(centre, other_centre):
    today = clock.today_local()
    elderly = make_resident(centre, age=70, population_groups={"hypertension"})
    basic = make_basic_package()
    senior = make_package(name="老年包", target_groups=["elderly_65"], min_age=65)
    child = make_package(name="儿童包", target_groups=["child_0_6"], max_age=6)
    own = make_package(name="本中心包", institution_id=centre.id)
    theirs = make_package(name="他中心包", institution_id=other_centre.id)
    draft = make_package(name="草稿包", status=PackageStatus.DRAFT)

    results = services.eligible_packages(elderly, centre.id, today)
    by_id = {r.package.id: r for r in results}
    assert theirs.id not in by_id and draft.id not in by_id
    assert by_id[basic.id].eligible and by_id[senior.id].eligible and by_id[own.id].eligible
    assert not by_id[child.id].eligible
    assert by_id[child.id].reason == "服务包“儿童包”的服务对象与该居民的人群分类不符"
    assert results[0].package.kind == "basic"
    first_ineligible = next(i for i, r in enumerate(results) if not r.eligible)
    assert all(r.eligible for r in results[:first_ineligible] if r.package.kind != "basic")


def test_eligible_endpoint(api, centre, other_centre):
    resident = make_resident(centre, age=70)
    make_basic_package()
    senior = make_package(name="老年包", target_groups=["elderly_65"], min_age=65)
    maternal = make_package(name="孕产妇包", target_groups=["maternal"], sex="female")
    doctor = make_staff(Role.DOCTOR, centre)
    response = api(doctor).get(f"{BASE}/eligible", query_string={"resident_id": str(resident.id)})
    assert response.status_code == 200, response.json
    rows = {r["package"]["id"]: r for r in response.json["packages"]}
    assert rows[str(senior.id)]["eligible"] is True and rows[str(senior.id)]["reason"] is None
    assert rows[str(maternal.id)]["eligible"] is False
    assert "孕产妇包" in rows[str(maternal.id)]["reason"]
    assert response.json["institution_id"] == str(centre.id)
    audit = db.session.execute(
        select(AuditEvent).where(
            AuditEvent.action == "contract.eligible_packages", AuditEvent.actor_id == str(doctor.id)
        )
    ).scalar_one()
    assert audit.subject_resident_id == str(resident.id)

    # On a date when the resident was younger than 65.
    earlier = date(clock.today_local().year - 10, 6, 1).isoformat()
    younger = api(doctor).get(
        f"{BASE}/eligible", query_string={"resident_id": str(resident.id), "on": earlier}
    )
    rows = {r["package"]["id"]: r for r in younger.json["packages"]}
    assert rows[str(senior.id)]["eligible"] is False

    stranger = make_resident(other_centre)
    assert (
        api(doctor).get(f"{BASE}/eligible", query_string={"resident_id": str(stranger.id)}).status_code == 404
    )
    elsewhere = api(doctor).get(
        f"{BASE}/eligible",
        query_string={"resident_id": str(resident.id), "institution_id": str(other_centre.id)},
    )
    assert (elsewhere.status_code, elsewhere.json["code"]) == (422, "other_centre")
    assert (
        api(make_staff(Role.CASHIER, centre))
        .get(f"{BASE}/eligible", query_string={"resident_id": str(resident.id)})
        .status_code
        == 403
    )
    assert api(doctor).get(f"{BASE}/eligible").status_code == 422
    assert (
        api(None).get(f"{BASE}/eligible", query_string={"resident_id": str(resident.id)}).status_code == 401
    )


def test_special_groups_do_not_leak_through_eligibility(api, centre):
    """Without the 肺结核 category permission (DATA-05) the resident's 肺结核 group does not exist:
    such a package reads as not matching, as for anybody."""
    patient = make_resident(centre, age=40, population_groups={"tuberculosis"})
    tb = make_package(name="肺结核包", target_groups=["tuberculosis"])

    def row(role: Role, *permissions: str) -> dict[str, Any]:
        response = api(grant(make_staff(role, centre), *permissions)).get(
            f"{BASE}/eligible", query_string={"resident_id": str(patient.id)}
        )
        assert response.status_code == 200, response.json
        return next(r for r in response.json["packages"] if r["package"]["id"] == str(tb.id))

    assert row(Role.DOCTOR, "health:tb")["eligible"] is True
    assert row(Role.NURSE, "health:tb")["eligible"] is True
    for role, permissions in ((Role.NURSE, ()), (Role.DOCTOR, ()), (Role.DOCTOR, ("health:smd",))):
        hidden = row(role, *permissions)
        assert hidden["eligible"] is False, (role, permissions)
        assert hidden["reason"] == "服务包“肺结核包”的服务对象与该居民的人群分类不符"


def test_one_category_permission_shows_that_groups_packages_for_a_resident_in_both(api, centre):
    """A resident in both special groups, seen by staff holding one of the two permissions: the
    package of the group they may see is eligible, the other reads as not matching."""
    patient = make_resident(centre, age=40, population_groups={"tuberculosis", "severe_mental_disorder"})
    tb = make_package(name="肺结核包", target_groups=["tuberculosis"])
    smd = make_package(name="严重精神障碍包", target_groups=["severe_mental_disorder"])
    response = api(grant(make_staff(Role.DOCTOR, centre), "health:tb")).get(
        f"{BASE}/eligible", query_string={"resident_id": str(patient.id)}
    )
    assert response.status_code == 200, response.json
    rows = {r["package"]["id"]: r for r in response.json["packages"]}
    assert rows[str(tb.id)]["eligible"] is True
    assert rows[str(smd.id)]["eligible"] is False
