"""Shapes of 我的健康档案 in the mini-program (`/mp/v1`): the resident's name masked, the personal
fields inside a form masked by the service (DATA-02)."""

from __future__ import annotations

from marshmallow import Schema, fields

from app.core.fields import Masked


class MpHealthRecordQuerySchema(Schema):
    resident_id = fields.UUID(
        metadata={"description": "A bound family member's resident id; default: the caller (实名认证)"}
    )


class MpHealthFormSummarySchema(Schema):
    id = fields.UUID()
    form_type = fields.String()
    title = fields.String()
    category = fields.String(metadata={"description": "general, or tb when the setting shows it"})
    version = fields.Integer()
    occurred_on = fields.Date(metadata={"description": "体检日期 / 随访日期 / 评估时间 / 填表日期"})
    result_code = fields.String(allow_none=True)
    result_label = fields.String(allow_none=True)


class MpHealthCentreSchema(Schema):
    id = fields.UUID()
    name = fields.String()
    phone = fields.String(allow_none=True, metadata={"description": "The centre's public phone"})
    address = fields.String(allow_none=True)


class MpHealthRecordSchema(Schema):
    resident_id = fields.UUID()
    resident_name = Masked("name")
    relationship = fields.String(metadata={"description": "self, or the family relationship"})
    record_no = fields.String(metadata={"description": "17-digit 居民健康档案编号"})
    short_no = fields.String()
    created_on = fields.Date(metadata={"description": "建档日期"})
    centre = fields.Nested(MpHealthCentreSchema, metadata={"description": "管理机构"})
    responsible_doctor_name = fields.String(allow_none=True, metadata={"description": "责任医生"})
    forms = fields.List(fields.Nested(MpHealthFormSummarySchema))


class MpHealthFormSchema(MpHealthFormSummarySchema):
    resident_id = fields.UUID()
    record_no = fields.String(allow_none=True)
    data = fields.Dict(
        metadata={"description": "The form's fields (codes as printed; personal fields masked)"}
    )
    labels = fields.Dict(metadata={"description": "The printed label of every chosen code, by field"})
    derived = fields.Dict(metadata={"description": "Computed values (BMI, totals, bands, due dates)"})
