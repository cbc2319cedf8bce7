"""Printing forms and the record card: one audited entry per print."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from app.accounts.models import StaffUser
from app.core import audit
from app.core.auth import current_principal
from app.core.db import db
from app.core.errors import BusinessRuleViolation
from app.core.scope import get_unscoped
from app.health_records.forms import PrintContext
from app.health_records.services import forms as form_services
from app.health_records.services import payloads
from app.institutions.models import Institution


@dataclass(frozen=True)
class Printed:
    data: bytes
    filename: str


def print_context(form_id: uuid.UUID, version: int | None = None) -> PrintContext:
    form = form_services.get_form(form_id, action="print")
    row = form_services.current_version(form, version)
    record = payloads.record_of_form(form)
    resident = payloads.resident_of(form.resident_id)
    institution = db.session.get(Institution, form.institution_id)
    doctor = get_unscoped(StaffUser, record.responsible_doctor_id)
    assert resident is not None
    return PrintContext(
        form=form,
        payload=payloads.shown_payload(
            form_services.definition(form.form_type), row.payload, current_principal()
        ),
        derived=row.derived,
        version=row.version,
        resident=resident,
        record=record,
        institution_name=institution.name if institution else "",
        doctor_name=doctor.name if doctor else None,
    )


def print_form(form_id: uuid.UUID, version: int | None = None) -> Printed:
    ctx = print_context(form_id, version)
    spec = form_services.definition(ctx.form.form_type)
    if spec.render_pdf is None:  # pragma: no cover - every registered form has a printer
        raise BusinessRuleViolation(f"{spec.title}暂不支持打印", code="not_printable")
    data = spec.render_pdf(ctx)
    audit.record(
        "print",
        "health_form",
        ctx.form.id,
        resident_id=ctx.form.resident_id,
        detail={"form_type": ctx.form.form_type, "category": ctx.form.category, "version": ctx.version},
    )
    return Printed(data, f"{spec.type}-{ctx.record.record_no}-v{ctx.version}.pdf")
