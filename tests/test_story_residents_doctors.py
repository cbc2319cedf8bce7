"""Issue 3's acceptance story, end to end over HTTP, as the people involved would do it.

A doctor self-registers, the centre admin approves, the doctor joins a team; a nurse registers a
resident at the desk; the resident logs in to the mini-program, binds their identity with an SMS
code, finds the doctor by pinyin initials near home and sees remaining places; the nurse finds the
resident by ID number and sees it masked; a doctor of another centre gets 404 on that resident.
"""

from __future__ import annotations

import re
import uuid

from flask import Flask

from app import jobs
from app.core.auth import Role
from app.institutions.models import Institution
from app.integrations.wechat_mp_fake import FakeMiniProgramAuth
from notifications.fake import FakeSmsSender
from tests.doctors.support import registration
from tests.factories import ApiClient, make_centre, make_staff, token_for
from tests.factories_doctors import make_nurse
from tests.factories_residents import random_id_number

UNMASKED_ID = re.compile(r"(?<!\d)\d{17}[\dXx](?!\d)")
UNMASKED_PHONE = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")


def caller(app: Flask, token: str | None = None) -> ApiClient:
    """A bearer-token client; each request runs in its own app context (conftest's IsolatedClient)."""
    return ApiClient(app.test_client(), token)


def _idem() -> dict[str, str]:
    return {"Idempotency-Key": f"story-{uuid.uuid4()}"}


def test_issue_3_story(app: Flask) -> None:
    sms = FakeSmsSender()
    wechat = FakeMiniProgramAuth()
    app.extensions["sms_sender"], app.extensions["wechat_mp"] = sms, wechat
    try:
        _story(app, sms, wechat)
    finally:
        app.extensions.pop("sms_sender", None)
        app.extensions.pop("wechat_mp", None)


def _story(app: Flask, sms: FakeSmsSender, wechat: FakeMiniProgramAuth) -> None:
    home: Institution = make_centre()
    home.latitude, home.longitude = 22.5425, 114.1182
    far: Institution = make_centre()
    far.latitude, far.longitude = 22.60, 114.20
    from app.core.db import commit

    commit()

    # 1. A doctor self-registers; the centre admin approves.
    doctor_user = make_staff(Role.DOCTOR, home)
    doctor = caller(app, token_for(doctor_user))
    admin = caller(app, token_for(make_staff(Role.CENTRE_ADMIN, home)))
    submitted = doctor.post("/api/v1/doctors", json=registration(name="张三丰"), headers=_idem())
    assert submitted.status_code == 201, submitted.json
    doctor_id = submitted.json["id"]
    approved = admin.post(f"/api/v1/doctors/{doctor_id}/approve", json={"reason": "资料齐全"})
    assert approved.status_code == 200, approved.json
    assert approved.json["status"] == "approved"
    coded = admin.put(f"/api/v1/doctors/{doctor_id}/mi-code", json={"mi_doctor_code": "D440303000123"})
    assert coded.status_code == 200, coded.json

    # 2. The doctor joins a team with a nurse, so the team can sign.
    team = admin.post("/api/v1/teams", json={"name": "老围一队"})
    assert team.status_code == 201, team.json
    joined = admin.post(
        f"/api/v1/teams/{team.json['id']}/members",
        json={"doctor_id": doctor_id, "role": "gp", "is_leader": True},
    )
    assert joined.status_code == 201, joined.json
    nurse_registration = make_nurse(home)
    added = admin.post(
        f"/api/v1/teams/{team.json['id']}/members",
        json={"doctor_id": str(nurse_registration.id), "role": "nurse"},
    )
    assert added.status_code == 201, added.json

    # 3. A desk nurse registers a resident; a bad ID number and a duplicate change nothing.
    nurse = caller(app, token_for(make_staff(Role.NURSE, home)))
    id_number, phone = random_id_number(), "13912345678"
    body = {
        "name": "李大爷",
        "id_number": id_number,
        "phone": phone,
        "current_address": "深圳市罗湖区桂园街道老围东路8号",
        "community_id": str(home.community_id),
    }
    bad = nurse.post("/api/v1/residents", json=dict(body, id_number=id_number[:-1] + "Y"), headers=_idem())
    assert bad.status_code == 422 and "id_number" in bad.json["errors"]
    created = nurse.post("/api/v1/residents", json=body, headers=_idem())
    assert created.status_code == 201, created.json
    resident_id = created.json["id"]
    duplicate = nurse.post("/api/v1/residents", json=body, headers=_idem())
    assert duplicate.status_code == 409 and duplicate.json["code"] == "resident_exists"

    # 4. The resident logs in to the mini-program and binds their identity with an SMS code.
    login = caller(app).post("/mp/v1/auth/login", json={"code": wechat.issue_code("oLiDaye")})
    assert login.status_code == 200
    assert "session_key" not in login.get_data(as_text=True)
    resident = caller(app, login.json["token"])
    bind = resident.post("/mp/v1/identity/bind", json={"name": "李大爷", "id_number": id_number})
    assert bind.status_code == 202, bind.json
    assert not UNMASKED_PHONE.search(bind.get_data(as_text=True))
    jobs.work_burst(app)
    message = sms.last_to(phone)
    assert message is not None
    code = message.params_dict()["code"]
    wrong = resident.post("/mp/v1/identity/confirm", json={"otp": "000000" if code != "000000" else "111111"})
    assert wrong.status_code == 422
    confirmed = resident.post("/mp/v1/identity/confirm", json={"otp": code})
    assert confirmed.status_code == 201, confirmed.json
    reused = resident.post("/mp/v1/identity/confirm", json={"otp": code})
    assert reused.status_code in (404, 409, 422)

    # 5. Near home, by pinyin initials, with remaining places.
    found = resident.get(
        "/mp/v1/doctors", query_string={"q": "zsf", "latitude": 22.5430, "longitude": 114.1190}
    )
    assert found.status_code == 200
    names = [item["name"] for item in found.json["items"]]
    assert names == ["张三丰"]
    hit = found.json["items"][0]
    assert hit["remaining"] == hit["capacity"] > 0
    assert hit["distance_km"] is not None and hit["distance_km"] < 1
    text = found.get_data(as_text=True)
    assert not UNMASKED_PHONE.search(text) and not UNMASKED_ID.search(text)

    # 6. The desk nurse finds the resident by ID number, masked.
    search = nurse.get("/api/v1/residents", query_string={"id_number": id_number})
    assert search.status_code == 200, search.json
    assert [item["id"] for item in search.json["items"]] == [resident_id]
    text = search.get_data(as_text=True)
    assert id_number not in text and phone not in text
    assert search.json["items"][0]["id_number"].endswith(id_number[-4:])

    # 7. A doctor of another centre gets 404 on that resident, exactly like a missing one.
    stranger = caller(app, token_for(make_staff(Role.DOCTOR, far)))
    denied = stranger.get(f"/api/v1/residents/{resident_id}")
    missing = stranger.get(f"/api/v1/residents/{uuid.uuid4()}")
    assert denied.status_code == missing.status_code == 404
    assert denied.json == missing.json
