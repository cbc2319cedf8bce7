"""Resident rules at the service level: registration, duplicates, encryption at rest, blind-index
lookup, search, population groups, guardians under 14, status machine and change history."""

from __future__ import annotations

import re
import uuid
from datetime import date

import pytest
import time_machine
from sqlalchemy import func, select, text

from app.accounts.models import StaffUser
from app.core.audit import AuditEvent
from app.core.db import Base, commit, db
from app.core.errors import BusinessRuleViolation, Conflict, InvalidTransition, NotFound, PermissionDenied
from app.institutions.models import Institution
from app.residents import services
from app.residents.models import Resident, ResidentChange
from tests.factories import as_principal, grant
from tests.factories_residents import make_household, make_resident, random_id_number, random_mobile

ID_RE = re.compile(r"\d{17}[\dXx]")
PHONE_RE = re.compile(r"1[3-9]\d{9}")
UUID_RE = re.compile(r"[0-9a-f]{64}|[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}", re.I)


def _create(user: StaffUser, **overrides: object) -> Resident:
    values: dict[str, object] = {
        "name": "张三丰",
        "id_number": random_id_number(date(1960, 5, 17), "male"),
        "current_address": "深圳市罗湖区桂园街道老围社区1栋101",
        "community_id": None,
        "phone": random_mobile(),
        "registered_address": "湖南省长沙市芙蓉区某路2号",
    }
    values.update(overrides)
    with as_principal(user) as actor:
        if values["community_id"] is None:
            centre = db.session.get(Institution, user.institution_id)
            assert centre is not None
            values["community_id"] = centre.community_id
        resident = services.create_resident(actor, **values)  # type: ignore[arg-type]
        commit()
    return resident


def _count() -> int:
    return db.session.execute(select(func.count()).select_from(Resident)).scalar_one()


# --- registration ---------------------------------------------------------------------------


def test_registration_derives_sex_birth_date_and_initials(nurse: StaffUser, centre: Institution) -> None:
    number = random_id_number(date(1960, 5, 17), "male")
    resident = _create(nurse, id_number=number[:-1] + number[-1].lower())
    assert resident.institution_id == centre.id
    assert (resident.sex, resident.birth_date, resident.name_initials) == ("male", date(1960, 5, 17), "zsf")
    assert resident.id_number == number.upper()
    assert resident.street_id == centre.street_id and resident.status == "active"
    change = db.session.execute(
        select(ResidentChange).where(ResidentChange.resident_id == resident.id)
    ).scalar_one()
    assert change.action == "created" and "id_number" in change.fields
    assert change.actor == f"staff:{nurse.id}" and change.actor_role == "nurse"


def test_a_duplicate_id_number_is_409_naming_only_the_managing_centre(
    nurse: StaffUser, other_centre: Institution
) -> None:
    existing = make_resident(other_centre, name="李四")
    before = _count()
    with pytest.raises(Conflict) as refused:
        _create(nurse, id_number=existing.id_number.lower())
    assert refused.value.code == "resident_exists"
    assert other_centre.name in refused.value.message
    for secret in (existing.name, existing.id_number, existing.phone or "", str(existing.id)):
        assert secret not in refused.value.message
    assert "本中心" not in refused.value.message
    assert _count() == before


def test_a_duplicate_in_the_own_centre_says_so(nurse: StaffUser, resident: Resident) -> None:
    with pytest.raises(Conflict, match="本中心建档") as refused:
        _create(nurse, id_number=resident.id_number)
    assert refused.value.code == "resident_exists"


def test_the_database_itself_refuses_a_second_row_with_the_same_id_number(centre: Institution) -> None:
    first = make_resident(centre)
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
        make_resident(centre, id_number=first.id_number)
    db.session.rollback()


def test_a_bad_check_digit_is_a_422_on_the_id_number(nurse: StaffUser) -> None:
    good = random_id_number()
    bad = good[:-1] + ("1" if good[-1] != "1" else "2")
    with pytest.raises(BusinessRuleViolation) as refused:
        _create(nurse, id_number=bad)
    assert refused.value.errors == {"id_number": ["身份证号码校验位不正确，请核对后重新输入"]}


