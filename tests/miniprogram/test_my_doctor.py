"""我的家庭医生 in the mini-program (`/mp/v1/my-doctor`, `/mp/v1/contracts/{id}/history`,
`/mp/v1/contracts/{id}/agreement.pdf`): own, family member's and a stranger's contracts."""

from __future__ import annotations

import subprocess
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from app.billing.models import Bill, BillStatus
from app.contracts.models import Contract, ContractStatus, SigningChannel
from app.contracts.services import core
from app.core import clock
from app.core.audit import AuditEvent
from app.core.auth import Role
from app.core.db import commit, db
from app.doctors.models import Doctor
from app.institutions.models import Institution
from app.residents.models import Resident
from tests.contracts.factories import SigningWorld, make_package, signing_world
from tests.factories import ApiClient, as_principal, make_staff, token_for
from tests.factories_residents import make_resident
from tests.miniprogram.conftest import Mp

MY_DOCTOR = "/mp/v1/my-doctor"
RESIDENT_ACTOR = core.Actor("resident", uuid.uuid4(), "resident")


@pytest.fixture
def world(home_centre: Institution) -> SigningWorld:
    return signing_world(home_centre)


@pytest.fixture
def alice(mp: Mp, resident: Resident) -> ApiClient:
    client = mp.login("oAliceMyDoctor")
    mp.bind_self(client, resident)
    return client


def add_family(mp: Mp, client: ApiClient, member: Resident, relationship: str) -> None:
    asked = client.post(
        "/mp/v1/family",
        json={"name": member.name, "id_number": member.id_number, "relationship": relationship},
    )
    assert asked.status_code == 202, asked.json
    assert member.phone is not None
    confirmed = client.post("/mp/v1/family/confirm", json={"otp": mp.code_sent_to(member.phone)})
    assert confirmed.status_code == 201, confirmed.json


def sign(world: SigningWorld, resident: Resident, **kw: Any) -> Contract:
    """An active desk contract made by the world's doctor."""
    with as_principal(world.doctor_user):
        contract = core.create_contract(
            resident=resident,
            team=world.team,
            doctor=world.doctor,
            packages=kw.pop("packages", world.packages),
            status=ContractStatus.ACTIVE,
            channel=SigningChannel.DESK,
            actor=core.actor_from_principal(),
            template=world.template,
            values={"signed_at": clock.now(), "activated_at": clock.now()},
            **kw,
        )
        commit()
    return contract


def apply(world: SigningWorld, resident: Resident, packages: list[Any] | None = None) -> Contract:
    """An online application from the mini-program, waiting for the team's review."""
    now = clock.now()
    contract = core.create_contract(
        resident=resident,
        team=world.team,
        doctor=world.doctor,
        packages=packages or world.packages,
        status=ContractStatus.PENDING_REVIEW,
        channel=SigningChannel.MINI_PROGRAM,
        actor=RESIDENT_ACTOR,
        template=world.template,
        values={"applied_at": now, "review_due_at": now + timedelta(hours=48)},
    )
    commit()
    return contract


def staff_move(world: SigningWorld, contract: Contract, to: ContractStatus, action: str, **kw: Any) -> None:
    with as_principal(world.doctor_user):
        core.transition(contract, to, action=action, actor=core.actor_from_principal(), channel="desk", **kw)
        commit()


def steps(body: dict[str, Any]) -> dict[str, str]:
    return {s["key"]: s["state"] for s in body["contract"]["progress"]}


def denied_rows() -> list[AuditEvent]:
    db.session.expire_all()
    return list(db.session.execute(select(AuditEvent).where(AuditEvent.result == "denied")).scalars())


# --- my doctor ---------------------------------------------------------------------------------------------


