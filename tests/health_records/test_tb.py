"""肺结核 forms (spec §4.1, §4.2): fill over HTTP, every rule refusal with its field and Chinese
message, once per case, case required and closed, DATA-05 gate and audit, work list, printing."""

from __future__ import annotations

import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from app.core.audit import AuditEvent
from app.core.auth import Role
from app.core.clock import CHINA
from app.core.db import commit, db
from app.health_records.services import forms, records
from app.health_records.spec import FormInvalid
from tests.audit.support import Http
from tests.factories import as_principal, grant, make_staff, token_for
from tests.factories_residents import make_resident
from tests.health_records.tb_support import (
    STOP_BLOCK,
    World,
    derived_of,
    first_visit,
    follow_up,
    frozen,
    make_case,
    save,
    tb_world,
)

__all__ = ["frozen"]  # the fixture, imported for pytest

pytestmark = pytest.mark.usefixtures("frozen")

_keys = iter(range(1, 10_000))


def _key() -> dict[str, str]:
    return {"Idempotency-Key": f"tb-test-{next(_keys):05d}"}


def _http(app: Flask, user: Any) -> Http:
    return Http(app, token_for(user))


def _post_form(http: Http, world: World, form_type: str, data: dict[str, Any]) -> Any:
    return http.post(
        f"/api/v1/health-records/{world.record.id}/forms",
        json={"form_type": form_type, "data": data},
        headers=_key(),
    )


def _refused(world: World, form_type: str, payload: dict[str, Any]) -> dict[str, str]:
    with as_principal(world.doctor), pytest.raises(FormInvalid) as caught:
        forms.create_form(world.record.id, form_type, payload)
    db.session.rollback()
    assert caught.value.status == 422 and caught.value.code == "form_invalid"
    return caught.value.errors


# --- over HTTP ------------------------------------------------------------------------------------


def test_open_case_fill_first_visit_and_follow_up_over_http(app: Flask) -> None:
    world = tb_world()
    http = _http(app, world.doctor)
    resident = make_resident(world.centre, age=50)
    with as_principal(world.doctor):
        records.open_record(resident.id)
        commit()
    opened = http.post(
        "/api/v1/health-cases",
        json={"resident_id": str(resident.id), "category": "tb", "notified_at": "2026-06-29T10:00:00+08:00"},
        headers=_key(),
    )
    assert opened.status_code == 201, opened.get_json()
    body = opened.get_json()
    assert (body["next_due_on"], body["next_due_kind"]) == ("2026-07-02", "tb_first_visit")
    assert body["next_due_label"] == "第一次入户随访（接到通知后72小时内）" and body["overdue"] is False

    created = _post_form(http, world, "tb_first_visit", first_visit())
    assert created.status_code == 201, created.get_json()
    got = created.get_json()
    assert got["category"] == "tb" and got["case_id"] == str(world.case.id)
    assert got["derived"]["within_72h"] is True and got["derived"]["notice_deadline"] == "2026-03-04"
    assert (got["result_code"], got["result_label"]) == ("1", "72小时内完成")
    assert got["labels"]["symptoms"] == ["咳嗽咳痰", "低热盗汗"]
    assert got["labels"]["visit_mode"] == "家庭" and got["labels"]["edu_adverse_reactions"] == "未掌握"

    # Second first visit of the same case: 409.
    again = _post_form(http, world, "tb_first_visit", first_visit(visit_date="2026-03-04"))
    assert again.status_code == 409 and again.get_json()["code"] == "form_exists"

    visit = _post_form(http, world, "tb_follow_up", follow_up(symptoms=["6"]))
    assert visit.status_code == 201, visit.get_json()
    shown = visit.get_json()
    assert shown["labels"]["symptoms"] == ["关节疼痛"]  # code 6 of the follow-up list, not 头痛失眠
    assert (shown["result_code"], shown["result_label"]) == ("m2", "第 2 月")
    case = http.get(f"/api/v1/health-cases/{world.case.id}").get_json()
    assert [f["form_type"] for f in case["forms"]] == ["tb_first_visit", "tb_follow_up"]
    assert (case["next_due_on"], case["next_due_kind"]) == ("2026-05-03", "tb_follow_up")
    assert case["intensive_months"] == 2 and case["overdue"] is True


def test_form_invalid_over_http_names_the_field_in_chinese(app: Flask) -> None:
    world = tb_world()
    response = _post_form(_http(app, world.doctor), world, "tb_first_visit", first_visit(visit_mode="3"))
    assert response.status_code == 422
    body = response.get_json()
    assert body["code"] == "form_invalid"
    assert body["errors"] == {"visit_mode": "随访方式：代码“3”不在可选范围内（1 门诊、2 家庭）"}


