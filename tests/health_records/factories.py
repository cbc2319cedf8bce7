"""Health-record factories shared by the health_records tests.

    from tests.health_records.factories import make_record, personal_info_payload

    record = make_record(resident, doctor)              # 建档 with a complete 个人基本信息表
    payload = personal_info_payload(occupation="0")     # a valid payload, one field changed

`personal_info_payload` returns a complete valid 个人基本信息表 (`personal_info`) payload, codes as
printed; pass `field=None` to drop a field. `make_record` creates the numbered record and its
form through `records.create_record_with_personal_info` as `user`, then commits.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from app.accounts.models import StaffUser
from app.core import clock
from app.core.db import commit
from app.health_records.forms import FORMS, FormDefinition, load_forms, register
from app.health_records.models import Category, HealthRecord
from app.health_records.spec import Date, FormSpec, Text
from app.residents.models import Resident
from tests.factories import as_principal

__all__ = ["make_record", "personal_info_payload", "with_overrides"]


def note_form(form_type: str, category: Category) -> FormDefinition:
    """A test-only two-field form of a category (the gate tests need a form of each category,
    not the real forms' hundred fields)."""
    spec = FormSpec(
        f"测试{category.label}随访",
        (Date("visit_date", "随访日期", required=True), Text("note", "随访记录", required=True)),
    )
    return FormDefinition(
        type=form_type,
        title=spec.title,
        category=category,
        spec=spec,
        date_field="visit_date",
        needs_case=True,
    )


@contextmanager
def registered_note_forms(smd_type: str, tb_type: str) -> Iterator[None]:
    """Register one note form per special category for the duration (removed afterwards)."""
    load_forms()
    register(note_form(smd_type, Category.SMD))
    register(note_form(tb_type, Category.TB))
    try:
        yield
    finally:
        FORMS.pop(smd_type, None)
        FORMS.pop(tb_type, None)


def with_overrides(payload: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """`payload` with `overrides` applied; an override of None removes the field."""
    for name, value in overrides.items():
        if value is None:
            payload.pop(name, None)
        else:
            payload[name] = value
    return payload


def personal_info_payload(**overrides: Any) -> dict[str, Any]:
    """A complete, valid 个人基本信息表 payload (filled today); `name=None` removes a field."""
    payload: dict[str, Any] = {
        "filled_on": clock.today_local().isoformat(),  # 填表日期
        "work_unit": "深圳市罗湖区某公司",  # 工作单位
        "contact_name": "张三",  # 联系人姓名
        "contact_phone": "13800138000",  # 联系人电话
        "residence_type": "1",  # 常住类型: 户籍
        "ethnicity": "01",  # 民族: 汉族
        "blood_type_abo": "1",  # 血型: A型
        "blood_type_rh": "2",  # RH: 阳性
        "education": "2",  # 文化程度: 大学本科
        "occupation": "1",  # 职业: 专业技术人员
        "marital_status": "2",  # 婚姻状况: 已婚
        "payment_methods": ["1"],  # 医疗费用支付方式: 城镇职工基本医疗保险
        "drug_allergies": ["1"],  # 药物过敏史: 无
        "exposures": ["1"],  # 暴露史: 无
        "past_diseases": [{"disease_code": "1"}],  # 既往史·疾病: 无
        "surgery_flag": "1",  # 手术: 无
        "trauma_flag": "1",  # 外伤: 无
        "transfusion_flag": "1",  # 输血: 无
        "family_history_father": ["1"],  # 家族史: 无
        "family_history_mother": ["1"],
        "family_history_siblings": ["1"],
        "family_history_children": ["1"],
        "hereditary_flag": "1",  # 遗传病史: 无
        "disabilities": ["1"],  # 残疾情况: 无残疾
        "kitchen_exhaust": "2",  # 厨房排风设施: 油烟机
        "fuel_type": "3",  # 燃料类型: 天然气
        "drinking_water": "1",  # 饮水: 自来水
        "toilet": "1",  # 厕所: 卫生厕所
        "livestock_pen": "1",  # 禽畜栏: 无
    }
    return with_overrides(payload, overrides)


def make_record(
    resident: Resident,
    user: StaffUser,
    *,
    payload: dict[str, Any] | None = None,
    responsible_doctor: StaffUser | None = None,
    card_remarks: str | None = None,
) -> HealthRecord:
    """建档 for `resident` as `user` (a doctor, nurse or public-health staff member), committed."""
    from app.health_records.services import records

    with as_principal(user):
        record = records.create_record_with_personal_info(
            resident.id,
            payload if payload is not None else personal_info_payload(),
            responsible_doctor_id=responsible_doctor.id if responsible_doctor is not None else None,
            card_remarks=card_remarks,
        )
        commit()
    return record
