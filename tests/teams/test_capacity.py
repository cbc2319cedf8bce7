"""Capacity counters for contracts: reserve/release, caps, rules, and concurrency on PostgreSQL."""

from __future__ import annotations

import threading

import pytest
from flask import Flask

from app.core.db import commit, db, rollback
from app.core.errors import BusinessRuleViolation, Conflict, DomainError
from app.doctors.models import Doctor
from app.doctors.services import library_cache
from app.teams import services
from app.teams.models import Team
from tests.factories import make_centre
from tests.factories_doctors import make_doctor, make_nurse, make_team


def _counts(doctor: Doctor, team: Team) -> tuple[int, int]:
    db.session.expire_all()
    return db.session.get(Doctor, doctor.id).signed_count, db.session.get(Team, team.id).signed_count


def test_reserve_and_release(centre):
    gp = make_doctor(centre)
    team = make_team(centre, [(gp, "gp", True), make_nurse(centre)])
    version = library_cache.current_version()
    services.reserve_capacity(gp, team)
    assert (gp.signed_count, team.signed_count) == (1, 1)
    commit()
    assert _counts(gp, team) == (1, 1)
    assert library_cache.current_version() == version + 1
    assert services.release_capacity(gp, team) is True
    commit()
    assert _counts(gp, team) == (0, 0)
    assert services.release_capacity(gp, team) is False  # already 0: a warning, not an error
    assert _counts(gp, team) == (0, 0)


def test_doctor_cap_is_enforced(centre):
    gp = make_doctor(centre, capacity_override=2)
    team = make_team(centre, [gp, make_nurse(centre)], capacity_override=100)
    services.reserve_capacity(gp, team)
    services.reserve_capacity(gp, team)
    with pytest.raises(Conflict) as caught:
        services.reserve_capacity(gp, team)
    assert caught.value.code == "doctor_capacity_full" and "上限" in caught.value.message
    assert _counts(gp, team) == (2, 2)


def test_a_full_team_gives_the_doctor_place_back(centre):
    gp = make_doctor(centre)
    team = make_team(centre, [gp, make_nurse(centre)], capacity_override=1)
    services.reserve_capacity(gp, team)
    with pytest.raises(Conflict) as caught:
        services.reserve_capacity(gp, team)
    assert caught.value.code == "team_capacity_full"
    assert _counts(gp, team) == (1, 1)


@pytest.mark.parametrize(
    ("build", "code"),
    [
        (lambda c: (make_doctor(c, approved=False), None), "doctor_not_approved"),
        (lambda c: (make_doctor(c, practice_status="suspended"), None), "doctor_not_active"),
        (lambda c: (make_doctor(c, mi_doctor_code=None), None), "doctor_mi_code_missing"),
        (lambda c: (make_doctor(c), "no-nurse"), "team_cannot_sign"),
        (lambda c: (make_doctor(c), "not-member"), "doctor_not_in_team"),
        (lambda c: (make_doctor(c), "as-specialist"), "doctor_not_in_team"),
    ],
)
def test_rules_checked_before_taking_a_place(centre, build, code):
    doctor, variant = build(centre)
    if variant == "no-nurse":
        team = make_team(centre, [doctor])
    elif variant == "not-member":
        team = make_team(centre)
    elif variant == "as-specialist":
        team = make_team(centre, [(doctor, "specialist"), make_doctor(centre), make_nurse(centre)])
    else:
        team = make_team(centre, [doctor, make_nurse(centre)])
    with pytest.raises(BusinessRuleViolation) as caught:
        services.reserve_capacity(doctor, team)
    assert caught.value.code == code and caught.value.status == 422
    assert _counts(doctor, team) == (0, 0)


def _race(app: Flask, doctor_ids: list, team_id, attempts: int) -> list[str]:
    barrier = threading.Barrier(attempts)
    outcomes: list[str] = []
    lock = threading.Lock()

    def attempt(index: int) -> None:
        # Start together, then compete for the connection pool and the rows like real requests do.
        barrier.wait(timeout=30)
        with app.app_context():
            try:
                doctor = db.session.get_one(Doctor, doctor_ids[index % len(doctor_ids)])
                team = db.session.get_one(Team, team_id)
                services.reserve_capacity(doctor, team)
                commit()
                result = "ok"
            except DomainError as exc:
                rollback()
                result = exc.code
            except Exception as exc:  # reported by the assertion: never a hang
                rollback()
                result = type(exc).__name__
            finally:
                db.session.remove()
            with lock:
                outcomes.append(result)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(attempts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


@pytest.mark.postgres
def test_30_concurrent_reservations_against_a_doctor_cap_of_10(app, pg_only, committing_db):
    centre = make_centre()
    gp = make_doctor(centre, capacity_override=10)
    team = make_team(centre, [gp, make_nurse(centre)], capacity_override=1000)
    outcomes = _race(app, [gp.id], team.id, 30)
    assert outcomes.count("ok") == 10, outcomes
    assert set(outcomes) - {"ok"} == {"doctor_capacity_full"}
    assert _counts(gp, team) == (10, 10)


@pytest.mark.postgres
def test_30_concurrent_reservations_against_a_team_cap_of_10(app, pg_only, committing_db):
    centre = make_centre()
    gps = [make_doctor(centre, capacity_override=100) for _ in range(3)]
    team = make_team(centre, [*gps, make_nurse(centre)], capacity_override=10)
    outcomes = _race(app, [d.id for d in gps], team.id, 30)
    assert outcomes.count("ok") == 10, outcomes
    assert set(outcomes) - {"ok"} == {"team_capacity_full"}
    db.session.expire_all()
    assert sum(db.session.get_one(Doctor, d.id).signed_count for d in gps) == 10
    assert db.session.get_one(Team, team.id).signed_count == 10


@pytest.mark.postgres
def test_leaving_and_signing_race_never_strands_residents(app, pg_only, committing_db):
    """A doctor cannot leave while a concurrent signing adds a resident: one of the two loses."""
    from flask import g

    from app.accounts.models import StaffUser  # noqa: F401 - the factory needs the mapper
    from app.core.auth import Role
    from app.doctors import services as doctor_services
    from tests.factories import make_staff, principal_of

    centre = make_centre()
    gp = make_doctor(centre)
    team = make_team(centre, [gp, make_nurse(centre)])
    admin = make_staff(Role.CENTRE_ADMIN, centre)
    barrier = threading.Barrier(2)
    results: dict[str, str] = {}

    def sign() -> None:
        with app.app_context():
            try:
                doctor, team_ = db.session.get_one(Doctor, gp.id), db.session.get_one(Team, team.id)
                barrier.wait(timeout=30)
                services.reserve_capacity(doctor, team_)
                commit()
                results["sign"] = "ok"
            except DomainError as exc:
                rollback()
                results["sign"] = exc.code
            finally:
                db.session.remove()

    def leave() -> None:
        with app.app_context():
            g.principal = principal_of(admin)
            try:
                barrier.wait(timeout=30)
                doctor_services.set_practice_status(g.principal, gp.id, status="left", reason="离职")
                commit()
                results["leave"] = "ok"
            except DomainError as exc:
                rollback()
                results["leave"] = exc.code
            finally:
                db.session.remove()

    threads = [threading.Thread(target=sign), threading.Thread(target=leave)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    db.session.expire_all()
    final = db.session.get_one(Doctor, gp.id)
    assert sorted(results.values()).count("ok") == 1, results
    if results["leave"] == "ok":
        assert final.practice_status == "left" and final.signed_count == 0
    else:
        assert results["leave"] == "doctor_has_residents" and final.signed_count == 1
