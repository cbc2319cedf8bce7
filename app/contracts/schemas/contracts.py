"""Request and response shapes of the contract views: the staff list and full record, the history,
the code lists, and the mini-program's 我的家庭医生.

Responses mask personal fields (DATA-02): resident and signer
names, ID numbers. Population groups are `null` for roles that see no health data, and never
contain the special categories for roles that may not see them (the service decides).
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from app.contracts.models import ContractStatus, SigningChannel
from app.core.fields import Masked
from app.core.pagination import PageArgsSchema
from app.residents.models import GROUPS

STATUSES = [s.value for s in ContractStatus]
CHANNELS = [c.value for c in SigningChannel]
PACKAGE_CODE = validate.Regexp(r"^[a-z0-9][a-z0-9_-]{1,39}$", error="服务包代码格式不正确")
PLAIN_NOT_BLANK = validate.Regexp(r"^(?=.*\S)[^\x00-\x1f\x7f]*$", error="不能为空白，也不能包含控制字符")
_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


class YearMonth(fields.Field[date]):
    """`YYYY-MM` in, the first day of that month out."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> date:
        match = _MONTH.match(value) if isinstance(value, str) else None
        if match is None or not 2000 <= int(match.group(1)) <= 2200:
            raise ValidationError("月份格式应为 YYYY-MM，例如 2025-06")
        return date(int(match.group(1)), int(match.group(2)), 1)


# --- requests ----------------------------------------------------------------------------------------


class ContractQuerySchema(PageArgsSchema):
    status = fields.List(
        fields.String(validate=validate.OneOf([*STATUSES, "all"])),
        load_default=[ContractStatus.ACTIVE.value],
        validate=validate.Length(min=1, max=len(STATUSES) + 1),
        metadata={"description": "Repeat for several; `all`: every status. Default: active (已签约)"},
    )
    team_id = fields.UUID(metadata={"description": "One team's contracts"})
    doctor_id = fields.UUID(metadata={"description": "One doctor's contracts"})
    institution_id = fields.UUID(
        metadata={"description": "District roles: one centre (centre staff always see their own only)"}
    )
    package_code = fields.String(
        validate=PACKAGE_CODE, metadata={"description": "Contracts with this package"}
    )
    population_group = fields.String(
        validate=validate.OneOf(list(GROUPS)),
        metadata={
            "description": "Residents in this group today (care roles only; 严重精神障碍/肺结核 only for "
            "doctors and public-health staff: 403 otherwise)"
        },
    )
    channel = fields.String(validate=validate.OneOf(CHANNELS))
    expiry_month = YearMonth(
        metadata={"description": "Period ends in this month (YYYY-MM), for renewal work", "type": "string"}
    )
    signed_from = fields.Date(metadata={"description": "Signed on or after this day (China time)"})
    signed_to = fields.Date(metadata={"description": "Signed on or before this day (China time)"})
    q = fields.String(
        validate=[validate.Length(min=1, max=50), PLAIN_NOT_BLANK],
        metadata={"description": "Resident: exact ID number or mobile, pinyin initials, or part of the name"},
    )

    @validates_schema
    def _range(self, data: dict[str, Any], **kwargs: Any) -> None:
        start, end = data.get("signed_from"), data.get("signed_to")
        if start and end and start > end:
            raise ValidationError("开始日期不能晚于结束日期", field_name="signed_from")


class MyDoctorQuerySchema(Schema):
    resident_id = fields.UUID(
        metadata={"description": "A family member the caller acts for; default: the caller themselves"}
    )


# --- shared pieces -------------------------------------------------------------------------------------


class ContractCodeLabelSchema(Schema):
    code = fields.String(required=True)
    label = fields.String(required=True)


class ContractNamedRefSchema(Schema):
    id = fields.UUID(required=True)
    name = fields.String(required=True)


class ContractDoctorRefSchema(ContractNamedRefSchema):
    title = fields.String(required=True)


