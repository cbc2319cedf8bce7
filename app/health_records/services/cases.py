"""专案管理: opening, reading, listing (with what is due) and closing special-category cases.

A case is opened in the resident's managing centre, which becomes the responsible centre, by
staff holding the category permission. Each category's module supplies its schedule through
`CASE_SCHEDULERS[category]`: `opened(case)` sets the first due date (TB: the first home visit
within 72 h of the notice), and the forms' `after_save` hooks move `next_due_on` after each visit.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Select, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError

from app.core import audit, clock
from app.core.auth import current_principal
from app.core.db import db
from app.core.errors import BusinessRuleViolation, Conflict, InvalidTransition
from app.core.pagination import Page, paginate
from app.core.scope import get_or_404
from app.health_records.models import Category, HealthCase, HealthForm
from app.health_records.services import access
from app.health_records.services.records import record_of
from app.residents.models import Resident
from app.residents.services.common import get_resident, require_active

# category -> function(case) that sets the first due date and kind when the case opens.
CASE_SCHEDULERS: dict[str, Callable[[HealthCase], None]] = {}


def _special(category: str) -> Category:
    try:
        value = Category(category)
    except ValueError:
        value = Category.GENERAL
    if value is Category.GENERAL:
        raise BusinessRuleViolation(
            "专案类别须为 smd（严重精神障碍）或 tb（肺结核）", code="invalid_category"
        )
    return value


def _require_permission(category: Category, institution_id: uuid.UUID, action: str) -> None:
    principal = current_principal()
    if (
        principal is None
        or principal.role not in access.WRITER_ROLES
        or not access.may_see_category(principal, category, institution_id)
    ):
        raise access.refuse_category(
            action,
            "health_case",
            category.value,
            f"您没有{category.label}患者管理权限，请联系本中心管理员授权",
        )


def open_case(
    resident_id: uuid.UUID,
    category: str,
    *,
    opened_on: date | None = None,
    notified_at: datetime | None = None,
    treatment_started_on: date | None = None,
    responsible_staff_id: uuid.UUID | None = None,
) -> HealthCase:
    kind = _special(category)
    resident: Resident = get_resident(resident_id, action="create")
    _require_permission(kind, resident.institution_id, "create")
    require_active(resident, f"建立{kind.label}患者管理专案")
    if record_of(resident.id) is None:
        raise BusinessRuleViolation("该居民尚未建立健康档案，请先建档", code="health_record_required")
    today = clock.today_local()
    opened = opened_on or today
    if opened > today:
        raise BusinessRuleViolation("建立专案日期不能晚于今天", code="invalid_date")
    if notified_at is not None and notified_at > clock.now():
        raise BusinessRuleViolation("接到通知的时间不能晚于现在", code="invalid_date")
    if kind is Category.TB and notified_at is None:
        raise BusinessRuleViolation(
            "请填写接到上级专业机构通知的时间（第一次入户随访须在 72 小时内完成）",
            code="notified_at_required",
        )
    case = HealthCase(
        id=uuid.uuid4(),
        resident_id=resident.id,
        institution_id=resident.institution_id,
        category=kind.value,
        occupancy_key=f"{resident.id}:{kind.value}",
        opened_on=opened,
        notified_at=notified_at,
        treatment_started_on=treatment_started_on,
        responsible_staff_id=responsible_staff_id,
        facts={},
    )
    from app.health_records.forms import load_forms

    load_forms()  # the form modules register their schedulers in CASE_SCHEDULERS at import
    scheduler = CASE_SCHEDULERS.get(kind.value)
    if scheduler is not None:
        scheduler(case)
    try:
        with db.session.begin_nested():
            db.session.add(case)
    except IntegrityError:
        raise Conflict(f"该居民已有进行中的{kind.label}患者管理专案", code="case_exists") from None
    audit.record("create", "health_case", case.id, resident_id=resident.id, detail={"category": kind.value})
    return case


def get_case(case_id: uuid.UUID, *, action: str = "read") -> HealthCase:
    case = get_or_404(HealthCase, case_id, object_type="health_case", action=action)
    access.guard_case(case, action)
    return case


def view_case(case_id: uuid.UUID) -> HealthCase:
    case = get_case(case_id)
    audit.record(
        "read", "health_case", case.id, resident_id=case.resident_id, detail={"category": case.category}
    )
    return case


def list_cases(
    category: str,
    *,
    page: int,
    size: int,
    status: str | None = "open",
    due_before: date | None = None,
    resident_id: uuid.UUID | None = None,
) -> Page[HealthCase]:
    """The caller's centre's cases of one category, soonest due first (the work list)."""
    kind = _special(category)
    principal = current_principal()
    if kind.value not in access.visible_special_categories(principal):
        raise access.refuse_category("list", "health_case", kind.value, "您没有查看该类专案的权限")
    statement: Select[Any] = select(HealthCase).where(HealthCase.category == kind.value)
    if status is not None:
        statement = statement.where(HealthCase.status == status)
    if due_before is not None:
        statement = statement.where(HealthCase.next_due_on <= due_before)
    if resident_id is not None:
        statement = statement.where(HealthCase.resident_id == resident_id)
    statement = statement.order_by(
        HealthCase.next_due_on.asc().nulls_last(), HealthCase.opened_on, HealthCase.id
    )
    found = paginate(statement, page, size)
    audit.record(
        "list",
        "health_case",
        None,
        resident_id=resident_id,
        detail={"category": kind.value, "ids": [str(c.id) for c in found.items]},
    )
    return found


def close_case(case_id: uuid.UUID, *, closed_on: date | None = None, reason: str) -> HealthCase:
    case = get_case(case_id, action="close")
    _require_permission(Category(case.category), case.institution_id, "close")
    if case.status != "open":
        raise InvalidTransition("该专案已结案", code="case_closed")
    day = closed_on or clock.today_local()
    if day > clock.today_local() or day < case.opened_on:
        raise BusinessRuleViolation("结案日期须在建立专案之后且不晚于今天", code="invalid_date")
    result = cast(
        CursorResult[Any],
        db.session.execute(
            update(HealthCase)
            .where(HealthCase.id == case.id, HealthCase.status == "open")
            .values(
                status="closed",
                occupancy_key=None,
                closed_on=day,
                close_reason=reason.strip(),
                next_due_on=None,
                next_due_kind=None,
                updated_at=clock.now(),
            )
            .execution_options(synchronize_session=False)
        ),
    )
    if result.rowcount != 1:  # pragma: no cover - a concurrent close
        raise InvalidTransition("该专案已结案", code="case_closed")
    db.session.refresh(case)
    audit.record(
        "close", "health_case", case.id, resident_id=case.resident_id, detail={"category": case.category}
    )
    return case


# TB (spec §4.3): "if two visits within the 72 h both fail to find the patient, report the result
# to the higher-level institution".
FIRST_VISIT_WINDOW = timedelta(hours=72)
REPORT_DUE_KIND = "tb_report"


def record_missed_first_visit(case_id: uuid.UUID, *, attempted_at: datetime) -> HealthCase:
    """A home visit that did not find a 肺结核 patient before the first visit was made. The second
    such visit within 72 h of the notice makes the report to the higher-level institution due."""
    case = get_case(case_id, action="update")
    _require_permission(Category(case.category), case.institution_id, "update")
    if case.category != Category.TB:
        raise BusinessRuleViolation("只有肺结核专案需要记录未见到患者的入户", code="case_not_applicable")
    if case.status != "open":
        raise InvalidTransition("该专案已结案", code="case_closed")
    locked = db.session.execute(
        select(HealthCase).where(HealthCase.id == case.id).with_for_update()
    ).scalar_one()
    first_visit = db.session.execute(
        select(HealthForm.id).where(
            HealthForm.case_id == case.id,
            HealthForm.form_type == "tb_first_visit",
            HealthForm.status == "active",
        )
    ).first()
    if first_visit is not None:
        raise Conflict("已完成第一次入户随访，无需再记录未见到患者", code="first_visit_done")
    if attempted_at > clock.now():
        raise BusinessRuleViolation("入户时间不能晚于现在", code="invalid_date")
    notified = locked.notified_at
    if notified is not None and attempted_at < notified:
        raise BusinessRuleViolation("入户时间不能早于接到通知的时间", code="invalid_date")
    attempts = sorted({*(locked.facts or {}).get("missed_first_visits", []), attempted_at.isoformat()})
    within = [
        a for a in attempts if notified is None or datetime.fromisoformat(a) <= notified + FIRST_VISIT_WINDOW
    ]
    facts: dict[str, Any] = {"missed_first_visits": attempts}
    if len(within) >= 2:
        facts["report_to_higher_level"] = True
        set_due(locked, clock.today_local(), REPORT_DUE_KIND, **facts)
    else:
        locked.facts = {**(locked.facts or {}), **facts}
        db.session.flush()
    audit.record(
        "missed_visit",
        "health_case",
        locked.id,
        resident_id=locked.resident_id,
        detail={"category": locked.category, "attempts": len(attempts), "report": len(within) >= 2},
    )
    return locked


def set_due(case: HealthCase, due_on: date | None, kind: str | None, **facts: Any) -> None:
    """Move a case's next due date (called by the forms' after_save hooks)."""
    case.next_due_on = due_on
    case.next_due_kind = kind
    if facts:
        case.facts = {**(case.facts or {}), **facts}
    db.session.flush()
