"""Shared pieces of the doctors' schemas: enum value lists and the NUL-rejecting input base."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from marshmallow import (
    Schema,
    ValidationError,
    pre_load,
)

from app.doctors.models import (
    MiCategory,
    PracticeStatus,
    ReviewStatus,
    Sex,
)

SEXES = [s.value for s in Sex]
STATUSES = [s.value for s in ReviewStatus]
PRACTICE_STATUSES = [s.value for s in PracticeStatus]
MI_CATEGORIES = [c.value for c in MiCategory]


def doc(text: str, **extra: Any) -> dict[str, Any]:
    return {"description": text, **extra}


# --- input -------------------------------------------------------------------------------------


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, Mapping):
        return any(_has_nul(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


class TextInputSchema(Schema):
    """Base of the request schemas of doctors and teams: a NUL character in any text is a 422
    (PostgreSQL text cannot hold it: it would otherwise surface as a 500)."""

    @pre_load
    def _reject_nul(self, data: Any, **_: Any) -> Any:
        if isinstance(data, Mapping):
            bad = sorted(str(k) for k, v in data.items() if _has_nul(v) or _has_nul(k))
            if bad:
                raise ValidationError({k: ["不能包含空字符"] for k in bad})
        return data