def test_a_form_needs_an_open_case(app: Flask) -> None:
    world = tb_world()
    other = make_resident(world.centre, age=30)
    with as_principal(world.doctor):
        record = records.open_record(other.id)
        commit()
    response = _http(app, world.doctor).post(
        f"/api/v1/health-records/{record.id}/forms",
        json={"form_type": "tb_first_visit", "data": first_visit()},
        headers=_key(),
    )
    assert response.status_code == 422
    body = response.get_json()
    assert body["code"] == "case_required"
    assert body["message"] == "该居民没有进行中的肺结核患者管理专案，请先建立专案"


def test_a_closed_case_takes_no_new_follow_up(app: Flask) -> None:
    world = tb_world()
    save(world, "tb_first_visit", first_visit())
    http = _http(app, world.doctor)
    closed = http.post(f"/api/v1/health-cases/{world.case.id}/close", json={"reason": "完成疗程"})
    assert closed.status_code == 200 and closed.get_json()["status"] == "closed"
    response = http.post(
        f"/api/v1/health-records/{world.record.id}/forms",
        json={"form_type": "tb_follow_up", "case_id": str(world.case.id), "data": follow_up()},
        headers=_key(),
    )
    assert response.status_code == 409
    assert response.get_json()["code"] == "case_closed"


# --- rules ----------------------------------------------------------------------------------------

FIRST_VISIT_REFUSALS: list[tuple[dict[str, Any], str, str]] = [
    ({"visit_date": None}, "visit_date", "随访时间：必须填写"),
    ({"visit_date": "2026-07-02"}, "visit_date", "随访时间：不能晚于今天"),
    ({"patient_type": "3"}, "patient_type", "患者类型：代码“3”不在可选范围内（1 初治、2 复治）"),
    ({"sputum": None}, "sputum", "痰菌情况：必须填写"),
    (
        {"drug_resistance": "4"},
        "drug_resistance",
        "耐药情况：代码“4”不在可选范围内（1 耐药、2 非耐药、3 未检测）",
    ),
    ({"symptoms": ["0", "1"]}, "symptoms", "症状及体征：“没有症状”不能与其他选项同时选择"),
    (
        {"symptoms": ["10"]},
        "symptoms",
        "症状及体征：代码“10”不在可选范围内（0 没有症状、1 咳嗽咳痰、2 低热盗汗、3 咯血或血痰、4 胸痛消瘦、5 恶心纳差 等）",
    ),
    ({"symptoms": None}, "symptoms", "症状及体征：必须填写（没有症状请选择“0 没有症状”）"),
    (
        {"symptoms": ["0"], "symptoms_other": "乏力"},
        "symptoms_other",
        "其他症状及体征：已选择“没有症状”，不应再填写其他症状",
    ),
    ({"regimen": None}, "regimen", "化疗方案：必须填写"),
    ({"regimen_usage": "3"}, "regimen_usage", "用法：代码“3”不在可选范围内（1 每日、2 间歇）"),
    ({"drug_forms": ["1", "1"]}, "drug_forms", "药品剂型：代码“1”重复选择"),
    ({"drug_forms": None}, "drug_forms", "药品剂型：必须填写"),
    ({"supervisor": "4"}, "supervisor_other", "督导人员选择：选择“其他”时须填写具体内容"),
    (
        {"supervisor_other": "邻居"},
        "supervisor_other",
        "督导人员选择：未选择需要说明的选项，不应填写具体内容",
    ),
    ({"separate_room": "3"}, "separate_room", "单独的居室：代码“3”不在可选范围内（1 有、2 无）"),
    ({"ventilation": None}, "ventilation", "通风情况：必须填写"),
    ({"smoking_target": None}, "smoking_target", "吸烟（目前/下次随访目标）须成对填写"),
    ({"smoking_now": 101}, "smoking_now", "吸烟（目前）：不能大于 100支/天，请核对"),
    ({"drinking_now": 0.15}, "drinking_now", "饮酒（目前）：最多保留 1 位小数"),
    ({"drug_pickup_place": None}, "drug_pickup_place", "取药地点：必须填写"),
    ({"drug_pickup_date": "2026-13-01"}, "drug_pickup_date", "取药时间：不是有效的日期"),
    ({"edu_course": None}, "edu_course", "肺结核治疗疗程：必须填写"),
    (
        {"edu_contact_screening": "3"},
        "edu_contact_screening",
        "密切接触者检查：代码“3”不在可选范围内（1 掌握、2 未掌握）",
    ),
    ({"next_visit_date": "2026-03-03"}, "next_visit_date", "下次随访时间：应晚于随访时间"),
    ({"assessing_doctor": None}, "assessing_doctor", "评估医生签名：必须填写"),
    ({"stop_reason": "1"}, "stop_reason", "未知字段“stop_reason”，请按表单填写"),
]


