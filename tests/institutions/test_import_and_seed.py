"""`flask import-centres` and `flask seed-demo`."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
from click.testing import Result
from flask import Flask
from sqlalchemy import func, select

from app.accounts.models import StaffUser
from app.cli import DEMO_CSV
from app.core.db import db
from app.institutions.models import STREETS, Community, Institution
from tests.audit.support import Http, audit_rows

LUOHU_STREETS = {"桂园", "黄贝", "东门", "翠竹", "南湖", "笋岗", "东湖", "莲塘", "东晓", "清水河"}
HEADER = "his_code,name,street,community,address,longitude,latitude,phone,opening_hours"


def _run(app: Flask, *args: str) -> Result:
    result = app.test_cli_runner().invoke(args=list(args))
    db.session.expire_all()
    return result


def _centres() -> list[Institution]:
    db.session.expire_all()
    return list(db.session.execute(select(Institution).order_by(Institution.his_code)).scalars())


def _demo_rows() -> list[str]:
    return [
        line
        for line in DEMO_CSV.read_text(encoding="utf-8").splitlines()
        if line and not line.startswith(("#", "his_code"))
    ]


def _reported_lines(result: Result) -> dict[int, str]:
    return {int(m.group(1)): m.group(2) for m in re.finditer(r"line (\d+): (.+)", result.stderr)}


# --- import-centres --------------------------------------------------------------------------------


def test_the_demo_csv_creates_45_demo_centres_over_the_ten_streets(app):
    result = _run(app, "import-centres", str(DEMO_CSV))

    assert result.exit_code == 0, result.output
    centres = _centres()
    assert len(centres) == len(_demo_rows()) == 45
    assert "created: 45" in result.output and "rejected: 0" in result.output
    assert {c.street.name for c in centres} == LUOHU_STREETS == {name for _, name in STREETS}
    assert all(c.is_demo for c in centres)
    assert len({c.his_code for c in centres}) == len({c.name for c in centres}) == 45
    assert all(c.community.street_id == c.street_id for c in centres)
    for centre in centres:
        assert 113.9 <= centre.longitude <= 114.4 and 22.4 <= centre.latitude <= 22.8
    [event] = audit_rows(action="import", object_type="institution")
    assert event.actor_kind == "system"
    assert event.detail == {"created": 45, "updated": 0, "errors": 0}


def test_reimporting_updates_instead_of_duplicating(app, tmp_path):
    assert _run(app, "import-centres", str(DEMO_CSV)).exit_code == 0
    first = {c.his_code: c.id for c in _centres()}
    communities = db.session.execute(select(func.count()).select_from(Community)).scalar_one()

    again = _run(app, "import-centres", str(DEMO_CSV))
    assert again.exit_code == 0, again.output
    assert "created: 0, updated: 45" in again.output
    assert {c.his_code: c.id for c in _centres()} == first
    assert db.session.execute(select(func.count()).select_from(Community)).scalar_one() == communities

    # A changed address is applied to the same centre; a file without the demo marker is real data.
    rows = _demo_rows()
    code = rows[0].split(",")[0]
    changed = rows[0].replace(rows[0].split(",")[4], "深圳市罗湖区桂园街道新地址1号")
    path = tmp_path / "real.csv"
    path.write_text("\n".join([HEADER, changed]) + "\n", encoding="utf-8")
    result = _run(app, "import-centres", str(path))
    assert result.exit_code == 0, result.output
    assert "created: 0, updated: 1" in result.output
    [centre] = [c for c in _centres() if c.his_code == code]
    assert centre.id == first[code]
    assert centre.address == "深圳市罗湖区桂园街道新地址1号"
    assert centre.is_demo is False
    assert len(_centres()) == 45


def _row(code: str, name: str, street: str, community: str, lon: str = "114.12", lat: str = "22.55") -> str:
    return f"{code},{name},{street},{community},深圳市罗湖区{community}路1号,{lon},{lat},,"


def _write(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "centres.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_bad_rows_are_reported_by_line_and_the_command_exits_1(app, tmp_path):
    good = [
        "LX001,罗湖区测试一社区健康服务中心,桂园,老围,深圳市罗湖区桂园街道一路1号,114.11,22.54,0755-1,08:00-17:00",
        "LX002,罗湖区测试二社区健康服务中心,黄贝街道,新秀,深圳市罗湖区黄贝街道二路2号,114.13,22.55,,",
        "LX003,罗湖区测试三社区健康服务中心,清水河,草埔,深圳市罗湖区清水河街道三路3号,,,,",
    ]
    bad = {
        "unknown street": _row("LX004", "测试四中心", "福田", "沙头", "114.05", "22.52"),
        "missing name": _row("LX005", "", "东门", "湖贝"),
        "outside Luohu": _row("LX006", "测试六中心", "东湖", "大望", "116.40", "39.90"),
        "malformed HIS code": _row("LX 007!", "测试七中心", "莲塘", "仙湖"),
        # The name of the first good row again, under another code.
        "duplicate name": _row("LX008", "罗湖区测试一社区健康服务中心", "翠竹", "水贝"),
        "latitude not a number": _row("LX009", "测试九中心", "南湖", "渔邨", "114.11", "北纬"),
    }
    lines = [
        "# centres to import",
        HEADER,
        good[0],
        "",
        bad["unknown street"],
        good[1],
        bad["missing name"],
        "# a comment in the middle",
        bad["outside Luohu"],
        bad["malformed HIS code"],
        good[2],
        bad["duplicate name"],
        bad["latitude not a number"],
    ]
    expected = {lines.index(row) + 1 for row in bad.values()}

    result = _run(app, "import-centres", str(_write(tmp_path, lines)))

    assert result.exit_code == 1
    reported = _reported_lines(result)
    assert set(reported) == expected
    assert "rejected: 6" in result.output and "created: 3" in result.output
    for line, message in reported.items():
        assert re.search(r"[\u4e00-\u9fff]", message), (line, message)
    assert "福田" in reported[lines.index(bad["unknown street"]) + 1]
    assert "116.40" in reported[lines.index(bad["outside Luohu"]) + 1]
    # Good rows are imported, bad rows are not, and a rejected row leaves no new community behind.
    assert {c.his_code for c in _centres()} == {"LX001", "LX002", "LX003"}
    assert {c.name for c in db.session.execute(select(Community)).scalars()} == {"老围", "新秀", "草埔"}


def test_a_his_code_repeated_in_one_file_is_reported(app, tmp_path):
    lines = [
        HEADER,
        "LX001,罗湖区测试一社区健康服务中心,桂园,老围,深圳市罗湖区桂园街道一路1号,114.11,22.54,,",
        "LX001,罗湖区测试二社区健康服务中心,桂园,松园,深圳市罗湖区桂园街道二路2号,114.11,22.54,,",
    ]
    result = _run(app, "import-centres", str(_write(tmp_path, lines)))
    assert result.exit_code == 1
    assert set(_reported_lines(result)) == {3}
    [centre] = _centres()
    assert centre.name == "罗湖区测试一社区健康服务中心"


def test_a_file_with_missing_columns_is_refused_without_importing(app, tmp_path):
    result = _run(app, "import-centres", str(_write(tmp_path, ["his_code,name", "LX001,某中心"])))
    assert result.exit_code == 1
    assert "street" in result.output
    assert _centres() == []


# --- seed-demo -------------------------------------------------------------------------------------


def test_seed_demo_creates_the_demo_staff_and_prints_the_password_once(app):
    result = _run(app, "seed-demo")

    assert result.exit_code == 0, result.output
    [password] = re.findall(r"password for every demo account: (\S+)", result.output)
    assert result.output.count(password) == 1
    centres = _centres()
    assert len(centres) == 45 and all(c.is_demo for c in centres)
    users = list(db.session.execute(select(StaffUser)).scalars())
    district = [u for u in users if u.institution_id is None]
    assert Counter(u.role for u in district) == Counter({"district_admin": 1, "auditor": 1})
    per_centre: dict[object, Counter[str]] = {}
    for user in users:
        if user.institution_id is not None:
            per_centre.setdefault(user.institution_id, Counter())[user.role] += 1
    assert set(per_centre) == {c.id for c in centres}
    expected = Counter({"centre_admin": 1, "doctor": 2, "nurse": 1, "cashier": 1})
    assert all(counts == expected for counts in per_centre.values())
    # The printed password is the password of the accounts; it is not stored in clear.
    assert all(password not in (u.password_hash or "") for u in users)
    first = centres[0]
    login = Http(app).post(
        "/api/v1/auth/login", json={"username": f"{first.his_code.lower()}.doctor1", "password": password}
    )
    assert login.status_code == 200, login.json
    assert login.json["user"]["role"] == "doctor"
    assert login.json["user"]["institution"]["id"] == str(first.id)
    district_login = Http(app).post(
        "/api/v1/auth/login", json={"username": "district.admin", "password": password}
    )
    assert district_login.status_code == 200
    assert district_login.json["user"]["institution"] is None


def test_seed_demo_is_idempotent(app):
    first = _run(app, "seed-demo")
    assert first.exit_code == 0
    count = db.session.execute(select(func.count()).select_from(StaffUser)).scalar_one()
    [password] = re.findall(r"password for every demo account: (\S+)", first.output)

    second = _run(app, "seed-demo")

    assert second.exit_code == 0, second.output
    assert "created: 0" in second.output
    assert "password" not in second.output
    assert db.session.execute(select(func.count()).select_from(StaffUser)).scalar_one() == count
    assert len(_centres()) == 45
    login = Http(app).post("/api/v1/auth/login", json={"username": "district.admin", "password": password})
    assert login.status_code == 200


def test_a_partial_seed_does_not_claim_the_password_of_older_accounts(app):
    from app.core.auth import Role
    from tests.factories import make_staff

    make_staff(Role.DISTRICT_ADMIN, None, username="district.admin")
    result = _run(app, "seed-demo")
    assert result.exit_code == 0, result.output
    assert "every demo account" not in result.output
    [(count, password)] = re.findall(
        r"password for the (\d+) demo accounts created now: (\S+)", result.output
    )
    created = db.session.execute(select(func.count()).select_from(StaffUser)).scalar_one() - 1
    assert int(count) == created
    # The older account kept its own password.
    login = Http(app).post("/api/v1/auth/login", json={"username": "district.admin", "password": password})
    assert login.status_code == 401


def test_seed_demo_refuses_in_production_mode(app, monkeypatch):
    monkeypatch.setitem(app.config, "APP_ENV", "production")

    result = _run(app, "seed-demo")

    assert result.exit_code == 1
    assert "production" in result.output
    assert _centres() == []
    assert db.session.execute(select(func.count()).select_from(StaffUser)).scalar_one() == 0


@pytest.mark.parametrize("env", ["development", "test"])
def test_seed_demo_runs_outside_production(app, monkeypatch, env):
    monkeypatch.setitem(app.config, "APP_ENV", env)
    monkeypatch.setitem(app.config, "DEMO_PASSWORD_SEED", "fixed-seed")
    result = _run(app, "seed-demo")
    assert result.exit_code == 0, result.output
    [password] = re.findall(r"password for every demo account: (\S+)", result.output)
    # A seed makes the password reproducible (and it still satisfies the password policy).
    from app.accounts.services import password_problems

    assert password_problems(password) == []


def test_seed_demo_fills_the_public_doctor_library_and_the_demo_residents(app):
    from app.doctors.models import Doctor
    from app.residents.services import find_by_id_number
    from app.teams.models import Team

    first = _run(app, "seed-demo")
    assert first.exit_code == 0, first.output
    doctors = list(db.session.execute(select(Doctor)).scalars())
    assert len(doctors) == 45 * 3 and all(d.status == "approved" for d in doctors)
    assert db.session.execute(select(func.count()).select_from(Team)).scalar_one() == 45
    [line] = [ln for ln in first.output.splitlines() if "张建国" in ln]
    id_number = line.split()[1]
    assert find_by_id_number(id_number) is not None
    library = app.test_client().get("/mp/v1/doctors", query_string={"size": 5})
    assert library.status_code == 200 and library.json["total"] == 45 * 3
    assert all(item["remaining"] > 0 for item in library.json["items"])
    again = _run(app, "seed-demo")
    assert again.exit_code == 0 and "demo doctor registrations created: 0" in again.output
    assert db.session.execute(select(func.count()).select_from(Doctor)).scalar_one() == 45 * 3
