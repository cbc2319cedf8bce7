"""Desk signing (诊间签约), home-visit signing on a tablet (上门签约) and household signing (家庭签约)
over HTTP: who signs, the rules, the one-contract guard, capacity, retries, signatures, roles."""

from __future__ import annotations

import base64
import hashlib
import io
import uuid
from datetime import date, timedelta
from typing import Any

import pytest
from PIL import Image, PngImagePlugin
from sqlalchemy import select

from app.billing.models import Bill
from app.contracts.models import (
    Contract,
    ContractAttachment,
    ContractEvent,
    ContractSignature,
    ContractStatus,
)
from app.contracts.services import core
from app.core import clock
from app.core.auth import Role
from app.core.db import commit, db
from app.doctors.models import Doctor
from app.teams.models import Team
from tests.contracts.factories import SigningWorld, make_basic_package, make_package, signing_world
from tests.doctors.support import idem
from tests.factories import make_centre, make_staff
from tests.factories_residents import make_household, make_resident

DESK = "/api/v1/contracts"
HOME = "/api/v1/contracts/home-visit"
HOUSEHOLD = "/api/v1/contracts/household"


# --- helpers -----------------------------------------------------------------------------------------


def png_b64(size: tuple[int, int] = (160, 60), *, text: str | None = None, colour: int = 0) -> str:
    """A signature-like PNG (optionally with a text chunk that re-encoding must drop), base64."""
    image = Image.new("RGBA", size, (255, 255, 255, 0))
    for x in range(10, size[0] - 10):
        image.putpixel((x, size[1] // 2 + (x % 7) - 3), (colour, 0, 0, 255))
    out = io.BytesIO()
    info = None
    if text is not None:
        info = PngImagePlugin.PngInfo()
        info.add_text("Comment", text)
    image.save(out, format="PNG", pnginfo=info)
    return base64.b64encode(out.getvalue()).decode()


def jpeg_b64(size: tuple[int, int] = (320, 240), *, exif: bool = False) -> str:
    image = Image.new("RGB", size, (40, 120, 200))
    out = io.BytesIO()
    if exif:
        data = Image.Exif()
        data[0x010F] = "SecretCamera"
        image.save(out, format="JPEG", exif=data)
    else:
        image.save(out, format="JPEG")
    return base64.b64encode(out.getvalue()).decode()


def desk_body(world: SigningWorld, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resident_id": str(world.resident.id),
        "team_id": str(world.team.id),
        "doctor_id": str(world.doctor.id),
        "package_ids": [str(world.basic.id)],
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not ...}


def home_body(world: SigningWorld, **overrides: Any) -> dict[str, Any]:
    body = desk_body(world)
    body.update(
        client_submission_id=str(uuid.uuid4()),
        signed_at=(clock.now() - timedelta(minutes=3)).isoformat(),
        place="深圳市罗湖区测试路1号居民家中",
        latitude=22.548,
        longitude=114.131,
        resident_signature=png_b64(),
        doctor_signature=png_b64(colour=200),
    )
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not ...}


def contracts_of(resident_id: uuid.UUID) -> list[Contract]:
    db.session.expire_all()
    return list(db.session.execute(select(Contract).where(Contract.resident_id == resident_id)).scalars())


def counts(world: SigningWorld) -> tuple[int, int]:
    db.session.expire_all()
    return (
        db.session.get_one(Doctor, world.doctor.id).signed_count,
        db.session.get_one(Team, world.team.id).signed_count,
    )


def sign_elsewhere(resident: Any, *, on: date | None = None) -> Contract:
    """The resident signed with another centre's team (as the mini-program or an import would)."""
    other = signing_world(make_centre(name="黄贝社康中心"))
    contract = core.create_contract(
        resident=resident,
        team=other.team,
        doctor=other.doctor,
        packages=[other.basic],
        status=ContractStatus.ACTIVE,
        channel="import",
        actor=core.SYSTEM,
        period_start=on,
        values={"activated_at": clock.now()},
    )
    commit()
    return contract


# --- desk signing ------------------------------------------------------------------------------------


def test_desk_signing_self_is_active_at_once_with_history(world, api):
    response = api(world.nurse_user).post(DESK, json=desk_body(world), headers=idem())
    assert response.status_code == 201, response.json
    body = response.json
    contract = body["contract"]
    assert contract["status"] == "active" and contract["status_label"] == "已签约"
    assert contract["channel"] == "desk" and contract["signing_way"] == "self"
    assert contract["resident_name"] == world.resident.name
    assert contract["doctor_name"] == world.doctor.name
    today = clock.today_local()
    assert contract["period_start"] == today.isoformat()
    assert contract["period_end"] == core.period_for(today)[1].isoformat()
    assert contract["agreement_sha256"] and contract["template_id"] == str(world.template.id)
    assert "签约成功" in body["message"]
    assert [s["action"] for s in body["next_steps"]] == ["print_agreement"]
    assert body["next_steps"][0]["href"] == f"/api/v1/contracts/{contract['id']}/agreement.pdf"

    stored = db.session.get_one(Contract, uuid.UUID(contract["id"]))
    assert stored.signed_at is not None and stored.activated_at is not None
    assert world.resident.name in stored.agreement_text
    assert counts(world) == (1, 1)
    events = db.session.execute(
        select(ContractEvent).where(ContractEvent.contract_id == stored.id).order_by(ContractEvent.id)
    ).scalars()
    rows = [(e.action, e.to_status, e.actor_kind, e.actor_id, e.actor_role, e.channel) for e in events]
    assert rows == [
        ("create", "active", "staff", world.nurse_user.id, "nurse", "desk"),
        ("sign", "active", "staff", world.nurse_user.id, "nurse", "desk"),
    ]


def test_desk_signing_with_self_pay_awaits_payment_with_a_bill(world, api):
    elderly_resident = make_resident(world.centre, age=70)
    elderly = make_package(
        "elderly-care",
        name="老年人健康管理包",
        target_groups=["elderly_65"],
        subsidy_fen=10000,
        self_pay_fen=2000,
    )
    body = desk_body(
        world, resident_id=str(elderly_resident.id), package_ids=[str(world.basic.id), str(elderly.id)]
    )
    response = api(world.doctor_user).post(DESK, json=body, headers=idem())
    assert response.status_code == 201, response.json
    contract = response.json["contract"]
    assert contract["status"] == "awaiting_payment"
    assert (contract["price_fen"], contract["subsidy_fen"], contract["self_pay_fen"]) == (12000, 10000, 2000)
    assert "20.00 元" in response.json["message"]
    pay = response.json["next_steps"][0]
    assert pay["action"] == "pay" and pay["bill_id"] == contract["bill_id"] and pay["amount_fen"] == 2000
    bill = db.session.get_one(Bill, uuid.UUID(contract["bill_id"]))
    assert bill.amount_fen == 2000 and pay["bill_no"] == bill.bill_no
    assert bill.source_ref == contract["contract_no"]
    stored = db.session.get_one(Contract, uuid.UUID(contract["id"]))
    assert stored.activated_at is None and stored.signed_at is not None
    assert counts(world) == (1, 1)  # the place is held while the bill is open


def test_proxy_signing_records_the_proxy(world, api):
    body = desk_body(world, signing_way="proxy", signer_name="李四", signer_relationship="子女")
    response = api(world.nurse_user).post(DESK, json=body, headers=idem())
    assert response.status_code == 201, response.json
    contract = response.json["contract"]
    assert (contract["signing_way"], contract["signer_name"], contract["signer_relationship"]) == (
        "proxy",
        "李四",
        "子女",
    )


def test_proxy_registered_as_a_resident_and_errors(world, api):
    son = make_resident(world.centre, age=45)
    client = api(world.nurse_user)
    missing = client.post(
        DESK, json=desk_body(world, signing_way="proxy", signer_name="李四"), headers=idem()
    )
    assert missing.status_code == 422 and missing.json["code"] == "signer_relationship_required"
    stray = client.post(DESK, json=desk_body(world, signer_name="李四"), headers=idem())
    assert stray.status_code == 422 and "signer_name" in stray.json["errors"]
    body = desk_body(world, signing_way="proxy", signer_resident_id=str(son.id), signer_relationship="子女")
    response = client.post(DESK, json=body, headers=idem())
    assert response.status_code == 201, response.json
    assert response.json["contract"]["signer_name"] == son.name
    assert response.json["contract"]["signer_resident_id"] == str(son.id)


def test_a_minor_is_signed_by_the_registered_guardian(world, api):
    mother = make_resident(world.centre, age=35, sex="female")
    child = make_resident(world.centre, birth_date=date(clock.today_local().year - 5, 1, 1), guardian=mother)
    body = desk_body(world, resident_id=str(child.id), signing_way="guardian")
    response = api(world.nurse_user).post(DESK, json=body, headers=idem())
    assert response.status_code == 201, response.json
    contract = response.json["contract"]
    assert contract["signing_way"] == "guardian"
    assert contract["signer_resident_id"] == str(mother.id)
    assert (contract["signer_name"], contract["signer_relationship"]) == (mother.name, "母亲")


def test_a_minor_needs_a_guardian(world, api):
    child = make_resident(world.centre, birth_date=date(clock.today_local().year - 10, 1, 1))
    client = api(world.nurse_user)
    as_self = client.post(DESK, json=desk_body(world, resident_id=str(child.id)), headers=idem())
    assert as_self.status_code == 422 and as_self.json["code"] == "guardian_required"
    assert "监护人" in as_self.json["message"]
    nobody = client.post(
        DESK, json=desk_body(world, resident_id=str(child.id), signing_way="guardian"), headers=idem()
    )
    assert nobody.status_code == 422 and nobody.json["code"] == "signer_required"
    other_adult = make_resident(world.centre, age=50)
    mother = make_resident(world.centre, age=35, sex="female")
    registered = make_resident(
        world.centre, birth_date=date(clock.today_local().year - 8, 3, 1), guardian=mother
    )
    wrong = client.post(
        DESK,
        json=desk_body(
            world,
            resident_id=str(registered.id),
            signing_way="guardian",
            signer_resident_id=str(other_adult.id),
            signer_relationship="其他",
        ),
        headers=idem(),
    )
    assert wrong.status_code == 422 and wrong.json["code"] == "not_the_guardian"
    assert contracts_of(child.id) == [] and contracts_of(registered.id) == []


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("not_eligible", "package_not_eligible"),
        ("no_basic", "basic_package_required"),
        ("unknown", "package_not_found"),
        ("other_centre", "package_not_found"),
        ("draft", "package_not_eligible"),
        ("past_start", "period_start_in_past"),
        ("locked_clause", "clause_locked"),
        ("no_template", "no_agreement_template"),
    ],
)
def test_eligibility_and_rule_errors(world, api, case, code):
    body = desk_body(world)
    if case == "not_eligible":
        elderly = make_package(target_groups=["elderly_65"], min_age=65)
        body["package_ids"] = [str(world.basic.id), str(elderly.id)]
    elif case == "no_basic":
        body["package_ids"] = [str(make_package().id)]
    elif case == "unknown":
        body["package_ids"] = [str(uuid.uuid4())]
    elif case == "other_centre":
        body["package_ids"] = [str(make_basic_package(institution_id=make_centre().id).id)]
    elif case == "draft":
        body["package_ids"] = [str(make_basic_package(status="draft").id)]
    elif case == "past_start":
        body["period_start"] = (clock.today_local() - timedelta(days=1)).isoformat()
    elif case == "locked_clause":
        body["clause_overrides"] = {"fees": "免费"}
    elif case == "no_template":
        world.template.status = "retired"
        commit()
    response = api(world.nurse_user).post(DESK, json=body, headers=idem())
    assert response.status_code == 422, response.json
    assert response.json["code"] == code
    assert contracts_of(world.resident.id) == []
    assert counts(world) == (0, 0)


