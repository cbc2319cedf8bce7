"""Resident factories for every domain's tests (import them; no HTTP, no principal needed).

    from tests.factories_residents import make_resident, random_id_number

    child = make_resident(centre, birth_date=date(2022, 5, 1), guardian=parent)
    elderly = make_resident(centre, age=70, population_groups={"hypertension"})

`make_resident` writes the row directly (like `tests.factories.make_staff`) with a valid random
身份证 number whose checksum is computed by python-stdnum, so it passes the same validation as the
API. Use the services or the HTTP API when the behaviour under test is registration itself.
"""

from __future__ import annotations

import itertools
import random
import uuid
from datetime import date, timedelta
from typing import Any

from stdnum.cn import ric

from app.core import clock
from app.core.db import commit, db
from app.institutions.models import Institution
from app.residents.models import (
    HEAD,
    Household,
    HouseholdMember,
    IdType,
    Resident,
    ResidentConsent,
    ResidentStatus,
    parse_identity,
)

__all__ = [
    "add_to_household",
    "make_consent",
    "make_household",
    "make_resident",
    "random_id_number",
    "random_mobile",
]

_random = random.Random()
_sequence = itertools.count(1)
# Region codes of Luohu, elsewhere in Shenzhen and other provinces (valid province prefixes).
_REGIONS = ("440303", "440303", "440303", "440304", "440306", "430102", "360426", "110101")


def random_id_number(
    birth_date: date | None = None, sex: str | None = None, region: str | None = None
) -> str:
    """A valid 18-character 身份证号 (checksum by `stdnum.cn.ric`), unique within the test run."""
    born = birth_date or date(1950, 1, 1) + timedelta(days=_random.randrange(0, 365 * 60))
    # The 3-digit sequence: odd for men, even for women; a counter keeps numbers unique.
    n = next(_sequence) % 500
    digit = 2 * n + (1 if (sex or _random.choice(("male", "female"))) == "male" else 0)
    seq = f"{digit % 1000:03d}"
    body = f"{region or _random.choice(_REGIONS)}{born:%Y%m%d}{seq}"
    return body + ric.calc_check_digit(body + "0")


def random_mobile() -> str:
    """A mainland mobile number (11 digits, 13x-19x)."""
    return f"1{_random.choice('3456789')}{_random.randrange(0, 10**9):09d}"


def make_resident(institution: Institution, **overrides: Any) -> Resident:
    """A resident of `institution`, committed. Overrides: any Resident column, plus
    `age` (years today), `population_groups` (stored codes) and `guardian` (a Resident).
    Sex and birth date stay consistent with the generated ID number."""
    age = overrides.pop("age", None)
    groups = set(overrides.pop("population_groups", ()))
    guardian: Resident | None = overrides.pop("guardian", None)
    birth_date: date | None = overrides.pop("birth_date", None)
    if birth_date is None and age is not None:
        birth_date = date(clock.today_local().year - age, 1, 1)  # the birthday has passed: exactly `age`
    sex: str = overrides.pop("sex", None) or _random.choice(("male", "female"))
    id_type = overrides.get("id_type", IdType.RESIDENT_ID_CARD.value)
    if id_type != IdType.RESIDENT_ID_CARD.value:
        birth_date = birth_date or date(1980, 6, 15)
    elif "id_number" in overrides:  # sex and birth date follow from the number given
        identity = parse_identity(id_type, overrides["id_number"])
        overrides["id_number"], sex, birth_date = identity.id_number, identity.sex, identity.birth_date
    else:
        birth_date = birth_date or date(1950, 1, 1) + timedelta(days=_random.randrange(0, 365 * 50))
        overrides["id_number"] = random_id_number(birth_date, sex)
    n = next(_sequence)
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "institution_id": institution.id,
        "name": f"测试居民{n}",
        "id_type": id_type,
        "sex": sex,
        "birth_date": birth_date,
        "phone": random_mobile(),
        "current_address": f"深圳市罗湖区测试路{n}号{n % 30 + 1}栋",
        "registered_address": "广东省深圳市罗湖区户籍路1号",
        "street_id": institution.street_id,
        "community_id": institution.community_id,
        "status": ResidentStatus.ACTIVE.value,
    }
    if guardian is not None:
        values.update(guardian_id=guardian.id, guardian_relationship="mother")
    values.update(overrides)
    resident = Resident(**values)
    resident.set_stored_groups(groups)
    db.session.add(resident)
    commit()
    return resident


def make_household(head: Resident, *members: tuple[Resident, str]) -> Household:
    """A household headed by `head`, with (resident, relationship) members; committed."""
    household = Household(id=uuid.uuid4(), institution_id=head.institution_id)
    household.members.append(
        HouseholdMember(
            id=uuid.uuid4(), institution_id=head.institution_id, resident_id=head.id, relationship=HEAD
        )
    )
    for resident, relationship in members:
        household.members.append(
            HouseholdMember(
                id=uuid.uuid4(),
                institution_id=head.institution_id,
                resident_id=resident.id,
                relationship=relationship,
            )
        )
    db.session.add(household)
    commit()
    return household


def add_to_household(
    household: Household, resident: Resident, relationship: str = "child"
) -> HouseholdMember:
    member = HouseholdMember(
        id=uuid.uuid4(),
        institution_id=household.institution_id,
        resident_id=resident.id,
        relationship=relationship,
    )
    household.members.append(member)
    commit()
    return member


def make_consent(
    resident: Resident,
    purpose: str = "online_services",
    *,
    text_version: str = "1",
    granted_by: str = "self",
    channel: str = "desk",
) -> ResidentConsent:
    """An active consent record (bypassing the age/guardian rules of `grant_consent`)."""
    consent = ResidentConsent(
        id=uuid.uuid4(),
        resident_id=resident.id,
        purpose=purpose,
        text_version=text_version,
        legal_basis="separate_consent" if purpose != "sms_notifications" else "consent",
        granted_by=granted_by,
        guardian_id=resident.guardian_id if granted_by == "guardian" else None,
        channel=channel,
    )
    db.session.add(consent)
    commit()
    return consent
