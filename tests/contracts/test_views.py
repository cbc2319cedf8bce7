"""Staff contract views (`/api/v1/contracts`): the signed-resident list and its filters, masking,
population groups per role, the full record, the history, signature images, the code lists,
centre isolation and the audit row of every read."""

from __future__ import annotations

import hashlib
import io
import json
import uuid
from datetime import date, timedelta
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import select, update

from app.billing.models import Bill, BillStatus
from app.contracts.models import (
    Contract,
    ContractAttachment,
    ContractSignature,
    ContractStatus,
    ServicePackage,
    SigningChannel,
    SigningWay,
)
from app.contracts.services import core
from app.core import clock
from app.core.audit import AuditEvent
from app.core.auth import Role
from app.core.db import commit, db
from app.residents.models import Resident
from tests.contracts.factories import SigningWorld, make_package, signing_world
from tests.factories import as_principal, grant, make_centre, make_staff
from tests.factories_doctors import make_doctor, make_nurse, make_team
from tests.factories_residents import make_resident

LIST = "/api/v1/contracts"


# --- building contracts -------------------------------------------------------------------------------


def sign(
    world: SigningWorld,
    resident: Resident | None = None,
    *,
    status: ContractStatus = ContractStatus.ACTIVE,
    channel: str = SigningChannel.DESK,
    packages: list[ServicePackage] | None = None,
    team: Any = None,
    doctor: Any = None,
    signer: core.Signer | None = None,
    period_start: date | None = None,
    values: dict[str, Any] | None = None,
) -> Contract:
    """A contract made through the core (all rules), as the world's doctor; committed."""
    resident = resident or world.resident
    with as_principal(world.doctor_user):
        contract = core.create_contract(
            resident=resident,
            team=team or world.team,
            doctor=doctor or world.doctor,
            packages=packages or world.packages,
            status=status,
            channel=channel,
            actor=core.actor_from_principal(),
            signer=signer or core.Signer(),
            period_start=period_start,
            template=world.template,
            values={"signed_at": clock.now(), "activated_at": clock.now()}
            if status == ContractStatus.ACTIVE
            else values,
        )
        commit()
    return contract


def png(colour: tuple[int, int, int] = (0, 0, 0)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 20), colour).save(out, format="PNG")
    return out.getvalue()


def add_signature(contract: Contract, role: str, signer_name: str) -> bytes:
    image = png((10, 20, 30) if role == "doctor" else (200, 100, 0))
    db.session.add(
        ContractSignature(
            id=uuid.uuid4(),
            contract_id=contract.id,
            role=role,
            signer_name=signer_name,
            image=image,
            sha256=hashlib.sha256(image).hexdigest(),
        )
    )
    commit()
    return image


def audit_rows(user: Any, action: str | None = None, object_type: str | None = None) -> list[AuditEvent]:
    db.session.expire_all()
    statement = select(AuditEvent).where(AuditEvent.actor_id == str(user.id)).order_by(AuditEvent.seq)
    if action:
        statement = statement.where(AuditEvent.action == action)
    if object_type:
        statement = statement.where(AuditEvent.object_type == object_type)
    return list(db.session.execute(statement).scalars())


def numbers(response: Any) -> set[str]:
    assert response.status_code == 200, response.json
    return {row["contract_no"] for row in response.json["items"]}


# --- the list -------------------------------------------------------------------------------------------


def test_the_list_shows_active_contracts_by_default_masked_and_audited_once(world, api):
    resident = make_resident(world.centre, name="李小明", age=50)
    active = sign(world, resident)
    pending = sign(world, status=ContractStatus.PENDING_REVIEW, channel=SigningChannel.MINI_PROGRAM)
    nurse = world.nurse_user

    response = api(nurse).get(LIST)
    assert numbers(response) == {active.contract_no}
    row = response.json["items"][0]
    assert row["resident"]["name"] == "李**"
    assert row["resident"]["age"] == 50
    assert row["resident"]["sex_label"] in ("男", "女")
    assert "id_number" not in row["resident"]
    assert row["team"]["name"] == world.team.name
    assert row["doctor"] == {
        "id": str(world.doctor.id),
        "name": world.doctor.name,
        "title": world.doctor.title,
    }
    assert [p["code"] for p in row["packages"]] == [world.basic.code]
    assert (row["status"], row["status_label"]) == ("active", "已签约")
    assert (row["channel"], row["channel_label"]) == ("desk", "诊间签约")
    assert row["period_end"] == active.period_end.isoformat()
    assert (row["payment_status"], row["self_pay_paid"]) == ("none", True)
    assert response.json["total"] == 1

    searches = audit_rows(nurse, "search", "contract")
    assert len(searches) == 1
    assert searches[0].detail["filters"] == {"status": ["active"]}
    assert searches[0].detail["contract_ids"] == [str(active.id)]
    assert str(pending.id) not in searches[0].detail["contract_ids"]


