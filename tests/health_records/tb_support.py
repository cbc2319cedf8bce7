"""Shared set-up for the 肺结核 tests: a frozen clock, a centre with a TB-permitted doctor, a
resident with a record and an open case, and complete valid payloads of both forms.

    world = tb_world()                                  # case notified 2026-03-01 10:00 (Beijing)
    form = save(world, "tb_first_visit", first_visit(supervisor="2"))
    payload = follow_up(visit_date="2026-03-13", regimen=None)   # None drops a field
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import pytest
import time_machine

from app.accounts.models import StaffUser
from app.core.auth import Role
from app.core.clock import CHINA
from app.core.db import commit, db
from app.health_records.models import HealthCase, HealthForm, HealthRecord
from app.health_records.services import cases, records
from app.health_records.services import forms as form_services
from app.institutions.models import Institution
from app.residents.models import Resident
from tests.factories import as_principal, grant, make_centre, make_staff
from tests.factories_residents import make_resident
from tests.health_records.factories import with_overrides

NOW = datetime(2026, 7, 1, 12, 0, tzinfo=CHINA)  # the frozen "now" of every TB test
TODAY = NOW.date()
NOTICE = datetime(2026, 3, 1, 10, 0, tzinfo=CHINA)  # 接到上级专业机构通知


@pytest.fixture
def frozen() -> Iterator[time_machine.Traveller]:
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@dataclass
class World:
    centre: Institution
    doctor: StaffUser  # a doctor holding health:tb
    resident: Resident
    record: HealthRecord
    case: HealthCase


def make_case(
    centre: Institution,
    doctor: StaffUser,
    *,
    notified_at: datetime = NOTICE,
    treatment_started_on: date | None = None,
) -> tuple[Resident, HealthRecord, HealthCase]:
    resident = make_resident(centre, age=45)
    with as_principal(doctor):
        record = records.open_record(resident.id)
        case = cases.open_case(
            resident.id, "tb", notified_at=notified_at, treatment_started_on=treatment_started_on
        )
        commit()
    return resident, record, case


def tb_world(**case_options: Any) -> World:
    centre = make_centre()
    doctor = grant(make_staff(Role.DOCTOR, centre), "health:tb")
    resident, record, case = make_case(centre, doctor, **case_options)
    return World(centre, doctor, resident, record, case)


def first_visit(**overrides: Any) -> dict[str, Any]:
    """A complete valid 第一次入户随访记录表 (visit 2026-03-03, within 72 h, supervised by a doctor)."""
    payload: dict[str, Any] = {
        "visit_date": "2026-03-03",
        "visit_mode": "2",  # 家庭
        "patient_type": "1",  # 初治
        "sputum": "1",  # 阳性
        "drug_resistance": "2",  # 非耐药
        "symptoms": ["1", "2"],  # 咳嗽咳痰, 低热盗汗
        "regimen": "2HRZE/4HR",
        "regimen_usage": "1",  # 每日
        "drug_forms": ["1"],  # 固定剂量复合制剂
        "supervisor": "1",  # 医生
        "separate_room": "1",  # 有
        "ventilation": "1",  # 良好
        "smoking_now": 10,
        "smoking_target": 0,
        "drinking_now": 1.5,
        "drinking_target": 0,
        "drug_pickup_place": "罗湖区慢性病防治院",
        "drug_pickup_date": "2026-03-05",
        "edu_record_card": "1",
        "edu_method_storage": "1",
        "edu_course": "1",
        "edu_irregular_harm": "1",
        "edu_adverse_reactions": "2",
        "edu_sputum_recheck": "1",
        "edu_travel_adherence": "1",
        "edu_habits": "1",
        "edu_contact_screening": "1",
        "assessing_doctor": "王医生",
    }
    return with_overrides(payload, overrides)


def follow_up(**overrides: Any) -> dict[str, Any]:
    """A complete valid 随访服务记录表 visit (2026-04-03, 第 2 月, doctor-supervised, no stop block)."""
    payload: dict[str, Any] = {
        "visit_date": "2026-04-03",
        "treatment_month": 2,
        "supervisor": "1",
        "visit_mode": "2",  # 家庭
        "symptoms": ["0"],  # 没有症状
        "smoking_now": 5,
        "smoking_target": 0,
        "regimen": "2HRZE/4HR",
        "regimen_usage": "1",
        "drug_forms": ["1"],
        "missed_doses": 0,
        "adverse_reaction": "1",  # 无
        "complication": "1",  # 无
        "handling_opinion": "继续按方案治疗",
        "visit_doctor": "王医生",
    }
    return with_overrides(payload, overrides)


STOP_BLOCK: dict[str, Any] = {
    "stop_date": "2026-06-28",
    "stop_reason": "1",  # 完成疗程
    "should_visit": 8,
    "actual_visit": 8,
    "should_dose": 180,
    "actual_dose": 175,
    "closing_doctor": "李医生",
}


def save(
    world: World, form_type: str, payload: dict[str, Any], *, user: StaffUser | None = None
) -> HealthForm:
    """Create a form as the world's doctor (or `user`) and commit."""
    with as_principal(user or world.doctor):
        form = form_services.create_form(world.record.id, form_type, payload)
        commit()
    return form


def revise(world: World, form: HealthForm, payload: dict[str, Any]) -> HealthForm:
    with as_principal(world.doctor):
        revised = form_services.revise_form(form.id, payload, base_version=form.version)
        commit()
    return revised


def reload_case(case_id: uuid.UUID) -> HealthCase:
    db.session.expire_all()
    found = db.session.get(HealthCase, case_id)
    assert found is not None
    return found


def derived_of(form: HealthForm) -> dict[str, Any]:
    return form_services.current_version(form).derived
