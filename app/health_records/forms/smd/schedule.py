"""The 严重精神障碍 case schedule (`CASE_SCHEDULERS["smd"]` and the forms' `after_save`); the rules
are in the package docstring."""

from __future__ import annotations

import logging
from datetime import date, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import select

from app.core.db import db
from app.health_records.forms import SaveContext
from app.health_records.forms.smd.common import BASICALLY_STABLE, FOLLOW_UP, STABLE, SUPPLEMENT, UNSTABLE
from app.health_records.models import Category, HealthCase, HealthForm, HealthFormVersion
from app.health_records.services import cases
from app.health_records.spec import Payload

log = logging.getLogger(__name__)

DEFAULT_FOLLOWUP_DAYS: dict[str, int] = {UNSTABLE: 14, BASICALLY_STABLE: 14, STABLE: 90}
MAX_INTERVAL_DAYS = 90  # at least 4 follow-ups a year


def followup_days() -> dict[str, int]:
    """Days to the next follow-up by 本次随访分类, from `SMD_FOLLOWUP_DAYS` ("1:14,2:14,3:90")."""
    raw = str(current_app.config.get("SMD_FOLLOWUP_DAYS", ""))
    try:
        days: dict[str, int] = {}
        for part in raw.split(","):
            key, sep, value = part.strip().partition(":")
            if not sep or key.strip() not in DEFAULT_FOLLOWUP_DAYS or key.strip() in days:
                raise ValueError(part)
            number = int(value.strip())
            if not 1 <= number <= MAX_INTERVAL_DAYS:
                raise ValueError(part)
            days[key.strip()] = number
        if set(days) != set(DEFAULT_FOLLOWUP_DAYS):
            raise ValueError("missing class")
    except ValueError:
        log.warning(
            "SMD_FOLLOWUP_DAYS=%r is not '1:<days>,2:<days>,3:<days>' with 1..%d days; using %r",
            raw,
            MAX_INTERVAL_DAYS,
            DEFAULT_FOLLOWUP_DAYS,
        )
        return dict(DEFAULT_FOLLOWUP_DAYS)
    return days


# --- the schedule -----------------------------------------------------------------------------


def _active_forms(case: HealthCase) -> list[HealthForm]:
    return list(
        db.session.execute(
            select(HealthForm)
            .where(
                HealthForm.case_id == case.id,
                HealthForm.status == "active",
                HealthForm.form_type.in_((SUPPLEMENT, FOLLOW_UP)),
            )
            .order_by(HealthForm.occurred_on, HealthForm.created_at)
        ).scalars()
    )


def _derived_of(form: HealthForm) -> dict[str, Any]:
    row = db.session.execute(
        select(HealthFormVersion).where(
            HealthFormVersion.form_id == form.id, HealthFormVersion.version == form.version
        )
    ).scalar_one()
    return row.derived


def reschedule(case: HealthCase) -> None:
    """Set the case's next due date from its active forms (the rules are in the package docstring)."""
    forms = _active_forms(case)
    supplement = next((f for f in forms if f.form_type == SUPPLEMENT), None)
    if supplement is None:
        cases.set_due(case, case.opened_on, SUPPLEMENT)
        return
    visits = [f for f in forms if f.form_type == FOLLOW_UP]
    if not visits:
        start = max(case.opened_on, supplement.occurred_on)
        cases.set_due(case, start + timedelta(days=followup_days()[UNSTABLE]), FOLLOW_UP)
        return
    latest = visits[-1]
    derived = _derived_of(latest)
    facts: dict[str, Any] = {
        "last_visit_on": latest.occurred_on.isoformat(),
        "last_outcome": derived["outcome"],
    }
    classified = [f for f in visits if f.result_code is not None]
    if classified:
        facts["visit_class"] = classified[-1].result_code
    if derived["outcome"] == "death":
        facts["deceased_on"] = derived["deceased_on"]
        cases.set_due(case, None, None, **facts)
        return
    cases.set_due(case, date.fromisoformat(derived["next_due_on"]), FOLLOW_UP, **facts)


def opened(case: HealthCase) -> None:
    """A new case: the 补充表 is due on the day the patient is taken into management."""
    case.next_due_on = case.opened_on
    case.next_due_kind = SUPPLEMENT


def after_save(form: HealthForm, payload: Payload, derived: dict[str, Any], ctx: SaveContext) -> None:
    if ctx.case is not None:
        reschedule(ctx.case)


cases.CASE_SCHEDULERS[Category.SMD.value] = opened