def test_a_personalised_clause_is_kept_in_the_agreement(world, api):
    body = desk_body(world, clause_overrides={"services": "乙方为甲方提供基础服务包，并每季度上门随访一次。"})
    response = api(world.doctor_user).post(DESK, json=body, headers=idem())
    assert response.status_code == 201, response.json
    stored = db.session.get_one(Contract, uuid.UUID(response.json["contract"]["id"]))
    assert "每季度上门随访一次" in stored.agreement_text
    assert stored.agreement_sha256 == hashlib.sha256(stored.agreement_text.encode()).hexdigest()
    assert next(c for c in stored.clauses if c["key"] == "services")["personalised"] is True


def test_already_signed_elsewhere_names_where_and_since(world, api):
    first_day = clock.today_local()
    sign_elsewhere(world.resident, on=first_day)
    response = api(world.nurse_user).post(DESK, json=desk_body(world), headers=idem())
    assert response.status_code == 409
    assert response.json["code"] == "resident_already_signed"
    assert "黄贝社康中心" in response.json["message"]
    assert f"{first_day:%Y年%m月%d日}" in response.json["message"]
    assert response.json["errors"]["institution"] == ["黄贝社康中心"]
    assert counts(world) == (0, 0)


def test_signing_twice_at_the_same_desk_is_refused(world, api):
    client = api(world.nurse_user)
    assert client.post(DESK, json=desk_body(world), headers=idem()).status_code == 201
    again = client.post(DESK, json=desk_body(world), headers=idem())
    assert again.status_code == 409 and again.json["code"] == "resident_already_signed"
    assert world.centre.name in again.json["message"]
    assert len(contracts_of(world.resident.id)) == 1 and counts(world) == (1, 1)


