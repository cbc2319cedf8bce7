"""严重精神障碍: 个人信息补充表 and 随访服务记录表 (spec §6.1, §6.2): rules, counts, the death
block, the class warning, once per case, printing. Schedule: test_smd_schedule.py; DATA-05:
test_smd_access.py."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest
from flask import Flask

from app.core.db import commit
from app.core.errors import BusinessRuleViolation
from app.health_records.codes import SMD_RISK_LEVEL_DEFINITIONS
from app.health_records.services import cases, forms
from tests.factories import as_principal, token_for
from tests.health_records.smd_support import (
    MEDICATION,
    World,
    days_ago,
    fill,
    lost_visit,
    make_world,
    refusal,
    supplement,
    visit,
)


@pytest.fixture
def world(app: Flask) -> World:
    return make_world()


def pdftotext(data: bytes) -> str:
    """The text in drawing order (`-raw`: a table cell's lines stay together), whitespace removed."""
    text = subprocess.run(
        ["pdftotext", "-raw", "-enc", "UTF-8", "-", "-"], input=data, capture_output=True, check=True
    ).stdout.decode("utf-8")
    return re.sub(r"\s+", "", text)


# --- 个人信息补充表 -----------------------------------------------------------------------------


def test_a_complete_supplement_is_saved_with_its_labels(app: Flask, world: World) -> None:
    form = fill(world, "smd_supplement", supplement())
    assert (form.category, form.case_id, form.institution_id) == ("smd", world.case.id, world.centre.id)
    with as_principal(world.doctor):
        view = forms.view_form(form.id)
        commit()
    labels = view.definition.spec.labels(view.version.payload)
    assert labels["household_type"] == "城镇"
    assert labels["risk_behaviours"] == ["轻度滋事", "自伤"]
    assert labels["economic_status"] == "非贫困"


@pytest.mark.parametrize(
    ("overrides", "errors"),
    [
        # 经济状况: the 3rd edition has only 1 and 2 (spec open point 4): 3 不详 is refused.
        (
            {"economic_status": "3"},
            {"economic_status": "经济状况：代码“3”不在可选范围内（1 贫困，在当地贫困线标准以下、2 非贫困）"},
        ),
        ({"employment": "8"}, {"employment_other": "就业情况：选择“其他”时须填写具体内容"}),
        (
            {"employment_other": "自由职业"},
            {"employment_other": "就业情况：未选择需要说明的选项，不应填写具体内容"},
        ),
        ({"past_symptoms": ["1", "12"]}, {"past_symptoms_other": "既往主要症状：选择“其他”时须填写具体内容"}),
        (
            {"consent": "2"},
            {"consent": "知情同意：代码“2”不在可选范围内（0 不同意参加管理、1 同意参加管理）"},
        ),
        ({"consent_signatory": None}, {"consent_signatory": "知情同意签字：必须填写"}),
        ({"household_type": None}, {"household_type": "户别：必须填写"}),
        ({"doctor": None}, {"doctor": "医生签字：必须填写"}),
        (
            {"first_antipsychotic_date": "2009-01-01"},
            {"first_antipsychotic_date": "首次抗精神病药治疗时间：不能早于初次发病时间"},
        ),
        ({"diagnosis_date": "2010-04-30"}, {"diagnosis_date": "确诊日期：不能早于初次发病时间"}),
        (
            {"onset_date": "1980-01-01", "first_antipsychotic_date": None, "diagnosis_date": None},
            {"onset_date": "初次发病时间：不能早于出生日期"},
        ),
        ({"filled_date": "2999-01-01"}, {"filled_date": "填表日期：不能晚于今天"}),
        (
            {"past_admissions": -1},
            {
                "past_admissions": "既往治疗情况·住院（曾住精神专科医院/综合医院精神专科）：不能小于 0次，请核对"
            },
        ),
        ({"risk_behaviours": ["7", "1"]}, {"risk_behaviours": "危险行为：“无”不能与其他选项同时选择"}),
    ],
)
def test_supplement_rules(
    app: Flask, world: World, overrides: dict[str, Any], errors: dict[str, str]
) -> None:
    assert refusal(world, "smd_supplement", supplement(**overrides)) == errors


@pytest.mark.parametrize("form_type", ["smd_supplement", "smd_follow_up"])
def test_each_selected_risk_behaviour_needs_a_count_and_only_those(
    app: Flask, world: World, form_type: str
) -> None:
    build = supplement if form_type == "smd_supplement" else visit
    # selected with a count, selected without one, selected with 0, and a count for an unselected item
    payload = build(
        risk_behaviours=["2", "3", "4", "6"],
        trouble_n=1,
        disaster_n=0,
        suicide_attempt_n=3,
        mild_trouble_n=None,
        self_injury_n=2,
    )
    assert refusal(world, form_type, payload) == {
        "disaster_n": "肇祸次数：选择危险行为“肇祸”时须填写次数（大于 0）",
        "other_harm_n": "其他危害行为次数：选择危险行为“其他危害行为”时须填写次数（大于 0）",
        "self_injury_n": "自伤次数：未选择危险行为“自伤”，不应填写次数",
    }
    none_with_count = build(risk_behaviours=["7"], mild_trouble_n=1, self_injury_n=None)
    assert refusal(world, form_type, none_with_count) == {
        "mild_trouble_n": "轻度滋事次数：未选择危险行为“轻度滋事”，不应填写次数"
    }
    every = build(
        risk_behaviours=["1", "2", "3", "4", "5", "6"],
        mild_trouble_n=1,
        trouble_n=2,
        disaster_n=1,
        other_harm_n=4,
        self_injury_n=1,
        suicide_attempt_n=1,
    )
    if form_type == "smd_follow_up":
        every.update(risk_level="4", insight="2", visit_class="1")
    assert fill(world, form_type, every).version == 1


def test_one_supplement_per_case_a_second_is_a_409(app: Flask, world: World) -> None:
    fill(world, "smd_supplement", supplement())
    client = app.test_client()
    response = client.post(
        f"/api/v1/health-records/{world.record.id}/forms",
        json={"form_type": "smd_supplement", "data": supplement()},
        headers={"Authorization": f"Bearer {token_for(world.doctor)}", "Idempotency-Key": "smd-supplement-2"},
    )
    assert response.status_code == 409
    body = response.get_json()
    assert (
        body["code"] == "form_exists"
        and body["message"] == "该专案已有严重精神障碍患者个人信息补充表，请在原表上修改"
    )


def test_smd_forms_need_an_open_case(app: Flask, world: World) -> None:
    with as_principal(world.doctor):
        cases.close_case(world.case.id, reason="迁出")
        commit()
        with pytest.raises(BusinessRuleViolation) as caught:
            forms.create_form(world.record.id, "smd_follow_up", visit())
    assert caught.value.code == "case_required"
    assert caught.value.message == "该居民没有进行中的严重精神障碍患者管理专案，请先建立专案"


# --- 随访服务记录表 -----------------------------------------------------------------------------


def test_a_422_over_http_names_the_field_in_chinese(app: Flask, world: World) -> None:
    client = app.test_client()
    response = client.post(
        f"/api/v1/health-records/{world.record.id}/forms",
        json={"form_type": "smd_follow_up", "data": visit(risk_level="6")},
        headers={"Authorization": f"Bearer {token_for(world.doctor)}", "Idempotency-Key": "smd-visit-422"},
    )
    assert response.status_code == 422
    body = response.get_json()
    assert body["code"] == "form_invalid"
    assert body["errors"] == {
        "risk_level": "危险性评估：代码“6”不在可选范围内（0 0级、1 1级、2 2级、3 3级、4 4级、5 5级）"
    }


def test_a_stable_visit_is_saved_literally_with_its_class(app: Flask, world: World) -> None:
    form = fill(world, "smd_follow_up", visit(risk_level="0"))
    assert form.result_code == "3"
    with as_principal(world.doctor):
        view = forms.view_form(form.id)
        commit()
    assert view.version.payload["risk_level"] == "0"  # 0级 stored as printed, not renumbered
    derived = view.version.derived
    assert derived["outcome"] == "visit"
    assert derived["suggested_class"] == "3" and derived["class_mismatch"] is False
    assert derived["warnings"] == []


@pytest.mark.parametrize(
    ("overrides", "errors"),
    [
        ({"risk_level": None}, {"risk_level": "危险性评估：必须填写"}),
        ({"visit_class": None}, {"visit_class": "本次随访分类：必须填写"}),
        (
            {"sf_work": None, "insight": None},
            {"insight": "自知力：必须填写", "sf_work": "社会功能情况·生产劳动及工作：必须填写"},
        ),
        (
            {"sf_social": "9"},
            {"sf_social": "社会功能情况·社会人际交往：代码“9”不在可选范围内（1 良好、2 一般、3 较差）"},
        ),
        ({"visit_doctor": None}, {"visit_doctor": "随访医生签名：必须填写"}),
        ({"visit_mode": None}, {"visit_mode": "本次随访形式：必须填写"}),
        ({"risk_behaviours": None}, {"risk_behaviours": "危险行为：必须填写"}),
        (
            {"hospitalization": "2"},
            {"last_discharge_date": "末次出院时间：住院情况为“曾住院，现未住院”时必须填写"},
        ),
        (
            {"hospitalization": "1", "last_discharge_date": days_ago(3)},
            {"last_discharge_date": "末次出院时间：仅在住院情况为“曾住院，现未住院”时填写"},
        ),
        (
            {"hospitalization": "2", "last_discharge_date": "2999-01-01"},
            {"last_discharge_date": "末次出院时间：不能晚于今天"},
        ),
        (
            {"visit_date": days_ago(5), "hospitalization": "2", "last_discharge_date": days_ago(2)},
            {"last_discharge_date": "末次出院时间：不能晚于随访日期"},
        ),
        ({"lab_tests": "2"}, {"lab_tests_desc": "实验室检查：选择“有”时须填写具体内容"}),
        ({"adverse_reaction": "2"}, {"adverse_reaction_desc": "药物不良反应：选择“有”时须填写具体内容"}),
        (
            {"adverse_reaction": "9", "adverse_reaction_desc": "恶心"},
            {"adverse_reaction_desc": "药物不良反应：未选择需要说明的选项，不应填写具体内容"},
        ),
        (
            {"referral": "2"},
            {
                "referral_reason": "转诊原因：转诊时必须填写",
                "referral_org_dept": "转诊至机构及科室：转诊时必须填写",
            },
        ),
        ({"referral_reason": "病情加重"}, {"referral_reason": "转诊原因：仅在转诊时填写"}),
        ({"rehab_measures": ["5"]}, {"rehab_other": "康复措施：选择“其他”时须填写具体内容"}),
        ({"current_symptoms": ["12"]}, {"current_symptoms_other": "目前症状：选择“其他”时须填写具体内容"}),
        ({"next_visit_date": days_ago(0)}, {"next_visit_date": "下次随访日期：应晚于随访日期"}),
        ({"visit_date": "2999-01-01"}, {"visit_date": "随访日期：不能晚于今天"}),
        (
            {"medications": [dict(MEDICATION, per_unit="周")]},
            {"medications[0].per_unit": "用法（每日/每月）：代码“周”不在可选范围内（日 每日、月 每月）"},
        ),
        (
            {"medications": [{"drug_name": "利培酮片"}]},
            {
                "medications[0].per_unit": "用法（每日/每月）：必须填写",
                "medications[0].times": "用法·次数：必须填写",
                "medications[0].dose_mg": "每次剂量：必须填写",
            },
        ),
        (
            {"med_guidance": [dict(MEDICATION, dose_mg=0)]},
            {"med_guidance[0].dose_mg": "用药指导第 1 行：每次剂量：须大于 0 mg"},
        ),
        ({"medications": [dict(MEDICATION)] * 4}, {"medications": "用药情况：最多填写 3 行"}),
    ],
)
def test_follow_up_rules(app: Flask, world: World, overrides: dict[str, Any], errors: dict[str, str]) -> None:
    assert refusal(world, "smd_follow_up", visit(**overrides)) == errors


def test_a_long_acting_injection_is_dosed_per_month(app: Flask, world: World) -> None:
    injection = {"drug_name": "棕榈酸帕利哌酮注射液", "per_unit": "月", "times": 1, "dose_mg": 150}
    form = fill(world, "smd_follow_up", visit(medications=[injection, dict(MEDICATION)]))
    with as_principal(world.doctor):
        view = forms.view_form(form.id)
        commit()
    assert view.version.payload["medications"][0] == injection
    assert view.definition.spec.labels(view.version.payload)["medications"][0]["per_unit"] == "每月"


def test_a_visit_before_the_case_was_opened_is_refused(app: Flask) -> None:
    from datetime import timedelta

    from app.core import clock

    world = make_world(opened_on=clock.today_local() - timedelta(days=10))
    assert refusal(world, "smd_follow_up", visit(visit_date=days_ago(11))) == {
        "visit_date": f"随访日期：不能早于建立专案日期（{world.case.opened_on.isoformat()}）"
    }


# --- 失访 and death visits carry no assessment ------------------------------------------------------


def test_a_lost_visit_needs_only_date_mode_and_reason(app: Flask, world: World) -> None:
    form = fill(world, "smd_follow_up", lost_visit(lost_reason="5", lost_reason_other="家属拒绝透露去向"))
    assert form.result_code is None  # no class: nobody was assessed
    assert refusal(world, "smd_follow_up", lost_visit(lost_reason="5")) == {
        "lost_reason_other": "若失访，原因：选择“其他”时须填写具体内容"
    }
    assert refusal(world, "smd_follow_up", lost_visit(risk_level="0", visit_class="3", mild_trouble_n=1)) == {
        "risk_level": "危险性评估：失访时没有随访评估，不应填写",
        "visit_class": "本次随访分类：失访时没有随访评估，不应填写",
        "mild_trouble_n": "轻度滋事次数：失访时没有随访评估，不应填写",
    }
    assert refusal(world, "smd_follow_up", {"visit_date": days_ago(0), "lost_reason": "1"}) == {
        "visit_mode": "本次随访形式：必须填写"
    }


def test_the_death_block(app: Flask, world: World) -> None:
    death = {"visit_date": days_ago(0), "visit_mode": "3", "death_date": days_ago(2)}
    # 1 躯体疾病 needs the sub-code; ⑦ 其他疾病 needs its text
    assert refusal(world, "smd_follow_up", {**death, "death_cause": "1"}) == {
        "death_somatic": "死亡原因·躯体疾病：死亡原因为“躯体疾病”时必须填写"
    }
    assert refusal(world, "smd_follow_up", {**death, "death_cause": "1", "death_somatic": "7"}) == {
        "death_somatic_other": "死亡原因·躯体疾病：选择“其他疾病”时须填写具体内容"
    }
    assert refusal(world, "smd_follow_up", {**death, "death_cause": "1", "death_somatic": "9"}) == {
        "death_somatic": "死亡原因·躯体疾病：代码“9”不在可选范围内（1 传染病和寄生虫病、2 肿瘤、3 心脏病、4 脑血管病、5 呼吸系统疾病、6 消化系统疾病 等）"
    }
    # 6 其他 needs its text; a sub-code is only for 躯体疾病
    assert refusal(world, "smd_follow_up", {**death, "death_cause": "6"}) == {
        "death_other": "死亡原因：选择“其他”时须填写具体内容"
    }
    assert refusal(world, "smd_follow_up", {**death, "death_cause": "2", "death_somatic": "3"}) == {
        "death_somatic": "死亡原因·躯体疾病：仅在死亡原因为“躯体疾病”时填写"
    }
    # date and cause go together, the death is not after the visit, no next visit, no assessment
    assert refusal(world, "smd_follow_up", death) == {"death_cause": "死亡原因：填写死亡日期时必须填写"}
    assert refusal(
        world, "smd_follow_up", {"visit_date": days_ago(0), "visit_mode": "3", "death_cause": "2"}
    ) == {"death_date": "死亡日期：填写死亡原因时必须填写"}
    assert refusal(world, "smd_follow_up", {**death, "death_cause": "4", "visit_date": days_ago(3)}) == {
        "death_date": "死亡日期：不能晚于随访日期"
    }
    assert refusal(
        world,
        "smd_follow_up",
        {**death, "death_cause": "4", "lost_reason": "3", "next_visit_date": days_ago(-14), "insight": "1"},
    ) == {
        "lost_reason": "若失访，原因：患者已死亡时不填写失访原因，请只填写死亡日期和原因",
        "next_visit_date": "下次随访日期：患者已死亡，不应填写",
        "insight": "自知力：患者死亡时没有随访评估，不应填写",
    }
    form = fill(
        world,
        "smd_follow_up",
        {**death, "death_cause": "1", "death_somatic": "7", "death_somatic_other": "糖尿病并发症"},
    )
    with as_principal(world.doctor):
        view = forms.view_form(form.id)
        commit()
    assert view.version.derived == {
        "outcome": "death",
        "warnings": [],
        "next_due_on": None,
        "deceased_on": days_ago(2),
    }
    labels = view.definition.spec.labels(view.version.payload)
    assert (labels["death_cause"], labels["death_somatic"]) == ("躯体疾病", "其他疾病")


# --- 本次随访分类 check (a warning, not a refusal) ------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "suggested", "reason"),
    [
        ({"risk_level": "3"}, "1", "危险性评估为3级"),
        ({"risk_level": "5"}, "1", "危险性评估为5级"),
        ({"insight": "3"}, "1", "自知力缺失"),
        ({"risk_level": "1"}, "2", "危险性评估为1级"),
        ({"risk_level": "2"}, "2", "危险性评估为2级"),
        ({"insight": "2"}, "2", "自知力不全"),
        ({"current_symptoms": ["1", "10"]}, "2", "存在精神症状（幻觉、自语自笑）"),
        ({"sf_housework": "3"}, "2", "社会功能较差（家务劳动）"),
        # 有 药物不良反应 alone is not "severe" (the form records no severity): still 稳定
        ({"adverse_reaction": "2", "adverse_reaction_desc": "轻度嗜睡"}, "3", None),
        ({"sleep": "3", "diet": "3"}, "3", None),  # 睡眠/饮食 are not classification criteria
    ],
)
def test_the_suggested_class(
    app: Flask, world: World, overrides: dict[str, Any], suggested: str, reason: str | None
) -> None:
    form = fill(world, "smd_follow_up", visit(visit_class=suggested, **overrides))
    with as_principal(world.doctor):
        derived = forms.view_form(form.id).version.derived
        commit()
    assert derived["suggested_class"] == suggested and derived["class_mismatch"] is False
    if reason is not None:
        assert derived["class_reasons"] == [reason]


