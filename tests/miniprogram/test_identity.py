"""实名绑定: name + ID number, an SMS code to the phone on record (through the outbox), confirm."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
import time_machine
from flask import Flask
from sqlalchemy import select

from app.core import clock
from app.core.audit import AuditEvent
from app.core.db import db
from app.core.outbox import OutboxMessage
from app.institutions.models import Institution
from app.mp_accounts.models import MpBinding, MpBindingEvent
from app.residents.models import Resident, ResidentStatus
from notifications import render
from notifications.fake import FakeSmsSender
from tests.factories_residents import make_resident, random_id_number
from tests.miniprogram.conftest import NAME, PHONE, Mp, redis_down


def _bind(client, resident: Resident, **overrides: str):
    body = {"name": resident.name, "id_number": resident.id_number} | overrides
    return client.post("/mp/v1/identity/bind", json=body)


def test_identity_binding_end_to_end(mp: Mp, resident: Resident, sms: FakeSmsSender) -> None:
    alice = mp.login()

    asked = _bind(alice, resident)

    assert asked.status_code == 202, asked.json
    assert asked.json["masked_phone"] == "138****5678"
    assert asked.json["relationship"] == "self"
    assert asked.json["resend_after_seconds"] == 60
    assert sms.sent == []  # queued in the outbox, not sent inside the request
    mp.run_jobs()
    assert len(sms.sent) == 1
    text = render(sms.sent[0])
    assert sms.sent[0].phone == PHONE
    assert "实名认证" in text and "5分钟内有效" in text
    code = sms.sent[0].params_dict()["code"]

    confirmed = alice.post("/mp/v1/identity/confirm", json={"otp": code})

    assert confirmed.status_code == 201, confirmed.json
    body = confirmed.json
    assert body["relationship"] == "self"
    assert body["relationship_label"] == "本人"
    assert body["resident"]["id"] == str(resident.id)
    assert body["resident"]["name"] == "张*"
    assert body["resident"]["id_number"].endswith(resident.id_number[-4:])
    assert resident.id_number not in confirmed.get_data(as_text=True)
    assert alice.get("/mp/v1/auth/me").json["identity_bound"] is True
    assert alice.get("/mp/v1/identity").json["id"] == body["id"]

    binding = db.session.get(MpBinding, uuid.UUID(body["id"]))
    assert binding is not None and binding.status == "active" and binding.verified_by == "sms_otp"
    events = db.session.execute(
        select(MpBindingEvent).where(MpBindingEvent.binding_id == binding.id)
    ).scalars()
    assert [(e.from_status, e.to_status, e.reason) for e in events] == [(None, "active", "verified_sms_otp")]
    audited = (
        db.session.execute(
            select(AuditEvent.action)
            .where(AuditEvent.subject_resident_id == str(resident.id))
            .order_by(AuditEvent.seq)
        )
        .scalars()
        .all()
    )
    assert audited[:2] == ["otp_sent", "bind"]


def test_outbox_payload_holds_neither_the_number_nor_the_code(
    mp: Mp, resident: Resident, sms: FakeSmsSender
) -> None:
    assert _bind(mp.login(), resident).status_code == 202
    message = db.session.execute(select(OutboxMessage)).scalar_one()
    stored = json.dumps(message.payload)
    code = mp.code_sent_to(PHONE)
    assert message.topic == "sms.send"
    assert PHONE not in stored and code not in stored


@pytest.mark.parametrize("case", ["wrong_name", "unknown_number", "similar_name"])
def test_mismatch_is_one_generic_422_and_sends_nothing(
    mp: Mp, resident: Resident, sms: FakeSmsSender, case: str
) -> None:
    overrides = {
        "wrong_name": {"name": "李四"},
        "unknown_number": {"id_number": random_id_number()},
        "similar_name": {"name": "张三丰"},
    }[case]
    response = _bind(mp.login(), resident, **overrides)

    assert response.status_code == 422
    assert response.json["code"] == "identity_mismatch"
    assert "138" not in response.get_data(as_text=True)
    mp.run_jobs()
    assert sms.calls == 0
    assert mp.outbox_count() == 0
    denied = (
        db.session.execute(
            select(AuditEvent).where(AuditEvent.action == "identity_check", AuditEvent.result == "denied")
        )
        .scalars()
        .all()
    )
    assert len(denied) == 1


def test_name_comparison_ignores_spaces_and_dot_variants(mp: Mp, home_centre: Institution) -> None:
    uyghur = make_resident(home_centre, name="阿卜杜·热合曼", phone="13912345678")
    assert _bind(mp.login(), uyghur, name=" 阿卜杜•热合曼 ").status_code == 202


def test_bad_id_number_is_422_with_a_field_message(mp: Mp, resident: Resident) -> None:
    wrong_check = resident.id_number[:17] + ("0" if resident.id_number[17] != "0" else "1")
    response = _bind(mp.login(), resident, id_number=wrong_check)
    assert response.status_code == 422
    assert "校验位" in response.json["errors"]["id_number"][0]


def test_unknown_fields_are_refused(mp: Mp, resident: Resident) -> None:
    response = _bind(mp.login(), resident, resident_id=str(resident.id))
    assert response.status_code == 422
    assert "resident_id" in response.json["errors"]


def test_resident_without_phone_or_inactive(mp: Mp, home_centre: Institution) -> None:
    alice = mp.login()
    no_phone = make_resident(home_centre, phone=None)
    assert _bind(alice, no_phone).json["code"] == "no_phone_on_record"
    gone = make_resident(home_centre, status=ResidentStatus.DECEASED.value)
    assert _bind(alice, gone).json["code"] == "resident_inactive"


def test_wrong_code_counts_down_and_the_fifth_kills_it(mp: Mp, resident: Resident) -> None:
    alice = mp.login()
    _bind(alice, resident)
    code = mp.code_sent_to(PHONE)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"

    answers = [alice.post("/mp/v1/identity/confirm", json={"otp": wrong}).json for _ in range(5)]

    assert [a["code"] for a in answers] == ["otp_wrong"] * 4 + ["otp_exhausted"]
    assert answers[0]["message"] == "验证码错误，还可尝试 4 次"
    sixth = alice.post("/mp/v1/identity/confirm", json={"otp": code})  # the right code, too late
    assert (sixth.status_code, sixth.json["code"]) == (422, "otp_invalid")
    assert db.session.execute(select(MpBinding)).first() is None
    denied = (
        db.session.execute(
            select(AuditEvent).where(AuditEvent.action == "otp_verify", AuditEvent.result == "denied")
        )
        .scalars()
        .all()
    )
    assert len(denied) == 6


def test_code_is_single_use(mp: Mp, resident: Resident) -> None:
    alice = mp.login()
    _bind(alice, resident)
    code = mp.code_sent_to(PHONE)
    assert alice.post("/mp/v1/identity/confirm", json={"otp": code}).status_code == 201
    again = alice.post("/mp/v1/identity/confirm", json={"otp": code})
    assert (again.status_code, again.json["code"]) == (422, "otp_invalid")


def test_code_expires_after_five_minutes(mp: Mp, resident: Resident) -> None:
    with time_machine.travel(clock.now(), tick=False) as traveller:
        alice = mp.login()
        _bind(alice, resident)
        code = mp.code_sent_to(PHONE)
        traveller.shift(timedelta(minutes=5, seconds=1))
        late = alice.post("/mp/v1/identity/confirm", json={"otp": code})
    assert (late.status_code, late.json["code"]) == (422, "otp_expired")
    assert db.session.execute(select(MpBinding)).first() is None


def test_code_of_another_user_is_useless(mp: Mp, resident: Resident) -> None:
    alice, mallory = mp.login("oAlice"), mp.login("oMallory")
    _bind(alice, resident)
    code = mp.code_sent_to(PHONE)
    stolen = mallory.post("/mp/v1/identity/confirm", json={"otp": code})
    assert (stolen.status_code, stolen.json["code"]) == (422, "otp_invalid")
    assert alice.post("/mp/v1/identity/confirm", json={"otp": code}).status_code == 201


def test_a_new_request_replaces_the_pending_code(mp: Mp, resident: Resident) -> None:
    with time_machine.travel(clock.now(), tick=False) as traveller:
        alice = mp.login()
        _bind(alice, resident)
        first = mp.code_sent_to(PHONE)
        traveller.shift(timedelta(seconds=61))
        _bind(alice, resident)
        second = mp.code_sent_to(PHONE)
        if first != second:
            assert alice.post("/mp/v1/identity/confirm", json={"otp": first}).json["code"] == "otp_wrong"
        assert alice.post("/mp/v1/identity/confirm", json={"otp": second}).status_code == 201


def test_already_bound_is_409(mp: Mp, resident: Resident, home_centre: Institution) -> None:
    alice = mp.login()
    mp.bind_self(alice, resident)
    other = make_resident(home_centre)
    response = _bind(alice, other)
    assert (response.status_code, response.json["code"]) == (409, "already_bound")


def test_confirming_from_a_new_wechat_account_supersedes_the_old_binding(mp: Mp, resident: Resident) -> None:
    with time_machine.travel(clock.now(), tick=False) as traveller:
        old_phone, new_phone = mp.login("oOldWeChat"), mp.login("oNewWeChat")
        mp.bind_self(old_phone, resident)
        traveller.shift(timedelta(seconds=61))
        mp.bind_self(new_phone, resident)
    assert old_phone.get("/mp/v1/identity").json["code"] == "identity_not_bound"
    assert new_phone.get("/mp/v1/identity").status_code == 200
    ended = db.session.execute(select(MpBinding).where(MpBinding.status == "ended")).scalar_one()
    assert ended.end_reason == "superseded"


def test_unbind_self(mp: Mp, resident: Resident) -> None:
    alice = mp.login()
    mp.bind_self(alice, resident)
    assert alice.delete("/mp/v1/identity").status_code == 204
    assert alice.get("/mp/v1/identity").status_code == 404
    assert alice.delete("/mp/v1/identity").status_code == 404
    assert alice.get("/mp/v1/auth/me").json["identity_bound"] is False


def test_binding_needs_a_resident_token(client, resident: Resident) -> None:
    response = client.post("/mp/v1/identity/bind", json={"name": NAME, "id_number": resident.id_number})
    assert response.status_code == 401


def test_redis_down_fails_closed_and_sends_nothing(
    app: Flask, mp: Mp, resident: Resident, sms: FakeSmsSender
) -> None:
    alice = mp.login()
    with redis_down(app):
        response = _bind(alice, resident)
        confirm = alice.post("/mp/v1/identity/confirm", json={"otp": "123456"})
    assert (response.status_code, response.json["code"]) == (503, "service_unavailable")
    assert (confirm.status_code, confirm.json["code"]) == (503, "service_unavailable")
    mp.run_jobs()
    assert sms.calls == 0
    assert mp.outbox_count() == 0
