"""Households (one per resident, one head, members of one centre) and transfers of the managing
centre (one record kept, history rows, only the current centre or the district)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from app.accounts.models import StaffUser
from app.core.db import commit, db
from app.core.errors import BusinessRuleViolation, Conflict, NotFound
from app.institutions.models import Institution
from app.residents import services
from app.residents.models import HouseholdMember, Resident, ResidentChange, ResidentTransfer
from tests.factories import as_principal, make_centre
from tests.factories_residents import make_household, make_resident


def _actions(resident: Resident) -> list[str]:
    return list(
        db.session.execute(
            select(ResidentChange.action)
            .where(ResidentChange.resident_id == resident.id)
            .order_by(ResidentChange.id)
        ).scalars()
    )


# --- households -----------------------------------------------------------------------------


def test_create_a_household_and_manage_its_members(nurse: StaffUser, centre: Institution) -> None:
    head, spouse, child = (
        make_resident(centre, age=40),
        make_resident(centre, age=38),
        make_resident(centre, age=15),
    )
    with as_principal(nurse) as actor:
        household = services.create_household(
            actor, head_id=head.id, members=[{"resident_id": spouse.id, "relationship": "spouse"}]
        )
        services.add_member(actor, household.id, resident_id=child.id, relationship="child")
        commit()
        assert {m.resident_id: m.relationship for m in household.members} == {
            head.id: "head",
            spouse.id: "spouse",
            child.id: "child",
        }
        assert household.head is not None and household.head.resident_id == head.id
        assert spouse.membership is not None and spouse.membership.household_id == household.id
        services.change_member_relationship(actor, household.id, child.id, relationship="grandchild")
        services.remove_member(actor, household.id, child.id)
        commit()
    assert [m.resident_id for m in household.members] == [head.id, spouse.id]
    assert _actions(child) == ["household_joined", "household_relationship_changed", "household_left"]


def test_a_resident_is_in_one_household_only(nurse: StaffUser, centre: Institution) -> None:
    head, other_head, child = (make_resident(centre, age=40) for _ in range(3))
    household = make_household(head, (child, "child"))
    with as_principal(nurse) as actor:
        with pytest.raises(Conflict) as refused:
            services.create_household(
                actor, head_id=other_head.id, members=[{"resident_id": child.id, "relationship": "child"}]
            )
        assert refused.value.code == "already_in_household"
        with pytest.raises(Conflict, match="本家庭"):
            services.add_member(actor, household.id, resident_id=child.id, relationship="child")
        with pytest.raises(BusinessRuleViolation, match="户主只能"):
            services.add_member(actor, household.id, resident_id=other_head.id, relationship="head")


def test_members_must_be_of_the_same_centre(
    nurse: StaffUser, centre: Institution, other_centre: Institution
) -> None:
    household = make_household(make_resident(centre, age=40))
    stranger = make_resident(other_centre, age=20)
    with as_principal(nurse) as actor, pytest.raises(BusinessRuleViolation) as refused:
        services.add_member(actor, household.id, resident_id=stranger.id, relationship="other_relative")
    assert refused.value.code == "member_not_found"


def test_the_head_is_changed_with_every_relationship_restated(nurse: StaffUser, centre: Institution) -> None:
    father, mother, son = (
        make_resident(centre, age=70),
        make_resident(centre, age=68),
        make_resident(centre, age=40),
    )
    household = make_household(father, (mother, "spouse"), (son, "child"))
    with as_principal(nurse) as actor:
        with pytest.raises(Conflict) as refused:
            services.remove_member(actor, household.id, father.id)
        assert refused.value.code == "cannot_remove_head"
        with pytest.raises(BusinessRuleViolation) as incomplete:
            services.change_head(
                actor,
                household.id,
                head_id=son.id,
                relationships=[{"resident_id": father.id, "relationship": "parent"}],
            )
        assert incomplete.value.code == "relationships_incomplete"
        services.change_head(
            actor,
            household.id,
            head_id=son.id,
            relationships=[
                {"resident_id": father.id, "relationship": "parent"},
                {"resident_id": mother.id, "relationship": "parent"},
            ],
        )
        commit()
    assert {m.resident_id: m.relationship for m in household.members} == {
        father.id: "parent",
        mother.id: "parent",
        son.id: "head",
    }


def test_the_database_allows_one_head_per_household(centre: Institution) -> None:
    household = make_household(make_resident(centre))
    db.session.add(
        HouseholdMember(
            id=uuid.uuid4(),
            institution_id=centre.id,
            household_id=household.id,
            resident_id=make_resident(centre).id,
            relationship="head",
        )
    )
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
        db.session.flush()
    db.session.rollback()


def test_dissolving_keeps_the_residents(nurse: StaffUser, centre: Institution) -> None:
    head, child = make_resident(centre, age=40), make_resident(centre, age=10)
    household = make_household(head, (child, "child"))
    with as_principal(nurse) as actor:
        services.dissolve_household(actor, household.id)
        commit()
        with pytest.raises(NotFound):
            services.get_household(household.id)
    assert db.session.get(Resident, child.id) is not None
    assert _actions(child) == ["household_left"]


# --- transfers ------------------------------------------------------------------------------


def test_a_transfer_keeps_one_record_and_writes_history(
    admin: StaffUser, nurse: StaffUser, other_doctor: StaffUser, resident: Resident, other_centre: Institution
) -> None:
    with as_principal(admin) as actor:
        transfer = services.transfer_resident(
            actor, resident.id, to_institution_id=other_centre.id, reason="居住地变更"
        )
        commit()
    assert (transfer.from_institution_id, transfer.to_institution_id) == (
        admin.institution_id,
        other_centre.id,
    )
    assert (transfer.actor, transfer.actor_role, transfer.reason) == (
        f"staff:{admin.id}",
        "centre_admin",
        "居住地变更",
    )
    with as_principal(nurse), pytest.raises(NotFound):
        services.get_resident(resident.id)
    with as_principal(other_doctor):
        moved = services.get_resident(resident.id)
        assert moved.institution_id == other_centre.id
        assert [t.id for t in services.list_transfers(resident.id)] == [transfer.id]
    assert db.session.execute(select(ResidentTransfer)).scalars().all() == [transfer]
    assert _actions(resident)[-1] == "transferred"


def test_only_the_current_centre_or_the_district_can_transfer(
    other_admin: StaffUser, district_admin: StaffUser, resident: Resident, centre: Institution
) -> None:
    third = make_centre()
    with as_principal(other_admin) as actor, pytest.raises(NotFound):
        services.transfer_resident(actor, resident.id, to_institution_id=third.id, reason="抢人")
    with as_principal(district_admin) as actor:
        with pytest.raises(Conflict) as same:
            services.transfer_resident(actor, resident.id, to_institution_id=centre.id, reason="无变化")
        assert same.value.code == "same_institution"
        with pytest.raises(BusinessRuleViolation) as unknown:
            services.transfer_resident(actor, resident.id, to_institution_id=uuid.uuid4(), reason="不存在")
        assert unknown.value.code == "institution_not_found"
        services.transfer_resident(actor, resident.id, to_institution_id=third.id, reason="区级调整")
        commit()
    assert resident.institution_id == third.id


def test_a_moved_out_resident_is_not_transferred(
    admin: StaffUser, centre: Institution, other_centre: Institution
) -> None:
    gone = make_resident(centre, status="moved_out")
    with as_principal(admin) as actor, pytest.raises(Conflict) as refused:
        services.transfer_resident(actor, gone.id, to_institution_id=other_centre.id, reason="迁移")
    assert refused.value.code == "resident_not_active"


def test_households_move_whole_or_a_member_leaves(
    admin: StaffUser, centre: Institution, other_centre: Institution, other_doctor: StaffUser
) -> None:
    head, spouse, son = (
        make_resident(centre, age=60),
        make_resident(centre, age=58),
        make_resident(centre, age=30),
    )
    household = make_household(head, (spouse, "spouse"), (son, "child"))
    with as_principal(admin) as actor:
        with pytest.raises(Conflict) as refused:
            services.transfer_resident(actor, head.id, to_institution_id=other_centre.id, reason="搬家")
        assert refused.value.code == "household_head_transfer"
        services.transfer_resident(actor, son.id, to_institution_id=other_centre.id, reason="独立居住")
        services.transfer_resident(
            actor, spouse.id, to_institution_id=other_centre.id, reason="全家搬迁", include_household=True
        )
        commit()
    with as_principal(other_doctor):
        moved = services.get_household(household.id)
        assert {m.resident_id for m in moved.members} == {head.id, spouse.id}
        assert {m.institution_id for m in moved.members} == {other_centre.id}
        assert services.get_resident(son.id).membership is None
    rows = db.session.execute(select(ResidentTransfer).order_by(ResidentTransfer.created_at)).scalars().all()
    assert {(r.resident_id, r.household_id) for r in rows} == {
        (son.id, None),
        (head.id, household.id),
        (spouse.id, household.id),
    }
