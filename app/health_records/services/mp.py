"""我的健康档案 in the mini-program: what a resident sees of their own record, and of the records of
the family members they act for (active bindings of `app.mp_accounts`).

- Whose: the caller's own record (their `self` binding) or an actively bound family member's.
  Anyone else's record or form is a 404, audited as denied; its existence is not revealed.
- Hidden categories (DATA-05): the setting `MP_HIDDEN_HEALTH_CATEGORIES` (default "smd") names the
  special categories the resident does not see of their own record; a family member acting for a
  resident never sees 严重精神障碍 or 肺结核. A hidden form is left out of the list and is a 404
  (audited as denied) by id. The same categories are taken out of the general forms where the
  general forms name them: the 既往史 rows 8 严重精神障碍 / 9 结核病 of the 个人基本信息表, and the
  信息卡's 慢性病 derived from them.
- Every read is audited (purpose `mp_health_record`), filed under the record's centre.
- Personal fields inside a form (ID number, phones, contacts' names, addresses) are masked; so is
  the resident's name (by the response schema).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from flask import current_app
from sqlalchemy import select

from app.accounts.models import StaffUser
from app.core import audit
from app.core.auth import Principal
from app.core.db import db
from app.core.errors import NotFound
from app.core.scope import SKIP_SCOPE, get_unscoped
from app.health_records.forms import load_forms
from app.health_records.models import SPECIAL_CATEGORIES, Category, HealthForm, HealthRecord
from app.health_records.services import card as cards
from app.health_records.services.forms import current_version
from app.health_records.services.payloads import mask_payload
from app.health_records.services.records import record_of
from app.health_records.services.views import form_summary
from app.institutions.models import Institution
from app.mp_accounts.models import BindingStatus, MpBinding, Relationship
from app.residents.models import Resident

log = logging.getLogger(__name__)

PURPOSE = "mp_health_record"
# 既往史 (past_disease) code naming each special category.


# --- whose record, and which categories ----------------------------------------------------------


def _binding(principal: Principal, resident_id: uuid.UUID) -> MpBinding | None:
    found: MpBinding | None = db.session.execute(
        select(MpBinding).where(
            MpBinding.user_id == principal.id,
            MpBinding.resident_id == resident_id,
            MpBinding.status == BindingStatus.ACTIVE,
        )
    ).scalar_one_or_none()
    return found


def _self_resident(principal: Principal) -> uuid.UUID:
    found = db.session.execute(
        select(MpBinding.resident_id).where(
            MpBinding.user_id == principal.id,
            MpBinding.relationship == Relationship.SELF,
            MpBinding.status == BindingStatus.ACTIVE,
        )
    ).scalar_one_or_none()
    if found is None:
        raise NotFound("请先完成实名认证", code="identity_not_bound")
    return found


def _deny(object_type: str, object_id: Any, resident_id: Any, purpose: str, **detail: Any) -> None:
    audit.record(
        "read",
        object_type,
        object_id,
        resident_id=resident_id,
        result=audit.DENIED,
        purpose=purpose,
        detail=detail,
        durable=True,
    )


def _acting_for(principal: Principal, resident_id: uuid.UUID | None, object_type: str) -> MpBinding:
    target = resident_id or _self_resident(principal)
    binding = _binding(principal, target)
    if binding is None:
        _deny(object_type, None, target, "not_bound_resident")
        raise NotFound("未找到该居民，或您未绑定该家庭成员", code="resident_not_found")
    return binding


def configured_hidden_categories() -> frozenset[str]:
    """`MP_HIDDEN_HEALTH_CATEGORIES`: special categories hidden from the resident themselves."""
    raw = str(current_app.config.get("MP_HIDDEN_HEALTH_CATEGORIES", "") or "")
    chosen = {part.strip().lower() for part in raw.split(",") if part.strip()}
    unknown = chosen - SPECIAL_CATEGORIES
    if unknown:
        log.warning("MP_HIDDEN_HEALTH_CATEGORIES: ignoring %s (only smd, tb)", sorted(unknown))
    return frozenset(chosen & SPECIAL_CATEGORIES)


def hidden_categories(binding: MpBinding) -> frozenset[str]:
    """What the mini-program user may not see of this resident's record (DATA-05)."""
    if binding.relationship == Relationship.SELF:
        return configured_hidden_categories()
    return frozenset(SPECIAL_CATEGORIES)


def _visible(binding: MpBinding) -> list[str]:
    hidden = hidden_categories(binding)
    return [c.value for c in Category if c.value not in hidden]


# --- views --------------------------------------------------------------------------------------


