"""Online pre-signing (网络预申请): the resident's application, the team's review, the resident's
confirmation and payment, and the lapses.

The flow (statuses of `app.contracts.models.contracts`):

    resident (or proxy) applies ──> pending_review        review_due_at = applied_at + CONTRACT_REVIEW_HOURS
      team accepts (capacity held, agreement re-rendered with the doctor's clause choices)
                               ──> awaiting_confirmation  confirm by reviewed_at + CONTRACT_CONFIRM_HOURS
      resident confirms, quoting the agreement's SHA-256
          self-pay 0           ──> active
          self-pay > 0         ──> awaiting_payment (bill) ──> active when the bill is paid (core listener)
    team rejects (reason)      ──> rejected
    resident withdraws         ──> withdrawn (an unpaid bill is cancelled)
    deadlines pass (job)       ──> withdrawn with the reason, an SMS, the bill cancelled

Who may act: the mini-program user for the residents they are bound to (self, or proxy with the
binding's relationship; a minor's application needs a parent or guardian binding); the staff of
the team's centre who review (the team's own doctors and team leaders, the centre admin).

Resident notifications go by SMS through the outbox (`app.messaging.sms`), to the applicant's
phone on record (the proxy's when a proxy applied). They are best-effort: a missing template, an
exhausted SMS budget or Redis being down never blocks the business decision (logged instead).

Nothing here commits; routes and `app.contracts.jobs` do.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import Select, and_, or_, select

from app.contracts.models import (
    AgreementTemplate,
    Contract,
    ContractEvent,
    ContractStatus,
    ServicePackage,
    SigningChannel,
    SigningWay,
)
from app.contracts.models.contracts import STATUS_LABELS
from app.contracts.services import core
from app.contracts.services import packages as packages_service
from app.contracts.services.agreements import check_overrides, current_template
from app.contracts.services.core import Signer
from app.contracts.services.packages import PackageEligibility
from app.core import audit, clock
from app.core.auth import Actor, Principal, Role
from app.core.crypto import mask_name
from app.core.db import db
from app.core.errors import (
    BusinessRuleViolation,
    Conflict,
    DomainError,
    InvalidTransition,
    NotFound,
    PermissionDenied,
)
from app.core.pagination import Page, paginate
from app.core.scope import SKIP_SCOPE, get_or_404, get_unscoped
from app.doctors.models import Doctor
from app.institutions.models import Institution
from app.mp_accounts.models import BindingStatus, MpBinding, Relationship
from app.residents.models import Resident
from app.residents.models.codes import SPECIAL_GROUP_CODES
from app.teams.models import Team, TeamMember

log = logging.getLogger(__name__)

UNSCOPED = {SKIP_SCOPE: True}
ADULT_AGE = core.ADULT_AGE

# Staff who review a team's applications (object rule: the team's own members, or the centre admin).
REVIEW_ROLES: frozenset[str] = frozenset({Role.TEAM_LEADER, Role.DOCTOR, Role.CENTRE_ADMIN})
READ_ROLES: frozenset[str] = REVIEW_ROLES | {Role.DISTRICT_ADMIN}

OPEN_STATUSES: tuple[ContractStatus, ...] = (
    ContractStatus.PENDING_REVIEW,
    ContractStatus.AWAITING_CONFIRMATION,
    ContractStatus.AWAITING_PAYMENT,
)
WITHDRAWABLE = frozenset(OPEN_STATUSES)

CHANNEL = SigningChannel.MINI_PROGRAM.value
STAFF_CHANNEL = "staff"
SYSTEM_CHANNEL = "system"

RESIDENT_WITHDRAW_REASON = "居民撤回申请"
REVIEW_LAPSED_REASON = "团队未在规定时间内审核，申请已自动撤回"
CONFIRM_LAPSED_REASON = "居民未在规定时间内确认签约，申请已自动撤回"
PAYMENT_LAPSED_REASON = "居民未在规定时间内完成缴费，申请已自动撤回"

# SMS templates (ids in `notifications.sms.TEMPLATES`) and the parameters each one takes.
SMS_RECEIVED = "contract_application_received"  # 申请已受理
SMS_ACCEPTED = "contract_application_accepted"  # 待确认
SMS_REJECTED = "contract_application_rejected"  # 未通过
SMS_WITHDRAWN = "contract_application_withdrawn"  # 已自动撤回
SMS_TEMPLATE_TEXTS: Mapping[str, str] = {
    SMS_RECEIVED: "【罗湖社康】{name}的家庭医生签约申请已提交至{centre}{team}，团队将于{deadline}前审核，请留意小程序中的办理进度。",
    SMS_ACCEPTED: "【罗湖社康】{name}的家庭医生签约申请已通过{team}审核，请于{deadline}前在微信小程序阅读协议并确认签约，逾期申请将自动撤回。",
    SMS_REJECTED: "【罗湖社康】很抱歉，{name}的家庭医生签约申请未通过{team}审核，原因：{reason}。如有疑问请咨询{centre}。",
    SMS_WITHDRAWN: "【罗湖社康】{name}的家庭医生签约申请已自动撤回：{reason}。如需签约，请在微信小程序重新申请。",
}


# --- settings and deadlines -------------------------------------------------------------------------


def review_hours() -> int:
    return int(current_app.config["CONTRACT_REVIEW_HOURS"])


def confirm_hours() -> int:
    return int(current_app.config["CONTRACT_CONFIRM_HOURS"])


def confirm_due_at(contract: Contract) -> datetime | None:
    """The resident must confirm (and pay) within CONTRACT_CONFIRM_HOURS of the acceptance."""
    if contract.reviewed_at is None or contract.status == ContractStatus.REJECTED:
        return None
    return contract.reviewed_at + timedelta(hours=confirm_hours())


def _when(value: datetime) -> str:
    return f"{clock.local(value):%m月%d日%H:%M}"


# --- lookups (unscoped where a centre's staff legitimately see another centre's resident) -------------


def _resident(resident_id: uuid.UUID) -> Resident:
    resident = get_unscoped(Resident, resident_id)
    if resident is None:
        raise NotFound("未找到该居民", code="resident_not_found")
    return resident


def _team(team_id: uuid.UUID) -> Team:
    team = get_unscoped(Team, team_id)
    if team is None:
        raise NotFound("未找到该家庭医生团队", code="team_not_found")
    return team


def _doctor(doctor_id: uuid.UUID) -> Doctor:
    doctor = get_unscoped(Doctor, doctor_id)
    if doctor is None:
        raise NotFound("未找到该医生", code="doctor_not_found")
    return doctor


def _centre_name(institution_id: uuid.UUID) -> str:
    name = db.session.execute(
        select(Institution.name).where(Institution.id == institution_id).execution_options(**UNSCOPED)
    ).scalar_one_or_none()
    return name or "社康中心"


def _packages(package_ids: Sequence[uuid.UUID]) -> list[ServicePackage]:
    if len(set(package_ids)) != len(package_ids):
        raise BusinessRuleViolation(
            "同一服务包不能重复选择", code="duplicate_package", errors={"package_ids": ["重复"]}
        )
    found = {
        p.id: p
        for p in db.session.execute(
            select(ServicePackage).where(ServicePackage.id.in_(package_ids))
        ).scalars()
    }
    missing = [str(i) for i in package_ids if i not in found]
    if missing:
        raise BusinessRuleViolation(
            "所选服务包不存在", code="package_not_found", errors={"package_ids": missing}
        )
    return [found[i] for i in package_ids]


def eligible_packages(
    resident: Resident, institution_id: uuid.UUID, on: date, *, family_view: bool = False
) -> list[PackageEligibility]:
    """Every published package the resident could pick at this centre, with whether it is
    eligible and why not (basic first, eligible first). In a family member's view the special
    population groups (DATA-05) are not taken into account, so they do not show through."""
    hidden = SPECIAL_GROUP_CODES if family_view else frozenset()
    return packages_service.eligible_packages(resident, institution_id, on, hidden_groups=hidden)


# --- who the mini-program user acts for ------------------------------------------------------------


@dataclass(frozen=True)
class ActingFor:
    resident: Resident
    binding: MpBinding
    signer: Signer


def bound_resident_ids(user_id: uuid.UUID) -> list[uuid.UUID]:
    """The residents this mini-program user acts for (self and family; active bindings)."""
    return list(
        db.session.execute(
            select(MpBinding.resident_id).where(
                MpBinding.user_id == user_id, MpBinding.status == BindingStatus.ACTIVE
            )
        ).scalars()
    )


def acting_for(user_id: uuid.UUID, resident_id: uuid.UUID) -> ActingFor:
    """The user's binding to the resident and how they sign: themselves, as a proxy (with the
    binding's relationship), or as the guardian of a minor. Not bound: 404 (existence hidden)."""
    binding = db.session.execute(
        select(MpBinding).where(
            MpBinding.user_id == user_id,
            MpBinding.resident_id == resident_id,
            MpBinding.status == BindingStatus.ACTIVE,
        )
    ).scalar_one_or_none()
    if binding is None:
        raise NotFound("您尚未绑定该居民，请先在“家庭成员”中添加", code="resident_not_bound")
    resident = _resident(resident_id)
    relationship = Relationship(binding.relationship)
    if relationship is Relationship.SELF:
        return ActingFor(resident, binding, Signer(SigningWay.SELF))
    own = db.session.execute(
        select(MpBinding).where(
            MpBinding.user_id == user_id,
            MpBinding.relationship == Relationship.SELF,
            MpBinding.status == BindingStatus.ACTIVE,
        )
    ).scalar_one_or_none()
    if own is None:
        raise BusinessRuleViolation("代家人申请签约前，请先完成本人实名认证", code="identity_not_bound")
    proxy = _resident(own.resident_id)
    minor = resident.age_on(clock.today_local()) < ADULT_AGE
    guardian = relationship in (Relationship.PARENT, Relationship.GUARDIAN)
    way = SigningWay.GUARDIAN if minor and guardian else SigningWay.PROXY
    return ActingFor(
        resident, binding, Signer(way, resident_id=proxy.id, name=proxy.name, relationship=relationship.value)
    )


