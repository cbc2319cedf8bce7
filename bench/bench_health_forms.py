"""Benchmark of the public-health form paths (not part of the test suite).

    .venv/bin/python bench/bench_health_forms.py            # SQLite file in a temp dir + fakeredis
    DATABASE_URL=postgresql+psycopg://… .venv/bin/python bench/bench_health_forms.py

One process, Flask test client. Reports medians and 95th/99th percentiles in milliseconds, measured
in one run (read ratios, not absolutes, on a shared machine):
- the spec engine alone checking a complete 健康体检表 (≈ 200 fields; no database);
- a doctor saving a 健康体检表 over HTTP (validate, derive BMI and the self-care level from the
  assessment, encrypt, version, audit);
- reading it back (decrypt, labels, audit) and saving version 2 of it;
- printing it (the national layout, 5 pages of A4 with the Chinese font embedded);
- the record card PDF.
Also the stored size of one exam version (encrypted payload), for capacity planning.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, select

from app import create_app
from app.core.db import Base, commit, db


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": round(statistics.median(ordered), 3),
        "p95_ms": round(ordered[max(int(len(ordered) * 0.95) - 1, 0)], 3),
        "p99_ms": round(ordered[max(int(len(ordered) * 0.99) - 1, 0)], 3),
        "n": len(ordered),
    }


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def main() -> None:
    rounds = int(os.environ.get("BENCH_ROUNDS", "100"))
    tmp = tempfile.mkdtemp()
    url = os.environ.get("DATABASE_URL") or f"sqlite:///{tmp}/bench.db"
    app = create_app({"DATABASE_URL": url, "LOG_LEVEL": "ERROR", "APP_ENV": "test"})
    from app.core.auth import Role
    from app.health_records.forms import load_forms
    from app.health_records.models import HealthFormVersion
    from app.health_records.services import forms, records
    from tests.factories import as_principal, make_centre, make_staff, token_for
    from tests.factories_residents import make_resident
    from tests.health_records.test_exam import full_exam

    results: dict[str, Any] = {"database": url.split(":")[0], "rounds": rounds}
    with app.test_request_context():
        Base.metadata.drop_all(db.engine)
        Base.metadata.create_all(db.engine)
        centre = make_centre()
        doctor = make_staff(Role.DOCTOR, centre)
        token = token_for(doctor)
        residents = [make_resident(centre, age=70, sex="female") for _ in range(rounds)]
        record_ids = []
        with as_principal(doctor):
            for resident in residents:
                record = records.open_record(resident.id)
                forms.create_form(
                    record.id,
                    "elderly_selfcare",
                    {
                        "assessed_at": full_exam()["exam_date"],
                        "meal_level": "1",
                        "grooming_level": "2",
                        "dressing_level": "1",
                        "toileting_level": "1",
                        "activity_level": "1",
                    },
                )
                record_ids.append(record.id)
        commit()
        spec = load_forms()["health_exam"].spec
        ctx = forms.form_context(residents[0])
        payload = full_exam()
        results["engine: validate a complete 健康体检表 (no database)"] = summary(
            [timed(lambda: spec.validate(payload, ctx)) for _ in range(rounds * 5)]
        )
        results["健康体检表 fields described"] = len(spec.describe())

    client = app.test_client()
    auth = {"Authorization": f"Bearer {token}"}
    created: list[str] = []

    def get(path: str) -> None:
        response = client.get(path, headers=auth)
        assert response.status_code == 200, path

    save_ms, read_ms, revise_ms, print_ms, card_ms = [], [], [], [], []
    for record_id in record_ids:
        body = {"form_type": "health_exam", "data": full_exam()}

        def save(record_id: uuid.UUID = record_id, body: dict[str, Any] = body) -> None:
            response = client.post(
                f"/api/v1/health-records/{record_id}/forms",
                json=body,
                headers={**auth, "Idempotency-Key": f"bench-{uuid.uuid4()}"},
            )
            assert response.status_code == 201, response.get_json()
            created.append(response.get_json()["id"])

        save_ms.append(timed(save))
        form_id = created[-1]
        read_ms.append(timed(partial(get, f"/api/v1/health-forms/{form_id}")))

        def revise(form_id: str = form_id) -> None:
            response = client.put(
                f"/api/v1/health-forms/{form_id}",
                json={"base_version": 1, "data": full_exam(weight_kg=66.0), "reason": "复核体重"},
                headers=auth,
            )
            assert response.status_code == 200, response.get_json()

        revise_ms.append(timed(revise))
    for form_id in created[: max(10, rounds // 5)]:
        print_ms.append(timed(partial(get, f"/api/v1/health-forms/{form_id}/print.pdf")))
    for record_id in record_ids[: max(10, rounds // 5)]:
        card_ms.append(timed(partial(get, f"/api/v1/health-records/{record_id}/card.pdf")))
    results["HTTP: save a 健康体检表 (validate, derive, encrypt, version, audit)"] = summary(save_ms)
    results["HTTP: read it back (decrypt, labels, audit)"] = summary(read_ms)
    results["HTTP: save version 2 (whole form again, changed fields)"] = summary(revise_ms)
    results["HTTP: print the 健康体检表 (A4 PDF)"] = summary(print_ms)
    results["HTTP: print the record card (2 card-sized pages)"] = summary(card_ms)
    printed = client.get(f"/api/v1/health-forms/{created[0]}/print.pdf", headers=auth).data
    results["exam PDF"] = {"bytes": len(printed), "pages": len(re.findall(rb"/Type\s*/Page[^s]", printed))}
    with app.app_context():
        stored = db.session.execute(
            select(
                func.length(HealthFormVersion.payload_json) + func.length(HealthFormVersion.derived_json)
            ).where(HealthFormVersion.form_id == uuid.UUID(created[0]), HealthFormVersion.version == 1)
        ).scalar_one()
        results["stored exam version 1 (encrypted payload + derived, as stored), bytes"] = stored
    print(json.dumps(results, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
