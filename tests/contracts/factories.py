"""Factories for the contracts domain's tests (no HTTP). Shared by every contracts test file.

    from tests.contracts.factories import make_basic_package, make_package, make_template, signing_world

    basic = make_basic_package()                                  # district-wide, published, free
    elderly = make_package("elderly", target_groups=["elderly_65"], min_age=65, price_fen=12000,
                           subsidy_fen=10000, self_pay_fen=2000)
    template = make_template()                                    # published, standard clauses
    world = signing_world()                                       # centre, doctor, nurse, team, resident, ...

Every call commits (like `tests.factories.make_centre`), inside the test's rolled-back transaction.
Package and template codes get a unique suffix unless `code` is given, so factories can be called
any number of times in one test.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from app.accounts.models import StaffUser
from app.contracts.models import (
    AgreementClause,
    AgreementTemplate,
    ClauseKind,
    PackageItem,
    PackageKind,
    PackageStatus,
    ServicePackage,
    TemplateStatus,
)
from app.core import clock
from app.core.auth import Role
from app.core.db import commit, db
from app.doctors.models import Doctor
from app.institutions.models import Institution
from app.residents.models import Resident
from app.teams.models import Team, TeamRole
from tests.factories import make_centre, make_staff
from tests.factories_doctors import make_doctor, make_nurse, make_team
from tests.factories_residents import make_resident

__all__ = [
    "STANDARD_CLAUSES",
    "SigningWorld",
    "make_basic_package",
    "make_package",
    "make_template",
    "signing_world",
]

_counter = itertools.count(1)

# (key, kind, title, text, personalisable): the clauses of a standard agreement, with placeholders.
STANDARD_CLAUSES: tuple[tuple[str, str, str, str, bool], ...] = (
    (
        "parties",
        ClauseKind.PARTIES,
        "签约双方",
        "甲方（签约居民）：{resident_name}\n乙方（家庭医生团队）：{centre_name}{team_name}，签约医生：{doctor_name}。"
        "协议编号：{contract_no}。",
        False,
    ),
    (
        "services",
        ClauseKind.SERVICES,
        "服务内容",
        "乙方为甲方提供以下服务包的服务：{packages}。",
        True,
    ),
    ("period", ClauseKind.PERIOD, "服务期限", "本协议服务期自{period_start}起至{period_end}止。", False),
    (
        "fees",
        ClauseKind.FEES,
        "服务费用",
        "服务费合计{price_yuan}元，其中财政补助{subsidy_yuan}元，居民自付{self_pay_yuan}元。",
        False,
    ),
    (
        "rights_duties",
        ClauseKind.RIGHTS_DUTIES,
        "权利与义务",
        "甲方有权获得约定的服务，应如实提供健康信息；乙方应按约定提供服务。",
        False,
    ),
    (
        "privacy",
        ClauseKind.PRIVACY,
        "隐私与数据共享",
        "乙方依法保护甲方个人信息，经甲方同意后与区域全民健康信息平台共享健康数据。",
        False,
    ),
    (
        "termination",
        ClauseKind.TERMINATION,
        "协议解除",
        "甲方可随时申请解约；如有疑问请致电{centre_phone}。",
        False,
    ),
)


def _items(specs: Sequence[dict[str, Any]] | None, code: str) -> list[PackageItem]:
    if specs is None:
        specs = [
            {
                "code": f"{code}-item",
                "name": "健康咨询",
                "service_type": "consultation",
                "times_per_period": 1,
            }
        ]
    items = []
    for sort, spec in enumerate(specs):
        values = {"times_per_period": 1, "sort": sort, **spec}
        items.append(PackageItem(id=uuid.uuid4(), **values))
    return items


def make_package(
    code: str | None = None,
    *,
    kind: str = PackageKind.PERSONALISED,
    name: str | None = None,
    target_groups: Sequence[str] = (),
    min_age: int | None = None,
    max_age: int | None = None,
    sex: str | None = None,
    price_fen: int | None = None,
    subsidy_fen: int = 0,
    self_pay_fen: int = 0,
    items: Sequence[dict[str, Any]] | None = None,
    institution_id: uuid.UUID | None = None,
    status: str = PackageStatus.PUBLISHED,
    version: int = 1,
    valid_from: date | None = None,
    valid_to: date | None = None,
    description: str | None = None,
) -> ServicePackage:
    """A package (published by default). `price_fen` defaults to subsidy + self-pay; `items` are
    dicts of PackageItem columns (code, name, service_type, times_per_period, due_within_days, ...)."""
    n = next(_counter)
    code = code or f"pkg-{n}"
    package = ServicePackage(
        id=uuid.uuid4(),
        code=code,
        version=version,
        name=name or f"测试服务包{n}",
        kind=str(kind),
        status=str(status),
        institution_id=institution_id,
        description=description,
        target_groups=list(target_groups),
        min_age=min_age,
        max_age=max_age,
        sex=sex,
        price_fen=subsidy_fen + self_pay_fen if price_fen is None else price_fen,
        subsidy_fen=subsidy_fen,
        self_pay_fen=self_pay_fen,
        valid_from=valid_from,
        valid_to=valid_to,
        published_at=clock.now() if status == PackageStatus.PUBLISHED else None,
    )
    package.items = _items(items, code)
    db.session.add(package)
    commit()
    return package


def make_basic_package(
    institution_id: uuid.UUID | None = None,
    price_fen: int = 0,
    subsidy_fen: int = 0,
    self_pay_fen: int = 0,
    **kw: Any,
) -> ServicePackage:
    """A published basic package (基础包), district-wide unless `institution_id`; free by default."""
    n = next(_counter)
    kw.setdefault("code", f"basic-{n}")
    kw.setdefault("name", "基础服务包")
    kw.setdefault(
        "items",
        [
            {
                "code": "record",
                "name": "建立健康档案",
                "service_type": "health_record",
                "due_within_days": 30,
            },
            {"code": "assessment", "name": "年度健康评估", "service_type": "health_assessment"},
            {
                "code": "education",
                "name": "健康教育",
                "service_type": "health_education",
                "times_per_period": 2,
            },
        ],
    )
    if price_fen == 0 and (subsidy_fen or self_pay_fen):
        price_fen = subsidy_fen + self_pay_fen
    return make_package(
        kind=PackageKind.BASIC,
        institution_id=institution_id,
        price_fen=price_fen,
        subsidy_fen=subsidy_fen,
        self_pay_fen=self_pay_fen,
        **kw,
    )


def make_template(
    code: str | None = None,
    *,
    title: str = "罗湖区家庭医生签约服务协议书",
    institution_id: uuid.UUID | None = None,
    status: str = TemplateStatus.PUBLISHED,
    version: int = 1,
    clauses: Sequence[tuple[str, str, str, str, bool]] = STANDARD_CLAUSES,
) -> AgreementTemplate:
    """A template (published by default) with the standard clauses: placeholders in every clause
    but privacy; `services` is personalisable. `clauses`: (key, kind, title, text, personalisable)."""
    n = next(_counter)
    template = AgreementTemplate(
        id=uuid.uuid4(),
        code=code or f"tpl-{n}",
        version=version,
        title=title,
        status=str(status),
        institution_id=institution_id,
        published_at=clock.now() if status == TemplateStatus.PUBLISHED else None,
    )
    template.clauses = [
        AgreementClause(
            id=uuid.uuid4(),
            key=key,
            kind=str(kind),
            title=clause_title,
            text=text,
            personalisable=personalisable,
            sort=sort,
        )
        for sort, (key, kind, clause_title, text, personalisable) in enumerate(clauses)
    ]
    db.session.add(template)
    commit()
    return template


@dataclass
class SigningWorld:
    """Everything a signing needs, in one centre. `doctor_user`/`nurse_user` are the staff accounts
    linked to `doctor`/`nurse`; `admin` is the centre's admin."""

    centre: Institution
    doctor: Doctor
    nurse: Doctor
    team: Team
    resident: Resident
    basic: ServicePackage
    template: AgreementTemplate
    doctor_user: StaffUser
    nurse_user: StaffUser
    admin: StaffUser
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def packages(self) -> list[ServicePackage]:
        return [self.basic]


def signing_world(centre: Institution | None = None) -> SigningWorld:
    """A centre with an approved doctor (valid 医保医师编码, linked staff account) leading a team
    with a nurse, an adult resident (40) of the centre, a published district basic package and a
    published agreement template of the centre (so `current_template(centre.id)` returns it)."""
    centre = centre or make_centre()
    doctor_user = make_staff(Role.DOCTOR, centre)
    nurse_user = make_staff(Role.NURSE, centre)
    admin = make_staff(Role.CENTRE_ADMIN, centre)
    doctor = make_doctor(centre, staff_user=doctor_user)
    nurse = make_nurse(centre, staff_user=nurse_user)
    team = make_team(centre, members=[(doctor, TeamRole.GP.value, True), (nurse, TeamRole.NURSE.value)])
    resident = make_resident(centre, age=40)
    basic = make_basic_package()
    template = make_template(institution_id=centre.id)
    return SigningWorld(
        centre=centre,
        doctor=doctor,
        nurse=nurse,
        team=team,
        resident=resident,
        basic=basic,
        template=template,
        doctor_user=doctor_user,
        nurse_user=nurse_user,
        admin=admin,
    )