def resident_actor(user_id: uuid.UUID) -> Actor:
    return Actor("resident", user_id, "resident")


# --- the agreement preview ------------------------------------------------------------------------------


def _yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def preview_context(
    resident: Resident,
    institution_id: uuid.UUID,
    team: Team | None,
    doctor: Doctor | None,
    packages: Sequence[ServicePackage],
) -> dict[str, Any]:
    """The placeholders of `core.agreement_context`, for an agreement not yet made."""
    centre = db.session.execute(
        select(Institution).where(Institution.id == institution_id).execution_options(**UNSCOPED)
    ).scalar_one()
    start, end = core.period_for(clock.today_local())
    return {
        "contract_no": "（提交后生成）",
        "resident_name": resident.name,
        "centre_name": centre.name,
        "centre_phone": getattr(centre, "phone", "") or "",
        "team_name": team.name if team else "（待选择团队）",
        "doctor_name": doctor.name if doctor else "（待选择医生）",
        "period_start": f"{start:%Y年%m月%d日}",
        "period_end": f"{end:%Y年%m月%d日}",
        "packages": "、".join(p.name for p in packages) if packages else "（以所选服务包为准）",
        "price_yuan": _yuan(sum(p.price_fen for p in packages)),
        "subsidy_yuan": _yuan(sum(p.subsidy_fen for p in packages)),
        "self_pay_yuan": _yuan(sum(p.self_pay_fen for p in packages)),
    }


