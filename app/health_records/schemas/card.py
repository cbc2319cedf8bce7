"""The 居民健康档案信息卡 as JSON (spec §3): personal fields masked (DATA-02)."""

from __future__ import annotations

from marshmallow import Schema, fields

from app.core.fields import Masked


class CardFrontSchema(Schema):
    name = Masked("name", metadata={"description": "姓名 (masked)"})
    gender = fields.String(allow_none=True, metadata={"description": "性别 code (GB/T 2261.1)"})
    gender_label = fields.String(allow_none=True)
    birth_date = fields.String(metadata={"description": "出生日期 (YYYY-MM-DD)"})
    record_no = fields.String(metadata={"description": "健康档案编号 (17 digits)"})
    blood_type_abo = fields.String(allow_none=True, metadata={"description": "个人基本信息表 ABO code 1–4"})
    blood_type_abo_label = fields.String(
        allow_none=True, metadata={"description": "A, B, O, AB; null for 不详"}
    )
    blood_type_rh = fields.String(allow_none=True)
    blood_type_rh_label = fields.String(allow_none=True, metadata={"description": "Rh阴性, Rh阳性, 不详"})
    chronic_diseases = fields.List(
        fields.String(), metadata={"description": "慢性病患病情况, codes of card_chronic_disease"}
    )
    chronic_disease_labels = fields.List(fields.String())
    chronic_other = fields.String(allow_none=True, metadata={"description": "其他疾病 names"})
    allergies = fields.String(metadata={"description": "过敏史"})


class CardBackSchema(Schema):
    home_address = Masked("address", allow_none=True, metadata={"description": "家庭住址 (masked)"})
    home_phone = Masked("phone", allow_none=True, metadata={"description": "家庭电话 (masked)"})
    emergency_contact = Masked("name", allow_none=True, metadata={"description": "紧急情况联系人 (masked)"})
    emergency_contact_phone = Masked(
        "phone", allow_none=True, metadata={"description": "联系人电话 (masked)"}
    )
    org_name = fields.String(metadata={"description": "建档机构名称"})
    org_phone = fields.String(allow_none=True, metadata={"description": "建档机构联系电话 (public)"})
    responsible_staff = fields.String(allow_none=True, metadata={"description": "责任医生或护士"})
    responsible_staff_phone = Masked(
        "phone", allow_none=True, metadata={"description": "其联系电话 (masked)"}
    )
    remarks = fields.String(allow_none=True, metadata={"description": "其他说明"})


class RecordCardSchema(Schema):
    record_id = fields.UUID()
    resident_id = fields.UUID()
    front = fields.Nested(CardFrontSchema)
    back = fields.Nested(CardBackSchema)
