"""Concurrent signings on PostgreSQL (SQLite serialises writers): each thread sends a real HTTP
request in its own application context, session and connection, and every request commits.

- 20 desk signings of one resident at once: exactly one contract, 19 × 409 `resident_already_signed`;
- signings of different residents against a doctor with one place left: exactly one;
- the same tablet submission sent 8 times at once: one contract, every answer names it.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from app.contracts.models import Contract
from app.core.db import commit, db
from app.doctors.models import Doctor
from app.teams.models import Team
from tests.contracts.factories import signing_world
from tests.contracts.test_signing import DESK, HOME, desk_body, home_body
from tests.doctors.support import Http, http_as, idem
from tests.factories_residents import make_resident


@pytest.fixture
def pg_only(is_postgres: bool) -> None:
    if not is_postgres:
        pytest.skip("concurrency test: needs PostgreSQL (set DATABASE_URL); SQLite serialises writers")


def race(clients: list[Http], send: Callable[[int, Http], Any]) -> list[tuple[int, dict[str, Any]]]:
    """Start every request at the same moment; (status, body) of each, in thread order."""
    barrier = threading.Barrier(len(clients))
    outcomes: list[tuple[int, dict[str, Any]] | None] = [None] * len(clients)

    def run(index: int) -> None:
        barrier.wait(timeout=30)
        try:
            with clients[index].app.app_context():  # the client expires this context's session after the call
                response = send(index, clients[index])
            outcomes[index] = (response.status_code, response.get_json(silent=True) or {})
        except Exception as exc:  # reported by the assertions, never a hang
            outcomes[index] = (0, {"code": type(exc).__name__, "message": str(exc)})

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(clients))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert all(o is not None for o in outcomes)
    return [o for o in outcomes if o is not None]


def counters(doctor_id: uuid.UUID, team_id: uuid.UUID) -> tuple[int, int]:
    db.session.expire_all()
    return db.session.get_one(Doctor, doctor_id).signed_count, db.session.get_one(Team, team_id).signed_count


@pytest.mark.postgres
def test_20_concurrent_desk_signings_of_one_resident_make_one_contract(app: Flask, pg_only, committing_db):
    world = signing_world()
    clients = [http_as(app, world.nurse_user if i % 2 else world.doctor_user) for i in range(20)]
    body = desk_body(world)
    outcomes = race(clients, lambda i, client: client.post(DESK, json=body, headers=idem()))
    statuses = sorted(status for status, _ in outcomes)
    assert statuses == [201] + [409] * 19, outcomes
    assert {b["code"] for s, b in outcomes if s == 409} == {"resident_already_signed"}
    assert all(world.centre.name in b["message"] for s, b in outcomes if s == 409)
    total = db.session.execute(
        select(func.count()).select_from(Contract).where(Contract.resident_id == world.resident.id)
    ).scalar_one()
    assert total == 1
    assert counters(world.doctor.id, world.team.id) == (1, 1)


@pytest.mark.postgres
def test_a_doctor_with_one_place_left_signs_exactly_one_of_many(app: Flask, pg_only, committing_db):
    world = signing_world()
    doctor = db.session.get_one(Doctor, world.doctor.id)
    doctor.capacity_override, doctor.signed_count = 5, 4
    team = db.session.get_one(Team, world.team.id)
    team.signed_count = 4
    commit()
    residents = [make_resident(world.centre, age=30 + i) for i in range(12)]
    clients = [http_as(app, world.nurse_user) for _ in residents]
    outcomes = race(
        clients,
        lambda i, client: client.post(
            DESK, json=desk_body(world, resident_id=str(residents[i].id)), headers=idem()
        ),
    )
    statuses = sorted(status for status, _ in outcomes)
    assert statuses == [201] + [409] * 11, outcomes
    assert {b["code"] for s, b in outcomes if s == 409} == {"doctor_capacity_full"}
    total = db.session.execute(
        select(func.count()).select_from(Contract).where(Contract.doctor_id == world.doctor.id)
    ).scalar_one()
    assert total == 1
    assert counters(world.doctor.id, world.team.id) == (5, 5)


@pytest.mark.postgres
def test_one_tablet_submission_sent_many_times_at_once_is_one_contract(app: Flask, pg_only, committing_db):
    world = signing_world()
    body = home_body(world)
    clients = [http_as(app, world.doctor_user) for _ in range(8)]
    outcomes = race(clients, lambda i, client: client.post(HOME, json=body))
    statuses = sorted(status for status, _ in outcomes)
    assert statuses == [200] * 7 + [201], outcomes
    assert len({b["contract"]["id"] for _, b in outcomes}) == 1
    total = db.session.execute(
        select(func.count()).select_from(Contract).where(Contract.resident_id == world.resident.id)
    ).scalar_one()
    assert total == 1
    assert counters(world.doctor.id, world.team.id) == (1, 1)
