"""个人基本信息表 (spec §1, 3rd edition): every rule refused with a field-named Chinese message,
versions, print."""

from __future__ import annotations

import re
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import pytest
import time_machine
from flask import Flask

from app.core.auth import Role
from app.health_records.forms import personal
from app.health_records.models import HealthFormVersion
from app.health_records.services import forms as form_services
from app.health_records.spec import FormContext, FormInvalid
from app.institutions.models import Institution
from app.residents.models import Resident
from tests.factories import as_principal, make_centre, make_staff, token_for
from tests.factories_residents import make_resident
from tests.health_records.factories import make_record, personal_info_payload

BORN = date(1960, 3, 15)
NOW = datetime(2026, 6, 15, 2, 0, tzinfo=UTC)  # 10:00 in Shenzhen
TODAY = "2026-06-15"


@pytest.fixture(autouse=True)
def _frozen() -> Iterator[None]:
    with time_machine.travel(NOW, tick=False):
        yield


def errors(**overrides: Any) -> dict[str, str]:
    """The errors of the payload with `overrides` (empty when valid), for a resident born in 1960."""
    ctx = FormContext(today=date(2026, 6, 15), birth_date=BORN, sex="male")
    try:
        personal.SPEC.validate(personal_info_payload(**overrides), ctx)
    except FormInvalid as exc:
        return dict(exc.errors or {})
    return {}


def clean(**overrides: Any) -> dict[str, Any]:
    ctx = FormContext(today=date(2026, 6, 15), birth_date=BORN, sex="male")
    return personal.SPEC.validate(personal_info_payload(**overrides), ctx)


# --- the complete payload and third-edition values --------------------------------------------


def test_complete_payload_is_valid_and_codes_stay_printed_strings() -> None:
    assert errors() == {}
    full = clean(
        occupation="0",
        ethnicity="99",
        ethnicity_name="回族",
        education="10",
        livestock_pen="1",
        blood_type_rh="1",
        payment_methods=["8", "1", "5"],
        payment_other="深圳市医疗保险二档",
        drug_allergies=["5", "2"],
        drug_allergy_other="头孢",
        exposures=["2", "4"],
        past_diseases=[
            {"disease_code": "2", "diagnosed_ym": "2015-04"},
            {"disease_code": "6", "diagnosed_ym": "2020-01", "disease_desc": "肺癌"},
            {"disease_code": "12", "diagnosed_ym": "2001-09", "disease_desc": "尘肺"},
            {"disease_code": "13", "diagnosed_ym": "1990-07", "disease_desc": "支气管哮喘"},
        ],
        surgery_flag="2",
        surgeries=[{"name": "阑尾切除术", "date": "1985-06-01"}],
        trauma_flag="2",
        traumas=[{"name": "左腕骨折", "date": "2000-01-02"}, {"name": "肋骨骨折", "date": "2010-02-03"}],
        transfusion_flag="2",
        transfusions=[{"reason": "术中失血", "date": "1985-06-01"}],
        family_history_father=["2", "12"],
        family_history_father_other="痛风",
        hereditary_flag="2",
        hereditary_disease_name="血友病",
        disabilities=["8", "2"],
        disability_other="嗅觉障碍",
        contact_phone="+86 139-1234-5678",
    )
    assert full["occupation"] == "0"  # 0 is a real value (单位负责人), never "empty"
    assert full["livestock_pen"] == "1"  # 3rd edition 1 无
    assert full["payment_methods"] == ["1", "5", "8"]  # printed order
    assert full["drug_allergies"] == ["2", "5"]
    assert full["contact_phone"] == "13912345678"
    assert full["disabilities"] == ["2", "8"]


def test_living_environment_is_optional_and_identity_is_not_in_the_payload() -> None:
    assert (
        errors(kitchen_exhaust=None, fuel_type=None, drinking_water=None, toilet=None, livestock_pen=None)
        == {}
    )
    assert errors(work_unit=None, contact_name=None, contact_phone=None) == {}
    got = errors(name="张三", id_card_no="440303196003150011", gender="1")
    assert got["name"] == "未知字段“name”，请按表单填写"
    assert set(got) == {"name", "id_card_no", "gender"}