class ContractResidentSchema(Schema):
    id = fields.UUID(required=True)
    name = Masked("name")
    sex = fields.String(required=True)
    sex_label = fields.String(required=True)
    age = fields.Integer(required=True, metadata={"description": "周岁, today"})
    population_groups = fields.List(
        fields.Nested(ContractCodeLabelSchema),
        allow_none=True,
        metadata={"description": "服务人群 as the caller's role may see them; null: not shown to this role"},
    )


class ContractViewPackageSchema(Schema):
    package_id = fields.UUID(required=True)
    code = fields.String(required=True)
    version = fields.Integer(required=True)
    name = fields.String(required=True)
    kind = fields.String(required=True)
    kind_label = fields.String(required=True)
    price_fen = fields.Integer(required=True)
    subsidy_fen = fields.Integer(required=True)
    self_pay_fen = fields.Integer(required=True)


class ContractPackageItemSchema(Schema):
    code = fields.String(required=True)
    name = fields.String(required=True)
    service_type = fields.String(required=True)
    times_per_period = fields.Integer(required=True)
    due_within_days = fields.Integer(allow_none=True)
    frequency_label = fields.String(required=True, metadata={"description": "e.g. 签约期内 4 次"})
    description = fields.String(allow_none=True)


class ContractViewPackageWithItemsSchema(ContractViewPackageSchema):
    items = fields.List(fields.Nested(ContractPackageItemSchema), required=True)


class ContractPaymentSchema(Schema):
    status = fields.String(required=True, metadata={"enum": ["none", "unpaid", "paid", "cancelled"]})
    status_label = fields.String(required=True)
    self_pay_fen = fields.Integer(required=True)
    bill_id = fields.UUID(allow_none=True)
    bill_no = fields.String(allow_none=True)
    bill_status = fields.String(allow_none=True)
    amount_fen = fields.Integer(allow_none=True)
    paid_at = fields.DateTime(allow_none=True)


# --- staff: list ----------------------------------------------------------------------------------------


class ContractRowSchema(Schema):
    """One signed resident in a list: masked name, groups per role, no ID number."""

    id = fields.UUID(required=True)
    contract_no = fields.String(required=True)
    resident = fields.Nested(ContractResidentSchema, allow_none=True)
    institution = fields.Nested(ContractNamedRefSchema, allow_none=True)
    team = fields.Nested(ContractNamedRefSchema, allow_none=True)
    doctor = fields.Nested(ContractDoctorRefSchema, allow_none=True)
    packages = fields.List(fields.Nested(ContractViewPackageSchema), required=True)
    status = fields.String(required=True, metadata={"enum": STATUSES})
    status_label = fields.String(required=True)
    period_start = fields.Date(required=True)
    period_end = fields.Date(required=True)
    channel = fields.String(required=True)
    channel_label = fields.String(required=True)
    signed_at = fields.DateTime(allow_none=True)
    self_pay_fen = fields.Integer(required=True)
    payment_status = fields.String(required=True, metadata={"enum": ["none", "unpaid", "paid", "cancelled"]})
    payment_status_label = fields.String(required=True)
    self_pay_paid = fields.Boolean(required=True, metadata={"description": "自付部分已缴（或无需自付）"})


# --- staff: the full record -----------------------------------------------------------------------------


class RecordResidentSchema(ContractResidentSchema):
    id_number = Masked("id_number")


class ContractSignerSchema(Schema):
    way = fields.String(required=True)
    way_label = fields.String(required=True)
    resident_id = fields.UUID(allow_none=True)
    name = Masked("name", allow_none=True)
    relationship = fields.String(allow_none=True)


class AgreementSnapshotSchema(Schema):
    template_id = fields.UUID(allow_none=True)
    clauses = fields.List(
        fields.Dict(), required=True, metadata={"description": "The clauses as signed, personal names masked"}
    )
    text = fields.String(
        required=True, metadata={"description": "The full text as signed, personal names masked"}
    )
    sha256 = fields.String(
        required=True,
        metadata={"description": "SHA-256 (UTF-8) of the text exactly as signed (unmasked, as printed)"},
    )
    names_masked = fields.Boolean(required=True)


