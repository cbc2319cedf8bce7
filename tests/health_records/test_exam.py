"""健康体检表 through the services and the API: derived values (BMI, 空腹血糖, age, the elderly
self-care level from the 老年人生活自理能力评估表), refusals that need the database, and the print.

Field-by-field rules are in test_exam_rules.py (they share `full_exam`)."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from flask import Flask

from app.accounts.models import StaffUser
from app.core import clock
from app.core.auth import Role
from app.core.db import commit
from app.health_records.forms import load_forms
from app.health_records.models import HealthForm, HealthRecord
from app.health_records.services import forms, records
from app.health_records.spec import FormInvalid
from app.residents.models import Resident
from tests.factories import as_principal, make_centre, make_staff, token_for
from tests.factories_residents import make_resident

# Every test runs on a fixed day (mid-year), so ages and relative dates never straddle a new year.
FROZEN_AT = datetime(2026, 6, 15, 4, 0, tzinfo=UTC)  # 12:00 in Shenzhen


@pytest.fixture(autouse=True)
def _fixed_day() -> Iterator[None]:
    with time_machine.travel(FROZEN_AT, tick=False):
        yield


def days_ago(n: int) -> str:
    return (clock.today_local() - timedelta(days=n)).isoformat()


def months_ago(n: int) -> str:
    today = clock.today_local()
    index = today.year * 12 + today.month - 1 - n
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def full_exam(**overrides: Any) -> dict[str, Any]:
    """A complete, valid 健康体检表 of a woman aged 65+ (every section filled)."""
    payload: dict[str, Any] = {
        "exam_date": days_ago(10),
        "responsible_doctor": "王医生",
        # 2.1 症状
        "symptoms": ["3", "25"],
        "symptoms_other": "夜间盗汗",
        # 2.2 一般状况
        "temperature": 36.5,
        "pulse_rate": 76,
        "respiratory_rate": 18,
        "bp_left_sbp": 138,
        "bp_left_dbp": 86,
        "bp_right_sbp": 136,
        "bp_right_dbp": 84,
        "height_cm": 160.0,
        "weight_kg": 64.0,
        "waist_cm": 86.5,
        "elderly_health_self_rating": "2",
        "elderly_cognition_screen": "2",
        "mmse_total": 24,
        "elderly_affect_screen": "1",
        # 2.3 生活方式
        "exercise_frequency": "2",
        "exercise_minutes": 40,
        "exercise_years": 5,
        "exercise_type": "快走",
        "diet_habits": ["1", "4"],
        "smoking_status": "2",
        "cigarettes_per_day": 10,
        "smoking_start_age": 20,
        "smoking_quit_age": 35,
        "drinking_frequency": "2",
        "alcohol_liang_per_day": 1.5,
        "alcohol_quit": "1",
        "drinking_start_age": 25,
        "drunk_past_year": "2",
        "alcohol_types": ["2", "5"],
        "alcohol_type_other": "米酒",
        "occ_hazard_flag": "2",
        "occ_job_type": "纺织工",
        "occ_years": 20,
        "occ_dust": "棉尘",
        "occ_dust_protection": "2",
        "occ_dust_protection_desc": "防尘口罩",
        "occ_physical": "噪声",
        "occ_physical_protection": "1",
        # 2.4 脏器功能
        "lips": "1",
        "dentition": ["2", "4"],
        "missing_teeth_ul": "6 7",
        "denture_teeth_lr": "5 6 7",
        "pharynx": "1",
        "vision_left": 4.8,
        "vision_right": 4.9,
        "vision_corrected_left": 5.0,
        "hearing": "1",
        "motor_function": "1",
        # 2.5 查体
        "fundus": "2",
        "fundus_desc": "视网膜动脉硬化",
        "skin": "1",
        "sclera": "1",
        "lymph_nodes": "1",
        "barrel_chest": "1",
        "breath_sounds": "1",
        "rales": "1",
        "heart_rate": 76,
        "heart_rhythm": "1",
        "heart_murmur": "1",
        "abd_tenderness": "1",
        "abd_mass": "1",
        "hepatomegaly": "1",
        "splenomegaly": "1",
        "shifting_dullness": "1",
        "leg_edema": "1",
        "dorsalis_pedis": "2",
        "dre": "1",
        "breast": ["1"],
        "gyn_vulva": "1",
        "gyn_vagina": "1",
        "gyn_cervix": "1",
        "gyn_uterus": "1",
        "gyn_adnexa": "2",
        "gyn_adnexa_desc": "左侧附件区压痛",
        "exam_other": "无",
        # 2.6 辅助检查
        "hb": 128,
        "wbc": 6.2,
        "plt": 210,
        "urine_protein": "－",
        "urine_glucose": "＋",
        "urine_ketone": "-",
        "urine_occult_blood": "10 cells/μL",
        "fpg_mmol": 6.1,
        "ecg": "1",
        "urine_malb": 2.5,
        "fecal_occult_blood": "1",
        "hba1c": 6.3,
        "hbsag": "1",
        "alt": 25,
        "ast": 22,
        "alb": 42.5,
        "tbil": 12.3,
        "dbil": 3.4,
        "scr": 78,
        "bun": 5.6,
        "k": 4.1,
        "na": 140,
        "tc": 5.2,
        "tg": 1.6,
        "ldl_c": 3.1,
        "hdl_c": 1.3,
        "chest_xray": "1",
        "ultrasound_abdomen": "2",
        "ultrasound_abdomen_desc": "脂肪肝",
        "ultrasound_other_site": "甲状腺",
        "ultrasound_other": "1",
        "pap_smear": "1",
        # 2.7 现存主要健康问题
        "cerebrovascular": ["1"],
        "renal": ["1"],
        "cardiac": ["1"],
        "vascular": ["1"],
        "eye": ["4"],
        "neuro": "1",
        "other_system": "1",
        # 2.8–2.10
        "hospitalizations": [
            {
                "admitted": months_ago(4),
                "discharged": months_ago(3),
                "reason": "白内障手术",
                "institution": "深圳市罗湖区人民医院",
                "case_no": "A1234",
            }
        ],
        "medications": [
            {
                "drug_name": "苯磺酸氨氯地平片（络活喜）",
                "route": "口服",
                "dosage": "每日一次，每次5mg",
                "duration": "2年",
                "adherence": "1",
            }
        ],
        "vaccinations": [{"vaccine_name": "流感疫苗", "date": days_ago(60), "org": "桂园社区健康服务中心"}],
        # 2.11–2.12
        "health_eval": "2",
        "abnormal_1": "血压偏高",
        "abnormal_2": "认知功能粗筛阳性",
        "guidance": ["1", "2"],
        "risk_control": ["3", "4", "5", "6"],
        "weight_target_kg": 3,
        "vaccine_advice": "肺炎球菌疫苗",
    }
    payload.update(overrides)
    return {k: v for k, v in payload.items() if v is not None}


SELFCARE_LEVELS = {  # total 0+1+3+1+1 = 6 → 2 轻度依赖
    "meal_level": "1",
    "grooming_level": "2",
    "dressing_level": "3",
    "toileting_level": "2",
    "activity_level": "2",
}


class World:
    def __init__(self, *, age: int = 70, sex: str = "female", groups: set[str] | None = None) -> None:
        self.centre = make_centre()
        self.doctor: StaffUser = make_staff(Role.DOCTOR, self.centre)
        self.resident: Resident = make_resident(
            self.centre, age=age, sex=sex, population_groups=groups or set()
        )
        with as_principal(self.doctor):
            self.record: HealthRecord = records.open_record(self.resident.id)
            commit()

    def selfcare(self, assessed_at: str, **levels: str) -> HealthForm:
        with as_principal(self.doctor):
            form = forms.create_form(
                self.record.id, "elderly_selfcare", {"assessed_at": assessed_at, **SELFCARE_LEVELS, **levels}
            )
            commit()
        return form

    def exam(self, payload: dict[str, Any]) -> tuple[HealthForm, dict[str, Any]]:
        with as_principal(self.doctor):
            form = forms.create_form(self.record.id, "health_exam", payload)
            derived = forms.current_version(form).derived
            commit()
        return form, derived

    def refused(self, payload: dict[str, Any]) -> dict[str, str]:
        with as_principal(self.doctor), pytest.raises(FormInvalid) as caught:
            forms.create_form(self.record.id, "health_exam", payload)
        return dict(caught.value.errors)


def test_registered_as_the_health_exam() -> None:
    definition = load_forms()["health_exam"]
    assert definition.title == "健康体检表"
    assert definition.service_type == "health_exam"
    assert definition.date_field == "exam_date"
    assert definition.render_pdf is not None


def test_full_exam_over_http_derives_bmi_glucose_age_and_selfcare(app: Flask) -> None:
    world = World(age=70)
    assessment = world.selfcare(days_ago(30))
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token_for(world.doctor)}", "Idempotency-Key": "exam-http-1"}
    r = client.post(
        f"/api/v1/health-records/{world.record.id}/forms",
        json={"form_type": "health_exam", "data": full_exam()},
        headers=headers,
    )
    assert r.status_code == 201, r.get_json()
    got = r.get_json()
    derived = got["derived"]
    assert derived["bmi"] == 25.0  # 64 / 1.60²
    assert (
        derived["fpg_mmol"] == 6.1
        and derived["fpg_mgdl"] == 109.8
        and derived["fpg_entered_unit"] == "mmol/L"
    )
    assert derived["age_at_exam"] == 70
    assert derived["elderly_selfcare_level"] == "2"
    assert derived["selfcare_total"] == 6
    assert derived["selfcare_form_id"] == str(assessment.id)
    assert derived["selfcare_assessed_on"] == days_ago(30)
    assert got["result_code"] == "2" and got["result_label"] == "有异常"
    assert got["occurred_on"] == days_ago(10)
    # Qualitative urine symbols are stored as codes whatever width was typed.
    assert got["data"]["urine_protein"] == "-" and got["data"]["urine_glucose"] == "+"
    assert got["data"]["urine_occult_blood"] == "10 cells/μL"


def test_typed_bmi_is_refused_as_unknown_field(app: Flask) -> None:
    world = World(age=40)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token_for(world.doctor)}", "Idempotency-Key": "exam-http-bmi"}
    r = client.post(
        f"/api/v1/health-records/{world.record.id}/forms",
        json={"form_type": "health_exam", "data": full_exam(bmi=25.0)},
        headers=headers,
    )
    assert r.status_code == 422
    body = r.get_json()
    assert body["code"] == "form_invalid"
    assert body["errors"] == {"bmi": "未知字段“bmi”，请按表单填写"}


def test_a_typed_selfcare_level_is_refused_too() -> None:
    world = World(age=70)
    world.selfcare(days_ago(5))
    errors = world.refused(full_exam(elderly_selfcare_level="1"))
    assert errors == {"elderly_selfcare_level": "未知字段“elderly_selfcare_level”，请按表单填写"}


def test_bmi_follows_a_revision() -> None:
    world = World(age=50)
    form, derived = world.exam(full_exam())
    assert derived["bmi"] == 25.0
    with as_principal(world.doctor):
        revised = forms.revise_form(form.id, full_exam(weight_kg=58.9, height_cm=171.5), base_version=1)
        assert forms.current_version(revised).derived["bmi"] == 20.0  # 58.9 / 1.715² = 20.03
        commit()


def test_glucose_entered_in_mg_per_dl_is_converted_to_mmol() -> None:
    world = World(age=50)
    _, derived = world.exam(full_exam(fpg_mmol=None, fpg_mgdl=110))
    assert (
        derived["fpg_mgdl"] == 110 and derived["fpg_mmol"] == 6.11 and derived["fpg_entered_unit"] == "mg/dL"
    )
    _, derived = world.exam(full_exam(fpg_mmol=None, fpg_mgdl=None))
    assert "fpg_mmol" not in derived and "fpg_mgdl" not in derived


# --- 老年人生活自理能力自我评估: derived from the assessment ---------------------------------


def test_selfcare_level_from_the_latest_assessment_within_a_year() -> None:
    world = World(age=72)
    world.selfcare(days_ago(200))  # total 6 → 轻度依赖
    latest = world.selfcare(days_ago(40), activity_level="4", toileting_level="4")  # 0+1+3+10+10 = 24
    world.selfcare(days_ago(1))  # after the exam date: not used
    _, derived = world.exam(full_exam())
    assert derived["selfcare_form_id"] == str(latest.id)
    assert derived["selfcare_total"] == 24
    assert derived["elderly_selfcare_level"] == "4"
    assert derived["elderly_selfcare_label"] == "不能自理（≥19分）"


def test_selfcare_level_from_an_explicit_assessment() -> None:
    world = World(age=72)
    older = world.selfcare(days_ago(200), grooming_level="4")  # 0+7+3+1+1 = 12 → 中度依赖
    world.selfcare(days_ago(40))
    _, derived = world.exam(full_exam(selfcare_form_id=str(older.id)))
    assert derived["selfcare_form_id"] == str(older.id)
    assert derived["selfcare_total"] == 12 and derived["elderly_selfcare_level"] == "3"


def test_elderly_without_assessment_is_refused() -> None:
    world = World(age=66)
    world.selfcare(days_ago(10 + 366))  # more than a year before the exam: does not count
    errors = world.refused(full_exam())
    assert errors == {
        "elderly_selfcare_level": "老年人生活自理能力自我评估：65岁及以上老年人须先完成生活自理能力评估"
        "（老年人生活自理能力评估表）"
    }


def test_an_assessment_of_another_resident_is_refused() -> None:
    world = World(age=70)
    other = World(age=80)
    foreign = other.selfcare(days_ago(20))
    world.selfcare(days_ago(20))
    errors = world.refused(full_exam(selfcare_form_id=str(foreign.id)))
    assert errors == {"selfcare_form_id": "老年人生活自理能力评估表：所选评估表不存在、已作废或不属于该居民"}


def test_voided_missing_late_or_stale_explicit_assessments_are_refused() -> None:
    world = World(age=70)
    voided = world.selfcare(days_ago(20))
    with as_principal(world.doctor):
        forms.void_form(voided.id, reason="填错居民")
        commit()
    message = "老年人生活自理能力评估表：所选评估表不存在、已作废或不属于该居民"
    assert world.refused(full_exam(selfcare_form_id=str(voided.id))) == {"selfcare_form_id": message}
    assert world.refused(full_exam(selfcare_form_id=str(uuid.uuid4()))) == {"selfcare_form_id": message}
    later = world.selfcare(days_ago(2))
    assert world.refused(full_exam(selfcare_form_id=str(later.id))) == {
        "selfcare_form_id": "老年人生活自理能力评估表：所选评估晚于体检日期"
    }
    stale = world.selfcare(days_ago(500))
    assert world.refused(full_exam(selfcare_form_id=str(stale.id))) == {
        "selfcare_form_id": "老年人生活自理能力评估表：所选评估早于体检日期前一年，请重新评估"
    }
    assert world.refused(full_exam(selfcare_form_id="not-a-uuid")) == {
        "selfcare_form_id": "老年人生活自理能力评估表：须为表单编号（UUID）"
    }


def test_under_65_the_elderly_items_are_optional() -> None:
    world = World(age=50)
    _, derived = world.exam(
        full_exam(
            elderly_health_self_rating=None,
            elderly_cognition_screen=None,
            mmse_total=None,
            elderly_affect_screen=None,
        )
    )
    assert derived["age_at_exam"] == 50
    assert "elderly_selfcare_level" not in derived


def test_turning_65_on_the_exam_date_counts() -> None:
    exam_day = clock.today_local() - timedelta(days=10)
    if (exam_day.month, exam_day.day) == (2, 29):
        exam_day -= timedelta(days=1)
    centre = make_centre()
    doctor = make_staff(Role.DOCTOR, centre)
    resident = make_resident(centre, birth_date=exam_day.replace(year=exam_day.year - 65), sex="female")
    with as_principal(doctor):
        record = records.open_record(resident.id)
        with pytest.raises(FormInvalid) as caught:
            forms.create_form(record.id, "health_exam", full_exam(exam_date=exam_day.isoformat()))
        assert set(caught.value.errors) == {"elderly_selfcare_level"}
        day_before = (exam_day - timedelta(days=1)).isoformat()
        form = forms.create_form(record.id, "health_exam", full_exam(exam_date=day_before))
        assert forms.current_version(form).derived["age_at_exam"] == 64


# --- rules that need the resident ---------------------------------------------------------------


def test_gynaecology_is_refused_for_a_male_resident() -> None:
    world = World(age=50, sex="male")
    errors = world.refused(full_exam())
    assert errors["gyn_vulva"] == "妇科·外阴：男性居民不做妇科检查，请勿填写"
    assert errors["gyn_adnexa"] == "妇科·附件：男性居民不做妇科检查，请勿填写"
    assert errors["pap_smear"] == "宫颈涂片：男性居民不做宫颈涂片检查，请勿填写"
    assert set(errors) == {"gyn_vulva", "gyn_vagina", "gyn_cervix", "gyn_uterus", "gyn_adnexa", "pap_smear"}
    without = {k: v for k, v in full_exam().items() if not k.startswith("gyn_") and k != "pap_smear"}
    _, derived = world.exam(without)  # 乳腺 stays: it applies to both sexes
    assert derived["age_at_exam"] == 50


def test_diabetes_patients_need_the_dorsalis_pedis_pulse() -> None:
    world = World(age=50, groups={"diabetes_t2"})
    assert world.refused(full_exam(dorsalis_pedis=None)) == {
        "dorsalis_pedis": "足背动脉搏动：2型糖尿病患者必须检查此项"
    }
    world.exam(full_exam())
    other = World(age=50)
    other.exam(full_exam(dorsalis_pedis=None))


def test_smoking_quit_age_cannot_exceed_the_age_at_the_exam() -> None:
    world = World(age=50)
    errors = world.refused(full_exam(smoking_quit_age=55))
    assert errors == {"smoking_quit_age": "戒烟年龄：不能大于体检时年龄（50岁），请核对"}


# --- print ------------------------------------------------------------------------------------


def _pdf_text(data: bytes) -> str:
    done = subprocess.run(["pdftotext", "-layout", "-", "-"], input=data, capture_output=True, check=True)
    return done.stdout.decode("utf-8")


def test_print_shows_the_national_layout(app: Flask) -> None:
    world = World(age=70)
    world.selfcare(days_ago(30))
    form, _ = world.exam(full_exam())
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token_for(world.doctor)}"}
    r = client.get(f"/api/v1/health-forms/{form.id}/print.pdf", headers=headers)
    assert r.status_code == 200 and r.data[:4] == b"%PDF"
    text = _pdf_text(r.data)
    for expected in (
        "健康体检表",
        world.record.short_no,
        "症状",
        "一般状况",
        "生活方式",
        "脏器功能",
        "查体",
        "眼底",
        "辅助检查",
        "血尿素",
        "g/L",
        "×10^9/L",  # the embedded font has no superscript nine
        "职业病危害因素接触史",
        "现存主要健康问题",
        "住院治疗情况",
        "主要用药情况",
        "非免疫规划预防接种史",
        "健康评价",
        "健康指导",
        "危险因素控制",
        "填表说明",
        "25.0 kg/m²",  # BMI, computed
        "109.8 mg/dL",  # 空腹血糖 derived
        "138/86 mmHg",
        "视网膜动脉硬化",
        "苯磺酸氨氯地平片",
        "棉尘",
        "甲状腺",
    ):
        assert expected in text, expected
    # 眼底 is printed under 查体 (3rd edition): after 脏器功能's last row, before 辅助检查's first.
    assert text.index("运动功能") < text.index("眼底") < text.index("皮肤") < text.index("血红蛋白")
    assert "血尿素氮" not in text