@pytest.mark.parametrize(
    ("field", "title"),
    [
        ("filled_on", "填表日期"),
        ("residence_type", "常住类型"),
        ("ethnicity", "民族"),
        ("blood_type_abo", "血型"),
        ("blood_type_rh", "RH血型"),
        ("education", "文化程度"),
        ("occupation", "职业"),
        ("marital_status", "婚姻状况"),
        ("payment_methods", "医疗费用支付方式"),
        ("drug_allergies", "药物过敏史"),
        ("exposures", "暴露史"),
        ("past_diseases", "既往史·疾病"),
        ("surgery_flag", "既往史·手术"),
        ("trauma_flag", "既往史·外伤"),
        ("transfusion_flag", "既往史·输血"),
        ("family_history_father", "家族史·父亲"),
        ("family_history_mother", "家族史·母亲"),
        ("family_history_siblings", "家族史·兄弟姐妹"),
        ("family_history_children", "家族史·子女"),
        ("hereditary_flag", "遗传病史"),
        ("disabilities", "残疾情况"),
    ],
)
def test_required_fields(field: str, title: str) -> None:
    assert errors(**{field: None}) == {field: f"{title}：必须填写"}


@pytest.mark.parametrize(
    ("field", "value", "title"),
    [
        ("education", "11", "文化程度"),  # 10 levels
        ("occupation", "9", "职业"),
        ("ethnicity", "1", "民族"),  # 2nd edition 1 汉族
        ("ethnicity", "02", "民族"),  # GB 3304 codes are not the form's
        ("blood_type_abo", "6", "血型"),
        ("blood_type_rh", "4", "RH血型"),
        ("marital_status", "0", "婚姻状况"),
        ("residence_type", "3", "常住类型"),
        ("livestock_pen", "5", "禽畜栏"),
        ("toilet", "6", "厕所"),
        ("payment_methods", ["9"], "医疗费用支付方式"),
        ("exposures", ["5"], "暴露史"),
        ("family_history_mother", ["13"], "家族史·母亲"),  # 13 is 既往史's 其他, not 家族史's
        ("disabilities", ["9"], "残疾情况"),
    ],
)
def test_bad_codes_are_refused_naming_the_field(field: str, value: Any, title: str) -> None:
    got = errors(**{field: value})
    assert list(got) == [field]
    assert got[field].startswith(f"{title}：代码“")
    assert "不在可选范围内" in got[field]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("drug_allergies", ["1", "2"], "药物过敏史：“无”不能与其他选项同时选择"),
        ("exposures", ["1", "3"], "暴露史：“无”不能与其他选项同时选择"),
        ("disabilities", ["1", "5"], "残疾情况：“无残疾”不能与其他选项同时选择"),
        ("family_history_siblings", ["2", "1"], "家族史·兄弟姐妹：“无”不能与其他选项同时选择"),
        ("payment_methods", ["1", "2", "5", "7"], "医疗费用支付方式：最多选择 3 项"),
        ("family_history_father", ["2", "3", "4", "5", "6", "7", "8"], "家族史·父亲：最多选择 6 项"),
        ("disabilities", ["2", "3", "4", "5", "6", "7", "8"], "残疾情况：最多选择 6 项"),
        ("exposures", ["2", "2"], "暴露史：代码“2”重复选择"),
    ],
)
def test_exclusive_none_and_maximum_selections(field: str, value: list[str], message: str) -> None:
    assert errors(**{field: value}) == {field: message}


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"payment_methods": ["8"]}, "payment_other", "医疗费用支付方式：选择“其他”时须填写具体内容"),
        ({"drug_allergies": ["5"]}, "drug_allergy_other", "药物过敏史：选择“其他”时须填写具体内容"),
        (
            {"family_history_children": ["12"]},
            "family_history_children_other",
            "家族史·子女：选择“其他”时须填写具体内容",
        ),
        ({"disabilities": ["8"]}, "disability_other", "残疾情况：选择“其他残疾”时须填写具体内容"),
        ({"hereditary_flag": "2"}, "hereditary_disease_name", "遗传病史：选择“有”时须填写具体内容"),
        ({"ethnicity": "99"}, "ethnicity_name", "民族：选择“少数民族”时须填写具体内容"),
    ],
)
def test_missing_companion(overrides: dict[str, Any], field: str, message: str) -> None:
    assert errors(**overrides) == {field: message}


