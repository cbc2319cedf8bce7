"""`flask seed-demo` leaves health records to try: forms, a 肺结核 and a 严重精神障碍 case, and the
category permission on lh001.doctor1 only."""

from __future__ import annotations

from collections import Counter

from flask import Flask
from sqlalchemy import select

from app.accounts.models import StaffUser
from app.core.db import db
from app.health_records.models import HealthCase, HealthForm, HealthRecord
from tests.audit.support import Http
from tests.factories import token_for


def test_seed_demo_creates_health_records_once(app: Flask) -> None:
    runner = app.test_cli_runner()
    first = runner.invoke(args=["seed-demo"])
    assert first.exit_code == 0, first.output
    assert "health records created" in first.output
    db.session.expire_all()
    records = list(db.session.execute(select(HealthRecord)).scalars())
    assert len(records) == 4 and all(
        r.record_no.startswith("440303") and len(r.record_no) == 17 for r in records
    )
    kinds = Counter(db.session.execute(select(HealthForm.form_type)).scalars())
    assert kinds == Counter(
        {
            "personal_info": 4,
            "elderly_selfcare": 1,
            "health_exam": 1,
            "tb_first_visit": 1,
            "smd_supplement": 1,
            "smd_follow_up": 1,
        }
    )
    assert sorted(db.session.execute(select(HealthCase.category)).scalars()) == ["smd", "tb"]

    second = runner.invoke(args=["seed-demo"])
    assert second.exit_code == 0 and "health records created" not in second.output
    db.session.expire_all()
    assert len(list(db.session.execute(select(HealthRecord)).scalars())) == 4

    def user(name: str) -> StaffUser:
        return db.session.execute(select(StaffUser).where(StaffUser.username == name)).scalar_one()

    follow_up = db.session.execute(
        select(HealthForm).where(HealthForm.form_type == "smd_follow_up")
    ).scalar_one()
    assert (
        Http(app, token_for(user("lh001.doctor1"))).get(f"/api/v1/health-forms/{follow_up.id}").status_code
        == 200
    )
    assert (
        Http(app, token_for(user("lh001.nurse"))).get(f"/api/v1/health-forms/{follow_up.id}").status_code
        == 404
    )
