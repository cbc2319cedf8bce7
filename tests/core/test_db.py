"""Session plumbing (app/core/db.py): commit, on_commit hooks, rollback, the unit-of-work helper."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import select
from sqlalchemy.exc import StatementError

from app.core import audit
from app.core.audit import AuditEvent
from app.core.db import commit, db, on_commit, rollback, transaction
from app.institutions.models import Institution
from tests.factories import make_centre


def _audit_objects(object_id: str) -> list[str]:
    rows = db.session.execute(select(AuditEvent.result).where(AuditEvent.object_id == object_id)).scalars()
    return list(rows)


def test_on_commit_hook_runs_after_the_commit_only() -> None:
    ran: list[str] = []
    centre = make_centre()
    centre.phone = "0755-00000000"
    on_commit(lambda: ran.append("hook"))
    db.session.flush()
    assert ran == []
    commit()
    assert ran == ["hook"]
    commit()
    assert ran == ["hook"]  # once


def test_on_commit_hook_is_dropped_by_rollback() -> None:
    ran: list[str] = []
    make_centre()
    db.session.execute(select(Institution.id)).all()  # a transaction is open
    on_commit(lambda: ran.append("hook"))
    rollback()
    commit()
    assert ran == []


def test_hook_registered_before_any_query_is_dropped_by_rollback() -> None:
    """A rollback of a session that never began a transaction fires no rollback event; the hook
    must still not run at the next, unrelated commit."""
    ran: list[str] = []
    commit()  # as an authenticator does: no transaction is open afterwards
    on_commit(lambda: ran.append("stale"))
    rollback()
    make_centre()  # commits
    assert ran == []


def test_audit_event_queued_before_any_query_is_dropped_by_rollback() -> None:
    commit()
    audit.record("read", "test_object", "queued-then-rolled-back")
    rollback()
    make_centre()
    assert _audit_objects("queued-then-rolled-back") == []


def test_savepoint_rollback_keeps_the_outer_hooks() -> None:
    ran: list[str] = []
    db.session.execute(select(Institution.id)).all()
    on_commit(lambda: ran.append("outer"))
    nested = db.session.begin_nested()
    nested.rollback()
    commit()
    assert ran == ["outer"]


def test_transaction_helper_commits_or_rolls_back() -> None:
    ran: list[str] = []
    with transaction() as session:
        centre = make_centre()
        centre.opening_hours = "全天"
        on_commit(lambda: ran.append("committed"))
        assert session is db.session()
    assert ran == ["committed"]

    with pytest.raises(RuntimeError), transaction():
        centre.opening_hours = "不营业"
        on_commit(lambda: ran.append("rolled back"))
        raise RuntimeError("boom")
    assert ran == ["committed"]
    db.session.expire_all()
    assert db.session.get_one(Institution, centre.id).opening_hours == "全天"


def test_datetimes_are_utc_aware_and_naive_ones_are_refused() -> None:
    centre = make_centre()
    db.session.expire_all()
    loaded = db.session.get_one(Institution, centre.id)
    assert loaded.created_at.tzinfo is not None
    assert loaded.created_at.utcoffset() == timedelta(0)

    china = timezone(timedelta(hours=8))
    loaded.updated_at = datetime(2026, 3, 2, 9, 0, tzinfo=china)
    commit()
    db.session.expire_all()
    assert db.session.get_one(Institution, centre.id).updated_at == datetime(2026, 3, 2, 1, 0, tzinfo=UTC)

    loaded = db.session.get_one(Institution, centre.id)
    loaded.updated_at = datetime(2026, 3, 2, 9, 0)
    with pytest.raises(StatementError, match="naive datetime"):
        db.session.flush()
    db.session.rollback()
