"""Schemathesis over the whole OpenAPI document, in-process, once per role (API-06, DATA-02).

For every caller (five staff roles, a mini-program resident, anonymous) the test seeds a centre
with rows (a nurse, a resident with household and consent, a doctor, a team), gives Schemathesis
their ids as fuzz dictionaries, and sends every operation of `/openapi.json` through the WSGI app
with the caller's bearer token. Each operation's calls are rolled back afterwards, so every
operation starts from the seeded rows. Checks: no 5xx, documented status codes and content types,
bodies valid against the response schemas, invalid input rejected, plus the custom checks of
`tests/fuzz_support.py`: no unmasked ID-card or mobile number outside the unmask endpoints, the
error shape `{code, status, message, errors}` on every 4xx, bearer tokens honoured.

Bounded and deterministic (derandomized generation, no example database): `MAX_EXAMPLES` calls per
operation for each role that may call it, `GATE_EXAMPLES` for roles its role gate refuses. About
two minutes of CPU. `LUOHU_FUZZ_DEEP=1` (the nightly run) adds Schemathesis' coverage phase
(boundary values, wrong types, missing headers, unexpected methods) for the first role that may
call each operation and raises the examples to `DEEP_EXAMPLES`; it takes several times longer.

The loop over operations replaces `schemathesis.pytest.from_fixture(...).parametrize()`, which
fails on pytest 9.2 (it sets `request.node._nodeid`, gone in that version); it builds the same
per-operation Hypothesis tests with `get_all_tests`, the function behind that decorator.
"""

from __future__ import annotations

import logging
import os
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from argon2 import PasswordHasher
from flask import Flask
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.pytest.lazy import get_all_tests
from schemathesis.specs.openapi.checks import (
    allow_header_conformance,
    content_type_conformance,
    missing_required_header,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from app.accounts import services as account_services
from app.core.auth import Role
from app.integrations.wechat_mp_fake import FakeMiniProgramAuth
from tests import factories
from tests.fuzz_support import (
    ANONYMOUS,
    RESIDENT,
    FreshContextApp,
    describe_failure,
    error_shape,
    make_token_check,
    no_unmasked_pii,
    operation_access,
    rolled_back,
    run_plan,
    seed_actor,
)

log = logging.getLogger(__name__)
log.setLevel(logging.INFO)  # the per-role summary (run with -s, or shown when a role fails)
DEEP = os.environ.get("LUOHU_FUZZ_DEEP") == "1"
MAX_EXAMPLES = 25
DEEP_EXAMPLES = 100
GATE_EXAMPLES = 3
# The order matters in deep mode: the first role that may call an operation runs its coverage phase.
ROLES = [
    Role.DISTRICT_ADMIN.value,
    Role.CENTRE_ADMIN.value,
    Role.DOCTOR.value,
    Role.CASHIER.value,
    Role.AUDITOR.value,
    RESIDENT,
    ANONYMOUS,
]
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
    allow_header_conformance,
    # These two judge coverage-phase cases only (deep mode).
    missing_required_header,
    unsupported_method,
    no_unmasked_pii,
    error_shape,
]
# Operations that end the caller's session: the actor gets a new token afterwards.
ENDS_SESSION = {"POST /api/v1/auth/logout", "POST /mp/v1/auth/logout"}
# Operations each caller must have answered with a 2xx: proof that the tokens and the seeding work
# (a run where everything is 401 or 404 would pass every other check without testing anything).
MUST_REACH = {
    RESIDENT: ["GET /mp/v1/auth/me", "GET /mp/v1/doctors/{doctor_id}"],
    ANONYMOUS: ["GET /mp/v1/doctors/{doctor_id}"],
}
STAFF_MUST_REACH = [
    "GET /api/v1/auth/me",
    "GET /api/v1/staff/{staff_id}",
    "GET /api/v1/institutions/{institution_id}",
    "GET /api/v1/residents/{resident_id}",
]


