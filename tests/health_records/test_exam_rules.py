"""健康体检表 field rules (spec §2.1–2.12), checked on the form's spec: each refusal names the exact
field path and a Chinese message containing the field's title."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from flask import Flask

from app.core import clock
from app.health_records.forms.exam import SPEC
from app.health_records.spec import FormContext, FormInvalid
from tests.factories import make_centre, make_staff, token_for
from tests.health_records.test_exam import _fixed_day, days_ago, full_exam, months_ago  # noqa: F401 (fixture)


def context(age: int = 70, sex: str = "female") -> FormContext:
    today = clock.today_local()
    return FormContext(today=today, birth_date=date(today.year - age, 1, 1), sex=sex)


def errors_of(payload: dict[str, Any], ctx: FormContext | None = None) -> dict[str, str]:
    with pytest.raises(FormInvalid) as caught:
        SPEC.validate(payload, ctx or context())
    return dict(caught.value.errors)


def test_the_full_exam_is_valid() -> None:
    clean = SPEC.validate(full_exam(), context())
    assert clean["symptoms"] == ["3", "25"]
    assert clean["urine_protein"] == "-" and clean["urine_glucose"] == "+"


def test_a_minimal_exam_of_an_adult_is_valid() -> None:
    clean = SPEC.validate({"exam_date": days_ago(1), "symptoms": ["1"], "health_eval": "1"}, context(age=40))
    assert clean == {"exam_date": days_ago(1), "symptoms": ["1"], "health_eval": "1"}


def test_skipped_lifestyle_blocks_are_valid_alone() -> None:
    base = {"exam_date": days_ago(1), "symptoms": ["1"], "health_eval": "1"}
    SPEC.validate(
        {
            **base,
            "exercise_frequency": "4",
            "smoking_status": "1",
            "drinking_frequency": "1",
            "occ_hazard_flag": "1",
        },
        context(age=40),
    )


def test_risk_control_weight_and_vaccine_need_no_other_text() -> None:
    """codes.py's risk_control used to declare 5 and 6 as "other" options needing risk_control_other."""
    clean = SPEC.validate(
        full_exam(risk_control=["5", "6"], weight_target_kg=2.5, vaccine_advice="带状疱疹疫苗"), context()
    )
    assert "risk_control_other" not in clean
    clean = SPEC.validate(
        full_exam(risk_control=["7"], risk_control_other="控制血压", **_NO_TARGETS), context()
    )
    assert clean["risk_control_other"] == "控制血压"


_NO_TARGETS: dict[str, Any] = {"weight_target_kg": None, "vaccine_advice": None}


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("＋＋", "++"),
        ("+++", "+++"),
        ("－", "-"),
        ("±", "±"),
        ("0.15g/l", "0.15 g/L"),
        ("15 umol/L", "15 μmol/L"),
        ("5.5 MMOL/L", "5.5 mmol/L"),
        ("25 个/μL", "25 个/μL"),
    ],
)
def test_urine_results_qualitative_or_with_a_unit(typed: str, stored: str) -> None:
    assert SPEC.validate(full_exam(urine_protein=typed), context())["urine_protein"] == stored


def test_breast_examination_applies_to_men() -> None:
    payload = {
        k: v for k, v in full_exam(breast=["4"]).items() if not k.startswith("gyn_") and k != "pap_smear"
    }
    assert SPEC.validate(payload, context(sex="male"))["breast"] == ["4"]