@pytest.mark.parametrize(
    ("overrides", "field", "title"),
    [
        ({"payment_other": "异地医保"}, "payment_other", "医疗费用支付方式"),
        ({"drug_allergy_other": "头孢"}, "drug_allergy_other", "药物过敏史"),
        ({"family_history_father_other": "痛风"}, "family_history_father_other", "家族史·父亲"),
        ({"disability_other": "嗅觉"}, "disability_other", "残疾情况"),
        ({"hereditary_disease_name": "血友病"}, "hereditary_disease_name", "遗传病史"),
        ({"ethnicity_name": "回族"}, "ethnicity_name", "民族"),
    ],
)
def test_companion_without_its_option(overrides: dict[str, Any], field: str, title: str) -> None:
    assert errors(**overrides) == {field: f"{title}：未选择需要说明的选项，不应填写具体内容"}


def test_ethnicity_name_with_99() -> None:
    assert clean(ethnicity="99", ethnicity_name=" 壮族 ")["ethnicity_name"] == "壮族"


# --- 既往史 -------------------------------------------------------------------------------------


def _rows(*rows: dict[str, Any]) -> dict[str, Any]:
    return {"past_diseases": list(rows)}


@pytest.mark.parametrize("code", ["6", "12", "13"])
def test_cancer_occupational_and_other_diseases_need_their_name(code: str) -> None:
    got = errors(**_rows({"disease_code": code, "diagnosed_ym": "2020-01"}))
    label = {"6": "恶性肿瘤", "12": "职业病", "13": "其他"}[code]
    assert got == {"past_diseases[0].disease_desc": f"既往史·疾病：选择“{label}”时须填写具体内容"}
    assert errors(**_rows({"disease_code": code, "diagnosed_ym": "2020-01", "disease_desc": "某病"})) == {}


def test_past_disease_rules() -> None:
    none_and_more = errors(**_rows({"disease_code": "1"}, {"disease_code": "2", "diagnosed_ym": "2015-01"}))
    assert none_and_more == {"past_diseases": "既往史·疾病：“无”不能与其他疾病同时填写"}
    duplicate = errors(
        **_rows(
            {"disease_code": "2", "diagnosed_ym": "2015-01"}, {"disease_code": "2", "diagnosed_ym": "2016-01"}
        )
    )
    assert duplicate == {"past_diseases[1].disease_code": "既往史·疾病第 2 行：该疾病已填写，请勿重复"}
    seven = [{"disease_code": c, "diagnosed_ym": "2015-01"} for c in ("2", "3", "4", "5", "7", "8", "9")]
    assert errors(past_diseases=seven) == {"past_diseases": "既往史·疾病：最多填写 6 行"}
    six = seven[:6]
    assert errors(past_diseases=six) == {}
    no_date = errors(**_rows({"disease_code": "3"}))
    assert no_date == {"past_diseases[0].diagnosed_ym": "既往史·疾病第 1 行：须填写确诊时间"}
    before_birth = errors(**_rows({"disease_code": "3", "diagnosed_ym": "1960-02"}))
    assert before_birth == {"past_diseases[0].diagnosed_ym": "既往史·疾病第 1 行：确诊时间不能早于出生日期"}
    assert errors(**_rows({"disease_code": "3", "diagnosed_ym": "1960-03"})) == {}  # the month of birth
    future = errors(**_rows({"disease_code": "3", "diagnosed_ym": "2026-07"}))
    assert future == {"past_diseases[0].diagnosed_ym": "确诊时间：不能晚于本月"}
    none_with_date = errors(**_rows({"disease_code": "1", "diagnosed_ym": "2015-01"}))
    assert none_with_date == {"past_diseases[0].diagnosed_ym": "既往史·疾病第 1 行：选择“无”时不填写确诊时间"}
    desc_without_option = errors(
        **_rows({"disease_code": "2", "diagnosed_ym": "2015-01", "disease_desc": "x"})
    )
    assert desc_without_option == {
        "past_diseases[0].disease_desc": "既往史·疾病：未选择需要说明的选项，不应填写具体内容"
    }
    bad = errors(**_rows({"disease_code": "14", "diagnosed_ym": "2015-01"}))
    assert list(bad) == ["past_diseases[0].disease_code"]
    assert bad["past_diseases[0].disease_code"].startswith("既往史·疾病：代码“14”不在可选范围内")
    assert errors(past_diseases="无") == {"past_diseases": "既往史·疾病：须为列表"}