def test_a_full_doctor_refuses_new_signings(world, api):
    doctor = db.session.get_one(Doctor, world.doctor.id)
    doctor.capacity_override, doctor.signed_count = 3, 3
    commit()
    response = api(world.nurse_user).post(DESK, json=desk_body(world), headers=idem())
    assert response.status_code == 409
    assert response.json["code"] == "doctor_capacity_full"
    assert world.doctor.name in response.json["message"] and "上限" in response.json["message"]
    assert contracts_of(world.resident.id) == []


def test_the_same_idempotency_key_replays_the_reply(world, api):
    client = api(world.nurse_user)
    headers = idem()
    first = client.post(DESK, json=desk_body(world), headers=headers)
    second = client.post(DESK, json=desk_body(world), headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.headers.get("Idempotent-Replayed") == "true"
    assert second.json == first.json
    assert len(contracts_of(world.resident.id)) == 1


def test_auth_roles_and_centre_isolation(world, api):
    assert api(None).post(DESK, json=desk_body(world), headers=idem()).status_code == 401
    for role in (Role.CASHIER, Role.AUDITOR, Role.PUBLIC_HEALTH, Role.DISTRICT_ADMIN):
        user = make_staff(role, None if role == Role.DISTRICT_ADMIN else world.centre)
        denied = api(user).post(DESK, json=desk_body(world), headers=idem())
        assert denied.status_code == 403, role
        assert api(user).post(HOME, json=home_body(world)).status_code == 403
        assert api(user).post("/api/v1/contracts/home-visit/batch", json={"items": [{}]}).status_code == 403
    missing_key = api(world.nurse_user).post(DESK, json=desk_body(world))
    assert missing_key.status_code == 400 and missing_key.json["code"] == "idempotency_key_required"

    other = signing_world(make_centre())
    client = api(world.nurse_user)
    team = client.post(
        DESK,
        json=desk_body(world, team_id=str(other.team.id), doctor_id=str(other.doctor.id)),
        headers=idem(),
    )
    assert team.status_code == 404 and team.json["code"] == "team_not_found"
    resident = client.post(DESK, json=desk_body(world, resident_id=str(other.resident.id)), headers=idem())
    assert resident.status_code == 404 and resident.json["code"] == "resident_not_found"
    doctor = client.post(DESK, json=desk_body(world, doctor_id=str(other.doctor.id)), headers=idem())
    assert doctor.status_code == 404 and doctor.json["code"] == "doctor_not_found"
    # A doctor of the centre who is not a GP of the team.
    stranger = client.post(DESK, json=desk_body(world, doctor_id=str(world.nurse.id)), headers=idem())
    assert stranger.status_code == 422 and stranger.json["code"] == "doctor_not_in_team"
    assert contracts_of(world.resident.id) == [] and contracts_of(other.resident.id) == []
    # The centre admin and the team leader of the centre may sign.
    leader = make_staff(Role.TEAM_LEADER, world.centre)
    assert api(leader).post(DESK, json=desk_body(world), headers=idem()).status_code == 201


def test_bad_input_is_422(world, api):
    client = api(world.nurse_user)
    for body in (
        {},
        desk_body(world, package_ids=[]),
        desk_body(world, package_ids=[str(world.basic.id), str(world.basic.id)]),
        desk_body(world, signing_way="household"),
        desk_body(world, resident_id="not-a-uuid"),
        desk_body(world, unknown_field=1),
        desk_body(world, clause_overrides={"services": ""}),
    ):
        response = client.post(DESK, json=body, headers=idem())
        assert response.status_code == 422, (body, response.json)


# --- home visit (tablet) -----------------------------------------------------------------------------


def test_home_visit_signing_stores_signatures_and_photo_re_encoded(world, api):
    resident_png = png_b64(text="secret-device-serial")
    body = home_body(world, resident_signature=resident_png, photo=jpeg_b64(exif=True))
    response = api(world.doctor_user).post(HOME, json=body)
    assert response.status_code == 201, response.json
    contract = response.json["contract"]
    assert contract["channel"] == "home_visit" and contract["status"] == "active"
    assert contract["client_submission_id"] == body["client_submission_id"]
    assert contract["signed_place"] == body["place"]
    assert (contract["signed_latitude"], contract["signed_longitude"]) == ("22.548000", "114.131000")
    assert [s["role"] for s in contract["signatures"]] == ["doctor", "resident"]

    signatures = {
        s.role: s
        for s in db.session.execute(
            select(ContractSignature).where(ContractSignature.contract_id == uuid.UUID(contract["id"]))
        ).scalars()
    }
    resident_sig, doctor_sig = signatures["resident"], signatures["doctor"]
    assert resident_sig.signer_name == world.resident.name and doctor_sig.signer_name == world.doctor.name
    for sig in signatures.values():
        assert hashlib.sha256(sig.image).hexdigest() == sig.sha256
        with Image.open(io.BytesIO(sig.image)) as image:
            assert image.format == "PNG" and image.size == (160, 60)
            assert "Comment" not in image.info  # metadata dropped by re-encoding
    assert b"secret-device-serial" not in resident_sig.image
    photo = db.session.execute(
        select(ContractAttachment).where(ContractAttachment.contract_id == uuid.UUID(contract["id"]))
    ).scalar_one()
    assert photo.kind == "photo" and photo.content_type == "image/jpeg" and photo.size == len(photo.data)
    assert b"SecretCamera" not in photo.data
    assert contract["photo_sha256"] == photo.sha256 == hashlib.sha256(photo.data).hexdigest()
    assert photo.uploaded_by == world.doctor_user.id

    stored = db.session.get_one(Contract, uuid.UUID(contract["id"]))
    assert stored.signed_at is not None
    assert abs((stored.signed_at - clock.now()).total_seconds() - (-180)) < 60
    sign = db.session.execute(
        select(ContractEvent).where(ContractEvent.contract_id == stored.id, ContractEvent.action == "sign")
    ).scalar_one()
    assert (sign.actor_id, sign.actor_role, sign.channel) == (world.doctor_user.id, "doctor", "home_visit")
    assert sign.detail["signatures"] == {"resident": resident_sig.sha256, "doctor": doctor_sig.sha256}


def test_a_tablet_retry_returns_the_same_contract(world, api):
    client = api(world.doctor_user)
    body = home_body(world)
    first = client.post(HOME, json=body)
    assert first.status_code == 201, first.json
    retry = client.post(HOME, json=body)
    assert retry.status_code == 200
    assert retry.json == first.json
    assert len(contracts_of(world.resident.id)) == 1 and counts(world) == (1, 1)


def test_a_retry_after_the_response_was_lost(world, api):
    """The first request committed but the tablet never saw the answer; it sends the same
    submission again (here with keys and package ids in another order, and from a new session)."""
    personalised = make_package(name="慢病随访包")
    body = home_body(world, package_ids=[str(world.basic.id), str(personalised.id)])
    api(world.doctor_user).post(HOME, json=body)  # the response is lost on the way back
    shuffled = dict(reversed(list(body.items())))
    shuffled["package_ids"] = list(reversed(body["package_ids"]))
    retry = api(world.doctor_user).post(HOME, json=shuffled)
    assert retry.status_code == 200, retry.json
    [contract] = contracts_of(world.resident.id)
    assert retry.json["contract"]["id"] == str(contract.id)
    assert retry.json["contract"]["client_submission_id"] == body["client_submission_id"]
    # Another nurse of the same centre replaying the tablet's queue finds it too.
    assert api(world.nurse_user).post(HOME, json=body).status_code == 200
    assert counts(world) == (1, 1)


def test_the_same_submission_id_with_another_body_is_a_conflict(world, api):
    client = api(world.doctor_user)
    body = home_body(world)
    assert client.post(HOME, json=body).status_code == 201
    changed = dict(body, place="社康中心门诊")
    response = client.post(HOME, json=changed)
    assert response.status_code == 409
    assert response.json["code"] == "submission_conflict"
    assert "提交编号" in response.json["message"]
    other_resident = make_resident(world.centre, age=50)
    reused = client.post(HOME, json=dict(body, resident_id=str(other_resident.id)))
    assert reused.status_code == 409 and reused.json["code"] == "submission_conflict"
    assert contracts_of(other_resident.id) == []


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("resident_signature", jpeg_b64(), "invalid_image"),
        ("doctor_signature", base64.b64encode(b"GIF89a not a png").decode(), "invalid_image"),
        ("resident_signature", "%%% not base64 %%%", "invalid_image"),
        ("resident_signature", base64.b64encode(b"\x89PNG\r\n\x1a\n broken").decode(), "invalid_image"),
        ("photo", base64.b64encode(b"GIF89a....").decode(), "invalid_image"),
        ("photo", base64.b64encode(b"\xff\xd8\xff truncated jpeg").decode(), "invalid_image"),
    ],
)
def test_bad_images_are_422(world, api, field, value, code):
    response = api(world.doctor_user).post(HOME, json=home_body(world, **{field: value}))
    assert response.status_code == 422, response.json
    assert response.json["code"] == code and field in response.json["errors"]
    assert contracts_of(world.resident.id) == []