def test_my_doctor_shows_the_active_contract(alice, world, resident):
    db.session.execute(update(Doctor).where(Doctor.id == world.doctor.id).values(photo_sha256="ab" * 32))
    commit()
    contract = sign(world, resident)
    response = alice.get(MY_DOCTOR)
    assert response.status_code == 200, response.json
    body = response.json
    assert body["has_contract"] is True
    assert body["resident"] == {"id": str(resident.id), "name": "张*"}
    view = body["contract"]
    assert view["contract_no"] == contract.contract_no
    assert (view["status"], view["status_label"]) == ("active", "已签约")
    assert view["doctor"]["name"] == world.doctor.name
    assert view["doctor"]["title"] == world.doctor.title
    assert view["doctor"]["photo_url"] == f"/mp/v1/doctors/{world.doctor.id}/photo?v={'ab' * 6}"
    assert "phone" not in view["doctor"]
    assert view["team"] == {"id": str(world.team.id), "name": world.team.name}
    assert view["centre"] == {
        "id": str(world.centre.id),
        "name": world.centre.name,
        "address": world.centre.address,
        "phone": world.centre.phone,
    }
    basic = view["packages"][0]
    assert basic["code"] == world.basic.code
    items = {i["code"]: i for i in basic["items"]}
    assert items["education"]["frequency_label"] == "签约期内 2 次"
    assert items["record"]["frequency_label"] == "签约后 30 天内完成 1 次"
    assert (view["period_start"], view["period_end"]) == (
        contract.period_start.isoformat(),
        contract.period_end.isoformat(),
    )
    assert view["days_remaining"] == (contract.period_end - clock.today_local()).days + 1
    assert steps(body) == {
        "submit": "done",
        "review": "done",
        "confirm": "done",
        "pay": "skipped",
        "active": "done",
    }
    assert view["payment"]["status"] == "none"
    assert view["links"] == {
        "agreement_pdf": f"/mp/v1/contracts/{contract.id}/agreement.pdf",
        "history": f"/mp/v1/contracts/{contract.id}/history",
    }
    reads = [
        e
        for e in db.session.execute(select(AuditEvent).where(AuditEvent.object_type == "contract")).scalars()
        if e.action == "read" and e.actor_kind == "resident"
    ]
    assert len(reads) == 1
    assert (reads[0].subject_resident_id, reads[0].object_id) == (str(resident.id), str(contract.id))
    assert reads[0].institution_id == str(world.centre.id)


def test_the_progress_of_an_application_step_by_step(alice, world, resident):
    paid = make_package("mp-paid", subsidy_fen=1000, self_pay_fen=2000)
    contract = apply(world, resident, [world.basic, paid])
    body = alice.get(MY_DOCTOR).json
    assert body["contract"]["status_label"] == "待团队审核"
    assert body["contract"]["review_due_at"] is not None
    assert body["contract"]["days_remaining"] is not None
    assert steps(body) == {
        "submit": "done",
        "review": "current",
        "confirm": "pending",
        "pay": "pending",
        "active": "pending",
    }
    staff_move(
        world, contract, ContractStatus.AWAITING_CONFIRMATION, "accept", values={"reviewed_at": clock.now()}
    )
    assert steps(alice.get(MY_DOCTOR).json)["confirm"] == "current"
    core.transition(
        contract,
        ContractStatus.AWAITING_PAYMENT,
        action="confirm",
        actor=RESIDENT_ACTOR,
        channel=SigningChannel.MINI_PROGRAM,
        values={"confirmed_at": clock.now()},
    )
    core.attach_bill(contract, resident, RESIDENT_ACTOR)
    commit()
    body = alice.get(MY_DOCTOR).json
    assert steps(body) == {
        "submit": "done",
        "review": "done",
        "confirm": "done",
        "pay": "current",
        "active": "pending",
    }
    assert body["contract"]["payment"]["status"] == "unpaid"
    assert body["contract"]["payment"]["amount_fen"] == 2000
    paid_at = clock.now()
    db.session.execute(
        update(Bill).where(Bill.id == contract.bill_id).values(status=BillStatus.PAID, paid_at=paid_at)
    )
    core.transition(
        contract,
        ContractStatus.ACTIVE,
        action="pay",
        actor=core.SYSTEM,
        channel=SigningChannel.MINI_PROGRAM,
        values={"activated_at": clock.now()},
    )
    commit()
    body = alice.get(MY_DOCTOR).json
    assert set(steps(body).values()) == {"done"}
    assert body["contract"]["payment"]["status"] == "paid"
    assert all(s["at"] is not None for s in body["contract"]["progress"])


def test_a_rejected_application_shows_the_reason_at_the_review_step(alice, world, resident):
    contract = apply(world, resident)
    staff_move(
        world,
        contract,
        ContractStatus.REJECTED,
        "reject",
        reason="该团队签约已满",
        values={"rejection_reason": "该团队签约已满", "reviewed_at": clock.now()},
    )
    body = alice.get(MY_DOCTOR).json
    assert body["contract"]["status_label"] == "已拒绝"
    assert body["contract"]["days_remaining"] is None
    review = next(s for s in body["contract"]["progress"] if s["key"] == "review")
    assert (review["state"], review["note"]) == ("failed", "未通过：该团队签约已满")
    assert steps(body)["confirm"] == "pending"


def test_a_withdrawn_application_fails_at_the_step_it_stopped(alice, world, resident):
    contract = apply(world, resident)
    staff_move(world, contract, ContractStatus.AWAITING_CONFIRMATION, "accept")
    core.transition(
        contract, ContractStatus.WITHDRAWN, action="withdraw", actor=RESIDENT_ACTOR, channel="mini_program"
    )
    commit()
    body = alice.get(MY_DOCTOR).json
    assert steps(body) == {
        "submit": "done",
        "review": "done",
        "confirm": "failed",
        "pay": "skipped",
        "active": "pending",
    }