def test_centre_staff_cannot_register_into_another_centre(
    nurse: StaffUser, other_centre: Institution
) -> None:
    with pytest.raises(PermissionDenied):
        _create(nurse, institution_id=other_centre.id)


def test_district_staff_must_name_the_centre(district_admin: StaffUser, centre: Institution) -> None:
    with pytest.raises(BusinessRuleViolation) as refused:
        _create(district_admin, community_id=centre.community_id)
    assert refused.value.code == "institution_required"
    resident = _create(district_admin, community_id=centre.community_id, institution_id=centre.id)
    assert resident.institution_id == centre.id


# --- encryption at rest (DATA-01) -----------------------------------------------------------


def test_personal_fields_are_encrypted_at_rest(nurse: StaffUser, centre: Institution) -> None:
    parent = make_resident(centre, age=40)
    resident = _create(
        nurse,
        id_number=random_id_number(date(2015, 3, 3), "female"),
        guardian_id=parent.id,
        guardian_relationship="mother",
        population_groups=["disabled"],
    )
    with as_principal(nurse) as actor:
        services.update_resident(
            actor, resident.id, {"phone": random_mobile(), "current_address": "新地址9号"}
        )
        services.grant_consent(
            actor,
            resident.id,
            purpose="online_services",
            text_version="1",
            granted_by="guardian",
            channel="desk",
        )
        commit()
    canaries = [
        resident.id_number,
        resident.phone or "",
        resident.current_address,
        resident.registered_address or "",
    ]
    for table in Base.metadata.sorted_tables:
        rows = db.session.execute(text(f'SELECT * FROM "{table.name}"')).all()  # noqa: S608 - our table names
        for row in rows:
            for value in row:
                cell = UUID_RE.sub("", str(value))  # ids and hashes are not personal data
                assert not ID_RE.search(cell), f"{table.name}: {cell}"
                assert not PHONE_RE.search(cell), f"{table.name}: {cell}"
                for canary in canaries:
                    assert canary not in cell, f"{table.name} holds {canary!r}"
    raw = db.session.execute(
        text("SELECT id_number, phone, current_address, registered_address FROM residents WHERE id = :id"),
        {"id": resident.id if db.dialect == "postgresql" else resident.id.hex},
    ).one()
    assert all(value.startswith("v1:") for value in raw)


# --- lookup and search ----------------------------------------------------------------------


def test_find_by_id_number_is_an_unscoped_exact_lookup(nurse: StaffUser, other_centre: Institution) -> None:
    elsewhere = make_resident(other_centre)
    with as_principal(nurse):
        found = services.find_by_id_number(f" {elsewhere.id_number.lower()} ")
        assert found is not None and found.id == elsewhere.id
        assert services.find_by_id_number(random_id_number()) is None
        assert services.find_by_id_number("") is None


def _search(user: StaffUser, **criteria: object) -> list[uuid.UUID]:
    with as_principal(user):
        page = services.search_residents(page=1, size=100, **criteria)  # type: ignore[arg-type]
        commit()
    return [r.id for r in page.items]


def test_search_by_id_number_phone_name_and_initials(
    nurse: StaffUser, centre: Institution, other_centre: Institution
) -> None:
    zhang = make_resident(centre, name="张三丰", phone="13812345678")
    zeng = make_resident(centre, name="曾小明")
    other = make_resident(other_centre, name="张三丰")
    assert _search(nurse, q=zhang.id_number) == [zhang.id]
    assert _search(nurse, id_number=zhang.id_number.lower()) == [zhang.id]
    assert _search(nurse, q="+86 138-1234-5678") == [zhang.id]
    assert _search(nurse, phone="13812345678") == [zhang.id]
    assert _search(nurse, q="zsf") == [zhang.id]
    assert _search(nurse, q="ZS") == [zhang.id]
    assert _search(nurse, name="三丰") == [zhang.id]
    assert _search(nurse, q="zxm") == [zeng.id] == _search(nurse, q="cxm")
    assert other.id not in _search(nurse, q="zsf")
    assert _search(nurse, q=other.id_number) == []