def _check_doctor_in_team(team: Team, doctor: Doctor) -> None:
    from app.teams.services.capacity import signing_member

    if signing_member(team, doctor) is None:
        raise BusinessRuleViolation(
            "该医生不是所选团队的全科医生，请重新选择",
            code="doctor_not_in_team",
            errors={"doctor_id": ["不是本团队的全科医生"]},
        )


def options(
    user_id: uuid.UUID,
    resident_id: uuid.UUID,
    *,
    team_id: uuid.UUID | None = None,
    doctor_id: uuid.UUID | None = None,
    package_ids: Sequence[uuid.UUID] = (),
) -> dict[str, Any]:
    """What the resident may apply for: eligible packages at the chosen team's centre (else the
    resident's own centre), the current agreement previewed with the chosen team/doctor/packages,
    and whether an existing contract or application stands in the way."""
    acting = acting_for(user_id, resident_id)
    resident = acting.resident
    team = _team(team_id) if team_id else None
    doctor = _doctor(doctor_id) if doctor_id else None
    if team is not None and doctor is not None:
        _check_doctor_in_team(team, doctor)
    institution_id = team.institution_id if team else resident.institution_id
    today = clock.today_local()
    chosen = _packages(package_ids) if package_ids else []
    template = current_template(institution_id)
    agreement = None
    if template is not None:
        clauses, text, sha256 = core.render_agreement(
            template, preview_context(resident, institution_id, team, doctor, chosen)
        )
        agreement = {
            "template_id": template.id,
            "template_code": template.code,
            "template_version": template.version,
            "title": template.title,
            "clauses": clauses,
            "text": text,
            "sha256": sha256,
        }
    existing = core.existing_occupant(resident.id)
    blocked = core.already_signed_error(existing) if existing is not None else None
    audit.record(
        "contract.options",
        "resident",
        resident.id,
        resident_id=resident.id,
        institution_id=resident.institution_id,
    )
    return {
        "resident_id": resident.id,
        "resident_name": resident.name,
        "age": resident.age_on(today),
        "signing_way": acting.signer.way.value,
        "relationship": acting.binding.relationship,
        "institution_id": institution_id,
        "centre_name": _centre_name(institution_id),
        "packages": eligible_packages(
            resident, institution_id, today, family_view=acting.binding.relationship != Relationship.SELF
        ),
        "agreement": agreement,
        "can_apply": blocked is None and agreement is not None,
        "blocked_reason": blocked.message if blocked is not None else None,
        "review_hours": review_hours(),
        "confirm_hours": confirm_hours(),
    }


# --- the resident's side ---------------------------------------------------------------------------------