def test_the_current_contract_wins_over_an_older_ended_one(alice, world, resident):
    old = sign(world, resident)
    staff_move(world, old, ContractStatus.TERMINATED, "terminate", reason="本人要求")
    assert alice.get(MY_DOCTOR).json["contract"]["id"] == str(old.id)
    new = apply(world, resident)
    assert alice.get(MY_DOCTOR).json["contract"]["id"] == str(new.id)


def test_without_a_contract_the_answer_says_so(alice, resident):
    body = alice.get(MY_DOCTOR).json
    assert body == {
        "resident": {"id": str(resident.id), "name": "张*"},
        "has_contract": False,
        "contract": None,
    }


def test_before_identity_binding_it_is_404(mp):
    client = mp.login("oNobodyYet")
    response = client.get(MY_DOCTOR)
    assert (response.status_code, response.json["code"]) == (404, "identity_not_bound")


# --- family and strangers ---------------------------------------------------------------------------------


def test_a_family_member_and_a_stranger(mp, alice, world, resident, home_centre):
    elderly = make_resident(home_centre, name="张老汉", age=78, phone="13700002222")
    add_family(mp, alice, elderly, "child")
    theirs = sign(world, elderly)
    stranger = make_resident(home_centre, name="李路人", age=50, phone="13600003333")
    strangers = sign(world, stranger)

    body = alice.get(MY_DOCTOR, query_string={"resident_id": str(elderly.id)}).json
    assert body["contract"]["id"] == str(theirs.id)
    assert body["resident"]["name"] == "张**"
    history = alice.get(f"/mp/v1/contracts/{theirs.id}/history")
    assert history.status_code == 200

    before = len(denied_rows())
    refused = alice.get(MY_DOCTOR, query_string={"resident_id": str(stranger.id)})
    assert (refused.status_code, refused.json["code"]) == (404, "resident_not_found")
    for path in (
        f"/mp/v1/contracts/{strangers.id}/history",
        f"/mp/v1/contracts/{strangers.id}/agreement.pdf",
    ):
        response = alice.get(path)
        assert (response.status_code, response.json["code"]) == (404, "contract_not_found")
    assert alice.get(f"/mp/v1/contracts/{uuid.uuid4()}/history").status_code == 404
    denied = denied_rows()[before:]
    assert len(denied) == 3
    assert {d.purpose for d in denied} == {"not_bound_resident", "cross_owner_access"}


# --- history ------------------------------------------------------------------------------------------------


def test_the_history_shows_staff_by_role_only(alice, world, resident):
    contract = apply(world, resident)
    staff_move(world, contract, ContractStatus.AWAITING_CONFIRMATION, "accept")
    response = alice.get(f"/mp/v1/contracts/{contract.id}/history")
    assert response.status_code == 200
    events = response.json
    assert [e["action_label"] for e in events] == ["创建签约", "团队同意签约申请"]
    accept = events[1]
    assert (accept["actor_kind_label"], accept["actor_role_label"]) == ("工作人员", "医生")
    assert "actor_name" not in accept and "detail" not in accept
    assert world.doctor_user.name not in response.get_data(as_text=True)
    assert (accept["from_status_label"], accept["to_status_label"]) == ("待团队审核", "待居民确认")


# --- the agreement PDF --------------------------------------------------------------------------------------


def test_the_resident_downloads_the_agreement_pdf(alice, world, resident, tmp_path):
    contract = sign(world, resident)
    response = alice.get(f"/mp/v1/contracts/{contract.id}/agreement.pdf")
    assert response.status_code == 200
    assert response.mimetype == "application/pdf"
    pdf = response.get_data()
    assert pdf.startswith(b"%PDF")
    path = tmp_path / "agreement.pdf"
    path.write_bytes(pdf)
    text = subprocess.run(["pdftotext", str(path), "-"], capture_output=True, check=True, text=True).stdout
    assert contract.contract_no in text
    db.session.expire_all()
    assert db.session.get(Contract, contract.id).print_count == 0  # not a staff print
    downloads = list(
        db.session.execute(
            select(AuditEvent).where(
                AuditEvent.action == "download", AuditEvent.object_id == str(contract.id)
            )
        ).scalars()
    )
    assert len(downloads) == 1 and downloads[0].subject_resident_id == str(resident.id)


# --- who may call ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        MY_DOCTOR,
        f"/mp/v1/contracts/{uuid.uuid4()}/history",
        f"/mp/v1/contracts/{uuid.uuid4()}/agreement.pdf",
    ],
)
def test_no_token_is_401_and_staff_tokens_403(app, home_centre, path):
    client = app.test_client()
    assert client.get(path).status_code == 401
    staff = make_staff(Role.DOCTOR, home_centre)
    response = client.get(path, headers={"Authorization": f"Bearer {token_for(staff)}"})
    assert response.status_code == 403


def test_a_bad_resident_id_is_422(alice):
    assert alice.get(MY_DOCTOR, query_string={"resident_id": "not-a-uuid"}).status_code == 422