def test_each_filter_narrows_the_list(world, api):
    other_doctor = make_doctor(world.centre)
    other_team = make_team(world.centre, members=[(other_doctor, "gp", True), make_nurse(world.centre)])
    elderly_pkg = make_package("elderly-care", target_groups=["elderly_65"], min_age=65)
    hypertensive = make_resident(world.centre, name="王高压", age=50, population_groups=["hypertension"])
    old = make_resident(world.centre, name="赵老人", age=70)
    young = make_resident(world.centre, name="钱青年", age=30)
    child = make_resident(world.centre, name="孙小童", age=5, guardian=young)

    a = sign(world, hypertensive)
    b = sign(world, old, packages=[world.basic, elderly_pkg], team=other_team, doctor=other_doctor)
    c = sign(world, young, status=ContractStatus.PENDING_REVIEW, channel=SigningChannel.MINI_PROGRAM)
    d = sign(
        world,
        child,
        signer=core.Signer(SigningWay.GUARDIAN, young.id, None, "mother"),
        period_start=clock.today_local() - timedelta(days=200),
    )
    http = api(world.doctor_user)
    get = lambda query: numbers(http.get(LIST, query_string=query))  # noqa: E731

    assert get({}) == {a.contract_no, b.contract_no, d.contract_no}
    assert get({"team_id": str(other_team.id)}) == {b.contract_no}
    assert get({"doctor_id": str(world.doctor.id)}) == {a.contract_no, d.contract_no}
    assert get({"status": "pending_review"}) == {c.contract_no}
    assert get({"status": ["pending_review", "active"]}) == {
        a.contract_no,
        b.contract_no,
        c.contract_no,
        d.contract_no,
    }
    assert get({"status": "all"}) == get({"status": ["pending_review", "active"]})
    assert get({"package_code": "elderly-care"}) == {b.contract_no}
    assert get({"population_group": "hypertension"}) == {a.contract_no}
    assert get({"population_group": "elderly_65"}) == {b.contract_no}
    assert get({"population_group": "child_0_6"}) == {d.contract_no}
    assert get({"population_group": "general", "status": "all"}) == {c.contract_no}
    assert get({"channel": "mini_program", "status": "all"}) == {c.contract_no}
    assert get({"expiry_month": f"{d.period_end:%Y-%m}"}) == {d.contract_no}
    assert get({"q": "wgy"}) == {a.contract_no}  # pinyin initials of 王高压
    assert get({"q": "老人"}) == {b.contract_no}
    assert get({"q": old.id_number}) == {b.contract_no}
    assert get({"q": old.id_number[:-1] + ("0" if old.id_number[-1] != "0" else "1")}) == set()

    # Signed dates: push one signing back a month.
    month_ago = clock.now() - timedelta(days=30)
    db.session.execute(update(Contract).where(Contract.id == a.id).values(signed_at=month_ago))
    commit()
    today = clock.today_local()
    assert get({"signed_to": (today - timedelta(days=20)).isoformat()}) == {a.contract_no}
    assert get({"signed_from": (today - timedelta(days=20)).isoformat()}) == {b.contract_no, d.contract_no}
    assert get(
        {
            "signed_from": (today - timedelta(days=40)).isoformat(),
            "signed_to": (today - timedelta(days=25)).isoformat(),
        }
    ) == {a.contract_no}

    # The audit row names the filters, never the resident searched for.
    http.get(LIST, query_string={"q": old.id_number, "team_id": str(other_team.id)})
    last = audit_rows(world.doctor_user, "search", "contract")[-1]
    assert last.detail["filters"] == {"status": ["active"], "q": "id_number", "team_id": str(other_team.id)}
    assert old.id_number not in str(last.detail)