def test_oversized_images_are_refused(world, api):
    big = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(512 * 1024)).decode()
    response = api(world.doctor_user).post(HOME, json=home_body(world, resident_signature=big))
    assert response.status_code == 422
    assert response.json["code"] == "image_too_large" and "512 KB" in response.json["message"]
    huge = png_b64(size=(5000, 10))
    response = api(world.doctor_user).post(HOME, json=home_body(world, doctor_signature=huge))
    assert response.status_code == 422 and "尺寸" in response.json["message"]


def test_home_visit_requires_both_signatures_and_valid_fields(world, api):
    client = api(world.doctor_user)
    for override in (
        {"resident_signature": ...},
        {"doctor_signature": ...},
        {"client_submission_id": ...},
        {"client_submission_id": "offline-1"},
        {"signed_at": ...},
        {"signed_at": "2025-01-01T10:00:00"},  # no time zone
        {"place": ...},
        {"latitude": 91.0},
        {"longitude": -181.0},
        {"latitude": None},  # one without the other
    ):
        response = client.post(HOME, json=home_body(world, **override))
        assert response.status_code == 422, (override, response.json)
    future = client.post(
        HOME, json=home_body(world, signed_at=(clock.now() + timedelta(hours=1)).isoformat())
    )
    assert future.status_code == 422 and future.json["code"] == "signed_at_in_future"
    old = client.post(HOME, json=home_body(world, signed_at=(clock.now() - timedelta(days=31)).isoformat()))
    assert old.status_code == 422 and old.json["code"] == "signed_at_too_old"
    assert contracts_of(world.resident.id) == []


