"""肺结核患者随访服务记录表 (spec §4.2): one form per visit, with the 结案评估 block.

The paper form has one column per visit; each visit here is one form and prints on its own page.
The 停止治疗及原因 + 全程管理情况 block is all-or-nothing: 出现停止治疗时间 and 停止治疗原因 together,
and with them 应访视/实际访视/应服药/实际服药 and the assessing doctor (actual ≤ should). With the
block filled, derived `closing_assessment` is true and `adherence_rate` is the 服药率.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from app.health_records.codes import CODES
from app.health_records.forms import FormDefinition, PrintContext, SaveContext, register
from app.health_records.forms.tb import common, schedule
from app.health_records.models import Category, HealthForm
from app.health_records.printing.layout import Section, render_form
from app.health_records.spec import (
    Code,
    Date,
    FormContext,
    FormSpec,
    Number,
    Payload,
    Rule,
    Text,
    both_or_neither,
    required_when,
)

DIED, LOST = "2", "3"  # 停止治疗原因: 死亡, 丢失 (no visit findings to record)

# Visit findings, required on every visit except a 死亡 / 丢失 stop entry.
VISIT_ITEMS: tuple[str, ...] = (
    "supervisor",
    "visit_mode",
    "regimen",
    "regimen_usage",
    "drug_forms",
    "missed_doses",
    "adverse_reaction",
    "complication",
)
# 全程管理情况: required with the stop block, refused without it.
CLOSING_ITEMS: tuple[tuple[str, str], ...] = (
    ("should_visit", "应访视患者次数"),
    ("actual_visit", "实际访视次数"),
    ("should_dose", "应服药次数"),
    ("actual_dose", "实际服药次数"),
    ("closing_doctor", "评估医生签名（全程管理）"),
)


def stopped(payload: Payload) -> bool:
    return not common.blank(payload.get("stop_reason")) or not common.blank(payload.get("stop_date"))


def _visit_items(payload: Payload, ctx: FormContext) -> Any:
    if payload.get("stop_reason") in (DIED, LOST):
        return
    for name in VISIT_ITEMS:
        if common.blank(payload.get(name)):
            yield name, f"{SPEC.title_of(name)}：必须填写"
    if not payload.get("symptoms") and common.blank(payload.get("symptoms_other")):
        yield "symptoms", common.SYMPTOMS_REQUIRED


def _closing(payload: Payload, ctx: FormContext) -> Any:
    for actual, should, what in (
        ("actual_dose", "should_dose", "服药"),
        ("actual_visit", "should_visit", "访视"),
    ):
        a, s = payload.get(actual), payload.get(should)
        if a is not None and s is not None and a > s:
            yield actual, f"实际{what}次数：不能多于应{what}次数（{s} 次）"
    if stopped(payload) and not common.blank(payload.get("next_visit_date")):
        yield "next_visit_date", "下次随访时间：已停止治疗，不应填写下次随访时间"


def _referral_result(payload: Payload, ctx: FormContext) -> Any:
    no_referral = common.blank(payload.get("referral_dept")) and common.blank(payload.get("referral_reason"))
    if no_referral and not common.blank(payload.get("referral_followup_result")):
        yield "referral_followup_result", "转诊2周内随访结果：未填写转诊，不应填写随访结果"


SPEC = FormSpec(
    "肺结核患者随访服务记录表",
    (
        common.visit_date(),
        Number("treatment_month", "治疗月序", required=True, unit="月", low=1, high=24),
        common.supervisor("督导人员", required=False),
        Code("visit_mode", "随访方式", codes="tb_visit_mode"),
        *common.symptoms("tb_followup_symptom"),
        *common.lifestyle(),
        *common.medication(required=False),
        Number("missed_doses", "漏服药次数", unit="次", low=0, high=100),
        Code("adverse_reaction", "药物不良反应", codes="none_have", companion="adverse_reaction_desc"),
        Code("complication", "并发症或合并症", codes="none_have", companion="complication_desc"),
        Text("referral_dept", "转诊科别", max_length=50),
        Text("referral_reason", "转诊原因"),
        Text("referral_followup_result", "转诊2周内随访结果"),
        Text("handling_opinion", "处理意见", max_length=500),
        Date("next_visit_date", "下次随访时间", future_ok=True),
        Text("visit_doctor", "随访医生签名", required=True, max_length=50),
        Date("stop_date", "出现停止治疗时间"),
        Code("stop_reason", "停止治疗原因", codes="tb_stop_reason"),
        Number("should_visit", "应访视患者次数", unit="次", low=1, high=300),
        Number("actual_visit", "实际访视次数", unit="次", low=0, high=300),
        Number("should_dose", "应服药次数", unit="次", low=1, high=1000),
        Number("actual_dose", "实际服药次数", unit="次", low=0, high=1000),
        Text("closing_doctor", "评估医生签名（全程管理）", max_length=50),
    ),
    (
        Rule(_visit_items, "visit findings required unless the stop reason is 死亡 or 丢失"),
        common.SYMPTOMS_EXCLUSIVE,
        *common.LIFESTYLE_RULES,
        both_or_neither("referral_dept", "referral_reason", "转诊科别和转诊原因"),
        Rule(_referral_result, "a referral result only after a referral"),
        common.NEXT_VISIT_AFTER_VISIT,
        both_or_neither("stop_date", "stop_reason", "出现停止治疗时间和停止治疗原因"),
        *(required_when(name, title, stopped, "停止治疗") for name, title in CLOSING_ITEMS),
        Rule(_closing, "actual <= should; no next visit once stopped"),
    ),
)


def adherence_rate(actual_dose: int, should_dose: int) -> float:
    """服药率 (%) = 实际服药次数 / 应服药次数 × 100, one decimal, half up."""
    rate = (Decimal(actual_dose) * 100 / Decimal(should_dose)).quantize(Decimal("0.1"), ROUND_HALF_UP)
    return float(rate)


def derive(payload: Payload, ctx: SaveContext) -> dict[str, Any]:
    case = ctx.case
    assert case is not None  # needs_case
    common.not_before_notice(
        case,
        {
            "visit_date": ("随访时间", payload["visit_date"]),
            "stop_date": ("出现停止治疗时间", payload.get("stop_date")),
        },
    )
    visit = date.fromisoformat(payload["visit_date"])
    months = case.intensive_months or schedule.intensive_months_of(payload.get("regimen"))
    start = case.treatment_started_on or schedule.first_visit_on(case) or schedule.notice_day(case)
    planned = schedule.plan(visit, payload.get("supervisor"), months, start)
    if stopped(payload):
        return {
            **planned,
            "next_visit_date_suggested": None,
            "next_due_on": None,
            "closing_assessment": True,
            "adherence_rate": adherence_rate(payload["actual_dose"], payload["should_dose"]),
        }
    return {
        **planned,
        "next_due_on": payload.get("next_visit_date") or planned["next_visit_date_suggested"],
        "closing_assessment": False,
    }


def after_save(form: HealthForm, payload: Payload, derived: dict[str, Any], ctx: SaveContext) -> None:
    case = ctx.case
    assert case is not None
    if case.intensive_months is None:
        case.intensive_months = derived["intensive_months"]
    schedule.reschedule(form, case, payload, derived)


def result_code(payload: Payload, derived: dict[str, Any]) -> str:
    """ "m<n>" (第 n 月) for a visit, "stop<reason>" once treatment stopped."""
    if payload.get("stop_reason"):
        return f"stop{payload['stop_reason']}"
    return f"m{payload['treatment_month']}"


def result_label(code: str) -> str:
    if code.startswith("stop"):
        return f"停止治疗：{CODES['tb_stop_reason'].label(code[4:])}"
    return f"第 {code[1:]} 月"


# The printed form shows the derived 服药率 in the 全程管理情况 block.
PRINT_SPEC = FormSpec(SPEC.title, (*SPEC.fields, Number("adherence_rate", "服药率", unit="%", places=1)))

SECTIONS = (
    Section("随访", ("visit_date", "treatment_month", "supervisor", "visit_mode")),
    Section("症状及体征", ("symptoms", "symptoms_other")),
    Section("生活方式指导", ("smoking_now", "smoking_target", "drinking_now", "drinking_target")),
    Section("用药", ("regimen", "regimen_usage", "drug_forms", "missed_doses")),
    Section("药物不良反应", ("adverse_reaction",)),
    Section("并发症或合并症", ("complication",)),
    Section("转诊", ("referral_dept", "referral_reason", "referral_followup_result")),
    Section("处理意见", ("handling_opinion",)),
    Section("下次随访", ("next_visit_date", "visit_doctor")),
    Section("停止治疗及原因", ("stop_date", "stop_reason")),
    Section(
        "全程管理情况",
        ("should_visit", "actual_visit", "should_dose", "actual_dose", "adherence_rate", "closing_doctor"),
    ),
)


def render(ctx: PrintContext) -> bytes:
    payload = {**ctx.payload, "adherence_rate": ctx.derived.get("adherence_rate")}
    footer = ["纸质表每次随访占一列；本系统每次随访单独打印一页。"]
    if not stopped(ctx.payload) and not ctx.payload.get("next_visit_date"):
        suggested = ctx.derived.get("next_visit_date_suggested", "")
        footer.append(f"下次随访时间（系统按督导方式建议）：{suggested}")
    return render_form(
        replace(ctx, payload=payload),
        PRINT_SPEC,
        SECTIONS,
        header_extra=[("治疗月序", f"第 {ctx.payload.get('treatment_month', '')} 月")],
        footer=footer,
    )


DEFINITION = register(
    FormDefinition(
        type=schedule.FOLLOW_UP,
        title=SPEC.title,
        category=Category.TB,
        spec=SPEC,
        date_field="visit_date",
        # With the stop block filled it is also the 结案评估 (package item `tb_closing_assessment`):
        # derived `closing_assessment` tells a FORM_SAVED_LISTENERS listener so.
        service_type="tb_follow_up",
        needs_case=True,
        derive=derive,
        after_save=after_save,
        after_void=schedule.after_void,
        result_code=result_code,
        result_label=result_label,
        render_pdf=render,
    )
)
