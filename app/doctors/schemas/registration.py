"""Registration, review and administration of doctors: requests and the staff view."""

from __future__ import annotations

from datetime import date
from typing import Any

from flask import current_app
from flask_smorest.fields import Upload
from marshmallow import (
    Schema,
    ValidationError,
    fields,
    post_load,
    validate,
    validates,
    validates_schema,
)
from stdnum.cn import ric

from app.core import clock
from app.core.fields import Masked, MobilePhone
from app.core.pagination import PageArgsSchema
from app.doctors.models import (
    PRACTICE_SCOPES,
    PRACTICE_STATUS_LABELS,
    QUALIFICATION_TYPES,
    REVIEW_STATUS_LABELS,
    SEX_LABELS,
    TITLES,
    Doctor,
    Sex,
    licence_problem,
    mi_code_problem,
)
from app.doctors.schemas.common import (
    PRACTICE_STATUSES,
    SEXES,
    STATUSES,
    TextInputSchema,
    doc,
)


class DoctorQualificationSchema(Schema):
    type = fields.String(required=True, validate=validate.OneOf(QUALIFICATION_TYPES))
    number = fields.String(required=True, validate=validate.Length(min=1, max=50))
    issued_on = fields.Date(required=True)

    @validates("issued_on")
    def _not_future(self, value: date, **_: Any) -> None:
        if value > clock.today_local():
            raise ValidationError("发证日期不能晚于今天")

    @post_load
    def _as_json(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        return {
            "type": data["type"],
            "number": data["number"].strip(),
            "issued_on": data["issued_on"].isoformat(),
        }


def _validate_id_number(value: str | None) -> None:
    if value and not ric.is_valid(value.strip().upper()):
        raise ValidationError("身份证号格式或校验位不正确")


class DoctorRegistrationFieldsSchema(TextInputSchema):
    name = fields.String(
        required=True,
        validate=[
            validate.Length(min=1, max=50),
            validate.Regexp(r"^[^\d<>@#$%^&*()_+=\[\]{}|\\/:;\"'?!,，。]+$", error="姓名不能包含数字或符号"),
        ],
    )
    sex = fields.String(required=True, validate=validate.OneOf(SEXES), metadata=doc("male 男 / female 女"))
    birth_date = fields.Date(required=True)
    phone = MobilePhone(required=True, metadata=doc("Mobile phone; stored encrypted, shown masked"))
    id_number = fields.String(
        allow_none=True,
        validate=_validate_id_number,
        metadata=doc(
            "Optional 身份证号 (checksum validated); stored encrypted, shown masked. "
            "Used to match the 医保医师库."
        ),
    )
    title = fields.String(required=True, validate=validate.OneOf(TITLES), metadata=doc("职称"))
    practice_licence_no = fields.String(
        allow_none=True,
        validate=validate.Length(max=30),
        metadata=doc(
            "执业证书编号: physicians 15 digits; nurses 12 or 15 digits; others 6-30 letters/digits "
            "(optional for them)"
        ),
    )
    practice_scopes = fields.List(
        fields.String(validate=validate.OneOf(PRACTICE_SCOPES)),
        required=True,
        validate=validate.Length(min=1, max=4),
        metadata=doc("执业范围 (1-4)"),
    )
    qualifications = fields.List(
        fields.Nested(DoctorQualificationSchema),
        load_default=list,
        validate=validate.Length(max=20),
        metadata=doc("资格证书"),
    )
    specialties = fields.List(
        fields.String(validate=validate.Length(min=1, max=20)),
        load_default=list,
        validate=validate.Length(max=10),
        metadata=doc("擅长 (free tags)"),
    )
    introduction = fields.String(
        allow_none=True, validate=validate.Length(max=1000), metadata=doc("个人简介")
    )

    @validates("birth_date")
    def _adult(self, value: date, **_: Any) -> None:
        today = clock.today_local()
        age = today.year - value.year - ((today.month, today.day) < (value.month, value.day))
        if not 18 <= age <= 80:
            raise ValidationError("出生日期不合理（须年满 18 周岁）")

    @validates_schema
    def _consistent(self, data: dict[str, Any], **_: Any) -> None:
        errors: dict[str, list[str]] = {}
        if data.get("title"):
            problem = licence_problem(data["title"], (data.get("practice_licence_no") or "").strip() or None)
            if problem:
                errors["practice_licence_no"] = [problem]
        id_number = (data.get("id_number") or "").strip().upper()
        if id_number and ric.is_valid(id_number):
            if data.get("birth_date") and ric.get_birth_date(id_number) != data["birth_date"]:
                errors["birth_date"] = ["与身份证号中的出生日期不一致"]
            expected = Sex.MALE if int(id_number[16]) % 2 == 1 else Sex.FEMALE
            if data.get("sex") and data["sex"] != expected:
                errors["sex"] = ["与身份证号中的性别不一致"]
        if errors:
            raise ValidationError(errors)

    @post_load
    def _clean(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        data["name"] = data["name"].strip()
        if data.get("id_number") is not None:
            data["id_number"] = data["id_number"].strip().upper() or None
        if data.get("practice_licence_no") is not None:
            data["practice_licence_no"] = data["practice_licence_no"].strip() or None
        data["specialties"] = list(dict.fromkeys(s.strip() for s in data.get("specialties", []) if s.strip()))
        data["practice_scopes"] = list(dict.fromkeys(data["practice_scopes"]))
        return data


class DoctorRegistrationSchema(DoctorRegistrationFieldsSchema):
    institution_id = fields.UUID(
        allow_none=True, metadata=doc("Centre; defaults to the caller's. Required for district admins.")
    )
    staff_user_id = fields.UUID(
        allow_none=True,
        metadata=doc(
            "The staff account of the person (centre/district admins registering someone); self-registration "
            "links the caller's own account."
        ),
    )


class DoctorResubmitSchema(DoctorRegistrationFieldsSchema):
    """A corrected registration after rejection (same fields; centre and account stay)."""


class DoctorProfileUpdateSchema(TextInputSchema):
    phone = MobilePhone()
    specialties = fields.List(
        fields.String(validate=validate.Length(min=1, max=20)), validate=validate.Length(max=10)
    )
    introduction = fields.String(allow_none=True, validate=validate.Length(max=1000))

    @validates_schema
    def _something(self, data: dict[str, Any], **_: Any) -> None:
        if not data:
            raise ValidationError("请至少填写一项要修改的内容")

    @post_load
    def _clean(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        if "specialties" in data:
            data["specialties"] = list(dict.fromkeys(s.strip() for s in data["specialties"] if s.strip()))
        return data


class DoctorApproveSchema(TextInputSchema):
    reason = fields.String(validate=validate.Length(max=200), metadata=doc("Optional review note"))


class DoctorRejectSchema(TextInputSchema):
    reason = fields.String(required=True, validate=validate.Length(min=2, max=200), metadata=doc("驳回原因"))


class DoctorPracticeStatusSchema(TextInputSchema):
    status = fields.String(
        required=True,
        validate=validate.OneOf(PRACTICE_STATUSES),
        metadata=doc("active 在岗 / suspended 停诊 / left 离岗/离职"),
    )
    reason = fields.String(required=True, validate=validate.Length(min=2, max=200))


def _validate_mi_code(value: str) -> None:
    problem = mi_code_problem(value.strip().upper())
    if problem:
        raise ValidationError(problem)


class DoctorMiCodeSchema(TextInputSchema):
    mi_doctor_code = fields.String(
        required=True,
        validate=_validate_mi_code,
        metadata=doc("医保医师编码: D + 6-digit division + 6 digits", example="D440303000123"),
    )
    reason = fields.String(validate=validate.Length(max=200))


class DoctorCapacitySchema(TextInputSchema):
    capacity_override = fields.Integer(
        required=True,
        allow_none=True,
        validate=validate.Range(min=0, max=10000),
        metadata=doc("Residents this doctor may sign; null: the district default"),
    )


class DoctorPhotoUploadSchema(Schema):
    photo = Upload(required=True, metadata=doc("JPEG or PNG, at most 2 MB and 4096×4096"))


class DoctorQuerySchema(TextInputSchema, PageArgsSchema):
    status = fields.String(validate=validate.OneOf(STATUSES))
    practice_status = fields.String(validate=validate.OneOf(PRACTICE_STATUSES))
    institution_id = fields.UUID()
    title = fields.String(validate=validate.OneOf(TITLES))
    q = fields.String(
        validate=validate.Length(min=1, max=50), metadata=doc("Name fragment or pinyin initials")
    )


# --- output ------------------------------------------------------------------------------------


def _default_capacity() -> int:
    return int(current_app.config["DOCTOR_CAPACITY_DEFAULT"])


def _sign_problem(doctor: Doctor) -> str | None:
    from app.doctors.services.practice import sign_problem

    problem = sign_problem(doctor)
    return problem.message if problem else None


class DoctorCentreRefSchema(Schema):
    id = fields.UUID(dump_only=True)
    name = fields.String(dump_only=True)


class DoctorQualificationOutSchema(Schema):
    type = fields.String(dump_only=True)
    number = fields.String(dump_only=True)
    issued_on = fields.String(dump_only=True, metadata=doc("YYYY-MM-DD"))


class DoctorSchema(Schema):
    """A registration as staff see it: phone and ID number masked."""

    id = fields.UUID(dump_only=True)
    staff_user_id = fields.UUID(dump_only=True, allow_none=True)
    name = fields.String(dump_only=True)
    sex = fields.String(dump_only=True)
    sex_label = fields.Function(lambda d: SEX_LABELS.get(d.sex, ""), dump_only=True)
    birth_date = fields.Date(dump_only=True)
    phone = Masked("phone")
    id_number = Masked("id_number", allow_none=True)
    institution = fields.Nested(DoctorCentreRefSchema, dump_only=True)
    title = fields.String(dump_only=True)
    title_series = fields.String(dump_only=True)
    practice_licence_no = fields.String(dump_only=True, allow_none=True)
    practice_scopes = fields.List(fields.String(), dump_only=True)
    qualifications = fields.List(fields.Nested(DoctorQualificationOutSchema), dump_only=True)
    specialties = fields.List(fields.String(), dump_only=True)
    introduction = fields.String(dump_only=True, allow_none=True)
    has_photo = fields.Boolean(dump_only=True)
    photo_url = fields.Function(
        lambda d: f"/api/v1/doctors/{d.id}/photo" if d.has_photo else None, dump_only=True, allow_none=True
    )
    status = fields.String(dump_only=True, metadata={"enum": STATUSES})
    status_label = fields.Function(lambda d: REVIEW_STATUS_LABELS[d.status], dump_only=True)
    submitted_at = fields.DateTime(dump_only=True)
    centre_reviewed_at = fields.DateTime(dump_only=True, allow_none=True)
    approved_at = fields.DateTime(dump_only=True, allow_none=True)
    rejection_reason = fields.String(dump_only=True, allow_none=True)
    practice_status = fields.String(dump_only=True, metadata={"enum": PRACTICE_STATUSES})
    practice_status_label = fields.Function(
        lambda d: PRACTICE_STATUS_LABELS[d.practice_status], dump_only=True
    )
    mi_doctor_code = fields.String(dump_only=True, allow_none=True)
    mi_code_valid = fields.Boolean(attribute="has_valid_mi_code", dump_only=True)
    capacity = fields.Function(lambda d: d.capacity(_default_capacity()), dump_only=True)
    capacity_override = fields.Integer(dump_only=True, allow_none=True)
    signed_count = fields.Integer(dump_only=True)
    remaining = fields.Function(lambda d: d.remaining(_default_capacity()), dump_only=True)
    can_sign = fields.Function(lambda d: _sign_problem(d) is None, dump_only=True)
    cannot_sign_reason = fields.Function(_sign_problem, dump_only=True, allow_none=True)
    created_at = fields.DateTime(dump_only=True)
    updated_at = fields.DateTime(dump_only=True)


class DoctorHistorySchema(Schema):
    id = fields.Integer(dump_only=True)
    action = fields.String(dump_only=True)
    from_status = fields.String(dump_only=True, allow_none=True)
    to_status = fields.String(dump_only=True, allow_none=True)
    actor_kind = fields.String(dump_only=True)
    actor_id = fields.UUID(dump_only=True, allow_none=True)
    actor_role = fields.String(dump_only=True, allow_none=True)
    channel = fields.String(dump_only=True)
    reason = fields.String(dump_only=True, allow_none=True)
    detail = fields.Dict(dump_only=True)
    created_at = fields.DateTime(dump_only=True)
