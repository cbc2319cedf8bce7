"""What a form's content looks like to the caller, and the rows reached through a form.

- `shown_payload`: the content as the caller may see it — special-category parts left out for
  staff without that category's permission (the form's `redact`), personal fields masked
  (the form's `masked`); `unmask_unchanged` keeps a stored value an edit sent back masked.
- `record_of_form`, `resident_of`: rows reached through an object the caller may
  already see (a form's record and resident after the resident moved to another centre). Never
  call them with an id taken from the request alone.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select

from app.core.auth import Principal
from app.core.crypto import MASKERS
from app.core.db import db
from app.core.scope import SKIP_SCOPE, get_unscoped
from app.health_records.forms import FormDefinition
from app.health_records.models import Category, HealthForm, HealthRecord
from app.health_records.spec import Payload
from app.residents.models import Resident


def record_of_form(form: HealthForm) -> HealthRecord:
    record: HealthRecord | None = get_unscoped(HealthRecord, form.record_id)
    assert record is not None  # a foreign key
    return record


def unscoped_record_of_resident(resident_id: uuid.UUID) -> HealthRecord | None:
    found: HealthRecord | None = db.session.execute(
        select(HealthRecord)
        .where(HealthRecord.resident_id == resident_id)
        .execution_options(**{SKIP_SCOPE: True})
    ).scalar_one_or_none()
    return found


def resident_of(resident_id: uuid.UUID) -> Resident:
    resident: Resident | None = get_unscoped(Resident, resident_id)
    assert resident is not None  # a foreign key
    return resident


def hidden_categories(principal: Principal | None) -> frozenset[str]:
    """The special categories whose permission a member of staff lacks (DATA-05): what general
    forms must not show them either (e.g. a 既往史 row 严重精神障碍)."""
    return frozenset(
        c.value
        for c in (Category.SMD, Category.TB)
        if principal is None or not principal.can(c.permission or "")
    )


def shown_payload(spec: FormDefinition, payload: Payload, principal: Principal | None) -> Payload:
    """A form's content as the caller may see it: special-category parts left out, personal
    fields masked."""
    if spec.redact is not None:
        payload = spec.redact(payload, hidden_categories(principal))
    return mask_payload(spec, payload)


def mask_payload(spec: FormDefinition, payload: Payload) -> Payload:
    """The payload as responses show it: personal fields masked (DATA-02)."""
    if not spec.masked:
        return payload
    shown = dict(payload)
    for name, kind in spec.masked.items():
        if isinstance(shown.get(name), str):
            shown[name] = MASKERS[kind](shown[name])
    return shown


def unmask_unchanged(spec: FormDefinition, payload: Any, stored: Payload) -> Any:
    """An edited form sent back with a personal field still masked keeps the stored value."""
    if not spec.masked or not isinstance(payload, dict):
        return payload
    restored = dict(payload)
    for name, kind in spec.masked.items():
        old = stored.get(name)
        if isinstance(old, str) and restored.get(name) == MASKERS[kind](old):
            restored[name] = old
    return restored
