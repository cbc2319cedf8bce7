"""Framework smoke test: a record, a self-care assessment over HTTP, versions, print."""

from __future__ import annotations

from flask import Flask

from app.core.auth import Role
from app.core.db import commit
from app.health_records.services import records
from tests.factories import as_principal, make_centre, make_staff, token_for
from tests.factories_residents import make_resident


def test_selfcare_roundtrip(app: Flask) -> None:
    centre = make_centre()
    doctor = make_staff(Role.DOCTOR, centre)
    resident = make_resident(centre, age=76)
    with as_principal(doctor):
        record = records.open_record(resident.id)
        commit()
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token_for(doctor)}", "Idempotency-Key": "smoke-selfcare-1"}
    body = {
        "form_type": "elderly_selfcare",
        "data": {
            "assessed_at": "2026-11-01",
            "meal_level": "1",
            "grooming_level": "2",
            "dressing_level": "3",
            "toileting_level": "2",
            "activity_level": "2",
        },
    }
    r = client.post(f"/api/v1/health-records/{record.id}/forms", json=body, headers=headers)
    assert r.status_code == 201, r.get_json()
    got = r.get_json()
    assert got["derived"]["total_score"] == 0 + 1 + 3 + 1 + 1
    assert got["result_code"] == "2" and got["result_label"] == "轻度依赖"
    bad = dict(body, data=dict(body["data"], meal_level="2"))
    r = client.post(
        f"/api/v1/health-records/{record.id}/forms",
        json=bad,
        headers={**headers, "Idempotency-Key": "smoke-selfcare-2"},
    )
    assert r.status_code == 422
    assert r.get_json()["errors"] == {"meal_level": "进餐：该项没有“轻度依赖”一档"}
    r2 = client.put(
        f"/api/v1/health-forms/{got['id']}",
        json={"base_version": 1, "data": dict(body["data"], activity_level="4"), "reason": "复评"},
        headers=headers,
    )
    assert r2.status_code == 200, r2.get_json()
    assert r2.get_json()["version"] == 2 and r2.get_json()["derived"]["total_score"] == 15
    stale = client.put(
        f"/api/v1/health-forms/{got['id']}", json={"base_version": 1, "data": body["data"]}, headers=headers
    )
    assert stale.status_code == 409
    versions = client.get(f"/api/v1/health-forms/{got['id']}/versions", headers=headers).get_json()
    assert [v["changed_fields"] for v in versions][1] == ["activity_level"]
    pdf = client.get(f"/api/v1/health-forms/{got['id']}/print.pdf", headers=headers)
    assert pdf.status_code == 200 and pdf.data[:4] == b"%PDF"