# --- 手术 / 外伤 / 输血 -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "rows", "title", "what", "row"),
    [
        (
            "surgery_flag",
            "surgeries",
            "既往史·手术",
            "手术名称和时间",
            {"name": "阑尾切除术", "date": "1990-01-01"},
        ),
        ("trauma_flag", "traumas", "既往史·外伤", "外伤名称和时间", {"name": "骨折", "date": "1990-01-01"}),
        (
            "transfusion_flag",
            "transfusions",
            "既往史·输血",
            "输血原因和时间",
            {"reason": "失血", "date": "1990-01-01"},
        ),
    ],
)
def test_history_rows_follow_their_flag(
    flag: str, rows: str, title: str, what: str, row: dict[str, str]
) -> None:
    assert errors(**{flag: "2"}) == {rows: f"{title}：选择“有”时须填写{what}"}
    assert errors(**{flag: "1", rows: [row]}) == {rows: f"{title}：选择“无”时不应填写{what}"}
    assert errors(**{flag: "2", rows: [row, row]}) == {}
    assert errors(**{flag: "2", rows: [row, row, row]}) == {rows: f"{title}记录：最多填写 2 行"}
    assert errors(**{flag: "3"})[flag].startswith(f"{title}：代码“3”")
    early = errors(**{flag: "2", rows: [dict(row, date="1959-12-31")]})
    assert early == {f"{rows}[0].date": f"{title}记录第 1 行：时间不能早于出生日期"}


def test_history_row_fields() -> None:
    assert errors(transfusion_flag="2", transfusions=[{"name": "x", "date": "1990-01-01"}]) == {
        "transfusions[0].name": "未知字段“name”，请按表单填写",
        "transfusions[0].reason": "输血原因：必须填写",
    }
    assert errors(surgery_flag="2", surgeries=[{"name": "阑尾切除术"}]) == {
        "surgeries[0].date": "手术时间：必须填写"
    }
    assert errors(trauma_flag="2", traumas=[{"name": "骨折", "date": "2026-06-16"}]) == {
        "traumas[0].date": "外伤时间：不能晚于今天"
    }


# --- phones, contact, dates -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("13800138000", "13800138000"),
        ("138 0013 8000", "13800138000"),
        ("+8613800138000", "13800138000"),
        ("0755-12345678", "0755-12345678"),
        ("075512345678", "075512345678"),
        ("010-1234567", "010-1234567"),
        ("0755-12345678-801", "0755-12345678-801"),
    ],
)
def test_contact_phone_accepts_mobile_or_landline(given: str, stored: str) -> None:
    assert clean(contact_phone=given)["contact_phone"] == stored


