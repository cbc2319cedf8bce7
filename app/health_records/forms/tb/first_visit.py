"""肺结核患者第一次入户随访记录表 (spec §4.1): once per case, within 72 h of the notice."""

from __future__ import annotations

from datetime import date
from typing import Any

from app.core import clock
from app.health_records.forms import FormDefinition, PrintContext, SaveContext, register
from app.health_records.forms.tb import common, schedule
from app.health_records.models import Category, HealthForm
from app.health_records.printing.layout import Section, render_form
from app.health_records.spec import Code, Date, FormContext, FormSpec, Payload, Rule, Text

# 健康教育及培训, in printed order (each 1 掌握 2 未掌握).
EDUCATION: tuple[tuple[str, str], ...] = (
    ("edu_record_card", "服药记录卡的填写"),
    ("edu_method_storage", "服药方法及药品存放"),
    ("edu_course", "肺结核治疗疗程"),
    ("edu_irregular_harm", "不规律服药危害"),
    ("edu_adverse_reactions", "服药后不良反应及处理"),
    ("edu_sputum_recheck", "治疗期间复诊查痰"),
    ("edu_travel_adherence", "外出期间如何坚持服药"),
    ("edu_habits", "生活习惯及注意事项"),
    ("edu_contact_screening", "密切接触者检查"),
)


def _symptoms_required(payload: Payload, ctx: FormContext) -> Any:
    if not payload.get("symptoms") and common.blank(payload.get("symptoms_other")):
        yield "symptoms", common.SYMPTOMS_REQUIRED


SPEC = FormSpec(
    "肺结核患者第一次入户随访记录表",
    (
        common.visit_date(),
        Code("visit_mode", "随访方式", required=True, codes="tb_first_visit_mode"),  # no 电话
        Code("patient_type", "患者类型", required=True, codes="tb_patient_type"),
        Code("sputum", "痰菌情况", required=True, codes="tb_sputum"),
        Code("drug_resistance", "耐药情况", required=True, codes="tb_drug_resistance"),
        *common.symptoms("tb_first_symptom"),
        *common.medication(required=True),
        common.supervisor("督导人员选择", required=True),
        Code("separate_room", "单独的居室", required=True, codes="tb_separate_room"),
        Code("ventilation", "通风情况", required=True, codes="tb_ventilation"),
        *common.lifestyle(),
        Text("drug_pickup_place", "取药地点", required=True, max_length=100),
        Date("drug_pickup_date", "取药时间", required=True, future_ok=True),
        *(Code(name, title, required=True, codes="tb_mastery") for name, title in EDUCATION),
        Date("next_visit_date", "下次随访时间", future_ok=True),
        Text("assessing_doctor", "评估医生签名", required=True, max_length=50),
    ),
    (
        Rule(_symptoms_required, "symptoms or the 其他 text"),
        common.SYMPTOMS_EXCLUSIVE,
        *common.LIFESTYLE_RULES,
        common.NEXT_VISIT_AFTER_VISIT,
    ),
)


def derive(payload: Payload, ctx: SaveContext) -> dict[str, Any]:
    case = ctx.case
    assert case is not None  # needs_case
    common.not_before_notice(case, {"visit_date": ("随访时间", payload["visit_date"])})
    visit = date.fromisoformat(payload["visit_date"])
    deadline = schedule.first_visit_due(case)
    within = visit <= deadline
    months = schedule.intensive_months_of(payload.get("regimen"))
    planned = schedule.plan(visit, payload.get("supervisor"), months, case.treatment_started_on or visit)
    warnings = []
    if not within:
        warnings.append(f"第一次入户随访应在接到通知后72小时内（{deadline.isoformat()}前）完成，本次已超时")
    return {
        "notice_deadline": deadline.isoformat(),
        "within_72h": within,
        **planned,
        "next_due_on": payload.get("next_visit_date") or planned["next_visit_date_suggested"],
        "warnings": warnings,
    }


def after_save(form: HealthForm, payload: Payload, derived: dict[str, Any], ctx: SaveContext) -> None:
    case = ctx.case
    assert case is not None
    case.intensive_months = derived["intensive_months"]
    schedule.reschedule(form, case, payload, derived, first_visit_within_72h=derived["within_72h"])


SECTIONS = (
    Section("随访情况", ("visit_date", "visit_mode", "patient_type", "sputum", "drug_resistance")),
    Section("症状及体征", ("symptoms", "symptoms_other")),
    Section("用药", ("regimen", "regimen_usage", "drug_forms")),
    Section("督导人员选择", ("supervisor",)),
    Section("家庭居住环境评估", ("separate_room", "ventilation")),
    Section("生活方式评估", ("smoking_now", "smoking_target", "drinking_now", "drinking_target")),
    Section("健康教育及培训", ("drug_pickup_place", "drug_pickup_date", *(n for n, _ in EDUCATION))),
    Section("随访安排", ("next_visit_date", "assessing_doctor")),
)


def render(ctx: PrintContext) -> bytes:
    case = ctx.form.case
    footer = []
    if case is not None and case.notified_at is not None:
        on_time = "是" if ctx.derived.get("within_72h") else "否（超时）"
        footer.append(
            f"接到上级专业机构通知时间：{clock.local(case.notified_at):%Y-%m-%d %H:%M}    "
            f"应完成日期：{ctx.derived.get('notice_deadline', '')}    72小时内随访：{on_time}"
        )
    if not ctx.payload.get("next_visit_date") and ctx.derived.get("next_visit_date_suggested"):
        footer.append(f"下次随访时间（系统按督导方式建议）：{ctx.derived['next_visit_date_suggested']}")
    return render_form(ctx, SPEC, SECTIONS, footer=footer)


RESULT_LABELS = {"1": "72小时内完成", "2": "超过72小时"}

DEFINITION = register(
    FormDefinition(
        type=schedule.FIRST_VISIT,
        title=SPEC.title,
        category=Category.TB,
        spec=SPEC,
        date_field="visit_date",
        service_type="tb_first_visit",
        once_per="case",
        needs_case=True,
        derive=derive,
        after_save=after_save,
        after_void=schedule.after_void,
        result_code=lambda payload, derived: "1" if derived.get("within_72h") else "2",
        result_label=lambda code: RESULT_LABELS.get(code, code),
        render_pdf=render,
    )
)