@pytest.mark.parametrize(("overrides", "path", "message"), FIRST_VISIT_REFUSALS)
def test_first_visit_refusals(overrides: dict[str, Any], path: str, message: str) -> None:
    errors = _refused(tb_world(), "tb_first_visit", first_visit(**overrides))
    assert errors.get(path) == message, errors


def test_first_visit_accepts_future_pickup_and_next_visit_and_other_symptom_text() -> None:
    world = tb_world()
    form = save(
        world,
        "tb_first_visit",
        first_visit(
            symptoms=None,
            symptoms_other="关节酸痛",
            drug_pickup_date="2026-07-15",
            next_visit_date="2026-07-20",
            smoking_now=None,
            smoking_target=None,
        ),
    )
    assert derived_of(form)["next_due_on"] == "2026-07-20"


def test_first_visit_before_the_notice_is_refused() -> None:
    errors = _refused(tb_world(), "tb_first_visit", first_visit(visit_date="2026-02-28"))
    assert errors == {"visit_date": "随访时间：不能早于接到通知的日期（2026-03-01）"}


def test_a_late_first_visit_is_saved_and_flagged() -> None:
    world = tb_world()
    form = save(world, "tb_first_visit", first_visit(visit_date="2026-03-05"))
    derived = derived_of(form)
    assert derived["within_72h"] is False
    assert derived["warnings"] == ["第一次入户随访应在接到通知后72小时内（2026-03-04前）完成，本次已超时"]
    assert form.result_code == "2"
    db.session.refresh(world.case)
    assert world.case.facts["first_visit_within_72h"] is False


def test_first_visit_on_the_last_day_counts_as_on_time() -> None:
    form = save(tb_world(), "tb_first_visit", first_visit(visit_date="2026-03-04"))
    assert derived_of(form)["within_72h"] is True


FOLLOW_UP_REFUSALS: list[tuple[dict[str, Any], str, str]] = [
    ({"treatment_month": None}, "treatment_month", "治疗月序：必须填写"),
    ({"treatment_month": 25}, "treatment_month", "治疗月序：不能大于 24月，请核对"),
    ({"treatment_month": 0}, "treatment_month", "治疗月序：不能小于 1月，请核对"),
    ({"treatment_month": 2.5}, "treatment_month", "治疗月序：须为整数"),
    ({"visit_mode": "4"}, "visit_mode", "随访方式：代码“4”不在可选范围内（1 门诊、2 家庭、3 电话）"),
    ({"visit_mode": None}, "visit_mode", "随访方式：必须填写"),
    ({"supervisor": None}, "supervisor", "督导人员：必须填写"),
    ({"symptoms": None}, "symptoms", "症状及体征：必须填写（没有症状请选择“0 没有症状”）"),
    ({"symptoms": ["0", "6"]}, "symptoms", "症状及体征：“没有症状”不能与其他选项同时选择"),
    ({"regimen": None}, "regimen", "化疗方案：必须填写"),
    ({"missed_doses": None}, "missed_doses", "漏服药次数：必须填写"),
    ({"missed_doses": -1}, "missed_doses", "漏服药次数：不能小于 0次，请核对"),
    ({"adverse_reaction": "2"}, "adverse_reaction_desc", "药物不良反应：选择“有”时须填写具体内容"),
    (
        {"complication_desc": "糖尿病"},
        "complication_desc",
        "并发症或合并症：未选择需要说明的选项，不应填写具体内容",
    ),
    ({"referral_dept": "结核科"}, "referral_reason", "转诊科别和转诊原因须成对填写"),
    (
        {"referral_followup_result": "已就诊"},
        "referral_followup_result",
        "转诊2周内随访结果：未填写转诊，不应填写随访结果",
    ),
    ({"next_visit_date": "2026-04-03"}, "next_visit_date", "下次随访时间：应晚于随访时间"),
    ({"visit_doctor": None}, "visit_doctor", "随访医生签名：必须填写"),
    ({"stop_reason": "1"}, "stop_date", "出现停止治疗时间和停止治疗原因须成对填写"),
    (
        {"stop_date": "2026-06-28", "stop_reason": "5"},
        "stop_reason",
        "停止治疗原因：代码“5”不在可选范围内（1 完成疗程、2 死亡、3 丢失、4 转入耐多药治疗）",
    ),
    ({"stop_date": "2026-06-28", "stop_reason": "1"}, "should_visit", "应访视患者次数：停止治疗时必须填写"),
    (
        {**STOP_BLOCK, "closing_doctor": None},
        "closing_doctor",
        "评估医生签名（全程管理）：停止治疗时必须填写",
    ),
    ({"should_dose": 180}, "should_dose", "应服药次数：仅在停止治疗时填写"),
    ({**STOP_BLOCK, "actual_dose": 181}, "actual_dose", "实际服药次数：不能多于应服药次数（180 次）"),
    ({**STOP_BLOCK, "actual_visit": 9}, "actual_visit", "实际访视次数：不能多于应访视次数（8 次）"),
    ({**STOP_BLOCK, "should_dose": 0}, "should_dose", "应服药次数：不能小于 1次，请核对"),
    (
        {**STOP_BLOCK, "next_visit_date": "2026-08-01"},
        "next_visit_date",
        "下次随访时间：已停止治疗，不应填写下次随访时间",
    ),
    ({**STOP_BLOCK, "stop_date": "2026-07-02"}, "stop_date", "出现停止治疗时间：不能晚于今天"),
]


