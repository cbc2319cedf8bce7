"""严重精神障碍 follow-up schedule on a controlled clock (spec §6.3; `SMD_FOLLOWUP_DAYS`).

opened → 补充表 due the same day → first follow-up 14 days after it → after each visit:
next_visit_date, else visit + the interval of its class (1 不稳定 14, 2 基本稳定 14, 3 稳定 90
days by default), never more than 90 days; 失访 → the 不稳定 interval; death → nothing due.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import time_machine
from flask import Flask

from app.core import clock
from app.core.db import commit, db
from app.health_records.models import HealthCase
from app.health_records.services import forms
from tests.factories import as_principal, token_for
from tests.health_records.smd_support import World, fill, lost_visit, make_world, supplement, visit

START = date(2026, 3, 2)  # a Monday


@pytest.fixture
def clock_at() -> Iterator[time_machine.Traveller]:
    """The clock at 10:00 China time on START; `clock_at.move_to(...)` moves it."""
    with time_machine.travel(datetime(2026, 3, 2, 2, 0, tzinfo=UTC), tick=False) as traveller:
        yield traveller


def on(traveller: time_machine.Traveller, day: date) -> None:
    traveller.move_to(datetime(day.year, day.month, day.day, 2, 0, tzinfo=UTC))


def due(world: World) -> tuple[date | None, str | None]:
    db.session.expire_all()
    case = db.session.get(HealthCase, world.case.id)
    assert case is not None
    return case.next_due_on, case.next_due_kind


def seen(**overrides: Any) -> dict[str, Any]:
    """An ordinary visit seen on the (travelled) clock's today."""
    return visit(visit_date=overrides.pop("visit_date", None) or clock.today_local().isoformat(), **overrides)


def test_the_schedule_by_class(app: Flask, clock_at: time_machine.Traveller) -> None:
    world = make_world()
    assert world.case.opened_on == START
    assert due(world) == (START, "smd_supplement")  # the 补充表 is filled at intake

    # a follow-up before the 补充表 does not hide that the 补充表 is still missing
    on(clock_at, START + timedelta(days=3))
    fill(world, "smd_follow_up", seen(visit_date="2026-03-05", risk_level="1", visit_class="2"))
    assert due(world) == (START, "smd_supplement")

    # the 补充表 saved: due moves to the follow-ups (the last visit's class 2 → 14 days)
    fill(world, "smd_supplement", supplement(filled_date="2026-03-05", consent_date="2026-03-05"))
    assert due(world) == (date(2026, 3, 19), "smd_follow_up")

    # 稳定 → 90 days
    on(clock_at, date(2026, 3, 19))
    fill(world, "smd_follow_up", seen(visit_date="2026-03-19", visit_class="3"))
    assert due(world) == (date(2026, 6, 17), "smd_follow_up")

    # 不稳定 → 14 days
    on(clock_at, date(2026, 4, 20))
    fill(world, "smd_follow_up", seen(visit_date="2026-04-20", risk_level="3", visit_class="1"))
    assert due(world) == (date(2026, 5, 4), "smd_follow_up")

    # 基本稳定 → 14 days
    on(clock_at, date(2026, 5, 4))
    fill(world, "smd_follow_up", seen(visit_date="2026-05-04", insight="2", visit_class="2"))
    assert due(world) == (date(2026, 5, 18), "smd_follow_up")
    assert world.case.facts["visit_class"] == "2"
    assert world.case.facts["last_visit_on"] == "2026-05-04"

    # the doctor's 下次随访日期 wins (e.g. 1 month after an unsuccessful adjustment, open point 3)
    on(clock_at, date(2026, 5, 18))
    fill(
        world,
        "smd_follow_up",
        seen(visit_date="2026-05-18", insight="2", visit_class="2", next_visit_date="2026-06-18"),
    )
    assert due(world) == (date(2026, 6, 18), "smd_follow_up")


def test_the_first_follow_up_is_due_14_days_after_the_supplement(
    app: Flask, clock_at: time_machine.Traveller
) -> None:
    world = make_world()
    on(clock_at, START + timedelta(days=2))
    fill(world, "smd_supplement", supplement())  # filled today, 2 days after opening
    assert due(world) == (START + timedelta(days=16), "smd_follow_up")


