"""Denials are audited exactly once, even though the denied request's transaction rolls back."""

from __future__ import annotations

import uuid

from flask import g
from sqlalchemy import text

from app.core import audit
from app.core.auth import Role
from app.core.db import commit, db
from app.core.errors import NotFound
from tests.audit.support import audit_rows
from tests.factories import make_staff, principal_of


def _deny_in_a_request(app, user, target: uuid.UUID, *, touch_database_first: bool) -> int:
    with app.app_context(), app.test_request_context(f"/api/v1/things/{target}"):
        g.principal = principal_of(user)
        commit()  # as the staff authenticator does: no transaction is open after it
        if touch_database_first:
            db.session.execute(text("SELECT 1"))
        audit.record(
            "read", "resident", target, result=audit.DENIED, purpose="cross_centre_access", durable=True
        )
        response = app.handle_user_exception(NotFound())
        return response.status_code


def test_a_denial_after_a_query_is_written_once(app, centre):
    user = make_staff(Role.DOCTOR, centre)
    target = uuid.uuid4()
    assert _deny_in_a_request(app, user, target, touch_database_first=True) == 404
    assert len(audit_rows(object_id=target)) == 1


def test_a_denial_recorded_before_any_query_is_written_once(app, centre):
    # A service that refuses before reading anything: the request's transaction is not open yet,
    # so the error handler's rollback fires no rollback event, the queued event is not dropped, and
    # `audit.write_durable_events` queues the durable copy a second time (app/core/audit.py).
    user = make_staff(Role.DOCTOR, centre)
    target = uuid.uuid4()
    assert _deny_in_a_request(app, user, target, touch_database_first=False) == 404
    assert len(audit_rows(object_id=target)) == 1
