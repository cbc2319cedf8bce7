"""The append-only, hash-chained audit trail (app/core/audit.py; DATA-04, 等保 L3-CES1-12…15).

Tampering tests act like an attacker with database-admin rights: they first switch the append-only
trigger off (PostgreSQL: `ALTER TABLE ... DISABLE TRIGGER`; SQLite: `DROP TRIGGER`), then edit or
delete rows directly. DDL is transactional on both databases, so the per-test rollback puts the
trigger back; `test_trigger_changes_roll_back_with_the_transaction` and
`test_trigger_is_back_after_the_tampering_tests` prove it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import Connection, select, text
from sqlalchemy.exc import DBAPIError

from app.core import audit
from app.core.audit import AuditEvent, verify_chain
from app.core.auth import Role
from app.core.db import commit, db, rollback
from tests.factories import as_principal, make_centre, make_staff, token_for


def _key(app: Flask) -> bytes:
    return str(app.config["AUDIT_HMAC_KEY"]).encode()


def _events() -> list[AuditEvent]:
    return list(
        db.session.execute(
            select(AuditEvent).order_by(AuditEvent.seq).execution_options(populate_existing=True)
        ).scalars()
    )


def _max_seq() -> int:
    return db.session.execute(select(AuditEvent.seq).order_by(AuditEvent.seq.desc()).limit(1)).scalar() or 0


def _disable_append_only(kind: str = "update") -> None:
    """What an attacker with DB-admin rights does first (inside the test's transaction)."""
    if db.dialect == "postgresql":
        db.session.execute(text("ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only"))
    else:
        db.session.execute(text(f"DROP TRIGGER audit_events_no_{kind}"))


def _triggers(connection: Connection) -> dict[str, bool]:
    """Append-only trigger name -> enabled, as the catalogue says."""
    if connection.dialect.name == "postgresql":
        rows = connection.execute(
            text(
                "SELECT tgname, tgenabled FROM pg_trigger"
                " WHERE tgrelid = 'audit_events'::regclass AND NOT tgisinternal"
            )
        ).all()
        return {name: state != "D" for name, state in rows}
    rows = connection.execute(
        text("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_events'")
    ).all()
    return {name: True for (name,) in rows}


def _expected_triggers(dialect: str) -> dict[str, bool]:
    if dialect == "postgresql":
        return {"audit_events_append_only": True}
    return {"audit_events_no_update": True, "audit_events_no_delete": True}


@pytest.fixture
def cli(app: Flask) -> Any:
    return app.test_cli_runner()


@pytest.fixture
def three_events() -> Iterator[list[AuditEvent]]:
    start = _max_seq()
    for n in range(3):
        audit.record("read", "test_object", f"obj-{n}", purpose="testing", detail={"n": n, "名": "值"})
        commit()
    rows = [row for row in _events() if row.seq > start]
    assert [row.seq for row in rows] == [start + 1, start + 2, start + 3]
    yield rows


# --- writing ----------------------------------------------------------------------------------


def test_events_commit_with_a_gapless_seq_and_a_valid_chain(app: Flask) -> None:
    start = _max_seq()
    audit.record("read", "test_object", "a")
    audit.record("update", "test_object", "b", result=audit.DENIED, purpose="why")
    assert _max_seq() == start  # queued on the transaction, not written yet
    commit()
    audit.record("read", "test_object", "c")
    commit()
    commit()  # nothing pending: no row
    rows = [row for row in _events() if row.seq > start]
    assert [row.seq for row in rows] == [start + 1, start + 2, start + 3]
    assert [row.object_id for row in rows] == ["a", "b", "c"]
    assert rows[1].result == audit.DENIED and rows[1].purpose == "why"
    previous = rows[0].prev_hash
    if start == 0:
        assert previous == audit.GENESIS
    for row in rows:
        assert row.prev_hash == previous
        assert row.row_hash == audit.chain_hash(_key(app), row.prev_hash, row, row.seq)
        previous = row.row_hash
    assert list(verify_chain(db.session(), _key(app))) == []


def test_event_fields_outside_and_inside_a_principal(app: Flask) -> None:
    centre = make_centre()
    user = make_staff(Role.DOCTOR, centre)
    start = _max_seq()
    audit.record("export", "report", "r1")
    with as_principal(user):
        resident = uuid.uuid4()
        audit.record("read", "resident", resident, resident_id=resident, purpose="follow_up")
    commit()
    system, staff = [row for row in _events() if row.seq > start]
    assert (system.actor_kind, system.actor_id, system.role, system.institution_id) == (
        "system",
        None,
        None,
        None,
    )
    assert staff.actor_kind == "staff"
    assert staff.actor_id == str(user.id)
    assert staff.role == Role.DOCTOR
    assert staff.institution_id == str(centre.id)  # defaults to the caller's centre
    assert staff.subject_resident_id == str(resident)
    assert staff.object_id == str(resident)
    assert staff.occurred_at.tzinfo is not None


def test_rollback_drops_pending_events() -> None:
    start = _max_seq()
    audit.record("read", "test_object", "dropped")
    rollback()
    commit()
    assert _max_seq() == start
    audit.record("read", "test_object", "kept")
    commit()
    assert [row.object_id for row in _events() if row.seq > start] == ["kept"]


def test_durable_event_survives_rollback() -> None:
    start = _max_seq()
    audit.record("read", "test_object", "plain")
    audit.record("read", "test_object", "denied", result=audit.DENIED, durable=True)
    rollback()
    assert audit.write_durable_events() is True
    commit()
    assert [(row.object_id, row.result) for row in _events() if row.seq > start] == [("denied", audit.DENIED)]
    assert audit.write_durable_events() is False  # written once, then forgotten


def test_durable_event_written_once_when_the_transaction_commits() -> None:
    start = _max_seq()
    audit.record("read", "test_object", "d", result=audit.DENIED, durable=True)
    commit()
    assert audit.write_durable_events() is False
    commit()
    assert [row.object_id for row in _events() if row.seq > start] == ["d"]


def _get_as(app: Flask, token: str, path: str) -> Any:
    """One request in its own application context (own session and `g`), as in production."""
    with app.app_context():
        return app.test_client().get(path, headers={"Authorization": f"Bearer {token}"})


def test_cross_centre_read_is_404_and_leaves_one_denied_row(app: Flask) -> None:
    centre_a, centre_b = make_centre(), make_centre()
    target = make_staff(Role.DOCTOR, centre_a)
    intruder = make_staff(Role.CENTRE_ADMIN, centre_b)
    token = token_for(intruder)
    start = _max_seq()

    response = _get_as(app, token, f"/api/v1/staff/{target.id}")
    assert response.status_code == 404
    assert response.json["code"] == "not_found"
    missing = _get_as(app, token, f"/api/v1/staff/{uuid.uuid4()}")
    assert missing.status_code == 404
    assert missing.json == response.json  # existence does not leak

    denied = [row for row in _events() if row.seq > start and row.result == audit.DENIED]
    assert len(denied) == 1
    row = denied[0]
    assert row.actor_id == str(intruder.id)
    assert row.role == Role.CENTRE_ADMIN
    assert row.object_type == "staff_user"
    assert row.object_id == str(target.id)
    assert row.purpose == "cross_centre_access"
    assert row.institution_id == str(centre_b.id)  # the caller's centre (not the object's)
    assert row.request_id == response.headers["X-Request-ID"]
    assert row.client_address == "127.0.0.1"
    # The business transaction of the request was rolled back, nothing else was written for it.
    assert [r.request_id for r in _events() if r.seq > start].count(row.request_id) == 1
    assert list(verify_chain(db.session(), _key(app))) == []

    same_centre = _get_as(app, token_for(make_staff(Role.NURSE, centre_a)), f"/api/v1/staff/{target.id}")
    assert same_centre.status_code == 200
    assert [r for r in _events() if r.seq > start and r.result == audit.DENIED] == denied


# --- the database refuses changes ---------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_events SET purpose = 'forged' WHERE seq = :seq",
        "DELETE FROM audit_events WHERE seq = :seq",
    ],
)
def test_update_and_delete_are_refused_by_the_database(
    three_events: list[AuditEvent], statement: str
) -> None:
    seq = three_events[1].seq
    with pytest.raises(DBAPIError, match="append-only"), db.session.begin_nested():
        db.session.execute(text(statement), {"seq": seq})
    rows = {row.seq: row for row in _events()}
    assert rows[seq].purpose == "testing"