def apply(
    user_id: uuid.UUID,
    *,
    resident_id: uuid.UUID,
    team_id: uuid.UUID,
    doctor_id: uuid.UUID,
    package_ids: Sequence[uuid.UUID],
    channel: str = CHANNEL,
) -> Contract:
    """A new application (pending_review) after every signing rule. 409 when the resident already
    holds a contract or an application anywhere in the district (naming where and since when)."""
    acting = acting_for(user_id, resident_id)
    team = _team(team_id)
    doctor = _doctor(doctor_id)
    core.check_team(team, doctor)
    _check_doctor_in_team(team, doctor)
    _check_places_left(team, doctor)
    packages = _packages(package_ids)
    template = current_template(team.institution_id)
    if template is None:
        raise BusinessRuleViolation(
            "该社康中心尚未发布签约协议，暂不能在线申请，请联系社康中心", code="template_missing"
        )
    now = clock.now()
    contract = core.create_contract(
        resident=acting.resident,
        team=team,
        doctor=doctor,
        packages=packages,
        status=ContractStatus.PENDING_REVIEW,
        channel=channel,
        actor=resident_actor(user_id),
        signer=acting.signer,
        template=template,
        values={"applied_at": now, "review_due_at": now + timedelta(hours=review_hours())},
    )
    notify(
        contract,
        SMS_RECEIVED,
        {
            "name": mask_name(acting.resident.name) or "",
            "centre": _centre_name(team.institution_id),
            "team": team.name,
            "deadline": _when(now + timedelta(hours=review_hours())),
        },
    )
    return contract


def _check_places_left(team: Team, doctor: Doctor) -> None:
    """Early answer for a doctor or team already full (the place itself is taken at acceptance)."""
    from app.doctors.services.common import default_capacity
    from app.teams.services.capacity import team_remaining

    if doctor.remaining(default_capacity()) <= 0:
        raise Conflict("该医生的签约人数已达上限，请选择其他医生", code="doctor_capacity_full")
    if team_remaining(team) <= 0:
        raise Conflict("该团队的签约人数已达上限，请选择其他团队", code="team_capacity_full")


def _online(statement: Select[Any]) -> Select[Any]:
    return statement.where(Contract.applied_at.is_not(None))


def my_applications(user_id: uuid.UUID) -> list[Contract]:
    """Applications of the user's residents (self and family), newest first (audited reads)."""
    residents = bound_resident_ids(user_id)
    if not residents:
        return []
    found = list(
        db.session.execute(
            _online(select(Contract))
            .where(Contract.resident_id.in_(residents))
            .order_by(Contract.applied_at.desc(), Contract.id)
            .limit(100)
        ).scalars()
    )
    for contract in found:
        _audit_read(contract)
    return found


def my_application(user_id: uuid.UUID, contract_id: uuid.UUID, *, action: str = "read") -> Contract:
    """One application of the user's residents; anyone else's is 404 (audited as denied)."""
    contract: Contract | None = db.session.execute(
        _online(select(Contract)).where(Contract.id == contract_id).execution_options(**UNSCOPED)
    ).scalar_one_or_none()
    if contract is None or contract.resident_id not in bound_resident_ids(user_id):
        if contract is not None:
            audit.record(
                action,
                "contract",
                contract.id,
                resident_id=contract.resident_id,
                institution_id=contract.institution_id,
                result=audit.DENIED,
                purpose="cross_owner_access",
                durable=True,
            )
        raise NotFound("未找到该签约申请", code="application_not_found")
    if action == "read":
        _audit_read(contract)
    return contract


def _audit_read(contract: Contract) -> None:
    audit.record(
        "read",
        "contract",
        contract.id,
        resident_id=contract.resident_id,
        institution_id=contract.institution_id,
    )


def _locked(contract_id: uuid.UUID) -> Contract:
    contract = core.lock_contract(contract_id)
    db.session.refresh(contract)
    return contract


def withdraw(user_id: uuid.UUID, contract_id: uuid.UUID, *, reason: str | None = None) -> Contract:
    """The resident withdraws an open application; an unpaid bill is cancelled (409 while a
    payment is in progress)."""
    my_application(user_id, contract_id, action="withdraw")
    contract = _locked(contract_id)
    if contract.status not in WITHDRAWABLE:
        raise _cannot(contract, "withdraw")
    actor = resident_actor(user_id)
    if contract.status == ContractStatus.AWAITING_PAYMENT:
        outcome = _cancel_bill(contract, reason="居民撤回签约申请", actor=actor)
        if outcome == "in_progress":
            raise Conflict(
                "您的缴费正在处理中，请稍后再撤回；如已付款，签约将自动生效", code="payment_in_progress"
            )
        if outcome == "paid":
            raise Conflict("费用已缴清，签约即将生效，不能撤回", code="already_paid")
    return core.transition(
        contract,
        ContractStatus.WITHDRAWN,
        action="withdraw",
        actor=actor,
        channel=CHANNEL,
        reason=reason or RESIDENT_WITHDRAW_REASON,
        values={"ended_at": clock.now(), "end_reason": reason or RESIDENT_WITHDRAW_REASON},
    )


