"""Demo health records for `flask seed-demo` (fictitious people, development only).

In the first demo centre: `<centre>.doctor1` holds both DATA-05 category permissions (严重精神障碍,
肺结核) and `<centre>.nurse` none, so the gate can be tried at once. The demo residents get:
张建国 a record, a 老年人生活自理能力评估表 and a 健康体检表; 李秀英 a record; 陈志强 a record and an
open 肺结核 case with its first home visit; 王芳 a record and an open 严重精神障碍 case with its
补充表 and one follow-up. Residents who already have a record are left alone. Does not commit.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from flask import g
from sqlalchemy import select

from app.accounts.models import StaffGrant, StaffUser
from app.accounts.services import grants_of
from app.core import clock
from app.core.auth import Principal
from app.core.db import db
from app.health_records.services import cases, forms, records
from app.institutions.models import Institution
from app.residents.models import Resident
from app.residents.services import find_by_id_number


def _day(days_ago: int) -> str:
    return (clock.today_local() - timedelta(days=days_ago)).isoformat()


def personal_info(**changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "filled_on": _day(30),
        "work_unit": "已退休（原深圳市某国有企业）",
        "contact_name": "张小明",
        "contact_phone": "13800138101",
        "residence_type": "1",
        "ethnicity": "01",
        "blood_type_abo": "1",
        "blood_type_rh": "2",
        "education": "6",
        "occupation": "8",
        "marital_status": "2",
        "payment_methods": ["1"],
        "drug_allergies": ["2"],
        "exposures": ["1"],
        "past_diseases": [{"disease_code": "2", "diagnosed_ym": "2012-05"}],
        "surgery_flag": "1",
        "trauma_flag": "1",
        "transfusion_flag": "1",
        "family_history_father": ["2"],
        "family_history_mother": ["1"],
        "family_history_siblings": ["1"],
        "family_history_children": ["1"],
        "hereditary_flag": "1",
        "disabilities": ["1"],
    }
    payload.update(changes)
    return payload


SELFCARE = {
    "assessed_at": _day(20),
    "meal_level": "1",
    "grooming_level": "2",
    "dressing_level": "1",
    "toileting_level": "1",
    "activity_level": "2",
}


def exam() -> dict[str, Any]:
    return {
        "exam_date": _day(10),
        "symptoms": ["3"],
        "temperature": 36.6,
        "pulse_rate": 78,
        "respiratory_rate": 18,
        "bp_left_sbp": 146,
        "bp_left_dbp": 88,
        "height_cm": 168.0,
        "weight_kg": 70.5,
        "waist_cm": 90.0,
        "elderly_health_self_rating": "2",
        "elderly_cognition_screen": "1",
        "elderly_affect_screen": "1",
        "exercise_frequency": "1",
        "exercise_minutes": 30,
        "exercise_years": 10,
        "exercise_type": "散步",
        "diet_habits": ["1"],
        "smoking_status": "1",
        "drinking_frequency": "1",
        "occ_hazard_flag": "1",
        "fundus": "1",
        "hb": 135,
        "wbc": 6.0,
        "plt": 220,
        "fpg_mmol": 5.8,
        "ecg": "1",
        "health_eval": "2",
        "abnormal_1": "血压控制欠佳",
        "guidance": ["1", "2"],
        "risk_control": ["3", "4"],
    }


def tb_first_visit(notice_day: int) -> dict[str, Any]:
    education = [
        "edu_record_card",
        "edu_method_storage",
        "edu_course",
        "edu_irregular_harm",
        "edu_adverse_reactions",
        "edu_sputum_recheck",
        "edu_travel_adherence",
        "edu_habits",
        "edu_contact_screening",
    ]
    return {
        "visit_date": _day(notice_day - 1),
        "visit_mode": "2",
        "patient_type": "1",
        "sputum": "1",
        "drug_resistance": "2",
        "symptoms": ["1"],
        "regimen": "2HRZE/4HR",
        "regimen_usage": "1",
        "drug_forms": ["1"],
        "supervisor": "2",
        "separate_room": "1",
        "ventilation": "1",
        "drug_pickup_place": "罗湖区慢性病防治院",
        "drug_pickup_date": _day(notice_day - 2),
        **{name: "1" for name in education},
        "assessing_doctor": "演示医生",
    }


def smd_supplement() -> dict[str, Any]:
    return {
        "guardian_name": "王大明",
        "guardian_relation": "父亲",
        "guardian_phone": "13800138103",
        "household_type": "1",
        "employment": "4",
        "consent": "1",
        "consent_signatory": "王大明",
        "consent_date": _day(40),
        "onset_date": "2015-03-01",
        "past_symptoms": ["1", "3"],
        "past_lockup": "1",
        "past_outpatient": "3",
        "first_antipsychotic_date": "2015-04-01",
        "past_admissions": 1,
        "diagnosis": "精神分裂症",
        "diagnosis_hospital": "深圳市康宁医院",
        "diagnosis_date": "2015-03-20",
        "last_treatment_effect": "2",
        "risk_behaviours": ["7"],
        "economic_status": "2",
        "filled_date": _day(40),
        "doctor": "演示医生",
    }


def smd_follow_up() -> dict[str, Any]:
    medication = {"drug_name": "利培酮片", "per_unit": "日", "times": 2, "dose_mg": 2}
    return {
        "visit_date": _day(25),
        "visit_mode": "2",
        "risk_level": "0",
        "current_symptoms": [],
        "insight": "1",
        "sleep": "1",
        "diet": "1",
        "sf_selfcare": "1",
        "sf_housework": "1",
        "sf_work": "9",
        "sf_learning": "2",
        "sf_social": "2",
        "risk_behaviours": ["7"],
        "lockup": "1",
        "hospitalization": "0",
        "lab_tests": "1",
        "med_adherence": "1",
        "adverse_reaction": "1",
        "treatment_effect": "2",
        "referral": "1",
        "medications": [medication],
        "med_guidance": [medication],
        "rehab_measures": ["1", "4"],
        "visit_class": "3",
        "visit_doctor": "演示医生",
    }


@contextmanager
def _acting_as(user: StaffUser) -> Iterator[None]:
    """Run the services as `user` (scope, permissions and audit see the demo doctor)."""
    previous = g.get("principal")
    g.principal = Principal(
        kind="staff",
        id=user.id,
        role=user.role,
        institution_id=user.institution_id,
        display_name=user.name,
        grants=grants_of(user.id),
    )
    try:
        yield
    finally:
        g.principal = previous


def seed_demo_health_records(centre: Institution, id_numbers: dict[str, str]) -> list[str]:
    """Records for the demo residents (`id_numbers`: name -> ID number); returns what was created."""
    prefix = centre.his_code.lower()
    doctor = db.session.execute(
        select(StaffUser).where(StaffUser.username == f"{prefix}.doctor1")
    ).scalar_one()
    for permission in ("health:smd", "health:tb"):
        if db.session.get(StaffGrant, (doctor.id, permission)) is None:
            db.session.add(StaffGrant(user_id=doctor.id, permission=permission, granted_by="seed-demo"))
    db.session.flush()
    created: list[str] = []
    with _acting_as(doctor):
        for name, id_number in id_numbers.items():
            resident: Resident | None = find_by_id_number(id_number)
            if resident is None or records.record_of(resident.id) is not None:
                continue
            changes: dict[str, Any] = {}
            if name == "李秀英":
                changes = {
                    "past_diseases": [{"disease_code": "3", "diagnosed_ym": "2016-09"}],
                    "contact_name": "李伟",
                }
            elif name in ("王芳", "陈志强"):
                changes = {"occupation": "3", "education": "3", "past_diseases": [{"disease_code": "1"}]}
            record = records.create_record_with_personal_info(
                resident.id, personal_info(**changes), responsible_doctor_id=doctor.id
            )
            created.append(record.record_no)
            if name == "张建国":
                forms.create_form(record.id, "elderly_selfcare", SELFCARE)
                forms.create_form(record.id, "health_exam", exam())
            elif name == "陈志强":
                cases.open_case(resident.id, "tb", notified_at=clock.now() - timedelta(days=15))
                forms.create_form(record.id, "tb_first_visit", tb_first_visit(15))
            elif name == "王芳":
                cases.open_case(resident.id, "smd", opened_on=clock.today_local() - timedelta(days=40))
                forms.create_form(record.id, "smd_supplement", smd_supplement())
                forms.create_form(record.id, "smd_follow_up", smd_follow_up())
    return created
