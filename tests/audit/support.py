"""Helpers shared by the accounts, institutions, audit and isolation tests.

`Http` sends each request in its own application context, as production does. The shared
`tests.factories.ApiClient` sends requests inside the test's application context, so `g.principal`
and the database session of one request leak into the next (a centre-A request followed by a
login of a centre-B user is then wrongly scoped to centre A). With one context per request every
request starts with an empty `g` and its own session, joined to the test's rolled-back transaction.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable
from typing import Any

from flask import Flask
from sqlalchemy import select
from werkzeug.test import TestResponse

from app.accounts.models import StaffUser
from app.core.audit import AuditEvent
from app.core.db import db
from tests.factories import token_for

# A mainland mobile number standing alone (not a fragment of a UUID, a hash or a token).
PHONE_RE = re.compile(r"(?<![0-9A-Za-z])1[3-9]\d{9}(?![0-9A-Za-z])")
CJK_RE = re.compile(r"[\u4e00-\u9fff]")


class Http:
    """A staff API client: bearer token, JSON, one application context per request."""

    def __init__(self, app: Flask, token: str | None = None) -> None:
        self.app = app
        self.token = token
        self.client = app.test_client()
        self.responses: list[tuple[str, str, TestResponse]] = []

    def request(
        self, method: str, path: str, *, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> TestResponse:
        merged = dict(headers or {})
        if self.token:
            merged.setdefault("Authorization", f"Bearer {self.token}")
        with self.app.app_context():
            response = self.client.open(path, method=method, headers=merged, **kwargs)
        self.responses.append((method, path, response))
        # The test's own session must not serve stale objects after the request changed rows.
        db.session.expire_all()
        return response

    def get(self, path: str, **kwargs: Any) -> TestResponse:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> TestResponse:
        return self.request("POST", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> TestResponse:
        return self.request("PATCH", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> TestResponse:
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> TestResponse:
        return self.request("DELETE", path, **kwargs)


def http_as(app: Flask, user: StaffUser | None) -> Http:
    return Http(app, token_for(user) if user is not None else None)


def idem() -> dict[str, str]:
    """A fresh Idempotency-Key header."""
    return {"Idempotency-Key": f"test-{uuid.uuid4().hex}"}


def audit_rows(**where: Any) -> list[AuditEvent]:
    """Audit events matching column == value (ids compared as text, as they are stored)."""
    db.session.expire_all()
    statement = select(AuditEvent).order_by(AuditEvent.seq)
    for column, value in where.items():
        statement = statement.where(getattr(AuditEvent, column) == (None if value is None else str(value)))
    return list(db.session.execute(statement).scalars())


def body_text(response: TestResponse) -> str:
    """The response body as text, with JSON unescaped (a phone cannot hide behind \\u escapes)."""
    raw = response.get_data().decode("utf-8", "replace")
    try:
        return json.dumps(json.loads(raw), ensure_ascii=False)
    except ValueError:
        return raw


def assert_no_clear_phone(
    responses: Iterable[tuple[str, str, TestResponse]],
    phones: Iterable[str] = (),
    allowed_paths: tuple[str, ...] = ("/unmask",),
) -> int:
    """No response outside the unmask endpoint carries a phone number in clear.

    Returns how many responses were checked."""
    canaries = [p for p in phones if p]
    checked = 0
    for method, path, response in responses:
        if path.endswith(allowed_paths):
            continue
        text = body_text(response)
        assert not PHONE_RE.search(text), f"{method} {path} exposes a phone number: {text[:300]}"
        for phone in canaries:
            assert phone not in text, f"{method} {path} exposes {phone}"
        checked += 1
    return checked


class ResponseRecorder:
    """Every response the application sends while installed (whichever client sent the request)."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.responses: list[tuple[str, str, TestResponse]] = []

    def _record(self, sender: Flask, response: Any, **_extra: Any) -> None:
        from flask import request

        self.responses.append((request.method, request.path, response))

    def __enter__(self) -> ResponseRecorder:
        from flask import request_finished

        request_finished.connect(self._record, self.app)
        return self

    def __exit__(self, *exc: object) -> None:
        from flask import request_finished

        request_finished.disconnect(self._record, self.app)
