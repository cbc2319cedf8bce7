"""Every national form goes through here: validate → derive → version → audit → hooks.

- `create_form` saves version 1; `revise_form` saves version n+1 against the version the editor
  started from (`base_version`): a stale edit is a 409, never a silent overwrite. Each version
  keeps the clean payload, the derived values, the names of the fields that changed, who, when, why.
- Special-category forms (肺结核, 严重精神障碍) belong to the resident's open `HealthCase` in the
  responsible centre and are gated by `access.guard_form` (DATA-05).
- `FORM_SAVED_LISTENERS` are called after each saved version with the form and its definition:
  the hook through which a form fulfils the matching service-package task (履约) once that exists.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any, cast

from sqlalchemy import Select, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError

from app.core import audit, clock
from app.core.auth import current_principal
from app.core.db import db
from app.core.errors import BusinessRuleViolation, Conflict, InvalidTransition, NotFound, PermissionDenied
from app.core.pagination import Page, paginate
from app.core.scope import get_or_404, get_unscoped
from app.health_records.forms import FormDefinition, SaveContext, load_forms
from app.health_records.models import Category, HealthCase, HealthForm, HealthFormVersion, HealthRecord
from app.health_records.services import access
from app.health_records.services.payloads import (
    hidden_categories,
    record_of_form,
    resident_of,
    unmask_unchanged,
)
from app.health_records.services.records import get_record
from app.health_records.spec import FormContext, FormInvalid, Payload
from app.residents.models import Resident
from app.residents.services.common import require_active

FormSavedListener = Callable[[HealthForm, FormDefinition], None]
FORM_SAVED_LISTENERS: list[FormSavedListener] = []


def definition(form_type: str) -> FormDefinition:
    forms = load_forms()
    if form_type not in forms:
        raise NotFound(f"没有“{form_type}”这种表单", code="form_type_not_found")
    return forms[form_type]


def form_context(resident: Resident) -> FormContext:
    return FormContext(today=clock.today_local(), birth_date=resident.birth_date, sex=resident.sex)


def _record_for(spec: FormDefinition, record_id: uuid.UUID) -> HealthRecord:
    """The record a new form is filled on. A special-category form is reached through its case:
    the responsible centre keeps the case when the resident (and record) moved elsewhere."""
    if spec.needs_case:
        record: HealthRecord | None = get_unscoped(HealthRecord, record_id)
        principal = current_principal()
        if (
            record is not None
            and principal is not None
            and principal.institution_id is not None
            and (
                record.institution_id == principal.institution_id
                or open_case_of(record.resident_id, spec.category) is not None
            )
        ):
            return record
    return get_record(record_id, action="update")


def _actor() -> tuple[str | None, str | None, str | None]:
    principal = current_principal()
    if principal is None:
        return None, None, None
    return principal.actor_ref, principal.role, principal.display_name or None


def _require_writer() -> None:
    principal = current_principal()
    if principal is not None and principal.kind == "staff" and principal.role not in access.WRITER_ROLES:
        raise PermissionDenied("只有医生、护士、公卫人员可以填写健康档案表单", code="forbidden_role")


def _occurred_on(spec: FormDefinition, payload: Payload) -> date:
    value = payload.get(spec.date_field)
    if value is None:  # pragma: no cover - the date field is required in every spec
        raise BusinessRuleViolation("表单缺少日期", code="form_invalid")
    return date.fromisoformat(str(value))


def open_case_of(resident_id: uuid.UUID, category: str) -> HealthCase | None:
    found: HealthCase | None = db.session.execute(
        select(HealthCase).where(
            HealthCase.resident_id == resident_id,
            HealthCase.category == category,
            HealthCase.status == "open",
        )
    ).scalar_one_or_none()
    return found


def _case_for(spec: FormDefinition, resident: Resident, case_id: uuid.UUID | None) -> HealthCase | None:
    if not spec.needs_case:
        if case_id is not None:
            raise BusinessRuleViolation(
                f"{spec.title}不属于专案管理，不能指定专案", code="case_not_applicable"
            )
        return None
    if case_id is not None:
        case = get_or_404(HealthCase, case_id, object_type="health_case", action="update")
        access.guard_case(case, "update")
        if case.resident_id != resident.id or case.category != spec.category:
            raise BusinessRuleViolation("所选专案不属于该居民或不是该类表单的专案", code="case_mismatch")
    else:
        found = open_case_of(resident.id, spec.category)
        if found is None:
            raise BusinessRuleViolation(
                f"该居民没有进行中的{spec.category.label}患者管理专案，请先建立专案", code="case_required"
            )
        access.guard_case(found, "update")
        case = found
    if case.status != "open":
        raise InvalidTransition("该专案已结案，不能再填写随访记录", code="case_closed")
    return case


def _changed(old: Payload, new: Payload) -> list[str]:
    return sorted(name for name in set(old) | set(new) if old.get(name) != new.get(name))


def _notify(form: HealthForm, spec: FormDefinition) -> None:
    for listener in FORM_SAVED_LISTENERS:
        listener(form, spec)


def _audit(action: str, form: HealthForm, **detail: Any) -> None:
    audit.record(
        action,
        "health_form",
        form.id,
        resident_id=form.resident_id,
        institution_id=form.institution_id,
        detail={"form_type": form.form_type, "category": form.category, "version": form.version, **detail},
    )


def create_form(
    record_id: uuid.UUID,
    form_type: str,
    payload: Any,
    *,
    case_id: uuid.UUID | None = None,
    reason: str | None = None,
) -> HealthForm:
    _require_writer()
    spec = definition(form_type)
    record = _record_for(spec, record_id)
    resident = resident_of(record.resident_id)
    if not spec.needs_case:
        # A case's visits go on after death or moving away: that is how they are recorded and closed.
        require_active(resident, f"填写{spec.title}")
    case = _case_for(spec, resident, case_id)
    ctx = SaveContext(form_ctx=form_context(resident), resident=resident, record=record, case=case)
    clean = spec.spec.validate(payload, ctx.form_ctx)
    derived = spec.derive(clean, ctx)
    actor, role, name = _actor()
    owner = case.id if (spec.once_per == "case" and case is not None) else record.id
    form = HealthForm(
        id=uuid.uuid4(),
        record_id=record.id,
        resident_id=resident.id,
        case_id=case.id if case else None,
        institution_id=case.institution_id if case else record.institution_id,
        form_type=spec.type,
        category=spec.category.value,
        version=1,
        occurred_on=_occurred_on(spec, clean),
        result_code=spec.result_code(clean, derived),
        created_by=actor,
        updated_by=actor,
        singleton_key=f"{owner}:{spec.type}" if spec.once_per else None,
    )
    try:
        with db.session.begin_nested():
            db.session.add(form)
    except IntegrityError:
        raise Conflict(
            f"该{'专案' if spec.once_per == 'case' else '档案'}已有{spec.title}，请在原表上修改",
            code="form_exists",
        ) from None
    db.session.add(
        HealthFormVersion(
            form_id=form.id,
            version=1,
            payload_json=HealthFormVersion.dump(clean),
            derived_json=HealthFormVersion.dump(derived),
            changed_fields=sorted(clean),
            reason=reason,
            actor=actor,
            actor_role=role,
            actor_name=name,
        )
    )
    db.session.flush()
    ctx.form = form
    spec.after_save(form, clean, derived, ctx)
    _audit("create", form)
    _notify(form, spec)
    return form


def revise_form(
    form_id: uuid.UUID, payload: Any, *, base_version: int, reason: str | None = None
) -> HealthForm:
    """A new version of a form (the whole form is sent again, as on paper)."""
    _require_writer()
    form = get_form(form_id, action="update")
    spec = definition(form.form_type)
    if form.status != "active":
        raise InvalidTransition("该表单已作废，不能修改", code="form_voided")
    if form.case is not None and form.case.status != "open":
        raise InvalidTransition("该专案已结案，不能再修改随访记录", code="case_closed")
    resident = resident_of(form.resident_id)
    ctx = SaveContext(
        form_ctx=form_context(resident),
        resident=resident,
        record=record_of_form(form),
        case=form.case,
        form=form,
    )
    previous = current_version(form)
    payload = unmask_unchanged(spec, payload, previous.payload)
    if spec.unredact is not None:
        payload = spec.unredact(payload, previous.payload, hidden_categories(current_principal()))
    if base_version != form.version:
        if _is_retried_save(spec, form, previous, payload, base_version, ctx):
            return form  # the tablet lost our answer and sent the same save again
        raise Conflict(
            f"该表单已被他人修改（当前为第 {form.version} 版），请刷新后再保存", code="form_version_conflict"
        )
    clean = spec.spec.validate(payload, ctx.form_ctx)
    derived = spec.derive(clean, ctx)
    changed = _changed(previous.payload, clean)
    if not changed:
        raise Conflict("内容没有变化，无需保存新版本", code="form_unchanged")
    actor, role, name = _actor()
    result = cast(
        CursorResult[Any],
        db.session.execute(
            update(HealthForm)
            .where(
                HealthForm.id == form.id, HealthForm.version == base_version, HealthForm.status == "active"
            )
            .values(
                version=base_version + 1,
                occurred_on=_occurred_on(spec, clean),
                result_code=spec.result_code(clean, derived),
                updated_by=actor,
                updated_at=clock.now(),
            )
            .execution_options(synchronize_session=False)
        ),
    )
    if result.rowcount != 1:
        raise Conflict("该表单已被他人修改，请刷新后再保存", code="form_version_conflict")
    db.session.refresh(form)
    db.session.add(
        HealthFormVersion(
            form_id=form.id,
            version=form.version,
            payload_json=HealthFormVersion.dump(clean),
            derived_json=HealthFormVersion.dump(derived),
            changed_fields=changed,
            reason=reason,
            actor=actor,
            actor_role=role,
            actor_name=name,
        )
    )
    db.session.flush()
    spec.after_save(form, clean, derived, ctx)
    _audit("update", form, changed_fields=changed)
    _notify(form, spec)
    return form


def _is_retried_save(
    spec: FormDefinition,
    form: HealthForm,
    latest: HealthFormVersion,
    payload: Any,
    base_version: int,
    ctx: SaveContext,
) -> bool:
    """The same edit by the same person arriving again (a flaky network): the version it made is
    the latest one and holds exactly what is sent."""
    if form.version != base_version + 1 or latest.actor != _actor()[0]:
        return False
    try:
        return spec.spec.validate(payload, ctx.form_ctx) == latest.payload
    except FormInvalid:
        return False


def void_form(form_id: uuid.UUID, *, reason: str) -> HealthForm:
    """作废: a form filled for the wrong person or in error. Kept, with its versions, but out of lists."""
    _require_writer()
    form = get_form(form_id, action="void")
    if form.status != "active":
        raise InvalidTransition("该表单已作废", code="form_voided")
    actor, _, _ = _actor()
    result = cast(
        CursorResult[Any],
        db.session.execute(
            update(HealthForm)
            .where(HealthForm.id == form.id, HealthForm.status == "active")
            .values(
                status="voided",
                void_reason=reason.strip(),
                singleton_key=None,
                updated_by=actor,
                updated_at=clock.now(),
            )
            .execution_options(synchronize_session=False)
        ),
    )
    if result.rowcount != 1:  # pragma: no cover - a concurrent void
        raise Conflict("该表单已被他人作废", code="form_voided")
    db.session.refresh(form)
    spec = definition(form.form_type)
    if form.case is not None and spec.after_void is not None:
        spec.after_void(form.case)
    _audit("void", form, reason=reason.strip())
    return form


# --- reading ----------------------------------------------------------------------------------


def get_form(form_id: uuid.UUID, *, action: str = "read") -> HealthForm:
    """A form in the caller's scope and category; 404 (audited as denied) otherwise. Not audited
    when allowed: the use case that shows it does."""
    form = get_or_404(HealthForm, form_id, object_type="health_form", action=action)
    access.guard_form(form, action)
    return form


def current_version(form: HealthForm, version: int | None = None) -> HealthFormVersion:
    wanted = form.version if version is None else version
    found: HealthFormVersion | None = db.session.execute(
        select(HealthFormVersion).where(
            HealthFormVersion.form_id == form.id, HealthFormVersion.version == wanted
        )
    ).scalar_one_or_none()
    if found is None:
        raise NotFound(f"该表单没有第 {wanted} 版", code="form_version_not_found")
    return found


@dataclass(frozen=True)
class FormView:
    form: HealthForm
    definition: FormDefinition
    version: HealthFormVersion


def view_form(form_id: uuid.UUID, version: int | None = None) -> FormView:
    form = get_form(form_id)
    row = current_version(form, version)
    _audit("read", form, shown_version=row.version)
    return FormView(form, definition(form.form_type), row)


def list_versions(form_id: uuid.UUID) -> list[HealthFormVersion]:
    form = get_form(form_id)
    rows = list(
        db.session.execute(
            select(HealthFormVersion)
            .where(HealthFormVersion.form_id == form.id)
            .order_by(HealthFormVersion.version)
        ).scalars()
    )
    _audit("read_history", form)
    return rows


def list_forms(
    *,
    page: int,
    size: int,
    resident_id: uuid.UUID | None = None,
    form_type: str | None = None,
    category: str | None = None,
    case_id: uuid.UUID | None = None,
    occurred_from: date | None = None,
    occurred_to: date | None = None,
    include_voided: bool = False,
) -> Page[HealthForm]:
    """Forms in the caller's centre. Special categories are left out unless asked for by
    `category` (or `case_id`) and the caller holds that category's permission (DATA-05)."""
    principal = current_principal()
    statement: Select[Any] = select(HealthForm)
    if case_id is not None:
        case = get_or_404(HealthCase, case_id, object_type="health_case")
        access.guard_case(case)
        statement = statement.where(HealthForm.case_id == case.id)
    elif category is not None and category != Category.GENERAL:
        if category not in access.visible_special_categories(principal):
            raise access.refuse_category("list", "health_form", category, "您没有查看该类专案记录的权限")
        statement = statement.where(HealthForm.category == category)
    else:
        statement = statement.where(HealthForm.category == Category.GENERAL)
    if resident_id is not None:
        statement = statement.where(HealthForm.resident_id == resident_id)
    if form_type is not None:
        statement = statement.where(HealthForm.form_type == definition(form_type).type)
    if occurred_from is not None:
        statement = statement.where(HealthForm.occurred_on >= occurred_from)
    if occurred_to is not None:
        statement = statement.where(HealthForm.occurred_on <= occurred_to)
    if not include_voided:
        statement = statement.where(HealthForm.status == "active")
    statement = statement.order_by(HealthForm.occurred_on.desc(), HealthForm.created_at.desc(), HealthForm.id)
    found = paginate(statement, page, size)
    audit.record(
        "list",
        "health_form",
        None,
        resident_id=resident_id,
        detail={
            "criteria": sorted(
                k
                for k, v in {
                    "resident_id": resident_id,
                    "form_type": form_type,
                    "category": category,
                    "case_id": case_id,
                    "from": occurred_from,
                    "to": occurred_to,
                }.items()
                if v is not None
            ),
            "ids": [str(f.id) for f in found.items],
        },
    )
    return found


def forms_of_record(record: HealthRecord) -> list[HealthForm]:
    """The active forms of a record the caller may see (special categories only with permission)."""
    principal = current_principal()
    visible = {Category.GENERAL.value} | access.visible_special_categories(principal)
    rows = db.session.execute(
        select(HealthForm)
        .where(
            HealthForm.record_id == record.id, HealthForm.status == "active", HealthForm.category.in_(visible)
        )
        .order_by(HealthForm.occurred_on.desc(), HealthForm.created_at.desc())
    ).scalars()
    return [f for f in rows if access.may_see_category(principal, f.category, f.institution_id)]
