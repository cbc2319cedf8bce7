"""作废: a voided form leaves lists and, for a case's follow-up, the schedule."""

from __future__ import annotations

from datetime import date

import pytest
import time_machine
from flask import Flask

from app.core.db import commit, db
from app.health_records.services import forms
from tests.factories import as_principal
from tests.health_records.smd_support import days_ago, fill, make_world, supplement, visit


def test_voiding_the_latest_follow_up_moves_the_due_date_back(app: Flask) -> None:
    world = make_world(opened_on=date.fromisoformat(days_ago(30)))
    fill(world, "smd_supplement", supplement(filled_date=days_ago(30), consent_date=days_ago(30)))
    first = fill(world, "smd_follow_up", visit(visit_date=days_ago(20), next_visit_date=None))
    db.session.refresh(world.case)
    after_first = world.case.next_due_on
    second = fill(world, "smd_follow_up", visit(visit_date=days_ago(2), next_visit_date=None))
    db.session.refresh(world.case)
    assert world.case.next_due_on != after_first
    with as_principal(world.doctor):
        voided = forms.void_form(second.id, reason="录错了患者")
        commit()
    assert voided.status == "voided"
    db.session.refresh(world.case)
    assert world.case.next_due_on == after_first
    assert isinstance(after_first, date) and first.status == "active"
    with as_principal(world.doctor):
        listed = forms.list_forms(page=1, size=20, case_id=world.case.id, form_type="smd_follow_up")
    assert [(f.id, f.status) for f in listed.items] == [(first.id, "active")]


def test_voiding_a_tb_visit_returns_the_schedule_to_the_remaining_visits(app: Flask) -> None:
    from tests.health_records import tb_support as tb

    with time_machine.travel(tb.NOW, tick=False):
        world = tb.tb_world()
        first = tb.save(world, "tb_first_visit", tb.first_visit())
        after_first = tb.reload_case(world.case.id).next_due_on
        second = tb.save(world, "tb_follow_up", tb.follow_up())
        assert tb.reload_case(world.case.id).next_due_on != after_first
        with as_principal(world.doctor):
            forms.void_form(second.id, reason="重复录入")
            commit()
        assert tb.reload_case(world.case.id).next_due_on == after_first
        with as_principal(world.doctor):
            forms.void_form(first.id, reason="录错了患者")
            commit()
        case = tb.reload_case(world.case.id)
        # No visit left: the first home visit is due again, 72 h after the notice.
        assert (case.next_due_on, case.next_due_kind) == (date(2026, 3, 4), "tb_first_visit")


def test_a_case_visit_can_be_recorded_after_the_resident_was_registered_deceased(app: Flask) -> None:
    """The desk registers the death first; the doctor then records the death visit on the open case.
    General forms are refused for a deceased resident."""
    from app.core.auth import Role
    from app.core.errors import InvalidTransition
    from app.residents.services import change_status
    from tests.factories import make_staff

    world = make_world(opened_on=date.fromisoformat(days_ago(30)))
    fill(world, "smd_supplement", supplement(filled_date=days_ago(30), consent_date=days_ago(30)))
    with as_principal(make_staff(Role.CENTRE_ADMIN, world.centre)) as admin:
        change_status(
            admin, world.resident.id, status="deceased", effective_date=date.fromisoformat(days_ago(3))
        )
        commit()
    death = fill(
        world,
        "smd_follow_up",
        {"visit_date": days_ago(1), "visit_mode": "2", "death_date": days_ago(3), "death_cause": "4"},
    )
    assert death.status == "active"
    with as_principal(world.doctor), pytest.raises(InvalidTransition) as refused:
        forms.create_form(
            world.record.id,
            "elderly_selfcare",
            {
                "assessed_at": days_ago(1),
                "meal_level": "1",
                "grooming_level": "1",
                "dressing_level": "1",
                "toileting_level": "1",
                "activity_level": "1",
            },
        )
    assert refused.value.code == "resident_not_active"
