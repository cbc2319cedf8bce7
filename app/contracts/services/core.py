"""The contract core every signing channel goes through: rules, the one-contract guard, the
state machine with history, capacity, the agreement snapshot and the self-pay bill.

Channels (`online.py` pre-signing, `signing.py` desk / home visit / household) build on:

- `check_signing(...)`: the rules of a new contract (resident active, guardian for minors, doctor
  and team able to sign, packages published, visible and eligible, health record when required).
- `create_contract(...)`: one contract in its first status, its packages and agreement snapshot,
  the resident's single place taken (`occupancy_key` under a unique constraint: a second one is a
  409 naming where and since when the resident is signed), capacity reserved when the status
  holds it, the self-pay bill when it awaits payment, history and audit.
- `transition(contract, to, ...)`: one conditional UPDATE from the current status (row count
  checked), the place and the capacity released on leaving the occupying statuses, history, audit.

Nothing here commits; routes and jobs do.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import string
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, cast

from flask import current_app
from sqlalchemy import CursorResult, select, update
from sqlalchemy.exc import IntegrityError

from app.contracts.models import (
    CONTRACT_TRANSITIONS,
    OCCUPYING_STATUSES,
    AgreementTemplate,
    Contract,
    ContractEvent,
    ContractPackage,
    ContractStatus,
    PackageKind,
    PackageStatus,
    ServicePackage,
    SigningWay,
)
from app.contracts.models.contracts import CAPACITY_STATUSES, STATUS_LABELS
from app.core import audit, auth, clock
from app.core.auth import Actor
from app.core.db import db
from app.core.errors import BusinessRuleViolation, Conflict, InvalidTransition, NotFound
from app.doctors.models import Doctor
from app.institutions.models import Institution
from app.residents.models import Resident
from app.residents.services import population_groups
from app.teams.models import Team
from app.teams.services.capacity import release_capacity, reserve_capacity

log = logging.getLogger(__name__)

ADULT_AGE = 18


# --- actors ---------------------------------------------------------------------------------------


SYSTEM = Actor("system")


def actor_from_principal() -> Actor:
    """The caller, or the system outside an authenticated request (jobs)."""
    return auth.actor_from_principal(SYSTEM)


# --- numbers and periods --------------------------------------------------------------------------


def new_contract_no() -> str:
    """QY + China date + 10 random digits (unguessable enough to print; verification uses a token)."""
    return f"QY{clock.today_local():%Y%m%d}-{secrets.randbelow(10**10):010d}"


def period_for(start: date) -> tuple[date, date]:
    """One contract period: end = start + N years − 1 day (`CONTRACT_PERIOD_YEARS`, default 1)."""
    years = int(current_app.config["CONTRACT_PERIOD_YEARS"])
    try:
        same_day = start.replace(year=start.year + years)
    except ValueError:  # 29 February → 1 March of a common year, minus one day = 28 February
        same_day = date(start.year + years, 3, 1)
    return start, same_day - timedelta(days=1)


# --- rules ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Signer:
    """Who signs for the resident: themselves, a proxy, the guardian, a household representative."""

    way: SigningWay = SigningWay.SELF
    resident_id: uuid.UUID | None = None
    name: str | None = None
    relationship: str | None = None


def check_resident(resident: Resident, signer: Signer, on: date) -> None:
    if resident.status != "active":
        raise BusinessRuleViolation(
            "该居民档案已迁出或已死亡，不能签约",
            code="resident_not_active",
            errors={"resident_id": [resident.status]},
        )
    if signer.way is not SigningWay.SELF and not (signer.name or signer.resident_id):
        raise BusinessRuleViolation(
            "代签须登记代签人姓名及与居民的关系", code="signer_required", errors={"signer": ["必填"]}
        )
    if signer.way is not SigningWay.SELF and not signer.relationship:
        raise BusinessRuleViolation(
            "代签须登记代签人与居民的关系",
            code="signer_relationship_required",
            errors={"signer_relationship": ["必填"]},
        )
    if resident.age_on(on) < ADULT_AGE:
        if signer.way is not SigningWay.GUARDIAN:
            raise BusinessRuleViolation(
                "未成年人签约须由监护人代为签署",
                code="guardian_required",
                errors={"signing_way": ["须为 guardian"]},
            )
        if resident.guardian_id is not None and signer.resident_id not in (None, resident.guardian_id):
            raise BusinessRuleViolation(
                "签署人不是该居民登记的监护人",
                code="not_the_guardian",
                errors={"signer_resident_id": ["不是监护人"]},
            )


def check_packages(
    resident: Resident, institution_id: uuid.UUID, packages: Sequence[ServicePackage], on: date
) -> None:
    """Exactly one basic package plus any personalised ones, each published, valid on `on`,
    district-wide or of this centre, and eligible for the resident (groups, age, sex)."""
    basics = [p for p in packages if p.kind == PackageKind.BASIC]
    if len(basics) != 1:
        raise BusinessRuleViolation(
            "签约须包含且只包含一个基础服务包",
            code="basic_package_required",
            errors={"package_ids": ["须含一个基础包"]},
        )
    if len({p.code for p in packages}) != len(packages):
        raise BusinessRuleViolation(
            "同一服务包不能重复选择", code="duplicate_package", errors={"package_ids": ["重复"]}
        )
    groups = population_groups(resident, on=on)
    age = resident.age_on(on)
    for package in packages:
        problem = package_problem(
            package, institution_id=institution_id, groups=groups, age=age, sex=resident.sex, on=on
        )
        if problem is not None:
            raise BusinessRuleViolation(
                f"服务包“{package.name}”{problem}",
                code="package_not_eligible",
                errors={"package_ids": [str(package.id)]},
            )


def package_problem(
    package: ServicePackage, *, institution_id: uuid.UUID, groups: set[str], age: int, sex: str, on: date
) -> str | None:
    """Why the package cannot be signed by this resident at this centre (Chinese), or None."""
    if package.status != PackageStatus.PUBLISHED:
        return "未发布或已停用"
    if package.institution_id is not None and package.institution_id != institution_id:
        return "不属于本社康中心"
    if (package.valid_from and on < package.valid_from) or (package.valid_to and on > package.valid_to):
        return "不在有效期内"
    if package.target_groups and not (set(package.target_groups) & groups):
        return "的服务对象与该居民的人群分类不符"
    if package.min_age is not None and age < package.min_age:
        return f"仅限 {package.min_age} 岁及以上居民"
    if package.max_age is not None and age > package.max_age:
        return f"仅限 {package.max_age} 岁及以下居民"
    if package.sex and package.sex != sex:
        return "不适用于该居民的性别"
    return None


# Issue 6 (public-health records) registers the real check; until then no resident "has" a record.
def _no_health_record(resident: Resident) -> bool:
    return False


HEALTH_RECORD_CHECK: list[Any] = [_no_health_record]


def has_health_record(resident: Resident) -> bool:
    return bool(HEALTH_RECORD_CHECK[-1](resident))


def check_health_record(resident: Resident) -> None:
    if current_app.config["CONTRACT_REQUIRES_HEALTH_RECORD"] and not has_health_record(resident):
        raise BusinessRuleViolation(
            "该居民尚未建立健康档案，请先建档再签约",
            code="health_record_required",
            errors={"resident_id": ["未建档"]},
        )


def check_team(team: Team, doctor: Doctor, institution_id: uuid.UUID | None = None) -> None:
    from app.doctors.services import assert_can_sign
    from app.teams.services.capacity import assert_team_can_sign

    if institution_id is not None and team.institution_id != institution_id:
        raise BusinessRuleViolation("该团队不属于本社康中心", code="team_other_centre")
    assert_can_sign(doctor)
    assert_team_can_sign(team)


def check_signing(
    *,
    resident: Resident,
    team: Team,
    doctor: Doctor,
    packages: Sequence[ServicePackage],
    signer: Signer,
    on: date,
) -> None:
    check_resident(resident, signer, on)
    check_health_record(resident)
    check_team(team, doctor)
    check_packages(resident, team.institution_id, packages, on)


def existing_occupant(resident_id: uuid.UUID) -> Contract | None:
    from app.core.scope import SKIP_SCOPE

    return db.session.execute(
        select(Contract).where(Contract.occupancy_key == resident_id).execution_options(**{SKIP_SCOPE: True})
    ).scalar_one_or_none()


def already_signed_error(existing: Contract) -> Conflict:
    """409 naming where and since when the resident is already signed (or applying)."""
    from app.core.scope import SKIP_SCOPE

    centre = db.session.execute(
        select(Institution.name)
        .where(Institution.id == existing.institution_id)
        .execution_options(**{SKIP_SCOPE: True})
    ).scalar_one_or_none()
    team = db.session.execute(
        select(Team.name).where(Team.id == existing.team_id).execution_options(**{SKIP_SCOPE: True})
    ).scalar_one_or_none()
    since = clock.local(existing.activated_at or existing.applied_at or existing.created_at).date()
    status = STATUS_LABELS.get(existing.status, existing.status)
    if existing.status == ContractStatus.ACTIVE:
        message = f"该居民已于 {since:%Y年%m月%d日} 在{centre or '其他社康中心'}（{team or '家庭医生团队'}）签约，签约期至 {existing.period_end:%Y年%m月%d日}，不能重复签约"
    else:
        message = f"该居民已于 {since:%Y年%m月%d日} 向{centre or '其他社康中心'}（{team or '家庭医生团队'}）提交签约（{status}），不能重复签约"
    return Conflict(
        message,
        code="resident_already_signed",
        errors={
            "contract_no": [existing.contract_no],
            "institution": [centre or ""],
            "since": [since.isoformat()],
            "status": [existing.status],
        },
    )


# --- the agreement snapshot -------------------------------------------------------------------------


# What `agreement_context` fills, with a Chinese description for the template editor.
PLACEHOLDERS: dict[str, str] = {
    "contract_no": "协议编号",
    "resident_name": "签约居民姓名",
    "centre_name": "社康中心名称",
    "centre_phone": "社康中心电话",
    "team_name": "家庭医生团队名称",
    "doctor_name": "签约医生姓名",
    "period_start": "服务期开始日期",
    "period_end": "服务期结束日期",
    "packages": "所签服务包（名称，以顿号分隔）",
    "price_yuan": "服务费合计（元）",
    "subsidy_yuan": "财政补助（元）",
    "self_pay_yuan": "居民自付（元）",
}


def placeholder_problem(text: str) -> str | None:
    """Why `text` is not a valid clause text (Chinese), or None."""
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError:
        return "花括号不成对（占位符写作 {resident_name}，普通花括号请写作 {{ 或 }}）"
    for _literal, field, spec, conversion in parsed:
        if field is None:
            continue
        if field not in PLACEHOLDERS:
            shown = "{" + field + "}"
            return f"含有未知的占位符 {shown}；可用的占位符：" + "、".join(
                "{" + name + "}" for name in PLACEHOLDERS
            )
        if spec or conversion:
            return f"占位符 {{{field}}} 不能带格式说明"
    return None


def check_clause_text(text: str, *, key: str, title: str) -> None:
    problem = placeholder_problem(text)
    if problem is not None:
        raise BusinessRuleViolation(
            f"条款“{title}”{problem}",
            code="invalid_placeholder",
            errors={f"clauses.{key}.text": [problem]},
        )


def check_overrides(template: AgreementTemplate, overrides: Mapping[str, str]) -> None:
    """Per-contract replacements: only personalisable clauses, with valid placeholders (422)."""
    by_key = {clause.key: clause for clause in template.clauses}
    for key, text in overrides.items():
        clause = by_key.get(key)
        if clause is None:
            raise BusinessRuleViolation(
                f"协议中没有条款“{key}”", code="unknown_clause", errors={"clauses": [key]}
            )
        if not clause.personalisable:
            raise BusinessRuleViolation(
                f"条款“{clause.title}”不允许个性化修改", code="clause_locked", errors={"clauses": [key]}
            )
        check_clause_text(text, key=key, title=clause.title)


def render_agreement(
    template: AgreementTemplate, context: Mapping[str, Any], overrides: Mapping[str, str] | None = None
) -> tuple[list[dict[str, Any]], str, str]:
    """The template's clauses with placeholders filled, personalisable ones replaced by `overrides`
    (key -> text). Returns (clauses, full text, SHA-256 of the text). Unknown or locked keys are 422."""
    overrides = dict(overrides or {})
    check_overrides(template, overrides)
    rendered: list[dict[str, Any]] = []
    for number, clause in enumerate(template.clauses, start=1):
        source = overrides.get(clause.key, clause.text)
        check_clause_text(source, key=clause.key, title=clause.title)
        try:
            text = source.format_map(_Missing(context))
        except (ValueError, IndexError) as exc:
            raise BusinessRuleViolation(
                f"条款“{clause.title}”格式有误：{exc}", code="clause_format", errors={"clauses": [clause.key]}
            ) from exc
        rendered.append(
            {
                "number": number,
                "key": clause.key,
                "kind": clause.kind,
                "title": clause.title,
                "text": text,
                "personalised": clause.key in overrides,
            }
        )
    full = f"{template.title}\n\n" + "\n\n".join(
        f"第{c['number']}条 {c['title']}\n{c['text']}" for c in rendered
    )
    return rendered, full, hashlib.sha256(full.encode("utf-8")).hexdigest()


class _Missing(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


# --- creating and moving contracts ------------------------------------------------------------------


def create_contract(
    *,
    resident: Resident,
    team: Team,
    doctor: Doctor,
    packages: Sequence[ServicePackage],
    status: ContractStatus,
    channel: str,
    actor: Actor,
    signer: Signer = Signer(),
    period_start: date | None = None,
    template: AgreementTemplate | None = None,
    clause_overrides: Mapping[str, str] | None = None,
    extra_context: Mapping[str, Any] | None = None,
    values: Mapping[str, Any] | None = None,
) -> Contract:
    """A new contract in `status` after every rule (see module doc). Raises 409 when the resident
    already holds a contract or application anywhere in the district."""
    start, end = period_for(period_start or clock.today_local())
    check_signing(resident=resident, team=team, doctor=doctor, packages=packages, signer=signer, on=start)
    existing = existing_occupant(resident.id)
    if existing is not None:
        raise already_signed_error(existing)
    now = clock.now()
    contract = Contract(
        id=uuid.uuid4(),
        contract_no=new_contract_no(),
        institution_id=team.institution_id,
        resident_id=resident.id,
        team_id=team.id,
        doctor_id=doctor.id,
        status=status,
        status_changed_at=now,
        occupancy_key=resident.id if status in OCCUPYING_STATUSES else None,
        channel=channel,
        signing_way=signer.way,
        signer_resident_id=signer.resident_id,
        signer_name=signer.name,
        signer_relationship=signer.relationship,
        period_start=start,
        period_end=end,
        price_fen=sum(p.price_fen for p in packages),
        subsidy_fen=sum(p.subsidy_fen for p in packages),
        self_pay_fen=sum(p.self_pay_fen for p in packages),
        created_by_kind=actor.kind,
        created_by_id=actor.id,
        **dict(values or {}),
    )
    for package in packages:
        contract.packages.append(
            ContractPackage(
                id=uuid.uuid4(),
                package_id=package.id,
                code=package.code,
                version=package.version,
                name=package.name,
                kind=package.kind,
                price_fen=package.price_fen,
                subsidy_fen=package.subsidy_fen,
                self_pay_fen=package.self_pay_fen,
            )
        )
    if template is not None:
        context = agreement_context(contract, resident, team, doctor, packages, extra_context)
        contract.template_id = template.id
        contract.clauses, contract.agreement_text, contract.agreement_sha256 = render_agreement(
            template, context, clause_overrides
        )
    try:
        with db.session.begin_nested():
            db.session.add(contract)
            db.session.flush()
    except IntegrityError as exc:  # a concurrent signing took the place first (or a duplicate submission id)
        existing = existing_occupant(resident.id)
        if existing is not None:
            raise already_signed_error(existing) from exc
        raise Conflict("重复提交，请刷新后查看签约结果", code="duplicate_submission") from exc
    if status in CAPACITY_STATUSES:
        hold_capacity(contract, doctor, team)
    record_event(
        contract,
        "create",
        actor=actor,
        channel=channel,
        to_status=status,
        detail={"packages": [p.code for p in packages]},
    )
    audit.record(
        "contract.create",
        "contract",
        contract.id,
        resident_id=resident.id,
        institution_id=contract.institution_id,
        detail={"status": status, "channel": channel},
    )
    if status == ContractStatus.AWAITING_PAYMENT:
        attach_bill(contract, resident, actor)
    return contract


def agreement_context(
    contract: Contract,
    resident: Resident,
    team: Team,
    doctor: Doctor,
    packages: Sequence[ServicePackage],
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    from app.core.scope import SKIP_SCOPE

    centre = db.session.execute(
        select(Institution)
        .where(Institution.id == team.institution_id)
        .execution_options(**{SKIP_SCOPE: True})
    ).scalar_one()
    return {
        "contract_no": contract.contract_no,
        "resident_name": resident.name,
        "centre_name": centre.name,
        "centre_phone": getattr(centre, "phone", "") or "",
        "team_name": team.name,
        "doctor_name": doctor.name,
        "period_start": f"{contract.period_start:%Y年%m月%d日}",
        "period_end": f"{contract.period_end:%Y年%m月%d日}",
        "packages": "、".join(p.name for p in packages),
        "price_yuan": _yuan(contract.price_fen),
        "subsidy_yuan": _yuan(contract.subsidy_fen),
        "self_pay_yuan": _yuan(contract.self_pay_fen),
        **dict(extra or {}),
    }


def _yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def hold_capacity(contract: Contract, doctor: Doctor, team: Team) -> None:
    """Reserve one place of the doctor and the team (atomic counters; 409 when full)."""
    reserve_capacity(doctor, team)
    db.session.execute(
        update(Contract)
        .where(Contract.id == contract.id)
        .values(capacity_held=True)
        .execution_options(synchronize_session=False)
    )
    db.session.refresh(contract)


def free_capacity(contract: Contract) -> None:
    """Give the places back once (conditional on `capacity_held`)."""
    result = cast(
        CursorResult[Any],
        db.session.execute(
            update(Contract)
            .where(Contract.id == contract.id, Contract.capacity_held.is_(True))
            .values(capacity_held=False)
            .execution_options(synchronize_session=False)
        ),
    )
    if result.rowcount == 1:
        doctor = db.session.get(Doctor, contract.doctor_id)
        team = db.session.get(Team, contract.team_id)
        if doctor is not None and team is not None:
            release_capacity(doctor, team)
    db.session.refresh(contract)


def attach_bill(contract: Contract, resident: Resident, actor: Actor) -> None:
    """The self-pay bill (source contract, source_ref = contract number), paid through payments."""
    from app.billing.models import BillSource
    from app.billing.services import orders as billing

    bill = billing.create_bill(
        institution_id=contract.institution_id,
        amount_fen=contract.self_pay_fen,
        subject="家庭医生签约服务费（自付部分）",
        actor=actor,
        items=[
            {"name": p.name, "quantity": 1, "unit_price_fen": p.self_pay_fen, "amount_fen": p.self_pay_fen}
            for p in contract.packages
            if p.self_pay_fen > 0
        ],
        source=BillSource.CONTRACT,
        source_ref=contract.contract_no,
        resident_id=resident.id,
        payer_name=resident.name,
    )
    db.session.execute(
        update(Contract)
        .where(Contract.id == contract.id)
        .values(bill_id=bill.id)
        .execution_options(synchronize_session=False)
    )
    db.session.refresh(contract)


def transition(
    contract: Contract,
    to: ContractStatus,
    *,
    action: str,
    actor: Actor,
    channel: str,
    reason: str | None = None,
    detail: dict[str, Any] | None = None,
    values: dict[str, Any] | None = None,
) -> Contract:
    """Move the contract to `to` (409 `invalid_transition` if the table or a concurrent change
    forbids it). Leaving the occupying statuses frees the resident's place and the capacity."""
    current = ContractStatus(contract.status)
    if to not in CONTRACT_TRANSITIONS[current]:
        raise InvalidTransition(
            f"签约当前状态为“{STATUS_LABELS[current]}”，不能{ACTION_LABELS.get(action, '进行此操作')}",
            errors={"status": [str(current)]},
        )
    now = clock.now()
    occupying = to in OCCUPYING_STATUSES
    result = cast(
        CursorResult[Any],
        db.session.execute(
            update(Contract)
            .where(Contract.id == contract.id, Contract.status == current)
            .values(
                status=to,
                status_changed_at=now,
                updated_at=now,
                occupancy_key=contract.resident_id if occupying else None,
                **(values or {}),
            )
            .execution_options(synchronize_session=False)
        ),
    )
    db.session.refresh(contract)
    if result.rowcount != 1:
        raise InvalidTransition("签约状态已被他人更新，请刷新后重试", errors={"status": [contract.status]})
    if to not in CAPACITY_STATUSES:
        free_capacity(contract)
    record_event(
        contract,
        action,
        actor=actor,
        channel=channel,
        from_status=current,
        to_status=to,
        reason=reason,
        detail=detail,
    )
    audit.record(
        f"contract.{action}",
        "contract",
        contract.id,
        resident_id=contract.resident_id,
        institution_id=contract.institution_id,
        detail={"from": str(current), "to": str(to), **({"reason": reason} if reason else {})},
    )
    return contract


