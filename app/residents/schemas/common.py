"""Shared pieces of the residents schemas: code values, validators, small references, and the
population-groups field (which shows each role only what it may see)."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate

from app.core.auth import current_principal
from app.core.fields import Masked
from app.residents import services
from app.residents.models import (
    CONSENT_PURPOSES,
    GROUPS,
    HEAD,
    HOUSEHOLD_RELATIONSHIPS,
    SEX_LABELS,
    IdentityError,
    IdType,
    ResidentStatus,
    parse_identity,
)

ID_TYPES = [t.value for t in IdType]
SEXES = list(SEX_LABELS)
STATUSES = [s.value for s in ResidentStatus]
MEMBER_RELATIONSHIPS = [code for code in HOUSEHOLD_RELATIONSHIPS if code != HEAD]
CONSENT_BASED_PURPOSES = [code for code, p in CONSENT_PURPOSES.items() if p.needs_consent]
# Free text: no control characters (PostgreSQL refuses NUL; nothing legitimate needs them).
PLAIN = validate.Regexp(r"^[^\x00-\x1f\x7f]*$", error="不能包含控制字符")
PLAIN_NOT_BLANK = validate.Regexp(r"^(?=.*\S)[^\x00-\x1f\x7f]*$", error="不能为空白，也不能包含控制字符")


def text_rules(
    min_length: int | None = None, max_length: int | None = None, *, blank: bool = False
) -> list[Any]:
    return [validate.Length(min=min_length, max=max_length), PLAIN if blank else PLAIN_NOT_BLANK]


NAME_RULE = validate.Regexp(r"^(?=.*\S)[^\d\x00-\x1f\x7f<>{}\[\]]{1,50}$", error="姓名不能包含数字或特殊符号")


def choices(labels: dict[Any, str]) -> str:
    return "; ".join(f"{code}={label}" for code, label in labels.items())


def storable_group(code: str) -> None:
    group = GROUPS.get(code)
    if group is None:
        raise ValidationError("无效的人群分类")
    if group.derived:
        raise ValidationError(f"“{group.label}”由出生日期自动判定，无需填写")


def check_identity(data: dict[str, Any], *, default_type: str | None) -> None:
    id_type = data.get("id_type", default_type)
    if id_type is None or "id_number" not in data:
        return
    try:
        parse_identity(id_type, data["id_number"], sex=data.get("sex"), birth_date=data.get("birth_date"))
    except IdentityError as exc:
        raise ValidationError(exc.message, field_name=exc.field) from None


# --- small references -------------------------------------------------------------------------


class ResidentNamedRefSchema(Schema):
    id = fields.UUID(dump_only=True)
    name = fields.String(dump_only=True)


class ResidentCodeLabelSchema(Schema):
    code = fields.String(dump_only=True)
    label = fields.String(dump_only=True)


class ResidentRefSchema(Schema):
    id = fields.UUID(dump_only=True)
    name = Masked("name")


class PopulationGroupsField(fields.List[Any]):
    """The groups the caller may see (age-derived ones computed today); null for roles that see
    no health data (cashier, auditor)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(fields.Nested(ResidentCodeLabelSchema), dump_only=True, allow_none=True, **kwargs)

    def get_value(self, obj: Any, attr: str, accessor: Any = None, default: Any = None) -> Any:
        codes = services.visible_groups(obj, current_principal())
        return None if codes is None else [{"code": c, "label": GROUPS[c].label} for c in codes]
