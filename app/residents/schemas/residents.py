"""Request and response shapes of residents, their guardians, consents, transfers and history.

Requests: unknown fields are rejected (marshmallow RAISE), so server-owned fields (`status`,
`institution_id` on update, `name_initials`, ...) can never be mass-assigned (API-02).
Responses: name, ID number, phone and addresses are always masked (DATA-02); the unmask endpoint
is the only way to see one of them in clear. List items carry no health data (population groups).
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from app.core import clock
from app.core.fields import Masked, MobilePhone
from app.core.pagination import PageArgsSchema
from app.residents import services
from app.residents.models import (
    CHANGE_ACTION_LABELS,
    CONSENT_CHANNELS,
    CONSENT_GRANTORS,
    CONSENT_PURPOSES,
    GUARDIAN_RELATIONSHIPS,
    HOUSEHOLD_RELATIONSHIPS,
    ID_TYPE_LABELS,
    LEGAL_BASIS_LABELS,
    POPULATION_GROUPS,
    SEX_LABELS,
    STAFF_CONSENT_CHANNELS,
    STATUS_LABELS,
    IdType,
    LegalBasis,
    ResidentStatus,
)
from app.residents.schemas.common import (
    CONSENT_BASED_PURPOSES,
    ID_TYPES,
    NAME_RULE,
    SEXES,
    STATUSES,
    PopulationGroupsField,
    ResidentNamedRefSchema,
    ResidentRefSchema,
    check_identity,
    choices,
    storable_group,
    text_rules,
)

# --- residents: responses ---------------------------------------------------------------------


class ResidentSummarySchema(Schema):
    """A search result: masked identity, no health data (DATA-02, DATA-10)."""

    id = fields.UUID(dump_only=True)
    name = Masked("name")
    sex = fields.String(dump_only=True, metadata={"enum": SEXES})
    sex_label = fields.Function(lambda r: SEX_LABELS[r.sex], metadata={"type": "string"})
    age = fields.Function(
        lambda r: r.age_on(clock.today_local()), metadata={"type": "integer", "description": "周岁, today"}
    )
    id_type = fields.String(dump_only=True, metadata={"enum": ID_TYPES})
    id_type_label = fields.Function(lambda r: ID_TYPE_LABELS[IdType(r.id_type)], metadata={"type": "string"})
    id_number = Masked("id_number")
    phone = Masked("phone", allow_none=True)
    community = fields.Nested(ResidentNamedRefSchema, dump_only=True)
    institution = fields.Nested(ResidentNamedRefSchema, dump_only=True, metadata={"description": "管理机构"})
    status = fields.String(dump_only=True, metadata={"enum": STATUSES})
    status_label = fields.Function(
        lambda r: STATUS_LABELS[ResidentStatus(r.status)], metadata={"type": "string"}
    )


class MembershipRefSchema(Schema):
    household_id = fields.UUID(dump_only=True)
    relationship = fields.String(dump_only=True)
    relationship_label = fields.Function(
        lambda m: HOUSEHOLD_RELATIONSHIPS[m.relationship], metadata={"type": "string"}
    )


class ResidentSchema(ResidentSummarySchema):
    """One resident. Personal fields masked; population groups as the caller's role may see them."""

    birth_date = fields.Date(dump_only=True)
    current_address = Masked("address")
    registered_address = Masked("address", allow_none=True)
    street = fields.Nested(ResidentNamedRefSchema, dump_only=True)
    population_groups = PopulationGroupsField(
        metadata={"description": "服务人群; null: not shown to this role"}
    )
    guardian_id = fields.UUID(dump_only=True, allow_none=True)
    guardian = fields.Nested(
        ResidentRefSchema,
        dump_only=True,
        allow_none=True,
        metadata={"description": "Null when not set or not visible to the caller"},
    )
    guardian_relationship = fields.String(
        dump_only=True, allow_none=True, metadata={"enum": list(GUARDIAN_RELATIONSHIPS)}
    )
    household = fields.Nested(MembershipRefSchema, attribute="membership", dump_only=True, allow_none=True)
    status_date = fields.Date(dump_only=True, allow_none=True)
    created_at = fields.DateTime(dump_only=True)
    updated_at = fields.DateTime(dump_only=True)


class ResidentChangeSchema(Schema):
    id = fields.Integer(dump_only=True)
    action = fields.String(dump_only=True, metadata={"enum": list(CHANGE_ACTION_LABELS)})
    action_label = fields.Function(
        lambda c: CHANGE_ACTION_LABELS.get(c.action, c.action), metadata={"type": "string"}
    )
    fields_ = fields.List(
        fields.String(),
        data_key="fields",
        attribute="fields",
        dump_only=True,
        metadata={"description": "Names of the changed fields (never their values)"},
    )
    detail = fields.Dict(dump_only=True)
    actor = fields.String(dump_only=True, allow_none=True)
    actor_role = fields.String(dump_only=True, allow_none=True)
    reason = fields.String(dump_only=True, allow_none=True)
    created_at = fields.DateTime(dump_only=True)