def test_search_by_household_community_and_status(nurse: StaffUser, centre: Institution) -> None:
    head, child = make_resident(centre, age=40), make_resident(centre, age=10)
    loner = make_resident(centre, status="moved_out")
    household = make_household(head, (child, "child"))
    assert sorted(_search(nurse, household_id=household.id)) == sorted([head.id, child.id])
    assert loner.id in _search(nurse, community_id=centre.community_id)
    assert _search(nurse, status="moved_out") == [loner.id]


def test_search_totals_count_only_the_callers_centre(
    nurse: StaffUser, district_admin: StaffUser, centre: Institution, other_centre: Institution
) -> None:
    for _ in range(3):
        make_resident(other_centre, name="王五")
    mine = make_resident(centre, name="王五")
    with as_principal(nurse):
        page = services.search_residents(page=1, size=1, name="王五")
        assert (page.total, [r.id for r in page.items]) == (1, [mine.id])
    with as_principal(district_admin):
        assert services.search_residents(page=1, size=1, name="王五").total == 4


def test_a_search_is_audited_once_without_the_values_searched(nurse: StaffUser, resident: Resident) -> None:
    start = db.session.execute(select(func.count()).select_from(AuditEvent)).scalar_one()
    assert _search(nurse, q=resident.id_number) == [resident.id]
    events = list(db.session.execute(select(AuditEvent).order_by(AuditEvent.seq).offset(start)).scalars())
    assert [(e.action, e.object_type) for e in events] == [("search", "resident")]
    assert events[0].detail["criteria"] == ["q:id_number"]
    assert events[0].detail["resident_ids"] == [str(resident.id)]
    assert resident.id_number not in str(events[0].detail)


# --- population groups and ages -------------------------------------------------------------


@time_machine.travel(date(2025, 6, 1))
def test_age_groups_are_derived_not_stored(centre: Institution) -> None:
    elderly = make_resident(centre, birth_date=date(1960, 6, 1), population_groups={"hypertension"})
    almost = make_resident(centre, birth_date=date(1960, 6, 2))
    child = make_resident(centre, birth_date=date(2018, 6, 2))
    adult = make_resident(centre, birth_date=date(1990, 1, 1))
    assert services.age_on(elderly, date(2025, 6, 1)) == 65
    assert services.population_groups(elderly) == {"elderly_65", "hypertension"}
    assert services.population_groups(almost) == {"general"}
    assert services.population_groups(almost, on=date(2025, 6, 2)) == {"elderly_65"}
    assert services.population_groups(child) == {"child_0_6"}
    assert services.population_groups(child, on=date(2025, 6, 2)) == {"general"}
    assert services.population_groups(adult) == {"general"}
    assert elderly.stored_groups == {"hypertension"}


def test_derived_groups_cannot_be_stored_and_maternal_is_for_women(nurse: StaffUser) -> None:
    with pytest.raises(BusinessRuleViolation, match="由出生日期自动判定"):
        _create(nurse, population_groups=["elderly_65"])
    with pytest.raises(BusinessRuleViolation, match="仅适用于女性"):
        _create(nurse, population_groups=["maternal"])


def test_special_groups_are_for_category_holders_and_survive_other_staffs_edits(
    nurse: StaffUser, doctor: StaffUser, centre: Institution
) -> None:
    """DATA-05: each special group needs its own category permission (a grant, not a role)."""
    resident = make_resident(centre, age=40, population_groups={"tuberculosis", "hypertension"})
    for user in (nurse, doctor):
        with pytest.raises(PermissionDenied) as refused:
            _create(user, population_groups=["severe_mental_disorder"])
        assert refused.value.code == "special_group_not_permitted"
        assert "严重精神障碍" in refused.value.message
    with as_principal(doctor) as actor:
        assert services.visible_groups(resident, actor) == ["hypertension"]
        services.update_resident(actor, resident.id, {"population_groups": ["diabetes_t2"]})
        commit()
    assert resident.stored_groups == {"diabetes_t2", "tuberculosis"}
    grant(doctor, "health:smd")
    with as_principal(doctor) as actor:  # 严重精神障碍 only: 肺结核 stays hidden and kept
        assert services.visible_groups(resident, actor) == ["diabetes_t2"]
        services.update_resident(actor, resident.id, {"population_groups": ["severe_mental_disorder"]})
        commit()
        other = make_resident(centre, age=50)
        with pytest.raises(PermissionDenied, match="肺结核"):
            services.update_resident(actor, other.id, {"population_groups": ["tuberculosis"]})
    assert resident.stored_groups == {"severe_mental_disorder", "tuberculosis"}
    grant(nurse, "health:tb", "health:smd")
    with as_principal(nurse) as actor:
        assert services.visible_groups(resident, actor) == ["severe_mental_disorder", "tuberculosis"]
        services.update_resident(actor, resident.id, {"population_groups": []})
        commit()
    assert resident.stored_groups == set()


