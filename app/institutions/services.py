"""Centres, streets and communities: listing, editing, and the CSV import of centres."""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, func, or_, select

from app.core import audit
from app.core.auth import Principal
from app.core.db import db
from app.core.errors import NotFound
from app.core.pagination import Page, paginate
from app.institutions.models import STREETS, Community, Institution, Street

CSV_COLUMNS = (
    "his_code",
    "name",
    "street",
    "community",
    "address",
    "longitude",
    "latitude",
    "phone",
    "opening_hours",
)
# Luohu lies roughly within these bounds; coordinates outside are typing mistakes.
LONGITUDE_RANGE = (113.9, 114.4)
LATITUDE_RANGE = (22.4, 22.8)


def ensure_streets() -> dict[str, Street]:
    """The ten streets of Luohu exist (idempotent). Returns them by name."""
    existing = {s.name: s for s in db.session.execute(select(Street)).scalars()}
    for code, name in STREETS:
        if name not in existing:
            street = Street(id=uuid.uuid4(), code=code, name=name)
            db.session.add(street)
            existing[name] = street
    db.session.flush()
    return existing


def _community(street: Street, name: str) -> Community:
    found = db.session.execute(
        select(Community).where(Community.street_id == street.id, Community.name == name)
    ).scalar_one_or_none()
    if found is not None:
        return found
    highest = db.session.execute(
        select(func.max(Community.code)).where(Community.street_id == street.id)
    ).scalar_one_or_none()
    community = Community(
        id=uuid.uuid4(), street_id=street.id, code=f"{int(highest or 0) + 1:03d}", name=name
    )
    db.session.add(community)
    db.session.flush()
    return community


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)


def _coordinate(raw: str, bounds: tuple[float, float], label: str) -> float | None:
    if not raw.strip():
        return None
    try:
        value = float(raw)
    except ValueError as exc:
        raise ValueError(f"{label}不是数字：{raw}") from exc
    if not bounds[0] <= value <= bounds[1]:
        raise ValueError(f"{label}超出罗湖区范围：{raw}")
    return value


def _validated(row: Mapping[str, str], streets: Mapping[str, Street]) -> dict[str, Any]:
    values = {k: (row.get(k) or "").strip() for k in CSV_COLUMNS}
    for required, label in (
        ("his_code", "HIS 机构编码"),
        ("name", "名称"),
        ("street", "街道"),
        ("community", "社区"),
        ("address", "地址"),
    ):
        if not values[required]:
            raise ValueError(f"缺少{label}")
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", values["his_code"]):
        raise ValueError(f"HIS 机构编码格式不正确：{values['his_code']}")
    street_name = values["street"].removesuffix("街道")
    if street_name not in streets:
        raise ValueError(f"街道不在罗湖区十个街道之内：{values['street']}")
    return {
        "his_code": values["his_code"],
        "name": values["name"],
        "street": streets[street_name],
        "community": values["community"].removesuffix("社区") or values["community"],
        "address": values["address"],
        "longitude": _coordinate(values["longitude"], LONGITUDE_RANGE, "经度"),
        "latitude": _coordinate(values["latitude"], LATITUDE_RANGE, "纬度"),
        "phone": values["phone"] or None,
        "opening_hours": values["opening_hours"] or None,
    }


def read_centre_csv(text: str) -> tuple[list[tuple[int, dict[str, str]]], bool]:
    """Rows with their line numbers, and whether the file declares itself demo data (`# demo`)."""
    lines = text.lstrip("\ufeff").splitlines()
    demo = any(line.startswith("#") and "demo" in line.lower() for line in lines)
    numbered = [
        (n, line) for n, line in enumerate(lines, start=1) if line.strip() and not line.startswith("#")
    ]
    if not numbered:
        return [], demo
    reader = csv.DictReader(io.StringIO("\n".join(line for _, line in numbered)))
    missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise ValueError("CSV 缺少列：" + ", ".join(missing))
    rows = [(numbered[i + 1][0], row) for i, row in enumerate(reader)]
    return rows, demo


def import_centres(rows: Iterable[tuple[int, Mapping[str, str]]], *, demo: bool) -> ImportReport:
    """Create or update centres by HIS code. Bad rows are reported by line and skipped."""
    report = ImportReport()
    streets = ensure_streets()
    seen_codes: dict[str, int] = {}
    for line, row in rows:
        try:
            values = _validated(row, streets)
        except ValueError as exc:
            report.errors.append((line, str(exc)))
            continue
        # The same code twice in one file would silently overwrite the first row.
        if values["his_code"] in seen_codes:
            first = seen_codes[values["his_code"]]
            report.errors.append((line, f"HIS 机构编码与第 {first} 行重复：{values['his_code']}"))
            continue
        centre = db.session.execute(
            select(Institution).where(Institution.his_code == values["his_code"])
        ).scalar_one_or_none()
        clash = db.session.execute(
            select(Institution.id).where(
                Institution.name == values["name"], Institution.his_code != values["his_code"]
            )
        ).first()
        if clash:
            report.errors.append((line, f"名称与另一家中心重复：{values['name']}"))
            continue
        seen_codes[values["his_code"]] = line
        # Only after every check: a rejected row must not leave a new community behind.
        street: Street = values.pop("street")
        community = _community(street, values.pop("community"))
        if centre is None:
            centre = Institution(
                id=uuid.uuid4(), street_id=street.id, community_id=community.id, is_demo=demo, **values
            )
            db.session.add(centre)
            report.created += 1
        else:
            for key, value in values.items():
                setattr(centre, key, value)
            centre.street_id, centre.community_id, centre.is_demo = street.id, community.id, demo
            report.updated += 1
        db.session.flush()
    audit.record(
        "import",
        "institution",
        None,
        detail={"created": report.created, "updated": report.updated, "errors": len(report.errors)},
    )
    return report


def list_institutions(
    *, page: int, size: int, street_id: uuid.UUID | None = None, q: str | None = None
) -> Page[Institution]:
    statement: Select[Any] = (
        select(Institution).where(Institution.is_active.is_(True)).order_by(Institution.his_code)
    )
    if street_id:
        statement = statement.where(Institution.street_id == street_id)
    if q:
        statement = statement.where(
            or_(
                Institution.name.contains(q, autoescape=True),
                Institution.address.contains(q, autoescape=True),
            )
        )
    return paginate(statement, page, size)


def get_institution(institution_id: uuid.UUID) -> Institution:
    centre = db.session.get(Institution, institution_id)
    if centre is None:
        raise NotFound("未找到该社康中心")
    return centre


def update_institution(
    actor: Principal, institution_id: uuid.UUID, changes: Mapping[str, Any]
) -> Institution:
    """District admins edit any centre; a centre admin edits only their own (404 otherwise)."""
    centre = get_institution(institution_id)
    if not actor.is_district and actor.institution_id != centre.id:
        # Answered like a missing centre; audited as a denied access to an existing one.
        audit.record(
            "update",
            "institution",
            centre.id,
            result=audit.DENIED,
            purpose="cross_centre_access",
            durable=True,
        )
        raise NotFound("未找到该社康中心")
    for key, value in changes.items():
        setattr(centre, key, value)
    # The public doctor library shows centre addresses and opening hours.
    from app.doctors.services.library_cache import invalidate as invalidate_doctor_library

    invalidate_doctor_library()
    audit.record(
        "update", "institution", centre.id, institution_id=centre.id, detail={"fields": sorted(changes)}
    )
    return centre


def list_streets() -> list[Street]:
    return list(db.session.execute(select(Street).order_by(Street.code)).scalars())