def test_expiry_month_orders_by_end_date_and_paging_counts_all(world, api):
    residents = [make_resident(world.centre, age=40 + i) for i in range(3)]
    today = clock.today_local()
    made = [sign(world, r, period_start=today - timedelta(days=10 - i)) for i, r in enumerate(residents)]
    http = api(world.nurse_user)
    month = f"{made[0].period_end:%Y-%m}"
    in_month = [c for c in made if f"{c.period_end:%Y-%m}" == month]
    response = http.get(LIST, query_string={"expiry_month": month, "size": 1})
    assert response.status_code == 200
    assert response.json["total"] == len(in_month)
    assert response.json["items"][0]["contract_no"] == min(in_month, key=lambda c: c.period_end).contract_no


def test_district_roles_see_every_centre_and_may_pick_one(world, api):
    elsewhere = signing_world()
    here = sign(world)
    there = sign(elsewhere)
    admin = make_staff(Role.DISTRICT_ADMIN, None)
    assert numbers(api(admin).get(LIST)) >= {here.contract_no, there.contract_no}
    assert numbers(api(admin).get(LIST, query_string={"institution_id": str(elsewhere.centre.id)})) == {
        there.contract_no
    }
    # Centre staff never see another centre, whatever they ask for.
    assert numbers(api(world.doctor_user).get(LIST)) == {here.contract_no}
    assert (
        numbers(api(world.doctor_user).get(LIST, query_string={"institution_id": str(elsewhere.centre.id)}))
        == set()
    )


def test_a_resident_of_another_centre_signed_here_is_listed_here(world, api):
    """The resident's managing centre does not hide the contract from the signing centre."""
    outsider = make_resident(make_centre(), name="周外来", age=45)
    contract = sign(world, outsider)
    response = api(world.nurse_user).get(LIST, query_string={"q": "外来"})
    assert numbers(response) == {contract.contract_no}
    assert response.json["items"][0]["resident"]["name"] == "周**"


# --- population groups per role ---------------------------------------------------------------------------


@pytest.fixture
def special(world: SigningWorld) -> Contract:
    resident = make_resident(
        world.centre, name="吴特殊", age=45, population_groups=["hypertension", "severe_mental_disorder"]
    )
    return sign(world, resident)


def _groups(response: Any) -> Any:
    assert response.status_code == 200, response.json
    return response.json["items"][0]["resident"]["population_groups"]


def test_special_groups_are_shown_only_to_holders_of_the_category_permission(world, api, special):
    query = {"q": "特殊"}
    for role in (Role.DOCTOR, Role.PUBLIC_HEALTH, Role.NURSE):
        holder = grant(make_staff(role, world.centre), "health:smd")
        codes = {g["code"] for g in _groups(api(holder).get(LIST, query_string=query))}
        assert codes == {"hypertension", "severe_mental_disorder"}, role
    for role in (Role.DOCTOR, Role.PUBLIC_HEALTH, Role.NURSE, Role.TEAM_LEADER, Role.CENTRE_ADMIN):
        codes = {
            g["code"] for g in _groups(api(make_staff(role, world.centre)).get(LIST, query_string=query))
        }
        assert codes == {"hypertension"}, role
    tb_only = grant(make_staff(Role.DOCTOR, world.centre), "health:tb")
    assert {g["code"] for g in _groups(api(tb_only).get(LIST, query_string=query))} == {"hypertension"}
    auditor = make_staff(Role.AUDITOR, world.centre)
    assert _groups(api(auditor).get(LIST, query_string=query)) is None
    record = api(make_staff(Role.NURSE, world.centre)).get(f"{LIST}/{special.id}")
    assert {g["code"] for g in record.json["resident"]["population_groups"]} == {"hypertension"}


