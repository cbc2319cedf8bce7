"""Request and response shapes of health records, forms and cases.

A form's content travels as `data`, a plain object checked field by field by the form's spec
(`app.health_records.spec`), not by marshmallow: the national forms have hundreds of fields with
conditional rules, and one engine gives every form the same Chinese, field-named 422s.
`GET /api/v1/health-records/codes` describes every form's fields and code lists for the tablet.
"""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from app.core.fields import Masked
from app.core.pagination import PageArgsSchema

REASON = validate.Regexp(r"^(?=.*\S)[^\x00-\x1f\x7f]{1,200}$", error="请填写 1-200 字的原因，不含控制字符")
FORM_TYPE = validate.Regexp(r"^[a-z][a-z_]{1,31}$", error="表单类型格式不正确")
CATEGORIES = ["general", "smd", "tb"]


# --- records ----------------------------------------------------------------------------------


class HealthRecordCreateSchema(Schema):
    resident_id = fields.UUID(required=True)
    responsible_doctor_id = fields.UUID(load_default=None, metadata={"description": "责任医生 (staff id)"})
    card_remarks = fields.String(
        load_default=None, validate=validate.Length(max=200), metadata={"description": "信息卡 其他说明"}
    )
    personal_info = fields.Dict(
        required=True, metadata={"description": "个人基本信息表 fields (see GET /health-records/codes)"}
    )


class HealthRecordUpdateSchema(Schema):
    responsible_doctor_id = fields.UUID(allow_none=True)
    card_remarks = fields.String(allow_none=True, validate=validate.Length(max=200))


class HealthFormSummarySchema(Schema):
    id = fields.UUID()
    form_type = fields.String()
    title = fields.String()
    category = fields.String()
    version = fields.Integer()
    occurred_on = fields.Date()
    status = fields.String()
    result_code = fields.String(allow_none=True)
    result_label = fields.String(allow_none=True)
    case_id = fields.UUID(allow_none=True)
    updated_at = fields.DateTime()


class HealthRecordSchema(Schema):
    id = fields.UUID()
    resident_id = fields.UUID()
    resident_name = Masked("name")
    record_no = fields.String(metadata={"description": "17-digit 居民健康档案编号"})
    short_no = fields.String(metadata={"description": "编号 printed on each form: □□□-□□□□□"})
    created_on = fields.Date()
    institution_id = fields.UUID()
    institution_name = fields.String()
    created_institution_name = fields.String()
    created_by_name = fields.String(allow_none=True)
    responsible_doctor_id = fields.UUID(allow_none=True)
    responsible_doctor_name = fields.String(allow_none=True)
    card_remarks = fields.String(allow_none=True)
    status = fields.String()
    forms = fields.List(fields.Nested(HealthFormSummarySchema))


# --- forms ------------------------------------------------------------------------------------


class HealthFormCreateSchema(Schema):
    form_type = fields.String(required=True, validate=FORM_TYPE)
    case_id = fields.UUID(
        load_default=None, metadata={"description": "专案 (special categories; default: the open one)"}
    )
    data = fields.Dict(required=True)
    reason = fields.String(load_default=None, validate=REASON)


class HealthFormReviseSchema(Schema):
    base_version = fields.Integer(
        required=True,
        validate=validate.Range(min=1),
        metadata={"description": "The version the edit started from"},
    )
    data = fields.Dict(required=True)
    reason = fields.String(load_default=None, validate=REASON)


class HealthFormVoidSchema(Schema):
    reason = fields.String(required=True, validate=REASON)


class HealthFormVersionQuerySchema(Schema):
    version = fields.Integer(
        validate=validate.Range(min=1, max=100_000), metadata={"description": "Default: current"}
    )


class HealthFormQuerySchema(PageArgsSchema):
    resident_id = fields.UUID()
    form_type = fields.String(validate=FORM_TYPE)
    category = fields.String(
        validate=validate.OneOf(CATEGORIES),
        metadata={
            "description": "Default: general forms only. smd/tb need the category permission (DATA-05)"
        },
    )
    case_id = fields.UUID()
    occurred_from = fields.Date()
    occurred_to = fields.Date()
    include_voided = fields.Boolean(load_default=False)


class HealthFormSchema(HealthFormSummarySchema):
    record_id = fields.UUID()
    record_no = fields.String()
    resident_id = fields.UUID()
    institution_id = fields.UUID()
    shown_version = fields.Integer()
    data = fields.Dict(metadata={"description": "The form's fields as stored (codes as printed)"})
    derived = fields.Dict(metadata={"description": "Computed values (BMI, totals, bands, due dates)"})
    labels = fields.Dict(metadata={"description": "The printed label of every chosen code, by field"})
    void_reason = fields.String(allow_none=True)
    created_at = fields.DateTime()


class HealthFormVersionSchema(Schema):
    version = fields.Integer()
    changed_fields = fields.List(fields.String())
    reason = fields.String(allow_none=True)
    actor_role = fields.String(allow_none=True)
    actor_name = fields.String(allow_none=True)
    created_at = fields.DateTime()


class HealthCodeDictionarySchema(Schema):
    code_lists = fields.List(fields.Dict())
    forms = fields.List(fields.Dict())


# --- cases ------------------------------------------------------------------------------------


class HealthCaseCreateSchema(Schema):
    resident_id = fields.UUID(required=True)
    category = fields.String(required=True, validate=validate.OneOf(["smd", "tb"]))
    opened_on = fields.Date(load_default=None)
    notified_at = fields.AwareDateTime(
        load_default=None,
        metadata={"description": "TB: when the higher-level institution's notice arrived (72 h)"},
    )
    treatment_started_on = fields.Date(load_default=None)
    responsible_staff_id = fields.UUID(load_default=None)


class HealthCaseCloseSchema(Schema):
    closed_on = fields.Date(load_default=None)
    reason = fields.String(required=True, validate=REASON)


class HealthCaseMissedVisitSchema(Schema):
    attempted_at = fields.AwareDateTime(
        required=True,
        metadata={"description": "When the home visit that did not find the patient took place"},
    )


class HealthCaseQuerySchema(PageArgsSchema):
    category = fields.String(required=True, validate=validate.OneOf(["smd", "tb"]))
    status = fields.String(load_default="open", validate=validate.OneOf(["open", "closed", "all"]))
    due_before = fields.Date()
    resident_id = fields.UUID()


class HealthCaseSchema(Schema):
    id = fields.UUID()
    resident_id = fields.UUID()
    resident_name = Masked("name")
    record_no = fields.String(allow_none=True)
    category = fields.String()
    status = fields.String()
    opened_on = fields.Date()
    notified_at = fields.DateTime(allow_none=True)
    treatment_started_on = fields.Date(allow_none=True)
    intensive_months = fields.Integer(allow_none=True)
    responsible_staff_id = fields.UUID(allow_none=True)
    institution_id = fields.UUID()
    next_due_on = fields.Date(allow_none=True)
    next_due_kind = fields.String(allow_none=True)
    next_due_label = fields.String(allow_none=True)
    overdue = fields.Boolean()
    closed_on = fields.Date(allow_none=True)
    close_reason = fields.String(allow_none=True)
    facts = fields.Dict()


class HealthCaseDetailSchema(HealthCaseSchema):
    forms = fields.List(fields.Nested(HealthFormSummarySchema))
