"""Helpers shared by the doctor and team tests.

`Http` sends each request in its own application context, as production does (the shared
`tests.factories.ApiClient` reuses the test's context, so `g.principal` of one request leaks into
the next and scopes it to the wrong centre).
"""

from __future__ import annotations

import io
import itertools
import uuid
from datetime import date
from typing import Any

from flask import Flask
from PIL import Image
from stdnum.cn import ric
from werkzeug.test import TestResponse

from app.accounts.models import StaffUser
from app.core.db import db
from tests.factories import token_for

_counter = itertools.count(1)


def id_number(birth: date = date(1985, 6, 15), *, male: bool = True, seq: int | None = None) -> str:
    """A valid 身份证号 (Luohu 440303) for the given birth date and sex."""
    n = next(_counter) if seq is None else seq
    order = (n % 50) * 2 + (1 if male else 2)  # odd: male, even: female
    body = f"440303{birth:%Y%m%d}{order:03d}"
    return body + ric.calc_check_digit(body + "0")  # the function expects a placeholder check digit


def licence(n: int | None = None) -> str:
    return f"2204403{(next(_counter) if n is None else n):08d}"


def registration(**overrides: Any) -> dict[str, Any]:
    """A valid registration body for a physician (主治医师)."""
    body: dict[str, Any] = {
        "name": "张三",
        "sex": "male",
        "birth_date": "1985-06-15",
        "phone": "13800138000",
        "id_number": id_number(date(1985, 6, 15), male=True),
        "title": "主治医师",
        "practice_licence_no": licence(),
        "practice_scopes": ["全科医学专业"],
        "qualifications": [{"type": "医师资格证书", "number": "199844110440301", "issued_on": "2010-07-01"}],
        "specialties": ["高血压", "糖尿病管理"],
        "introduction": "从事社区全科工作十年。",
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not ...}


def idem() -> dict[str, str]:
    return {"Idempotency-Key": f"test-{uuid.uuid4()}"}


def image_bytes(fmt: str = "PNG", size: tuple[int, int] = (64, 80), *, exif: bool = False) -> bytes:
    image = Image.new("RGB", size, (200, 120, 90))
    out = io.BytesIO()
    if exif:
        data = Image.Exif()
        data[0x010F] = "SecretCamera"  # Make
        image.save(out, format=fmt, exif=data)
    else:
        image.save(out, format=fmt)
    return out.getvalue()


class Http:
    """A staff API client: bearer token, one application context per request."""

    def __init__(self, app: Flask, token: str | None = None) -> None:
        self.app = app
        self.token = token
        self.client = app.test_client()

    def request(
        self, method: str, path: str, *, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> TestResponse:
        merged = dict(headers or {})
        if self.token:
            merged.setdefault("Authorization", f"Bearer {self.token}")
        with self.app.app_context():
            response = self.client.open(path, method=method, headers=merged, **kwargs)
        db.session.expire_all()  # the test's own session must not serve rows the request changed
        return response

    def get(self, path: str, **kwargs: Any) -> TestResponse:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> TestResponse:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> TestResponse:
        return self.request("PUT", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> TestResponse:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> TestResponse:
        return self.request("DELETE", path, **kwargs)


def http_as(app: Flask, user: StaffUser | None) -> Http:
    return Http(app, token_for(user) if user is not None else None)


def multipart(
    field: str,
    filename: str,
    content: bytes,
    content_type: str = "application/octet-stream",
) -> dict[str, Any]:
    """Keyword arguments for a client call sending one file. Built by hand: werkzeug's test client
    spools bodies over 500 KB to a temporary file it never closes (a ResourceWarning)."""
    boundary = f"----luohu{uuid.uuid4().hex}"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode()
    body = head + content + f"\r\n--{boundary}--\r\n".encode()
    return {"data": body, "content_type": f"multipart/form-data; boundary={boundary}"}
