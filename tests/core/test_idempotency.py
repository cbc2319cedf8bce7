"""Idempotency keys (app/core/idempotency.py) on `POST /api/v1/staff` (Stripe's semantics).

Semantics asserted here:
- No key, or a key outside `[A-Za-z0-9_.:-]{8,255}`: 400 `idempotency_key_required`, nothing done.
- Same caller, same key, same body: the first response is replayed (same status and body, header
  `Idempotent-Replayed: true`); the work is done once.
- Same caller, same key, another body: 422 `idempotency_key_mismatch`, nothing done.
- Keys are per caller: another admin may use the same key string for their own request.
- A request that fails (any error response: 409, 422, ...) rolls back and stores no key. The same key
  may then be sent again with the same body (re-executed, not replayed) or with a corrected body
  (executed; it is not a "mismatch" because nothing was recorded for the failed attempt).
- Keys live `IDEMPOTENCY_TTL_HOURS` (at least 24 h); after that the key is free again, and the
  periodic `purge_expired` job deletes the rows.
- Concurrent duplicates (PostgreSQL): exactly one request does the work; the others get 409
  `idempotency_in_progress` or the replay.

Every request runs in its own application context (own session and `g`), as in production.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from flask import Flask
from sqlalchemy import func, select

from app.accounts.models import StaffUser
from app.config import load_settings
from app.core import idempotency
from app.core.auth import Role
from app.core.db import db
from app.core.idempotency import IdempotencyKey
from app.institutions.models import Institution
from tests.factories import make_centre, make_staff, token_for

START = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)


def _post(app: Flask, token: str, body: dict[str, Any], key: str | None) -> Any:
    headers = {"Authorization": f"Bearer {token}"}
    if key is not None:
        headers[idempotency.HEADER] = key
    with app.app_context():
        return app.test_client().post("/api/v1/staff", json=body, headers=headers)


def _body(username: str, **extra: Any) -> dict[str, Any]:
    return {
        "username": username,
        "name": "新来的医生",
        "role": "doctor",
        "password": "Temp-Pass-2026",
        "phone": "13712340000",
        **extra,
    }


def _staff_count(username: str) -> int:
    return int(
        db.session.execute(
            select(func.count()).select_from(StaffUser).where(StaffUser.username == username)
        ).scalar_one()
    )


def _keys(key: str) -> list[IdempotencyKey]:
    return list(
        db.session.execute(
            select(IdempotencyKey).where(IdempotencyKey.key == key).execution_options(populate_existing=True)
        ).scalars()
    )


def _new_key() -> str:
    return f"create-staff-{uuid.uuid4()}"


@pytest.fixture
def admin_token(centre: Institution) -> str:
    return token_for(make_staff(Role.CENTRE_ADMIN, centre))


@pytest.mark.parametrize(
    "key", [None, "", "short", "has spaces in it", "bad/char/key", "x" * 256, "新的编号新的编号新的编号"]
)
def test_missing_or_malformed_key_is_400_and_nothing_is_created(
    app: Flask, admin_token: str, key: str | None
) -> None:
    response = _post(app, admin_token, _body("nokey.doctor"), key)
    assert response.status_code == 400
    assert response.json["code"] == "idempotency_key_required"
    assert set(response.json) == {"code", "status", "message", "errors"}
    assert _staff_count("nokey.doctor") == 0


def test_same_key_same_body_is_replayed(app: Flask, admin_token: str) -> None:
    key = _new_key()
    first = _post(app, admin_token, _body("replay.doctor"), key)
    assert first.status_code == 201, first.json
    assert "Idempotent-Replayed" not in first.headers
    again = _post(app, admin_token, _body("replay.doctor"), key)
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json == first.json
    assert again.headers["Content-Type"].startswith("application/json")
    assert _staff_count("replay.doctor") == 1
    # The same JSON with keys in another order and other spacing is the same request.
    reordered = dict(reversed(list(_body("replay.doctor").items())))
    assert _post(app, admin_token, reordered, key).headers.get("Idempotent-Replayed") == "true"
    stored = _keys(key)
    assert len(stored) == 1 and stored[0].status == idempotency.COMPLETED
    assert stored[0].response_status == 201
    assert "13712340000" not in (stored[0].response_body or "")  # the stored response is the masked one


def test_same_key_other_body_is_422_mismatch(app: Flask, admin_token: str) -> None:
    key = _new_key()
    assert _post(app, admin_token, _body("first.doctor"), key).status_code == 201
    response = _post(app, admin_token, _body("second.doctor"), key)
    assert response.status_code == 422
    assert response.json["code"] == "idempotency_key_mismatch"
    assert _staff_count("second.doctor") == 0
    assert _staff_count("first.doctor") == 1


def test_key_belongs_to_its_caller(app: Flask, centre: Institution, admin_token: str) -> None:
    other_admin = token_for(make_staff(Role.CENTRE_ADMIN, centre))
    key = _new_key()
    mine = _post(app, admin_token, _body("mine.doctor"), key)
    theirs = _post(app, other_admin, _body("theirs.doctor"), key)
    assert mine.status_code == 201 and theirs.status_code == 201
    assert "Idempotent-Replayed" not in theirs.headers
    assert theirs.json["username"] == "theirs.doctor"
    assert _staff_count("mine.doctor") == 1 and _staff_count("theirs.doctor") == 1
    assert len(_keys(key)) == 2
    # And the other admin's identical body under the same key is their own first request too.
    third = token_for(make_staff(Role.CENTRE_ADMIN, centre))
    assert _post(app, third, _body("mine.doctor"), key).json["code"] == "username_taken"


def test_failed_request_stores_no_key_and_may_be_retried(
    app: Flask, centre: Institution, admin_token: str
) -> None:
    make_staff(Role.NURSE, centre, username="taken.name")
    key = _new_key()
    failed = _post(app, admin_token, _body("taken.name"), key)
    assert failed.status_code == 409
    assert failed.json["code"] == "username_taken"
    assert _keys(key) == []

    # Same key, same body: executed again (not a replay of the failure), fails again.
    again = _post(app, admin_token, _body("taken.name"), key)
    assert again.status_code == 409 and "Idempotent-Replayed" not in again.headers
    # Same key, corrected body: allowed, because the failed attempt recorded nothing.
    fixed = _post(app, admin_token, _body("fixed.name"), key)
    assert fixed.status_code == 201, fixed.json
    assert _post(app, admin_token, _body("fixed.name"), key).headers.get("Idempotent-Replayed") == "true"
    # From now on the key is bound to the corrected body.
    assert _post(app, admin_token, _body("taken.name"), key).json["code"] == "idempotency_key_mismatch"
    assert _staff_count("fixed.name") == 1


@pytest.mark.parametrize(
    ("bad", "status", "code"),
    [
        ({"password": "weak"}, 422, "weak_password"),
        ({"role": "not-a-role"}, 422, "validation_error"),
        ({"unexpected": 1}, 422, "validation_error"),
    ],
)
def test_rejected_input_stores_no_key(
    app: Flask, admin_token: str, bad: dict[str, Any], status: int, code: str
) -> None:
    key = _new_key()
    response = _post(app, admin_token, _body("rejected.doctor", **bad), key)
    assert (response.status_code, response.json["code"]) == (status, code)
    assert _keys(key) == []
    assert _post(app, admin_token, _body("rejected.doctor"), key).status_code == 201


def test_keys_expire_and_are_purged(app: Flask, centre: Institution) -> None:
    admin = make_staff(Role.CENTRE_ADMIN, centre)
    ttl = timedelta(hours=int(app.config["IDEMPOTENCY_TTL_HOURS"]))
    old_key, young_key = _new_key(), _new_key()
    with time_machine.travel(START, tick=False) as traveller:
        assert _post(app, token_for(admin), _body("old.one"), old_key).status_code == 201
        traveller.shift(ttl - timedelta(hours=1))
        token = token_for(admin)  # sessions time out long before keys do
        assert _post(app, token, _body("old.two"), old_key).json["code"] == "idempotency_key_mismatch"
        assert _post(app, token, _body("young.one"), young_key).status_code == 201

        traveller.shift(timedelta(hours=1))  # old_key now exactly at its expiry
        token = token_for(admin)
        reused = _post(app, token, _body("old.two"), old_key)
        assert reused.status_code == 201, reused.json  # an expired key is free again
        assert "Idempotent-Replayed" not in reused.headers
        assert [k.created_at for k in _keys(old_key)] == [START + ttl]

        traveller.shift(ttl)  # both keys are past their lifetime now
        assert idempotency.purge_expired() == 2
        assert _keys(old_key) == [] and _keys(young_key) == []


def test_purge_keeps_live_keys(app: Flask, centre: Institution) -> None:
    admin = make_staff(Role.CENTRE_ADMIN, centre)
    ttl = timedelta(hours=int(app.config["IDEMPOTENCY_TTL_HOURS"]))
    keys = [_new_key() for _ in range(3)]
    with time_machine.travel(START, tick=False) as traveller:
        for n, key in enumerate(keys[:2]):
            assert _post(app, token_for(admin), _body(f"purge.{n}"), key).status_code == 201
        traveller.shift(timedelta(hours=1))
        assert _post(app, token_for(admin), _body("purge.2"), keys[2]).status_code == 201
        traveller.shift(ttl - timedelta(hours=1))
        assert idempotency.purge_expired() == 2
        assert [len(_keys(k)) for k in keys] == [0, 0, 1]
        assert idempotency.purge_expired() == 0


def test_ttl_is_at_least_24_hours() -> None:
    assert load_settings({"IDEMPOTENCY_TTL_HOURS": 1})["IDEMPOTENCY_TTL_HOURS"] == 24
    assert load_settings({"IDEMPOTENCY_TTL_HOURS": 72})["IDEMPOTENCY_TTL_HOURS"] == 72


# --- concurrency (PostgreSQL) --------------------------------------------------------------------


@pytest.fixture
def postgres_only(is_postgres: bool) -> None:
    if not is_postgres:
        pytest.skip("concurrent duplicates need PostgreSQL (set DATABASE_URL); SQLite serialises writers")


@pytest.fixture
def concurrent_admin(postgres_only: None, committing_db: None) -> Iterator[str]:
    yield token_for(make_staff(Role.CENTRE_ADMIN, make_centre()))


@pytest.mark.postgres
def test_concurrent_duplicates_do_the_work_once(app: Flask, concurrent_admin: str) -> None:
    threads_count = 8
    key = _new_key()
    barrier = threading.Barrier(threads_count)
    results: list[Any] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker() -> None:
        try:
            barrier.wait(timeout=30)
            response = _post(app, concurrent_admin, _body("racing.doctor"), key)
            with lock:
                results.append(response)
        except BaseException as exc:  # reported below
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert len(results) == threads_count

    created = [r for r in results if r.status_code == 201 and "Idempotent-Replayed" not in r.headers]
    replayed = [r for r in results if r.status_code == 201 and r.headers.get("Idempotent-Replayed") == "true"]
    in_progress = [r for r in results if r.status_code == 409 and r.json["code"] == "idempotency_in_progress"]
    assert len(created) == 1, [(r.status_code, r.json) for r in results]
    assert len(created) + len(replayed) + len(in_progress) == threads_count, [r.json for r in results]
    for response in replayed:
        assert response.json == created[0].json
    assert _staff_count("racing.doctor") == 1
    assert len(_keys(key)) == 1