@pytest.mark.parametrize("given", ["12345", "12800138000", "1380013800", "12345678", "0755-0123456", "电话"])
def test_contact_phone_refuses_other_text(given: str) -> None:
    assert errors(contact_phone=given) == {
        "contact_phone": "联系人电话：格式不正确，应为 11 位手机号或带区号的固定电话（如 0755-12345678）"
    }


def test_contact_name_and_phone_go_together_and_dates_are_checked() -> None:
    assert errors(contact_phone=None) == {"contact_phone": "联系人姓名和联系人电话须成对填写"}
    assert errors(contact_name=None) == {"contact_name": "联系人姓名和联系人电话须成对填写"}
    assert errors(filled_on="2026-06-16") == {"filled_on": "填表日期：不能晚于今天"}
    assert errors(filled_on="2026/06/15") == {"filled_on": "填表日期：日期格式应为 YYYY-MM-DD"}


# --- over HTTP: creation, revision, print --------------------------------------------------------


@pytest.fixture
def centre() -> Institution:
    return make_centre()


@pytest.fixture
def resident(centre: Institution) -> Resident:
    return make_resident(centre, birth_date=BORN, sex="male", phone="13712345678")


def _headers(user: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_for(user)}", "Idempotency-Key": f"pi-{uuid.uuid4().hex}"}


def test_http_refusal_names_every_field(app: Flask, centre: Institution, resident: Resident) -> None:
    nurse = make_staff(Role.NURSE, centre)
    body = {
        "resident_id": str(resident.id),
        "personal_info": personal_info_payload(
            drug_allergies=["1", "3"],
            surgery_flag="1",
            surgeries=[{"name": "x", "date": "1990-01-01"}],
            ethnicity="99",
        ),
    }
    r = app.test_client().post("/api/v1/health-records", json=body, headers=_headers(nurse))
    assert r.status_code == 422
    got = r.get_json()
    assert got["code"] == "form_invalid"
    assert got["errors"] == {
        "drug_allergies": "药物过敏史：“无”不能与其他选项同时选择",
        "ethnicity_name": "民族：选择“少数民族”时须填写具体内容",
        "surgeries": "既往史·手术：选择“无”时不应填写手术名称和时间",
    }
    assert got["message"] in got["errors"].values()


def test_occupation_zero_is_stored_and_derived_identity(
    app: Flask, centre: Institution, resident: Resident
) -> None:
    doctor = make_staff(Role.DOCTOR, centre)
    record = make_record(resident, doctor, payload=personal_info_payload(occupation="0", livestock_pen="1"))
    with as_principal(doctor):
        [form] = form_services.forms_of_record(record)
        view = form_services.view_form(form.id)
    assert view.version.payload["occupation"] == "0"
    assert view.version.payload["livestock_pen"] == "1"
    assert view.version.derived == {"gender": "1", "birth_date": "1960-03-15"}
    assert form.occurred_on == date(2026, 6, 15) and form.result_code is None
    client = app.test_client()
    shown = client.get(f"/api/v1/health-forms/{form.id}", headers=_headers(doctor)).get_json()
    assert shown["labels"]["occupation"] == "国家机关、党群组织、企业、事业单位负责人"
    assert shown["labels"]["livestock_pen"] == "无"
    assert shown["labels"]["past_diseases"] == [{"disease_code": "无"}]


def test_only_one_personal_info_form_per_record(app: Flask, centre: Institution, resident: Resident) -> None:
    doctor = make_staff(Role.DOCTOR, centre)
    record = make_record(resident, doctor)
    r = app.test_client().post(
        f"/api/v1/health-records/{record.id}/forms",
        json={"form_type": "personal_info", "data": personal_info_payload()},
        headers=_headers(doctor),
    )
    assert r.status_code == 409
    assert r.get_json()["code"] == "form_exists"