@pytest.fixture(autouse=True)
def _cheap_password_hashing(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """argon2 at production cost makes each login or password call ~0.1 s; its cost is not under test."""
    cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    monkeypatch.setattr(account_services, "_hasher", cheap)
    monkeypatch.setattr(account_services, "_DUMMY_HASH", cheap.hash("dummy-password-for-timing-1A!"))
    monkeypatch.setattr(factories, "_PASSWORD_HASH", cheap.hash(factories.PASSWORD))
    yield


@pytest.fixture
def wechat(app: Flask, monkeypatch: pytest.MonkeyPatch) -> FakeMiniProgramAuth:
    """The in-process WeChat fake: the resident's sessions come from codes it issues."""
    fake = FakeMiniProgramAuth()
    monkeypatch.setitem(app.extensions, "wechat_mp", fake)
    return fake


def _documented_operations(app: Flask) -> dict[str, list[str]]:
    """OpenAPI path -> its documented methods (upper case)."""
    document = app.test_client().get("/openapi.json").get_json()
    return {
        path: [method.upper() for method in item if method != "parameters"]
        for path, item in document["paths"].items()
    }


@pytest.mark.parametrize("role", ROLES)
def test_openapi_fuzz(app: Flask, wechat: FakeMiniProgramAuth, role: str) -> None:
    started = time.process_time()
    actor = seed_actor(role, wechat)
    access = operation_access(app)
    labels = [
        f"{method} {path}" for path, methods in _documented_operations(app).items() for method in methods
    ]
    plan = run_plan(labels, access, ROLES, role, coverage=DEEP)
    examples = DEEP_EXAMPLES if DEEP else MAX_EXAMPLES
    config = schemathesis.Config.from_dict(actor.schemathesis_config(plan, examples, GATE_EXAMPLES))
    schema = schemathesis.openapi.from_wsgi("/openapi.json", FreshContextApp(app), config=config)
    checks = [*CHECKS, make_token_check(actor, access)]

    def call(case: Any) -> None:
        actor.prepare(case)
        response = case.call()
        actor.statuses[case.operation.label][response.status_code] += 1
        if f"{case.method.upper()} {case.path}" in ENDS_SESSION and response.status_code < 300:
            actor.renew_token()
        case.validate_response(response, checks=checks)

    failures: list[str] = []
    for result in get_all_tests(schema=schema, test_func=call, settings=None, given_kwargs={}):
        if not isinstance(result, Ok):
            failures.append(f"schema error: {result.err()}")
            continue
        operation, hypothesis_test = result.ok()
        try:
            with rolled_back(app):
                hypothesis_test()
        except (Exception, BaseExceptionGroup) as exc:  # report every operation, not just the first
            failures.append(f"{operation.label}:\n{describe_failure(exc)}")
        finally:
            actor.restore_token()
    must_reach = MUST_REACH.get(role, STAFF_MUST_REACH)
    failures += [f"{label}: never answered 2xx to {role}" for label in must_reach if not actor.reached(label)]
    log.info("%s: %.0f s CPU\n%s", role, time.process_time() - started, actor.summary(plan))
    assert not failures, (
        f"{len(failures)} operation(s) failed for {role}:\n\n"
        + "\n\n".join(failures)
        + "\n\n"
        + actor.summary(plan)
    )


def test_unsupported_methods_get_405_with_allow(app: Flask) -> None:
    """Every documented path answers an undocumented method with 405, an `Allow` header listing the
    documented methods, and the house error shape (flask-smorest drops `Allow`; app.core.api adds it)."""
    problems = []
    for path, methods in _documented_operations(app).items():
        url = re.sub(r"\{[^}]+\}", lambda _: str(uuid.uuid4()), path)
        for method in sorted({"GET", "POST", "PUT", "PATCH", "DELETE"} - set(methods)):
            response = app.test_client().open(url, method=method)
            allowed = {m.strip() for m in response.headers.get("Allow", "").split(",") if m.strip()}
            body = response.get_json(silent=True) or {}
            shape_ok = (
                set(body) == {"code", "status", "message", "errors"} and body["code"] == "method_not_allowed"
            )
            if response.status_code != 405 or allowed - {"HEAD", "OPTIONS"} != set(methods) or not shape_ok:
                problems.append(f"{method} {path}: {response.status_code} Allow={sorted(allowed)} {body}")
    assert not problems, "\n".join(problems)
