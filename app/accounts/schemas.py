"""Request and response shapes of staff accounts. Unknown fields are rejected (marshmallow RAISE)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from app.accounts.services import UNMASK_REASONS, permission_label, permissions_of
from app.core.auth import GRANTABLE_PERMISSIONS, ROLE_LABELS, Role
from app.core.fields import Masked, MobilePhone
from app.core.pagination import PageArgsSchema

ROLES = [r.value for r in Role]


class StaffLoginSchema(Schema):
    username = fields.String(required=True, validate=validate.Length(min=1, max=64))
    password = fields.String(required=True, load_only=True, validate=validate.Length(min=1, max=128))


class RefreshSchema(Schema):
    refresh_token = fields.String(required=True, load_only=True, validate=validate.Length(min=10, max=200))


class PasswordChangeSchema(Schema):
    current_password = fields.String(required=True, load_only=True, validate=validate.Length(min=1, max=128))
    new_password = fields.String(required=True, load_only=True, validate=validate.Length(min=1, max=128))


class StaffInstitutionRefSchema(Schema):
    id = fields.UUID(required=True)
    name = fields.String(required=True)


class StaffSchema(Schema):
    id = fields.UUID(dump_only=True)
    username = fields.String(dump_only=True)
    name = fields.String(dump_only=True)
    phone = Masked("phone", allow_none=True)
    role = fields.String(dump_only=True, metadata={"enum": ROLES})
    role_label = fields.Function(lambda u: ROLE_LABELS[Role(u.role)], dump_only=True)
    institution = fields.Nested(StaffInstitutionRefSchema, dump_only=True, allow_none=True)
    is_active = fields.Boolean(dump_only=True)
    locked_until = fields.DateTime(dump_only=True, allow_none=True)
    must_change_password = fields.Boolean(dump_only=True)
    last_login_at = fields.DateTime(dump_only=True, allow_none=True)
    created_at = fields.DateTime(dump_only=True)
    grants = fields.Function(
        permissions_of,
        dump_only=True,
        metadata={
            "description": "Permissions granted to this person (DATA-05 categories: "
            + "; ".join(f"{k}={v[0]}" for k, v in GRANTABLE_PERMISSIONS.items())
            + ")",
            "type": "array",
            "items": {"type": "string"},
        },
    )


class TokenSchema(Schema):
    access_token = fields.String(required=True)
    refresh_token = fields.String(required=True)
    token_type = fields.String(required=True, metadata={"example": "Bearer"})
    access_expires_at = fields.DateTime(required=True)
    expires_at = fields.DateTime(
        required=True, metadata={"description": "End of the session's absolute lifetime"}
    )
    idle_timeout_seconds = fields.Integer(required=True)
    must_change_password = fields.Boolean(required=True)
    user = fields.Nested(StaffSchema, required=True)


class StaffQuerySchema(PageArgsSchema):
    role = fields.String(validate=validate.OneOf(ROLES))
    institution_id = fields.UUID()
    q = fields.String(
        validate=validate.Length(min=1, max=50),
        metadata={"description": "Name or username fragment, or an exact phone number"},
    )
    is_active = fields.Boolean()


class StaffCreateSchema(Schema):
    username = fields.String(
        required=True,
        validate=validate.Regexp(r"^[A-Za-z0-9_.-]{3,64}$", error="用户名须为 3-64 位字母、数字或 _ . -"),
    )
    name = fields.String(required=True, validate=validate.Length(min=1, max=50))
    phone = MobilePhone(allow_none=True)
    role = fields.String(required=True, validate=validate.OneOf(ROLES))
    institution_id = fields.UUID(allow_none=True, metadata={"description": "Required for centre roles"})
    password = fields.String(
        required=True,
        load_only=True,
        validate=validate.Length(min=1, max=128),
        metadata={"description": "Temporary password; the user must change it at first login"},
    )


class StaffUpdateSchema(Schema):
    name = fields.String(validate=validate.Length(min=1, max=50))
    phone = MobilePhone(allow_none=True)


class RoleChangeSchema(Schema):
    role = fields.String(required=True, validate=validate.OneOf(ROLES))
    reason = fields.String(required=True, validate=validate.Length(min=2, max=200))


class ReasonSchema(Schema):
    reason = fields.String(required=True, validate=validate.Length(min=2, max=200))


class UnlockSchema(ReasonSchema):
    reset_password = fields.String(
        load_only=True,
        validate=validate.Length(min=1, max=128),
        metadata={"description": "Optional new temporary password"},
    )


class StaffUnmaskSchema(Schema):
    field = fields.String(required=True, validate=validate.OneOf(["phone"]))
    reason = fields.String(
        required=True,
        validate=validate.OneOf(list(UNMASK_REASONS)),
        metadata={"description": "; ".join(f"{k}={v}" for k, v in UNMASK_REASONS.items())},
    )
    note = fields.String(validate=validate.Length(max=150))


class StaffUnmaskResultSchema(Schema):
    field = fields.String(required=True)
    value = fields.String(required=True, allow_none=True)


# --- category permissions (DATA-05) ---------------------------------------------------------------


class StaffGrantSchema(Schema):
    permission = fields.String(dump_only=True, metadata={"enum": list(GRANTABLE_PERMISSIONS)})
    label = fields.Function(lambda g: permission_label(g.permission), dump_only=True)
    granted_by = fields.String(dump_only=True, allow_none=True, metadata={"description": "Actor reference"})
    granted_at = fields.DateTime(dump_only=True)


class GrantablePermissionSchema(Schema):
    permission = fields.String(dump_only=True)
    label = fields.String(dump_only=True)


class StaffGrantsSchema(Schema):
    staff_id = fields.UUID(dump_only=True)
    grants = fields.List(fields.Nested(StaffGrantSchema), dump_only=True)
    available = fields.List(
        fields.Nested(GrantablePermissionSchema),
        dump_only=True,
        metadata={"description": "The permissions this person's role may hold"},
    )


class RevokeReasonSchema(Schema):
    reason = fields.String(
        validate=validate.Length(min=2, max=200),
        metadata={"description": "Why (required: in the query string or in the JSON body)"},
    )
