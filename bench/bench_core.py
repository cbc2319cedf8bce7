"""Benchmark of the foundation's hot paths (not part of the test suite).

    .venv/bin/python bench/bench_core.py            # SQLite file in a temp dir + fakeredis
    DATABASE_URL=postgresql+psycopg://… .venv/bin/python bench/bench_core.py

Reports medians and 95th percentiles (milliseconds) measured in one run, plus ratios between
paths measured in the same run, which are steadier than absolute numbers on a shared machine:
- an authenticated, scoped, paged staff list (the typical desk read);
- field encryption and decryption; blind index;
- argon2id password verification (login);
- one audited commit (append to the hash chain).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app import create_app
from app.core import audit, crypto
from app.core.db import Base, commit, db


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": round(statistics.median(ordered), 3),
        "p95_ms": round(ordered[int(len(ordered) * 0.95) - 1], 3),
        "n": len(ordered),
    }


def main() -> None:
    tmp = tempfile.mkdtemp()
    url = os.environ.get("DATABASE_URL") or f"sqlite:///{tmp}/bench.db"
    app = create_app({"DATABASE_URL": url, "LOG_LEVEL": "ERROR", "APP_ENV": "test"})
    from app.accounts.models import StaffUser
    from app.accounts.services import hash_password
    from app.core.auth import Role
    from app.institutions.services import import_centres, read_centre_csv

    results: dict[str, object] = {"database": url.split(":")[0]}
    with app.app_context():
        Base.metadata.drop_all(db.engine)
        Base.metadata.create_all(db.engine)
        rows, _ = read_centre_csv((Path(app.root_path) / "institutions/data/demo_centres.csv").read_text())
        import_centres(rows, demo=True)
        commit()
        from app.institutions.models import Institution

        centre = db.session.query(Institution).first()
        assert centre is not None
        password = "Bench-Password-1"  # noqa: S105 - throwaway benchmark account
        hashed = hash_password(password)
        for n in range(200):
            db.session.add(
                StaffUser(
                    id=uuid.uuid4(),
                    username=f"bench{n}",
                    name=f"测试{n}",
                    role=Role.DOCTOR,
                    phone=f"139{n:08d}",
                    institution_id=centre.id,
                    password_hash=hashed,
                    must_change_password=False,
                )
            )
        commit()

    client = app.test_client()
    login = client.post("/api/v1/auth/login", json={"username": "bench0", "password": password})
    token = login.json["access_token"]
    headers = {"Authorization": f"Bearer {token}"}

    def staff_list() -> None:
        response = client.get("/api/v1/staff?size=20", headers=headers)
        assert response.status_code == 200

    timed(staff_list, 20)  # warm-up
    results["staff_list_page"] = summary(timed(staff_list, 300))

    def audited_commit() -> None:
        with app.app_context():
            audit.record("read", "bench", "x")
            commit()

    results["audited_commit"] = summary(timed(audited_commit, 300))

    ring = crypto.keyring()
    ciphertext = ring.encrypt("440303199001011234", "bench.id")
    results["encrypt"] = summary(timed(lambda: ring.encrypt("440303199001011234", "bench.id"), 2000))
    results["decrypt"] = summary(timed(lambda: ring.decrypt(ciphertext, "bench.id"), 2000))
    results["blind_index"] = summary(timed(lambda: ring.blind_index("440303199001011234", "id_number"), 2000))

    def login_once() -> None:
        response = client.post("/api/v1/auth/login", json={"username": "bench1", "password": password})
        assert response.status_code == 200

    results["login"] = summary(timed(login_once, 15))
    staff, audited = results["staff_list_page"], results["audited_commit"]
    assert isinstance(staff, dict) and isinstance(audited, dict)
    results["share_of_audit_append_in_staff_list"] = round(audited["median_ms"] / staff["median_ms"], 2)
    print(json.dumps(results, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
