"""居民健康档案信息卡 (spec §3): generated from the record and its 个人基本信息表, JSON and card PDF."""

from __future__ import annotations

import re
import subprocess
from datetime import date
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from app.core.audit import AuditEvent
from app.core.auth import Role
from app.core.db import db
from app.health_records.models import HealthRecord
from app.health_records.services.card import allergies_text, chronic_from_past
from app.institutions.models import Institution
from app.residents.models import Resident
from tests.factories import make_centre, make_staff, token_for
from tests.factories_residents import make_resident
from tests.health_records.factories import make_record, personal_info_payload

# --- mapping ------------------------------------------------------------------------------------


def _row(code: str, desc: str | None = None) -> dict[str, Any]:
    row = {"disease_code": code, "diagnosed_ym": "2010-01"}
    return row if desc is None else {**row, "disease_desc": desc}


@pytest.mark.parametrize(
    ("rows", "codes", "other"),
    [
        (None, [], None),  # no 个人基本信息表 yet: unknown, not 无
        ([{"disease_code": "1"}], ["1"], None),
        ([_row("2"), _row("3"), _row("7"), _row("4"), _row("12", "尘肺")], ["2", "3", "4", "5", "7"], None),
        ([_row("13", "支气管哮喘")], ["6"], None),
        ([_row("13", "哮喘、痛风")], ["6", "8"], "痛风"),
        ([_row("13", "痛风")], ["8"], "痛风"),
        ([_row("5")], ["8"], "慢性阻塞性肺疾病"),
        ([_row("6", "肺癌"), _row("10")], ["8"], "恶性肿瘤（肺癌）、肝炎"),
        ([_row("2"), _row("9"), _row("8")], ["2", "8"], "结核病、严重精神障碍"),
        ([_row("11"), _row("3")], ["3", "8"], "其他法定传染病"),
    ],
)
def test_chronic_diseases_from_past_history(
    rows: list[dict[str, Any]] | None, codes: list[str], other: str | None
) -> None:
    assert chronic_from_past(rows) == (codes, other)


@pytest.mark.parametrize(
    ("codes", "other", "text"),
    [
        (None, None, ""),
        (["1"], None, "无"),
        (["2"], None, "青霉素"),
        (["3", "4"], None, "磺胺、链霉素"),
        (["2", "5"], "头孢", "青霉素、头孢"),
    ],
)
def test_allergies_from_drug_allergy_history(codes: list[str] | None, other: str | None, text: str) -> None:
    assert allergies_text(codes, other) == text


# --- the endpoints ----------------------------------------------------------------------------


@pytest.fixture
def centre() -> Institution:
    return make_centre(name="罗湖区测试社康中心")


@pytest.fixture
def resident(centre: Institution) -> Resident:
    return make_resident(
        centre,
        name="王小明",
        birth_date=date(1958, 8, 8),
        sex="female",
        phone="13712345678",
        current_address="深圳市罗湖区桂园街道老围社区某路88号",
    )


@pytest.fixture
def doctor(centre: Institution) -> Any:
    return make_staff(Role.DOCTOR, centre, phone="13611112222")


@pytest.fixture
def record(resident: Resident, doctor: Any) -> HealthRecord:
    payload = personal_info_payload(
        blood_type_abo="4",
        blood_type_rh="1",
        contact_name="王大明",
        contact_phone="13955556666",
        drug_allergies=["2", "5"],
        drug_allergy_other="头孢",
        past_diseases=[_row("2"), _row("3"), _row("13", "支气管哮喘"), _row("6", "乳腺癌")],
    )
    return make_record(
        resident, doctor, payload=payload, responsible_doctor=doctor, card_remarks="对花粉过敏"
    )


def _auth(user: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_for(user)}"}


def _audits(record: HealthRecord, action: str) -> list[AuditEvent]:
    return list(
        db.session.execute(
            select(AuditEvent).where(
                AuditEvent.object_type == "health_record_card",
                AuditEvent.object_id == str(record.id),
                AuditEvent.action == action,
            )
        ).scalars()
    )