class ResidentTransferSchema(Schema):
    id = fields.UUID(dump_only=True)
    resident_id = fields.UUID(dump_only=True)
    from_institution = fields.Nested(ResidentNamedRefSchema, dump_only=True)
    to_institution = fields.Nested(ResidentNamedRefSchema, dump_only=True)
    household_id = fields.UUID(
        dump_only=True, allow_none=True, metadata={"description": "Set when the whole household moved"}
    )
    reason = fields.String(dump_only=True)
    actor = fields.String(dump_only=True, allow_none=True)
    actor_role = fields.String(dump_only=True, allow_none=True)
    created_at = fields.DateTime(dump_only=True)


class ResidentConsentSchema(Schema):
    id = fields.UUID(dump_only=True)
    purpose = fields.String(dump_only=True, metadata={"enum": list(CONSENT_PURPOSES)})
    purpose_label = fields.Function(lambda c: CONSENT_PURPOSES[c.purpose].label, metadata={"type": "string"})
    text_version = fields.String(dump_only=True)
    legal_basis = fields.String(dump_only=True, metadata={"enum": [b.value for b in LegalBasis]})
    legal_basis_label = fields.Function(
        lambda c: LEGAL_BASIS_LABELS[LegalBasis(c.legal_basis)], metadata={"type": "string"}
    )
    granted_by = fields.String(dump_only=True, metadata={"enum": list(CONSENT_GRANTORS)})
    guardian_id = fields.UUID(dump_only=True, allow_none=True)
    guardian_relationship = fields.String(dump_only=True, allow_none=True)
    channel = fields.String(dump_only=True, metadata={"enum": list(CONSENT_CHANNELS)})
    granted_at = fields.DateTime(dump_only=True)
    recorded_by = fields.String(dump_only=True, allow_none=True)
    state = fields.String(dump_only=True, metadata={"enum": ["active", "revoked", "superseded"]})
    ended_at = fields.DateTime(dump_only=True, allow_none=True)
    end_reason = fields.String(dump_only=True, allow_none=True)
    revoked_by = fields.String(dump_only=True, allow_none=True)
    revoke_channel = fields.String(dump_only=True, allow_none=True)


class ResidentUnmaskResultSchema(Schema):
    field = fields.String(required=True)
    value = fields.String(required=True, allow_none=True)


# --- residents: requests ----------------------------------------------------------------------


class ResidentCreateSchema(Schema):
    name = fields.String(required=True, validate=NAME_RULE)
    id_type = fields.String(
        load_default=IdType.RESIDENT_ID_CARD.value,
        validate=validate.OneOf(ID_TYPES),
        metadata={"description": choices(ID_TYPE_LABELS)},
    )
    id_number = fields.String(required=True, validate=text_rules(1, 40))
    sex = fields.String(
        validate=validate.OneOf(SEXES),
        metadata={"description": "Derived from a 身份证/居住证 number; required for other ID types"},
    )
    birth_date = fields.Date(
        metadata={"description": "Derived from a 身份证/居住证 number; required otherwise"}
    )
    phone = MobilePhone(allow_none=True)
    current_address = fields.String(required=True, validate=text_rules(2, 200))
    registered_address = fields.String(
        allow_none=True, validate=text_rules(max_length=200, blank=True), metadata={"description": "户籍地址"}
    )
    community_id = fields.UUID(
        required=True, metadata={"description": "居住社区; the street follows from it"}
    )
    population_groups = fields.List(
        fields.String(validate=storable_group),
        load_default=list,
        validate=validate.Length(max=len(POPULATION_GROUPS)),
        metadata={"description": "Stored groups only; age groups are derived"},
    )
    guardian_id = fields.UUID(allow_none=True, metadata={"description": "Required under 14 (PIPL Art. 31)"})
    guardian_relationship = fields.String(
        allow_none=True, validate=validate.OneOf(list(GUARDIAN_RELATIONSHIPS))
    )
    institution_id = fields.UUID(
        metadata={
            "description": "管理机构: district roles must give it; centre staff "
            "register into their own centre"
        }
    )

    @validates_schema
    def _rules(self, data: dict[str, Any], **_kwargs: Any) -> None:
        check_identity(data, default_type=IdType.RESIDENT_ID_CARD.value)
        if data.get("guardian_id") and not data.get("guardian_relationship"):
            raise ValidationError("请选择与监护人的关系", field_name="guardian_relationship")


