"""What both 严重精神障碍 forms share: the form types, the class codes, the 危险行为 counts and
a few date rules."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

from app.health_records.spec import Field, FormContext, MultiCode, Number, Payload, Rule, selected

SUPPLEMENT = "smd_supplement"
FOLLOW_UP = "smd_follow_up"
UNSTABLE, BASICALLY_STABLE, STABLE = "1", "2", "3"

# 危险行为 code -> (count field, printed words); 7 无 has no count.
RISK_BEHAVIOUR_COUNTS: tuple[tuple[str, str, str], ...] = (
    ("1", "mild_trouble_n", "轻度滋事"),
    ("2", "trouble_n", "肇事"),
    ("3", "disaster_n", "肇祸"),
    ("4", "other_harm_n", "其他危害行为"),
    ("5", "self_injury_n", "自伤"),
    ("6", "suicide_attempt_n", "自杀未遂"),
)


def risk_behaviour_fields(required: bool) -> tuple[Field, ...]:
    return (
        MultiCode("risk_behaviours", "危险行为", required=required, codes="smd_risk_behaviour"),
        *(
            Number(name, f"{words}次数", unit="次", low=0, high=999)
            for _, name, words in RISK_BEHAVIOUR_COUNTS
        ),
    )


def counts_match(payload: Payload, ctx: FormContext) -> Iterator[tuple[str, str]]:
    """A count (> 0) for each selected 危险行为, none for an unselected one. Silent when 危险行为
    itself is missing or invalid: that field's own error says what to fix."""
    if "risk_behaviours" not in payload:
        return
    for code, name, words in RISK_BEHAVIOUR_COUNTS:
        count = payload.get(name)
        if selected(payload, "risk_behaviours", code):
            if count is None or count <= 0:
                yield name, f"{words}次数：选择危险行为“{words}”时须填写次数（大于 0）"
        elif count is not None:
            yield name, f"{words}次数：未选择危险行为“{words}”，不应填写次数"


def on_or_after(later: str, later_title: str, earlier: str, earlier_title: str) -> Rule:
    """Like `not_before`, with the message on the later field and naming it first."""

    def check(payload: Payload, ctx: FormContext) -> Iterator[tuple[str, str]]:
        a, b = payload.get(later), payload.get(earlier)
        if a is not None and b is not None and a < b:
            yield later, f"{later_title}：不能早于{earlier_title}"

    return Rule(check, f"{later} >= {earlier}")


def after_birth(name: str, title: str) -> Rule:
    def check(payload: Payload, ctx: FormContext) -> Iterator[tuple[str, str]]:
        value = payload.get(name)
        if value is not None and ctx.birth_date is not None and date.fromisoformat(value) < ctx.birth_date:
            yield name, f"{title}：不能早于出生日期"

    return Rule(check, f"{name} >= birth date")
