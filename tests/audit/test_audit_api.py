"""GET /api/v1/audit/events: who accessed resident X, what did user U access (DATA-04, PIPL Art. 57)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
import time_machine

from app.core import audit, clock
from app.core.auth import Role
from app.core.db import commit
from app.institutions.models import Institution
from tests.audit.support import audit_rows, http_as
from tests.factories import as_principal, make_centre, make_staff

EVENTS = "/api/v1/audit/events"


def _record_as(user, action: str, *, resident_id=None, object_id=None, result=audit.ALLOWED) -> None:
    with as_principal(user):
        audit.record(action, "resident", object_id or uuid.uuid4(), resident_id=resident_id, result=result)
    commit()


def _items(response) -> list[dict]:
    assert response.status_code == 200, response.json
    return response.json["items"]


@pytest.mark.parametrize(
    "role", [Role.CENTRE_ADMIN, Role.TEAM_LEADER, Role.DOCTOR, Role.NURSE, Role.PUBLIC_HEALTH, Role.CASHIER]
)
def test_only_district_admins_and_auditors_read_the_trail(app, centre, role):
    caller = make_staff(role, centre)
    response = http_as(app, caller).get(EVENTS)
    assert response.status_code == 403
    assert audit_rows(action="read", object_type="audit_events") == []


@pytest.mark.parametrize(
    ("role", "in_centre"), [(Role.DISTRICT_ADMIN, False), (Role.AUDITOR, False), (Role.AUDITOR, True)]
)
def test_admins_and_auditors_may_read(app, centre, role, in_centre):
    caller = make_staff(role, centre if in_centre else None)
    assert http_as(app, caller).get(EVENTS).status_code == 200


def test_who_accessed_resident_x(app, centre, other_centre):
    doctor_a, doctor_b = make_staff(Role.DOCTOR, centre), make_staff(Role.DOCTOR, other_centre)
    resident_x, resident_y = uuid.uuid4(), uuid.uuid4()
    _record_as(doctor_a, "read", resident_id=resident_x)
    _record_as(doctor_b, "read", resident_id=resident_x, result=audit.DENIED)
    _record_as(doctor_a, "update", resident_id=resident_x)
    _record_as(doctor_a, "read", resident_id=resident_y)
    auditor = make_staff(Role.AUDITOR, None)

    items = _items(http_as(app, auditor).get(EVENTS, query_string={"resident_id": str(resident_x)}))

    assert {i["subject_resident_id"] for i in items} == {str(resident_x)}
    assert [(i["actor_id"], i["action"], i["result"]) for i in items] == [
        (str(doctor_a.id), "update", "allowed"),
        (str(doctor_b.id), "read", "denied"),
        (str(doctor_a.id), "read", "allowed"),
    ]  # newest first
    assert all(i["row_hash"] and i["institution_id"] for i in items)


def test_what_did_user_u_access(app, centre):
    nurse, doctor = make_staff(Role.NURSE, centre), make_staff(Role.DOCTOR, centre)
    seen = [uuid.uuid4() for _ in range(3)]
    for resident in seen:
        _record_as(nurse, "read", resident_id=resident)
    _record_as(doctor, "read", resident_id=uuid.uuid4())
    admin = make_staff(Role.DISTRICT_ADMIN, None)

    items = _items(http_as(app, admin).get(EVENTS, query_string={"actor_id": str(nurse.id)}))

    assert {i["actor_id"] for i in items} == {str(nurse.id)}
    assert {i["subject_resident_id"] for i in items} == {str(r) for r in seen}
    denied = _items(
        http_as(app, admin).get(EVENTS, query_string={"actor_id": str(nurse.id), "result": "denied"})
    )
    assert denied == []


def test_a_centre_auditor_sees_only_their_centre(app, centre, other_centre):
    doctor_a, doctor_b = make_staff(Role.DOCTOR, centre), make_staff(Role.DOCTOR, other_centre)
    resident = uuid.uuid4()
    _record_as(doctor_a, "read", resident_id=resident)
    _record_as(doctor_b, "read", resident_id=resident)
    district = make_staff(Role.DISTRICT_ADMIN, None)
    _record_as(district, "read", resident_id=resident)
    local_auditor = make_staff(Role.AUDITOR, centre)

    items = _items(
        http_as(app, local_auditor).get(EVENTS, query_string={"resident_id": str(resident), "size": 100})
    )
    assert [i["actor_id"] for i in items] == [str(doctor_a.id)]
    everything = _items(http_as(app, local_auditor).get(EVENTS, query_string={"size": 100}))
    assert {i["institution_id"] for i in everything} == {str(centre.id)}
    # Asking for another centre's user yields nothing.
    assert _items(http_as(app, local_auditor).get(EVENTS, query_string={"actor_id": str(doctor_b.id)})) == []
    # A district auditor sees all three.
    district_auditor = make_staff(Role.AUDITOR, None)
    items = _items(http_as(app, district_auditor).get(EVENTS, query_string={"resident_id": str(resident)}))
    assert {i["actor_id"] for i in items} == {str(doctor_a.id), str(doctor_b.id), str(district.id)}


def test_reading_the_trail_is_itself_audited(app, centre):
    auditor = make_staff(Role.AUDITOR, centre)
    resident = uuid.uuid4()
    response = http_as(app, auditor).get(EVENTS, query_string={"resident_id": str(resident)})
    assert response.status_code == 200
    [event] = audit_rows(action="read", object_type="audit_events")
    assert event.actor_id == str(auditor.id) and event.role == "auditor"
    assert event.institution_id == str(centre.id)
    assert event.detail == {"resident_id": str(resident), "actor_id": None}
    assert event.request_id == response.headers["X-Request-ID"]


def test_filters_by_object_result_and_time(app, centre):
    doctor = make_staff(Role.DOCTOR, centre)
    target = uuid.uuid4()
    start = clock.now()
    with time_machine.travel(start - timedelta(days=2), tick=False):
        _record_as(doctor, "read", object_id=target)
    with time_machine.travel(start - timedelta(hours=1), tick=False):
        _record_as(doctor, "update", object_id=target, result=audit.DENIED)
    admin = make_staff(Role.DISTRICT_ADMIN, None)
    http = http_as(app, admin)

    by_object = _items(http.get(EVENTS, query_string={"object_type": "resident", "object_id": str(target)}))
    assert [i["action"] for i in by_object] == ["update", "read"]
    # A timezone-aware bound in China Standard Time selects the same instant.
    since = clock.local(start - timedelta(days=1)).isoformat()
    recent = _items(http.get(EVENTS, query_string={"object_id": str(target), "since": since}))
    assert [i["action"] for i in recent] == ["update"]
    older = _items(http.get(EVENTS, query_string={"object_id": str(target), "until": since}))
    assert [i["action"] for i in older] == ["read"]
    denied = _items(http.get(EVENTS, query_string={"object_id": str(target), "result": "denied"}))
    assert [i["action"] for i in denied] == ["update"]


@pytest.mark.parametrize(
    "query", [{"resident_id": "x"}, {"result": "maybe"}, {"since": "2024-01-01T00:00:00"}, {"size": 1000}]
)
def test_bad_queries_are_422(app, query):
    admin = make_staff(Role.DISTRICT_ADMIN, None)
    response = http_as(app, admin).get(EVENTS, query_string=query)
    assert response.status_code == 422


def test_denied_cross_centre_reads_show_up_for_the_callers_centre(app, centre, other_centre: Institution):
    cashier = make_staff(Role.CASHIER, centre)
    stranger = make_staff(Role.DOCTOR, other_centre)
    assert http_as(app, cashier).get(f"/api/v1/staff/{stranger.id}").status_code == 404
    local_auditor = make_staff(Role.AUDITOR, centre)
    items = _items(http_as(app, local_auditor).get(EVENTS, query_string={"result": "denied"}))
    assert [(i["actor_id"], i["object_id"], i["purpose"]) for i in items] == [
        (str(cashier.id), str(stranger.id), "cross_centre_access")
    ]


def test_denied_cross_centre_reads_show_up_for_the_owning_centre_too(app, centre, other_centre: Institution):
    cashier = make_staff(Role.CASHIER, centre)
    stranger = make_staff(Role.DOCTOR, other_centre)
    assert http_as(app, cashier).get(f"/api/v1/staff/{stranger.id}").status_code == 404
    owners_auditor = make_staff(Role.AUDITOR, other_centre)
    items = _items(http_as(app, owners_auditor).get(EVENTS, query_string={"result": "denied"}))
    assert [(i["actor_id"], i["object_id"], i["purpose"]) for i in items] == [
        (str(cashier.id), str(stranger.id), "cross_centre_access")
    ]
    uninvolved = make_staff(Role.AUDITOR, make_centre())
    assert _items(http_as(app, uninvolved).get(EVENTS, query_string={"result": "denied"})) == []