def test_hidden_special_groups_leave_no_gap(
    nurse: StaffUser, cashier: StaffUser, centre: Institution
) -> None:
    only_special = make_resident(centre, age=40, population_groups={"severe_mental_disorder"})
    with as_principal(nurse) as actor:
        assert services.visible_groups(only_special, actor) == ["general"]
    with as_principal(cashier) as actor:
        assert services.visible_groups(only_special, actor) is None


# --- guardians ------------------------------------------------------------------------------


def test_under_14_needs_a_guardian(nurse: StaffUser, centre: Institution) -> None:
    child_id = random_id_number(date(2016, 1, 1), "female")
    before = _count()
    with pytest.raises(BusinessRuleViolation) as refused:
        _create(nurse, name="王小花", id_number=child_id)
    assert refused.value.code == "guardian_required" and "guardian_id" in refused.value.errors
    assert _count() == before
    mother = make_resident(centre, age=35, sex="female")
    child = _create(
        nurse, name="王小花", id_number=child_id, guardian_id=mother.id, guardian_relationship="mother"
    )
    assert (child.guardian_id, child.guardian_relationship) == (mother.id, "mother")


def test_a_14_year_old_needs_none(nurse: StaffUser) -> None:
    teenager = _create(nurse, id_number=random_id_number(date(2010, 1, 1)))
    assert teenager.guardian_id is None


def test_a_guardian_must_be_an_adult_of_the_callers_scope(
    nurse: StaffUser, centre: Institution, other_centre: Institution
) -> None:
    child_id = random_id_number(date(2016, 1, 1))
    minor = make_resident(centre, age=16)
    elsewhere = make_resident(other_centre, age=40)
    with pytest.raises(BusinessRuleViolation, match="年满 18"):
        _create(nurse, id_number=child_id, guardian_id=minor.id, guardian_relationship="sibling")
    with pytest.raises(BusinessRuleViolation) as refused:
        _create(nurse, id_number=child_id, guardian_id=elsewhere.id, guardian_relationship="father")
    assert refused.value.code == "guardian_not_found"


def test_a_guardian_under_14_can_be_replaced_not_removed(nurse: StaffUser, centre: Institution) -> None:
    mother, father = make_resident(centre, age=35), make_resident(centre, age=36)
    child = make_resident(centre, age=8, guardian=mother)
    adult = make_resident(centre, age=30, guardian=father)
    with as_principal(nurse) as actor:
        with pytest.raises(Conflict) as refused:
            services.remove_guardian(actor, child.id)
        assert refused.value.code == "guardian_required"
        services.set_guardian(actor, child.id, guardian_id=father.id, relationship="father")
        assert child.guardian_id == father.id
        services.remove_guardian(actor, adult.id, reason="成年，不再需要监护")
        assert adult.guardian_id is None
        with pytest.raises(BusinessRuleViolation, match="不能是本人"):
            services.set_guardian(actor, father.id, guardian_id=father.id, relationship="other_relative")
        commit()


# --- updates and history --------------------------------------------------------------------


def test_an_update_records_field_names_never_values(nurse: StaffUser, resident: Resident) -> None:
    new_phone, new_address = random_mobile(), "深圳市罗湖区新址路88号"
    with as_principal(nurse) as actor:
        services.update_resident(
            actor,
            resident.id,
            {"phone": new_phone, "current_address": new_address, "name": "张三丰"},
            reason="搬家",
        )
        commit()
    change = db.session.execute(
        select(ResidentChange).where(
            ResidentChange.resident_id == resident.id, ResidentChange.action == "updated"
        )
    ).scalar_one()
    assert change.fields == ["current_address", "phone"] and change.reason == "搬家"
    row = db.session.execute(text("SELECT * FROM resident_changes WHERE id = :id"), {"id": change.id}).one()
    assert new_phone not in str(row) and new_address not in str(row)
    events = db.session.execute(
        select(AuditEvent).where(
            AuditEvent.action == "update", AuditEvent.subject_resident_id == str(resident.id)
        )
    ).scalars()
    assert [e.detail["fields"] for e in events] == [["current_address", "phone"]]


