"""The 医保医师库 import: a generated list with exactly N planted mismatches of each kind is
reported with exactly those, from CSV and from XLSX; plus file problems, paging, scope, apply."""

from __future__ import annotations

import csv
import io
import uuid
from dataclasses import dataclass, field
from datetime import date

import pytest
from openpyxl import Workbook
from sqlalchemy import select

from app.core.auth import Role
from app.core.db import db
from app.doctors.models import Doctor, DoctorHistory, MiCategory
from tests.doctors.support import id_number, multipart
from tests.factories import make_centre, make_staff
from tests.factories_doctors import make_doctor

URL = "/api/v1/doctor-mi-imports"
HEADERS = ["医保医师编码", "姓名", "身份证号", "执业证书编号", "机构编码", "机构名称"]
N = 3


def _id(n: int) -> str:
    # stdnum knows 440303 (罗湖区) only from 1983 on and refuses earlier birth dates with it.
    return id_number(date(1983 + n // 300, 1 + (n // 25) % 12, 1 + n % 25), seq=n % 40)


@dataclass
class Planted:
    rows: list[list[object]] = field(default_factory=list)
    expected: dict[str, set[str]] = field(default_factory=dict)  # category -> doctor ids or row codes

    def expect(self, category: MiCategory, key: str) -> None:
        self.expected.setdefault(category.value, set()).add(key)


def plant(n: int = N) -> tuple[Planted, object, object]:
    """Registry doctors and list rows with exactly `n` findings of every category."""
    home, away = make_centre(), make_centre()
    planted = Planted()
    counter = iter(range(1, 10_000))

    def doctor(**kw):
        k = next(counter)
        kw.setdefault("id_number", _id(k))
        kw.setdefault("mi_doctor_code", f"D440303{k:06d}")
        return make_doctor(kw.pop("centre", home), **kw)

    def row(d, **over):
        values = {
            "医保医师编码": d.mi_doctor_code,
            "姓名": d.name,
            "身份证号": d.id_number,
            "执业证书编号": d.practice_licence_no,
            "机构编码": d.institution.his_code,
            "机构名称": d.institution.name,
        }
        values.update(over)
        planted.rows.append([values[h] for h in HEADERS])

    for _ in range(4):  # clean pairs: no finding
        row(doctor())
    for i in range(n):  # found by ID number, our code absent or malformed
        d = doctor(mi_doctor_code=None if i % 2 else f"D4403{i:05d}")
        row(d, 医保医师编码=f"D440303{900 + i:06d}")
        planted.expect(MiCategory.MISSING_CODE, str(d.id))
    for i in range(n):  # found by licence (no ID on either side), another valid code on our side
        d = doctor(id_number=None)
        row(d, 医保医师编码=f"D440303{800 + i:06d}", 身份证号="")
        planted.expect(MiCategory.CODE_MISMATCH, str(d.id))
    for _ in range(n):
        d = doctor()
        row(d, 姓名=d.name + "某")
        planted.expect(MiCategory.NAME_MISMATCH, str(d.id))
    for i in range(n):
        d = doctor()
        row(d, 身份证号=_id(5000 + i))
        planted.expect(MiCategory.ID_MISMATCH, str(d.id))
    for i in range(n):
        d = doctor()
        if i == 0:
            row(d, 机构编码="", 机构名称="深圳市某某医院")  # not a Luohu centre at all
        else:
            row(d, 机构编码=away.his_code, 机构名称=away.name)
        planted.expect(MiCategory.WRONG_CENTRE, str(d.id))
    for i in range(n):
        code = f"D440303{700 + i:06d}"
        planted.rows.append([code, f"外院{i}", _id(6000 + i), f"33044030{i:07d}", away.his_code, away.name])
        planted.expect(MiCategory.NOT_IN_REGISTRY, code)
    for _ in range(n):
        d = doctor()
        planted.expect(MiCategory.NOT_IN_MI_LIST, str(d.id))
    bad_rows = [
        ["D44030312", "甲", _id(7001), "", home.his_code, ""],  # malformed code
        ["D440303600001", "乙", "440303198001010010", "", home.his_code, ""],  # bad checksum
        ["D440303600002", "", _id(7002), "", home.his_code, ""],
    ]  # no name
    for bad in bad_rows[:n]:
        planted.rows.append(bad)
        planted.expect(MiCategory.INVALID_ROW, str(bad[0]))
    # Neither pending nor departed doctors are expected in the list.
    doctor(approved=False)
    doctor(practice_status="left")
    return planted, home, away


def csv_bytes(rows, headers=HEADERS, encoding="utf-8-sig") -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(headers)
    writer.writerows(rows)
    return out.getvalue().encode(encoding)


def xlsx_bytes(rows, headers=HEADERS) -> bytes:
    book = Workbook()
    sheet = book.active
    sheet.append(["罗湖区医保医师名单（2026 年 11 月）"])  # a title line above the header
    sheet.append([])
    sheet.append(headers)
    for values in rows:
        sheet.append(list(values))
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _report(client, import_id) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    page = 1
    while True:
        body = client.get(f"{URL}/{import_id}/items", query_string={"page": page, "size": 7}).json
        for item in body["items"]:
            key = item["doctor"]["id"] if item["doctor"] else item["mi_code"]
            found.setdefault(item["category"], set()).add(key)
        if page >= body["pages"]:
            return found
        page += 1


@pytest.mark.parametrize("kind", ["csv", "xlsx"])
def test_planted_mismatches_are_reported_exactly(api, kind):
    planted, _, _ = plant()
    data = csv_bytes(planted.rows) if kind == "csv" else xlsx_bytes(planted.rows)
    admin = api(make_staff(Role.DISTRICT_ADMIN))
    response = admin.post(URL, **multipart("file", f"医保医师名单.{kind}", data))
    assert response.status_code == 201, response.json
    batch = response.json
    assert batch["file_format"] == kind and batch["row_count"] == len(planted.rows)
    counts = {c["category"]: c["count"] for c in batch["categories"]}
    assert counts == {category.value: N for category in MiCategory}
    assert _report(admin, batch["id"]) == planted.expected
    one = admin.get(f"{URL}/{batch['id']}/items", query_string={"category": "name_mismatch"}).json
    assert one["total"] == N and {i["category_label"] for i in one["items"]} == {"姓名与医保库不一致"}
    assert all(i["ours"] + "某" == i["theirs"] for i in one["items"])
    ids = admin.get(f"{URL}/{batch['id']}/items", query_string={"category": "id_mismatch"}).json["items"]
    assert all(i["ours"].startswith("*") and i["theirs"].startswith("*") for i in ids), (
        "ID numbers are masked"
    )
    invalid = admin.get(f"{URL}/{batch['id']}/items", query_string={"category": "invalid_row"}).json["items"]
    assert {i["message"].split("：", 1)[1] for i in invalid} == {
        "医保医师编码须为 D + 6 位行政区划代码 + 6 位顺序号，共 13 位（如 D440303000123）",
        "身份证号校验不通过",
        "缺少姓名",
    }
    assert all(isinstance(i["line_no"], int) for i in invalid)


def test_gbk_csv_with_english_headers_and_aliases(api):
    centre = make_centre()
    doctor = make_doctor(centre, id_number=_id(42), mi_doctor_code=None)
    rows = [[" d440303123456 ", doctor.name, doctor.id_number, "", "", centre.name]]
    data = csv_bytes(
        rows,
        headers=["mi_code", "医师姓名", "身份证号码（必填）", "licence_no", "机构编码", "机构名称"],
        encoding="gbk",
    )
    response = api(make_staff(Role.DISTRICT_ADMIN)).post(URL, **multipart("file", "list.csv", data))
    assert response.status_code == 201, response.json
    counts = {c["category"]: c["count"] for c in response.json["categories"] if c["count"]}
    assert counts == {"missing_code": 1}


def test_file_problems_are_422_or_413(api):
    admin = api(make_staff(Role.DISTRICT_ADMIN))
    no_code = admin.post(
        URL, **multipart("file", "a.csv", csv_bytes([], headers=["姓名", "身份证号", "机构名称"]))
    )
    assert no_code.status_code == 422 and no_code.json["code"] == "mi_file_invalid"
    assert no_code.json["message"] == "名单缺少列：医保医师编码"
    no_id = admin.post(
        URL, **multipart("file", "a.csv", csv_bytes([], headers=["医保医师编码", "姓名", "机构名称"]))
    )
    assert "身份证号 或 执业证书编号" in no_id.json["message"]
    xls = admin.post(URL, **multipart("file", "a.xls", b"\xd0\xcf\x11\xe0" + b"\0" * 100))
    assert xls.status_code == 422 and ".xlsx" in xls.json["message"]
    fake_xlsx = admin.post(URL, **multipart("file", "a.xlsx", b"not a workbook"))
    assert fake_xlsx.status_code == 422
    broken_zip = admin.post(URL, **multipart("file", "a.xlsx", b"PK\x03\x04broken"))
    assert broken_zip.status_code == 422 and broken_zip.json["code"] == "mi_file_invalid"
    empty = admin.post(URL, **multipart("file", "a.csv", b""))
    assert empty.status_code == 422
    huge = admin.post(URL, **multipart("file", "a.csv", b"a" * (10 * 1024 * 1024 + 10)))
    assert huge.status_code == 413 and huge.json["code"] == "mi_file_too_large"
    missing = admin.post(URL, data={}, content_type="multipart/form-data")
    assert missing.status_code == 422 and missing.json["errors"]["file"] == ["此项必填"]


def test_excel_numbers_that_lost_precision_are_invalid_rows(api):
    centre = make_centre()
    book = Workbook()
    sheet = book.active
    sheet.append(HEADERS)
    sheet.append(["D440303000555", "王五", 4.40303198506151e17, "", centre.his_code, centre.name])
    out = io.BytesIO()
    book.save(out)
    response = api(make_staff(Role.DISTRICT_ADMIN)).post(URL, **multipart("file", "n.xlsx", out.getvalue()))
    counts = {c["category"]: c["count"] for c in response.json["categories"] if c["count"]}
    assert counts == {"invalid_row": 1}


def test_roles_and_centre_scope_of_the_report(api):
    planted, home, _away = plant(1)
    district = api(make_staff(Role.DISTRICT_ADMIN))
    batch = district.post(URL, **multipart("file", "l.csv", csv_bytes(planted.rows))).json
    assert api().post(URL, **multipart("file", "l.csv", csv_bytes(planted.rows))).status_code == 401
    centre_admin = api(make_staff(Role.CENTRE_ADMIN, home))
    assert centre_admin.post(URL, **multipart("file", "l.csv", csv_bytes(planted.rows))).status_code == 403
    assert api(make_staff(Role.DOCTOR, home)).get(f"{URL}/{batch['id']}/items").status_code == 403
    own = centre_admin.get(f"{URL}/{batch['id']}/items", query_string={"size": 100}).json["items"]
    assert own and all(i["institution_id"] == str(home.id) for i in own)
    everything = district.get(f"{URL}/{batch['id']}/items", query_string={"size": 100}).json
    assert everything["total"] > len(own)
    assert centre_admin.post(f"{URL}/{batch['id']}/apply").status_code == 403
    assert district.get(f"{URL}/{uuid.uuid4()}").status_code == 404
    listed = centre_admin.get(URL).json
    assert listed["total"] == 1 and listed["items"][0]["id"] == batch["id"]
    assert district.get(f"{URL}/{batch['id']}/items", query_string={"category": "nope"}).status_code == 422


def test_apply_codes_to_doctors_that_otherwise_agree(api):
    centre = make_centre()
    clean = make_doctor(centre, id_number=_id(1), mi_doctor_code=None)
    renamed = make_doctor(centre, id_number=_id(2), mi_doctor_code=None)
    holder = make_doctor(centre, id_number=_id(3), mi_doctor_code="D440303000333")
    clash = make_doctor(centre, id_number=_id(4), mi_doctor_code=None)
    rows = [
        ["D440303000111", clean.name, clean.id_number, "", centre.his_code, ""],
        ["D440303000222", renamed.name + "某", renamed.id_number, "", centre.his_code, ""],
        [holder.mi_doctor_code, holder.name, holder.id_number, "", centre.his_code, ""],
        ["D440303000444", clash.name, clash.id_number, "", centre.his_code, ""],
    ]
    district = api(make_staff(Role.DISTRICT_ADMIN))
    first = district.post(URL, **multipart("file", "a.csv", csv_bytes(rows))).json
    # Meanwhile someone gives D440303000444 to another doctor: that one is skipped, not a 500.
    make_doctor(centre, mi_doctor_code="D440303000444")
    second = district.post(URL, **multipart("file", "b.csv", csv_bytes(rows))).json
    stale = district.post(f"{URL}/{first['id']}/apply")
    assert stale.status_code == 409 and stale.json["code"] == "stale_import"
    applied = district.post(f"{URL}/{second['id']}/apply")
    assert applied.status_code == 200, applied.json
    assert applied.json["applied_count"] == 1 and applied.json["applied_at"]
    assert db.session.get(Doctor, clean.id).mi_doctor_code == "D440303000111"
    assert db.session.get(Doctor, renamed.id).mi_doctor_code is None
    assert db.session.get(Doctor, clash.id).mi_doctor_code is None
    history = (
        db.session.execute(select(DoctorHistory).where(DoctorHistory.doctor_id == clean.id)).scalars().all()
    )
    assert [(h.action, h.channel, h.detail["to"]) for h in history] == [
        ("mi_code_set", "mi_import", "D440303000111")
    ]
    again = district.post(f"{URL}/{second['id']}/apply")
    assert again.status_code == 409 and again.json["code"] == "already_applied"
    items = district.get(f"{URL}/{second['id']}/items", query_string={"category": "missing_code"}).json[
        "items"
    ]
    assert [bool(i["applied_at"]) for i in items if i["doctor"]["id"] == str(clean.id)] == [True]
