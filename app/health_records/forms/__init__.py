"""The registry of national forms: what each form is, how it is checked, derived, scheduled and printed.

Each form module (`personal.py`, `exam.py`, `tb.py`, `selfcare.py`, `smd.py`) declares one or
more `FormDefinition`s and registers them here; `app.health_records.services.forms` handles every
form the same way (validate → derive → version → audit → hooks) by looking the definition up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from app.health_records.models import Category
from app.health_records.spec import FormContext, FormSpec, Payload

if TYPE_CHECKING:
    from app.health_records.models import HealthCase, HealthForm, HealthRecord
    from app.residents.models import Resident


@dataclass
class SaveContext:
    """Everything a form's `derive`/`after_save` may consult while one version is being saved."""

    form_ctx: FormContext
    resident: Resident
    record: HealthRecord
    case: HealthCase | None = None
    form: HealthForm | None = None  # None while creating
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PrintContext:
    """What a printer gets: the form row, the version printed, and the resident and record."""

    form: HealthForm
    payload: Payload
    derived: dict[str, Any]
    version: int
    resident: Resident
    record: HealthRecord
    institution_name: str
    doctor_name: str | None = None


def _no_derive(payload: Payload, ctx: SaveContext) -> dict[str, Any]:
    return {}


def _no_hook(form: HealthForm, payload: Payload, derived: dict[str, Any], ctx: SaveContext) -> None:
    return None


@dataclass(frozen=True)
class FormDefinition:
    type: str  # stable identifier used in URLs and rows, e.g. "health_exam"
    title: str  # the printed title, e.g. "健康体检表"
    category: Category
    spec: FormSpec
    date_field: str  # the payload field that dates the form (HealthForm.occurred_on)
    # The PackageItem.service_type a saved form fulfils (履约), when task generation exists.
    service_type: str | None = None
    once_per: str | None = None  # "record" (个人基本信息表) or "case" (补充表): at most one active
    needs_case: bool = False  # special-category forms belong to an open HealthCase
    # Derived values (BMI, totals, bands, the next due date); may raise FormInvalid for rules that
    # need the database (e.g. the exam's self-care level needs an assessment).
    derive: Callable[[Payload, SaveContext], dict[str, Any]] = _no_derive
    # After a version is saved: update the case's schedule, etc. (no commit, no network).
    after_save: Callable[[HealthForm, Payload, dict[str, Any], SaveContext], None] = _no_hook
    # After a form of a case is voided: recompute the case's schedule without it.
    after_void: Callable[[HealthCase], None] | None = None
    # A short result for lists (HealthForm.result_code), from the derived values.
    result_code: Callable[[Payload, dict[str, Any]], str | None] = lambda payload, derived: None
    result_label: Callable[[str], str] | None = None  # words for result_code in lists
    # Personal fields inside the form (a contact's phone, a guardian's address): field name -> the
    # mask kind of `app.core.crypto.MASKERS`. Responses mask them (DATA-02); an edit that sends the
    # masked value back unchanged keeps the stored one.
    masked: dict[str, str] = field(default_factory=dict)
    # DATA-05 inside a general form (the 既往史 row "严重精神障碍" of the 个人基本信息表):
    # `redact(payload, hidden)` leaves out what names a category in `hidden` (the caller lacks its
    # permission); `unredact(sent, stored, hidden)` puts the stored hidden parts back into an edit.
    redact: Callable[[Payload, frozenset[str]], Payload] | None = None
    unredact: Callable[[Any, Payload, frozenset[str]], Any] | None = None
    render_pdf: Callable[[PrintContext], bytes] | None = None


FORMS: dict[str, FormDefinition] = {}


def register(definition: FormDefinition) -> FormDefinition:
    assert definition.type not in FORMS, f"form {definition.type} registered twice"
    assert definition.date_field in definition.spec.field_names, definition.type
    FORMS[definition.type] = definition
    return definition


def load_forms() -> dict[str, FormDefinition]:
    """Import every form module (each registers its definitions) and return the registry."""
    from app.health_records.forms import exam, personal, selfcare, smd, tb  # noqa: F401

    return FORMS