@dataclass(frozen=True)
class Confirmation:
    contract: Contract
    bill_id: uuid.UUID | None
    amount_fen: int


def confirm(user_id: uuid.UUID, contract_id: uuid.UUID, *, agreement_sha256: str) -> Confirmation:
    """The resident confirms the accepted agreement, quoting its SHA-256 (proof of having read that
    exact text). No self-pay: active now; else awaiting_payment with the bill to pay."""
    my_application(user_id, contract_id, action="confirm")
    contract = _locked(contract_id)
    if contract.status != ContractStatus.AWAITING_CONFIRMATION:
        raise _cannot(contract, "confirm")
    if agreement_sha256.lower() != contract.agreement_sha256:
        raise Conflict(
            "协议内容已更新，请重新阅读协议后再确认",
            code="agreement_changed",
            errors={"agreement_sha256": ["与当前协议不一致"]},
        )
    due = confirm_due_at(contract)
    now = clock.now()
    if due is not None and now > due:
        raise Conflict("确认期限已过，该申请已失效，请重新申请", code="confirmation_overdue")
    actor = resident_actor(user_id)
    detail = {"agreement_sha256": contract.agreement_sha256}
    if contract.self_pay_fen == 0:
        core.transition(
            contract,
            ContractStatus.ACTIVE,
            action="confirm",
            actor=actor,
            channel=CHANNEL,
            detail=detail,
            values={"confirmed_at": now, "signed_at": now, "activated_at": now},
        )
        return Confirmation(contract, None, 0)
    core.transition(
        contract,
        ContractStatus.AWAITING_PAYMENT,
        action="confirm",
        actor=actor,
        channel=CHANNEL,
        detail=detail,
        values={"confirmed_at": now, "signed_at": now},
    )
    core.attach_bill(contract, _resident(contract.resident_id), actor)
    return Confirmation(contract, contract.bill_id, contract.self_pay_fen)


def _cannot(contract: Contract, action: str) -> InvalidTransition:
    label = STATUS_LABELS.get(contract.status, contract.status)
    verb = core.ACTION_LABELS.get(action, "进行此操作")
    return InvalidTransition(f"签约当前状态为“{label}”，不能{verb}", errors={"status": [contract.status]})


def _cancel_bill(contract: Contract, *, reason: str, actor: Actor) -> str:
    """Cancel the contract's unpaid bill: "cancelled", "none" (no open bill), "in_progress" (an
    order is still open at the provider: try later) or "paid"."""
    from app.billing.models import Bill, BillStatus, PaymentOrder
    from app.billing.models.orders import OPEN_ORDER_STATES
    from app.billing.services import orders as billing

    if contract.bill_id is None:
        return "none"
    bill = db.session.execute(select(Bill).where(Bill.id == contract.bill_id).with_for_update()).scalar_one()
    if bill.status == BillStatus.PAID:
        return "paid"
    if bill.status != BillStatus.OPEN:
        return "none"
    open_order = db.session.execute(
        select(PaymentOrder.id)
        .where(PaymentOrder.bill_id == bill.id, PaymentOrder.state.in_([str(s) for s in OPEN_ORDER_STATES]))
        .limit(1)
    ).first()
    if open_order is not None:
        return "in_progress"
    billing.cancel_bill(bill, reason=reason, actor=actor)
    return "cancelled"


# --- the team's review ----------------------------------------------------------------------------------


def staff_actor(principal: Principal) -> Actor:
    return Actor.of(principal)


def _member_team_ids(principal: Principal) -> list[uuid.UUID]:
    """Teams the staff user currently serves in (through their doctor registration)."""
    return list(
        db.session.execute(
            select(TeamMember.team_id)
            .join(Doctor, Doctor.id == TeamMember.doctor_id)
            .where(Doctor.staff_user_id == principal.id, TeamMember.left_at.is_(None))
        ).scalars()
    )


def check_reviewer(principal: Principal, contract: Contract) -> None:
    """The centre admin (own centre: the scope sees to it), or a doctor / team leader of the team."""
    if principal.role == Role.CENTRE_ADMIN:
        return
    if principal.role in (Role.TEAM_LEADER, Role.DOCTOR) and contract.team_id in _member_team_ids(principal):
        return
    raise PermissionDenied("只有该团队的医生、团队长或社康中心管理员可以审核签约申请", code="not_team_member")


