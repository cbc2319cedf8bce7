"""Marshmallow fields shared by the domains' schemas."""

from __future__ import annotations

import re
from typing import Any

from marshmallow import ValidationError, fields

from app.core.crypto import MASKERS

CN_MOBILE = re.compile(r"1[3-9]\d{9}")


class Masked(fields.String):
    """A personal field, masked on output (DATA-02). `kind`: id_number, phone, name, address."""

    def __init__(self, kind: str, **kwargs: Any) -> None:
        kwargs.setdefault("dump_only", True)
        metadata = dict(kwargs.pop("metadata", {}) or {})
        metadata.setdefault("description", f"Masked {kind}")
        super().__init__(metadata=metadata, **kwargs)
        self._mask = MASKERS[kind]

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return self._mask(None if value is None else str(value))


class MobilePhone(fields.String):
    """A mainland mobile number; spaces, dashes and a +86 prefix are accepted and removed."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        digits = re.sub(r"[\s-]", "", text)
        digits = digits.removeprefix("+86")
        if not CN_MOBILE.fullmatch(digits):
            raise ValidationError("手机号格式不正确，应为 11 位手机号")
        return digits
