"""Derived values of the 健康体检表: what the form computes instead of letting it be typed.

- `bmi` (体质指数, kg/m², one decimal) from 身高 and 体重 (填表说明 §3);
- `fpg_mmol` / `fpg_mgdl`: 空腹血糖 in both units whichever was entered (1 mmol/L = 18 mg/dL),
  with `fpg_entered_unit`;
- `age_at_exam` (周岁 on the exam date);
- the 老年人生活自理能力自我评估 (`elderly_selfcare_level`, its label and the assessment's total,
  form id, version and date), taken from the resident's 老年人生活自理能力评估表: the one named by
  `selfcare_form_id`, else the latest active one dated within 365 days up to the exam date. A
  resident aged 65+ must have one. The values are a snapshot of that assessment when the exam
  version is saved (a later re-assessment does not change a saved exam; revising it does).

Rules that need the database are checked here and raise `FormInvalid` like the spec's rules.
"""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import select

from app.core.db import db
from app.health_records.codes import CODES
from app.health_records.forms import SaveContext
from app.health_records.forms.exam.rules import ELDERLY_AGE, compute_bmi, exam_age
from app.health_records.forms.selfcare import band_of
from app.health_records.models import HealthForm, HealthFormVersion
from app.health_records.spec import FormInvalid, Payload

SELFCARE_FORM = "elderly_selfcare"
SELFCARE_WINDOW = timedelta(days=365)  # an assessment counts for the exams of the next year
MGDL_PER_MMOL = Decimal(18)
DIABETES_GROUP = "diabetes_t2"  # residents.models.codes population group


def _round(value: Decimal, places: str) -> float:
    return float(value.quantize(Decimal(places), rounding=ROUND_HALF_UP))


def fasting_glucose(payload: Payload) -> dict[str, Any]:
    """Both units from the one entered (mmol/L to 2 decimals, mg/dL to 1 decimal)."""
    if payload.get("fpg_mmol") is not None:
        mmol = Decimal(str(payload["fpg_mmol"]))
        return {
            "fpg_mmol": float(mmol),
            "fpg_mgdl": _round(mmol * MGDL_PER_MMOL, "0.1"),
            "fpg_entered_unit": "mmol/L",
        }
    if payload.get("fpg_mgdl") is not None:
        mgdl = Decimal(str(payload["fpg_mgdl"]))
        return {
            "fpg_mmol": _round(mgdl / MGDL_PER_MMOL, "0.01"),
            "fpg_mgdl": float(mgdl),
            "fpg_entered_unit": "mg/dL",
        }
    return {}


def _chosen_selfcare(form_id: str, resident_id: uuid.UUID, exam_date: date) -> HealthForm:
    form = db.session.get(HealthForm, uuid.UUID(form_id))
    if (
        form is None
        or form.resident_id != resident_id
        or form.form_type != SELFCARE_FORM
        or form.status != "active"
    ):
        raise FormInvalid(
            {"selfcare_form_id": "老年人生活自理能力评估表：所选评估表不存在、已作废或不属于该居民"}
        )
    if form.occurred_on > exam_date:
        raise FormInvalid({"selfcare_form_id": "老年人生活自理能力评估表：所选评估晚于体检日期"})
    if form.occurred_on < exam_date - SELFCARE_WINDOW:
        raise FormInvalid(
            {"selfcare_form_id": "老年人生活自理能力评估表：所选评估早于体检日期前一年，请重新评估"}
        )
    return form


def _latest_selfcare(resident_id: uuid.UUID, exam_date: date) -> HealthForm | None:
    found: HealthForm | None = db.session.execute(
        select(HealthForm)
        .where(
            HealthForm.resident_id == resident_id,
            HealthForm.form_type == SELFCARE_FORM,
            HealthForm.status == "active",
            HealthForm.occurred_on <= exam_date,
            HealthForm.occurred_on >= exam_date - SELFCARE_WINDOW,
        )
        .order_by(HealthForm.occurred_on.desc(), HealthForm.created_at.desc())
        .limit(1)
    ).scalar_one_or_none()
    return found


def _selfcare(payload: Payload, ctx: SaveContext, exam_date: date) -> dict[str, Any]:
    resident_id = ctx.resident.id
    chosen = payload.get("selfcare_form_id")
    form = (
        _chosen_selfcare(chosen, resident_id, exam_date)
        if chosen is not None
        else _latest_selfcare(resident_id, exam_date)
    )
    if form is None:
        age = exam_age(payload, ctx.form_ctx)
        if age is not None and age >= ELDERLY_AGE:
            raise FormInvalid(
                {
                    "elderly_selfcare_level": "老年人生活自理能力自我评估：65岁及以上老年人须先完成生活自理能力评估"
                    "（老年人生活自理能力评估表）"
                }
            )
        return {}
    version = db.session.execute(
        select(HealthFormVersion).where(
            HealthFormVersion.form_id == form.id, HealthFormVersion.version == form.version
        )
    ).scalar_one()
    total = int(version.derived["total_score"])
    level = band_of(total)
    return {
        "elderly_selfcare_level": level,
        "elderly_selfcare_label": CODES["elderly_selfcare_level"].label(level),
        "selfcare_total": total,
        "selfcare_form_id": str(form.id),
        "selfcare_form_version": form.version,
        "selfcare_assessed_on": form.occurred_on.isoformat(),
    }


def _diabetes_checks(payload: Payload, ctx: SaveContext) -> None:
    """足背动脉搏动 is mandatory for diabetes patients (填表说明 §6)."""
    if DIABETES_GROUP in ctx.resident.stored_groups and payload.get("dorsalis_pedis") is None:
        raise FormInvalid({"dorsalis_pedis": "足背动脉搏动：2型糖尿病患者必须检查此项"})


def derive(payload: Payload, ctx: SaveContext) -> dict[str, Any]:
    exam_date = date.fromisoformat(payload["exam_date"])
    _diabetes_checks(payload, ctx)
    derived: dict[str, Any] = {"age_at_exam": exam_age(payload, ctx.form_ctx)}
    bmi = compute_bmi(payload)
    if bmi is not None:
        derived["bmi"] = bmi
    derived.update(fasting_glucose(payload))
    derived.update(_selfcare(payload, ctx, exam_date))
    return derived