# --- tampering is detected ----------------------------------------------------------------------


def test_audit_verify_passes_on_an_intact_chain(cli: Any, three_events: list[AuditEvent]) -> None:
    result = cli.invoke(args=["audit-verify"])
    assert result.exit_code == 0, result.output
    assert f"audit chain intact: {three_events[-1].seq} events" in result.output


def test_edited_row_is_detected(app: Flask, cli: Any, three_events: list[AuditEvent]) -> None:
    edited = three_events[1]
    _disable_append_only("update")
    db.session.execute(
        text("UPDATE audit_events SET purpose = 'nothing to see' WHERE seq = :seq"), {"seq": edited.seq}
    )
    # `three_events` still holds the rows as they were written: the verifier must read the database.
    problems = list(verify_chain(db.session(), _key(app)))
    assert [(p.seq, p.id) for p in problems] == [(edited.seq, edited.id)]
    assert "edited" in problems[0].problem

    result = cli.invoke(args=["audit-verify"])
    assert result.exit_code == 1
    assert f"audit chain broken at seq {edited.seq} " in result.stderr
    assert f"seq {three_events[0].seq} " not in result.stderr
    assert f"seq {three_events[2].seq} " not in result.stderr


def test_edited_row_with_recomputed_hash_but_wrong_key_is_detected(
    app: Flask, cli: Any, three_events: list[AuditEvent]
) -> None:
    """Recomputing the row's hash does not help without the HMAC key: the next row no longer links."""
    row = three_events[1]
    _disable_append_only("update")
    forged = audit.chain_hash(b"attacker-guess", row.prev_hash, row, row.seq)
    db.session.execute(
        text("UPDATE audit_events SET row_hash = :h WHERE seq = :seq"), {"h": forged, "seq": row.seq}
    )
    problems = list(verify_chain(db.session(), _key(app)))
    assert {p.seq for p in problems} == {row.seq, three_events[2].seq}
    result = cli.invoke(args=["audit-verify"])
    assert result.exit_code == 1
    assert f"seq {row.seq} " in result.stderr and f"seq {three_events[2].seq} " in result.stderr


