"""The code lists endpoint: every code with its Chinese label."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields

from app.residents import services
from app.residents.models import (
    CONSENT_CHANNELS,
    CONSENT_PURPOSES,
    GUARDIAN_RELATIONSHIPS,
    HOUSEHOLD_RELATIONSHIPS,
    ID_TYPE_LABELS,
    POPULATION_GROUPS,
    SEX_LABELS,
    STATUS_LABELS,
)
from app.residents.schemas.common import (
    ResidentCodeLabelSchema,
)

# --- code lists -------------------------------------------------------------------------------


class PopulationGroupCodeSchema(ResidentCodeLabelSchema):
    derived = fields.Boolean(dump_only=True)
    special = fields.Boolean(dump_only=True)


class ConsentPurposeCodeSchema(ResidentCodeLabelSchema):
    legal_basis = fields.String(dump_only=True)
    current_version = fields.String(dump_only=True, allow_none=True)


class ResidentCodesSchema(Schema):
    id_types = fields.List(fields.Nested(ResidentCodeLabelSchema))
    sexes = fields.List(fields.Nested(ResidentCodeLabelSchema))
    statuses = fields.List(fields.Nested(ResidentCodeLabelSchema))
    population_groups = fields.List(fields.Nested(PopulationGroupCodeSchema))
    household_relationships = fields.List(fields.Nested(ResidentCodeLabelSchema))
    guardian_relationships = fields.List(fields.Nested(ResidentCodeLabelSchema))
    consent_purposes = fields.List(fields.Nested(ConsentPurposeCodeSchema))
    consent_channels = fields.List(fields.Nested(ResidentCodeLabelSchema))
    unmask_reasons = fields.List(fields.Nested(ResidentCodeLabelSchema))


def _pairs(labels: dict[Any, str]) -> list[dict[str, str]]:
    return [{"code": str(code), "label": label} for code, label in labels.items()]


def code_lists() -> dict[str, Any]:
    versions = services.current_versions()
    return {
        "id_types": _pairs(ID_TYPE_LABELS),
        "sexes": _pairs(SEX_LABELS),
        "statuses": _pairs(STATUS_LABELS),
        "population_groups": [
            {"code": g.code, "label": g.label, "derived": g.derived, "special": g.special}
            for g in POPULATION_GROUPS
        ],
        "household_relationships": _pairs(HOUSEHOLD_RELATIONSHIPS),
        "guardian_relationships": _pairs(GUARDIAN_RELATIONSHIPS),
        "consent_purposes": [
            {
                "code": p.code,
                "label": p.label,
                "legal_basis": p.legal_basis.value,
                "current_version": versions.get(p.code),
            }
            for p in CONSENT_PURPOSES.values()
        ],
        "consent_channels": _pairs(CONSENT_CHANNELS),
        "unmask_reasons": _pairs(services.UNMASK_REASONS),
    }
