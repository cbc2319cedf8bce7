"""Issue 6, tried as a new user would, over HTTP only.

A doctor on the tablet loads the form dictionary, creates the health record of a 70-year-old
resident (a bad code and a missing companion are refused first, each named in Chinese), fills the
老年人生活自理能力评估表 (a hand-scored example gives the same band), the 健康体检表 (BMI computed,
self-care level taken from the assessment), opens the 肺结核 and 严重精神障碍 cases and fills each of
their forms; every form and the record card print with their Chinese text (pdftotext); a nurse of
the same centre without the mental-health permission cannot see the 严重精神障碍 follow-up.
"""

from __future__ import annotations

import subprocess
from typing import Any

import time_machine
from flask import Flask

from app.core.auth import Role
from tests.audit.support import Http, audit_rows, idem
from tests.factories import grant, make_centre, make_staff, token_for
from tests.factories_residents import make_resident
from tests.health_records import smd_support, tb_support
from tests.health_records.factories import personal_info_payload
from tests.health_records.test_exam import full_exam


def _text(pdf: bytes) -> str:
    assert pdf[:5] == b"%PDF-"
    return subprocess.run(["pdftotext", "-", "-"], input=pdf, capture_output=True, check=True).stdout.decode()


def _fill(http: Http, record_id: str, form_type: str, data: dict[str, Any]) -> dict[str, Any]:
    response = http.post(
        f"/api/v1/health-records/{record_id}/forms",
        json={"form_type": form_type, "data": data},
        headers=idem(),
    )
    assert response.status_code == 201, (form_type, response.json)
    return dict(response.json)


