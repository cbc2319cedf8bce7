"""Factories for doctors and teams, for any domain's tests (no HTTP).

    from tests.factories_doctors import make_doctor, make_nurse, make_team

    gp = make_doctor(centre)                     # approved, 在岗, valid 医保医师编码, 主治医师/全科
    pending = make_doctor(centre, approved=False)
    team = make_team(centre)                     # a new GP (leader) + a nurse: can sign
    team = make_team(centre, members=[gp, (nurse, "nurse"), (other, "specialist", False)])

Every call commits (like `tests.factories.make_centre`), inside the test's rolled-back transaction.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Sequence
from datetime import date
from typing import Any

from app.accounts.models import StaffUser
from app.core.db import commit, db
from app.doctors.models import Doctor, PracticeStatus, ReviewStatus, title_series
from app.institutions.models import Institution
from app.teams.models import Team, TeamMember, TeamRole, TeamStatus

_counter = itertools.count(1)
_SURNAMES = "张王李赵刘陈杨黄周吴"
_GIVEN = "伟芳娜敏静丽强磊军洋"

MemberSpec = Doctor | tuple[Doctor, str] | tuple[Doctor, str, bool]

__all__ = ["licence_for", "make_doctor", "make_nurse", "make_team", "mi_code_for"]


def mi_code_for(n: int) -> str:
    return f"D440303{n:06d}"


def licence_for(n: int) -> str:
    return f"1104403{n:08d}"


def make_doctor(institution: Institution, approved: bool = True, **kw: Any) -> Doctor:
    """A registration of `institution`. Keyword arguments override any column (e.g. `name`,
    `title`, `mi_doctor_code=None`, `practice_status="suspended"`, `capacity_override=10`,
    `signed_count=3`, `staff_user=<StaffUser>`, `specialties=[...]`)."""
    n = next(_counter)
    staff: StaffUser | None = kw.pop("staff_user", None)
    title = kw.pop("title", "主治医师")
    series = title_series(title)
    values: dict[str, Any] = {
        "name": _SURNAMES[n % 10] + _GIVEN[(n // 10) % 10] + ("" if n < 100 else str(n)),
        "sex": "male" if n % 2 else "female",
        "birth_date": date(1980, 1 + n % 12, 1 + n % 28),
        "phone": f"137{n:08d}",
        "title": title,
        "practice_licence_no": licence_for(n),
        "practice_scopes": ["护理"] if series == "nursing" else ["全科医学专业"],
        "qualifications": [],
        "specialties": ["高血压管理"],
        "introduction": "从事社区全科工作多年。",
        "mi_doctor_code": mi_code_for(n),
        "status": ReviewStatus.APPROVED.value if approved else ReviewStatus.SUBMITTED.value,
        "practice_status": PracticeStatus.ACTIVE.value,
        "signed_count": 0,
    }
    values.update(kw)
    doctor = Doctor(
        id=uuid.uuid4(),
        institution_id=institution.id,
        staff_user_id=staff.id if staff is not None else None,
        **values,
    )
    db.session.add(doctor)
    commit()
    return doctor


def make_nurse(institution: Institution, approved: bool = True, **kw: Any) -> Doctor:
    kw.setdefault("title", "护师")
    kw.setdefault("specialties", ["慢病随访"])
    return make_doctor(institution, approved, **kw)


def _member(spec: MemberSpec) -> tuple[Doctor, str, bool]:
    if isinstance(spec, Doctor):
        role = TeamRole.NURSE if spec.title_series == "nursing" else TeamRole.GP
        return spec, role.value, False
    if len(spec) == 2:
        return spec[0], spec[1], False
    return spec[0], spec[1], bool(spec[2])  # type: ignore[misc]


def make_team(
    institution: Institution,
    members: Sequence[MemberSpec] | None = None,
    *,
    name: str | None = None,
    capacity_override: int | None = None,
    signed_count: int = 0,
) -> Team:
    """A team of `institution`. `members=None`: a new GP (leader) and a new nurse, so it can sign."""
    n = next(_counter)
    if members is None:
        members = [(make_doctor(institution), TeamRole.GP.value, True), make_nurse(institution)]
    team = Team(
        id=uuid.uuid4(),
        institution_id=institution.id,
        name=name or f"家庭医生团队{n}",
        status=TeamStatus.ACTIVE.value,
        capacity_override=capacity_override,
        signed_count=signed_count,
    )
    db.session.add(team)
    db.session.flush()
    for spec in members:
        doctor, role, leader = _member(spec)
        db.session.add(
            TeamMember(
                id=uuid.uuid4(),
                institution_id=institution.id,
                team_id=team.id,
                doctor_id=doctor.id,
                role=role,
                is_leader=leader,
            )
        )
    commit()
    db.session.expire(team, ["members"])
    return team