def test_filtering_by_a_special_group_is_refused_without_the_permission_and_audited(world, api, special):
    doctor = grant(make_staff(Role.DOCTOR, world.centre), "health:smd", "health:tb")
    assert numbers(api(doctor).get(LIST, query_string={"population_group": "severe_mental_disorder"})) == {
        special.contract_no
    }
    nurse = grant(make_staff(Role.NURSE, world.centre), "health:tb")
    refused = api(nurse).get(LIST, query_string={"population_group": "severe_mental_disorder"})
    assert refused.status_code == 403
    assert refused.json["code"] == "special_group_not_permitted"
    assert "严重精神障碍" in refused.json["message"]
    denied = [e for e in audit_rows(nurse, "search") if e.result == "denied"]
    assert len(denied) == 1 and denied[0].detail == {"population_group": "severe_mental_disorder"}
    assert api(nurse).get(LIST, query_string={"population_group": "tuberculosis"}).status_code == 200
    auditor = make_staff(Role.AUDITOR, world.centre)
    refused = api(auditor).get(LIST, query_string={"population_group": "hypertension"})
    assert (refused.status_code, refused.json["code"]) == (403, "population_group_not_permitted")
    # A resident whose only other group is hidden counts as 普通人群 for staff without the 肺结核
    # permission, as it is shown; not for holders of it.
    hidden = make_resident(world.centre, name="郑隐藏", age=45, population_groups=["tuberculosis"])
    hidden_contract = sign(world, hidden)
    query = {"population_group": "general", "q": "隐藏"}
    smd_only = grant(make_staff(Role.DOCTOR, world.centre), "health:smd")
    for user in (make_staff(Role.NURSE, world.centre), smd_only):
        assert numbers(api(user).get(LIST, query_string=query)) == {hidden_contract.contract_no}
    for user in (doctor, nurse):
        assert numbers(api(user).get(LIST, query_string=query)) == set()


# --- the full record --------------------------------------------------------------------------------------


def test_the_full_record(world, api):
    paid_pkg = make_package(
        "chronic",
        name="慢病个性化包",
        target_groups=["hypertension"],
        subsidy_fen=5000,
        self_pay_fen=3000,
        items=[
            {
                "code": "bp",
                "name": "高血压随访",
                "service_type": "hypertension_follow_up",
                "times_per_period": 4,
            }
        ],
    )
    resident = make_resident(world.centre, name="冯慢病", age=60, population_groups=["hypertension"])
    daughter = make_resident(world.centre, name="冯女儿", age=35)
    contract = sign(
        world,
        resident,
        status=ContractStatus.AWAITING_PAYMENT,
        channel=SigningChannel.HOME_VISIT,
        packages=[world.basic, paid_pkg],
        signer=core.Signer(SigningWay.PROXY, daughter.id, None, "daughter"),
        values={"signed_at": clock.now(), "signed_place": "桂园街道老围社区"},
    )
    add_signature(contract, "resident", "冯女儿")
    add_signature(contract, "doctor", world.doctor.name)
    db.session.add(
        ContractAttachment(
            id=uuid.uuid4(),
            contract_id=contract.id,
            kind="photo",
            content_type="image/png",
            data=png(),
            size=len(png()),
            sha256=hashlib.sha256(png()).hexdigest(),
        )
    )
    db.session.execute(update(Contract).where(Contract.id == contract.id).values(print_count=2))
    commit()

    response = api(world.nurse_user).get(f"{LIST}/{contract.id}")
    assert response.status_code == 200, response.json
    body = response.json
    assert body["contract_no"] == contract.contract_no
    assert (body["status"], body["status_label"]) == ("awaiting_payment", "待缴费")
    assert (body["channel"], body["channel_label"]) == ("home_visit", "上门签约")
    assert body["resident"]["name"] == "冯**"
    assert body["resident"]["id_number"].endswith(resident.id_number[-4:])
    assert resident.id_number not in response.get_data(as_text=True)
    assert body["institution"]["name"] == world.centre.name
    assert body["team"]["id"] == str(world.team.id)
    assert body["doctor"]["name"] == world.doctor.name
    assert body["signer"] == {
        "way": "proxy",
        "way_label": "家属代签",
        "resident_id": str(daughter.id),
        "name": "冯**",
        "relationship": "daughter",
    }
    chronic = next(p for p in body["packages"] if p["code"] == "chronic")
    assert (chronic["price_fen"], chronic["subsidy_fen"], chronic["self_pay_fen"]) == (8000, 5000, 3000)
    assert chronic["items"][0]["frequency_label"] == "签约期内 4 次"
    assert body["packages"][0]["kind"] == "basic"  # the basic package first
    assert (body["price_fen"], body["self_pay_fen"]) == (8000, 3000)
    agreement = body["agreement"]
    # The text as signed, with the resident's name masked; the hash is of the text as signed.
    assert agreement["text"] == contract.agreement_text.replace("冯慢病", "冯**")
    assert "冯慢病" not in response.get_data(as_text=True)
    assert agreement["sha256"] == hashlib.sha256(contract.agreement_text.encode("utf-8")).hexdigest()
    assert agreement["sha256"] == contract.agreement_sha256
    assert [c["key"] for c in agreement["clauses"]][:2] == ["parties", "services"]
    assert "冯**" in agreement["clauses"][0]["text"]
    assert contract.contract_no in agreement["text"]
    assert {s["role"] for s in body["signatures"]} == {"resident", "doctor"}
    assert all("image" not in s for s in body["signatures"])
    resident_signature = next(s for s in body["signatures"] if s["role"] == "resident")
    assert resident_signature["signer_name"] == "冯**"
    assert resident_signature["url"] == f"/api/v1/contracts/{contract.id}/signatures/resident"
    bill = db.session.get(Bill, contract.bill_id)
    assert body["payment"] == {
        "status": "unpaid",
        "status_label": "待缴费",
        "self_pay_fen": 3000,
        "bill_id": str(bill.id),
        "bill_no": bill.bill_no,
        "bill_status": "open",
        "amount_fen": 3000,
        "paid_at": None,
    }
    assert body["print_count"] == 2
    assert [(a["kind"], a["kind_label"]) for a in body["attachments"]] == [("photo", "签约现场照片")]
    assert body["signed_place"] == "桂园街道老围社区"

    reads = audit_rows(world.nurse_user, "read", "contract")
    assert len(reads) == 1
    assert reads[0].subject_resident_id == str(resident.id)
    assert reads[0].object_id == str(contract.id)


