"""Proxy bindings (代理): a parent for a child, a son or daughter for an elderly parent."""

from __future__ import annotations

import uuid
from datetime import date, timedelta

import pytest
import time_machine
from sqlalchemy import select

from app.core import clock
from app.core.audit import AuditEvent
from app.core.auth import Role
from app.core.db import db
from app.institutions.models import Institution
from app.mp_accounts.models import MpBinding, MpBindingEvent
from app.mp_accounts.services import identity
from app.residents.models import Resident
from notifications import render
from notifications.fake import FakeSmsSender
from tests.factories import ApiClient, make_staff
from tests.factories_residents import make_resident
from tests.miniprogram.conftest import Mp

CHILD_PHONE = "13900001111"
PARENT_PHONE = "13700002222"


@pytest.fixture
def child(home_centre: Institution, resident: Resident) -> Resident:
    return make_resident(
        home_centre, name="张小宝", birth_date=date(2021, 3, 8), guardian=resident, phone=CHILD_PHONE
    )


@pytest.fixture
def elderly(home_centre: Institution) -> Resident:
    return make_resident(home_centre, name="张老汉", age=78, phone=PARENT_PHONE)


@pytest.fixture
def alice(mp: Mp, resident: Resident) -> ApiClient:
    client = mp.login("oAlice")
    mp.bind_self(client, resident)
    return client


def _add(mp: Mp, client: ApiClient, member: Resident, relationship: str) -> dict:
    asked = client.post(
        "/mp/v1/family",
        json={"name": member.name, "id_number": member.id_number, "relationship": relationship},
    )
    assert asked.status_code == 202, asked.json
    assert member.phone is not None
    confirmed = client.post("/mp/v1/family/confirm", json={"otp": mp.code_sent_to(member.phone)})
    assert confirmed.status_code == 201, confirmed.json
    return dict(confirmed.json)


def test_parent_adds_a_child(mp: Mp, alice: ApiClient, child: Resident, sms: FakeSmsSender) -> None:
    asked = alice.post(
        "/mp/v1/family", json={"name": "张小宝", "id_number": child.id_number, "relationship": "parent"}
    )
    assert asked.status_code == 202
    assert asked.json["masked_phone"] == "139****1111"
    assert asked.json["relationship"] == "parent"
    code = mp.code_sent_to(CHILD_PHONE)
    assert "授权家人" in render(sms.sent[-1])

    confirmed = alice.post("/mp/v1/family/confirm", json={"otp": code})

    assert confirmed.status_code == 201
    assert confirmed.json["relationship"] == "parent"
    assert confirmed.json["relationship_label"] == "父母"
    assert confirmed.json["resident"]["name"] == "张**"
    listed = alice.get("/mp/v1/family").json
    assert [b["id"] for b in listed] == [confirmed.json["id"]]
    assert alice.get(f"/mp/v1/family/{confirmed.json['id']}").json["resident"]["id"] == str(child.id)
    assert alice.get("/mp/v1/auth/me").json["family_members"] == 1
    audited = (
        db.session.execute(
            select(AuditEvent.action)
            .where(AuditEvent.subject_resident_id == str(child.id))
            .order_by(AuditEvent.seq)
        )
        .scalars()
        .all()
    )
    assert audited[:2] == ["otp_sent", "bind"]


def test_child_acts_for_an_elderly_parent(mp: Mp, alice: ApiClient, elderly: Resident) -> None:
    body = _add(mp, alice, elderly, "child")
    assert (body["relationship"], body["relationship_label"]) == ("child", "子女")


def test_two_guardians_may_act_for_the_same_child(
    mp: Mp, alice: ApiClient, child: Resident, home_centre: Institution
) -> None:
    _add(mp, alice, child, "parent")
    father = mp.login("oFather")
    mp.bind_self(father, make_resident(home_centre, name="李父", phone="13600003333"))
    # The same phone (the child's record) got a code a moment ago: wait out the 60 s.
    with time_machine.travel(clock.now() + timedelta(seconds=61), tick=False):
        assert _add(mp, father, child, "guardian")["relationship"] == "guardian"


def test_family_needs_own_identity_first(mp: Mp, child: Resident, sms: FakeSmsSender) -> None:
    bob = mp.login("oBob")
    response = bob.post(
        "/mp/v1/family", json={"name": child.name, "id_number": child.id_number, "relationship": "parent"}
    )
    assert (response.status_code, response.json["code"]) == (422, "identity_not_bound")
    mp.run_jobs()
    assert sms.calls == 0


