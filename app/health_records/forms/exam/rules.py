"""The form-level rules of the 健康体检表 (what one field alone cannot say) and the assembled
`SPEC`. Rules that need the database (the self-care assessment, the diabetes group) are in
`derive.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from app.health_records.forms.exam.fields import ABNORMAL, FIELDS, GYN, OCC_ROWS, QUADRANTS, TEETH
from app.health_records.spec import (
    FormContext,
    FormSpec,
    Payload,
    Rule,
    greater_than,
    required_when,
    selected,
)

ELDERLY_AGE = 65  # 老年人: 65 周岁及以上 on the exam date
BMI_LOW, BMI_HIGH = Decimal(10), Decimal(80)  # a computed BMI outside this is a typing error

# --- rule helpers -----------------------------------------------------------------------------


def _present(payload: Payload, name: str) -> bool:
    value = payload.get(name)
    return value is not None and value != "" and value != []


def only_when(targets: Iterable[tuple[str, str]], condition: Callable[[Payload], bool], why: str) -> Rule:
    """Each (name, title) may be filled only when `condition` holds (optional then)."""
    pairs = tuple(targets)

    def check(payload: Payload, ctx: FormContext) -> Iterable[tuple[str, str]]:
        if condition(payload):
            return
        for name, title in pairs:
            if _present(payload, name):
                yield name, f"{title}：仅在{why}时填写"

    return Rule(check, f"{[n for n, _ in pairs]} only when {why}")


def pair(first: str, first_title: str, second: str, second_title: str) -> Rule:
    """Both or neither, naming the missing one."""

    def check(payload: Payload, ctx: FormContext) -> Iterable[tuple[str, str]]:
        a, b = _present(payload, first), _present(payload, second)
        if a and not b:
            yield second, f"{second_title}：须与{first_title}同时填写"
        elif b and not a:
            yield first, f"{first_title}：须与{second_title}同时填写"

    return Rule(check, f"{first} and {second} together")


def not_greater(low: str, low_title: str, high: str, high_title: str) -> Rule:
    def check(payload: Payload, ctx: FormContext) -> Iterable[tuple[str, str]]:
        a, b = payload.get(low), payload.get(high)
        if a is not None and b is not None and a > b:
            yield low, f"{low_title}：不能大于{high_title}，请核对"

    return Rule(check, f"{low} <= {high}")


def exam_age(payload: Payload, ctx: FormContext) -> int | None:
    """周岁 on the exam date (None when the date or the birth date is unknown)."""
    exam_date = payload.get("exam_date")
    if exam_date is None:
        return None
    return ctx.age_on(date.fromisoformat(exam_date))


def is_elderly(payload: Payload, ctx: FormContext) -> bool:
    age = exam_age(payload, ctx)
    return age is not None and age >= ELDERLY_AGE


def compute_bmi(payload: Payload) -> float | None:
    """体质指数 = 体重(kg) / 身高(m)², one decimal (填表说明 §3); never typed."""
    height, weight = payload.get("height_cm"), payload.get("weight_kg")
    if height is None or weight is None:
        return None
    metres = Decimal(str(height)) / 100
    value = Decimal(str(weight)) / (metres * metres)
    return float(value.quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


# --- form-level rules -------------------------------------------------------------------------


def _after_birth(payload: Payload, ctx: FormContext) -> Iterable[tuple[str, str]]:
    exam_date = payload.get("exam_date")
    if (
        exam_date is not None
        and ctx.birth_date is not None
        and date.fromisoformat(exam_date) < ctx.birth_date
    ):
        yield "exam_date", "体检日期：不能早于出生日期"


def _elderly_items(payload: Payload, ctx: FormContext) -> Iterable[tuple[str, str]]:
    """65+ must fill the self-assessments (the self-care one is checked in derive)."""
    if not is_elderly(payload, ctx):
        return
    for name in ("elderly_health_self_rating", "elderly_cognition_screen", "elderly_affect_screen"):
        if not _present(payload, name):
            title = SPEC.field(name).title
            yield name, f"{title}：65岁及以上老年人必须填写"


def _ages_in_order(start: str, start_title: str, quit_: str, quit_title: str) -> Rule:
    """start ≤ quit ≤ age at exam (and start ≤ age at exam)."""

    def check(payload: Payload, ctx: FormContext) -> Iterable[tuple[str, str]]:
        begun, stopped = payload.get(start), payload.get(quit_)
        if begun is not None and stopped is not None and begun > stopped:
            yield start, f"{start_title}：不能大于{quit_title}，请核对"
        age = exam_age(payload, ctx)
        if age is None:
            return
        for name, title in ((start, start_title), (quit_, quit_title)):
            value = payload.get(name)
            if value is not None and value > age:
                yield name, f"{title}：不能大于体检时年龄（{age}岁），请核对"

    return Rule(check, f"{start} <= {quit_} <= age")


def _bmi_plausible(payload: Payload, ctx: FormContext) -> Iterable[tuple[str, str]]:
    bmi = compute_bmi(payload)
    if bmi is not None and not BMI_LOW <= Decimal(str(bmi)) <= BMI_HIGH:
        yield (
            "weight_kg",
            f"体重：按身高、体重计算的体质指数为 {bmi}，超出合理范围（{BMI_LOW}～{BMI_HIGH}），请核对身高和体重",
        )


def _fpg_one_unit(payload: Payload, ctx: FormContext) -> Iterable[tuple[str, str]]:
    if _present(payload, "fpg_mmol") and _present(payload, "fpg_mgdl"):
        yield "fpg_mgdl", "空腹血糖（mg/dL）：mmol/L 与 mg/dL 只填其一，另一单位由系统换算"


def _teeth(payload: Payload, ctx: FormContext) -> Iterable[tuple[str, str]]:
    for code, prefix, label in TEETH:
        names = [f"{prefix}_{q}" for q, _ in QUADRANTS]
        given = any(_present(payload, name) for name in names)
        if selected(payload, "dentition", code) and not given:
            first = SPEC.field(names[0]).title
            yield names[0], f"{first}：齿列选择“{label}”时须至少填写一个象限的牙位"
        elif given and not selected(payload, "dentition", code):
            for name in names:
                if _present(payload, name):
                    yield name, f"{SPEC.field(name).title}：齿列未选择“{label}”，不应填写牙位"


def _occupational(payload: Payload, ctx: FormContext) -> Iterable[tuple[str, str]]:
    exposed = selected(payload, "occ_hazard_flag", "2")
    rows = [name for key, _ in OCC_ROWS for name in (f"occ_{key}", f"occ_{key}_protection")]
    if exposed:
        for name, title in (("occ_job_type", "工种"), ("occ_years", "从业时间")):
            if not _present(payload, name):
                yield name, f"{title}：职业病危害因素接触史为“有”时必须填写"
        if not any(_present(payload, f"occ_{key}") for key, _ in OCC_ROWS):
            yield (
                "occ_hazard_flag",
                "职业病危害因素接触史：选择“有”时须至少填写一类毒物种类（粉尘、放射物质、物理因素、化学物质、其他）",
            )
        return
    for name in ("occ_job_type", "occ_years", *rows):
        if _present(payload, name):
            yield name, f"{SPEC.field(name).title}：仅在职业病危害因素接触史为“有”时填写"


def _occ_pairs() -> tuple[Rule, ...]:
    return tuple(
        pair(f"occ_{key}", f"职业病危害因素·{label}", f"occ_{key}_protection", f"{label}·防护措施")
        for key, label in OCC_ROWS
    )


def _female_only(payload: Payload, ctx: FormContext) -> Iterable[tuple[str, str]]:
    if ctx.sex != "male":
        return
    for name, title in GYN:
        if _present(payload, name):
            yield name, f"{title}：男性居民不做妇科检查，请勿填写"
    if _present(payload, "pap_smear"):
        yield "pap_smear", "宫颈涂片：男性居民不做宫颈涂片检查，请勿填写"


def _abnormal_described(payload: Payload, ctx: FormContext) -> Iterable[tuple[str, str]]:
    abnormal = selected(payload, "health_eval", "2")
    given = [name for name, _ in ABNORMAL if _present(payload, name)]
    if abnormal and not given:
        yield "abnormal_1", "健康评价：选择“有异常”时须至少填写异常1"
    elif not abnormal:
        for name in given:
            yield name, f"{SPEC.field(name).title}：仅在健康评价为“有异常”时填写"


def _code_in(name: str, *codes: str) -> Callable[[Payload], bool]:
    return lambda payload: payload.get(name) in codes


RULES: tuple[Rule, ...] = (
    Rule(_after_birth, "exam date not before birth"),
    # 2.2 一般状况
    pair("bp_left_sbp", "血压·左侧收缩压", "bp_left_dbp", "血压·左侧舒张压"),
    pair("bp_right_sbp", "血压·右侧收缩压", "bp_right_dbp", "血压·右侧舒张压"),
    greater_than("bp_left_sbp", "血压·左侧收缩压", "bp_left_dbp", "左侧舒张压"),
    greater_than("bp_right_sbp", "血压·右侧收缩压", "bp_right_dbp", "右侧舒张压"),
    Rule(_bmi_plausible, "computed BMI plausible"),
    Rule(_elderly_items, "65+ fill the elderly self-assessments"),
    required_when(
        "mmse_total",
        "简易智力状态检查总分",
        lambda p: selected(p, "elderly_cognition_screen", "2"),
        "认知功能粗筛阳性",
    ),
    required_when(
        "gds_total",
        "老年人抑郁评分检查总分",
        lambda p: selected(p, "elderly_affect_screen", "2"),
        "情感状态粗筛阳性",
    ),
    # 2.3 生活方式
    only_when(
        (
            ("exercise_minutes", "每次锻炼时间"),
            ("exercise_years", "坚持锻炼时间"),
            ("exercise_type", "锻炼方式"),
        ),
        _code_in("exercise_frequency", "1", "2", "3"),
        "锻炼频率为每天、每周一次以上或偶尔",
    ),
    only_when(
        (("cigarettes_per_day", "日吸烟量"), ("smoking_start_age", "开始吸烟年龄")),
        _code_in("smoking_status", "2", "3"),
        "吸烟状况为已戒烟或吸烟",
    ),
    required_when("smoking_quit_age", "戒烟年龄", _code_in("smoking_status", "2"), "吸烟状况为已戒烟"),
    _ages_in_order("smoking_start_age", "开始吸烟年龄", "smoking_quit_age", "戒烟年龄"),
    only_when(
        (
            ("alcohol_liang_per_day", "日饮酒量"),
            ("alcohol_quit", "是否戒酒"),
            ("drinking_start_age", "开始饮酒年龄"),
            ("drunk_past_year", "近一年内是否曾醉酒"),
            ("alcohol_types", "饮酒种类"),
        ),
        _code_in("drinking_frequency", "2", "3", "4"),
        "饮酒频率为偶尔、经常或每天",
    ),
    required_when("alcohol_quit_age", "戒酒年龄", _code_in("alcohol_quit", "2"), "是否戒酒为已戒酒"),
    _ages_in_order("drinking_start_age", "开始饮酒年龄", "alcohol_quit_age", "戒酒年龄"),
    Rule(_occupational, "occupational hazard details only when 有"),
    *_occ_pairs(),
    # 2.4 脏器功能
    Rule(_teeth, "tooth positions with 缺齿/龋齿/义齿"),
    # 2.5 查体
    Rule(_female_only, "妇科 and 宫颈涂片 for women only"),
    # 2.6 辅助检查
    Rule(_fpg_one_unit, "fasting glucose in one unit"),
    required_when(
        "fecal_occult_blood_desc", "大便潜血（异常描述）", _code_in("fecal_occult_blood", "2"), "大便潜血阳性"
    ),
    required_when(
        "ultrasound_other_site",
        "B超·其他（检查部位）",
        lambda p: _present(p, "ultrasound_other"),
        "填写B超·其他结果",
    ),
    not_greater("dbil", "结合胆红素", "tbil", "总胆红素"),
    not_greater("ldl_c", "血清低密度脂蛋白胆固醇", "tc", "总胆固醇"),
    not_greater("hdl_c", "血清高密度脂蛋白胆固醇", "tc", "总胆固醇"),
    # 2.11–2.12
    Rule(_abnormal_described, "异常1–4 when 有异常"),
    required_when("weight_target_kg", "减体重目标", lambda p: selected(p, "risk_control", "5"), "选择减体重"),
    required_when(
        "vaccine_advice", "建议接种疫苗", lambda p: selected(p, "risk_control", "6"), "选择建议接种疫苗"
    ),
)

SPEC = FormSpec("健康体检表", FIELDS, RULES)
