"""肺结核 §4.3: two home visits within 72 h of the notice that do not find the patient make the
report to the higher-level institution due."""

from __future__ import annotations

from datetime import datetime, timedelta

import time_machine
from flask import Flask

from app.core.auth import Role
from app.core.clock import CHINA
from tests.audit.support import Http, audit_rows
from tests.factories import make_staff, token_for
from tests.health_records import smd_support, tb_support

NOW = datetime(2026, 3, 3, 18, 0, tzinfo=CHINA)  # 56 h after the notice of 2026-03-01 10:00


def _missed(http: Http, case_id: object, at: datetime):
    return http.post(f"/api/v1/health-cases/{case_id}/missed-visits", json={"attempted_at": at.isoformat()})


def test_the_second_missed_visit_within_72_hours_makes_the_report_due(app: Flask) -> None:
    with time_machine.travel(NOW, tick=False):
        world = tb_support.tb_world()
        http = Http(app, token_for(world.doctor))
        first = _missed(http, world.case.id, datetime(2026, 3, 1, 15, 0, tzinfo=CHINA))
        assert first.status_code == 200, first.json
        assert (
            first.json["next_due_kind"] == "tb_first_visit"
            and "report_to_higher_level" not in first.json["facts"]
        )
        second = _missed(http, world.case.id, datetime(2026, 3, 2, 16, 30, tzinfo=CHINA))
        assert second.status_code == 200, second.json
        body = second.json
        assert (body["next_due_on"], body["next_due_kind"]) == ("2026-03-03", "tb_report")
        assert body["next_due_label"] == "两次入户均未见到患者，请向上级专业机构报告"
        assert (
            body["facts"]["report_to_higher_level"] is True and len(body["facts"]["missed_first_visits"]) == 2
        )
        assert [r.action for r in audit_rows(object_id=world.case.id, action="missed_visit")] == [
            "missed_visit"
        ] * 2
        # The first visit made later takes the schedule over; the report stays on record.
        tb_support.save(world, "tb_first_visit", tb_support.first_visit(visit_date="2026-03-03"))
        case = tb_support.reload_case(world.case.id)
        assert case.next_due_kind == "tb_follow_up" and case.facts["report_to_higher_level"] is True
        assert _missed(http, world.case.id, NOW - timedelta(hours=1)).json["code"] == "first_visit_done"


def test_a_missed_visit_after_the_72_hours_does_not_make_the_report_due(app: Flask) -> None:
    with time_machine.travel(NOW + timedelta(days=2), tick=False):
        world = tb_support.tb_world()
        http = Http(app, token_for(world.doctor))
        _missed(http, world.case.id, datetime(2026, 3, 2, 9, 0, tzinfo=CHINA))
        late = _missed(http, world.case.id, datetime(2026, 3, 4, 11, 0, tzinfo=CHINA))
        assert late.status_code == 200 and late.json["next_due_kind"] == "tb_first_visit"


def test_refusals(app: Flask) -> None:
    with time_machine.travel(NOW, tick=False):
        world = tb_support.tb_world()
        http = Http(app, token_for(world.doctor))
        future = _missed(http, world.case.id, NOW + timedelta(hours=1))
        assert (future.status_code, future.json["code"]) == (422, "invalid_date")
        before = _missed(http, world.case.id, tb_support.NOTICE - timedelta(hours=1))
        assert (before.status_code, before.json["code"]) == (422, "invalid_date")
        nurse = make_staff(Role.NURSE, world.centre)  # no health:tb
        assert _missed(Http(app, token_for(nurse)), world.case.id, NOW).status_code == 404
    smd = smd_support.make_world()
    refused = _missed(Http(app, token_for(smd.doctor)), smd.case.id, datetime.now(CHINA) - timedelta(hours=1))
    assert (refused.status_code, refused.json["code"]) == (422, "case_not_applicable")