def test_an_offline_signing_starts_on_the_day_it_was_signed(world, api):
    signed_at = clock.now() - timedelta(days=3)
    response = api(world.doctor_user).post(HOME, json=home_body(world, signed_at=signed_at.isoformat()))
    assert response.status_code == 201, response.json
    contract = response.json["contract"]
    assert contract["period_start"] == clock.local(signed_at).date().isoformat()
    stored = db.session.get_one(Contract, uuid.UUID(contract["id"]))
    assert abs((stored.signed_at - signed_at).total_seconds()) < 1


def test_home_visit_by_a_proxy_names_the_signer_on_the_signature(world, api):
    body = home_body(world, signing_way="proxy", signer_name="王五", signer_relationship="配偶")
    response = api(world.doctor_user).post(HOME, json=body)
    assert response.status_code == 201, response.json
    resident_sig = next(s for s in response.json["contract"]["signatures"] if s["role"] == "resident")
    assert resident_sig["signer_name"] == "王五"


# --- household ---------------------------------------------------------------------------------------


def household_world(world: SigningWorld) -> dict[str, Any]:
    head = make_resident(world.centre, age=45, sex="male")
    spouse = make_resident(world.centre, age=43, sex="female")
    child = make_resident(
        world.centre,
        birth_date=date(clock.today_local().year - 9, 2, 1),
        guardian=head,
        guardian_relationship="father",
    )
    household = make_household(head, (spouse, "spouse"), (child, "child"))
    return {"head": head, "spouse": spouse, "child": child, "household": household}


