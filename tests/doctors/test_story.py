"""End to end: a doctor self-registers, is approved, joins a team; a resident finds them by pinyin
initials near home and sees the remaining places, which a signing then reduces."""

from __future__ import annotations

import uuid

from app.core.auth import Role
from app.core.db import commit, db
from app.doctors.models import Doctor
from app.teams import services as team_services
from app.teams.models import Team
from tests.doctors.support import idem, image_bytes, multipart, registration
from tests.factories import make_centre, make_staff


def test_register_approve_join_a_team_and_be_found(api):
    home = make_centre(street="东门")
    home.latitude, home.longitude = 22.548, 114.118
    elsewhere = make_centre(street="莲塘")
    elsewhere.latitude, elsewhere.longitude = 22.56, 114.19
    commit()
    doctor_user = make_staff(Role.DOCTOR, home)
    admin = api(make_staff(Role.CENTRE_ADMIN, home))

    # 1. The doctor registers and uploads a photo.
    me = api(doctor_user)
    body = registration(name="张三", specialties=["高血压", "老年慢病"])
    created = me.post("/api/v1/doctors", headers=idem(), json=body)
    assert created.status_code == 201, created.json
    doctor_id = created.json["id"]
    photo = me.put(f"/api/v1/doctors/{doctor_id}/photo", **multipart("photo", "me.jpg", image_bytes("JPEG")))
    assert photo.status_code == 200
    assert api().get("/mp/v1/doctors", query_string={"q": "zs"}).json["total"] == 0  # not yet approved

    # 2. The centre admin approves and records the 医保医师编码.
    assert (
        admin.post(f"/api/v1/doctors/{doctor_id}/approve", json={"reason": "资料齐全"}).json["status"]
        == "approved"
    )
    coded = admin.put(f"/api/v1/doctors/{doctor_id}/mi-code", json={"mi_doctor_code": "D440303000777"})
    assert coded.json["can_sign"] is True

    # 3. A nurse is registered by the admin and approved; the team is built.
    nurse = admin.post(
        "/api/v1/doctors",
        headers=idem(),
        json=registration(
            name="李护",
            title="护师",
            practice_scopes=["护理"],
            practice_licence_no="201744009876",
            id_number=None,
            sex="female",
        ),
    )
    assert nurse.status_code == 201, nurse.json
    admin.post(f"/api/v1/doctors/{nurse.json['id']}/approve", json={})
    team = admin.post("/api/v1/teams", json={"name": "东门家庭医生一队"}).json
    assert (
        admin.post(
            f"/api/v1/teams/{team['id']}/members",
            json={"doctor_id": doctor_id, "role": "gp", "is_leader": True},
        ).status_code
        == 201
    )
    incomplete = admin.get(f"/api/v1/teams/{team['id']}").json
    assert incomplete["can_sign"] is False and incomplete["missing_roles"] == ["nurse"]
    assert (
        admin.post(
            f"/api/v1/teams/{team['id']}/members", json={"doctor_id": nurse.json["id"], "role": "nurse"}
        ).status_code
        == 201
    )
    assert admin.get(f"/api/v1/teams/{team['id']}").json["can_sign"] is True

    # 4. A resident near home finds the doctor by pinyin initials, nearest first, with places left.
    resident = api()
    near_home = {"q": "zs", "latitude": 22.549, "longitude": 114.119, "accepting": "true"}
    found = resident.get("/mp/v1/doctors", query_string=near_home).json
    assert [d["name"] for d in found["items"]] == ["张三"]
    card = found["items"][0]
    assert card["remaining"] == 2000 and card["distance_km"] < 0.2 and card["photo_url"]
    assert card["teams"][0]["name"] == "东门家庭医生一队" and card["teams"][0]["position_label"] == "团队长"
    assert resident.get(card["photo_url"]).status_code == 200

    # 5. A contract takes a place (as the contract module will): the library shows it at once.
    doctor = db.session.get_one(Doctor, uuid.UUID(doctor_id))
    team_services.reserve_capacity(doctor, db.session.get_one(Team, uuid.UUID(team["id"])))
    commit()
    again = resident.get("/mp/v1/doctors", query_string=near_home).json
    assert again["items"][0]["remaining"] == 1999
    assert resident.get(f"/mp/v1/teams/{team['id']}").json["remaining"] == 1999
    leave = admin.post(
        f"/api/v1/doctors/{doctor_id}/practice-status", json={"status": "left", "reason": "调离"}
    )
    assert leave.status_code == 409 and leave.json["code"] == "doctor_has_residents"