class ResidentUpdateSchema(Schema):
    name = fields.String(validate=NAME_RULE)
    id_type = fields.String(validate=validate.OneOf(ID_TYPES))
    id_number = fields.String(validate=text_rules(1, 40))
    sex = fields.String(validate=validate.OneOf(SEXES))
    birth_date = fields.Date()
    phone = MobilePhone(allow_none=True)
    current_address = fields.String(validate=text_rules(2, 200))
    registered_address = fields.String(allow_none=True, validate=text_rules(max_length=200, blank=True))
    community_id = fields.UUID()
    population_groups = fields.List(
        fields.String(validate=storable_group),
        validate=validate.Length(max=len(POPULATION_GROUPS)),
        metadata={"description": "Replaces the stored groups the caller may see"},
    )
    reason = fields.String(
        validate=text_rules(max_length=200, blank=True), metadata={"description": "Why (kept in history)"}
    )

    @validates_schema
    def _rules(self, data: dict[str, Any], **_kwargs: Any) -> None:
        if not set(data) - {"reason"}:
            raise ValidationError("请至少修改一项信息", field_name="_schema")
        check_identity(data, default_type=None)


class ResidentQuerySchema(PageArgsSchema):
    q = fields.String(
        validate=text_rules(1, 50),
        metadata={
            "description": "An exact ID number or mobile number, pinyin initials (zsf), or part of a name"
        },
    )
    id_number = fields.String(validate=text_rules(4, 40), metadata={"description": "Exact match"})
    phone = MobilePhone(metadata={"description": "Exact match"})
    name = fields.String(
        validate=text_rules(1, 50),
        metadata={"description": "Part of the name, or pinyin initials"},
    )
    household_id = fields.UUID()
    community_id = fields.UUID()
    street_id = fields.UUID()
    status = fields.String(validate=validate.OneOf(STATUSES))
    institution_id = fields.UUID(metadata={"description": "District roles: one centre"})


class ResidentStatusChangeSchema(Schema):
    status = fields.String(
        required=True, validate=validate.OneOf(STATUSES), metadata={"description": choices(STATUS_LABELS)}
    )
    effective_date = fields.Date(required=True, metadata={"description": "迁出/死亡/迁回 date"})
    reason = fields.String(validate=text_rules(max_length=200, blank=True))


class TransferRequestSchema(Schema):
    to_institution_id = fields.UUID(required=True)
    reason = fields.String(required=True, validate=text_rules(2, 200))
    include_household = fields.Boolean(
        load_default=False, metadata={"description": "Move the resident's whole household too"}
    )


class GuardianRequestSchema(Schema):
    guardian_id = fields.UUID(required=True)
    relationship = fields.String(
        required=True,
        validate=validate.OneOf(list(GUARDIAN_RELATIONSHIPS)),
        metadata={"description": choices(GUARDIAN_RELATIONSHIPS)},
    )
    reason = fields.String(validate=text_rules(max_length=200, blank=True))


class ConsentGrantSchema(Schema):
    purpose = fields.String(
        required=True,
        validate=validate.OneOf(CONSENT_BASED_PURPOSES),
        metadata={"description": choices({c: CONSENT_PURPOSES[c].label for c in CONSENT_BASED_PURPOSES})},
    )
    text_version = fields.String(
        required=True,
        validate=text_rules(1, 20),
        metadata={"description": "The version of the consent text shown (must be current)"},
    )
    granted_by = fields.String(
        required=True,
        validate=validate.OneOf(list(CONSENT_GRANTORS)),
        metadata={"description": "guardian: required under 14"},
    )
    channel = fields.String(required=True, validate=validate.OneOf(STAFF_CONSENT_CHANNELS))


class ConsentRevokeSchema(Schema):
    revoked_by = fields.String(required=True, validate=validate.OneOf(list(CONSENT_GRANTORS)))
    channel = fields.String(required=True, validate=validate.OneOf(STAFF_CONSENT_CHANNELS))
    reason = fields.String(validate=text_rules(max_length=200, blank=True))


class ResidentUnmaskSchema(Schema):
    field = fields.String(required=True, validate=validate.OneOf(list(services.UNMASK_FIELDS)))
    reason = fields.String(
        required=True,
        validate=validate.OneOf(list(services.UNMASK_REASONS)),
        metadata={"description": choices(services.UNMASK_REASONS)},
    )
    note = fields.String(validate=text_rules(max_length=150, blank=True))


class ResidentHistoryQuerySchema(PageArgsSchema):
    pass