def test_changing_the_id_number_re_derives_and_stays_unique(
    nurse: StaffUser, resident: Resident, centre: Institution
) -> None:
    other = make_resident(centre)
    new_number = random_id_number(date(1961, 2, 3), "female")
    with as_principal(nurse) as actor:
        with pytest.raises(Conflict):
            services.update_resident(actor, resident.id, {"id_number": other.id_number})
        services.update_resident(actor, resident.id, {"id_number": new_number})
        commit()
    assert (resident.sex, resident.birth_date, resident.id_number) == ("female", date(1961, 2, 3), new_number)
    with as_principal(nurse) as actor, pytest.raises(BusinessRuleViolation) as refused:
        services.update_resident(actor, resident.id, {"sex": "male"})
    assert refused.value.errors.keys() == {"sex"}


def test_another_centres_resident_is_404_and_the_attempt_is_audited(
    other_doctor: StaffUser, resident: Resident
) -> None:
    with as_principal(other_doctor) as actor:
        with pytest.raises(NotFound):
            services.update_resident(actor, resident.id, {"name": "李四"})
        db.session.rollback()
        from app.core import audit

        assert audit.write_durable_events()
        commit()
    denied = db.session.execute(
        select(AuditEvent).where(AuditEvent.object_id == str(resident.id), AuditEvent.result == "denied")
    ).scalar_one()
    assert (denied.action, denied.actor_id) == ("update", str(other_doctor.id))


# --- status ---------------------------------------------------------------------------------


def test_status_machine(nurse: StaffUser, resident: Resident) -> None:
    with as_principal(nurse) as actor:
        services.change_status(actor, resident.id, status="moved_out", effective_date=date(2024, 3, 1))
        assert (resident.status, resident.status_date) == ("moved_out", date(2024, 3, 1))
        services.change_status(
            actor, resident.id, status="active", effective_date=date(2024, 9, 1), reason="迁回"
        )
        services.change_status(actor, resident.id, status="deceased", effective_date=date(2025, 1, 2))
        with pytest.raises(InvalidTransition):
            services.change_status(actor, resident.id, status="active", effective_date=date(2025, 1, 3))
        commit()
    changes = db.session.execute(
        select(ResidentChange.detail)
        .where(ResidentChange.resident_id == resident.id, ResidentChange.action == "status_changed")
        .order_by(ResidentChange.id)
    ).scalars()
    assert [(d["from"], d["to"]) for d in changes] == [
        ("active", "moved_out"),
        ("moved_out", "active"),
        ("active", "deceased"),
    ]


def test_status_dates_must_be_plausible(nurse: StaffUser, resident: Resident) -> None:
    with as_principal(nurse) as actor:
        with pytest.raises(BusinessRuleViolation, match="晚于今天"):
            services.change_status(actor, resident.id, status="deceased", effective_date=date(2999, 1, 1))
        with pytest.raises(BusinessRuleViolation, match="早于出生日期"):
            services.change_status(actor, resident.id, status="deceased", effective_date=date(1900, 1, 1))


def test_legacy_minors_without_a_guardian_can_still_be_corrected(
    nurse: StaffUser, centre: Institution
) -> None:
    """Imported records may lack a guardian: unrelated corrections go through; a corrected birth
    date that makes the resident under 14 needs the guardian first."""
    legacy = make_resident(centre, age=10)
    adult = make_resident(centre, age=30)
    with as_principal(nurse) as actor:
        services.update_resident(actor, legacy.id, {"phone": random_mobile()})
        with pytest.raises(BusinessRuleViolation) as refused:
            services.update_resident(actor, adult.id, {"id_number": random_id_number(date(2016, 6, 1))})
        assert refused.value.code == "guardian_required"