def test_a_paid_bill_shows_in_the_record_and_the_list(world, api):
    paid_pkg = make_package("paid-care", subsidy_fen=0, self_pay_fen=2000)
    contract = sign(world, status=ContractStatus.AWAITING_PAYMENT, packages=[world.basic, paid_pkg])
    paid_at = clock.now()
    db.session.execute(
        update(Bill).where(Bill.id == contract.bill_id).values(status=BillStatus.PAID, paid_at=paid_at)
    )
    commit()
    http = api(world.nurse_user)
    record = http.get(f"{LIST}/{contract.id}").json
    assert record["payment"]["status"] == "paid"
    assert record["payment"]["paid_at"] is not None
    row = http.get(LIST, query_string={"status": "awaiting_payment"}).json["items"][0]
    assert (row["payment_status"], row["payment_status_label"], row["self_pay_paid"]) == (
        "paid",
        "已缴费",
        True,
    )


# --- history ----------------------------------------------------------------------------------------------


def test_history_after_an_application_is_accepted_confirmed_and_paid(world, api):
    paid_pkg = make_package("history-care", self_pay_fen=1500)
    resident_actor = core.Actor("resident", uuid.uuid4(), "resident")
    contract = core.create_contract(
        resident=world.resident,
        team=world.team,
        doctor=world.doctor,
        packages=[world.basic, paid_pkg],
        status=ContractStatus.PENDING_REVIEW,
        channel=SigningChannel.MINI_PROGRAM,
        actor=resident_actor,
        template=world.template,
    )
    commit()
    with as_principal(world.doctor_user):
        core.transition(
            contract,
            ContractStatus.AWAITING_CONFIRMATION,
            action="accept",
            actor=core.actor_from_principal(),
            channel=SigningChannel.DESK,
        )
        commit()
    core.transition(
        contract,
        ContractStatus.AWAITING_PAYMENT,
        action="confirm",
        actor=resident_actor,
        channel=SigningChannel.MINI_PROGRAM,
    )
    commit()
    core.transition(
        contract, ContractStatus.ACTIVE, action="pay", actor=core.SYSTEM, channel=SigningChannel.MINI_PROGRAM
    )
    commit()

    response = api(world.nurse_user).get(f"{LIST}/{contract.id}/history")
    assert response.status_code == 200, response.json
    events = response.json
    assert [e["action"] for e in events] == ["create", "accept", "confirm", "pay"]
    assert [e["action_label"] for e in events] == [
        "创建签约",
        "团队同意签约申请",
        "居民确认签约",
        "缴费完成，签约生效",
    ]
    accept = events[1]
    assert (accept["from_status_label"], accept["to_status_label"]) == ("待团队审核", "待居民确认")
    assert (accept["actor_kind"], accept["actor_role"], accept["actor_role_label"]) == (
        "staff",
        "doctor",
        "医生",
    )
    assert accept["actor_name"] == world.doctor_user.name
    assert accept["channel_label"] == "诊间签约"
    assert events[0]["actor_kind_label"] == "居民" and events[0]["actor_name"] is None
    assert events[0]["channel_label"] == "小程序网络预申请"
    assert events[3]["actor_kind_label"] == "系统"
    assert events[3]["to_status"] == "active"
    reads = audit_rows(world.nurse_user, "read", "contract_history")
    assert len(reads) == 1 and reads[0].subject_resident_id == str(world.resident.id)