def test_card_json_front_and_back_masked(
    app: Flask, centre: Institution, resident: Resident, doctor: Any, record: HealthRecord
) -> None:
    nurse = make_staff(Role.NURSE, centre)
    r = app.test_client().get(f"/api/v1/health-records/{record.id}/card", headers=_auth(nurse))
    assert r.status_code == 200, r.get_json()
    got = r.get_json()
    assert got["record_id"] == str(record.id) and got["resident_id"] == str(resident.id)
    assert got["front"] == {
        "name": "王**",
        "gender": "2",
        "gender_label": "女",
        "birth_date": "1958-08-08",
        "record_no": record.record_no,
        "blood_type_abo": "4",
        "blood_type_abo_label": "AB",
        "blood_type_rh": "1",
        "blood_type_rh_label": "Rh阴性",
        "chronic_diseases": ["2", "3", "6", "8"],
        "chronic_disease_labels": ["高血压", "糖尿病", "哮喘", "其他疾病"],
        "chronic_other": "恶性肿瘤（乳腺癌）",
        "allergies": "青霉素、头孢",
    }
    assert got["back"] == {
        "home_address": "深圳市罗湖区" + "*" * 13,
        "home_phone": "137****5678",
        "emergency_contact": "王**",
        "emergency_contact_phone": "139****6666",
        "org_name": "罗湖区测试社康中心",
        "org_phone": "0755-12345678",
        "responsible_staff": doctor.name,
        "responsible_staff_phone": "136****2222",
        "remarks": "对花粉过敏",
    }
    assert len(_audits(record, "read")) == 1


def test_card_abo_unknown_is_blank_and_no_history_is_none(app: Flask, centre: Institution) -> None:
    doctor = make_staff(Role.DOCTOR, centre)
    resident = make_resident(centre, sex="male")
    record = make_record(
        resident, doctor, payload=personal_info_payload(blood_type_abo="5", blood_type_rh="3")
    )
    got = app.test_client().get(f"/api/v1/health-records/{record.id}/card", headers=_auth(doctor)).get_json()
    front, back = got["front"], got["back"]
    assert (front["blood_type_abo"], front["blood_type_abo_label"]) == (None, None)
    assert front["blood_type_rh_label"] == "不详"
    assert (front["chronic_diseases"], front["chronic_disease_labels"]) == (["1"], ["无"])
    assert front["chronic_other"] is None
    assert front["allergies"] == "无"
    assert (front["gender"], front["gender_label"]) == ("1", "男")
    assert back["responsible_staff"] is None and back["responsible_staff_phone"] is None
    assert back["remarks"] is None
    assert back["emergency_contact_phone"] == "138****8000"


def test_card_access(app: Flask, centre: Institution, record: HealthRecord) -> None:
    client = app.test_client()
    url = f"/api/v1/health-records/{record.id}/card"
    assert client.get(url).status_code == 401
    assert client.get(url + ".pdf").status_code == 401
    cashier = make_staff(Role.CASHIER, centre)
    assert client.get(url, headers=_auth(cashier)).status_code == 403
    assert client.get(url + ".pdf", headers=_auth(cashier)).status_code == 403
    admin = make_staff(Role.CENTRE_ADMIN, centre)
    assert client.get(url, headers=_auth(admin)).status_code == 200
    stranger = make_staff(Role.DOCTOR, make_centre())
    assert client.get(url, headers=_auth(stranger)).status_code == 404
    assert client.get(url + ".pdf", headers=_auth(stranger)).status_code == 404
    assert (
        client.get(
            "/api/v1/health-records/00000000-0000-4000-8000-000000000000/card", headers=_auth(admin)
        ).status_code
        == 404
    )


def _run(*args: str, data: bytes) -> str:
    return subprocess.run(list(args), input=data, capture_output=True, check=True).stdout.decode("utf-8")