def _record(binding: MpBinding) -> HealthRecord:
    record = record_of(binding.resident_id)
    if record is None:
        audit.record(
            "read",
            "health_record",
            None,
            resident_id=binding.resident_id,
            purpose=PURPOSE,
            detail={"found": False},
        )
        raise NotFound("该居民尚未建立健康档案，请到签约的社康中心建档", code="health_record_not_found")
    return record


SUMMARY_KEYS = (
    "id",
    "form_type",
    "title",
    "category",
    "version",
    "occurred_on",
    "result_code",
    "result_label",
)


def _summary(form: HealthForm) -> dict[str, Any]:
    summary = form_summary(form)
    return {key: summary[key] for key in SUMMARY_KEYS}


def my_record(principal: Principal, resident_id: uuid.UUID | None) -> dict[str, Any]:
    """The record of the caller or of a bound family member: number, centre, responsible doctor
    and the forms they may see (newest first). Audited."""
    binding = _acting_for(principal, resident_id, "health_record")
    record = _record(binding)
    load_forms()
    rows = list(
        db.session.execute(
            select(HealthForm)
            .where(
                HealthForm.record_id == record.id,
                HealthForm.status == "active",
                HealthForm.category.in_(_visible(binding)),
            )
            .order_by(HealthForm.occurred_on.desc(), HealthForm.created_at.desc(), HealthForm.id)
            .execution_options(**{SKIP_SCOPE: True})
        ).scalars()
    )
    resident = db.session.get(Resident, record.resident_id)
    centre = db.session.get(Institution, record.institution_id)
    assert resident is not None and centre is not None
    audit.record(
        "read",
        "health_record",
        record.id,
        resident_id=record.resident_id,
        institution_id=record.institution_id,
        purpose=PURPOSE,
        detail={"relationship": binding.relationship, "forms": len(rows)},
    )
    doctor: StaffUser | None = get_unscoped(StaffUser, record.responsible_doctor_id)
    return {
        "resident_id": resident.id,
        "resident_name": resident.name,
        "relationship": binding.relationship,
        "record_no": record.record_no,
        "short_no": record.short_no,
        "created_on": record.created_on,
        "centre": {"id": centre.id, "name": centre.name, "phone": centre.phone, "address": centre.address},
        "responsible_doctor_name": doctor.name if doctor is not None else None,
        "forms": [_summary(f) for f in rows],
    }


def my_form(principal: Principal, form_id: uuid.UUID) -> dict[str, Any]:
    """One form of the caller's or a bound family member's record, with the printed labels and
    the derived values; personal fields masked. Hidden categories and anyone else's forms are a
    404 audited as denied. Audited."""
    form: HealthForm | None = get_unscoped(HealthForm, form_id)
    if form is None:
        raise NotFound("未找到该表单", code="health_form_not_found")
    binding = _binding(principal, form.resident_id)
    if binding is None:
        raise _not_visible(form, "not_bound_resident")
    hidden = hidden_categories(binding)
    if form.category in hidden:
        raise _not_visible(form, "hidden_category", category=form.category)
    if form.status != "active":
        raise _not_visible(form, "voided")
    spec = load_forms()[form.form_type]
    version = current_version(form)
    payload = spec.redact(version.payload, hidden) if spec.redact is not None else version.payload
    audit.record(
        "read",
        "health_form",
        form.id,
        resident_id=form.resident_id,
        institution_id=form.institution_id,
        purpose=PURPOSE,
        detail={"form_type": form.form_type, "category": form.category, "relationship": binding.relationship},
    )
    record = db.session.get(HealthRecord, form.record_id)
    return {
        **_summary(form),
        "resident_id": form.resident_id,
        "record_no": record.record_no if record is not None else None,
        "data": mask_payload(spec, payload),
        "labels": spec.spec.labels(payload),
        "derived": version.derived,
    }


def _not_visible(form: HealthForm, purpose: str, **detail: Any) -> NotFound:
    """As if the form did not exist (the same 404 as an unknown id), audited as denied."""
    _deny("health_form", form.id, form.resident_id, purpose, **detail)
    return NotFound("未找到该表单", code="health_form_not_found")


def my_card(principal: Principal, resident_id: uuid.UUID | None) -> dict[str, Any]:
    """The 居民健康档案信息卡 (as JSON; the response schema masks names, phones, the address)
    without the diseases of hidden categories. Audited."""
    binding = _acting_for(principal, resident_id, "health_record_card")
    record = _record(binding)
    card = cards.build_card(record, hidden_categories(binding))
    audit.record(
        "read",
        "health_record_card",
        record.id,
        resident_id=record.resident_id,
        institution_id=record.institution_id,
        purpose=PURPOSE,
        detail={"relationship": binding.relationship},
    )
    return card.as_json()