def test_a_doctor_fills_every_form_and_a_nurse_cannot_see_the_mental_health_follow_up(app: Flask) -> None:
    with time_machine.travel(tb_support.NOW, tick=False):
        centre = make_centre()
        doctor = grant(make_staff(Role.DOCTOR, centre), "health:smd", "health:tb")
        nurse = make_staff(Role.NURSE, centre)
        resident = make_resident(centre, age=70, sex="female")
        tablet = Http(app, token_for(doctor))

        # The tablet loads every code list and form description once.
        dictionary = tablet.get("/api/v1/health-records/codes").json
        types = {form["form_type"] for form in dictionary["forms"]}
        assert types == {
            "personal_info",
            "health_exam",
            "elderly_selfcare",
            "tb_first_visit",
            "tb_follow_up",
            "smd_supplement",
            "smd_follow_up",
        }

        # 建档: a wrong code and a missing companion are refused field by field, nothing is created.
        bad = personal_info_payload(education="11", payment_methods=["1", "8"])
        refused = tablet.post(
            "/api/v1/health-records",
            json={"resident_id": str(resident.id), "personal_info": bad},
            headers=idem(),
        )
        assert refused.status_code == 422
        errors = refused.json["errors"]
        assert set(errors) == {"education", "payment_other"}
        assert errors["education"].startswith("文化程度：") and "不在可选范围内" in errors["education"]
        assert errors["payment_other"] == "医疗费用支付方式：选择“其他”时须填写具体内容"
        assert tablet.get(f"/api/v1/residents/{resident.id}/health-record").status_code == 404

        created = tablet.post(
            "/api/v1/health-records",
            json={
                "resident_id": str(resident.id),
                "responsible_doctor_id": str(doctor.id),
                "personal_info": personal_info_payload(
                    payment_methods=["1", "8"], payment_other="长者医疗补助"
                ),
            },
            headers=idem(),
        )
        assert created.status_code == 201, created.json
        record = created.json
        community = centre.community
        assert record["record_no"] == f"440303{community.street.code}{community.code}00001"
        record_id = record["id"]

        # 老年人生活自理能力评估表, scored by hand: 进餐 中度依赖 3 + 梳洗 轻度依赖 1 + 穿衣 可自理 0
        # + 如厕 中度依赖 5 + 活动 轻度依赖 1 = 10 → 9–18 中度依赖.
        selfcare = _fill(
            tablet,
            record_id,
            "elderly_selfcare",
            {
                "assessed_at": "2026-06-20",
                "meal_level": "3",
                "grooming_level": "2",
                "dressing_level": "1",
                "toileting_level": "3",
                "activity_level": "2",
            },
        )
        hand_total = 3 + 1 + 0 + 5 + 1
        assert selfcare["derived"]["total_score"] == hand_total == 10
        assert (selfcare["result_code"], selfcare["result_label"]) == ("3", "中度依赖")

        # 健康体检表: BMI computed (64 kg / 1.60 m² = 25.0), self-care level from the assessment.
        exam = _fill(tablet, record_id, "health_exam", full_exam(exam_date="2026-06-25"))
        assert exam["derived"]["bmi"] == 25.0
        assert exam["derived"]["elderly_selfcare_level"] == "3"
        typed_bmi = tablet.post(
            f"/api/v1/health-records/{record_id}/forms",
            json={"form_type": "health_exam", "data": {**full_exam(exam_date="2026-06-26"), "bmi": 30}},
            headers=idem(),
        )
        assert typed_bmi.status_code == 422 and "bmi" in typed_bmi.json["errors"]

        # 肺结核: the case opens on the notice (first visit due within 72 h), then both forms.
        tb_case = tablet.post(
            "/api/v1/health-cases",
            json={
                "resident_id": str(resident.id),
                "category": "tb",
                "notified_at": tb_support.NOTICE.isoformat(),
            },
            headers=idem(),
        )
        assert tb_case.status_code == 201, tb_case.json
        assert tb_case.json["next_due_on"] == "2026-03-04"
        tb_first = _fill(tablet, record_id, "tb_first_visit", tb_support.first_visit())
        assert tb_first["derived"]["within_72h"] is True
        tb_follow = _fill(tablet, record_id, "tb_follow_up", tb_support.follow_up())

        # 严重精神障碍: the case, its 补充表 and a follow-up.
        smd_case = tablet.post(
            "/api/v1/health-cases",
            json={"resident_id": str(resident.id), "category": "smd", "opened_on": "2026-06-01"},
            headers=idem(),
        )
        assert smd_case.status_code == 201, smd_case.json
        smd_supplement = _fill(
            tablet,
            record_id,
            "smd_supplement",
            smd_support.supplement(filled_date="2026-06-01", consent_date="2026-06-01"),
        )
        smd_follow = _fill(tablet, record_id, "smd_follow_up", smd_support.visit(visit_date="2026-06-28"))
        assert smd_follow["result_label"] == "稳定"

        # Every form prints in the national layout with its Chinese text; so does the card.
        titles = {
            exam["id"]: "健康体检表",
            selfcare["id"]: "老年人生活自理能力评估表",
            tb_first["id"]: "肺结核患者第一次入户随访记录表",
            tb_follow["id"]: "肺结核患者随访服务记录表",
            smd_supplement["id"]: "严重精神障碍患者个人信息补充表",
            smd_follow["id"]: "严重精神障碍患者随访服务记录表",
        }
        personal = [f for f in tablet.get(f"/api/v1/health-records/{record_id}").json["forms"]]
        [personal_form] = [f for f in personal if f["form_type"] == "personal_info"]
        titles[personal_form["id"]] = "个人基本信息表"
        for form_id, title in titles.items():
            printed = tablet.get(f"/api/v1/health-forms/{form_id}/print.pdf")
            assert printed.status_code == 200, (title, printed.get_data()[:200])
            text = _text(printed.data)
            assert title in text and record["short_no"] in text, title
        card = _text(tablet.get(f"/api/v1/health-records/{record_id}/card.pdf").data)
        assert "居民健康档案信息卡" in card and record["record_no"] in card

        # The nurse of the same centre, without the mental-health permission.
        desk = Http(app, token_for(nurse))
        seen = desk.get(f"/api/v1/health-records/{record_id}").json
        assert {f["category"] for f in seen["forms"]} == {"general"}
        assert desk.get(f"/api/v1/health-forms/{smd_follow['id']}").status_code == 404
        assert desk.get(f"/api/v1/health-forms/{smd_follow['id']}/print.pdf").status_code == 404
        assert desk.get("/api/v1/health-forms", query_string={"category": "smd"}).status_code == 403
        denied = audit_rows(actor_id=nurse.id, object_id=smd_follow["id"], result="denied")
        assert [row.action for row in denied] == ["read", "print"]
        # The doctor holding the permission still sees it.
        assert tablet.get(f"/api/v1/health-forms/{smd_follow['id']}").status_code == 200
