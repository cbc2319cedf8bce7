"""Issue 5's acceptance story, over HTTP, as the people involved would do it.

A resident applies in the mini-program; the team's doctor accepts; the resident confirms the exact
agreement and the self-pay part is paid by QR at the desk in the payment sandbox; the contract is
active and its agreement prints as a PDF with Chinese text (read back with pdftotext). A doctor signs
another resident on a tablet, the connection drops, the retry gets the same contract. A desk nurse
trying to sign the first resident again is told where and since when. A full doctor refuses.
"""

from __future__ import annotations

import subprocess
import urllib.parse
import uuid
from typing import Any

from flask import Flask
from sqlalchemy import update

from app import jobs
from app.billing import providers
from app.core.db import commit, db
from app.doctors.models import Doctor
from app.integrations.wechat_mp_fake import FakeMiniProgramAuth
from notifications.fake import FakeSmsSender
from payments.base import Channel
from tests.contracts.factories import make_basic_package, signing_world
from tests.contracts.test_signing import home_body
from tests.factories import ApiClient, make_staff, token_for
from tests.factories_residents import make_resident


def _idem() -> dict[str, str]:
    return {"Idempotency-Key": f"story-{uuid.uuid4()}"}


def _staff(app: Flask, user: Any) -> ApiClient:
    return ApiClient(app.test_client(), token_for(user))


def test_issue_5_story(app: Flask) -> None:
    sms, wechat = FakeSmsSender(), FakeMiniProgramAuth()
    app.extensions["sms_sender"], app.extensions["wechat_mp"] = sms, wechat
    try:
        _story(app, sms, wechat)
    finally:
        app.extensions.pop("sms_sender", None)
        app.extensions.pop("wechat_mp", None)


