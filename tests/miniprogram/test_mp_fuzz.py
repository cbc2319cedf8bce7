"""Schemathesis over the mini-program account operations with a *resident* token.

`tests/test_openapi_fuzz.py` runs every operation for the staff roles and anonymous callers; the
resident role (an `rt_` token, bound to a resident, with a family member) is exercised here, on
this feature's operations: no 5xx, documented statuses and shapes, masked personal data.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import schemathesis
from flask import Flask
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok
from schemathesis.pytest.lazy import get_all_tests
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.institutions.models import Institution
from app.residents.models import Resident
from tests.factories_residents import make_resident
from tests.fuzz_support import FreshContextApp, error_shape, no_unmasked_pii
from tests.miniprogram.conftest import Mp

OPERATIONS = [
    "POST /mp/v1/auth/login",
    "GET /mp/v1/auth/me",
    "POST /mp/v1/identity/bind",
    "POST /mp/v1/identity/confirm",
    "GET /mp/v1/identity",
    "POST /mp/v1/family",
    "POST /mp/v1/family/confirm",
    "GET /mp/v1/family",
    "GET /mp/v1/family/{binding_id}",
    "DELETE /mp/v1/family/{binding_id}",
    "DELETE /mp/v1/identity",
    "POST /mp/v1/auth/logout",
]
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    no_unmasked_pii,
    error_shape,
]


def test_resident_operations_fuzz(app: Flask, mp: Mp, resident: Resident, home_centre: Institution) -> None:
    client = mp.login("oFuzz")
    mp.bind_self(client, resident)
    member = make_resident(home_centre, phone="13900009999")
    client.post(
        "/mp/v1/family", json={"name": member.name, "id_number": member.id_number, "relationship": "child"}
    )
    binding = client.post("/mp/v1/family/confirm", json={"otp": mp.code_sent_to("13900009999")}).json
    token = {"value": client.token}
    config = schemathesis.Config.from_dict(
        {
            "suppress-health-check": ["all"],
            "dictionaries": {
                "bindings": {"values": [binding["id"]]},
                "id_numbers": {"values": [resident.id_number, member.id_number]},
            },
            "parameters": {
                "path.binding_id": {"dictionary": "bindings", "probability": 0.8},
                "body.id_number": {"dictionary": "id_numbers", "probability": 0.5},
            },
            "generation": {
                "max-examples": 30,
                "deterministic": True,
                "database": "none",
                "with-security-parameters": False,
            },
            "phases": {"examples": {"enabled": False}, "coverage": {"enabled": False}},
        }
    )
    schema = schemathesis.openapi.from_wsgi("/openapi.json", FreshContextApp(app), config=config)
    schema = schema.include(name=OPERATIONS)

    def call(case: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token['value']}"}
        response = case.call_and_validate(checks=CHECKS)
        statuses[case.operation.label][response.status_code] += 1
        if case.operation.label == "POST /mp/v1/auth/logout" and response.status_code < 300:
            token["value"] = mp.login("oFuzz").token

    statuses: defaultdict[str, Counter[int]] = defaultdict(Counter)
    failures: list[str] = []
    seen: set[str] = set()
    for result in get_all_tests(schema=schema, test_func=call, settings=None, given_kwargs={}):
        if not isinstance(result, Ok):
            failures.append(f"schema error: {result.err()}")
            continue
        operation, hypothesis_test = result.ok()
        seen.add(operation.label)
        try:
            hypothesis_test()
        except FailureGroup as exc:
            failures.append(f"{operation.label}:\n{exc}")
    assert seen == set(OPERATIONS)
    for label, counts in sorted(statuses.items()):
        print(f"{label}: {dict(sorted(counts.items()))}")  # noqa: T201 - the run's summary, with -s
    # The token and the seeded ids worked: these were answered with success at least once.
    for label in ("GET /mp/v1/auth/me", "GET /mp/v1/family", "GET /mp/v1/family/{binding_id}"):
        assert any(200 <= status < 300 for status in statuses[label]), (label, statuses[label])
    assert not failures, "\n\n".join(failures)
