"""Teams: CRUD within a centre, members and their rules, the signing rule, capacity, history."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from app.core.auth import Role
from app.core.db import db
from app.core.errors import BusinessRuleViolation
from app.teams import services
from app.teams.models import TeamHistory, TeamMember
from tests.factories import make_staff
from tests.factories_doctors import make_doctor, make_nurse, make_team

URL = "/api/v1/teams"


def _actions(team_id):
    return [
        (h.action, h.reason)
        for h in db.session.execute(
            select(TeamHistory).where(TeamHistory.team_id == uuid.UUID(str(team_id))).order_by(TeamHistory.id)
        ).scalars()
    ]


def test_create_read_update_a_team(api, centre, other_centre):
    admin = api(make_staff(Role.CENTRE_ADMIN, centre))
    created = admin.post(URL, json={"name": "黄贝一队", "description": "负责黄贝片区"})
    assert created.status_code == 201, created.json
    team = created.json
    assert team["institution"]["id"] == str(centre.id) and team["status"] == "active"
    assert team["can_sign"] is False and team["missing_roles"] == ["gp", "nurse"]
    assert team["cannot_sign_reason"].startswith("团队还缺少全科医生、社区护士")
    assert (team["capacity"], team["signed_count"], team["remaining"]) == (0, 0, 0)
    duplicate = admin.post(URL, json={"name": "黄贝一队"})
    assert duplicate.status_code == 409 and duplicate.json["code"] == "team_name_taken"
    assert (
        api(make_staff(Role.CENTRE_ADMIN, other_centre)).post(URL, json={"name": "黄贝一队"}).status_code
        == 201
    )
    renamed = admin.patch(f"{URL}/{team['id']}", json={"name": "黄贝二队"})
    assert renamed.status_code == 200 and renamed.json["name"] == "黄贝二队"
    assert admin.patch(f"{URL}/{team['id']}", json={}).status_code == 422
    assert admin.patch(f"{URL}/{team['id']}", json={"signed_count": 0}).status_code == 422
    listed = api(make_staff(Role.NURSE, centre)).get(URL).json
    assert [t["name"] for t in listed["items"]] == ["黄贝二队"]
    assert _actions(team["id"]) == [("team_created", None), ("team_updated", None)]


def test_team_roles_and_scope(api, centre, other_centre):
    team = make_team(centre)
    assert api().get(URL).status_code == 401
    assert api(make_staff(Role.DOCTOR, centre)).post(URL, json={"name": "x"}).status_code == 403
    assert (
        api(make_staff(Role.TEAM_LEADER, centre)).patch(f"{URL}/{team.id}", json={"name": "y"}).status_code
        == 403
    )
    outsider = api(make_staff(Role.CENTRE_ADMIN, other_centre))
    for method, path, body in (
        ("get", f"{URL}/{team.id}", None),
        ("patch", f"{URL}/{team.id}", {"name": "z"}),
        ("get", f"{URL}/{team.id}/history", None),
        ("post", f"{URL}/{team.id}/dissolve", {"reason": "撤并"}),
    ):
        response = getattr(outsider, method)(path, json=body) if body else getattr(outsider, method)(path)
        assert response.status_code == 404, (method, path)
    elsewhere = outsider.post(URL, json={"name": "越权队", "institution_id": str(centre.id)})
    assert elsewhere.status_code == 403 and elsewhere.json["code"] == "outside_scope"
    district = api(make_staff(Role.DISTRICT_ADMIN))
    assert district.post(URL, json={"name": "区建队"}).status_code == 422
    assert district.post(URL, json={"name": "区建队", "institution_id": str(centre.id)}).status_code == 201
    assert district.get(URL, query_string={"institution_id": str(centre.id)}).json["total"] == 2
    assert api(make_staff(Role.CENTRE_ADMIN, centre)).post(URL, json={"name": ""}).json["errors"]["name"] == [
        "长度须在 1 到 50 之间"
    ]


def test_members_must_be_approved_of_the_same_centre_and_fit_the_role(api, centre, other_centre):
    team = make_team(centre, members=[])
    admin = api(make_staff(Role.CENTRE_ADMIN, centre))
    path = f"{URL}/{team.id}/members"
    pending = make_doctor(centre, approved=False)
    r = admin.post(path, json={"doctor_id": str(pending.id), "role": "gp"})
    assert r.status_code == 422 and r.json["code"] == "doctor_not_approved"
    foreign = make_doctor(other_centre)
    r = admin.post(path, json={"doctor_id": str(foreign.id), "role": "gp"})
    assert r.status_code == 422 and r.json["code"] == "doctor_not_in_centre"
    left = make_doctor(centre, practice_status="left")
    assert admin.post(path, json={"doctor_id": str(left.id), "role": "gp"}).json["code"] == "doctor_left"
    nurse = make_nurse(centre)
    r = admin.post(path, json={"doctor_id": str(nurse.id), "role": "gp"})
    assert r.status_code == 422 and r.json["code"] == "role_title_mismatch"
    assert r.json["errors"]["role"] == ["“全科医生”须由医师系列职称的人员担任，该人员职称为“护师”"]
    assert admin.post(path, json={"doctor_id": str(nurse.id), "role": "doctor"}).status_code == 422
    gp = make_doctor(centre)
    ok = admin.post(path, json={"doctor_id": str(gp.id), "role": "gp", "is_leader": True})
    assert ok.status_code == 201 and ok.json["role_label"] == "全科医生" and ok.json["is_leader"]
    again = admin.post(path, json={"doctor_id": str(gp.id), "role": "specialist"})
    assert again.status_code == 409 and again.json["code"] == "already_member"
    second_leader = admin.post(path, json={"doctor_id": str(nurse.id), "role": "nurse", "is_leader": True})
    assert second_leader.status_code == 409 and second_leader.json["code"] == "leader_exists"
    assert admin.post(path, json={"doctor_id": str(nurse.id), "role": "nurse"}).status_code == 201
    body = admin.get(f"{URL}/{team.id}").json
    assert body["can_sign"] is True and body["missing_roles"] == [] and body["cannot_sign_reason"] is None
    assert body["capacity"] == 2000 and body["remaining"] == 2000


def test_team_leader_manages_only_their_own_team(api, centre):
    leader_user = make_staff(Role.TEAM_LEADER, centre)
    leader = make_doctor(centre, staff_user=leader_user)
    own = make_team(centre, [(leader, "gp", True)])
    other = make_team(centre)
    client = api(leader_user)
    nurse = make_nurse(centre)
    added = client.post(f"{URL}/{own.id}/members", json={"doctor_id": str(nurse.id), "role": "nurse"})
    assert added.status_code == 201
    denied = client.post(f"{URL}/{other.id}/members", json={"doctor_id": str(nurse.id), "role": "nurse"})
    assert denied.status_code == 403 and denied.json["code"] == "not_team_leader"
    crown = client.patch(f"{URL}/{own.id}/members/{added.json['id']}", json={"is_leader": True})
    assert crown.status_code == 403 and crown.json["code"] == "leader_admin_only"
    leader_member = db.session.execute(
        select(TeamMember).where(TeamMember.doctor_id == leader.id)
    ).scalar_one()
    self_removal = client.post(f"{URL}/{own.id}/members/{leader_member.id}/remove", json={"reason": "调走"})
    assert self_removal.status_code == 403
    removed = client.post(f"{URL}/{own.id}/members/{added.json['id']}/remove", json={"reason": "调岗"})
    assert removed.status_code == 200 and removed.json["left_at"]
    assert (
        api(make_staff(Role.DOCTOR, centre))
        .post(f"{URL}/{own.id}/members", json={"doctor_id": str(nurse.id), "role": "nurse"})
        .status_code
        == 403
    )


def test_change_and_remove_members_with_history(api, centre, other_centre):
    gp, nurse, spare = make_doctor(centre), make_nurse(centre), make_doctor(centre)
    team = make_team(centre, [(gp, "gp", True), nurse, (spare, "specialist")])
    members = {m.doctor_id: m for m in db.session.execute(select(TeamMember)).scalars()}
    admin = api(make_staff(Role.CENTRE_ADMIN, centre))
    base = f"{URL}/{team.id}/members"
    changed = admin.patch(f"{base}/{members[spare.id].id}", json={"role": "public_health"})
    assert changed.status_code == 200 and changed.json["role_label"] == "公卫医师"
    assert admin.patch(f"{base}/{members[spare.id].id}", json={"role": "public_health"}).status_code == 409
    bad = admin.patch(f"{base}/{members[nurse.id].id}", json={"role": "gp"})
    assert bad.status_code == 422 and bad.json["code"] == "role_title_mismatch"
    handover = admin.patch(f"{base}/{members[spare.id].id}", json={"is_leader": True})
    assert handover.status_code == 409 and handover.json["code"] == "leader_exists"
    assert admin.patch(f"{base}/{members[gp.id].id}", json={"is_leader": False}).json["is_leader"] is False
    assert admin.patch(f"{base}/{members[spare.id].id}", json={"is_leader": True}).json["is_leader"] is True
    removed = admin.post(f"{base}/{members[nurse.id].id}/remove", json={"reason": "调往其他中心"})
    assert removed.status_code == 200
    assert admin.post(f"{base}/{members[nurse.id].id}/remove", json={"reason": "再次"}).status_code == 404
    body = admin.get(f"{URL}/{team.id}").json
    assert body["missing_roles"] == ["nurse"] and "社区护士" in body["cannot_sign_reason"]
    assert len(body["members"]) == 2
    elsewhere = make_team(other_centre)
    stranger = (
        db.session.execute(select(TeamMember).where(TeamMember.team_id == elsewhere.id)).scalars().first()
    )
    assert admin.patch(f"{base}/{stranger.id}", json={"role": "gp"}).status_code == 404
    history = admin.get(f"{URL}/{team.id}/history").json
    assert [h["action"] for h in history] == [
        "member_changed",
        "member_changed",
        "member_changed",
        "member_removed",
    ]
    assert history[-1]["reason"] == "调往其他中心" and history[-1]["doctor_id"] == str(nurse.id)
    assert history[0]["before"] == {"role": "specialist", "is_leader": False}


def test_team_can_sign_counts_only_approved_active_members(centre):
    gp = make_doctor(centre, practice_status="suspended")
    team = make_team(centre, [gp, make_nurse(centre)])
    readiness = services.team_can_sign(team)
    assert readiness.can_sign is False and readiness.missing_roles == ("gp",)
    assert (
        readiness.reason == "团队还缺少全科医生（须至少各有一名审核通过且在岗的全科医生和社区护士才能签约）"
    )
    with pytest.raises(BusinessRuleViolation) as caught:
        services.assert_team_can_sign(team)
    assert caught.value.code == "team_cannot_sign" and caught.value.errors == {"missing_roles": ["gp"]}
    assert services.team_can_sign(make_team(centre)).can_sign is True


def test_capacity_default_is_the_sum_of_gp_caps_and_can_be_overridden(api, centre, setting):
    setting("DOCTOR_CAPACITY_DEFAULT", 1000)
    team = make_team(
        centre,
        [
            make_doctor(centre),
            make_doctor(centre, capacity_override=300),
            make_doctor(centre, practice_status="suspended"),
            make_nurse(centre),
            (make_doctor(centre), "specialist"),
        ],
        signed_count=200,
    )
    assert services.team_capacity(team) == 1300 and services.team_remaining(team) == 1100
    admin = api(make_staff(Role.CENTRE_ADMIN, centre))
    response = admin.put(f"{URL}/{team.id}/capacity", json={"capacity_override": 150})
    assert (response.json["capacity"], response.json["remaining"]) == (150, 0)
    reset = admin.put(f"{URL}/{team.id}/capacity", json={"capacity_override": None})
    assert reset.json["capacity"] == 1300 and reset.json["capacity_override"] is None
    assert admin.put(f"{URL}/{team.id}/capacity", json={"capacity_override": "many"}).status_code == 422
    assert (
        api(make_staff(Role.TEAM_LEADER, centre))
        .put(f"{URL}/{team.id}/capacity", json={"capacity_override": 1})
        .status_code
        == 403
    )
    assert [a for a, _ in _actions(team.id)] == ["capacity_changed", "capacity_changed"]


def test_dissolving_a_team(api, centre):
    busy = make_team(centre, signed_count=2)
    idle = make_team(centre)
    admin = api(make_staff(Role.CENTRE_ADMIN, centre))
    refused = admin.post(f"{URL}/{busy.id}/dissolve", json={"reason": "撤并"})
    assert refused.status_code == 409 and refused.json["code"] == "team_has_residents"
    assert "2 位签约居民" in refused.json["message"]
    done = admin.post(f"{URL}/{idle.id}/dissolve", json={"reason": "撤并"})
    assert done.status_code == 200 and done.json["status"] == "dissolved" and done.json["members"] == []
    assert done.json["can_sign"] is False
    again = admin.post(f"{URL}/{idle.id}/dissolve", json={"reason": "撤并"})
    assert again.status_code == 409 and again.json["code"] == "invalid_transition"
    assert admin.patch(f"{URL}/{idle.id}", json={"name": "复活"}).json["code"] == "team_dissolved"
    assert admin.post(f"{URL}/{idle.id}/dissolve", json={}).status_code == 422
    ended = db.session.execute(select(TeamMember).where(TeamMember.team_id == idle.id)).scalars().all()
    assert ended and all(m.left_at is not None for m in ended)
    assert _actions(idle.id)[-3:] == [
        ("member_removed", "团队解散：撤并"),
        ("member_removed", "团队解散：撤并"),
        ("team_dissolved", "撤并"),
    ]
    assert [t["name"] for t in admin.get(URL, query_string={"status": "dissolved"}).json["items"]] == [
        idle.name
    ]
    assert admin.post(URL, json={"name": idle.name}).status_code == 201  # the name is free again