# (overrides, field path, field title, message fragment); an override of None removes the field.
CASES: list[tuple[str, dict[str, Any], str, str, str]] = [
    # header, 2.1 症状
    ("date required", {"exam_date": None}, "exam_date", "体检日期", "必须填写"),
    ("date in the future", {"exam_date": "FUTURE"}, "exam_date", "体检日期", "不能晚于今天"),
    ("date format", {"exam_date": "2026/11/01"}, "exam_date", "体检日期", "日期格式应为 YYYY-MM-DD"),
    ("date before birth", {"exam_date": "1920-01-01"}, "exam_date", "体检日期", "不能早于出生日期"),
    ("symptoms required", {"symptoms": None, "symptoms_other": None}, "symptoms", "症状", "必须填写"),
    (
        "symptoms exclusive",
        {"symptoms": ["1", "2"], "symptoms_other": None},
        "symptoms",
        "症状",
        "“无症状”不能与",
    ),
    (
        "symptoms max 10",
        {"symptoms": [str(c) for c in range(2, 13)], "symptoms_other": None},
        "symptoms",
        "症状",
        "最多选择 10 项",
    ),
    (
        "symptom code",
        {"symptoms": ["26"], "symptoms_other": None},
        "symptoms",
        "症状",
        "代码“26”不在可选范围内",
    ),
    ("symptom 其他 text", {"symptoms_other": None}, "symptoms_other", "症状", "选择“其他”时须填写具体内容"),
    ("symptom text without 其他", {"symptoms": ["3"]}, "symptoms_other", "症状", "不应填写具体内容"),
    # 2.2 一般状况
    ("temperature high", {"temperature": 42.1}, "temperature", "体温", "不能大于 42.0℃"),
    ("temperature low", {"temperature": 33.9}, "temperature", "体温", "不能小于 34.0℃"),
    ("temperature decimals", {"temperature": 36.55}, "temperature", "体温", "最多保留 1 位小数"),
    ("pulse integer", {"pulse_rate": 72.5}, "pulse_rate", "脉率", "须为整数"),
    ("pulse number", {"pulse_rate": "快"}, "pulse_rate", "脉率", "须为数值"),
    ("respiration range", {"respiratory_rate": 80}, "respiratory_rate", "呼吸频率", "不能大于 60次/分钟"),
    (
        "SBP > DBP",
        {"bp_left_sbp": 80, "bp_left_dbp": 90},
        "bp_left_sbp",
        "血压·左侧收缩压",
        "应大于左侧舒张压",
    ),
    (
        "SBP = DBP",
        {"bp_right_sbp": 90, "bp_right_dbp": 90},
        "bp_right_sbp",
        "血压·右侧收缩压",
        "应大于右侧舒张压",
    ),
    ("BP pair", {"bp_right_dbp": None}, "bp_right_dbp", "血压·右侧舒张压", "须与血压·右侧收缩压同时填写"),
    ("BP pair left", {"bp_left_sbp": None}, "bp_left_sbp", "血压·左侧收缩压", "须与血压·左侧舒张压同时填写"),
    ("height in metres", {"height_cm": 1.6}, "height_cm", "身高", "不能小于 50.0cm"),
    ("weight range", {"weight_kg": 350}, "weight_kg", "体重", "不能大于 300.0kg"),
    (
        "BMI implausible",
        {"weight_kg": 300, "height_cm": 120},
        "weight_kg",
        "体重",
        "体质指数为 208.3，超出合理范围",
    ),
    ("waist range", {"waist_cm": 20}, "waist_cm", "腰围", "不能小于 40.0cm"),
    (
        "65+ health rating",
        {"elderly_health_self_rating": None},
        "elderly_health_self_rating",
        "老年人健康状态自我评估",
        "65岁及以上老年人必须填写",
    ),
    (
        "65+ cognition",
        {"elderly_cognition_screen": None, "mmse_total": None},
        "elderly_cognition_screen",
        "老年人认知功能",
        "65岁及以上老年人必须填写",
    ),
    (
        "65+ affect",
        {"elderly_affect_screen": None},
        "elderly_affect_screen",
        "老年人情感状态",
        "65岁及以上老年人必须填写",
    ),
    (
        "health rating code",
        {"elderly_health_self_rating": "6"},
        "elderly_health_self_rating",
        "老年人健康状态自我评估",
        "代码“6”不在可选范围内",
    ),
    (
        "MMSE required",
        {"mmse_total": None},
        "mmse_total",
        "简易智力状态检查总分",
        "认知功能粗筛阳性时必须填写",
    ),
    (
        "MMSE forbidden",
        {"elderly_cognition_screen": "1"},
        "mmse_total",
        "简易智力状态检查总分",
        "仅在认知功能粗筛阳性时填写",
    ),
    ("MMSE range", {"mmse_total": 31}, "mmse_total", "简易智力状态检查总分", "不能大于 30分"),
    (
        "GDS required",
        {"elderly_affect_screen": "2"},
        "gds_total",
        "老年人抑郁评分检查总分",
        "情感状态粗筛阳性时必须填写",
    ),
    ("GDS forbidden", {"gds_total": 5}, "gds_total", "老年人抑郁评分检查总分", "仅在情感状态粗筛阳性时填写"),
    (
        "GDS range",
        {"elderly_affect_screen": "2", "gds_total": 31},
        "gds_total",
        "老年人抑郁评分检查总分",
        "不能大于 30分",
    ),
    (
        "self-care id",
        {"selfcare_form_id": "abc"},
        "selfcare_form_id",
        "老年人生活自理能力评估表",
        "须为表单编号",
    ),
    # 2.3 生活方式
    (
        "exercise skipped",
        {"exercise_frequency": "4"},
        "exercise_minutes",
        "每次锻炼时间",
        "仅在锻炼频率为每天、每周一次以上或偶尔时填写",
    ),
    ("exercise minutes", {"exercise_minutes": 0}, "exercise_minutes", "每次锻炼时间", "不能小于 1分钟"),
    ("diet max 3", {"diet_habits": ["1", "2", "4", "5"]}, "diet_habits", "饮食习惯", "最多选择 3 项"),
    (
        "never smoked",
        {"smoking_status": "1"},
        "cigarettes_per_day",
        "日吸烟量",
        "仅在吸烟状况为已戒烟或吸烟时填写",
    ),
    (
        "never smoked: quit age",
        {"smoking_status": "1"},
        "smoking_quit_age",
        "戒烟年龄",
        "仅在吸烟状况为已戒烟时填写",
    ),
    (
        "quit age required",
        {"smoking_quit_age": None},
        "smoking_quit_age",
        "戒烟年龄",
        "吸烟状况为已戒烟时必须填写",
    ),
    (
        "smoker: no quit age",
        {"smoking_status": "3"},
        "smoking_quit_age",
        "戒烟年龄",
        "仅在吸烟状况为已戒烟时填写",
    ),
    ("start after quit", {"smoking_start_age": 40}, "smoking_start_age", "开始吸烟年龄", "不能大于戒烟年龄"),
    (
        "quit after age",
        {"smoking_quit_age": 75},
        "smoking_quit_age",
        "戒烟年龄",
        "不能大于体检时年龄（70岁）",
    ),
    (
        "never drinks",
        {"drinking_frequency": "1"},
        "alcohol_liang_per_day",
        "日饮酒量",
        "仅在饮酒频率为偶尔、经常或每天时填写",
    ),
    (
        "never drinks: types",
        {"drinking_frequency": "1"},
        "alcohol_types",
        "饮酒种类",
        "仅在饮酒频率为偶尔、经常或每天时填写",
    ),
    ("alcohol amount", {"alcohol_liang_per_day": 0}, "alcohol_liang_per_day", "日饮酒量", "不能小于 0.1两"),
    (
        "alcohol quit age required",
        {"alcohol_quit": "2"},
        "alcohol_quit_age",
        "戒酒年龄",
        "是否戒酒为已戒酒时必须填写",
    ),
    (
        "alcohol quit age forbidden",
        {"alcohol_quit_age": 60},
        "alcohol_quit_age",
        "戒酒年龄",
        "仅在是否戒酒为已戒酒时填写",
    ),
    (
        "drinking start after quit",
        {"alcohol_quit": "2", "alcohol_quit_age": 20},
        "drinking_start_age",
        "开始饮酒年龄",
        "不能大于戒酒年龄",
    ),
    (
        "alcohol type 其他",
        {"alcohol_type_other": None},
        "alcohol_type_other",
        "饮酒种类",
        "选择“其他”时须填写具体内容",
    ),
    (
        "no hazard: no job",
        {"occ_hazard_flag": "1"},
        "occ_job_type",
        "工种",
        "仅在职业病危害因素接触史为“有”时填写",
    ),
    (
        "no hazard: no rows",
        {"occ_hazard_flag": "1"},
        "occ_dust",
        "职业病危害因素·粉尘",
        "仅在职业病危害因素接触史为“有”时填写",
    ),
    ("hazard: years", {"occ_years": None}, "occ_years", "从业时间", "职业病危害因素接触史为“有”时必须填写"),
    (
        "hazard: at least one agent",
        {"occ_dust": None, "occ_dust_protection": None, "occ_dust_protection_desc": None}
        | {"occ_physical": None, "occ_physical_protection": None},
        "occ_hazard_flag",
        "职业病危害因素接触史",
        "须至少填写一类毒物种类",
    ),
    (
        "hazard row: protection",
        {"occ_chemical": "苯"},
        "occ_chemical_protection",
        "化学物质·防护措施",
        "须与职业病危害因素·化学物质同时填写",
    ),
    (
        "hazard row: agent",
        {"occ_radioactive_protection": "1"},
        "occ_radioactive",
        "职业病危害因素·放射物质",
        "须与放射物质·防护措施同时填写",
    ),
    (
        "hazard protection text",
        {"occ_dust_protection_desc": None},
        "occ_dust_protection_desc",
        "粉尘·防护措施",
        "选择“有”时须填写具体内容",
    ),
    (
        "hazard flag code",
        {"occ_hazard_flag": "3"},
        "occ_hazard_flag",
        "职业病危害因素接触史",
        "不在可选范围内",
    ),
    # 2.4 脏器功能
    ("lips code", {"lips": "9"}, "lips", "口腔·口唇", "代码“9”不在可选范围内"),
    (
        "dentition exclusive",
        {"dentition": ["1", "2"]},
        "dentition",
        "口腔·齿列",
        "“正常”不能与其他选项同时选择",
    ),
    (
        "caries positions",
        {"dentition": ["2", "3", "4"]},
        "caries_teeth_ul",
        "龋齿牙位（左上）",
        "齿列选择“龋齿”时须至少填写一个象限的牙位",
    ),
    (
        "positions without option",
        {"dentition": ["2"]},
        "denture_teeth_lr",
        "义齿牙位（右下）",
        "齿列未选择“义齿”，不应填写牙位",
    ),
    ("vision range", {"vision_left": 5.4}, "vision_left", "视力·左眼", "不能大于 5.3"),
    ("vision low", {"vision_right": 2.9}, "vision_right", "视力·右眼", "不能小于 3.0"),
    (
        "corrected vision decimals",
        {"vision_corrected_left": 4.85},
        "vision_corrected_left",
        "矫正视力·左眼",
        "最多保留 1 位小数",
    ),
    ("hearing code", {"hearing": "3"}, "hearing", "听力", "不在可选范围内"),
    # 2.5 查体
    ("fundus description", {"fundus_desc": None}, "fundus_desc", "眼底", "选择“异常”时须填写具体内容"),
    ("skin 其他", {"skin": "7"}, "skin_other", "皮肤", "选择“其他”时须填写具体内容"),
    ("lymph nodes 其他", {"lymph_nodes": "4"}, "lymph_other", "淋巴结", "选择“其他”时须填写具体内容"),
    (
        "breath sounds",
        {"breath_sounds": "2"},
        "breath_sounds_desc",
        "肺·呼吸音",
        "选择“异常”时须填写具体内容",
    ),
    ("rales 其他", {"rales": "4"}, "rales_other", "肺·罗音", "选择“其他”时须填写具体内容"),
    ("heart rate", {"heart_rate": 300}, "heart_rate", "心脏·心率", "不能大于 250次/分钟"),
    (
        "murmur description",
        {"heart_murmur": "2"},
        "heart_murmur_desc",
        "心脏·杂音",
        "选择“有”时须填写具体内容",
    ),
    (
        "liver description",
        {"hepatomegaly": "2"},
        "hepatomegaly_desc",
        "腹部·肝大",
        "选择“有”时须填写具体内容",
    ),
    (
        "dullness text without 有",
        {"shifting_dullness_desc": "少量"},
        "shifting_dullness_desc",
        "腹部·移动性浊音",
        "不应填写具体内容",
    ),
    ("edema code", {"leg_edema": "5"}, "leg_edema", "下肢水肿", "不在可选范围内"),
    ("DRE 其他", {"dre": "5"}, "dre_other", "肛门指诊", "选择“其他”时须填写具体内容"),
    ("breast exclusive", {"breast": ["1", "4"]}, "breast", "乳腺", "“未见异常”不能与其他选项同时选择"),
    ("breast 其他", {"breast": ["5"]}, "breast_other", "乳腺", "选择“其他”时须填写具体内容"),
    ("cervix description", {"gyn_cervix": "2"}, "gyn_cervix_desc", "妇科·宫颈", "选择“异常”时须填写具体内容"),
    # 2.6 辅助检查
    ("Hb typed in g/dL", {"hb": 13.5}, "hb", "血红蛋白", "不能小于 20g/L"),
    ("WBC typed per μL", {"wbc": 6500}, "wbc", "白细胞", "不能大于 200×10⁹/L"),
    ("platelets integer", {"plt": 210.5}, "plt", "血小板", "须为整数"),
    ("urine symbol", {"urine_protein": "+++++"}, "urine_protein", "尿蛋白", "须为定性结果"),
    ("urine without unit", {"urine_glucose": "5.5"}, "urine_glucose", "尿糖", "带单位的定量结果"),
    ("urine unknown unit", {"urine_ketone": "3 kg"}, "urine_ketone", "尿酮体", "带单位的定量结果"),
    ("glucose in both units", {"fpg_mgdl": 110}, "fpg_mgdl", "空腹血糖（mg/dL）", "只填其一"),
    ("glucose range", {"fpg_mmol": 60}, "fpg_mmol", "空腹血糖（mmol/L）", "不能大于 50mmol/L"),
    ("ECG description", {"ecg": "2"}, "ecg_desc", "心电图", "选择“异常”时须填写具体内容"),
    (
        "occult blood description",
        {"fecal_occult_blood": "2"},
        "fecal_occult_blood_desc",
        "大便潜血（异常描述）",
        "大便潜血阳性时必须填写",
    ),
    (
        "occult blood text when negative",
        {"fecal_occult_blood_desc": "阳性"},
        "fecal_occult_blood_desc",
        "大便潜血（异常描述）",
        "仅在大便潜血阳性时填写",
    ),
    ("HbA1c range", {"hba1c": 25}, "hba1c", "糖化血红蛋白", "不能大于 20.0%"),
    ("HBsAg code", {"hbsag": "3"}, "hbsag", "乙型肝炎表面抗原", "不在可选范围内"),
    ("bilirubin order", {"dbil": 15}, "dbil", "结合胆红素", "不能大于总胆红素"),
    ("urea range", {"bun": 0.2}, "bun", "血尿素", "不能小于 0.5mmol/L"),
    ("potassium range", {"k": 12}, "k", "血钾浓度", "不能大于 10.0mmol/L"),
    ("HDL order", {"hdl_c": 6}, "hdl_c", "血清高密度脂蛋白胆固醇", "不能大于总胆固醇"),
    (
        "chest X-ray description",
        {"chest_xray": "2"},
        "chest_xray_desc",
        "胸部X线片",
        "选择“异常”时须填写具体内容",
    ),
    (
        "ultrasound other site",
        {"ultrasound_other_site": None},
        "ultrasound_other_site",
        "B超·其他（检查部位）",
        "填写B超·其他结果时必须填写",
    ),
    (
        "ultrasound site without result",
        {"ultrasound_other": None},
        "ultrasound_other_site",
        "B超·其他（检查部位）",
        "仅在填写B超·其他结果时填写",
    ),
    (
        "ultrasound other description",
        {"ultrasound_other": "2"},
        "ultrasound_other_desc",
        "B超·其他",
        "须填写具体内容",
    ),
    (
        "abdominal ultrasound",
        {"ultrasound_abdomen_desc": None},
        "ultrasound_abdomen_desc",
        "B超·腹部B超",
        "须填写具体内容",
    ),
    ("pap smear description", {"pap_smear": "2"}, "pap_smear_desc", "宫颈涂片", "选择“异常”时须填写具体内容"),
    # 2.7 现存主要健康问题
    (
        "cerebrovascular exclusive",
        {"cerebrovascular": ["1", "2"]},
        "cerebrovascular",
        "脑血管疾病",
        "“未发现”不能与",
    ),
    ("eye 其他", {"eye": ["5"]}, "eye_other", "眼部疾病", "选择“其他”时须填写具体内容"),
    ("cardiac 其他", {"cardiac": ["2", "7"]}, "cardiac_other", "心脏疾病", "选择“其他”时须填写具体内容"),
    ("neuro description", {"neuro": "2"}, "neuro_desc", "神经系统疾病", "选择“有”时须填写具体内容"),
    ("renal code", {"renal": ["7"]}, "renal", "肾脏疾病", "代码“7”不在可选范围内"),
    # 2.8–2.10 rows
    (
        "discharged before admitted",
        {
            "hospitalizations": [
                {"admitted": "MONTH-3", "discharged": "MONTH-4", "reason": "肺炎", "institution": "罗湖医院"}
            ]
        },
        "hospitalizations[0].discharged",
        "出院日期",
        "住院史第 1 行：出院日期不能早于入院日期",
    ),
    (
        "hospitalisation reason",
        {"hospitalizations": [{"admitted": "MONTH-3", "institution": "罗湖医院"}]},
        "hospitalizations[0].reason",
        "原因",
        "必须填写",
    ),
    (
        "hospitalisation rows",
        {"hospitalizations": [{"admitted": "MONTH-3", "reason": "肺炎", "institution": "罗湖医院"}] * 3},
        "hospitalizations",
        "住院史",
        "最多填写 2 行",
    ),
    (
        "home bed month",
        {"home_beds": [{"opened": "2026-13", "reason": "脑卒中后", "institution": "桂园社康"}]},
        "home_beds[0].opened",
        "建床日期",
        "不是有效的年月",
    ),
    (
        "home bed closed before opened",
        {
            "home_beds": [
                {"opened": "MONTH-3", "closed": "MONTH-5", "reason": "脑卒中后", "institution": "桂园社康"}
            ]
        },
        "home_beds[0].closed",
        "撤床日期",
        "家庭病床史第 1 行：撤床日期不能早于建床日期",
    ),
    ("drug name", {"medications": [{"route": "口服"}]}, "medications[0].drug_name", "药物名称", "必须填写"),
    (
        "adherence code",
        {"medications": [{"drug_name": "二甲双胍", "adherence": "4"}]},
        "medications[0].adherence",
        "服药依从性",
        "代码“4”不在可选范围内",
    ),
    (
        "medication rows",
        {"medications": [{"drug_name": "阿司匹林"}] * 7},
        "medications",
        "主要用药情况",
        "最多填写 6 行",
    ),
    (
        "medication unknown column",
        {"medications": [{"drug_name": "阿司匹林", "price": "10"}]},
        "medications[0].price",
        "price",
        "未知字段",
    ),
    (
        "vaccination date",
        {"vaccinations": [{"vaccine_name": "流感疫苗", "date": "FUTURE"}]},
        "vaccinations[0].date",
        "接种日期",
        "不能晚于今天",
    ),
    (
        "vaccination rows",
        {"vaccinations": [{"vaccine_name": "流感疫苗"}] * 4},
        "vaccinations",
        "非免疫规划预防接种史",
        "最多填写 3 行",
    ),
    # 2.11 健康评价, 2.12 健康指导 / 危险因素控制
    (
        "evaluation required",
        {"health_eval": None, "abnormal_1": None, "abnormal_2": None},
        "health_eval",
        "健康评价",
        "必须填写",
    ),
    (
        "abnormal described",
        {"abnormal_1": None, "abnormal_2": None},
        "abnormal_1",
        "异常1",
        "健康评价：选择“有异常”时须至少填写异常1",
    ),
    ("abnormal without 有异常", {"health_eval": "1"}, "abnormal_2", "异常2", "仅在健康评价为“有异常”时填写"),
    ("2nd-edition guidance code", {"guidance": ["4"]}, "guidance", "健康指导", "代码“4”不在可选范围内"),
    ("weight target", {"weight_target_kg": None}, "weight_target_kg", "减体重目标", "选择减体重时必须填写"),
    ("weight target range", {"weight_target_kg": 0}, "weight_target_kg", "减体重目标", "不能小于 0.1kg"),
    (
        "vaccine advice",
        {"vaccine_advice": None},
        "vaccine_advice",
        "建议接种疫苗",
        "选择建议接种疫苗时必须填写",
    ),
    (
        "weight target without 5",
        {"risk_control": ["3", "6"]},
        "weight_target_kg",
        "减体重目标",
        "仅在选择减体重时填写",
    ),
    (
        "risk control 其他",
        {"risk_control": ["7"]} | _NO_TARGETS,
        "risk_control_other",
        "危险因素控制",
        "选择“其他”时须填写具体内容",
    ),
    ("unknown field", {"bmi": 22.5}, "bmi", "bmi", "未知字段“bmi”，请按表单填写"),
]


