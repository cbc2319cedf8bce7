"""严重精神障碍患者随访服务记录表 (spec §6.2) and the 本次随访分类 check (§6.3)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

from app.health_records.codes import CODES, SMD_RISK_LEVEL_DEFINITIONS
from app.health_records.forms import FormDefinition, PrintContext, SaveContext, register
from app.health_records.forms.smd.common import (
    BASICALLY_STABLE,
    FOLLOW_UP,
    RISK_BEHAVIOUR_COUNTS,
    STABLE,
    UNSTABLE,
    counts_match,
    risk_behaviour_fields,
)
from app.health_records.forms.smd.schedule import MAX_INTERVAL_DAYS, after_save, followup_days, reschedule
from app.health_records.models import Category
from app.health_records.printing.layout import Section, render_form
from app.health_records.spec import (
    Code,
    Date,
    Field,
    FormContext,
    FormInvalid,
    FormSpec,
    MultiCode,
    Number,
    Payload,
    Rows,
    Rule,
    Text,
    required_when,
    selected,
)

# --- the form (§6.2) ---------------------------------------------------------------------------


def _positive_dose(row: Payload, ctx: FormContext) -> Iterator[tuple[str, str]]:
    if row.get("dose_mg") is not None and row["dose_mg"] <= 0:
        yield "dose_mg", "每次剂量：须大于 0 mg"


def _medication_rows(name: str, title: str) -> Rows:
    return Rows(
        name,
        title,
        fields=(
            Text("drug_name", "药物名称", required=True, max_length=100),
            Code("per_unit", "用法（每日/每月）", required=True, codes="smd_per_unit"),
            Number("times", "用法·次数", required=True, unit="次", low=1, high=10),
            Number("dose_mg", "每次剂量", required=True, unit="mg", low=0, high=5000, places=2),
        ),
        max_rows=3,
        rules=(Rule(_positive_dose, "dose > 0"),),
    )


FOLLOW_UP_FIELDS: tuple[Field, ...] = (
    Date("visit_date", "随访日期", required=True),
    Code("visit_mode", "本次随访形式", required=True, codes="smd_visit_mode"),
    Code("lost_reason", "若失访，原因", codes="smd_lost_reason"),
    Date("death_date", "死亡日期"),
    Code("death_cause", "死亡原因", codes="smd_death_cause", companion="death_other"),
    Code("death_somatic", "死亡原因·躯体疾病", codes="smd_death_somatic"),
    Code("risk_level", "危险性评估", codes="smd_risk_level"),
    MultiCode("current_symptoms", "目前症状", codes="smd_symptom"),
    Code("insight", "自知力", codes="smd_insight"),
    Code("sleep", "睡眠情况", codes="good_fair_poor"),
    Code("diet", "饮食情况", codes="good_fair_poor"),
    Code("sf_selfcare", "社会功能情况·个人生活料理", codes="good_fair_poor"),
    Code("sf_housework", "社会功能情况·家务劳动", codes="good_fair_poor"),
    Code("sf_work", "社会功能情况·生产劳动及工作", codes="smd_work_function"),
    Code("sf_learning", "社会功能情况·学习能力", codes="good_fair_poor"),
    Code("sf_social", "社会功能情况·社会人际交往", codes="good_fair_poor"),
    *risk_behaviour_fields(required=False),
    Code("lockup", "两次随访期间关锁情况", codes="smd_lockup"),
    Code("hospitalization", "两次随访期间住院情况", codes="smd_hospitalization"),
    Date("last_discharge_date", "末次出院时间"),
    Code("lab_tests", "实验室检查", codes="none_have", companion="lab_tests_desc"),
    Code("med_adherence", "用药依从性", codes="smd_adherence"),
    Code("adverse_reaction", "药物不良反应", codes="smd_adverse_reaction", companion="adverse_reaction_desc"),
    Code("treatment_effect", "治疗效果", codes="smd_treatment_effect"),
    Code("referral", "是否转诊", codes="no_yes"),
    Text("referral_reason", "转诊原因"),
    Text("referral_org_dept", "转诊至机构及科室"),
    _medication_rows("medications", "用药情况"),
    _medication_rows("med_guidance", "用药指导"),
    MultiCode("rehab_measures", "康复措施", codes="smd_rehab", companion="rehab_other"),
    Code("visit_class", "本次随访分类", codes="smd_visit_class"),
    Date("next_visit_date", "下次随访日期", future_ok=True),
    Text("visit_doctor", "随访医生签名", max_length=50),
)

_SF_FIELDS = ("sf_selfcare", "sf_housework", "sf_work", "sf_learning", "sf_social")
# The assessment of a visit: required when the patient was seen, refused on a 失访 or death visit.
ASSESSMENT_REQUIRED: tuple[str, ...] = (
    "risk_level",
    "insight",
    "sleep",
    "diet",
    *_SF_FIELDS,
    "risk_behaviours",
    "lockup",
    "hospitalization",
    "lab_tests",
    "med_adherence",
    "adverse_reaction",
    "treatment_effect",
    "referral",
    "visit_class",
    "visit_doctor",
)
ASSESSMENT_OPTIONAL: tuple[str, ...] = (
    "current_symptoms",
    "medications",
    "med_guidance",
    "rehab_measures",
)
_TITLES = {f.name: f.title for f in FOLLOW_UP_FIELDS}


def outcome_of(payload: Payload) -> str:
    """What the visit was: "death" (death date or cause given), "lost" (失访原因 given) or "visit"."""
    if payload.get("death_date") is not None or payload.get("death_cause") is not None:
        return "death"
    if payload.get("lost_reason") is not None:
        return "lost"
    return "visit"


def _outcome_rules(payload: Payload, ctx: FormContext) -> Iterator[tuple[str, str]]:
    outcome = outcome_of(payload)
    if outcome == "death":
        if payload.get("lost_reason") is not None:
            yield "lost_reason", "若失访，原因：患者已死亡时不填写失访原因，请只填写死亡日期和原因"
        if payload.get("death_date") is None:
            yield "death_date", "死亡日期：填写死亡原因时必须填写"
        if payload.get("death_cause") is None:
            yield "death_cause", "死亡原因：填写死亡日期时必须填写"
        if payload.get("next_visit_date") is not None:
            yield "next_visit_date", "下次随访日期：患者已死亡，不应填写"
    if outcome in ("death", "lost"):
        why = "患者死亡" if outcome == "death" else "失访"
        for name in (*ASSESSMENT_REQUIRED, *ASSESSMENT_OPTIONAL):
            if name != "visit_doctor" and payload.get(name) not in (None, []):
                yield name, f"{_TITLES[name]}：{why}时没有随访评估，不应填写"
        for _, name, words in RISK_BEHAVIOUR_COUNTS:
            if payload.get(name) is not None:
                yield name, f"{words}次数：{why}时没有随访评估，不应填写"
        return
    for name in ASSESSMENT_REQUIRED:
        if payload.get(name) in (None, []):
            yield name, f"{_TITLES[name]}：必须填写"


def _dates_in_order(payload: Payload, ctx: FormContext) -> Iterator[tuple[str, str]]:
    visit = payload.get("visit_date")
    if visit is None:
        return
    for name, title in (("death_date", "死亡日期"), ("last_discharge_date", "末次出院时间")):
        value = payload.get(name)
        if value is not None and value > visit:
            yield name, f"{title}：不能晚于随访日期"
    following = payload.get("next_visit_date")
    if following is not None and following <= visit:
        yield "next_visit_date", "下次随访日期：应晚于随访日期"


FOLLOW_UP_SPEC = FormSpec(
    "严重精神障碍患者随访服务记录表",
    FOLLOW_UP_FIELDS,
    (
        Rule(_outcome_rules, "lost/death visits carry no assessment; ordinary visits the whole one"),
        required_when(
            "death_somatic",
            "死亡原因·躯体疾病",
            lambda p: selected(p, "death_cause", "1"),
            "死亡原因为“躯体疾病”",
        ),
        required_when(
            "last_discharge_date",
            "末次出院时间",
            lambda p: selected(p, "hospitalization", "2"),
            "住院情况为“曾住院，现未住院”",
        ),
        required_when("referral_reason", "转诊原因", lambda p: selected(p, "referral", "2"), "转诊"),
        required_when(
            "referral_org_dept", "转诊至机构及科室", lambda p: selected(p, "referral", "2"), "转诊"
        ),
        Rule(counts_match, "a count > 0 for each selected risk behaviour"),
        Rule(_dates_in_order, "death/discharge <= visit < next visit"),
    ),
)


# --- classification (§6.3) and intervals ------------------------------------------------------


def classify(payload: Payload) -> tuple[str, list[str]]:
    """The class §6.3 suggests for an ordinary visit, and the findings that decide it."""
    unstable: list[str] = []
    basic: list[str] = []
    risk = int(payload["risk_level"])
    if risk >= 3:
        unstable.append(f"危险性评估为{risk}级")
    elif risk >= 1:
        basic.append(f"危险性评估为{risk}级")
    insight = payload.get("insight")
    if insight == "3":
        unstable.append("自知力缺失")
    elif insight == "2":
        basic.append("自知力不全")
    symptoms = payload.get("current_symptoms") or []
    if symptoms:
        basic.append("存在精神症状（" + "、".join(CODES["smd_symptom"].labels(symptoms)) + "）")
    poor = [_TITLES[name].split("·")[1] for name in _SF_FIELDS if payload.get(name) == "3"]
    if poor:
        basic.append("社会功能较差（" + "、".join(poor) + "）")
    if unstable:
        return UNSTABLE, unstable
    if basic:
        return BASICALLY_STABLE, basic
    return STABLE, ["危险性评估为0级，无精神症状，自知力完全，社会功能一般或良好"]


def _label(list_name: str, code: str) -> str:
    return CODES[list_name].label(code)


def derive_follow_up(payload: Payload, ctx: SaveContext) -> dict[str, Any]:
    visit = date.fromisoformat(payload["visit_date"])
    case = ctx.case
    if case is not None and visit < case.opened_on:
        raise FormInvalid({"visit_date": f"随访日期：不能早于建立专案日期（{case.opened_on.isoformat()}）"})
    outcome = outcome_of(payload)
    derived: dict[str, Any] = {"outcome": outcome, "warnings": []}
    if outcome == "death":
        derived.update(next_due_on=None, deceased_on=payload["death_date"])
        return derived
    days = followup_days()
    warnings: list[str] = derived["warnings"]
    if outcome == "visit":
        chosen = payload["visit_class"]
        suggested, reasons = classify(payload)
        derived.update(
            suggested_class=suggested,
            suggested_class_label=_label("smd_visit_class", suggested),
            class_reasons=reasons,
            class_mismatch=chosen != suggested,
        )
        if chosen != suggested:
            warnings.append(
                f"本次随访分类选择“{_label('smd_visit_class', chosen)}”，但按危险性评估和病情"
                f"（{'；'.join(reasons)}）应为“{_label('smd_visit_class', suggested)}”，请核对"
            )
        basis = chosen
    else:  # 失访: a patient who could not be reached is not known to be stable
        basis = UNSTABLE
    default_next = visit + timedelta(days=min(days[basis], MAX_INTERVAL_DAYS))
    latest = visit + timedelta(days=MAX_INTERVAL_DAYS)
    chosen_next = payload.get("next_visit_date")
    due = date.fromisoformat(chosen_next) if chosen_next else default_next
    if due > latest:
        warnings.append(
            f"下次随访日期距本次随访超过 {MAX_INTERVAL_DAYS} 天（每年至少随访 4 次），"
            f"随访计划按 {latest.isoformat()} 安排"
        )
        due = latest
    derived.update(default_next_visit_date=default_next.isoformat(), next_due_on=due.isoformat())
    return derived


FOLLOW_UP_SECTIONS = (
    Section("随访", ("visit_date", "visit_mode")),
    Section("失访或死亡", ("lost_reason", "death_date", "death_cause", "death_somatic")),
    Section("病情", ("risk_level", "current_symptoms", "insight", "sleep", "diet")),
    Section("社会功能情况", _SF_FIELDS),
    Section("危险行为", ("risk_behaviours", *(name for _, name, _ in RISK_BEHAVIOUR_COUNTS))),
    Section("两次随访期间", ("lockup", "hospitalization", "last_discharge_date")),
    Section("检查与治疗", ("lab_tests", "med_adherence", "adverse_reaction", "treatment_effect")),
    Section("转诊", ("referral", "referral_reason", "referral_org_dept")),
    Section("用药", ("medications", "med_guidance")),
    Section("康复与分类", ("rehab_measures", "visit_class", "next_visit_date", "visit_doctor")),
)


def render_follow_up(ctx: PrintContext) -> bytes:
    footer = []
    if ctx.derived.get("suggested_class_label"):
        footer.append(f"按危险性评估和病情建议分类：{ctx.derived['suggested_class_label']}")
    footer.extend(str(w) for w in ctx.derived.get("warnings") or [])
    return render_form(
        ctx,
        FOLLOW_UP_SPEC,
        FOLLOW_UP_SECTIONS,
        header_extra=[("随访日期", str(ctx.payload.get("visit_date", "")))],
        footer=footer,
        notes=[
            *(f"危险性评估 {level}级：{text}。" for level, text in SMD_RISK_LEVEL_DEFINITIONS),
            "本次随访分类：不稳定（危险性 3～5 级，或精神症状明显、自知力缺乏、有严重药物不良反应或严重躯体疾病）"
            "2 周内随访；基本稳定（危险性 1～2 级，或精神症状、自知力、社会功能状况至少有一方面较差）2 周时随访；"
            "稳定 3 个月时随访。每年至少随访 4 次。",
            "若失访或死亡，只填写随访日期、随访形式和失访原因或死亡日期及原因。",
        ],
        notes_on_reverse=True,
    )


register(
    FormDefinition(
        type=FOLLOW_UP,
        title=FOLLOW_UP_SPEC.title,
        category=Category.SMD,
        spec=FOLLOW_UP_SPEC,
        date_field="visit_date",
        service_type="mental_follow_up",
        needs_case=True,
        derive=derive_follow_up,
        after_save=after_save,
        after_void=reschedule,
        result_code=lambda payload, derived: payload.get("visit_class"),
        result_label=lambda code: CODES["smd_visit_class"].label(code),
        render_pdf=render_follow_up,
    )
)