def _page(data: bytes, n: int) -> str:
    return re.sub(
        r"\s+", "", _run("pdftotext", "-enc", "UTF-8", "-f", str(n), "-l", str(n), "-", "-", data=data)
    )


def test_card_pdf_two_small_pages_with_chinese_text(
    app: Flask, resident: Resident, doctor: Any, record: HealthRecord, tmp_path: Any
) -> None:
    r = app.test_client().get(f"/api/v1/health-records/{record.id}/card.pdf", headers=_auth(doctor))
    assert r.status_code == 200 and r.mimetype == "application/pdf"
    assert r.headers["Cache-Control"] == "private, no-store"
    assert record.record_no in r.headers["Content-Disposition"]
    path = tmp_path / "card.pdf"
    path.write_bytes(r.data)
    info = subprocess.run(["pdfinfo", str(path)], capture_output=True, check=True, text=True).stdout
    assert re.search(r"^Pages:\s+2$", info, re.M)
    size = re.search(r"Page size:\s+([\d.]+) x ([\d.]+) pts", info)
    assert size is not None
    width, height = float(size.group(1)), float(size.group(2))
    assert (round(width), round(height)) == (243, 153)  # 85.6 × 54 mm
    fonts = subprocess.run(["pdffonts", str(path)], capture_output=True, check=True, text=True).stdout
    font_rows = fonts.splitlines()[2:]
    assert font_rows and all(" yes " in row for row in font_rows)  # every font embedded

    front = _page(r.data, 1)
    for text in (
        "居民健康档案信息卡",
        "姓名",
        "王小明",
        "性别",
        "女",
        "出生日期",
        "1958-08-08",
        "健康档案编号",
    ):
        assert text in front, text
    assert record.record_no in front
    assert "□A□B□O■AB" in front
    assert "■Rh阴性□Rh阳性□不详" in front
    assert "慢性病患病情况" in front
    assert "□无■高血压■糖尿病□脑卒中□冠心病■哮喘□职业病■其他疾病：" in front
    assert "肿瘤（乳腺癌）" in front
    assert "过敏史青霉素、头孢" in front
    assert "家庭住址" not in front

    back = _page(r.data, 2)
    for text in (
        "家庭住址",
        "家庭电话",
        "紧急情况联系人",
        "联系人电话",
        "建档机构名称",
        "责任医生或护士",
        "其他说明",
    ):
        assert text in back, text
    assert "深圳市罗湖区" + "*" * 13 in back and resident.current_address not in back
    assert "137****5678" in back and "13712345678" not in back
    assert "139****6666" in back and "13955556666" not in back
    assert "136****2222" in back and "13611112222" not in back
    assert "王大明" in back and doctor.name in back
    assert "罗湖区测试社康中心" in back and "0755-12345678" in back
    assert "对花粉过敏" in back
    assert len(_audits(record, "print")) == 1


def test_card_pdf_fits_long_texts_on_two_pages(app: Flask, centre: Institution) -> None:
    doctor = make_staff(Role.DOCTOR, centre)
    resident = make_resident(centre, current_address="深圳市罗湖区" + "很长的地址" * 20)
    payload = personal_info_payload(
        past_diseases=[
            _row("13", "、".join(["罕见病名称甲乙丙丁"] * 10)),
            _row("6", "非常长的肿瘤名称" * 5),
            _row("5"),
            _row("9"),
            _row("10"),
            _row("11"),
        ],
        drug_allergies=["2", "3", "4", "5"],
        drug_allergy_other="很多种药物" * 10,
    )
    record = make_record(
        resident, doctor, payload=payload, responsible_doctor=doctor, card_remarks="备注" * 100
    )
    r = app.test_client().get(f"/api/v1/health-records/{record.id}/card.pdf", headers=_auth(doctor))
    assert r.status_code == 200
    assert "Pages:           2" in _run("pdfinfo", "-", data=r.data)