def review_queue(
    principal: Principal,
    *,
    team_id: uuid.UUID | None = None,
    status: str | None = None,
    overdue: bool | None = None,
    page: int = 1,
    size: int = 20,
) -> Page[Contract]:
    """Online applications of the caller's centre (district admins: all), oldest first.
    `status`: one status, or "open" (default: pending_review). Doctors and team leaders see the
    applications of their own teams."""
    now = clock.now()
    statement = _online(select(Contract))
    if status in (None, ContractStatus.PENDING_REVIEW):
        statement = statement.where(Contract.status == ContractStatus.PENDING_REVIEW)
    elif status == "open":
        statement = statement.where(Contract.status.in_([str(s) for s in OPEN_STATUSES]))
    else:
        statement = statement.where(Contract.status == status)
    if team_id is not None:
        statement = statement.where(Contract.team_id == team_id)
    if principal.role in (Role.TEAM_LEADER, Role.DOCTOR):
        statement = statement.where(Contract.team_id.in_(_member_team_ids(principal)))
    if overdue is not None:
        late = and_(Contract.status == ContractStatus.PENDING_REVIEW, Contract.review_due_at < now)
        statement = statement.where(late if overdue else ~late)
    statement = statement.order_by(Contract.applied_at, Contract.id)
    result = paginate(statement, page, size)
    for contract in result.items:
        _audit_read(contract)
    return result


def staff_application(principal: Principal, contract_id: uuid.UUID, *, action: str = "read") -> Contract:
    """One online application within the caller's scope (another centre's: 404, audited)."""
    contract = get_or_404(Contract, contract_id, object_type="contract", action=action)
    if contract.applied_at is None:
        raise NotFound("未找到该签约申请", code="application_not_found")
    if action == "read":
        _audit_read(contract)
    return contract


def _check_review_open(contract: Contract, action: str) -> None:
    if contract.status != ContractStatus.PENDING_REVIEW:
        raise _cannot(contract, action)
    if contract.review_due_at is not None and clock.now() > contract.review_due_at:
        raise Conflict("审核期限已过，该申请将自动撤回", code="review_overdue")


def accept(
    principal: Principal,
    contract_id: uuid.UUID,
    *,
    clause_overrides: Mapping[str, str] | None = None,
    note: str | None = None,
) -> Contract:
    """Accept: the agreement re-rendered with the doctor's choices for personalisable clauses (and
    the period from today), one place of the doctor and the team reserved (409 when full),
    awaiting the resident's confirmation; the resident is told by SMS."""
    staff_application(principal, contract_id, action="accept")
    contract = _locked(contract_id)
    check_reviewer(principal, contract)
    _check_review_open(contract, "accept")
    resident = _resident(contract.resident_id)
    team = _team(contract.team_id)
    doctor = _doctor(contract.doctor_id)
    template = (
        db.session.get(AgreementTemplate, contract.template_id) if contract.template_id is not None else None
    ) or current_template(contract.institution_id)
    if template is None:
        raise BusinessRuleViolation("该社康中心尚未发布签约协议", code="template_missing")
    packages = [db.session.get(ServicePackage, p.package_id) for p in contract.packages]
    start, end = core.period_for(clock.today_local())
    context = core.agreement_context(
        contract,
        resident,
        team,
        doctor,
        [p for p in packages if p is not None],
        {"period_start": f"{start:%Y年%m月%d日}", "period_end": f"{end:%Y年%m月%d日}"},
    )
    check_overrides(template, dict(clause_overrides or {}))
    clauses, text, sha256 = core.render_agreement(template, context, clause_overrides)
    core.hold_capacity(contract, doctor, team)
    now = clock.now()
    core.transition(
        contract,
        ContractStatus.AWAITING_CONFIRMATION,
        action="accept",
        actor=staff_actor(principal),
        channel=STAFF_CHANNEL,
        reason=note,
        detail={"personalised": sorted(clause_overrides or {}), "agreement_sha256": sha256},
        values={
            "reviewed_at": now,
            "reviewed_by": principal.id,
            "template_id": template.id,
            "clauses": clauses,
            "agreement_text": text,
            "agreement_sha256": sha256,
            "period_start": start,
            "period_end": end,
        },
    )
    notify(
        contract,
        SMS_ACCEPTED,
        {
            "name": mask_name(resident.name) or "",
            "team": team.name,
            "deadline": _when(now + timedelta(hours=confirm_hours())),
        },
    )
    return contract


def reject(principal: Principal, contract_id: uuid.UUID, *, reason: str) -> Contract:
    """Reject with a reason (shown to the resident and sent by SMS)."""
    staff_application(principal, contract_id, action="reject")
    contract = _locked(contract_id)
    check_reviewer(principal, contract)
    if contract.status != ContractStatus.PENDING_REVIEW:
        raise _cannot(contract, "reject")
    now = clock.now()
    core.transition(
        contract,
        ContractStatus.REJECTED,
        action="reject",
        actor=staff_actor(principal),
        channel=STAFF_CHANNEL,
        reason=reason,
        values={
            "reviewed_at": now,
            "reviewed_by": principal.id,
            "rejection_reason": reason,
            "ended_at": now,
            "end_reason": reason,
        },
    )
    resident = _resident(contract.resident_id)
    notify(
        contract,
        SMS_REJECTED,
        {
            "name": mask_name(resident.name) or "",
            "team": _team(contract.team_id).name,
            "reason": reason,
            "centre": _centre_name(contract.institution_id),
        },
    )
    return contract