def test_cannot_add_oneself(alice: ApiClient, resident: Resident) -> None:
    response = alice.post(
        "/mp/v1/family",
        json={"name": resident.name, "id_number": resident.id_number, "relationship": "child"},
    )
    assert (response.status_code, response.json["code"]) == (422, "cannot_proxy_self")


@pytest.mark.parametrize("relationship", ["self", "friend", ""])
def test_relationship_must_be_a_proxy_relationship(
    alice: ApiClient, child: Resident, relationship: str
) -> None:
    response = alice.post(
        "/mp/v1/family", json={"name": child.name, "id_number": child.id_number, "relationship": relationship}
    )
    assert response.status_code == 422
    assert "relationship" in response.json["errors"]


def test_adding_twice_is_409(mp: Mp, alice: ApiClient, child: Resident) -> None:
    _add(mp, alice, child, "parent")
    again = alice.post(
        "/mp/v1/family", json={"name": child.name, "id_number": child.id_number, "relationship": "parent"}
    )
    assert (again.status_code, again.json["code"]) == (409, "already_bound")


def test_family_limit(
    mp: Mp, alice: ApiClient, child: Resident, elderly: Resident, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(identity, "MAX_FAMILY_MEMBERS", 1)
    _add(mp, alice, child, "parent")
    full = alice.post(
        "/mp/v1/family", json={"name": elderly.name, "id_number": elderly.id_number, "relationship": "child"}
    )
    assert (full.status_code, full.json["code"]) == (422, "family_limit_reached")


def test_self_code_does_not_confirm_a_family_binding(mp: Mp, child: Resident, resident: Resident) -> None:
    bob = mp.login("oBob")
    bob.post("/mp/v1/identity/bind", json={"name": resident.name, "id_number": resident.id_number})
    assert resident.phone is not None
    code = mp.code_sent_to(resident.phone)
    response = bob.post("/mp/v1/family/confirm", json={"otp": code})
    assert (response.status_code, response.json["code"]) == (422, "otp_invalid")


def test_another_resident_cannot_see_or_remove_my_family(mp: Mp, alice: ApiClient, child: Resident) -> None:
    binding_id = _add(mp, alice, child, "parent")["id"]
    bob = mp.login("oBob")

    assert bob.get(f"/mp/v1/family/{binding_id}").status_code == 404
    assert bob.delete(f"/mp/v1/family/{binding_id}").status_code == 404
    assert bob.get("/mp/v1/family").json == []
    assert bob.get(f"/mp/v1/family/{uuid.uuid4()}").status_code == 404

    assert alice.get(f"/mp/v1/family/{binding_id}").status_code == 200
    denials = (
        db.session.execute(
            select(AuditEvent).where(AuditEvent.object_id == binding_id, AuditEvent.result == "denied")
        )
        .scalars()
        .all()
    )
    assert sorted(d.action for d in denials) == ["delete", "read"]
    assert all(d.purpose == "cross_owner_access" for d in denials)


def test_self_binding_is_not_reachable_as_a_family_member(mp: Mp, alice: ApiClient) -> None:
    own = alice.get("/mp/v1/identity").json["id"]
    assert alice.get(f"/mp/v1/family/{own}").status_code == 404
    assert alice.delete(f"/mp/v1/family/{own}").status_code == 404


def test_remove_a_family_member(mp: Mp, alice: ApiClient, child: Resident) -> None:
    binding_id = _add(mp, alice, child, "parent")["id"]

    assert alice.delete(f"/mp/v1/family/{binding_id}").status_code == 204

    assert alice.get(f"/mp/v1/family/{binding_id}").status_code == 404
    assert alice.get("/mp/v1/family").json == []
    binding = db.session.get(MpBinding, uuid.UUID(binding_id))
    assert binding is not None and (binding.status, binding.end_reason) == ("ended", "removed_by_user")
    events = (
        db.session.execute(
            select(MpBindingEvent.to_status)
            .where(MpBindingEvent.binding_id == binding.id)
            .order_by(MpBindingEvent.id)
        )
        .scalars()
        .all()
    )
    assert events == ["active", "ended"]
    assert (
        db.session.execute(
            select(AuditEvent).where(AuditEvent.object_id == binding_id, AuditEvent.action == "unbind")
        )
        .scalar_one()
        .result
        == "allowed"
    )


def test_staff_cannot_use_family_routes(api_as, centre) -> None:
    assert api_as(make_staff(Role.DOCTOR, centre)).get("/mp/v1/family").status_code == 403