def household_body(
    world: SigningWorld, family: dict[str, Any], members: list[Any], **kw: Any
) -> dict[str, Any]:
    body = {
        "household_id": str(family["household"].id),
        "team_id": str(world.team.id),
        "doctor_id": str(world.doctor.id),
        "representative": {"resident_id": str(family["head"].id)},
        "members": [{"resident_id": str(m.id), "package_ids": [str(world.basic.id)]} for m in members],
    }
    body.update(kw)
    return body


def test_household_signing_signs_everyone_together(world, api):
    family = household_world(world)
    members = [family["head"], family["spouse"], family["child"]]
    response = api(world.nurse_user).post(
        HOUSEHOLD, json=household_body(world, family, members), headers=idem()
    )
    assert response.status_code == 201, response.json
    batch = response.json["household_batch"]
    results = {r["contract"]["resident_id"]: r["contract"] for r in response.json["results"]}
    assert len(results) == 3 and {c["household_batch"] for c in results.values()} == {batch}
    head, spouse, child = (results[str(m.id)] for m in members)
    assert head["signing_way"] == "self"
    assert (spouse["signing_way"], spouse["signer_resident_id"]) == ("household", str(family["head"].id))
    assert spouse["signer_relationship"] == "户代表（户主）"
    assert (child["signing_way"], child["signer_resident_id"], child["signer_relationship"]) == (
        "guardian",
        str(family["head"].id),
        "父亲",
    )
    assert counts(world) == (3, 3)
    stored = db.session.execute(
        select(Contract).where(Contract.household_batch == uuid.UUID(batch))
    ).scalars()
    assert len(list(stored)) == 3


