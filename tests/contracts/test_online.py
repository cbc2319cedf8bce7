"""Online pre-signing (网络预申请) in the services: apply (self, proxy, guardian), the one-place rule,
the team's review (personalised clauses, capacity, permissions), the resident's confirmation and
payment, withdrawal, the lapse job on a moved clock, history and SMS. (HTTP: tests/miniprogram/
test_contracts.py.)"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import pytest
import time_machine
from sqlalchemy import select, update

from app.billing.models import Bill, BillStatus, OrderState
from app.billing.services import cashier, orders
from app.contracts import jobs
from app.contracts.models import Contract, ContractEvent, ContractStatus
from app.contracts.services import core, online
from app.core import clock
from app.core.auth import Actor as BillingActor
from app.core.auth import Role
from app.core.db import commit, db
from app.core.errors import BusinessRuleViolation, Conflict, InvalidTransition, NotFound, PermissionDenied
from app.core.outbox import OutboxMessage
from app.doctors.models import Doctor
from app.mp_accounts.models import MpBinding, MpUser
from app.residents.models import Resident
from app.teams.models import Team, TeamRole
from notifications import sms as sms_templates
from payments.base import Channel, PayMode
from tests.contracts.factories import SigningWorld, make_basic_package, signing_world
from tests.factories import as_principal, make_centre, make_staff
from tests.factories_doctors import make_doctor, make_nurse, make_team
from tests.factories_residents import make_resident

PERSONAL_SERVICES = "乙方为甲方提供基础服务包，并每季度上门随访一次（个性化约定）。"


@pytest.fixture(autouse=True)
def sms_templates_ready(monkeypatch: pytest.MonkeyPatch) -> None:
    """The four templates proposed for `notifications.sms.TEMPLATES` (harmless once added there)."""
    for template_id, text in online.SMS_TEMPLATE_TEXTS.items():
        monkeypatch.setitem(
            sms_templates.TEMPLATES, template_id, sms_templates.SmsTemplate(template_id, text)
        )  # type: ignore[index]


def bind(resident: Resident, relationship: str = "self", user: MpUser | None = None) -> MpUser:
    """A mini-program user bound to `resident` (as the SMS-verified binding would be)."""
    if user is None:
        user = MpUser(id=uuid.uuid4(), openid=f"o-test-{uuid.uuid4().hex}")
        db.session.add(user)
        commit()
    db.session.add(
        MpBinding(
            id=uuid.uuid4(),
            user_id=user.id,
            resident_id=resident.id,
            relationship=relationship,
            status="active",
            verified_at=clock.now(),
        )
    )
    commit()
    return user


def apply(world: SigningWorld, user: MpUser, resident: Resident | None = None, **kw: Any) -> Contract:
    contract = online.apply(
        user.id,
        resident_id=(resident or world.resident).id,
        team_id=kw.pop("team_id", world.team.id),
        doctor_id=kw.pop("doctor_id", world.doctor.id),
        package_ids=kw.pop("package_ids", [world.basic.id]),
    )
    commit()
    return contract


def accept(world: SigningWorld, contract: Contract, **kw: Any) -> Contract:
    with as_principal(kw.pop("by", world.doctor_user)) as principal:
        accepted = online.accept(principal, contract.id, **kw)
        commit()
    return accepted


def events(contract: Contract) -> list[ContractEvent]:
    return list(
        db.session.execute(
            select(ContractEvent).where(ContractEvent.contract_id == contract.id).order_by(ContractEvent.id)
        ).scalars()
    )


def sms_queued(contract: Contract, template: str) -> bool:
    key = f"sms:contract:{contract.id}:{template}"
    return (
        db.session.execute(select(OutboxMessage).where(OutboxMessage.dedupe_key == key)).first() is not None
    )


def signed_counts(world: SigningWorld) -> tuple[int, int]:
    db.session.expire_all()
    doctor = db.session.get(Doctor, world.doctor.id)
    team = db.session.get(Team, world.team.id)
    assert doctor is not None and team is not None
    return doctor.signed_count, team.signed_count


@pytest.fixture
def me(world: SigningWorld) -> MpUser:
    return bind(world.resident)


# --- applying ------------------------------------------------------------------------------------------


def test_a_resident_applies_for_themselves(world, me):
    contract = apply(world, me)
    assert contract.status == ContractStatus.PENDING_REVIEW
    assert contract.channel == "mini_program" and contract.signing_way == "self"
    assert contract.occupancy_key == world.resident.id and contract.capacity_held is False
    assert contract.applied_at is not None and contract.review_due_at is not None
    assert contract.review_due_at - contract.applied_at == timedelta(hours=48)
    assert contract.template_id == world.template.id and world.resident.name in contract.agreement_text
    assert signed_counts(world) == (0, 0)  # capacity is reserved at acceptance
    [created] = events(contract)
    assert (created.action, created.to_status, created.actor_kind, created.actor_id, created.channel) == (
        "create",
        "pending_review",
        "resident",
        me.id,
        "mini_program",
    )
    assert sms_queued(contract, online.SMS_RECEIVED)
    assert [c.id for c in online.my_applications(me.id)] == [contract.id]


def test_a_proxy_applies_for_a_bound_family_member(world, me):
    mother = make_resident(world.centre, age=72)
    bind(mother, "child", user=me)
    contract = apply(world, me, mother)
    assert contract.signing_way == "proxy" and contract.signer_relationship == "child"
    assert contract.signer_resident_id == world.resident.id and contract.signer_name == world.resident.name
    assert sms_queued(contract, online.SMS_RECEIVED)
    assert {c.resident_id for c in online.my_applications(me.id)} == {mother.id}


def test_a_proxy_needs_their_own_identity_first(world):
    elderly = make_resident(world.centre, age=80)
    stranger = bind(elderly, "child")  # no self binding
    with pytest.raises(BusinessRuleViolation) as refused:
        apply(world, stranger, elderly)
    assert refused.value.code == "identity_not_bound"


def test_a_minor_is_applied_for_by_the_parent_as_guardian(world, me):
    child = make_resident(
        world.centre, birth_date=date(clock.today_local().year - 5, 1, 1), guardian=world.resident
    )
    bind(child, "parent", user=me)
    contract = apply(world, me, child)
    assert contract.signing_way == "guardian" and contract.signer_resident_id == world.resident.id


def test_a_minor_cannot_apply_alone_nor_through_a_non_guardian(world):
    teen = make_resident(world.centre, birth_date=date(clock.today_local().year - 15, 1, 1))
    alone = bind(teen)
    with pytest.raises(BusinessRuleViolation) as refused:
        apply(world, alone, teen)
    assert refused.value.code == "guardian_required"
    sibling_resident = make_resident(world.centre, age=25)
    sibling = bind(sibling_resident)
    bind(teen, "spouse", user=sibling)
    with pytest.raises(BusinessRuleViolation) as refused:
        apply(world, sibling, teen)
    assert refused.value.code == "guardian_required"
    # A parent who is not the registered guardian is refused as well.
    ward = make_resident(
        world.centre, birth_date=date(clock.today_local().year - 8, 1, 1), guardian=world.resident
    )
    other_parent = bind(make_resident(world.centre, age=38))
    bind(ward, "parent", user=other_parent)
    with pytest.raises(BusinessRuleViolation) as refused:
        apply(world, other_parent, ward)
    assert refused.value.code == "not_the_guardian"


def test_an_unbound_resident_is_not_found(world, me):
    with pytest.raises(NotFound) as missing:
        apply(world, me, make_resident(world.centre))
    assert missing.value.code == "resident_not_bound"


def test_a_second_application_anywhere_is_refused_naming_the_centre(world, me):
    apply(world, me)
    elsewhere = signing_world(make_centre(name="笋岗社康中心"))
    with pytest.raises(Conflict) as second:
        apply(elsewhere, me, world.resident)
    assert second.value.code == "resident_already_signed"
    assert world.centre.name in second.value.message and "提交签约" in second.value.message
    assert online.options(me.id, world.resident.id)["can_apply"] is False


def test_an_already_signed_resident_is_told_where_and_until_when(world):
    resident = make_resident(world.centre, age=50)
    core.create_contract(
        resident=resident,
        team=world.team,
        doctor=world.doctor,
        packages=[world.basic],
        status=ContractStatus.ACTIVE,
        channel="desk",
        actor=core.SYSTEM,
        template=world.template,
        values={"activated_at": clock.now()},
    )
    commit()
    user = bind(resident)
    with pytest.raises(Conflict) as refused:
        apply(signing_world(), user, resident)
    assert world.centre.name in refused.value.message and "签约期至" in refused.value.message


def test_the_rules_of_a_signing_apply(world, me):
    other_team = make_team(world.centre)
    with pytest.raises(BusinessRuleViolation) as refused:
        apply(world, me, team_id=other_team.id)  # world.doctor is not in that team
    assert refused.value.code == "doctor_not_in_team"
    with pytest.raises(BusinessRuleViolation) as refused:
        apply(world, me, package_ids=[])
    assert refused.value.code == "basic_package_required"
    with pytest.raises(BusinessRuleViolation) as refused:
        apply(world, me, package_ids=[uuid.uuid4()])
    assert refused.value.code == "package_not_found"
    with pytest.raises(BusinessRuleViolation) as refused:
        apply(world, me, package_ids=[world.basic.id, world.basic.id])
    assert refused.value.code == "duplicate_package"
    assert db.session.execute(select(Contract)).first() is None


def test_a_full_doctor_is_refused_at_once(world, me):
    db.session.execute(update(Doctor).where(Doctor.id == world.doctor.id).values(capacity_override=0))
    commit()
    with pytest.raises(Conflict) as full:
        apply(world, me)
    assert full.value.code == "doctor_capacity_full"


def test_options_list_the_eligible_packages_and_preview_the_agreement(world, me):
    elderly = make_basic_package(code=f"old-{uuid.uuid4().hex[:6]}", name="老年人基础包", min_age=65)
    found = online.options(me.id, world.resident.id, team_id=world.team.id, doctor_id=world.doctor.id)
    by_id = {item.package.id: item for item in found["packages"]}
    assert by_id[world.basic.id].eligible and not by_id[elderly.id].eligible
    assert "65" in (by_id[elderly.id].reason or "")
    preview = found["agreement"]
    assert preview["template_id"] == world.template.id
    assert world.team.name in preview["text"] and world.doctor.name in preview["text"]
    assert found["can_apply"] is True and found["signing_way"] == "self"
    anonymous = online.options(me.id, world.resident.id)
    assert "（待选择团队）" in anonymous["agreement"]["text"]


# --- review ------------------------------------------------------------------------------------------


def test_accepting_with_a_personalised_clause_changes_the_agreement_and_reserves_capacity(world, me):
    contract = apply(world, me)
    before = contract.agreement_sha256
    accepted = accept(world, contract, clause_overrides={"services": PERSONAL_SERVICES}, note="同意")
    assert accepted.status == ContractStatus.AWAITING_CONFIRMATION
    assert accepted.agreement_sha256 != before and PERSONAL_SERVICES in accepted.agreement_text
    services = next(c for c in accepted.clauses if c["key"] == "services")
    assert services["personalised"] is True
    assert accepted.reviewed_by == world.doctor_user.id and accepted.reviewed_at is not None
    assert accepted.capacity_held is True and signed_counts(world) == (1, 1)
    last = events(accepted)[-1]
    assert (
        last.action,
        last.from_status,
        last.to_status,
        last.actor_kind,
        last.actor_role,
        last.channel,
    ) == (
        "accept",
        "pending_review",
        "awaiting_confirmation",
        "staff",
        "doctor",
        "staff",
    )
    assert last.reason == "同意" and last.detail["personalised"] == ["services"]
    assert sms_queued(accepted, online.SMS_ACCEPTED)


def test_a_locked_or_unknown_clause_cannot_be_personalised(world, me):
    contract = apply(world, me)
    for overrides, code in (({"privacy": "不共享"}, "clause_locked"), ({"nope": "x"}, "unknown_clause")):
        with pytest.raises(BusinessRuleViolation) as refused:
            accept(world, contract, clause_overrides=overrides)
        assert refused.value.code == code
        db.session.rollback()
    assert db.session.get(Contract, contract.id).status == ContractStatus.PENDING_REVIEW  # type: ignore[union-attr]


def test_a_doctor_who_became_full_makes_the_acceptance_a_409(world, me):
    contract = apply(world, me)
    db.session.execute(update(Doctor).where(Doctor.id == world.doctor.id).values(capacity_override=0))
    commit()
    with pytest.raises(Conflict) as full:
        accept(world, contract)
    assert full.value.code == "doctor_capacity_full"


def test_rejecting_needs_the_team_and_frees_the_place(world, me):
    contract = apply(world, me)
    outsider = make_staff(Role.DOCTOR, world.centre)
    with as_principal(outsider) as principal, pytest.raises(PermissionDenied) as refused:
        online.reject(principal, contract.id, reason="不在服务范围")
    assert refused.value.code == "not_team_member"
    foreign = make_staff(Role.CENTRE_ADMIN, make_centre())
    with as_principal(foreign) as principal, pytest.raises(NotFound):
        online.reject(principal, contract.id, reason="不在服务范围")
    with as_principal(world.admin) as principal:
        rejected = online.reject(principal, contract.id, reason="不在本团队服务片区")
        commit()
    assert rejected.status == ContractStatus.REJECTED and rejected.rejection_reason == "不在本团队服务片区"
    assert rejected.occupancy_key is None
    last = events(rejected)[-1]
    assert (last.action, last.actor_role, last.reason) == ("reject", "centre_admin", "不在本团队服务片区")
    assert sms_queued(rejected, online.SMS_REJECTED)
    again = apply(world, me)  # the place is free again
    assert again.status == ContractStatus.PENDING_REVIEW
    with as_principal(world.admin) as principal, pytest.raises(InvalidTransition):
        online.accept(principal, rejected.id)


def test_the_queue_is_oldest_first_with_time_left_and_filters(world, me):
    with time_machine.travel(clock.now() - timedelta(hours=50), tick=False):
        late = apply(world, me)
    second = make_resident(world.centre, age=33)
    fresh = apply(world, bind(second), second)
    other_team_doctor = make_doctor(world.centre, staff_user=make_staff(Role.DOCTOR, world.centre))
    other_team = make_team(
        world.centre, members=[(other_team_doctor, TeamRole.GP.value, True), make_nurse(world.centre)]
    )
    third = make_resident(world.centre, age=45)
    elsewhere = apply(world, bind(third), third, team_id=other_team.id, doctor_id=other_team_doctor.id)
    with as_principal(world.admin) as principal:
        queue = online.review_queue(principal)
        assert [c.id for c in queue.items] == [late.id, fresh.id, elsewhere.id]
        views = [online.application_view(c) for c in queue.items]
        assert views[0]["overdue"] is True and views[0]["review_seconds_left"] < 0
        assert views[1]["overdue"] is False and 0 < views[1]["review_seconds_left"] <= 48 * 3600
        assert [c.id for c in online.review_queue(principal, overdue=True).items] == [late.id]
        assert [c.id for c in online.review_queue(principal, team_id=other_team.id).items] == [elsewhere.id]
    with as_principal(world.doctor_user) as principal:
        assert [c.id for c in online.review_queue(principal).items] == [late.id, fresh.id]
    with as_principal(make_staff(Role.CENTRE_ADMIN, make_centre())) as principal:
        assert online.review_queue(principal).items == []


def test_an_overdue_application_can_no_longer_be_accepted(world, me):
    contract = apply(world, me)
    with time_machine.travel(clock.now() + timedelta(hours=49), tick=False), pytest.raises(Conflict) as late:
        accept(world, contract)
    assert late.value.code == "review_overdue"


# --- confirmation, payment, withdrawal ------------------------------------------------------------------


def test_confirming_must_quote_the_accepted_agreement_and_free_contracts_become_active(world, me):
    contract = apply(world, me)
    stale = contract.agreement_sha256
    accepted = accept(world, contract, clause_overrides={"services": PERSONAL_SERVICES})
    with pytest.raises(Conflict) as changed:
        online.confirm(me.id, contract.id, agreement_sha256=stale)
    assert changed.value.code == "agreement_changed"
    done = online.confirm(me.id, contract.id, agreement_sha256=accepted.agreement_sha256.upper())
    commit()
    assert done.bill_id is None and done.contract.status == ContractStatus.ACTIVE
    assert done.contract.activated_at is not None and done.contract.confirmed_at is not None
    assert done.contract.occupancy_key == world.resident.id and signed_counts(world) == (1, 1)
    confirm_event = events(contract)[-1]
    assert (
        confirm_event.action,
        confirm_event.actor_kind,
        confirm_event.channel,
        confirm_event.to_status,
    ) == (
        "confirm",
        "resident",
        "mini_program",
        "active",
    )
    assert confirm_event.detail["agreement_sha256"] == accepted.agreement_sha256
    with pytest.raises(InvalidTransition):
        online.withdraw(me.id, contract.id)
    stranger = bind(make_resident(world.centre))
    with pytest.raises(NotFound):
        online.confirm(stranger.id, contract.id, agreement_sha256=accepted.agreement_sha256)


def _paid_world() -> SigningWorld:
    world = signing_world()
    world.basic = make_basic_package(subsidy_fen=10000, self_pay_fen=2000)
    return world


def _pay(bill_id: uuid.UUID, payer: str) -> None:
    """Pay the bill the way the mini-program does: a JSAPI order, the wallet, then the query."""
    from app.billing import flows, providers

    bill = db.session.get(Bill, bill_id)
    assert bill is not None
    start = cashier.start_jsapi(
        bill, channel=Channel.WECHAT, payer_account=payer, client_ip="127.0.0.1", actor=orders.PAYER
    )
    commit()
    order = flows.charge(start.order.id, actor=orders.PAYER)
    assert order.mode == PayMode.JSAPI and order.client_params
    providers.sandbox(Channel.WECHAT).ledger.pay_jsapi(
        order.client_params["package"].removeprefix("prepay_id="), payer
    )
    flows.query_and_apply(order.id, source="query", actor=orders.PAYER)
    db.session.expire_all()


def test_a_self_pay_part_awaits_payment_and_the_paid_bill_activates_the_contract():
    world = _paid_world()
    me = bind(world.resident)
    contract = apply(world, me)
    accepted = accept(world, contract)
    done = online.confirm(me.id, contract.id, agreement_sha256=accepted.agreement_sha256)
    commit()
    assert done.contract.status == ContractStatus.AWAITING_PAYMENT and done.amount_fen == 2000
    bill = db.session.get(Bill, done.bill_id)
    assert bill is not None and bill.amount_fen == 2000 and bill.resident_id == world.resident.id
    assert bill.status == BillStatus.OPEN and bill.source == "contract"
    _pay(bill.id, "oPayerWorld")
    paid = db.session.get(Contract, contract.id)
    assert paid is not None and paid.status == ContractStatus.ACTIVE and paid.activated_at is not None
    assert [e.action for e in events(paid)] == ["create", "accept", "confirm", "pay"]


def test_withdrawing_while_awaiting_payment_cancels_the_bill_and_releases_capacity():
    world = _paid_world()
    me = bind(world.resident)
    contract = apply(world, me)
    accepted = accept(world, contract)
    online.confirm(me.id, contract.id, agreement_sha256=accepted.agreement_sha256)
    commit()
    assert signed_counts(world) == (1, 1)
    withdrawn = online.withdraw(me.id, contract.id, reason="暂不需要")
    commit()
    assert withdrawn.status == ContractStatus.WITHDRAWN and withdrawn.end_reason == "暂不需要"
    assert db.session.get(Bill, withdrawn.bill_id).status == BillStatus.CANCELLED  # type: ignore[union-attr]
    assert signed_counts(world) == (0, 0) and withdrawn.occupancy_key is None
    last = events(withdrawn)[-1]
    assert (last.action, last.actor_kind, last.reason, last.channel) == (
        "withdraw",
        "resident",
        "暂不需要",
        "mini_program",
    )


def test_withdrawing_a_pending_application(world, me):
    contract = apply(world, me)
    withdrawn = online.withdraw(me.id, contract.id)
    commit()
    assert (
        withdrawn.status == ContractStatus.WITHDRAWN
        and withdrawn.end_reason == online.RESIDENT_WITHDRAW_REASON
    )
    with pytest.raises(InvalidTransition):
        online.withdraw(me.id, contract.id)


def test_a_late_confirmation_is_refused(world, me):
    contract = apply(world, me)
    accepted = accept(world, contract)
    with time_machine.travel(clock.now() + timedelta(hours=73), tick=False), pytest.raises(Conflict) as late:
        online.confirm(me.id, contract.id, agreement_sha256=accepted.agreement_sha256)
    assert late.value.code == "confirmation_overdue"


# --- lapses ------------------------------------------------------------------------------------------


@pytest.fixture
def later() -> Iterator[Any]:
    """Move the clock forward by some hours, inside the test."""
    travellers: list[Any] = []

    def travel(hours: float) -> None:
        traveller = time_machine.travel(clock.now() + timedelta(hours=hours), tick=False)
        traveller.start()
        travellers.append(traveller)

    yield travel
    for traveller in reversed(travellers):
        traveller.stop()


def test_unreviewed_applications_lapse_after_the_review_window(world, me, later):
    contract = apply(world, me)
    later(47)
    assert jobs.lapse_applications() == {}
    later(2)
    assert jobs.lapse_applications() == {"review_lapsed": 1}
    db.session.expire_all()
    lapsed = db.session.get(Contract, contract.id)
    assert lapsed is not None and lapsed.status == ContractStatus.WITHDRAWN
    assert lapsed.end_reason == online.REVIEW_LAPSED_REASON and lapsed.occupancy_key is None
    last = events(lapsed)[-1]
    assert (last.action, last.actor_kind, last.channel, last.reason) == (
        "withdraw",
        "system",
        "system",
        "团队未在规定时间内审核，申请已自动撤回",
    )
    assert sms_queued(lapsed, online.SMS_WITHDRAWN)
    assert jobs.lapse_applications() == {}  # idempotent


def test_unconfirmed_acceptances_lapse_and_release_capacity(world, me, later):
    contract = apply(world, me)
    accept(world, contract)
    assert signed_counts(world) == (1, 1)
    later(71)
    assert jobs.lapse_applications() == {}
    later(2)
    assert jobs.lapse_applications() == {"confirm_lapsed": 1}
    db.session.expire_all()
    lapsed = db.session.get(Contract, contract.id)
    assert lapsed is not None and lapsed.status == ContractStatus.WITHDRAWN
    assert lapsed.end_reason == online.CONFIRM_LAPSED_REASON
    assert signed_counts(world) == (0, 0)


def test_unpaid_applications_lapse_their_bill_is_cancelled_unless_a_payment_is_open(later):
    world = _paid_world()
    me = bind(world.resident)
    contract = apply(world, me)
    accepted = accept(world, contract)
    done = online.confirm(me.id, contract.id, agreement_sha256=accepted.agreement_sha256)
    commit()
    bill = db.session.get(Bill, done.bill_id)
    assert bill is not None
    started = cashier.start_jsapi(
        bill, channel=Channel.WECHAT, payer_account="oLate", client_ip="127.0.0.1", actor=orders.PAYER
    )
    commit()
    later(73)
    assert jobs.lapse_applications() == {"payment_in_progress": 1}
    assert db.session.get(Contract, contract.id).status == ContractStatus.AWAITING_PAYMENT  # type: ignore[union-attr]
    # The order ends (expired and closed by the billing recovery job); the next run lapses it.
    orders.transition(
        started.order, OrderState.CLOSED, source="test", actor=BillingActor("system"), reason="expired"
    )
    commit()
    assert jobs.lapse_applications() == {"payment_lapsed": 1}
    db.session.expire_all()
    lapsed = db.session.get(Contract, contract.id)
    assert lapsed is not None and lapsed.status == ContractStatus.WITHDRAWN
    assert lapsed.end_reason == online.PAYMENT_LAPSED_REASON
    assert db.session.get(Bill, bill.id).status == BillStatus.CANCELLED  # type: ignore[union-attr]
    assert signed_counts(world) == (0, 0)


def test_desk_contracts_awaiting_payment_never_lapse(world, later):
    resident = make_resident(world.centre, age=60)
    paid_basic = make_basic_package(subsidy_fen=100, self_pay_fen=500)
    desk = core.create_contract(
        resident=resident,
        team=world.team,
        doctor=world.doctor,
        packages=[paid_basic],
        status=ContractStatus.AWAITING_PAYMENT,
        channel="desk",
        actor=core.SYSTEM,
        template=world.template,
    )
    commit()
    later(24 * 30)
    assert jobs.lapse_applications() == {}
    assert db.session.get(Contract, desk.id).status == ContractStatus.AWAITING_PAYMENT  # type: ignore[union-attr]
