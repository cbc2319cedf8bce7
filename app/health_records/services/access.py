"""Who may read and write health forms, and the DATA-05 gate on special categories.

- Writing forms: the clinical roles of the managing (or responsible) centre.
- Reading general forms: the clinical roles, the centre's administrator and district administrators.
- 严重精神障碍 and 肺结核 forms and cases (DATA-05): only staff holding the category permission
  (`health:smd` / `health:tb`, granted per person by their centre's administrator) **in the
  responsible centre**. For anyone else such a form does not exist: lists and exports leave it out
  and a direct read is a 404 with a denied audit row.
"""

from __future__ import annotations

import uuid

from app.core import audit
from app.core.auth import CLINICAL_ROLES, Principal, Role, current_principal
from app.core.errors import NotFound, PermissionDenied
from app.health_records.models import Category, HealthCase, HealthForm

WRITER_ROLES: frozenset[str] = frozenset(CLINICAL_ROLES)
READER_ROLES: frozenset[str] = WRITER_ROLES | {Role.CENTRE_ADMIN, Role.DISTRICT_ADMIN}


def may_see_category(principal: Principal | None, category: str, institution_id: uuid.UUID | None) -> bool:
    if category == Category.GENERAL:
        return True
    if principal is None or principal.kind != "staff" or principal.institution_id is None:
        return False
    permission = Category(category).permission
    return permission is not None and principal.can(permission) and principal.institution_id == institution_id


def visible_special_categories(principal: Principal | None) -> set[str]:
    """The special categories the caller may see in their own centre."""
    if principal is None or principal.institution_id is None:
        return set()
    return {
        c.value
        for c in (Category.SMD, Category.TB)
        if may_see_category(principal, c, principal.institution_id)
    }


def _audit_denied(
    action: str,
    object_type: str,
    category: str,
    object_id: uuid.UUID | None = None,
    resident_id: uuid.UUID | None = None,
) -> None:
    """One denied access to a special category, kept even though the request fails."""
    audit.record(
        action,
        object_type,
        object_id,
        resident_id=resident_id,
        result=audit.DENIED,
        purpose="special_category",
        detail={"category": category},
        durable=True,
    )


def refuse_category(action: str, object_type: str, category: str, message: str) -> PermissionDenied:
    """A list or a change the caller's category permissions do not allow: audited as denied;
    raise what this returns."""
    _audit_denied(action, object_type, category)
    return PermissionDenied(message, code="category_forbidden")


def guard_form(form: HealthForm, action: str = "read") -> None:
    if not may_see_category(current_principal(), form.category, form.institution_id):
        _audit_denied(action, "health_form", form.category, form.id, form.resident_id)
        raise NotFound()


def guard_case(case: HealthCase, action: str = "read") -> None:
    if not may_see_category(current_principal(), case.category, case.institution_id):
        _audit_denied(action, "health_case", case.category, case.id, case.resident_id)
        raise NotFound()