class ContractSignatureInfoSchema(Schema):
    role = fields.String(required=True, metadata={"enum": ["resident", "doctor"]})
    role_label = fields.String(required=True)
    signer_name = Masked("name", allow_none=True)
    sha256 = fields.String(required=True)
    signed_at = fields.DateTime(required=True)
    url = fields.String(required=True, metadata={"description": "The PNG (staff of the centre, audited)"})


class ContractAttachmentInfoSchema(Schema):
    id = fields.UUID(required=True)
    kind = fields.String(required=True)
    kind_label = fields.String(required=True)
    content_type = fields.String(required=True)
    size = fields.Integer(required=True)
    sha256 = fields.String(required=True)
    uploaded_at = fields.DateTime(required=True)


class ContractRecordSchema(Schema):
    """A contract's full record for staff of its centre (district roles: any)."""

    id = fields.UUID(required=True)
    contract_no = fields.String(required=True)
    status = fields.String(required=True, metadata={"enum": STATUSES})
    status_label = fields.String(required=True)
    status_changed_at = fields.DateTime(required=True)
    channel = fields.String(required=True)
    channel_label = fields.String(required=True)
    resident = fields.Nested(RecordResidentSchema, allow_none=True)
    institution = fields.Nested(ContractNamedRefSchema, allow_none=True)
    team = fields.Nested(ContractNamedRefSchema, allow_none=True)
    doctor = fields.Nested(ContractDoctorRefSchema, allow_none=True)
    signer = fields.Nested(ContractSignerSchema, required=True)
    household_batch = fields.UUID(allow_none=True)
    renewal_of_id = fields.UUID(allow_none=True)
    period_start = fields.Date(required=True)
    period_end = fields.Date(required=True)
    price_fen = fields.Integer(required=True)
    subsidy_fen = fields.Integer(required=True)
    self_pay_fen = fields.Integer(required=True)
    packages = fields.List(fields.Nested(ContractViewPackageWithItemsSchema), required=True)
    payment = fields.Nested(ContractPaymentSchema, required=True)
    agreement = fields.Nested(AgreementSnapshotSchema, required=True)
    signatures = fields.List(fields.Nested(ContractSignatureInfoSchema), required=True)
    attachments = fields.List(fields.Nested(ContractAttachmentInfoSchema), required=True)
    print_count = fields.Integer(required=True)
    last_printed_at = fields.DateTime(allow_none=True)
    applied_at = fields.DateTime(allow_none=True)
    review_due_at = fields.DateTime(allow_none=True)
    reviewed_at = fields.DateTime(allow_none=True)
    rejection_reason = fields.String(allow_none=True)
    confirmed_at = fields.DateTime(allow_none=True)
    signed_at = fields.DateTime(allow_none=True)
    activated_at = fields.DateTime(allow_none=True)
    ended_at = fields.DateTime(allow_none=True)
    end_reason = fields.String(allow_none=True)
    signed_place = fields.String(allow_none=True)
    signed_latitude = fields.String(allow_none=True)
    signed_longitude = fields.String(allow_none=True)
    created_by_kind = fields.String(required=True)
    created_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(required=True)


# --- history ------------------------------------------------------------------------------------------


class ContractEventViewSchema(Schema):
    """One history row as residents read it: staff by role only."""

    id = fields.Integer(required=True)
    action = fields.String(required=True)
    action_label = fields.String(required=True)
    from_status = fields.String(allow_none=True)
    from_status_label = fields.String(allow_none=True)
    to_status = fields.String(allow_none=True)
    to_status_label = fields.String(allow_none=True)
    actor_kind = fields.String(required=True, metadata={"enum": ["staff", "resident", "partner", "system"]})
    actor_kind_label = fields.String(required=True)
    actor_role = fields.String(allow_none=True)
    actor_role_label = fields.String(allow_none=True)
    channel = fields.String(required=True)
    channel_label = fields.String(required=True)
    reason = fields.String(allow_none=True)
    at = fields.DateTime(required=True)