def test_revision_keeps_version_one_and_records_changed_fields(
    app: Flask, centre: Institution, resident: Resident
) -> None:
    doctor = make_staff(Role.DOCTOR, centre)
    record = make_record(resident, doctor)
    with as_principal(doctor):
        [form] = form_services.forms_of_record(record)
    client = app.test_client()
    headers = _headers(doctor)
    changed = personal_info_payload(marital_status="3", contact_phone="0755-87654321", occupation="8")
    r = client.put(
        f"/api/v1/health-forms/{form.id}",
        json={"base_version": 1, "data": changed, "reason": "婚姻状况变更"},
        headers=headers,
    )
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["version"] == 2
    versions = client.get(f"/api/v1/health-forms/{form.id}/versions", headers=headers).get_json()
    assert [v["version"] for v in versions] == [1, 2]
    assert versions[1]["changed_fields"] == ["contact_phone", "marital_status", "occupation"]
    assert versions[1]["reason"] == "婚姻状况变更"
    assert versions[1]["actor_name"] == doctor.name
    v1 = client.get(f"/api/v1/health-forms/{form.id}?version=1", headers=headers).get_json()
    assert (v1["data"]["marital_status"], v1["data"]["occupation"]) == ("2", "1")
    v2 = client.get(f"/api/v1/health-forms/{form.id}", headers=headers).get_json()
    assert (v2["data"]["marital_status"], v2["data"]["occupation"]) == ("3", "8")
    bad = client.put(
        f"/api/v1/health-forms/{form.id}",
        json={"base_version": 2, "data": personal_info_payload(occupation="9")},
        headers=headers,
    )
    assert bad.status_code == 422 and list(bad.get_json()["errors"]) == ["occupation"]
    from sqlalchemy import func, select

    from app.core.db import db

    count = db.session.execute(
        select(func.count()).select_from(HealthFormVersion).where(HealthFormVersion.form_id == form.id)
    ).scalar_one()
    assert count == 2


def pdftotext(data: bytes) -> str:
    return subprocess.run(
        ["pdftotext", "-enc", "UTF-8", "-", "-"], input=data, capture_output=True, check=True
    ).stdout.decode("utf-8")


def test_print_shows_the_national_layout_with_masked_identity(
    app: Flask, centre: Institution, resident: Resident
) -> None:
    doctor = make_staff(Role.DOCTOR, centre)
    payload = personal_info_payload(
        past_diseases=[{"disease_code": "6", "diagnosed_ym": "2020-01", "disease_desc": "肺癌"}],
        drug_allergies=["2", "5"],
        drug_allergy_other="头孢",
        contact_phone="13955556666",
    )
    record = make_record(resident, doctor, payload=payload, responsible_doctor=doctor)
    with as_principal(doctor):
        [form] = form_services.forms_of_record(record)
    r = app.test_client().get(f"/api/v1/health-forms/{form.id}/print.pdf", headers=_headers(doctor))
    assert r.status_code == 200 and r.mimetype == "application/pdf"
    text = pdftotext(r.data)
    flat = re.sub(r"\s+", "", text)
    for label in (
        "个人基本信息表",
        "性别",
        "出生日期",
        "身份证号",
        "工作单位",
        "本人电话",
        "联系人姓名",
        "常住类型",
        "民族",
        "血型",
        "文化程度",
        "职业",
        "婚姻状况",
        "医疗费用支付方式",
        "药物过敏史",
        "暴露史",
        "既往史",
        "家族史",
        "遗传病史",
        "残疾情况",
        "禽畜栏",
        "填表说明",
    ):
        assert label in flat, label
    assert resident.name in flat
    assert record.short_no in flat
    assert "1960-03-15" in flat
    assert "*" * 14 + resident.id_number[-4:] in flat
    assert resident.id_number not in flat
    assert "137****5678" in flat and "13712345678" not in flat
    assert "139****6666" in flat and "13955556666" not in flat
    assert resident.current_address not in flat and resident.current_address[:6] in flat
    assert "肺癌" in flat and "头孢" in flat
    assert doctor.name in flat
