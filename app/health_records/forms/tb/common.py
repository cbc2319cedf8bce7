"""Fields and rules the two 肺结核 forms share (same titles and code lists as printed)."""

from __future__ import annotations

from datetime import date
from typing import Any

from app.health_records.forms.tb.schedule import notice_day
from app.health_records.models import HealthCase
from app.health_records.spec import (
    Code,
    Date,
    Field,
    FormContext,
    FormInvalid,
    MultiCode,
    Number,
    Payload,
    Rule,
    Text,
    both_or_neither,
)

NO_SYMPTOMS = "0"  # 症状及体征 0 没有症状 (exclusive)


def blank(value: Any) -> bool:
    return value is None or value == "" or value == []


def visit_date() -> Date:
    return Date("visit_date", "随访时间", required=True)


def symptoms(codes: str) -> tuple[Field, ...]:
    """症状及体征 and its 其他 line (free text: spec open point 1, no code for 其他)."""
    return (
        MultiCode("symptoms", "症状及体征", codes=codes),
        Text("symptoms_other", "其他症状及体征"),
    )


def medication(*, required: bool) -> tuple[Field, ...]:
    """用药: 化疗方案 (free text such as 2HRZE/4HR), 用法, 药品剂型 (□/□/□/□)."""
    return (
        Text("regimen", "化疗方案", required=required, max_length=60),
        Code("regimen_usage", "用法", required=required, codes="tb_regimen_usage"),
        MultiCode("drug_forms", "药品剂型", required=required, codes="tb_drug_form", max_selections=4),
    )


def supervisor(title: str, *, required: bool) -> Code:
    return Code("supervisor", title, required=required, codes="tb_supervisor", companion_title="其他督导人员")


def lifestyle() -> tuple[Field, ...]:
    """吸烟 ___/___ 支/天 and 饮酒 ___/___ 两/天: now / target for the next visit."""
    return (
        Number("smoking_now", "吸烟（目前）", unit="支/天", low=0, high=100),
        Number("smoking_target", "吸烟（下次随访目标）", unit="支/天", low=0, high=100),
        Number("drinking_now", "饮酒（目前）", unit="两/天", low=0, high=30, places=1),
        Number("drinking_target", "饮酒（下次随访目标）", unit="两/天", low=0, high=30, places=1),
    )


LIFESTYLE_RULES: tuple[Rule, ...] = (
    both_or_neither("smoking_now", "smoking_target", "吸烟（目前/下次随访目标）"),
    both_or_neither("drinking_now", "drinking_target", "饮酒（目前/下次随访目标）"),
)

SYMPTOMS_REQUIRED = "症状及体征：必须填写（没有症状请选择“0 没有症状”）"


def _symptoms_exclusive(payload: Payload, ctx: FormContext) -> Any:
    if NO_SYMPTOMS in (payload.get("symptoms") or []) and not blank(payload.get("symptoms_other")):
        yield "symptoms_other", "其他症状及体征：已选择“没有症状”，不应再填写其他症状"


SYMPTOMS_EXCLUSIVE = Rule(_symptoms_exclusive, "0 没有症状 excludes the 其他 text")


def after(later: str, later_title: str, earlier: str, earlier_title: str) -> Rule:
    """`later` (a date) strictly after `earlier`."""

    def check(payload: Payload, ctx: FormContext) -> Any:
        a, b = payload.get(later), payload.get(earlier)
        if a is not None and b is not None and not a > b:
            yield later, f"{later_title}：应晚于{earlier_title}"

    return Rule(check, f"{later} > {earlier}")


NEXT_VISIT_AFTER_VISIT = after("next_visit_date", "下次随访时间", "visit_date", "随访时间")


def not_before_notice(case: HealthCase, dates: dict[str, tuple[str, str | None]]) -> None:
    """Refuse dates before the day the notice was received (field -> (title, ISO date))."""
    notice = notice_day(case)
    errors = {
        name: f"{title}：不能早于接到通知的日期（{notice.isoformat()}）"
        for name, (title, value) in dates.items()
        if value is not None and date.fromisoformat(value) < notice
    }
    if errors:
        raise FormInvalid(errors)