def test_a_rejection_reason_is_in_the_history(world, api):
    contract = core.create_contract(
        resident=world.resident,
        team=world.team,
        doctor=world.doctor,
        packages=world.packages,
        status=ContractStatus.PENDING_REVIEW,
        channel=SigningChannel.MINI_PROGRAM,
        actor=core.Actor("resident", uuid.uuid4(), "resident"),
    )
    commit()
    with as_principal(world.doctor_user):
        core.transition(
            contract,
            ContractStatus.REJECTED,
            action="reject",
            actor=core.actor_from_principal(),
            channel=SigningChannel.DESK,
            reason="团队已满，请选择其他团队",
        )
        commit()
    events = api(world.doctor_user).get(f"{LIST}/{contract.id}/history").json
    assert events[-1]["action_label"] == "团队拒绝签约申请"
    assert events[-1]["reason"] == "团队已满，请选择其他团队"
    assert events[-1]["to_status_label"] == "已拒绝"


# --- signatures ---------------------------------------------------------------------------------------------


def test_signature_images_go_to_staff_of_the_centre_audited(world, api):
    contract = sign(world, channel=SigningChannel.HOME_VISIT)
    image = add_signature(contract, "resident", world.resident.name)
    response = api(world.nurse_user).get(f"{LIST}/{contract.id}/signatures/resident")
    assert response.status_code == 200
    assert response.mimetype == "image/png"
    assert response.get_data() == image
    reads = audit_rows(world.nurse_user, "read", "contract_signature")
    assert len(reads) == 1 and reads[0].subject_resident_id == str(world.resident.id)
    missing = api(world.nurse_user).get(f"{LIST}/{contract.id}/signatures/doctor")
    assert (missing.status_code, missing.json["code"]) == (404, "signature_not_found")
    stranger = make_staff(Role.DOCTOR, make_centre())
    assert api(stranger).get(f"{LIST}/{contract.id}/signatures/resident").status_code == 404


# --- isolation and roles --------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["", "/history", "/signatures/resident"])
def test_another_centres_contract_is_404_and_audited_as_denied(world, api, suffix):
    contract = sign(world)
    add_signature(contract, "resident", world.resident.name)
    stranger = make_staff(Role.CENTRE_ADMIN, make_centre())
    response = api(stranger).get(f"{LIST}/{contract.id}{suffix}")
    assert response.status_code == 404
    denied = [e for e in audit_rows(stranger) if e.result == "denied"]
    assert len(denied) == 1
    assert (denied[0].object_id, denied[0].purpose) == (str(contract.id), "cross_centre_access")
    assert api(make_staff(Role.DISTRICT_ADMIN, None)).get(f"{LIST}/{contract.id}{suffix}").status_code == 200
    unknown = api(world.doctor_user).get(f"{LIST}/{uuid.uuid4()}{suffix}")
    assert unknown.status_code == 404


