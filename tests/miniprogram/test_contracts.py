"""Online pre-signing over HTTP: the mini-program (`/mp/v1/contracts/options`,
`/mp/v1/contract-applications`) and the team's review (`/api/v1/contract-applications`), with the
self-pay part paid by WeChat JSAPI against the loopback WeChat Pay emulator (the real wechatpy
client) and the SMS delivered through the outbox to the fake sender."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import Any

import pytest
import time_machine
from flask import Flask

from app.billing import providers
from app.contracts import jobs
from app.contracts.services import online
from app.core import clock
from app.core.auth import Role
from app.institutions.models import Institution
from app.residents.models import Resident
from notifications import sms as sms_templates
from payments.base import Channel
from tests.contracts.factories import SigningWorld, make_basic_package, signing_world
from tests.factories import ApiClient, make_centre, make_staff, token_for
from tests.factories_residents import make_resident
from tests.miniprogram.conftest import PHONE, Mp

APPLICATIONS = "/mp/v1/contract-applications"
QUEUE = "/api/v1/contract-applications"
PERSONAL = "乙方每月为甲方提供一次血压随访，并提供用药指导（个性化约定）。"


@pytest.fixture(autouse=True)
def sms_templates_ready(monkeypatch: pytest.MonkeyPatch) -> None:
    for template_id, text in online.SMS_TEMPLATE_TEXTS.items():
        monkeypatch.setitem(
            sms_templates.TEMPLATES, template_id, sms_templates.SmsTemplate(template_id, text)
        )  # type: ignore[index]


def idem() -> dict[str, str]:
    return {"Idempotency-Key": f"mp-contract-{uuid.uuid4().hex}"}


@pytest.fixture
def world(home_centre: Institution) -> SigningWorld:
    return signing_world(home_centre)


@pytest.fixture
def alice(mp: Mp, resident: Resident) -> ApiClient:
    client = mp.login("oAliceContracts")
    mp.bind_self(client, resident)
    return client


def staff(app: Flask, user: Any) -> ApiClient:
    return ApiClient(app.test_client(), token_for(user))


def add_family(mp: Mp, client: ApiClient, member: Resident, relationship: str) -> None:
    asked = client.post(
        "/mp/v1/family",
        json={"name": member.name, "id_number": member.id_number, "relationship": relationship},
    )
    assert asked.status_code == 202, asked.json
    assert member.phone is not None
    confirmed = client.post("/mp/v1/family/confirm", json={"otp": mp.code_sent_to(member.phone)})
    assert confirmed.status_code == 201, confirmed.json


def application_body(
    world: SigningWorld, resident: Resident, packages: list[Any] | None = None
) -> dict[str, Any]:
    return {
        "resident_id": str(resident.id),
        "team_id": str(world.team.id),
        "doctor_id": str(world.doctor.id),
        "package_ids": [str(p.id) for p in (packages or [world.basic])],
    }


def applied(client: ApiClient, world: SigningWorld, resident: Resident, **kw: Any) -> dict[str, Any]:
    response = client.post(APPLICATIONS, json=application_body(world, resident, **kw), headers=idem())
    assert response.status_code == 201, response.json
    return dict(response.json)


# --- the story ----------------------------------------------------------------------------------------


def test_apply_accept_confirm_pay_by_wechat_and_the_contract_is_active(app, mp, alice, world, resident):
    world.basic = make_basic_package(subsidy_fen=10000, self_pay_fen=2500)
    options = alice.get(
        "/mp/v1/contracts/options",
        query_string={"resident_id": resident.id, "team_id": world.team.id, "doctor_id": world.doctor.id},
    )
    assert options.status_code == 200, options.json
    offered = {item["package"]["id"]: item for item in options.json["packages"]}
    assert offered[str(world.basic.id)]["eligible"] is True
    assert options.json["can_apply"] is True and world.doctor.name in options.json["agreement"]["text"]

    key = idem()
    body = application_body(world, resident)
    first = alice.post(APPLICATIONS, json=body, headers=key)
    assert first.status_code == 201, first.json
    replay = alice.post(APPLICATIONS, json=body, headers=key)
    assert replay.headers.get("Idempotent-Replayed") == "true" and replay.json == first.json
    application = first.json
    assert application["status"] == "pending_review" and application["next_action"] is None
    assert application["self_pay_fen"] == 2500 and application["can_withdraw"] is True
    assert [s["state"] for s in application["progress"]] == [
        "done",
        "current",
        "pending",
        "pending",
        "pending",
    ]

    # The team's doctor sees it in the queue, personalises the services clause and accepts.
    doctor = staff(app, world.doctor_user)
    queue = doctor.get(QUEUE)
    assert queue.status_code == 200, queue.json
    [item] = queue.json["items"]
    assert item["id"] == application["id"] and item["resident_name"] == resident.name[0] + "*"
    assert 0 < item["review_seconds_left"] <= 48 * 3600 and item["overdue"] is False
    accepted = doctor.post(
        f"{QUEUE}/{application['id']}/accept",
        json={"clause_overrides": {"services": PERSONAL}, "note": "同意签约"},
    )
    assert accepted.status_code == 200, accepted.json
    assert accepted.json["status"] == "awaiting_confirmation"
    new_sha = accepted.json["agreement_sha256"]
    assert new_sha != application["agreement_sha256"] and PERSONAL in accepted.json["agreement_text"]

    # The resident reads the agreement and confirms that exact text.
    detail = alice.get(f"{APPLICATIONS}/{application['id']}")
    assert detail.status_code == 200
    assert detail.json["agreement_sha256"] == new_sha and PERSONAL in detail.json["agreement_text"]
    assert detail.json["next_action"] == "confirm" and detail.json["confirm_due_at"]
    stale = alice.post(
        f"{APPLICATIONS}/{application['id']}/confirm",
        json={"agreement_sha256": application["agreement_sha256"]},
        headers=idem(),
    )
    assert stale.status_code == 409 and stale.json["code"] == "agreement_changed"
    confirmed = alice.post(
        f"{APPLICATIONS}/{application['id']}/confirm", json={"agreement_sha256": new_sha}, headers=idem()
    )
    assert confirmed.status_code == 200, confirmed.json
    assert confirmed.json["status"] == "awaiting_payment" and confirmed.json["next_action"] == "pay"
    payment = confirmed.json["payment"]
    assert (
        payment["amount_fen"] == 2500 and payment["pay_path"] == f"/mp/v1/bills/{payment['bill_id']}/payments"
    )

    # Pay it the mini-program way: JSAPI order, the wallet, then the server-side query.
    order = alice.post(payment["pay_path"], json={}, headers=idem())
    assert order.status_code == 201, order.json
    prepay = order.json["request_payment"]["package"].removeprefix("prepay_id=")
    providers.sandbox(Channel.WECHAT).ledger.pay_jsapi(prepay, "oAliceContracts")
    paid = alice.post(f"/mp/v1/payments/{order.json['order_id']}/confirm")
    assert paid.status_code == 200 and paid.json["paid"] is True

    active = alice.get(f"{APPLICATIONS}/{application['id']}")
    assert active.json["status"] == "active" and active.json["activated_at"]
    assert [s["state"] for s in active.json["progress"]] == ["done"] * 5
    history = [(e["action"], e["actor_kind"], e["channel"]) for e in active.json["history"]]
    assert history == [
        ("create", "resident", "mini_program"),
        ("accept", "staff", "staff"),
        ("confirm", "resident", "mini_program"),
        ("pay", "system", "mini_program"),
    ]
    assert (
        active.json["history"][1]["actor_role"] == "doctor"
        and active.json["history"][1]["reason"] == "同意签约"
    )

    mp.run_jobs()
    texts = mp.sms.texts_to(PHONE)
    assert any("签约申请已提交" in t for t in texts)
    assert any("已通过" in t and "确认签约" in t for t in texts)
    # A second application is refused, naming where.
    again = alice.post(APPLICATIONS, json=body, headers=idem())
    assert again.status_code == 409 and again.json["code"] == "resident_already_signed"
    assert world.centre.name in again.json["message"]


def test_nothing_to_pay_makes_the_contract_active_on_confirmation(app, alice, world, resident):
    application = applied(alice, world, resident)
    accepted = staff(app, world.admin).post(f"{QUEUE}/{application['id']}/accept", json={})
    assert accepted.status_code == 200, accepted.json
    confirmed = alice.post(
        f"{APPLICATIONS}/{application['id']}/confirm",
        json={"agreement_sha256": accepted.json["agreement_sha256"]},
        headers=idem(),
    )
    assert confirmed.status_code == 200 and confirmed.json["status"] == "active"
    assert confirmed.json["payment"] is None and confirmed.json["progress"][3]["state"] == "skipped"


def test_a_proxy_and_a_guardian_apply_for_family_members(mp, alice, world, resident):
    mother = make_resident(world.centre, age=75, phone="13700001111")
    add_family(mp, alice, mother, "child")
    for_mother = applied(alice, world, mother)
    assert for_mother["signing_way"] == "proxy" and for_mother["signer_relationship"] == "child"
    assert for_mother["signer_name"] == resident.name

    son = make_resident(
        world.centre,
        birth_date=date(clock.today_local().year - 6, 3, 1),
        guardian=resident,
        phone="13700002222",
    )
    add_family(mp, alice, son, "parent")
    for_son = applied(alice, world, son)
    assert for_son["signing_way"] == "guardian"
    listed = alice.get(APPLICATIONS)
    assert listed.status_code == 200
    assert {a["resident_id"] for a in listed.json} == {str(mother.id), str(son.id)}


def test_rejection_with_a_reason_is_shown_and_sent_and_the_resident_may_apply_again(
    app, mp, alice, world, resident
):
    application = applied(alice, world, resident)
    leader = staff(app, world.doctor_user)
    no_reason = leader.post(f"{QUEUE}/{application['id']}/reject", json={})
    assert no_reason.status_code == 422
    rejected = leader.post(f"{QUEUE}/{application['id']}/reject", json={"reason": "不在本团队服务片区"})
    assert rejected.status_code == 200 and rejected.json["status"] == "rejected"
    seen = alice.get(f"{APPLICATIONS}/{application['id']}").json
    assert seen["rejection_reason"] == "不在本团队服务片区" and seen["can_withdraw"] is False
    assert seen["progress"][1]["state"] == "failed"
    mp.run_jobs()
    assert any("未通过" in t and "不在本团队服务片区" in t for t in mp.sms.texts_to(PHONE))
    assert leader.post(f"{QUEUE}/{application['id']}/accept", json={}).status_code == 409
    applied(alice, world, resident)


def test_withdrawing_an_application(alice, world, resident):
    application = applied(alice, world, resident)
    withdrawn = alice.post(f"{APPLICATIONS}/{application['id']}/withdraw", json={"reason": "想再考虑一下"})
    assert withdrawn.status_code == 200 and withdrawn.json["status"] == "withdrawn"
    assert withdrawn.json["history"][-1]["reason"] == "想再考虑一下"
    assert alice.post(f"{APPLICATIONS}/{application['id']}/withdraw", json={}).status_code == 409


def test_a_lapsed_application_is_withdrawn_with_an_sms(mp, alice, world, resident):
    application = applied(alice, world, resident)
    with time_machine.travel(clock.now() + timedelta(hours=49), tick=False):
        assert jobs.lapse_applications() == {"review_lapsed": 1}
        again = mp.login("oAliceContracts")  # the old token idled out meanwhile
        seen = again.get(f"{APPLICATIONS}/{application['id']}").json
        mp.run_jobs()
    assert seen["status"] == "withdrawn" and seen["end_reason"] == online.REVIEW_LAPSED_REASON
    assert seen["history"][-1]["actor_kind"] == "system"
    assert any("已自动撤回" in t for t in mp.sms.texts_to(PHONE))


# --- refusals -----------------------------------------------------------------------------------------


def test_the_endpoints_need_the_right_token(app, alice, world, resident):
    application = applied(alice, world, resident)
    anonymous = app.test_client()
    paths = [
        ("get", f"/mp/v1/contracts/options?resident_id={resident.id}"),
        ("get", APPLICATIONS),
        ("post", APPLICATIONS),
        ("get", f"{APPLICATIONS}/{application['id']}"),
        ("post", f"{APPLICATIONS}/{application['id']}/withdraw"),
        ("post", f"{APPLICATIONS}/{application['id']}/confirm"),
        ("get", QUEUE),
        ("get", f"{QUEUE}/{application['id']}"),
        ("post", f"{QUEUE}/{application['id']}/accept"),
        ("post", f"{QUEUE}/{application['id']}/reject"),
    ]
    for method, path in paths:
        assert getattr(anonymous, method)(path, json={}, headers=idem()).status_code == 401, path
    doctor = staff(app, world.doctor_user)
    for method, path in paths[:6]:
        assert getattr(doctor, method)(path, json={}, headers=idem()).status_code == 403, path
    for method, path in paths[6:]:
        assert getattr(alice, method)(path, json={"reason": "测试原因"}).status_code == 403, path
    nurse = staff(app, world.nurse_user)
    assert nurse.post(f"{QUEUE}/{application['id']}/accept", json={}).status_code == 403
    other_doctor = staff(app, make_staff(Role.DOCTOR, world.centre))
    refused = other_doctor.post(f"{QUEUE}/{application['id']}/accept", json={})
    assert refused.status_code == 403 and refused.json["code"] == "not_team_member"
    foreign = staff(app, make_staff(Role.CENTRE_ADMIN, make_centre()))
    assert foreign.get(f"{QUEUE}/{application['id']}").status_code == 404
    assert foreign.post(f"{QUEUE}/{application['id']}/accept", json={}).status_code == 404
    district = staff(app, make_staff(Role.DISTRICT_ADMIN, None))
    assert district.get(f"{QUEUE}/{application['id']}").status_code == 200


def test_other_peoples_applications_are_404(mp, alice, world, resident):
    application = applied(alice, world, resident)
    bob = mp.login("oBobContracts")
    mp.bind_self(bob, make_resident(world.centre, phone="13600004444"))
    assert bob.get(f"{APPLICATIONS}/{application['id']}").status_code == 404
    assert bob.post(f"{APPLICATIONS}/{application['id']}/withdraw", json={}).status_code == 404
    sha = {"agreement_sha256": application["agreement_sha256"]}
    assert (
        bob.post(f"{APPLICATIONS}/{application['id']}/confirm", json=sha, headers=idem()).status_code == 404
    )
    assert bob.get(APPLICATIONS).json == []
    assert bob.get(f"{APPLICATIONS}/{uuid.uuid4()}").status_code == 404
    refused = bob.post(APPLICATIONS, json=application_body(world, resident), headers=idem())
    assert refused.status_code == 404 and refused.json["code"] == "resident_not_bound"
    assert bob.get("/mp/v1/contracts/options", query_string={"resident_id": resident.id}).status_code == 404


def test_bad_input_is_422(app, alice, world, resident):
    body = application_body(world, resident)
    for broken in (
        {k: v for k, v in body.items() if k != "package_ids"},
        {**body, "package_ids": []},
        {**body, "status": "active"},
        {**body, "self_pay_fen": 0},
        {**body, "resident_id": "not-a-uuid"},
    ):
        response = alice.post(APPLICATIONS, json=broken, headers=idem())
        assert response.status_code == 422, broken
    assert alice.post(APPLICATIONS, json=body).status_code == 400  # no Idempotency-Key
    application = applied(alice, world, resident)
    bad_sha = alice.post(
        f"{APPLICATIONS}/{application['id']}/confirm", json={"agreement_sha256": "xyz"}, headers=idem()
    )
    assert bad_sha.status_code == 422
    too_early = alice.post(
        f"{APPLICATIONS}/{application['id']}/confirm",
        json={"agreement_sha256": application["agreement_sha256"]},
        headers=idem(),
    )
    assert too_early.status_code == 409 and too_early.json["code"] == "invalid_transition"
    admin = staff(app, world.admin)
    locked = admin.post(
        f"{QUEUE}/{application['id']}/accept", json={"clause_overrides": {"privacy": "随意共享"}}
    )
    assert locked.status_code == 422 and locked.json["code"] == "clause_locked"
    assert admin.get(QUEUE, query_string={"status": "nonsense"}).status_code == 422
    assert admin.post(f"{QUEUE}/{application['id']}/accept", json={"status": "active"}).status_code == 422