@pytest.mark.parametrize(("overrides", "path", "message"), FOLLOW_UP_REFUSALS)
def test_follow_up_refusals(overrides: dict[str, Any], path: str, message: str) -> None:
    errors = _refused(tb_world(), "tb_follow_up", follow_up(**overrides))
    assert errors.get(path) == message, errors


def test_follow_up_dates_before_the_notice_are_refused() -> None:
    payload = follow_up(visit_date="2026-02-27", **{**STOP_BLOCK, "stop_date": "2026-02-20"})
    errors = _refused(tb_world(), "tb_follow_up", payload)
    assert errors == {
        "visit_date": "随访时间：不能早于接到通知的日期（2026-03-01）",
        "stop_date": "出现停止治疗时间：不能早于接到通知的日期（2026-03-01）",
    }


@pytest.mark.parametrize("reason", ["2", "3"])  # 死亡, 丢失: no visit findings to record
def test_a_death_or_loss_entry_needs_only_the_stop_block(reason: str) -> None:
    world = tb_world()
    payload = {
        "visit_date": "2026-05-20",
        "treatment_month": 3,
        "visit_doctor": "王医生",
        **STOP_BLOCK,
        "stop_date": "2026-05-18",
        "stop_reason": reason,
        "should_visit": 6,
        "actual_visit": 5,
        "should_dose": 78,
        "actual_dose": 70,
    }
    form = save(world, "tb_follow_up", payload)
    derived = derived_of(form)
    assert derived["closing_assessment"] is True and derived["adherence_rate"] == 89.7
    assert form.result_code == f"stop{reason}"
    # A 完成疗程 stop still needs the visit's findings.
    errors = _refused(world, "tb_follow_up", {**payload, "stop_reason": "1"})
    assert errors["regimen"] == "化疗方案：必须填写" and errors["visit_mode"] == "随访方式：必须填写"


def test_closing_follow_up_derives_adherence_and_the_closing_assessment(app: Flask) -> None:
    world = tb_world()
    save(world, "tb_first_visit", first_visit())
    response = _post_form(
        _http(app, world.doctor),
        world,
        "tb_follow_up",
        follow_up(visit_date="2026-06-30", treatment_month=6, **STOP_BLOCK),
    )
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["derived"]["closing_assessment"] is True
    assert body["derived"]["adherence_rate"] == 97.2
    assert (body["result_code"], body["result_label"]) == ("stop1", "停止治疗：完成疗程")
    assert body["labels"]["stop_reason"] == "完成疗程"


# --- DATA-05 ----------------------------------------------------------------------------------------


def test_staff_without_the_tb_permission_cannot_see_the_form(app: Flask) -> None:
    world = tb_world()
    form = save(world, "tb_first_visit", first_visit())
    nurse = make_staff(Role.NURSE, world.centre)  # same centre, no health:tb
    http = _http(app, nurse)
    for path in (f"/api/v1/health-forms/{form.id}", f"/api/v1/health-forms/{form.id}/print.pdf"):
        response = http.get(path)
        assert response.status_code == 404, path
    denied = list(
        db.session.execute(
            select(AuditEvent).where(AuditEvent.object_id == str(form.id), AuditEvent.result == "denied")
        ).scalars()
    )
    assert {(e.actor_id, e.action, e.object_type) for e in denied} == {
        (str(nurse.id), "read", "health_form"),
        (str(nurse.id), "print", "health_form"),
    }
    assert all(
        e.detail["category"] == "tb" and e.subject_resident_id == str(world.resident.id) for e in denied
    )
    # Absent from the default list, refused when asked by category.
    listed = http.get(f"/api/v1/health-forms?resident_id={world.resident.id}").get_json()
    assert listed["items"] == []
    asked = http.get("/api/v1/health-forms?category=tb")
    assert asked.status_code == 403 and asked.get_json()["code"] == "category_forbidden"
    # The permitted doctor sees it (and the read is audited).
    assert _http(app, world.doctor).get(f"/api/v1/health-forms/{form.id}").status_code == 200