def test_deleted_row_is_detected(app: Flask, cli: Any, three_events: list[AuditEvent]) -> None:
    gone, after = three_events[1], three_events[2]
    _disable_append_only("delete")
    db.session.execute(text("DELETE FROM audit_events WHERE seq = :seq"), {"seq": gone.seq})
    problems = list(verify_chain(db.session(), _key(app)))
    assert (gone.seq, None) in [(p.seq, p.id) for p in problems]
    assert any(p.seq == after.seq and "prev_hash" in p.problem for p in problems)
    result = cli.invoke(args=["audit-verify"])
    assert result.exit_code == 1
    assert f"audit chain broken at seq {gone.seq} " in result.stderr
    assert "missing" in result.stderr


def test_inserted_row_is_detected(app: Flask, three_events: list[AuditEvent]) -> None:
    """A row slipped in at the end without the key does not verify."""
    last = three_events[-1]
    db.session.add(
        AuditEvent(
            seq=last.seq + 1,
            occurred_at=last.occurred_at,
            actor_kind="system",
            actor_id=None,
            role=None,
            institution_id=None,
            subject_resident_id=None,
            object_type="x",
            object_id=None,
            action="read",
            purpose=None,
            result=audit.ALLOWED,
            request_id=None,
            client_address=None,
            detail={},
            prev_hash=last.row_hash,
            row_hash="0" * 64,
        )
    )
    db.session.flush()
    problems = list(verify_chain(db.session(), _key(app)))
    assert [p.seq for p in problems] == [last.seq + 1]
    db.session.rollback()


def test_trigger_changes_roll_back_with_the_transaction(app: Flask) -> None:
    """The premise of the tampering tests: switching the trigger off inside a transaction is undone
    by its rollback, on this database. Done on a connection of its own, like the test fixture."""
    with db.engine.connect() as connection:
        expected = _expected_triggers(connection.dialect.name)
        outer = connection.begin()
        assert _triggers(connection) == expected
        if connection.dialect.name == "postgresql":
            connection.execute(text("ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only"))
        else:
            connection.execute(text("DROP TRIGGER audit_events_no_update"))
            connection.execute(text("DROP TRIGGER audit_events_no_delete"))
        assert _triggers(connection) != expected
        outer.rollback()
        assert _triggers(connection) == expected
        connection.rollback()


def test_trigger_is_back_after_the_tampering_tests(three_events: list[AuditEvent]) -> None:
    """Runs after the tampering tests of this module: their rollback restored the triggers."""
    connection = db.session.connection()
    assert _triggers(connection) == _expected_triggers(connection.dialect.name)
    with pytest.raises(DBAPIError, match="append-only"), db.session.begin_nested():
        db.session.execute(text("DELETE FROM audit_events WHERE seq = :seq"), {"seq": three_events[0].seq})