def test_a_class_that_disagrees_is_saved_with_a_warning(app: Flask, world: World) -> None:
    client = app.test_client()
    response = client.post(
        f"/api/v1/health-records/{world.record.id}/forms",
        json={"form_type": "smd_follow_up", "data": visit(risk_level="4", sf_social="3", visit_class="3")},
        headers={"Authorization": f"Bearer {token_for(world.doctor)}", "Idempotency-Key": "smd-visit-warn"},
    )
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["result_code"] == "3" and body["result_label"] == "稳定"  # the doctor's choice is kept
    derived = body["derived"]
    assert derived["suggested_class"] == "1" and derived["suggested_class_label"] == "不稳定"
    assert derived["class_mismatch"] is True
    assert derived["warnings"] == [
        "本次随访分类选择“稳定”，但按危险性评估和病情（危险性评估为4级）应为“不稳定”，请核对"
    ]


# --- printing -------------------------------------------------------------------------------------


def test_both_forms_print_with_chinese_text(app: Flask, world: World) -> None:
    first = fill(world, "smd_supplement", supplement(employment="8", employment_other="个体经营"))
    second = fill(world, "smd_follow_up", visit(risk_level="2", visit_class="3"))
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token_for(world.doctor)}"}
    sheet = client.get(f"/api/v1/health-forms/{first.id}/print.pdf", headers=headers)
    assert sheet.status_code == 200 and sheet.data[:4] == b"%PDF"
    text = pdftotext(sheet.data)
    for expected in (
        "严重精神障碍患者个人信息补充表",
        world.record.short_no,
        "户别",
        "1城镇",
        "个体经营",
        "首次抗精神病药治疗时间",
        "4其他危害行为",
        "轻度滋事次数",
        "2非贫困",
        "专科医生的意见",
    ):
        assert expected in text, expected
    assert "3不详" not in text
    visit_pdf = client.get(f"/api/v1/health-forms/{second.id}/print.pdf", headers=headers)
    assert visit_pdf.status_code == 200
    text = pdftotext(visit_pdf.data)
    for expected in (
        "严重精神障碍患者随访服务记录表",
        "本次随访形式",
        "危险性评估",
        "[2]",
        "9此项不适用",
        "利培酮片",
        "每日",
        "本次随访分类",
        "建议分类：基本稳定",
    ):
        assert expected in text, expected
    # the reverse: the 危险性评估 level definitions, on a page of their own
    pages = subprocess.run(
        ["pdftotext", "-raw", "-f", "3", "-l", "3", "-enc", "UTF-8", "-", "-"],
        input=visit_pdf.data,
        capture_output=True,
        check=True,
    ).stdout.decode("utf-8")
    reverse = re.sub(r"\s+", "", pages)
    assert "第3页共3页" in reverse and "本次随访形式" not in reverse
    for level, definition in SMD_RISK_LEVEL_DEFINITIONS:
        assert f"危险性评估{level}级：{''.join(definition.split())}" in reverse, level


def test_a_revised_visit_keeps_its_previous_version(app: Flask, world: World) -> None:
    form = fill(world, "smd_follow_up", visit())
    with as_principal(world.doctor):
        revised = forms.revise_form(form.id, visit(sleep="2"), base_version=1, reason="补录睡眠情况")
        commit()
        history = forms.list_versions(form.id)
        commit()
    assert revised.version == 2
    assert [v.changed_fields for v in history][1] == ["sleep"]
    assert history[0].payload["sleep"] == "1"
    assert days_ago(0) == revised.occurred_on.isoformat()