@pytest.mark.parametrize(
    "path", [LIST, f"{LIST}/codes", f"{LIST}/{uuid.uuid4()}", f"{LIST}/{uuid.uuid4()}/history"]
)
def test_anonymous_is_401_and_cashier_403(world, api, path):
    assert api(None).get(path).status_code == 401
    cashier = make_staff(Role.CASHIER, world.centre)
    response = api(cashier).get(path)
    assert (response.status_code, response.json["code"]) == (403, "permission_denied")


def test_auditors_read_lists_records_and_history(world, api):
    contract = sign(world)
    auditor = make_staff(Role.AUDITOR, world.centre)
    http = api(auditor)
    assert numbers(http.get(LIST)) == {contract.contract_no}
    assert http.get(f"{LIST}/{contract.id}").json["resident"]["population_groups"] is None
    assert http.get(f"{LIST}/{contract.id}/history").status_code == 200


@pytest.mark.parametrize(
    "query",
    [
        {"expiry_month": "2025-13"},
        {"expiry_month": "June"},
        {"signed_from": "2025-06-02", "signed_to": "2025-06-01"},
        {"status": "signed"},
        {"population_group": "vip"},
        {"channel": "fax"},
        {"q": "   "},
        {"size": "101"},
    ],
)
def test_bad_queries_are_422(world, api, query):
    response = api(world.nurse_user).get(LIST, query_string=query)
    assert response.status_code == 422, response.json


# --- codes --------------------------------------------------------------------------------------------------------


def test_the_code_lists_carry_chinese_labels(world, api):
    response = api(world.nurse_user).get(f"{LIST}/codes")
    assert response.status_code == 200
    body = response.json
    statuses = {c["code"]: c["label"] for c in body["statuses"]}
    assert statuses == {s.value: label for s, label in core.STATUS_LABELS.items()}
    assert {c["code"] for c in body["channels"]} >= {c.value for c in SigningChannel}
    assert {c["code"] for c in body["signing_ways"]} == {w.value for w in SigningWay}
    assert {"create", "accept", "reject", "confirm", "pay", "print", "reprint"} <= {
        c["code"] for c in body["actions"]
    }
    assert [c["label"] for c in body["progress_steps"]] == [
        "提交申请",
        "团队审核",
        "居民确认",
        "缴费",
        "生效",
    ]


def test_a_special_group_package_is_not_named_to_staff_without_the_category_permission(world, api):
    """DATA-05: a 严重精神障碍 package's name and items would reveal the category."""
    from app.contracts.models import ContractStatus, SigningChannel
    from app.contracts.services import core
    from app.core.auth import Role
    from app.core.db import commit
    from tests.contracts.factories import make_package
    from tests.factories import grant, make_staff

    world.resident.set_stored_groups({"severe_mental_disorder"})
    special = make_package(
        kind="personalised",
        name="严重精神障碍患者管理包",
        target_groups=["severe_mental_disorder"],
        items=[
            {
                "code": "smd_follow_up",
                "name": "严重精神障碍随访",
                "service_type": "smd_follow_up",
                "times_per_period": 4,
            }
        ],
    )
    contract = core.create_contract(
        resident=world.resident,
        team=world.team,
        doctor=world.doctor,
        packages=[world.basic, special],
        status=ContractStatus.ACTIVE,
        channel=SigningChannel.DESK,
        actor=core.SYSTEM,
        template=world.template,
    )
    commit()
    for user in (
        make_staff(Role.NURSE, world.centre),
        world.doctor_user,  # the contract's own doctor, without the permission
        grant(make_staff(Role.PUBLIC_HEALTH, world.centre), "health:tb"),  # another category's
    ):
        client = api(user)
        record = client.get(f"/api/v1/contracts/{contract.id}")
        assert record.status_code == 200, record.json
        text = json.dumps(record.json, ensure_ascii=False)
        assert "严重精神障碍" not in text and "特殊人群" in text, user.role
        listed = client.get("/api/v1/contracts")
        assert listed.status_code == 200 and "严重精神障碍" not in json.dumps(listed.json, ensure_ascii=False)
    for user in (world.doctor_user, make_staff(Role.NURSE, world.centre)):
        doctor = api(grant(user, "health:smd")).get(f"/api/v1/contracts/{contract.id}")
        assert "严重精神障碍患者管理包" in json.dumps(doctor.json, ensure_ascii=False)
