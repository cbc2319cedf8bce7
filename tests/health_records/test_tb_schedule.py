"""肺结核 schedule (spec §4.3) on a frozen clock: 72 h first visit, monthly for doctor supervision,
every 10 days in the intensive phase otherwise, monthly after it; the stop block waits for 结案."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from app.health_records.forms.tb.follow_up import adherence_rate
from app.health_records.forms.tb.schedule import add_months, intensive_months_of
from app.health_records.services import views
from tests.health_records.tb_support import (
    NOTICE,
    STOP_BLOCK,
    derived_of,
    first_visit,
    follow_up,
    frozen,
    reload_case,
    revise,
    save,
    tb_world,
)

__all__ = ["frozen"]  # the fixture, imported for pytest

pytestmark = pytest.mark.usefixtures("frozen")


@pytest.mark.parametrize(
    ("notified_at", "due"),
    [
        (NOTICE, date(2026, 3, 4)),  # 2026-03-01 10:00 Beijing + 72 h
        (datetime(2026, 3, 1, 23, 30, tzinfo=NOTICE.tzinfo), date(2026, 3, 4)),
        # 2026-02-28 20:00 UTC is 2026-03-01 04:00 in Beijing: the local date counts.
        (datetime(2026, 2, 28, 20, 0, tzinfo=UTC), date(2026, 3, 4)),
        (datetime(2026, 2, 28, 15, 59, tzinfo=UTC), date(2026, 3, 3)),
    ],
)
def test_opening_a_case_makes_the_first_visit_due_within_72_hours(notified_at: datetime, due: date) -> None:
    case = reload_case(tb_world(notified_at=notified_at).case.id)
    assert (case.next_due_on, case.next_due_kind) == (due, "tb_first_visit")


def test_doctor_supervision_is_monthly() -> None:
    world = tb_world()
    form = save(world, "tb_first_visit", first_visit(supervisor="1"))
    derived = derived_of(form)
    assert derived["next_visit_date_suggested"] == "2026-04-03"
    assert derived["next_due_on"] == "2026-04-03"
    case = reload_case(world.case.id)
    assert (case.next_due_on, case.next_due_kind) == (date(2026, 4, 3), "tb_follow_up")
    assert case.intensive_months == 2
    assert case.facts == {
        "first_visit_within_72h": True,
        "supervisor": "1",
        "phase": "intensive",
        "intensive_until": "2026-05-03",
    }
    # A doctor-supervised follow-up in the intensive phase is still monthly.
    save(world, "tb_follow_up", follow_up(visit_date="2026-04-03", supervisor="1"))
    assert reload_case(world.case.id).next_due_on == date(2026, 5, 3)


def test_family_supervision_every_10_days_in_the_intensive_phase_then_monthly() -> None:
    world = tb_world()
    save(world, "tb_first_visit", first_visit(supervisor="2"))  # 2026-03-03; intensive until 05-03
    assert reload_case(world.case.id).next_due_on == date(2026, 3, 13)
    save(world, "tb_follow_up", follow_up(visit_date="2026-03-13", treatment_month=1, supervisor="2"))
    assert reload_case(world.case.id).next_due_on == date(2026, 3, 23)
    last_intensive = save(world, "tb_follow_up", follow_up(visit_date="2026-05-02", supervisor="2"))
    assert derived_of(last_intensive)["phase"] == "intensive"
    assert reload_case(world.case.id).next_due_on == date(2026, 5, 12)
    # After the 2 months of 2HRZE: the continuation phase, monthly.
    continuation = save(
        world, "tb_follow_up", follow_up(visit_date="2026-05-12", treatment_month=3, supervisor="2")
    )
    assert derived_of(continuation)["phase"] == "continuation"
    case = reload_case(world.case.id)
    assert (case.next_due_on, case.next_due_kind) == (date(2026, 6, 12), "tb_follow_up")
    assert case.facts["phase"] == "continuation" and case.facts["supervisor"] == "2"


@pytest.mark.parametrize("supervisor", ["3", "4"])
def test_self_administered_and_other_supervision_follow_the_family_rhythm(supervisor: str) -> None:
    world = tb_world()
    extra = {"supervisor_other": "社区志愿者"} if supervisor == "4" else {}
    save(world, "tb_first_visit", first_visit(supervisor=supervisor, **extra))
    assert reload_case(world.case.id).next_due_on == date(2026, 3, 13)


def test_intensive_phase_from_treatment_start_and_regimen() -> None:
    world = tb_world(treatment_started_on=date(2026, 2, 20))
    form = save(world, "tb_first_visit", first_visit(supervisor="2", regimen="3HRZE/6HRE"))
    assert derived_of(form)["intensive_until"] == "2026-05-20"
    assert reload_case(world.case.id).intensive_months == 3
    save(world, "tb_follow_up", follow_up(visit_date="2026-05-15", supervisor="2", regimen="3HRZE/6HRE"))
    assert reload_case(world.case.id).next_due_on == date(2026, 5, 25)
    save(world, "tb_follow_up", follow_up(visit_date="2026-05-25", supervisor="2", regimen="3HRZE/6HRE"))
    assert reload_case(world.case.id).next_due_on == date(2026, 6, 25)


def test_unreadable_regimen_assumes_two_months() -> None:
    world = tb_world()
    form = save(world, "tb_first_visit", first_visit(supervisor="2", regimen="异烟肼+利福平"))
    derived = derived_of(form)
    assert (derived["intensive_months"], derived["intensive_months_assumed"]) == (2, True)


def test_a_given_next_visit_date_wins() -> None:
    world = tb_world()
    form = save(world, "tb_first_visit", first_visit(supervisor="2", next_visit_date="2026-03-10"))
    assert derived_of(form)["next_visit_date_suggested"] == "2026-03-13"
    assert reload_case(world.case.id).next_due_on == date(2026, 3, 10)


def test_revising_an_earlier_visit_does_not_move_the_schedule() -> None:
    world = tb_world()
    first = save(world, "tb_first_visit", first_visit(supervisor="2"))
    save(world, "tb_follow_up", follow_up(visit_date="2026-03-13", treatment_month=1, supervisor="2"))
    assert reload_case(world.case.id).next_due_on == date(2026, 3, 23)
    revise(world, first, first_visit(supervisor="1", regimen="3HRZE/6HRE"))
    case = reload_case(world.case.id)
    assert case.next_due_on == date(2026, 3, 23)  # the latest visit still decides
    assert case.intensive_months == 3  # but the first visit's regimen defines the intensive phase
    assert case.facts["supervisor"] == "2"


def test_stop_block_waits_for_a_person_to_close_the_case() -> None:
    world = tb_world()
    save(world, "tb_first_visit", first_visit())
    closing = save(world, "tb_follow_up", follow_up(visit_date="2026-06-30", treatment_month=6, **STOP_BLOCK))
    derived = derived_of(closing)
    assert derived["closing_assessment"] is True
    assert derived["adherence_rate"] == 97.2  # 175 / 180
    assert derived["next_due_on"] is None
    case = reload_case(world.case.id)
    assert case.status == "open"  # closing is a human act (POST /health-cases/{id}/close)
    assert (case.next_due_on, case.next_due_kind) == (None, "tb_closing")
    assert case.facts["stop_reason"] == "1"
    assert views.case_view(case)["next_due_label"] == "已停止治疗，待结案评估后结案"
    # The stop block taken back out (an error): the schedule resumes.
    revise(world, closing, follow_up(visit_date="2026-06-30", treatment_month=6))
    case = reload_case(world.case.id)
    assert (case.next_due_on, case.next_due_kind) == (date(2026, 7, 30), "tb_follow_up")
    assert "stop_reason" not in case.facts


@pytest.mark.parametrize(
    ("regimen", "months"),
    [
        ("2HRZE/4HR", 2),
        ("3HRZE/6HRE", 3),
        ("2H3R3Z3E3/4H3R3", 2),  # intermittent
        ("2HRZES/1HRZE/5HRE", 3),  # 复治: every phase but the last is intensive
        ("6Cm-Lfx-Cs-Pto-Z/18Lfx-Cs-Pto-Z", 6),
        ("2HRZE", 2),
        ("HRZE", None),
        ("异烟肼+利福平", None),
        ("0HRZE/6HR", None),
        ("", None),
    ],
)
def test_intensive_months_of(regimen: str, months: int | None) -> None:
    assert intensive_months_of(regimen) == months


def test_add_months_keeps_the_day_or_the_month_end() -> None:
    assert add_months(date(2026, 3, 3), 1) == date(2026, 4, 3)
    assert add_months(date(2026, 1, 31), 1) == date(2026, 2, 28)
    assert add_months(date(2026, 11, 15), 2) == date(2027, 1, 15)


@pytest.mark.parametrize(
    ("actual", "should", "rate"),
    [(175, 180, 97.2), (180, 180, 100.0), (0, 180, 0.0), (2, 3, 66.7), (1, 16, 6.3)],  # 6.25 → 6.3 half up
)
def test_adherence_rate(actual: int, should: int, rate: float) -> None:
    assert adherence_rate(actual, should) == rate
