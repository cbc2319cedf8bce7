"""Fixtures of the residents tests: staff of two centres and of the district, residents, and a
check that no response body shows an ID number or a phone in clear (DATA-02)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import date
from typing import Any

import pytest
from flask import Flask
from werkzeug.test import TestResponse

from app.accounts.models import StaffUser
from app.core.auth import Role
from app.institutions.models import Institution
from app.residents.models import Resident
from tests.audit.support import Http, ResponseRecorder, body_text
from tests.factories import make_staff, token_for
from tests.factories_residents import make_resident

# Standing alone, not a fragment of a UUID, a hash or a token.
ID_NUMBER_RE = re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])")
PHONE_RE = re.compile(r"(?<![0-9A-Za-z])1[3-9]\d{9}(?![0-9A-Za-z])")
UNMASK_PATH = re.compile(r"/api/v1/residents/[^/]+/unmask$")


def assert_masked(text: str, *canaries: str) -> None:
    assert not ID_NUMBER_RE.search(text), f"an ID number in clear: {text[:400]}"
    assert not PHONE_RE.search(text), f"a phone number in clear: {text[:400]}"
    for canary in canaries:
        assert canary not in text, f"{canary!r} in clear: {text[:400]}"


@pytest.fixture(autouse=True)
def _every_response_masked(app: Flask) -> Iterator[ResponseRecorder]:
    """DATA-02 for every response of every residents test, apart from the unmask endpoint."""
    with ResponseRecorder(app) as recorder:
        yield recorder
    for method, path, response in recorder.responses:
        if method == "POST" and UNMASK_PATH.search(path):
            continue
        assert_masked(body_text(response))


@pytest.fixture
def nurse(centre: Institution) -> StaffUser:
    return make_staff(Role.NURSE, centre)


@pytest.fixture
def doctor(centre: Institution) -> StaffUser:
    return make_staff(Role.DOCTOR, centre)


@pytest.fixture
def admin(centre: Institution) -> StaffUser:
    return make_staff(Role.CENTRE_ADMIN, centre)


@pytest.fixture
def cashier(centre: Institution) -> StaffUser:
    return make_staff(Role.CASHIER, centre)


@pytest.fixture
def auditor(centre: Institution) -> StaffUser:
    return make_staff(Role.AUDITOR, centre)


@pytest.fixture
def district_admin() -> StaffUser:
    return make_staff(Role.DISTRICT_ADMIN, None)


@pytest.fixture
def other_doctor(other_centre: Institution) -> StaffUser:
    return make_staff(Role.DOCTOR, other_centre)


@pytest.fixture
def other_admin(other_centre: Institution) -> StaffUser:
    return make_staff(Role.CENTRE_ADMIN, other_centre)


@pytest.fixture
def resident(centre: Institution) -> Resident:
    return make_resident(centre, name="张三丰", birth_date=date(1960, 5, 17), sex="male", phone="13812341234")


class ResidentsHttp(Http):
    """The shared one-context-per-request client, with PUT and DELETE."""

    def put(self, path: str, **kwargs: Any) -> TestResponse:
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> TestResponse:
        return self.request("DELETE", path, **kwargs)


@pytest.fixture
def as_http(app: Flask) -> Callable[[StaffUser | None], ResidentsHttp]:
    def build(user: StaffUser | None) -> ResidentsHttp:
        return ResidentsHttp(app, token_for(user) if user is not None else None)

    return build
