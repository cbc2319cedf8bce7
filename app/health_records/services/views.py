"""What the screens show: a record with its forms, one form with labels, a case with its forms."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select

from app.accounts.models import StaffUser
from app.core import audit, clock
from app.core.auth import current_principal
from app.core.db import db
from app.core.scope import get_unscoped
from app.health_records.forms import FORMS, load_forms
from app.health_records.models import HealthCase, HealthForm, HealthRecord
from app.health_records.services import forms as form_services
from app.health_records.services import payloads
from app.health_records.services.records import get_record, record_for_resident
from app.institutions.models import Institution
from app.residents.models import Resident

# What `HealthCase.next_due_kind` means, in words.
DUE_KIND_LABELS: dict[str, str] = {
    "tb_first_visit": "第一次入户随访（接到通知后72小时内）",
    "tb_follow_up": "肺结核患者随访",
    "tb_closing": "已停止治疗，待结案评估后结案",
    "tb_report": "两次入户均未见到患者，请向上级专业机构报告",
    "smd_supplement": "填写个人信息补充表",
    "smd_follow_up": "严重精神障碍患者随访",
}


def _staff_name(staff_id: uuid.UUID | None) -> str | None:
    if staff_id is None:
        return None
    user = db.session.get(StaffUser, staff_id)
    return user.name if user else None


def form_summary(form: HealthForm) -> dict[str, Any]:
    spec = load_forms()[form.form_type]
    result_label = None
    if form.result_code is not None and spec.result_label is not None:
        result_label = spec.result_label(form.result_code)
    return {
        "id": form.id,
        "form_type": form.form_type,
        "title": spec.title,
        "category": form.category,
        "version": form.version,
        "occurred_on": form.occurred_on,
        "status": form.status,
        "result_code": form.result_code,
        "result_label": result_label,
        "case_id": form.case_id,
        "updated_at": form.updated_at,
    }


def record_view(record: HealthRecord) -> dict[str, Any]:
    resident = db.session.get(Resident, record.resident_id)
    assert resident is not None
    institution = db.session.get(Institution, record.institution_id)
    return {
        "id": record.id,
        "resident_id": record.resident_id,
        "resident_name": resident.name,
        "record_no": record.record_no,
        "short_no": record.short_no,
        "created_on": record.created_on,
        "institution_id": record.institution_id,
        "institution_name": institution.name if institution else "",
        "created_institution_name": record.created_institution.name,
        "created_by_name": record.created_by_name,
        "responsible_doctor_id": record.responsible_doctor_id,
        "responsible_doctor_name": _staff_name(record.responsible_doctor_id),
        "card_remarks": record.card_remarks,
        "status": record.status,
        "forms": [form_summary(f) for f in form_services.forms_of_record(record)],
    }


def show_record(record_id: uuid.UUID) -> dict[str, Any]:
    record = get_record(record_id)
    audit.record("read", "health_record", record.id, resident_id=record.resident_id)
    return record_view(record)


def show_record_of_resident(resident_id: uuid.UUID) -> dict[str, Any]:
    record = record_for_resident(resident_id)
    audit.record("read", "health_record", record.id, resident_id=record.resident_id)
    return record_view(record)


def form_view(view: form_services.FormView) -> dict[str, Any]:
    form, spec, row = view.form, view.definition, view.version
    payload = payloads.shown_payload(spec, row.payload, current_principal())
    return {
        **form_summary(form),
        "record_id": form.record_id,
        "record_no": payloads.record_of_form(form).record_no,
        "resident_id": form.resident_id,
        "institution_id": form.institution_id,
        "shown_version": row.version,
        "data": payload,
        "derived": row.derived,
        "labels": spec.spec.labels(payload),
        "void_reason": form.void_reason,
        "created_at": form.created_at,
    }


def case_view(case: HealthCase, *, with_forms: bool = False) -> dict[str, Any]:
    resident = get_unscoped(Resident, case.resident_id)
    record = payloads.unscoped_record_of_resident(case.resident_id)
    out: dict[str, Any] = {
        "id": case.id,
        "resident_id": case.resident_id,
        "resident_name": resident.name if resident else None,
        "record_no": record.record_no if record else None,
        "category": case.category,
        "status": case.status,
        "opened_on": case.opened_on,
        "notified_at": case.notified_at,
        "treatment_started_on": case.treatment_started_on,
        "intensive_months": case.intensive_months,
        "responsible_staff_id": case.responsible_staff_id,
        "institution_id": case.institution_id,
        "next_due_on": case.next_due_on,
        "next_due_kind": case.next_due_kind,
        "next_due_label": DUE_KIND_LABELS.get(case.next_due_kind or ""),
        "overdue": bool(case.next_due_on and case.next_due_on < clock.today_local()),
        "closed_on": case.closed_on,
        "close_reason": case.close_reason,
        "facts": dict(case.facts or {}),
    }
    if with_forms:
        rows = db.session.execute(
            select(HealthForm)
            .where(HealthForm.case_id == case.id, HealthForm.status == "active")
            .order_by(HealthForm.occurred_on, HealthForm.created_at)
        ).scalars()
        out["forms"] = [form_summary(f) for f in rows]
    return out


def code_dictionary() -> dict[str, Any]:
    from app.health_records.codes import code_dictionary as lists

    load_forms()
    return {
        "code_lists": lists(),
        "forms": [
            {
                "form_type": d.type,
                "title": d.title,
                "category": d.category.value,
                "date_field": d.date_field,
                "fields": d.spec.describe(),
            }
            for d in FORMS.values()
        ],
    }
