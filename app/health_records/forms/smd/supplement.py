"""严重精神障碍患者个人信息补充表 (spec §6.1): filled once per case, at intake."""

from __future__ import annotations

from app.health_records.forms import FormDefinition, PrintContext, register
from app.health_records.forms.smd.common import (
    RISK_BEHAVIOUR_COUNTS,
    SUPPLEMENT,
    after_birth,
    counts_match,
    on_or_after,
    risk_behaviour_fields,
)
from app.health_records.forms.smd.schedule import after_save, reschedule
from app.health_records.models import Category
from app.health_records.printing.layout import Section, render_form
from app.health_records.spec import Code, Date, FormSpec, MultiCode, Number, Rule, Text

# --- 严重精神障碍患者个人信息补充表 (§6.1) -----------------------------------------------------------

SUPPLEMENT_SPEC = FormSpec(
    "严重精神障碍患者个人信息补充表",
    (
        Text("guardian_name", "监护人姓名", max_length=50),
        Text("guardian_relation", "与患者关系", max_length=20),
        Text("guardian_address", "监护人住址"),
        Text("guardian_phone", "监护人电话", max_length=30),
        Text("committee_contact", "辖区村（居）委会联系人", max_length=50),
        Text("committee_phone", "辖区村（居）委会联系电话", max_length=30),
        Code("household_type", "户别", required=True, codes="smd_household_type"),
        Code("employment", "就业情况", required=True, codes="smd_employment"),
        Code("consent", "知情同意", required=True, codes="smd_consent"),
        Text("consent_signatory", "知情同意签字", required=True, max_length=50),
        Date("consent_date", "知情同意签字时间", required=True),
        Date("onset_date", "初次发病时间", required=True),
        MultiCode("past_symptoms", "既往主要症状", required=True, codes="smd_symptom"),
        Code("past_lockup", "既往关锁情况", required=True, codes="smd_lockup"),
        Code("past_outpatient", "既往治疗情况·门诊", required=True, codes="smd_past_outpatient"),
        Date("first_antipsychotic_date", "首次抗精神病药治疗时间"),
        Number(
            "past_admissions",
            "既往治疗情况·住院（曾住精神专科医院/综合医院精神专科）",
            required=True,
            unit="次",
            low=0,
            high=99,
        ),
        Text("diagnosis", "目前诊断", required=True),
        Text("diagnosis_hospital", "确诊医院"),
        Date("diagnosis_date", "确诊日期"),
        Code("last_treatment_effect", "最近一次治疗效果", codes="smd_last_effect"),
        *risk_behaviour_fields(required=True),
        Code("economic_status", "经济状况", required=True, codes="smd_economic_status"),
        Text("specialist_opinion", "专科医生的意见", max_length=500),
        Date("filled_date", "填表日期", required=True),
        Text("doctor", "医生签字", required=True, max_length=50),
    ),
    (
        after_birth("onset_date", "初次发病时间"),
        on_or_after("first_antipsychotic_date", "首次抗精神病药治疗时间", "onset_date", "初次发病时间"),
        on_or_after("diagnosis_date", "确诊日期", "onset_date", "初次发病时间"),
        Rule(counts_match, "a count > 0 for each selected risk behaviour"),
    ),
)


# --- printing ---------------------------------------------------------------------------------

SUPPLEMENT_SECTIONS = (
    Section("监护人", ("guardian_name", "guardian_relation", "guardian_address", "guardian_phone")),
    Section("辖区村（居）委会", ("committee_contact", "committee_phone")),
    Section("基本情况", ("household_type", "employment", "consent", "consent_signatory", "consent_date")),
    Section("病史", ("onset_date", "past_symptoms", "past_lockup")),
    Section("既往治疗情况", ("past_outpatient", "first_antipsychotic_date", "past_admissions")),
    Section("目前诊断情况", ("diagnosis", "diagnosis_hospital", "diagnosis_date", "last_treatment_effect")),
    Section("危险行为", ("risk_behaviours", *(name for _, name, _ in RISK_BEHAVIOUR_COUNTS))),
    Section("其他", ("economic_status", "specialist_opinion", "filled_date", "doctor")),
)


def render_supplement(ctx: PrintContext) -> bytes:
    return render_form(
        ctx,
        SUPPLEMENT_SPEC,
        SUPPLEMENT_SECTIONS,
        header_extra=[("填表日期", str(ctx.payload.get("filled_date", "")))],
        notes=[
            "本表在患者纳入管理时，经全面评估后填写一次。",
            "危险行为：选择某项时在其后填写次数；“无”不能与其他选项同时选择。",
        ],
    )


register(
    FormDefinition(
        type=SUPPLEMENT,
        title=SUPPLEMENT_SPEC.title,
        category=Category.SMD,
        spec=SUPPLEMENT_SPEC,
        date_field="filled_date",
        once_per="case",
        needs_case=True,
        after_save=after_save,
        after_void=reschedule,
        masked={
            "guardian_name": "name",
            "guardian_address": "address",
            "guardian_phone": "phone",
            "consent_signatory": "name",
        },
        render_pdf=render_supplement,
    )
)