class StaffContractEventSchema(ContractEventViewSchema):
    """One history row for staff: the staff actor's name and the event's detail too."""

    actor_name = fields.String(allow_none=True)
    detail = fields.Dict(required=True)


# --- codes ------------------------------------------------------------------------------------------------


class ContractCodesSchema(Schema):
    statuses = fields.List(fields.Nested(ContractCodeLabelSchema), required=True)
    channels = fields.List(fields.Nested(ContractCodeLabelSchema), required=True)
    signing_ways = fields.List(fields.Nested(ContractCodeLabelSchema), required=True)
    actions = fields.List(fields.Nested(ContractCodeLabelSchema), required=True)
    actor_kinds = fields.List(fields.Nested(ContractCodeLabelSchema), required=True)
    signature_roles = fields.List(fields.Nested(ContractCodeLabelSchema), required=True)
    attachment_kinds = fields.List(fields.Nested(ContractCodeLabelSchema), required=True)
    package_kinds = fields.List(fields.Nested(ContractCodeLabelSchema), required=True)
    payment_statuses = fields.List(fields.Nested(ContractCodeLabelSchema), required=True)
    progress_steps = fields.List(fields.Nested(ContractCodeLabelSchema), required=True)
    progress_states = fields.List(fields.Nested(ContractCodeLabelSchema), required=True)


# --- the mini-program ---------------------------------------------------------------------------------


class MpDoctorSchema(Schema):
    id = fields.UUID(required=True)
    name = fields.String(required=True)
    title = fields.String(required=True)
    sex = fields.String(required=True)
    photo_url = fields.String(allow_none=True, metadata={"description": "/mp/v1/doctors/{id}/photo?v=..."})


class MpCentreSchema(Schema):
    id = fields.String(required=True)
    name = fields.String(required=True)
    address = fields.String(required=True)
    phone = fields.String(allow_none=True)


class ContractProgressStepSchema(Schema):
    key = fields.String(required=True, metadata={"enum": ["submit", "review", "confirm", "pay", "active"]})
    label = fields.String(required=True)
    state = fields.String(
        required=True, metadata={"enum": ["done", "current", "pending", "skipped", "failed"]}
    )
    state_label = fields.String(required=True)
    at = fields.DateTime(allow_none=True)
    note = fields.String(allow_none=True)


class MpLinksSchema(Schema):
    agreement_pdf = fields.String(allow_none=True)
    history = fields.String(required=True)


class MpContractSchema(Schema):
    id = fields.UUID(required=True)
    contract_no = fields.String(required=True)
    status = fields.String(required=True, metadata={"enum": STATUSES})
    status_label = fields.String(required=True)
    channel = fields.String(required=True)
    channel_label = fields.String(required=True)
    doctor = fields.Nested(MpDoctorSchema, allow_none=True)
    team = fields.Nested(ContractNamedRefSchema, allow_none=True)
    centre = fields.Nested(MpCentreSchema, allow_none=True)
    packages = fields.List(fields.Nested(ContractViewPackageWithItemsSchema), required=True)
    period_start = fields.Date(required=True)
    period_end = fields.Date(required=True)
    days_remaining = fields.Integer(
        allow_none=True, metadata={"description": "Days left including today; null unless signed or applying"}
    )
    price_fen = fields.Integer(required=True)
    subsidy_fen = fields.Integer(required=True)
    self_pay_fen = fields.Integer(required=True)
    payment = fields.Nested(ContractPaymentSchema, required=True)
    review_due_at = fields.DateTime(allow_none=True)
    rejection_reason = fields.String(allow_none=True)
    end_reason = fields.String(allow_none=True)
    progress = fields.List(fields.Nested(ContractProgressStepSchema), required=True)
    links = fields.Nested(MpLinksSchema, required=True)


class MpResidentRefSchema(Schema):
    id = fields.UUID(required=True)
    name = Masked("name")


class MyDoctorSchema(Schema):
    resident = fields.Nested(MpResidentRefSchema, required=True)
    has_contract = fields.Boolean(required=True)
    contract = fields.Nested(MpContractSchema, allow_none=True)
