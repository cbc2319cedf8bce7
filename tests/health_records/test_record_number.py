"""建档 and the 17-digit 居民健康档案编号: 区划 440303 + 街道 + 居委会 + 5-digit sequence per 居委会.

(Concurrent creation is covered by the counter's conditional UPDATE; the PostgreSQL thread test
is out of scope here.)
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from app.contracts.services.core import has_health_record
from app.core.auth import Role
from app.core.db import commit, db
from app.health_records.models import HealthForm, HealthRecord, RecordNumberCounter
from app.health_records.services import records
from app.institutions.models import Institution
from app.residents.models import Resident
from app.residents.services.transfers import transfer_resident
from tests.factories import as_principal, make_centre, make_staff, token_for
from tests.factories_residents import make_resident
from tests.health_records.factories import make_record, personal_info_payload

URL = "/api/v1/health-records"


def _headers(user: Any, key: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_for(user)}", "Idempotency-Key": key or f"hr-{uuid.uuid4().hex}"}


def _area(resident: Resident) -> str:
    return f"440303{resident.street.code}{resident.community.code}"


def _post(app: Flask, user: Any, resident: Resident, **extra: Any) -> Any:
    body = {"resident_id": str(resident.id), "personal_info": personal_info_payload(), **extra}
    return app.test_client().post(URL, json=body, headers=_headers(user))


def test_create_record_numbers_it_and_saves_version_one(app: Flask) -> None:
    centre = make_centre(street="桂园", community="老围")
    nurse = make_staff(Role.NURSE, centre)
    doctor = make_staff(Role.DOCTOR, centre)
    resident = make_resident(centre)
    r = _post(app, nurse, resident, responsible_doctor_id=str(doctor.id), card_remarks="  行动不便  ")
    assert r.status_code == 201, r.get_json()
    got = r.get_json()
    assert resident.street.code == "001"  # 桂园
    assert got["record_no"] == f"440303001{resident.community.code}00001"
    assert len(got["record_no"]) == 17 and got["record_no"].isdigit()
    assert got["short_no"] == f"{resident.community.code}-00001"
    assert got["responsible_doctor_id"] == str(doctor.id)
    assert got["responsible_doctor_name"] == doctor.name
    assert got["card_remarks"] == "行动不便"
    assert got["created_by_name"] == nurse.name
    assert got["resident_name"] != resident.name  # masked (DATA-02)
    [form] = got["forms"]
    assert (form["form_type"], form["title"], form["version"]) == ("personal_info", "个人基本信息表", 1)
    saved = db.session.execute(select(HealthForm).where(HealthForm.id == uuid.UUID(form["id"]))).scalar_one()
    assert saved.singleton_key == f"{got['id']}:personal_info"


def test_second_record_for_the_same_resident_is_409(app: Flask) -> None:
    centre = make_centre()
    nurse = make_staff(Role.NURSE, centre)
    resident = make_resident(centre)
    assert _post(app, nurse, resident).status_code == 201
    again = _post(app, nurse, resident)
    assert again.status_code == 409
    assert again.get_json()["code"] == "health_record_exists"
    assert (
        db.session.execute(
            select(RecordNumberCounter.last_seq).where(RecordNumberCounter.area_code == _area(resident))
        ).scalar_one()
        == 1
    )


def test_numbers_increase_per_community_and_are_independent(app: Flask) -> None:
    old = make_centre(street="桂园", community="老围")
    new = make_centre(street="桂园", community="湖贝")
    other_street = make_centre(street="东门", community="老围")
    doctor = make_staff(Role.DOCTOR, old)
    new_doctor = make_staff(Role.DOCTOR, new)
    east_doctor = make_staff(Role.DOCTOR, other_street)
    first, second = make_record(make_resident(old), doctor), make_record(make_resident(old), doctor)
    elsewhere = make_record(make_resident(new), new_doctor)
    east = make_record(make_resident(other_street), east_doctor)
    third = make_record(make_resident(old), doctor)
    assert [r.record_no[-5:] for r in (first, second, third)] == ["00001", "00002", "00003"]
    assert len({r.record_no[:12] for r in (first, second, third)}) == 1
    assert elsewhere.record_no[-5:] == "00001" and east.record_no[-5:] == "00001"
    assert elsewhere.record_no[:9] == first.record_no[:9] == "440303001"  # same street, other committee
    assert elsewhere.record_no[9:12] != first.record_no[9:12]
    assert east.record_no[:9] == "440303003"  # 东门
    assert len({first.record_no, elsewhere.record_no, east.record_no}) == 3


def test_counter_exhaustion_is_409_and_creates_nothing(app: Flask) -> None:
    centre = make_centre()
    nurse = make_staff(Role.NURSE, centre)
    resident = make_resident(centre)
    db.session.add(RecordNumberCounter(area_code=_area(resident), last_seq=records.MAX_SEQUENCE))
    commit()
    r = _post(app, nurse, resident)
    assert r.status_code == 409
    assert r.get_json()["code"] == "record_numbers_exhausted"
    assert records.record_of(resident.id) is None


def test_a_refused_form_consumes_no_number(app: Flask) -> None:
    centre = make_centre()
    nurse = make_staff(Role.NURSE, centre)
    resident = make_resident(centre)
    bad = {"resident_id": str(resident.id), "personal_info": personal_info_payload(education="11")}
    r = app.test_client().post(URL, json=bad, headers=_headers(nurse))
    assert r.status_code == 422
    assert r.get_json()["code"] == "form_invalid"
    assert "education" in r.get_json()["errors"]
    assert records.record_of(resident.id) is None
    ok = _post(app, nurse, resident)
    assert ok.status_code == 201
    assert ok.get_json()["record_no"].endswith("00001")


def test_auth_roles_and_validation(app: Flask) -> None:
    centre = make_centre()
    resident = make_resident(centre)
    client = app.test_client()
    body = {"resident_id": str(resident.id), "personal_info": personal_info_payload()}
    assert client.post(URL, json=body, headers={"Idempotency-Key": "no-token-123"}).status_code == 401
    cashier = make_staff(Role.CASHIER, centre)
    assert client.post(URL, json=body, headers=_headers(cashier)).status_code == 403
    admin = make_staff(Role.CENTRE_ADMIN, centre)
    assert client.post(URL, json=body, headers=_headers(admin)).status_code == 403
    nurse = make_staff(Role.NURSE, centre)
    missing = client.post(URL, json={"resident_id": str(resident.id)}, headers=_headers(nurse))
    assert missing.status_code == 422
    # A responsible doctor from another centre is refused.
    stranger = make_staff(Role.DOCTOR, make_centre())
    r = _post(app, nurse, resident, responsible_doctor_id=str(stranger.id))
    assert r.status_code == 422 and r.get_json()["code"] == "invalid_responsible_doctor"
    # Another centre's resident does not exist for this nurse.
    foreign = make_resident(make_centre())
    assert _post(app, nurse, foreign).status_code == 404


def test_contract_check_sees_the_record(app: Flask) -> None:
    """CONTRACT_REQUIRES_HEALTH_RECORD: the contracts rule asks `has_health_record` (hook in records)."""
    centre = make_centre()
    doctor = make_staff(Role.DOCTOR, centre)
    resident = make_resident(centre)
    assert has_health_record(resident) is False
    make_record(resident, doctor)
    assert has_health_record(resident) is True


def test_transfer_moves_the_record_and_general_forms(app: Flask) -> None:
    centre, target = make_centre(), make_centre()
    admin = make_staff(Role.CENTRE_ADMIN, centre)
    doctor = make_staff(Role.DOCTOR, centre)
    resident = make_resident(centre)
    record = make_record(resident, doctor)
    number = record.record_no
    with as_principal(admin) as actor:
        transfer_resident(actor, resident.id, to_institution_id=target.id, reason="居住地变更")
        commit()
    db.session.expire_all()
    moved = db.session.get(HealthRecord, record.id)
    assert moved is not None
    assert moved.institution_id == target.id
    assert moved.created_institution_id == centre.id  # 建档机构 stays
    assert moved.record_no == number  # the number never changes
    forms = db.session.execute(select(HealthForm).where(HealthForm.record_id == record.id)).scalars().all()
    assert [f.institution_id for f in forms] == [target.id]
    assert db.session.get(Institution, target.id) is not None


@pytest.mark.parametrize("role", [Role.DOCTOR, Role.PUBLIC_HEALTH, Role.TEAM_LEADER])
def test_every_clinical_role_may_create(app: Flask, role: Role) -> None:
    centre = make_centre()
    user = make_staff(role, centre)
    assert _post(app, user, make_resident(centre)).status_code == 201