# --- lapses (called by app.contracts.jobs, one contract per transaction) ------------------------------


def due_lapses(now: datetime, limit: int = 200) -> list[uuid.UUID]:
    """Online applications past their review or confirmation deadline (oldest first)."""
    confirm_cutoff = now - timedelta(hours=confirm_hours())
    review_late = and_(Contract.status == ContractStatus.PENDING_REVIEW, Contract.review_due_at <= now)
    confirm_late = and_(
        Contract.status.in_([ContractStatus.AWAITING_CONFIRMATION, ContractStatus.AWAITING_PAYMENT]),
        Contract.reviewed_at.is_not(None),
        Contract.reviewed_at <= confirm_cutoff,
    )
    return list(
        db.session.execute(
            _online(select(Contract.id))
            .where(or_(review_late, confirm_late))
            .order_by(Contract.applied_at, Contract.id)
            .limit(limit)
        ).scalars()
    )


def lapse_application(contract_id: uuid.UUID, now: datetime | None = None) -> str:
    """Withdraw one lapsed application, re-checked under its row lock (another worker's row is
    skipped on PostgreSQL). Returns the outcome: "review_lapsed", "confirm_lapsed",
    "payment_lapsed", "payment_in_progress" (left for a later run), "busy" or "not_due"."""
    now = now or clock.now()
    contract = db.session.execute(
        select(Contract).where(Contract.id == contract_id).with_for_update(skip_locked=True)
    ).scalar_one_or_none()
    if contract is None:
        return "busy"
    db.session.refresh(contract)
    due = confirm_due_at(contract)
    if (
        contract.status == ContractStatus.PENDING_REVIEW
        and contract.review_due_at is not None
        and contract.review_due_at <= now
    ):
        outcome, reason = "review_lapsed", REVIEW_LAPSED_REASON
    elif contract.status == ContractStatus.AWAITING_CONFIRMATION and due is not None and due <= now:
        outcome, reason = "confirm_lapsed", CONFIRM_LAPSED_REASON
    elif contract.status == ContractStatus.AWAITING_PAYMENT and due is not None and due <= now:
        outcome, reason = "payment_lapsed", PAYMENT_LAPSED_REASON
        cancelled = _cancel_bill(contract, reason=reason, actor=core.SYSTEM)
        if cancelled == "in_progress":
            return "payment_in_progress"
        if cancelled == "paid":  # the paid listener activates it in the paying transaction
            return "not_due"
    else:
        return "not_due"
    core.transition(
        contract,
        ContractStatus.WITHDRAWN,
        action="withdraw",
        actor=core.SYSTEM,
        channel=SYSTEM_CHANNEL,
        reason=reason,
        detail={"lapsed": outcome},
        values={"ended_at": now, "end_reason": reason},
    )
    notify(
        contract,
        SMS_WITHDRAWN,
        {"name": mask_name(_resident(contract.resident_id).name) or "", "reason": reason},
    )
    return outcome


# --- SMS (best-effort) ---------------------------------------------------------------------------------


def sms_template_ready(template: str) -> bool:
    from notifications.sms import TEMPLATES

    return template in TEMPLATES


def notify(contract: Contract, template: str, params: Mapping[str, str]) -> bool:
    """Queue one SMS to the applicant (the proxy when a proxy applied, else the resident) through
    the outbox, deduplicated per contract and template. Never fails the business action."""
    from app.core.errors import ProviderUnavailable, RateLimited
    from app.messaging import sms
    from notifications.sms import SmsRejected

    if not sms_template_ready(template):
        log.warning("SMS template missing, notification skipped", extra={"template": template})
        return False
    phone = None
    for resident_id in (contract.signer_resident_id, contract.resident_id):
        if resident_id is not None:
            phone = _resident(resident_id).phone
            if phone:
                break
    if not phone:
        return False
    try:
        sms.send_sms(
            phone=phone,
            template=template,
            params=dict(params),
            dedupe_key=f"sms:contract:{contract.id}:{template}",
        )
    except (RateLimited, ProviderUnavailable, SmsRejected) as exc:
        code = exc.code if isinstance(exc, DomainError) else "rejected"
        log.warning(
            "contract SMS not queued",
            extra={"template": template, "contract_id": str(contract.id), "why": code},
        )
        return False
    return True


# --- views ---------------------------------------------------------------------------------------------


