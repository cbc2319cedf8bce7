"""The fields of the 健康体检表 (spec §2.1–2.12), as printed, in printed order. The form-level
rules and the assembled `SPEC` are in `rules.py`; ranges and decisions in the package docstring.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from app.health_records.codes import CODES
from app.health_records.spec import (
    Code,
    Date,
    Field,
    FormContext,
    MultiCode,
    Number,
    Rows,
    Text,
    YearMonth,
    not_before,
)

# --- field types particular to this form -------------------------------------------------------


@dataclass(frozen=True)
class FormId(Text):
    """The id (UUID) of another form of the same resident (here: the self-care assessment)."""

    max_length: int = 36

    def clean(self, value: Any, ctx: FormContext) -> str:
        text = super().clean(value, ctx)
        try:
            return str(uuid.UUID(text))
        except ValueError:
            raise ValueError("须为表单编号（UUID）") from None


# Quantitative urine results: units accepted (matched case-insensitively, stored as written here).
URINE_UNITS: tuple[str, ...] = (
    "g/L",
    "mg/L",
    "mg/dL",
    "mmol/L",
    "μmol/L",
    "g/24h",
    "mg/24h",
    "cells/μL",
    "Ery/μL",
    "个/μL",
    "个/HP",
)
_UNIT_ALIASES = {"µ": "μ", "u": "μ"}  # micro sign and ASCII "u" are written for μ
_URINE_QUANT = re.compile(r"^(\d{1,5}(?:\.\d{1,3})?)\s*(\S+)$")
_FULL_WIDTH = str.maketrans({"＋": "+", "－": "-", "−": "-", "﹢": "+", "﹣": "-"})


def _unit(text: str) -> str | None:
    wanted = text.casefold()
    for unit in URINE_UNITS:
        variants = {unit.casefold()}
        for alias, micro in _UNIT_ALIASES.items():
            variants.add(unit.replace(micro, alias).casefold())
        if wanted in variants:
            return unit
    return None


@dataclass(frozen=True)
class UrineResult(Text):
    """尿常规 result (填表说明 §7): a qualitative symbol of `urine_qualitative` (－ ± ＋ … ＋＋＋＋;
    full-width or ASCII, stored as the code "-", "+" …) or a quantitative value with its unit
    ("0.15 g/L"), stored as "<number> <unit>"."""

    max_length: int = 30

    def clean(self, value: Any, ctx: FormContext) -> str:
        text = super().clean(value, ctx).replace(" ", "")
        symbol = text.translate(_FULL_WIDTH)
        if symbol in CODES["urine_qualitative"].codes:
            return symbol
        match = _URINE_QUANT.match(text)
        unit = _unit(match.group(2)) if match else None
        if match is None or unit is None:
            raise ValueError(
                "须为定性结果（－、±、＋、＋＋、＋＋＋、＋＋＋＋）或带单位的定量结果（如 0.15 g/L）"
            )
        return f"{match.group(1)} {unit}"

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "codes": "urine_qualitative", "units": list(URINE_UNITS)}


# --- 2.1 症状 / 2.2 一般状况 ---------------------------------------------------------------------

HEADER: tuple[Field, ...] = (
    Date("exam_date", "体检日期", required=True),
    Text("responsible_doctor", "责任医生", max_length=50),
)

SYMPTOMS: tuple[Field, ...] = (
    MultiCode("symptoms", "症状", required=True, codes="exam_symptom", max_selections=10),
)

GENERAL: tuple[Field, ...] = (
    Number("temperature", "体温", unit="℃", low=Decimal("34.0"), high=Decimal("42.0"), places=1),
    Number("pulse_rate", "脉率", unit="次/分钟", low=20, high=250),
    Number("respiratory_rate", "呼吸频率", unit="次/分钟", low=5, high=60),
    Number("bp_left_sbp", "血压·左侧收缩压", unit="mmHg", low=60, high=300),
    Number("bp_left_dbp", "血压·左侧舒张压", unit="mmHg", low=30, high=200),
    Number("bp_right_sbp", "血压·右侧收缩压", unit="mmHg", low=60, high=300),
    Number("bp_right_dbp", "血压·右侧舒张压", unit="mmHg", low=30, high=200),
    Number("height_cm", "身高", unit="cm", low=Decimal("50.0"), high=Decimal("250.0"), places=1),
    Number("weight_kg", "体重", unit="kg", low=Decimal("10.0"), high=Decimal("300.0"), places=1),
    Number("waist_cm", "腰围", unit="cm", low=Decimal("40.0"), high=Decimal("200.0"), places=1),
    Code("elderly_health_self_rating", "老年人健康状态自我评估", codes="elderly_health_self_rating"),
    # 老年人生活自理能力自我评估 is derived from the 老年人生活自理能力评估表 (exam/derive.py):
    # this optional id chooses the assessment; without it the latest within a year is used.
    FormId("selfcare_form_id", "老年人生活自理能力评估表"),
    Code("elderly_cognition_screen", "老年人认知功能", codes="screen_result"),
    Number("mmse_total", "简易智力状态检查总分", unit="分", low=0, high=30),
    Code("elderly_affect_screen", "老年人情感状态", codes="screen_result"),
    # The form asks for "老年人抑郁评分检查，总分" without naming the scale: 0–30 accepts the
    # GDS-30 (and the shorter GDS-15, whose 0–15 lies within it).
    Number("gds_total", "老年人抑郁评分检查总分", unit="分", low=0, high=30),
)

# --- 2.3 生活方式 -------------------------------------------------------------------------------

OCC_ROWS: tuple[tuple[str, str], ...] = (
    ("dust", "粉尘"),
    ("radioactive", "放射物质"),
    ("physical", "物理因素"),
    ("chemical", "化学物质"),
    ("other", "其他"),
)


def _occ_row(key: str, label: str) -> tuple[Field, ...]:
    return (
        Text(f"occ_{key}", f"职业病危害因素·{label}", max_length=100),
        Code(
            f"occ_{key}_protection",
            f"{label}·防护措施",
            codes="protection",
            companion=f"occ_{key}_protection_desc",
            companion_title=f"{label}·防护措施（具体内容）",
        ),
    )


LIFESTYLE: tuple[Field, ...] = (
    Code("exercise_frequency", "体育锻炼·锻炼频率", codes="exercise_frequency"),
    Number("exercise_minutes", "每次锻炼时间", unit="分钟", low=1, high=600),
    Number("exercise_years", "坚持锻炼时间", unit="年", low=0, high=100, places=1),
    Text("exercise_type", "锻炼方式", max_length=100),
    MultiCode("diet_habits", "饮食习惯", codes="diet_habit", max_selections=3),
    Code("smoking_status", "吸烟状况", codes="smoking_status"),
    Number("cigarettes_per_day", "日吸烟量", unit="支", low=1, high=200),
    Number("smoking_start_age", "开始吸烟年龄", unit="岁", low=1, high=120),
    Number("smoking_quit_age", "戒烟年龄", unit="岁", low=1, high=120),
    Code("drinking_frequency", "饮酒频率", codes="drinking_frequency"),
    Number("alcohol_liang_per_day", "日饮酒量", unit="两", low=Decimal("0.1"), high=50, places=1),
    Code("alcohol_quit", "是否戒酒", codes="alcohol_quit"),
    Number("alcohol_quit_age", "戒酒年龄", unit="岁", low=1, high=120),
    Number("drinking_start_age", "开始饮酒年龄", unit="岁", low=1, high=120),
    Code("drunk_past_year", "近一年内是否曾醉酒", codes="yes_no"),
    MultiCode(
        "alcohol_types",
        "饮酒种类",
        codes="alcohol_type",
        companion="alcohol_type_other",
        companion_title="饮酒种类·其他",
    ),
    Code("occ_hazard_flag", "职业病危害因素接触史", codes="occ_hazard_flag"),
    Text("occ_job_type", "工种", max_length=50),
    Number("occ_years", "从业时间", unit="年", low=0, high=80, places=1),
    *(f for key, label in OCC_ROWS for f in _occ_row(key, label)),
)

# --- 2.4 脏器功能 -------------------------------------------------------------------------------

# 齿列 2 缺齿 / 3 龋齿 / 4 义齿: the 4-quadrant "+" chart of tooth positions (free text each).
TEETH: tuple[tuple[str, str, str], ...] = (
    ("2", "missing_teeth", "缺齿"),
    ("3", "caries_teeth", "龋齿"),
    ("4", "denture_teeth", "义齿"),
)
QUADRANTS: tuple[tuple[str, str], ...] = (("ul", "左上"), ("ur", "右上"), ("ll", "左下"), ("lr", "右下"))


def _vision(name: str, title: str) -> Number:
    """五分记录 (logarithmic chart); 3.0–5.3 is a project rule (spec §2.4)."""
    return Number(name, title, low=Decimal("3.0"), high=Decimal("5.3"), places=1)


ORGANS: tuple[Field, ...] = (
    Code("lips", "口腔·口唇", codes="lips"),
    MultiCode("dentition", "口腔·齿列", codes="dentition"),
    *(
        Text(f"{prefix}_{q}", f"{label}牙位（{q_label}）", max_length=30)
        for _, prefix, label in TEETH
        for q, q_label in QUADRANTS
    ),
    Code("pharynx", "口腔·咽部", codes="pharynx"),
    _vision("vision_left", "视力·左眼"),
    _vision("vision_right", "视力·右眼"),
    _vision("vision_corrected_left", "矫正视力·左眼"),
    _vision("vision_corrected_right", "矫正视力·右眼"),
    Code("hearing", "听力", codes="hearing"),
    Code("motor_function", "运动功能", codes="motor_function"),
)

# --- 2.5 查体 (眼底 is here in the 3rd edition) ------------------------------------------------

ABDOMEN: tuple[tuple[str, str], ...] = (
    ("abd_tenderness", "腹部·压痛"),
    ("abd_mass", "腹部·包块"),
    ("hepatomegaly", "腹部·肝大"),
    ("splenomegaly", "腹部·脾大"),
    ("shifting_dullness", "腹部·移动性浊音"),
)
GYN: tuple[tuple[str, str], ...] = (
    ("gyn_vulva", "妇科·外阴"),
    ("gyn_vagina", "妇科·阴道"),
    ("gyn_cervix", "妇科·宫颈"),
    ("gyn_uterus", "妇科·宫体"),
    ("gyn_adnexa", "妇科·附件"),
)


def _desc(name: str, title: str, codes: str) -> Code:
    return Code(name, title, codes=codes, companion=f"{name}_desc", companion_title=f"{title}（具体描述）")


PHYSICAL: tuple[Field, ...] = (
    _desc("fundus", "眼底", "normal_abnormal"),
    Code("skin", "皮肤", codes="skin"),
    Code("sclera", "巩膜", codes="sclera"),
    Code("lymph_nodes", "淋巴结", codes="lymph_nodes", companion="lymph_other"),
    Code("barrel_chest", "肺·桶状胸", codes="no_yes"),
    _desc("breath_sounds", "肺·呼吸音", "normal_abnormal"),
    Code("rales", "肺·罗音", codes="rales"),
    Number("heart_rate", "心脏·心率", unit="次/分钟", low=20, high=250),
    Code("heart_rhythm", "心脏·心律", codes="heart_rhythm"),
    _desc("heart_murmur", "心脏·杂音", "none_have"),
    *(_desc(name, title, "none_have") for name, title in ABDOMEN),
    Code("leg_edema", "下肢水肿", codes="leg_edema"),
    Code("dorsalis_pedis", "足背动脉搏动", codes="dorsalis_pedis"),
    Code("dre", "肛门指诊", codes="dre"),
    MultiCode("breast", "乳腺", codes="breast", max_selections=4),
    *(_desc(name, title, "not_seen_abnormal") for name, title in GYN),
    Text("exam_other", "查体·其他", max_length=500),
)

# --- 2.6 辅助检查 -------------------------------------------------------------------------------

URINE: tuple[tuple[str, str], ...] = (
    ("urine_protein", "尿蛋白"),
    ("urine_glucose", "尿糖"),
    ("urine_ketone", "尿酮体"),
    ("urine_occult_blood", "尿潜血"),
)
LIVER: tuple[Number, ...] = (
    Number("alt", "血清谷丙转氨酶", unit="U/L", low=0, high=5000, places=1),
    Number("ast", "血清谷草转氨酶", unit="U/L", low=0, high=5000, places=1),
    Number("alb", "白蛋白", unit="g/L", low=5, high=80, places=1),
    Number("tbil", "总胆红素", unit="μmol/L", low=0, high=1000, places=1),
    Number("dbil", "结合胆红素", unit="μmol/L", low=0, high=1000, places=1),
)
RENAL: tuple[Number, ...] = (
    Number("scr", "血清肌酐", unit="μmol/L", low=5, high=3000, places=1),
    Number("bun", "血尿素", unit="mmol/L", low=Decimal("0.5"), high=100, places=2),
    Number("k", "血钾浓度", unit="mmol/L", low=Decimal("1.0"), high=Decimal("10.0"), places=2),
    Number("na", "血钠浓度", unit="mmol/L", low=100, high=200, places=1),
)
LIPIDS: tuple[Number, ...] = (
    Number("tc", "总胆固醇", unit="mmol/L", low=Decimal("0.5"), high=30, places=2),
    Number("tg", "甘油三酯", unit="mmol/L", low=Decimal("0.1"), high=60, places=2),
    Number("ldl_c", "血清低密度脂蛋白胆固醇", unit="mmol/L", low=Decimal("0.1"), high=20, places=2),
    Number("hdl_c", "血清高密度脂蛋白胆固醇", unit="mmol/L", low=Decimal("0.1"), high=10, places=2),
)

AUXILIARY: tuple[Field, ...] = (
    Number("hb", "血红蛋白", unit="g/L", low=20, high=250, places=1),
    Number("wbc", "白细胞", unit="×10⁹/L", low=Decimal("0.1"), high=200, places=2),
    Number("plt", "血小板", unit="×10⁹/L", low=1, high=2000),
    Text("blood_routine_other", "血常规·其他", max_length=200),
    *(UrineResult(name, title) for name, title in URINE),
    Text("urine_other", "尿常规·其他", max_length=200),
    Number("fpg_mmol", "空腹血糖（mmol/L）", unit="mmol/L", low=Decimal("1.0"), high=50, places=2),
    Number("fpg_mgdl", "空腹血糖（mg/dL）", unit="mg/dL", low=18, high=900, places=1),
    _desc("ecg", "心电图", "normal_abnormal"),
    Number("urine_malb", "尿微量白蛋白", unit="mg/dL", low=0, high=1000, places=2),
    Code("fecal_occult_blood", "大便潜血", codes="negative_positive"),
    Text("fecal_occult_blood_desc", "大便潜血（异常描述）", max_length=200),
    Number("hba1c", "糖化血红蛋白", unit="%", low=Decimal("3.0"), high=Decimal("20.0"), places=1),
    Code("hbsag", "乙型肝炎表面抗原", codes="negative_positive"),
    *LIVER,
    *RENAL,
    *LIPIDS,
    _desc("chest_xray", "胸部X线片", "normal_abnormal"),
    _desc("ultrasound_abdomen", "B超·腹部B超", "normal_abnormal"),
    Text("ultrasound_other_site", "B超·其他（检查部位）", max_length=50),
    _desc("ultrasound_other", "B超·其他", "normal_abnormal"),
    _desc("pap_smear", "宫颈涂片", "normal_abnormal"),
    Text("aux_other", "辅助检查·其他", max_length=500),
)

# --- 2.7 现存主要健康问题 -----------------------------------------------------------------------

PROBLEMS: tuple[Field, ...] = (
    MultiCode("cerebrovascular", "脑血管疾病", codes="cerebrovascular"),
    MultiCode("renal", "肾脏疾病", codes="renal"),
    MultiCode("cardiac", "心脏疾病", codes="cardiac"),
    MultiCode("vascular", "血管疾病", codes="vascular"),
    MultiCode("eye", "眼部疾病", codes="eye"),
    Code("neuro", "神经系统疾病", codes="not_found_have", companion="neuro_desc"),
    Code("other_system", "其他系统疾病", codes="not_found_have", companion="other_system_desc"),
)

# --- 2.8–2.10 住院治疗情况, 主要用药情况, 非免疫规划预防接种史 -------------------------------------


def _stay(name: str, title: str, start: str, start_title: str, end: str, end_title: str) -> Rows:
    return Rows(
        name,
        title,
        fields=(
            YearMonth(start, start_title, required=True),
            YearMonth(end, end_title),
            Text("reason", "原因", required=True, max_length=100),
            Text("institution", "医疗机构名称", required=True, max_length=100),
            Text("case_no", "病案号", max_length=30),
        ),
        max_rows=2,
        rules=(not_before(end, end_title, start, start_title),),
    )


HISTORY: tuple[Field, ...] = (
    _stay("hospitalizations", "住院史", "admitted", "入院日期", "discharged", "出院日期"),
    _stay("home_beds", "家庭病床史", "opened", "建床日期", "closed", "撤床日期"),
    Rows(
        "medications",
        "主要用药情况",
        fields=(
            Text("drug_name", "药物名称", required=True, max_length=100),
            Text("route", "用法", max_length=50),
            Text("dosage", "用量", max_length=50),
            Text("duration", "用药时间", max_length=30),
            Code("adherence", "服药依从性", codes="exam_adherence"),
        ),
        max_rows=6,
    ),
    Rows(
        "vaccinations",
        "非免疫规划预防接种史",
        fields=(
            Text("vaccine_name", "名称", required=True, max_length=50),
            Date("date", "接种日期"),
            Text("org", "接种机构", max_length=100),
        ),
        max_rows=3,
    ),
)

# --- 2.11 健康评价 / 2.12 健康指导, 危险因素控制 ---------------------------------------------------

ABNORMAL = tuple((f"abnormal_{i}", f"异常{i}") for i in range(1, 5))

CONCLUSION: tuple[Field, ...] = (
    Code("health_eval", "健康评价", required=True, codes="health_eval"),
    *(Text(name, title, max_length=200) for name, title in ABNORMAL),
    MultiCode("guidance", "健康指导", codes="guidance"),
    MultiCode("risk_control", "危险因素控制", codes="risk_control"),
    Number("weight_target_kg", "减体重目标", unit="kg", low=Decimal("0.1"), high=100, places=1),
    Text("vaccine_advice", "建议接种疫苗", max_length=100),
)

FIELDS: tuple[Field, ...] = (
    *HEADER,
    *SYMPTOMS,
    *GENERAL,
    *LIFESTYLE,
    *ORGANS,
    *PHYSICAL,
    *AUXILIARY,
    *PROBLEMS,
    *HISTORY,
    *CONCLUSION,
)