def test_the_tb_permission_holds_only_in_the_responsible_centre(app: Flask) -> None:
    world = tb_world()
    form = save(world, "tb_first_visit", first_visit())
    elsewhere = grant(make_staff(Role.DOCTOR, tb_world().centre), "health:tb")
    assert _http(app, elsewhere).get(f"/api/v1/health-forms/{form.id}").status_code == 404


# --- the work list ------------------------------------------------------------------------------------


def test_work_list_soonest_due_first(app: Flask) -> None:
    world = tb_world()  # notified 03-01 → first visit due 03-04
    _, _, later = make_case(world.centre, world.doctor, notified_at=datetime(2026, 6, 30, 9, 0, tzinfo=CHINA))
    resident_b, record_b, visited = make_case(world.centre, world.doctor)
    stopped = World(world.centre, world.doctor, resident_b, record_b, visited)
    save(stopped, "tb_first_visit", first_visit())
    save(
        stopped, "tb_follow_up", follow_up(visit_date="2026-06-30", treatment_month=6, **STOP_BLOCK)
    )  # due None
    _, _, early = make_case(world.centre, world.doctor, notified_at=datetime(2026, 2, 1, 9, 0, tzinfo=CHINA))

    http = _http(app, world.doctor)
    page = http.get("/api/v1/health-cases?category=tb").get_json()
    assert [c["id"] for c in page["items"]] == [
        str(early.id),
        str(world.case.id),
        str(later.id),
        str(visited.id),
    ]
    assert [c["next_due_on"] for c in page["items"]] == ["2026-02-04", "2026-03-04", "2026-07-03", None]
    assert [c["overdue"] for c in page["items"]] == [True, True, False, False]
    assert page["items"][3]["next_due_kind"] == "tb_closing"
    due = http.get("/api/v1/health-cases?category=tb&due_before=2026-03-31").get_json()
    assert [c["id"] for c in due["items"]] == [str(early.id), str(world.case.id)]
    nurse = make_staff(Role.NURSE, world.centre)
    refused = _http(app, nurse).get("/api/v1/health-cases?category=tb")
    assert refused.status_code == 403 and refused.get_json()["code"] == "category_forbidden"


# --- printing ---------------------------------------------------------------------------------------


def _pdf_text(data: bytes, tmp_path: Path) -> str:
    """The PDF's text with all white space removed (table cells wrap long labels)."""
    path = tmp_path / "form.pdf"
    path.write_bytes(data)
    text = subprocess.run(["pdftotext", str(path), "-"], capture_output=True, check=True, text=True).stdout
    return "".join(text.split())


def _contains(text: str, *expected: str) -> None:
    for phrase in expected:
        assert "".join(phrase.split()) in text, phrase


def test_both_forms_print_in_chinese(app: Flask, tmp_path: Path) -> None:
    world = tb_world()
    first = save(world, "tb_first_visit", first_visit(supervisor="4", supervisor_other="社区志愿者"))
    closing = save(world, "tb_follow_up", follow_up(visit_date="2026-06-30", treatment_month=6, **STOP_BLOCK))
    http = _http(app, world.doctor)

    response = http.get(f"/api/v1/health-forms/{first.id}/print.pdf")
    assert response.status_code == 200 and response.mimetype == "application/pdf"
    _contains(
        _pdf_text(response.data, tmp_path),
        "肺结核患者第一次入户随访记录表",
        world.record.short_no,
        "家庭居住环境评估",
        "单独的居室",
        "密切接触者检查",
        "2HRZE/4HR",
        "社区志愿者",
        "72小时内随访：是",
        "接到上级专业机构通知时间：2026-03-01 10:00",
        "下次随访时间（系统按督导方式建议）：2026-03-13",
    )

    _contains(
        _pdf_text(http.get(f"/api/v1/health-forms/{closing.id}/print.pdf").data, tmp_path),
        "肺结核患者随访服务记录表",
        "第 6 月",
        "停止治疗及原因",
        "完成疗程",
        "全程管理情况",
        "服药率",
        "97.2 %",
        "每次随访单独打印一页",
    )