def history(contract: Contract) -> list[ContractEvent]:
    return list(
        db.session.execute(
            select(ContractEvent).where(ContractEvent.contract_id == contract.id).order_by(ContractEvent.id)
        ).scalars()
    )


def _step(
    key: str, label: str, state: str, at: datetime | None = None, due: datetime | None = None
) -> dict[str, Any]:
    return {"key": key, "label": label, "state": state, "at": at, "due_at": due}


def progress(contract: Contract) -> list[dict[str, Any]]:
    """The application's steps: done / current / pending / failed / skipped."""
    status = ContractStatus(contract.status)
    ended = status in (ContractStatus.REJECTED, ContractStatus.WITHDRAWN)
    steps = [_step("apply", "提交申请", "done", contract.applied_at)]
    if contract.reviewed_at is not None:
        review_state = "failed" if status == ContractStatus.REJECTED else "done"
        steps.append(_step("review", "团队审核", review_state, contract.reviewed_at, contract.review_due_at))
    else:
        steps.append(
            _step("review", "团队审核", "failed" if ended else "current", None, contract.review_due_at)
        )
    due = confirm_due_at(contract)
    if contract.confirmed_at is not None:
        steps.append(_step("confirm", "居民确认", "done", contract.confirmed_at, due))
    elif status == ContractStatus.AWAITING_CONFIRMATION:
        steps.append(_step("confirm", "居民确认", "current", None, due))
    else:
        steps.append(
            _step("confirm", "居民确认", "failed" if ended and contract.reviewed_at else "pending", None, due)
        )
    if contract.self_pay_fen > 0:
        if contract.activated_at is not None:
            steps.append(_step("pay", "缴费", "done", contract.activated_at, due))
        elif status == ContractStatus.AWAITING_PAYMENT:
            steps.append(_step("pay", "缴费", "current", None, due))
        else:
            steps.append(
                _step("pay", "缴费", "failed" if ended and contract.confirmed_at else "pending", None, due)
            )
    else:
        steps.append(_step("pay", "缴费", "skipped"))
    active_state = "done" if contract.activated_at is not None else ("failed" if ended else "pending")
    steps.append(_step("active", "签约生效", active_state, contract.activated_at))
    return steps


def next_action(contract: Contract) -> str | None:
    return {
        ContractStatus.AWAITING_CONFIRMATION: "confirm",
        ContractStatus.AWAITING_PAYMENT: "pay",
    }.get(ContractStatus(contract.status))


def application_view(
    contract: Contract, *, with_agreement: bool = False, with_history: bool = False
) -> dict[str, Any]:
    """The fields both the resident and the staff see of an application."""
    resident = _resident(contract.resident_id)
    team = _team(contract.team_id)
    doctor = _doctor(contract.doctor_id)
    now = clock.now()
    status = ContractStatus(contract.status)
    due_review = contract.review_due_at if status == ContractStatus.PENDING_REVIEW else None
    view: dict[str, Any] = {
        "id": contract.id,
        "contract_no": contract.contract_no,
        "status": contract.status,
        "status_label": STATUS_LABELS.get(contract.status, contract.status),
        "resident_id": resident.id,
        "resident_name": resident.name,
        "resident_sex": resident.sex,
        "resident_age": resident.age_on(clock.today_local()),
        "institution_id": contract.institution_id,
        "centre_name": _centre_name(contract.institution_id),
        "team_id": team.id,
        "team_name": team.name,
        "doctor_id": doctor.id,
        "doctor_name": doctor.name,
        "channel": contract.channel,
        "signing_way": contract.signing_way,
        "signer_name": contract.signer_name,
        "signer_relationship": contract.signer_relationship,
        "packages": list(contract.packages),
        "price_fen": contract.price_fen,
        "subsidy_fen": contract.subsidy_fen,
        "self_pay_fen": contract.self_pay_fen,
        "period_start": contract.period_start,
        "period_end": contract.period_end,
        "applied_at": contract.applied_at,
        "review_due_at": contract.review_due_at,
        "review_seconds_left": int((due_review - now).total_seconds()) if due_review else None,
        "overdue": bool(due_review and due_review < now),
        "reviewed_at": contract.reviewed_at,
        "reviewed_by": contract.reviewed_by,
        "rejection_reason": contract.rejection_reason,
        "confirm_due_at": confirm_due_at(contract) if status in OPEN_STATUSES else None,
        "confirmed_at": contract.confirmed_at,
        "activated_at": contract.activated_at,
        "end_reason": contract.end_reason,
        "bill_id": contract.bill_id,
        "agreement_sha256": contract.agreement_sha256,
        "next_action": next_action(contract),
        "can_withdraw": status in WITHDRAWABLE,
        "progress": progress(contract),
    }
    if with_agreement:
        view["clauses"] = contract.clauses
        view["agreement_text"] = contract.agreement_text
    if with_history:
        view["history"] = history(contract)
    return view
