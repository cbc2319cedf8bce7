"""The public doctor library: filters, pinyin, distance, remaining places, public fields only, cache."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import update

from app.core.auth import Role
from app.core.db import commit, db
from app.core.redis import get_redis
from app.doctors import services
from app.doctors.models import Doctor
from app.doctors.services import library_cache
from app.institutions.models import Institution
from tests.doctors.support import id_number
from tests.factories import as_principal, make_centre, make_staff
from tests.factories_doctors import make_doctor, make_nurse, make_team

MP = "/mp/v1/doctors"


def _names(body) -> list[str]:
    return [d["name"] for d in body["items"]]


def _place(centre: Institution, latitude: float, longitude: float) -> None:
    centre.latitude, centre.longitude = latitude, longitude
    commit()


def test_anonymous_search_finds_approved_active_doctors_only(api, centre):
    make_doctor(centre, name="张三")
    make_doctor(centre, name="李四", approved=False)
    make_doctor(centre, name="王五", practice_status="suspended")
    make_doctor(centre, name="赵六", practice_status="left")
    response = api().get(MP)
    assert response.status_code == 200
    assert _names(response.json) == ["张三"] and response.json["total"] == 1


def test_search_by_pinyin_initials_full_pinyin_and_name(api, centre):
    make_doctor(centre, name="张三丰")
    make_doctor(centre, name="曾小贤")
    make_doctor(centre, name="赵四")
    client = api()
    assert _names(client.get(MP, query_string={"q": "zsf"}).json) == ["张三丰"]
    assert _names(client.get(MP, query_string={"q": "ZS"}).json) == ["张三丰", "赵四"]
    assert _names(client.get(MP, query_string={"q": "zengx"}).json) == ["曾小贤"]
    assert _names(client.get(MP, query_string={"q": "cxx"}).json) == ["曾小贤"]
    assert _names(client.get(MP, query_string={"q": "小贤"}).json) == ["曾小贤"]
    assert _names(client.get(MP, query_string={"q": "z"}).json) == [
        "曾小贤",
        "张三丰",
        "赵四",
    ]  # pinyin order
    assert client.get(MP, query_string={"q": "%"}).json["total"] == 0


def test_nearest_centre_first_with_distances(api):
    far, near, middle = make_centre(), make_centre(), make_centre()
    nowhere = make_centre()
    _place(far, 22.60, 114.20)
    _place(near, 22.548, 114.118)
    _place(middle, 22.56, 114.14)
    nowhere.latitude = nowhere.longitude = None
    commit()
    for centre, name in ((far, "远医生"), (nowhere, "无坐标"), (near, "近医生"), (middle, "中医生")):
        make_doctor(centre, name=name)
    body = api().get(MP, query_string={"latitude": 22.548, "longitude": 114.118}).json
    assert _names(body) == ["近医生", "中医生", "远医生", "无坐标"]
    distances = [d["distance_km"] for d in body["items"]]
    assert distances[0] == 0.0 and distances[0] < distances[1] < distances[2] and distances[3] is None
    assert 2.0 < distances[1] < 3.5  # about 2.6 km
    page2 = api().get(MP, query_string={"latitude": 22.548, "longitude": 114.118, "size": 2, "page": 2}).json
    assert _names(page2) == ["远医生", "无坐标"] and page2["pages"] == 2
    assert api().get(MP, query_string={"latitude": 22.5}).status_code == 422
    assert api().get(MP, query_string={"latitude": 95, "longitude": 114}).status_code == 422


def test_remaining_places_and_accepting_filter(api, centre, setting):
    setting("DOCTOR_CAPACITY_DEFAULT", 100)
    make_doctor(centre, name="有名额", signed_count=40)
    make_doctor(centre, name="满员", signed_count=100)
    make_doctor(centre, name="自定上限", capacity_override=50, signed_count=49)
    body = api().get(MP).json
    places = {d["name"]: (d["capacity"], d["remaining"], d["accepting"]) for d in body["items"]}
    assert places == {"有名额": (100, 60, True), "满员": (100, 0, False), "自定上限": (50, 1, True)}
    accepting = api().get(MP, query_string={"accepting": "true"}).json
    assert sorted(_names(accepting)) == ["有名额", "自定上限"]
    assert _names(api().get(MP, query_string={"accepting": "false"}).json) == ["满员"]


def test_filters_by_centre_street_specialty_and_sex(api):
    guiyuan = make_centre(street="桂园")
    donghu = make_centre(street="东湖")
    make_doctor(guiyuan, name="甲", sex="male", specialties=["糖尿病管理", "中医调理"])
    make_doctor(guiyuan, name="乙", sex="female", specialties=["儿童保健"])
    make_doctor(donghu, name="丙", sex="female", specialties=["糖尿病足"])
    client = api()
    assert sorted(_names(client.get(MP, query_string={"specialty": "糖尿病"}).json)) == ["丙", "甲"]
    assert _names(client.get(MP, query_string={"sex": "female", "institution_id": str(guiyuan.id)}).json) == [
        "乙"
    ]
    assert _names(client.get(MP, query_string={"street_id": str(donghu.street_id)}).json) == ["丙"]
    assert client.get(MP, query_string={"sex": "unknown"}).status_code == 422
    assert client.get(MP, query_string={"size": 101}).status_code == 422


def test_results_show_team_centre_and_never_personal_numbers(api, centre):
    gp = make_doctor(
        centre,
        name="全科甲",
        id_number=id_number(),
        phone="13912345678",
        mi_doctor_code="D440303123456",
        practice_licence_no="110440312345678",
    )
    nurse = make_nurse(centre, name="护士乙")
    team = make_team(centre, [(gp, "gp", True), nurse], name="东门一队")
    for response in (
        api().get(MP),
        api().get(f"{MP}/{gp.id}"),
        api().get(f"/mp/v1/teams/{team.id}"),
        api(make_staff(Role.CASHIER, centre)).get("/api/v1/doctors/public-search"),
    ):
        assert response.status_code == 200, response.json
        text = json.dumps(response.json, ensure_ascii=False)
        for secret in (
            "13912345678",
            gp.id_number,
            "D440303123456",
            "110440312345678",
            nurse.phone,
            nurse.practice_licence_no,
            "1980-",
            "birth",
            "phone_bidx",
            "signed_count",
        ):
            assert secret not in text, secret
    profile = api().get(f"{MP}/{gp.id}").json
    assert profile["teams"] == [
        {
            "id": str(team.id),
            "name": "东门一队",
            "role": "gp",
            "role_label": "全科医生",
            "is_leader": True,
            "position_label": "团队长",
        }
    ]
    assert profile["centre"]["name"] == centre.name and profile["centre"]["opening_hours"] == "08:00-17:30"
    assert profile["centre"]["address"] == centre.address and profile["title"] == "主治医师"
    assert set(profile) == {
        "id",
        "name",
        "sex",
        "sex_label",
        "title",
        "photo_url",
        "practice_status",
        "practice_status_label",
        "practice_scopes",
        "specialties",
        "introduction",
        "centre",
        "teams",
        "distance_km",
        "capacity",
        "remaining",
        "accepting",
    }


def test_public_profile_of_unapproved_or_departed_doctors_is_404(api, centre):
    pending = make_doctor(centre, approved=False)
    left = make_doctor(centre, practice_status="left")
    suspended = make_doctor(centre, practice_status="suspended")
    assert api().get(f"{MP}/{pending.id}").status_code == 404
    assert api().get(f"{MP}/{left.id}").status_code == 404
    shown = api().get(f"{MP}/{suspended.id}").json
    assert shown["practice_status_label"] == "停诊" and shown["accepting"] is False


def test_responses_are_cached_and_invalidated_by_a_profile_change(api, centre):
    doctor = make_doctor(centre, name="缓存医生", introduction="旧简介")
    client = api()
    first = client.get(f"{MP}/{doctor.id}").json
    search = client.get(MP, query_string={"q": "hcys"}).json
    assert first["introduction"] == "旧简介" and _names(search) == ["缓存医生"]
    version = library_cache.current_version()
    keys = {k.decode() for k in get_redis().scan_iter("doctor_library:*")}
    assert any(f":v{version}:doctor:" in k for k in keys) and any(f":v{version}:doctors:" in k for k in keys)
    # A change that bypasses the services is invisible: the answers come from the cache.
    db.session.execute(update(Doctor).where(Doctor.id == doctor.id).values(introduction="绕过服务"))
    commit()
    assert client.get(f"{MP}/{doctor.id}").json["introduction"] == "旧简介"
    # A profile change through the service bumps the version once committed: every entry is stale.
    with as_principal(make_staff(Role.CENTRE_ADMIN, centre)) as admin:
        services.update_profile(admin, doctor.id, {"introduction": "新简介", "specialties": ["针灸"]})
        assert library_cache.current_version() == version  # not before the commit
        commit()
    assert library_cache.current_version() == version + 1
    assert client.get(f"{MP}/{doctor.id}").json["introduction"] == "新简介"
    assert client.get(MP, query_string={"specialty": "针灸"}).json["total"] == 1


@pytest.mark.parametrize("change", ["practice", "capacity", "team"])
def test_status_capacity_and_team_changes_invalidate(api, centre, change):
    doctor = make_doctor(centre)
    admin = api(make_staff(Role.CENTRE_ADMIN, centre))
    before = library_cache.current_version()
    if change == "practice":
        response = admin.post(
            f"/api/v1/doctors/{doctor.id}/practice-status", json={"status": "suspended", "reason": "进修"}
        )
    elif change == "capacity":
        response = admin.put(f"/api/v1/doctors/{doctor.id}/capacity", json={"capacity_override": 5})
    else:
        team = make_team(centre)
        response = admin.post(
            f"/api/v1/teams/{team.id}/members", json={"doctor_id": str(doctor.id), "role": "gp"}
        )
    assert response.status_code in (200, 201), response.json
    assert library_cache.current_version() > before


def test_the_library_still_answers_when_redis_is_down(api, centre, app, monkeypatch):
    from redis.exceptions import ConnectionError as RedisConnectionError

    make_doctor(centre, name="张三")

    class Down:
        def __getattr__(self, name):
            def fail(*args, **kwargs):
                raise RedisConnectionError("down")

            return fail

    monkeypatch.setitem(app.extensions, "redis", Down())
    assert _names(api().get(MP).json) == ["张三"]
    with as_principal(make_staff(Role.CENTRE_ADMIN, centre)) as admin:
        services.update_profile(admin, make_doctor(centre).id, {"introduction": "x"})
        commit()  # the failed version bump is logged, not raised


def test_staff_public_search_sees_every_centre(api, centre, other_centre):
    make_doctor(centre, name="本中心")
    make_doctor(other_centre, name="他中心")
    client = api(make_staff(Role.NURSE, centre))
    body = client.get("/api/v1/doctors/public-search").json
    assert sorted(_names(body)) == ["他中心", "本中心"]
    assert api().get("/api/v1/doctors/public-search").status_code == 401


def test_team_search_and_card(api, centre, other_centre):
    _place(centre, 22.55, 114.12)
    _place(other_centre, 22.60, 114.20)
    complete = make_team(centre, name="齐全队")
    incomplete = make_team(centre, [make_doctor(centre)], name="缺护士队")
    far = make_team(other_centre, name="远队")
    make_team(centre, name="解散队").status = "dissolved"
    commit()
    body = api().get("/mp/v1/teams", query_string={"latitude": 22.6, "longitude": 114.2}).json
    assert body["items"][0]["name"] == "远队" and body["total"] == 3
    accepting = (
        api().get("/mp/v1/teams", query_string={"accepting": "true", "institution_id": str(centre.id)}).json
    )
    assert [t["name"] for t in accepting["items"]] == ["齐全队"]
    card = api().get(f"/mp/v1/teams/{complete.id}").json
    assert card["can_sign"] is True and card["capacity"] == 2000 and card["remaining"] == 2000
    assert [m["role_label"] for m in card["members"]] == ["全科医生", "社区护士"]
    assert card["members"][0]["position_label"] == "团队长"
    assert api().get(f"/mp/v1/teams/{incomplete.id}").json["accepting"] is False
    assert api().get(f"/mp/v1/teams/{far.id}").status_code == 200
