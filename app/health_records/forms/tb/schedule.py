"""The 肺结核 case schedule (spec §4.3): the 72 h first visit, then every 10 days or every month.

See the package docstring for the rules; this module holds the arithmetic, the case scheduler
(`CASE_SCHEDULERS["tb"]`, registered at import) and the after-visit rescheduling.
"""

from __future__ import annotations

import calendar
import re
from datetime import date, timedelta
from typing import Any

from sqlalchemy import func, select

from app.core import clock
from app.core.db import db
from app.health_records.models import HealthCase, HealthForm, HealthFormVersion
from app.health_records.services import cases
from app.health_records.spec import Payload

FIRST_VISIT, FOLLOW_UP = "tb_first_visit", "tb_follow_up"
CLOSING = "tb_closing"  # next_due_kind once treatment stopped: waiting for 结案
VISIT_TYPES = (FIRST_VISIT, FOLLOW_UP)
DOCTOR = "1"  # 督导人员 1 医生 (medical staff)
INTENSIVE, CONTINUATION = "intensive", "continuation"  # 强化期 / 继续期
DEFAULT_INTENSIVE_MONTHS = 2
INTENSIVE_INTERVAL = timedelta(days=10)
NOTICE_WINDOW = timedelta(hours=72)


def add_months(day: date, months: int) -> date:
    """The same day `months` later (the month's last day when that month is shorter)."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


_PHASE = re.compile(r"^\s*(\d{1,2})\s*[A-Za-z]")


def intensive_months_of(regimen: str | None) -> int | None:
    """强化期 months of a regimen such as 2HRZE/4HR (→ 2); None when it cannot be read."""
    phases = [p for p in re.split(r"[/／]", regimen or "") if p.strip()]
    found = [_PHASE.match(p) for p in phases]
    if not phases or not all(found):
        return None
    months = [int(m.group(1)) for m in found if m is not None]
    total = months[0] if len(months) == 1 else sum(months[:-1])
    return total if 1 <= total <= 12 else None


def first_visit_due(case: HealthCase) -> date:
    """The local date on which the 72 h after the notice end."""
    if case.notified_at is None:  # pragma: no cover - open_case requires it for TB
        return case.opened_on + timedelta(days=3)
    return clock.local(case.notified_at + NOTICE_WINDOW).date()


def notice_day(case: HealthCase) -> date:
    """The local date the higher-level institution's notice was received."""
    return clock.local(case.notified_at).date() if case.notified_at else case.opened_on


def first_visit_on(case: HealthCase) -> date | None:
    found: date | None = db.session.execute(
        select(HealthForm.occurred_on).where(
            HealthForm.case_id == case.id, HealthForm.form_type == FIRST_VISIT, HealthForm.status == "active"
        )
    ).scalar_one_or_none()
    return found


def suggest_next(visit: date, supervisor: str | None, phase: str) -> date:
    """医生 supervision: monthly; otherwise every 10 days in the intensive phase, then monthly."""
    if supervisor == DOCTOR or phase == CONTINUATION:
        return add_months(visit, 1)
    return visit + INTENSIVE_INTERVAL


def plan(visit: date, supervisor: str | None, months: int | None, start: date) -> Payload:
    """The derived schedule values of a visit on `visit` (intensive phase from `start`)."""
    n = DEFAULT_INTENSIVE_MONTHS if months is None else months
    until = add_months(start, n)
    phase = INTENSIVE if visit < until else CONTINUATION
    return {
        "intensive_months": n,
        "intensive_months_assumed": months is None,
        "intensive_until": until.isoformat(),
        "phase": phase,
        "next_visit_date_suggested": suggest_next(visit, supervisor, phase).isoformat(),
    }


def opened(case: HealthCase) -> None:
    """`CASE_SCHEDULERS["tb"]`: the first home visit is due within 72 h of the notice."""
    case.next_due_on = first_visit_due(case)
    case.next_due_kind = FIRST_VISIT


cases.CASE_SCHEDULERS["tb"] = opened


def _is_latest(form: HealthForm, case: HealthCase) -> bool:
    later = db.session.execute(
        select(func.count())
        .select_from(HealthForm)
        .where(
            HealthForm.case_id == case.id,
            HealthForm.status == "active",
            HealthForm.form_type.in_(VISIT_TYPES),
            HealthForm.id != form.id,
            HealthForm.occurred_on > form.occurred_on,
        )
    ).scalar_one()
    return int(later) == 0


def reschedule(form: HealthForm, case: HealthCase, payload: Payload, derived: Payload, **known: Any) -> None:
    """After a visit: move the case's due date and keep its schedule facts (codes and dates only).
    A revised earlier visit only updates `known` facts: the schedule follows the latest visit."""
    facts = {**(case.facts or {}), **{k: v for k, v in known.items() if v is not None}}
    if not _is_latest(form, case):
        case.facts = facts
        db.session.flush()
        return
    facts.pop("stop_reason", None)
    facts.update(phase=derived["phase"], intensive_until=derived["intensive_until"])
    if payload.get("supervisor"):
        facts["supervisor"] = payload["supervisor"]
    due: date | None
    if derived.get("closing_assessment"):
        facts["stop_reason"] = payload["stop_reason"]
        due, kind = None, CLOSING
    else:
        due, kind = date.fromisoformat(derived["next_due_on"]), FOLLOW_UP
    case.facts = facts
    cases.set_due(case, due, kind)


def after_void(case: HealthCase) -> None:
    """A visit was voided: the schedule follows the latest remaining visit (or the notice)."""
    latest = db.session.execute(
        select(HealthForm)
        .where(
            HealthForm.case_id == case.id,
            HealthForm.status == "active",
            HealthForm.form_type.in_(VISIT_TYPES),
        )
        .order_by(HealthForm.occurred_on.desc(), HealthForm.created_at.desc())
        .limit(1)
    ).scalar_one_or_none()
    if latest is None:
        opened(case)
        db.session.flush()
        return
    row = db.session.execute(
        select(HealthFormVersion).where(
            HealthFormVersion.form_id == latest.id, HealthFormVersion.version == latest.version
        )
    ).scalar_one()
    reschedule(latest, case, row.payload, row.derived)
