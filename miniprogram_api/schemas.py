"""Request and response shapes of the mini-program account API. Unknown fields are rejected."""

from __future__ import annotations

import re
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate
from stdnum.cn import ric

from app.core.fields import Masked
from app.mp_accounts.models import PROXY_RELATIONSHIPS, RELATIONSHIP_LABELS, Relationship

_GB11643 = re.compile(r"\d{17}[\dX]")
_ID_NUMBER = re.compile(r"[0-9A-Z-]{4,32}")
RELATIONSHIP_DOC = "; ".join(f"{r.value}={RELATIONSHIP_LABELS[r]}" for r in Relationship)


class IdNumber(fields.String):
    """An ID number: spaces removed, letters upper-cased; 18-digit numbers must pass the checksum."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = re.sub(r"\s+", "", super()._deserialize(value, attr, data, **kwargs)).upper()
        if not _ID_NUMBER.fullmatch(text):
            raise ValidationError("证件号码格式不正确")
        if len(text) == 18 and _GB11643.fullmatch(text) and ric.calc_check_digit(text) != text[17]:
            raise ValidationError("身份证号码校验位不正确，请核对后重新输入")
        return text


class LoginSchema(Schema):
    code = fields.String(
        required=True,
        load_only=True,
        validate=validate.Regexp(r"^[A-Za-z0-9_.-]{1,128}$", error="登录凭证格式不正确"),
        metadata={"description": "The code from `wx.login()` (valid about 5 minutes, single use)"},
    )


class MpUserSchema(Schema):
    id = fields.UUID(dump_only=True)
    identity_bound = fields.Boolean(dump_only=True, metadata={"description": "本人实名认证已完成"})
    family_members = fields.Integer(dump_only=True, metadata={"description": "已绑定的家庭成员数"})
    created_at = fields.DateTime(dump_only=True)


class MpTokenSchema(Schema):
    token = fields.String(
        required=True, metadata={"description": "Resident token: `Authorization: Bearer rt_...`"}
    )
    token_type = fields.String(required=True, metadata={"example": "Bearer"})
    expires_at = fields.DateTime(required=True, metadata={"description": "End of the absolute lifetime"})
    idle_timeout_seconds = fields.Integer(required=True)
    is_new_user = fields.Boolean(required=True)
    user = fields.Nested(MpUserSchema, required=True)


class IdentitySchema(Schema):
    name = fields.String(
        required=True, validate=validate.Length(min=1, max=50), metadata={"description": "姓名"}
    )
    id_number = IdNumber(required=True, metadata={"description": "证件号码（居民身份证等）"})


class FamilyRequestSchema(IdentitySchema):
    relationship = fields.String(
        required=True,
        validate=validate.OneOf([r.value for r in PROXY_RELATIONSHIPS]),
        metadata={"description": "What the caller is to the family member: " + RELATIONSHIP_DOC},
    )


class OtpSchema(Schema):
    otp = fields.String(
        required=True,
        load_only=True,
        validate=validate.Regexp(r"^\d{6}$", error="验证码应为 6 位数字"),
        metadata={"description": "The 6-digit code sent by SMS"},
    )


class ChallengeSchema(Schema):
    purpose = fields.String(required=True)
    relationship = fields.String(required=True)
    masked_phone = fields.String(
        required=True, metadata={"description": "Where the code went, e.g. 138****1234"}
    )
    expires_at = fields.DateTime(required=True)
    resend_after_seconds = fields.Integer(required=True)


class InstitutionRefSchema(Schema):
    id = fields.UUID(dump_only=True)
    name = fields.String(dump_only=True)


class BoundResidentSchema(Schema):
    id = fields.UUID(dump_only=True)
    name = Masked("name")
    id_number = Masked("id_number")
    institution = fields.Nested(InstitutionRefSchema, dump_only=True)


class BindingSchema(Schema):
    id = fields.UUID(dump_only=True)
    relationship = fields.String(dump_only=True, metadata={"description": RELATIONSHIP_DOC})
    relationship_label = fields.String(dump_only=True)
    verified_by = fields.String(dump_only=True)
    verified_at = fields.DateTime(dump_only=True)
    created_at = fields.DateTime(dump_only=True)
    resident = fields.Nested(BoundResidentSchema, dump_only=True)