ACTION_LABELS: Mapping[str, str] = {
    "accept": "同意签约申请",
    "reject": "拒绝签约申请",
    "confirm": "确认签约",
    "withdraw": "撤回",
    "pay": "缴费生效",
    "activate": "生效",
    "expire": "到期",
    "terminate": "解约",
}


def record_event(
    contract: Contract,
    action: str,
    *,
    actor: Actor,
    channel: str,
    from_status: str | None = None,
    to_status: str | None = None,
    reason: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    db.session.add(
        ContractEvent(
            contract_id=contract.id,
            action=action,
            from_status=from_status,
            to_status=to_status,
            actor_kind=actor.kind,
            actor_id=actor.id,
            actor_role=actor.role,
            channel=channel,
            reason=reason,
            detail=detail or {},
        )
    )


def lock_contract(contract_id: uuid.UUID) -> Contract:
    contract = db.session.execute(
        select(Contract).where(Contract.id == contract_id).with_for_update()
    ).scalar_one_or_none()
    if contract is None:
        raise NotFound("未找到该签约记录", code="contract_not_found")
    return contract


def activate_paid_contract(bill: Any, order: Any) -> None:
    """Billing listener (source contract): the self-pay bill was paid -> the contract is active."""
    contract = db.session.execute(
        select(Contract).where(Contract.bill_id == bill.id).with_for_update()
    ).scalar_one_or_none()
    if contract is None or contract.status != ContractStatus.AWAITING_PAYMENT:
        log.warning("paid contract bill without a contract awaiting payment", extra={"bill_id": str(bill.id)})
        return
    transition(
        contract,
        ContractStatus.ACTIVE,
        action="pay",
        actor=Actor("system"),
        channel=contract.channel,
        detail={"order_id": str(order.id), "amount_fen": order.amount_fen},
        values={"activated_at": clock.now()},
    )


def _register_billing_listener() -> None:
    from app.billing.models import BillSource
    from app.billing.services.orders import on_bill_paid

    on_bill_paid(BillSource.CONTRACT, activate_paid_contract)


_register_billing_listener()
