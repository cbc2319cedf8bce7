"""The printed 健康体检表 (national layout, 3rd edition), through `printing.layout.render_form`.

Sections and sub-rows follow the paper form: 症状, 一般状况, 生活方式, 脏器功能, 查体 (with 眼底),
辅助检查, 现存主要健康问题, 住院治疗情况, 主要用药情况, 非免疫规划预防接种史, 健康评价, 健康指导.
Where the paper puts several values on one line (血压 左侧 ___/___ mmHg, the 4-quadrant tooth
chart, the 职业病危害因素 rows, 肝功能 …) the printer composes that line as one display-only
field of a print spec (the form's spec plus those display fields); the repeated blocks (住院史,
用药 …) print as numbered lines inside the cell, the empty printed rows included; derived values (体质指数,
生活自理能力, 空腹血糖 in both units) are printed from the version's derived values.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from app.health_records.codes import CODES
from app.health_records.forms import PrintContext
from app.health_records.forms.exam.fields import (
    ABNORMAL,
    GYN,
    LIPIDS,
    LIVER,
    OCC_ROWS,
    QUADRANTS,
    RENAL,
    TEETH,
    URINE,
)
from app.health_records.forms.exam.rules import SPEC
from app.health_records.printing.layout import BOX_EMPTY, Section, code_cell, render_form
from app.health_records.spec import Code, Field, FormSpec, Number, Rows, Text

BLANK = "____"


def _display(name: str, title: str) -> Text:
    return Text(name, title, max_length=2000)


OCC_DISPLAY = tuple(_display(f"print_occ_{key}", f"毒物种类·{label}") for key, label in OCC_ROWS)

DISPLAY_FIELDS: tuple[Field, ...] = (
    _display("print_bp_left", "血压·左侧"),
    _display("print_bp_right", "血压·右侧"),
    Number("bmi", "体质指数（BMI）", unit="kg/m²", places=1),
    Code("elderly_selfcare_level", "老年人生活自理能力自我评估", codes="elderly_selfcare_level"),
    _display("print_selfcare_source", "生活自理能力评估依据"),
    _display("print_exercise", "体育锻炼"),
    _display("print_smoking", "吸烟情况·用量与年龄"),
    _display("print_drinking", "饮酒情况·用量与年龄"),
    _display("print_occ_job", "工种与从业时间"),
    *OCC_DISPLAY,
    _display("print_teeth", "齿列·牙位"),
    _display("print_vision", "视力"),
    _display("print_urine", "尿蛋白 / 尿糖 / 尿酮体 / 尿潜血"),
    _display("print_fpg", "空腹血糖"),
    _display("print_liver", "肝功能"),
    _display("print_renal", "肾功能"),
    _display("print_lipids", "血脂"),
    _display("print_ultrasound_other", "B超·其他"),
    _display("print_hospitalizations", "住院史"),
    _display("print_home_beds", "家庭病床史"),
    _display("print_medications", "用药"),
    _display("print_vaccinations", "接种疫苗"),
    _display("print_abnormal", "异常情况"),
    _display("print_risk_targets", "减体重目标 / 建议接种疫苗"),
)

# The embedded font has no superscript nine: ×10⁹/L is printed ×10^9/L.
PRINTED_UNITS = {"×10⁹/L": "×10^9/L"}


def _printed(field: Field) -> Field:
    if isinstance(field, Number) and field.unit in PRINTED_UNITS:
        return dataclasses.replace(field, unit=PRINTED_UNITS[field.unit])
    return field


PRINT_SPEC = FormSpec(SPEC.title, (*(_printed(f) for f in SPEC.fields), *DISPLAY_FIELDS))

SECTIONS: tuple[Section, ...] = (
    Section("症状", ("symptoms",)),
    Section(
        "一般状况",
        (
            "temperature",
            "pulse_rate",
            "respiratory_rate",
            "print_bp_left",
            "print_bp_right",
            "height_cm",
            "weight_kg",
            "waist_cm",
            "bmi",
            "elderly_health_self_rating",
            "elderly_selfcare_level",
            "print_selfcare_source",
            "elderly_cognition_screen",
            "mmse_total",
            "elderly_affect_screen",
            "gds_total",
        ),
    ),
    Section(
        "生活方式",
        (
            "exercise_frequency",
            "print_exercise",
            "diet_habits",
            "smoking_status",
            "print_smoking",
            "drinking_frequency",
            "print_drinking",
            "alcohol_quit",
            "drunk_past_year",
            "alcohol_types",
            "occ_hazard_flag",
            "print_occ_job",
            *(f.name for f in OCC_DISPLAY),
        ),
    ),
    Section(
        "脏器功能",
        ("lips", "dentition", "print_teeth", "pharynx", "print_vision", "hearing", "motor_function"),
    ),
    Section(
        "查体",
        (
            "fundus",
            "skin",
            "sclera",
            "lymph_nodes",
            "barrel_chest",
            "breath_sounds",
            "rales",
            "heart_rate",
            "heart_rhythm",
            "heart_murmur",
            "abd_tenderness",
            "abd_mass",
            "hepatomegaly",
            "splenomegaly",
            "shifting_dullness",
            "leg_edema",
            "dorsalis_pedis",
            "dre",
            "breast",
            *(name for name, _ in GYN),
            "exam_other",
        ),
    ),
    Section(
        "辅助检查",
        (
            "hb",
            "wbc",
            "plt",
            "blood_routine_other",
            "print_urine",
            "urine_other",
            "print_fpg",
            "ecg",
            "urine_malb",
            "fecal_occult_blood",
            "hba1c",
            "hbsag",
            "print_liver",
            "print_renal",
            "print_lipids",
            "chest_xray",
            "ultrasound_abdomen",
            "print_ultrasound_other",
            "pap_smear",
            "aux_other",
        ),
    ),
    Section(
        "现存主要健康问题",
        ("cerebrovascular", "renal", "cardiac", "vascular", "eye", "neuro", "other_system"),
    ),
    Section("住院治疗情况", ("print_hospitalizations", "print_home_beds")),
    Section("主要用药情况", ("print_medications",)),
    Section("非免疫规划预防接种史", ("print_vaccinations",)),
    Section("健康评价", ("health_eval", "print_abnormal")),
    Section("健康指导", ("guidance", "risk_control", "print_risk_targets")),
)

# 填表说明 (key points, after the form's own notes; spec §2 and the 3rd-edition 填表说明).
NOTES: tuple[str, ...] = (
    "本表用于老年人、高血压、2型糖尿病和严重精神障碍患者等的年度健康检查。一般居民的健康检查可参考使用，"
    "肺结核患者、孕产妇和0～6岁儿童无需填写该表。",
    "表中带有*号的项目（老年人自我评估、眼底、足背动脉搏动、肛门指诊、乳腺、妇科、辅助检查等），"
    "在为一般居民建立健康档案时不作为免费检查项目，不同重点人群的免费检查项目按照各专项服务规范执行。",
    "一般状况：体质指数（BMI）＝体重（kg）/身高的平方（m²），由系统计算。65岁及以上老年人须填写老年人自我评估项目，"
    "生活自理能力自我评估取自老年人生活自理能力评估表。认知功能粗筛阳性者须做简易智力状态检查并记录总分；"
    "情感状态粗筛阳性者须做老年人抑郁评分检查并记录总分。",
    "生活方式：从不吸烟者不填日吸烟量、开始吸烟年龄、戒烟年龄，已戒烟者填写戒烟前的情况；从不饮酒者不填其他饮酒项目；"
    "日饮酒量折合成白酒量（啤酒/10，红酒/4，黄酒/5）。职业病危害因素接触史：填写工种、从业时间及具体毒物名称，"
    "不清楚的填“不详”，并填写防护措施。",
    "脏器功能：视力用对数视力表（五分记录）测量，佩戴眼镜者可戴其平时所用眼镜测量矫正视力。"
    "齿列选择缺齿、龋齿、义齿时在牙位图相应象限内填写牙位。",
    "查体：眼底列于查体（第二版在辅助检查）；有异常时具体描述。糖尿病患者必须检查足背动脉搏动。"
    "妇科检查与宫颈涂片仅适用于女性。",
    "辅助检查：血红蛋白单位为 g/L，白细胞、血小板单位为 ×10^9/L。尿常规可填定性结果（阴性“－”，阳性“＋”至“＋＋＋＋”）"
    "或带计量单位的定量结果。空腹血糖填 mmol/L 或 mg/dL 之一，另一单位由系统换算。肾功能填写血尿素（mmol/L）。"
    "大便潜血、肝功能、肾功能、胸部X线片、B超结果异常时须具体描述，B超其他须写明检查部位。",
    "现存主要健康问题：曾经出现或一直存在并影响目前身体健康状况的疾病；现患或新增的疾病需同时补填个人基本信息表既往史。",
    "住院治疗情况、主要用药情况、非免疫规划预防接种史：指最近1年内的情况；日期写年月，年份写4位；医疗机构名称写全称。",
    "健康评价：无异常指无新发疾病，原有疾病控制良好无加重或进展，否则为有异常，填写具体异常情况。"
    "减体重的目标是指下次体检之前需要减重的目标值。",
)


def _value(payload: dict[str, Any], name: str, unit: str = "") -> str:
    value = payload.get(name)
    if value is None or value == "":
        return f"{BLANK}{unit}"
    return f"{value}{unit}"


def _urine(value: str | None) -> str:
    """A qualitative code is printed as on the paper (－, ＋ …); a quantity as stored."""
    qualitative = CODES["urine_qualitative"]
    if value is None:
        return BLANK
    return qualitative.label(value) if value in qualitative.codes else value


def _numbers(fields: Iterable[Number], payload: dict[str, Any]) -> str:
    return "  ".join(f"{f.title} {_value(payload, f.name, ' ' + f.unit)}" for f in fields)


def _bp(payload: dict[str, Any], side: str) -> str:
    return f"{_value(payload, f'bp_{side}_sbp')}/{_value(payload, f'bp_{side}_dbp')} mmHg"


def _teeth(payload: dict[str, Any]) -> str:
    parts = []
    for _, prefix, label in TEETH:
        quadrants = "  ".join(
            f"{q_label} {payload.get(f'{prefix}_{q}') or BLANK}" for q, q_label in QUADRANTS
        )
        parts.append(f"{label}：{quadrants}")
    return "\n".join(parts)


def _occ_row(payload: dict[str, Any], key: str) -> str:
    protection = SPEC.field(f"occ_{key}_protection")
    assert isinstance(protection, Code)
    return f"{_value(payload, f'occ_{key}')}    防护措施 {code_cell(protection, payload)}"


def _rows(name: str, payload: dict[str, Any]) -> str:
    """A repeated block as its printed lines (filled rows, then the empty printed rows), each
    "column value" in printed order; a code column shows its options and box."""
    field = SPEC.field(name)
    assert isinstance(field, Rows)
    rows = list(payload.get(name) or [])
    lines = []
    for index in range(max(field.max_rows, len(rows))):
        row = rows[index] if index < len(rows) else {}
        cells = [
            f"{column.title} {code_cell(column, row) if isinstance(column, Code) else row.get(column.name) or BLANK}"
            for column in field.fields
        ]
        lines.append(f"{index + 1}. " + "  ".join(cells))
    return "\n".join(lines)


def print_payload(payload: dict[str, Any], derived: dict[str, Any]) -> dict[str, Any]:
    """The saved payload plus the derived values and the composed display lines."""
    out = dict(payload)
    for name in ("bmi", "elderly_selfcare_level"):
        if derived.get(name) is not None:
            out[name] = derived[name]
    if derived.get("selfcare_form_id"):
        out["print_selfcare_source"] = (
            f"{derived['selfcare_assessed_on']} 老年人生活自理能力评估表，总评分 {derived['selfcare_total']} 分"
        )
    out["print_bp_left"] = _bp(payload, "left")
    out["print_bp_right"] = _bp(payload, "right")
    out["print_exercise"] = (
        f"每次锻炼时间 {_value(payload, 'exercise_minutes', ' 分钟')}  坚持锻炼时间 {_value(payload, 'exercise_years', ' 年')}"
        f"  锻炼方式 {_value(payload, 'exercise_type')}"
    )
    out["print_smoking"] = (
        f"日吸烟量 平均 {_value(payload, 'cigarettes_per_day', ' 支')}  开始吸烟年龄 {_value(payload, 'smoking_start_age', ' 岁')}"
        f"  戒烟年龄 {_value(payload, 'smoking_quit_age', ' 岁')}"
    )
    out["print_drinking"] = (
        f"日饮酒量 平均 {_value(payload, 'alcohol_liang_per_day', ' 两')}  开始饮酒年龄 "
        f"{_value(payload, 'drinking_start_age', ' 岁')}  戒酒年龄 {_value(payload, 'alcohol_quit_age', ' 岁')}"
    )
    out["print_occ_job"] = (
        f"工种 {_value(payload, 'occ_job_type')}  从业时间 {_value(payload, 'occ_years', ' 年')}"
    )
    for key, _ in OCC_ROWS:
        out[f"print_occ_{key}"] = _occ_row(payload, key)
    out["print_teeth"] = _teeth(payload)
    out["print_vision"] = (
        f"左眼 {_value(payload, 'vision_left')}  右眼 {_value(payload, 'vision_right')}  "
        f"（矫正视力：左眼 {_value(payload, 'vision_corrected_left')}  右眼 {_value(payload, 'vision_corrected_right')}）"
    )
    out["print_urine"] = "  ".join(f"{title} {_urine(payload.get(name))}" for name, title in URINE)
    mmol, mgdl = derived.get("fpg_mmol"), derived.get("fpg_mgdl")
    out["print_fpg"] = f"{BLANK if mmol is None else mmol} mmol/L 或 {BLANK if mgdl is None else mgdl} mg/dL"
    out["print_liver"] = _numbers(LIVER, payload)
    out["print_renal"] = _numbers(RENAL, payload)
    out["print_lipids"] = _numbers(LIPIDS, payload)
    other = SPEC.field("ultrasound_other")
    assert isinstance(other, Code)
    out["print_ultrasound_other"] = (
        f"部位 {_value(payload, 'ultrasound_other_site')}    {code_cell(other, payload)}"
    )
    for name in ("hospitalizations", "home_beds", "medications", "vaccinations"):
        out[f"print_{name}"] = _rows(name, payload)
    out["print_abnormal"] = "\n".join(f"{title} {_value(payload, name)}" for name, title in ABNORMAL)
    out["print_risk_targets"] = (
        f"减体重 目标 {_value(payload, 'weight_target_kg', ' kg')}  建议接种疫苗 {_value(payload, 'vaccine_advice')}"
    )
    return out


def render(ctx: PrintContext) -> bytes:
    payload = print_payload(ctx.payload, ctx.derived)
    doctor = ctx.payload.get("responsible_doctor") or ctx.doctor_name or BLANK
    return render_form(
        dataclasses.replace(ctx, payload=payload),
        PRINT_SPEC,
        SECTIONS,
        header_extra=(("体检日期", str(ctx.payload.get("exam_date", ""))), ("责任医生", doctor)),
        footer=(
            f"[ ] 内为所选代码，{BOX_EMPTY} 为未选；体质指数、空腹血糖换算值和生活自理能力分级由系统根据录入数据计算。",
        ),
        notes=NOTES,
    )