def _story(app: Flask, sms: FakeSmsSender, wechat: FakeMiniProgramAuth) -> None:
    world = signing_world()
    world.basic = make_basic_package(subsidy_fen=10000, self_pay_fen=2500)
    commit()
    resident = world.resident
    assert resident.phone

    # 1. The resident logs in to the mini-program and binds their identity with an SMS code.
    client = app.test_client()
    login = client.post("/mp/v1/auth/login", json={"code": wechat.issue_code("oStoryResident")})
    assert login.status_code == 200, login.get_json()
    mini = ApiClient(client, login.get_json()["token"])
    bound = mini.post("/mp/v1/identity/bind", json={"name": resident.name, "id_number": resident.id_number})
    assert bound.status_code == 202, bound.get_json()
    jobs.work_burst(app)
    code = sms.last_to(resident.phone).params_dict()["code"]
    assert mini.post("/mp/v1/identity/confirm", json={"otp": code}).status_code == 201

    # 2. They apply to the team's doctor with the basic package.
    application = mini.post(
        "/mp/v1/contract-applications",
        json={
            "resident_id": str(resident.id),
            "team_id": str(world.team.id),
            "doctor_id": str(world.doctor.id),
            "package_ids": [str(world.basic.id)],
        },
        headers=_idem(),
    )
    assert application.status_code == 201, application.get_json()
    contract_id = application.get_json()["id"]
    assert application.get_json()["status"] == "pending_review"

    # 3. The doctor sees it in the queue and accepts.
    doctor = _staff(app, world.doctor_user)
    queue = doctor.get("/api/v1/contract-applications").get_json()
    assert [item["id"] for item in queue["items"]] == [contract_id]
    accepted = doctor.post(f"/api/v1/contract-applications/{contract_id}/accept", json={"note": "同意签约"})
    assert accepted.status_code == 200, accepted.get_json()
    sha = accepted.get_json()["agreement_sha256"]

    # 4. The resident confirms that exact agreement; the self-pay part is due.
    confirmed = mini.post(
        f"/mp/v1/contract-applications/{contract_id}/confirm", json={"agreement_sha256": sha}, headers=_idem()
    )
    assert confirmed.status_code == 200, confirmed.get_json()
    assert confirmed.get_json()["status"] == "awaiting_payment"
    bill_id = confirmed.get_json()["payment"]["bill_id"]
    assert confirmed.get_json()["payment"]["amount_fen"] == 2500

    # 5. At the desk the cashier shows the bill's WeChat QR; the resident's family scans and pays.
    cashier = _staff(app, make_staff_cashier(world))
    order = cashier.post(
        f"/api/v1/billing/bills/{bill_id}/payments",
        json={"mode": "merchant_qr", "channel": "wechat"},
        headers=_idem(),
    )
    assert order.status_code == 201, order.get_json()
    scanned = app.test_client().post("/_sandbox/scan", json={"qr_content": order.get_json()["qr_content"]})
    assert scanned.status_code == 200
    with app.app_context():
        sandbox = providers.sandbox(Channel.WECHAT)
    delivered = sandbox.deliver_due(transport=lambda url, body: _post(app, url, body))
    assert delivered == 1

    # 6. The contract is active, for the resident and for the staff.
    mine = mini.get("/mp/v1/my-doctor", query_string={"resident_id": str(resident.id)}).get_json()
    assert mine["contract"]["status"] == "active", mine
    record = doctor.get(f"/api/v1/contracts/{contract_id}").get_json()
    assert record["status"] == "active"
    assert record["payment"]["bill_status"] == "paid" and record["payment"]["paid_at"]

    # 7. The agreement prints with Chinese text.
    pdf = doctor.get(f"/api/v1/contracts/{contract_id}/agreement.pdf")
    assert pdf.status_code == 200 and pdf.get_data()[:4] == b"%PDF"
    text = subprocess.run(
        ["pdftotext", "-", "-"], input=pdf.get_data(), capture_output=True, check=True
    ).stdout.decode()
    assert "家庭医生签约服务协议书" in text and record["contract_no"] in text and world.centre.name in text

    # 8. On a home visit a doctor signs another resident; the answer is lost; the retry gets the same contract.
    neighbour = make_resident(world.centre, age=70)
    commit()
    body = home_body(world, resident_id=str(neighbour.id))
    first = doctor.post("/api/v1/contracts/home-visit", json=body)
    assert first.status_code == 201, first.get_json()
    retry = doctor.post("/api/v1/contracts/home-visit", json=body)
    assert (
        retry.status_code == 200 and retry.get_json()["contract"]["id"] == first.get_json()["contract"]["id"]
    )

    # 9. A desk nurse tries to sign the first resident again: told where and since when.
    nurse = _staff(app, world.nurse_user)
    again = nurse.post(
        "/api/v1/contracts",
        json={
            "resident_id": str(resident.id),
            "team_id": str(world.team.id),
            "doctor_id": str(world.doctor.id),
            "package_ids": [str(world.basic.id)],
        },
        headers=_idem(),
    )
    assert again.status_code == 409 and again.get_json()["code"] == "resident_already_signed"
    assert world.centre.name in again.get_json()["message"] and "签约" in again.get_json()["message"]

    # 10. A full doctor refuses new signings.
    db.session.execute(
        update(Doctor).where(Doctor.id == world.doctor.id).values(capacity_override=Doctor.signed_count)
    )
    commit()
    newcomer = make_resident(world.centre, age=35)
    commit()
    full = nurse.post(
        "/api/v1/contracts",
        json={
            "resident_id": str(newcomer.id),
            "team_id": str(world.team.id),
            "doctor_id": str(world.doctor.id),
            "package_ids": [str(world.basic.id)],
        },
        headers=_idem(),
    )
    assert full.status_code == 409, full.get_json()
    assert full.get_json()["code"] == "doctor_capacity_full"


def make_staff_cashier(world: Any) -> Any:
    from app.core.auth import Role

    return make_staff(Role.CASHIER, world.centre)


def _post(app: Flask, url: str, body: bytes) -> tuple[int, bytes]:
    commit()  # the callback commits on the test's connection: end our own transaction first
    response = app.test_client().post(
        urllib.parse.urlsplit(url).path, data=body, headers={"Content-Type": "text/xml"}
    )
    db.session.expire_all()
    return response.status_code, response.get_data()