def _resolve(value: Any) -> Any:
    """Placeholders for dates relative to today (FUTURE, MONTH-n)."""
    if value == "FUTURE":
        return (clock.today_local() + timedelta(days=1)).isoformat()
    if isinstance(value, str) and value.startswith("MONTH-"):
        return months_ago(int(value.removeprefix("MONTH-")))
    if isinstance(value, list):
        return [_resolve(item) for item in value]
    if isinstance(value, dict):
        return {k: _resolve(v) for k, v in value.items()}
    return value


@pytest.mark.parametrize(
    ("overrides", "path", "title", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_refusal_names_the_field(overrides: dict[str, Any], path: str, title: str, fragment: str) -> None:
    errors = errors_of(full_exam(**_resolve(overrides)))
    assert path in errors, errors
    assert title in errors[path], errors[path]
    assert fragment in errors[path], errors[path]


def test_gynaecology_refused_for_men_on_every_item() -> None:
    errors = errors_of(full_exam(pap_smear="2", pap_smear_desc="炎症"), context(sex="male"))
    assert errors == {
        **{
            name: f"{title}：男性居民不做妇科检查，请勿填写"
            for name, title in (
                ("gyn_vulva", "妇科·外阴"),
                ("gyn_vagina", "妇科·阴道"),
                ("gyn_cervix", "妇科·宫颈"),
                ("gyn_uterus", "妇科·宫体"),
                ("gyn_adnexa", "妇科·附件"),
            )
        },
        "pap_smear": "宫颈涂片：男性居民不做宫颈涂片检查，请勿填写",
    }


def test_several_errors_are_reported_together() -> None:
    errors = errors_of(full_exam(temperature=45, lips="0", fundus_desc=None, hb=5))
    assert set(errors) == {"temperature", "lips", "fundus_desc", "hb"}


def test_under_65_the_elderly_items_are_optional_but_checked() -> None:
    young = context(age=64)
    SPEC.validate(
        full_exam(
            elderly_health_self_rating=None,
            elderly_cognition_screen=None,
            mmse_total=None,
            elderly_affect_screen=None,
        ),
        young,
    )
    errors = errors_of(full_exam(elderly_cognition_screen="1"), young)
    assert errors == {"mmse_total": "简易智力状态检查总分：仅在认知功能粗筛阳性时填写"}


def test_codes_endpoint_describes_the_exam(app: Flask) -> None:
    centre = make_centre()
    doctor = make_staff("doctor", centre)
    r = app.test_client().get(
        "/api/v1/health-records/codes", headers={"Authorization": f"Bearer {token_for(doctor)}"}
    )
    assert r.status_code == 200
    exam = next(f for f in r.get_json()["forms"] if f["form_type"] == "health_exam")
    fields = {f["name"]: f for f in exam["fields"]}
    assert "bmi" not in fields and "elderly_selfcare_level" not in fields  # derived, never typed
    assert (
        fields["hb"]["unit"] == "g/L"
        and fields["wbc"]["unit"] == "×10⁹/L"
        and fields["plt"]["unit"] == "×10⁹/L"
    )
    assert fields["bun"]["title"] == "血尿素"
    assert fields["risk_control"]["companion_when"] == ["7"]
    assert "health_eval_other" not in fields
    assert fields["urine_protein"]["codes"] == "urine_qualitative"
    assert fields["symptoms"]["max_selections"] == 10 and fields["symptoms"]["exclusive"] == "1"