def test_never_more_than_90_days_between_visits(app: Flask, clock_at: time_machine.Traveller) -> None:
    world = make_world()
    fill(world, "smd_supplement", supplement())
    form = fill(world, "smd_follow_up", seen(visit_class="3", next_visit_date="2026-07-01"))
    assert due(world) == (START + timedelta(days=90), "smd_follow_up")  # 2026-05-31, not 07-01
    with as_principal(world.doctor):
        derived = forms.view_form(form.id).version.derived
        commit()
    assert derived["next_due_on"] == "2026-05-31" and derived["default_next_visit_date"] == "2026-05-31"
    assert derived["warnings"] == [
        "下次随访日期距本次随访超过 90 天（每年至少随访 4 次），随访计划按 2026-05-31 安排"
    ]


def test_a_lost_visit_is_retried_at_the_unstable_interval_and_a_death_ends_the_schedule(
    app: Flask, clock_at: time_machine.Traveller
) -> None:
    world = make_world()
    fill(world, "smd_supplement", supplement())
    fill(world, "smd_follow_up", seen(visit_class="3"))
    assert due(world) == (START + timedelta(days=90), "smd_follow_up")
    on(clock_at, date(2026, 5, 31))
    fill(world, "smd_follow_up", lost_visit(visit_date="2026-05-31", lost_reason="2"))
    assert due(world) == (date(2026, 6, 14), "smd_follow_up")
    assert world.case.facts["last_outcome"] == "lost" and world.case.facts["visit_class"] == "3"
    on(clock_at, date(2026, 6, 14))
    fill(
        world,
        "smd_follow_up",
        {"visit_date": "2026-06-14", "visit_mode": "2", "death_date": "2026-06-10", "death_cause": "4"},
    )
    assert due(world) == (None, None)
    assert world.case.facts["deceased_on"] == "2026-06-10"
    assert world.case.status == "open"  # 结案 stays a deliberate action


def test_revising_the_last_visit_moves_the_due_date(app: Flask, clock_at: time_machine.Traveller) -> None:
    world = make_world()
    fill(world, "smd_supplement", supplement())
    form = fill(world, "smd_follow_up", seen(visit_class="3"))
    assert due(world)[0] == START + timedelta(days=90)
    with as_principal(world.doctor):
        forms.revise_form(form.id, seen(visit_class="1", risk_level="3"), base_version=1, reason="更正分类")
        commit()
    assert due(world)[0] == START + timedelta(days=14)


def test_the_intervals_come_from_the_setting(
    app: Flask, clock_at: time_machine.Traveller, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a district auditing against the 2018 工作规范: 不稳定 weekly, 基本稳定 every 2 months
    monkeypatch.setitem(app.config, "SMD_FOLLOWUP_DAYS", "1:7, 2:60, 3:90")
    world = make_world()
    fill(world, "smd_supplement", supplement())
    assert due(world) == (START + timedelta(days=7), "smd_follow_up")
    fill(world, "smd_follow_up", seen(risk_level="1", visit_class="2"))
    assert due(world) == (START + timedelta(days=60), "smd_follow_up")


@pytest.mark.parametrize("bad", ["1:7,3:90", "1:7,2:x,3:90", "1:7,2:120,3:90", "1:7,1:7,2:14,3:90", "", "14"])
def test_a_bad_setting_falls_back_to_the_default_and_is_logged(
    app: Flask,
    clock_at: time_machine.Traveller,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    bad: str,
) -> None:
    monkeypatch.setitem(app.config, "SMD_FOLLOWUP_DAYS", bad)
    world = make_world()
    fill(world, "smd_supplement", supplement())
    with caplog.at_level(logging.WARNING, logger="app.health_records.forms.smd"):
        fill(world, "smd_follow_up", seen(risk_level="1", visit_class="2"))
    assert due(world) == (START + timedelta(days=14), "smd_follow_up")
    assert any("SMD_FOLLOWUP_DAYS" in r.getMessage() for r in caplog.records)


def test_the_work_list_shows_what_is_due(app: Flask, clock_at: time_machine.Traveller) -> None:
    world = make_world()
    fill(world, "smd_supplement", supplement())
    on(clock_at, START + timedelta(days=20))
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token_for(world.doctor)}"}
    body = client.get(f"/api/v1/health-cases/{world.case.id}", headers=headers).get_json()
    assert body["next_due_on"] == "2026-03-16" and body["next_due_kind"] == "smd_follow_up"
    assert body["next_due_label"] == "严重精神障碍患者随访" and body["overdue"] is True
    listed = client.get("/api/v1/health-cases?category=smd&due_before=2026-03-31", headers=headers).get_json()
    assert [item["id"] for item in listed["items"]] == [str(world.case.id)]