def test_household_signing_is_all_or_nothing(world, api):
    family = household_world(world)
    sign_elsewhere(family["spouse"])
    members = [family["head"], family["spouse"], family["child"]]
    response = api(world.nurse_user).post(
        HOUSEHOLD, json=household_body(world, family, members), headers=idem()
    )
    assert response.status_code == 409, response.json
    assert response.json["code"] == "household_signing_conflict"
    assert family["spouse"].name in response.json["message"] and "黄贝社康中心" in response.json["message"]
    assert "全部成员均未签约" in response.json["message"]
    assert list(response.json["errors"]) == [str(family["spouse"].id)]
    assert response.json["errors"][str(family["spouse"].id)][0].startswith("resident_already_signed")
    assert contracts_of(family["head"].id) == [] and contracts_of(family["child"].id) == []
    assert counts(world) == (0, 0)


def test_household_reasons_for_every_refused_member(world, api):
    family = household_world(world)
    elderly_only = make_package(target_groups=["elderly_65"], min_age=65)
    body = household_body(world, family, [family["head"], family["spouse"]])
    body["members"][1]["package_ids"].append(str(elderly_only.id))
    doctor = db.session.get_one(Doctor, world.doctor.id)
    doctor.capacity_override = 0
    commit()
    response = api(world.nurse_user).post(HOUSEHOLD, json=body, headers=idem())
    assert response.status_code == 409
    errors = response.json["errors"]
    assert errors[str(family["head"].id)][0].startswith("doctor_capacity_full")
    assert errors[str(family["spouse"].id)][0].startswith("package_not_eligible")
    assert contracts_of(family["head"].id) == []


