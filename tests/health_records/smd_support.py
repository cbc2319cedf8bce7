"""Shared builders for the 严重精神障碍 tests: a world with an open smd case and valid payloads."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pytest

from app.accounts.models import StaffUser
from app.core import clock
from app.core.auth import Role
from app.core.db import commit
from app.health_records.models import HealthCase, HealthForm, HealthRecord
from app.health_records.services import cases, forms, records
from app.health_records.spec import FormInvalid
from app.institutions.models import Institution
from app.residents.models import Resident
from tests.factories import as_principal, grant, make_centre, make_staff
from tests.factories_residents import make_resident
from tests.health_records.factories import with_overrides


@dataclass
class World:
    centre: Institution
    doctor: StaffUser  # holds health:smd in the responsible centre
    resident: Resident
    record: HealthRecord
    case: HealthCase


def make_world(*, opened_on: date | None = None) -> World:
    centre = make_centre()
    doctor = grant(make_staff(Role.DOCTOR, centre), "health:smd")
    resident = make_resident(centre, birth_date=date(1985, 4, 10))
    with as_principal(doctor):
        record = records.open_record(resident.id)
        case = cases.open_case(resident.id, "smd", opened_on=opened_on)
        commit()
    return World(centre, doctor, resident, record, case)


def days_ago(n: int) -> str:
    return (clock.today_local() - timedelta(days=n)).isoformat()


def supplement(**overrides: Any) -> dict[str, Any]:
    """A complete valid 个人信息补充表; `name=None` drops a field."""
    payload: dict[str, Any] = {
        "guardian_name": "李监护",
        "guardian_relation": "母亲",
        "guardian_address": "深圳市罗湖区桂园街道老围社区1号",
        "guardian_phone": "13800138001",
        "committee_contact": "陈主任",
        "committee_phone": "0755-25550000",
        "household_type": "1",  # 城镇
        "employment": "4",  # 下岗或无业
        "consent": "1",  # 同意参加管理
        "consent_signatory": "李监护",
        "consent_date": days_ago(0),
        "onset_date": "2010-05-01",
        "past_symptoms": ["1", "3"],  # 幻觉, 猜疑
        "past_lockup": "1",  # 无关锁
        "past_outpatient": "2",  # 间断门诊治疗
        "first_antipsychotic_date": "2010-06-15",
        "past_admissions": 2,
        "diagnosis": "精神分裂症",
        "diagnosis_hospital": "深圳市康宁医院",
        "diagnosis_date": "2010-06-10",
        "last_treatment_effect": "2",  # 好转
        "risk_behaviours": ["1", "5"],  # 轻度滋事, 自伤
        "mild_trouble_n": 2,
        "self_injury_n": 1,
        "economic_status": "2",  # 非贫困
        "specialist_opinion": "维持利培酮治疗",
        "filled_date": days_ago(0),
        "doctor": "王医生",
    }
    return with_overrides(payload, overrides)


MEDICATION = {"drug_name": "利培酮片", "per_unit": "日", "times": 2, "dose_mg": 2}


def visit(**overrides: Any) -> dict[str, Any]:
    """A complete valid 随访服务记录表 of a stable patient (分类 3 稳定) seen today."""
    payload: dict[str, Any] = {
        "visit_date": days_ago(0),
        "visit_mode": "1",  # 门诊
        "risk_level": "0",
        "current_symptoms": [],
        "insight": "1",  # 自知力完全
        "sleep": "1",
        "diet": "1",
        "sf_selfcare": "1",
        "sf_housework": "2",
        "sf_work": "9",  # 此项不适用
        "sf_learning": "2",
        "sf_social": "1",
        "risk_behaviours": ["7"],  # 无
        "lockup": "1",
        "hospitalization": "0",
        "lab_tests": "1",
        "med_adherence": "1",
        "adverse_reaction": "1",
        "treatment_effect": "2",
        "referral": "1",
        "medications": [dict(MEDICATION)],
        "med_guidance": [dict(MEDICATION)],
        "rehab_measures": ["1", "4"],
        "visit_class": "3",
        "visit_doctor": "王医生",
    }
    return with_overrides(payload, overrides)


def lost_visit(**overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"visit_date": days_ago(0), "visit_mode": "3", "lost_reason": "1"}
    payload.update(overrides)
    return payload


def fill(world: World, form_type: str, payload: dict[str, Any]) -> HealthForm:
    with as_principal(world.doctor):
        form = forms.create_form(world.record.id, form_type, payload)
        commit()
    return form


def refusal(world: World, form_type: str, payload: dict[str, Any]) -> dict[str, str]:
    """The field errors of a refused form (and nothing saved)."""
    with as_principal(world.doctor), pytest.raises(FormInvalid) as caught:
        forms.create_form(world.record.id, form_type, payload)
    assert caught.value.code == "form_invalid"
    return caught.value.errors


WorldFactory = Callable[..., World]
