"""Offline tablet sync: `POST /api/v1/contracts/home-visit/batch` — one result per queued signing, in
order; each item on its own, so one bad item never undoes another; idempotent per item."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from app.contracts.models import Contract, ContractEvent, ContractSignature
from app.core import clock
from app.core.db import commit, db
from app.teams.models import TeamMember, TeamRole
from tests.contracts.factories import SigningWorld, make_package
from tests.contracts.test_signing import HOME, contracts_of, counts, home_body, jpeg_b64, sign_elsewhere
from tests.factories_doctors import make_doctor
from tests.factories_residents import make_resident

BATCH = "/api/v1/contracts/home-visit/batch"


def full_gp(world: SigningWorld) -> Any:
    """A second GP of the team with no place left."""
    gp = make_doctor(world.centre, capacity_override=0)
    db.session.add(
        TeamMember(
            id=uuid.uuid4(),
            institution_id=world.centre.id,
            team_id=world.team.id,
            doctor_id=gp.id,
            role=TeamRole.GP.value,
            is_leader=False,
        )
    )
    commit()
    db.session.expire(world.team, ["members"])
    return gp


def signature_count() -> int:
    return db.session.execute(select(func.count()).select_from(ContractSignature)).scalar_one()


def test_a_batch_with_mixed_results(world, api):
    client = api(world.doctor_user)
    residents = [make_resident(world.centre, age=40 + i) for i in range(6)]
    a, b, c, d, e, f = residents
    uploaded_before = home_body(world, resident_id=str(b.id))
    assert client.post(HOME, json=uploaded_before).status_code == 201
    sign_elsewhere(c)
    gp = full_gp(world)
    elderly_only = make_package(name="老年人健康管理包", target_groups=["elderly_65"], min_age=65)
    first = home_body(world, resident_id=str(a.id))
    items = [
        first,
        uploaded_before,
        home_body(world, resident_id=str(c.id)),
        home_body(world, resident_id=str(d.id), doctor_id=str(gp.id)),
        home_body(world, resident_id=str(e.id), package_ids=[str(world.basic.id), str(elderly_only.id)]),
        home_body(world, resident_id=str(f.id), resident_signature=jpeg_b64()),
        {"client_submission_id": str(uuid.uuid4()), "resident_id": str(f.id)},
        dict(first, place="另一个地点"),
        home_body(world, resident_id=str(a.id)),
        home_body(world, resident_id=str(f.id), photo=jpeg_b64()),
    ]
    signatures_before = signature_count()
    response = client.post(BATCH, json={"items": items})
    assert response.status_code == 200, response.json
    results = response.json["results"]
    assert [r["index"] for r in results] == list(range(len(items)))
    assert [r["client_submission_id"] for r in results] == [i["client_submission_id"] for i in items]
    assert [(r["result"], r.get("code")) for r in results] == [
        ("created", None),
        ("already_exists", None),
        ("conflict", "resident_already_signed"),
        ("conflict", "doctor_capacity_full"),
        ("conflict", "package_not_eligible"),
        ("invalid", "invalid_image"),
        ("invalid", "validation_error"),
        ("conflict", "submission_conflict"),
        ("conflict", "resident_already_signed"),
        ("created", None),
    ]
    assert response.json["summary"] == {"created": 2, "already_exists": 1, "conflict": 5, "invalid": 2}
    assert "黄贝社康中心" in results[2]["message"] and results[2]["errors"]["since"]
    assert gp.name in results[3]["message"]
    assert "老年人健康管理包" in results[4]["message"]
    assert "resident_signature" in results[5]["errors"]
    assert {"signed_at", "place", "team_id", "doctor_signature"} <= set(results[6]["errors"])
    assert results[1]["contract_id"] == str(contracts_of(b.id)[0].id)
    [contract_a] = contracts_of(a.id)
    assert results[0]["contract_id"] == str(contract_a.id) and results[0]["status"] == "active"
    assert results[8]["errors"]["contract_no"] == [contract_a.contract_no]
    assert contract_a.signed_place == first["place"]  # the conflicting resubmission changed nothing
    for resident in (c, d, e):
        assert [x.channel for x in contracts_of(resident.id)] in ([], ["import"])
    assert len(contracts_of(f.id)) == 1
    # Two new contracts, two signatures each; nothing left behind by the refused items.
    assert signature_count() == signatures_before + 4
    assert counts(world) == (3, 3)
    sign_events = db.session.execute(
        select(ContractEvent).where(ContractEvent.action == "sign", ContractEvent.channel == "home_visit")
    ).scalars()
    assert {(ev.actor_id, ev.actor_role) for ev in sign_events} == {(world.doctor_user.id, "doctor")}

    # The tablet did not get the answer and uploads the same queue again: nothing new is created.
    again = client.post(BATCH, json={"items": items})
    assert again.status_code == 200
    outcome = [(r["result"], r.get("code")) for r in again.json["results"]]
    assert outcome[0] == outcome[1] == outcome[9] == ("already_exists", None)
    assert again.json["results"][9]["contract_id"] == results[9]["contract_id"]
    assert outcome[2:9] == [(r["result"], r.get("code")) for r in results[2:9]]
    assert signature_count() == signatures_before + 4 and counts(world) == (3, 3)


def test_items_are_independent_of_each_other(world, api):
    """A failure in the middle never undoes the items before it, nor stops the ones after it."""
    residents = [make_resident(world.centre, age=30 + i) for i in range(3)]
    items = [home_body(world, resident_id=str(r.id)) for r in residents]
    items.insert(1, home_body(world, resident_id=str(residents[0].id), doctor_signature="bm90IGEgcG5n"))
    response = api(world.nurse_user).post(BATCH, json={"items": items})
    assert [r["result"] for r in response.json["results"]] == ["created", "invalid", "created", "created"]
    for resident in residents:
        assert len(contracts_of(resident.id)) == 1
    assert counts(world) == (3, 3)


def test_an_old_queued_signing_is_invalid(world, api):
    old = home_body(world, signed_at=(clock.now() - timedelta(days=31)).isoformat())
    response = api(world.doctor_user).post(BATCH, json={"items": [old]})
    [result] = response.json["results"]
    assert (result["result"], result["code"]) == ("invalid", "signed_at_too_old")
    assert "30 天" in result["message"]


def test_batch_shape_is_validated(world, api):
    client = api(world.doctor_user)
    assert client.post(BATCH, json={"items": []}).status_code == 422
    assert client.post(BATCH, json={"items": [home_body(world)] * 51}).status_code == 422
    assert client.post(BATCH, json={"items": ["not an object"]}).status_code == 422
    assert client.post(BATCH, json={}).status_code == 422
    assert contracts_of(world.resident.id) == []
    odd = client.post(BATCH, json={"items": [{"client_submission_id": 5}, {"unknown": True}]})
    assert odd.status_code == 200
    assert [(r["result"], r["client_submission_id"]) for r in odd.json["results"]] == [
        ("invalid", None),
        ("invalid", None),
    ]


def test_a_batch_created_contract_is_the_same_as_a_single_upload(world, api):
    """An item first sent alone, then again in a batch (or the other way round) is one contract."""
    body = home_body(world)
    client = api(world.doctor_user)
    [created] = client.post(BATCH, json={"items": [body]}).json["results"]
    single = client.post(HOME, json=body)
    assert created["result"] == "created" and single.status_code == 200
    assert single.json["contract"]["id"] == created["contract_id"]
    assert len(contracts_of(world.resident.id)) == 1
    stored = db.session.get_one(Contract, uuid.UUID(created["contract_id"]))
    assert stored.channel == "home_visit" and stored.client_submission_id == body["client_submission_id"]