def test_a_minor_in_a_household_needs_the_guardian(world, api):
    family = household_world(world)
    orphan = make_resident(world.centre, birth_date=date(clock.today_local().year - 12, 6, 1))
    from tests.factories_residents import add_to_household

    add_to_household(family["household"], orphan, "grandchild")
    client = api(world.nurse_user)
    refused = client.post(
        HOUSEHOLD, json=household_body(world, family, [family["head"], orphan]), headers=idem()
    )
    assert refused.status_code == 422
    assert refused.json["code"] == "household_signing_refused"
    assert refused.json["errors"][str(orphan.id)][0].startswith("guardian_required")
    assert contracts_of(family["head"].id) == []
    body = household_body(world, family, [family["head"], orphan])
    body["members"][1]["guardian"] = {"name": "赵六", "relationship": "祖父母/外祖父母"}
    accepted = client.post(HOUSEHOLD, json=body, headers=idem())
    assert accepted.status_code == 201, accepted.json
    minor = next(
        r["contract"] for r in accepted.json["results"] if r["contract"]["resident_id"] == str(orphan.id)
    )
    assert (minor["signing_way"], minor["signer_name"]) == ("guardian", "赵六")


def test_household_membership_rules(world, api):
    family = household_world(world)
    stranger = make_resident(world.centre, age=30)
    client = api(world.nurse_user)
    outsider = client.post(
        HOUSEHOLD, json=household_body(world, family, [family["head"], stranger]), headers=idem()
    )
    assert outsider.status_code == 422 and outsider.json["code"] == "not_household_member"
    assert outsider.json["errors"]["members"] == [str(stranger.id)]
    body = household_body(world, family, [family["spouse"]], representative={"resident_id": str(stranger.id)})
    not_member = client.post(HOUSEHOLD, json=body, headers=idem())
    assert not_member.status_code == 422 and not_member.json["code"] == "representative_not_member"
    body = household_body(
        world, family, [family["spouse"]], representative={"resident_id": str(family["child"].id)}
    )
    minor_rep = client.post(HOUSEHOLD, json=body, headers=idem())
    assert minor_rep.status_code == 422 and minor_rep.json["code"] == "invalid_representative"
    dup = household_body(world, family, [family["spouse"], family["spouse"]])
    assert client.post(HOUSEHOLD, json=dup, headers=idem()).status_code == 422
    other = signing_world(make_centre())
    other_family = household_world(other)
    foreign = household_body(other, other_family, [other_family["head"]], team_id=str(world.team.id))
    foreign["doctor_id"] = str(world.doctor.id)
    response = client.post(HOUSEHOLD, json=foreign, headers=idem())
    assert response.status_code == 404 and response.json["code"] == "household_not_found"
    assert api(None).post(HOUSEHOLD, json=dup, headers=idem()).status_code == 401
    cashier = make_staff(Role.CASHIER, world.centre)
    assert api(cashier).post(HOUSEHOLD, json=dup, headers=idem()).status_code == 403
