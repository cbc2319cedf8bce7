"""Read views of contracts: the staff's signed-resident list and a contract's full record, its
history, the code lists with Chinese labels, and the mini-program's 我的家庭医生.

Every read is audited exactly once (DATA-04): a list read as one `search` row naming the filters
(never the resident search term itself), a record, history or signature read as one row with the
resident's pseudonymous id. Staff see their own centre's contracts only (`Contract` is
CentreScoped; another centre's id is a 404 audited as denied through `get_or_404`); district roles
see every centre. Residents in the mini-program see the contracts of the residents they act for
(their own and their bound family members'); anything else is a 404 audited as denied.

Population groups are health data: shown and filterable only for the care roles, and each special
category (严重精神障碍, 肺结核, DATA-05) only for staff holding that category's permission — the
residents module's rules (`visible_groups`, `can_see_health`, `can_see_group`,
`visible_special_groups`) decide, nothing here repeats them.

Lists and records are built as plain dicts (the schemas in `app.contracts.schemas.contracts` mask
names and ID numbers on the way out).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Select, and_, func, not_, or_, select

from app.accounts.models import StaffUser
from app.billing.models import Bill, BillStatus
from app.contracts.models import (
    OCCUPYING_STATUSES,
    Contract,
    ContractAttachment,
    ContractEvent,
    ContractPackage,
    ContractSignature,
    ContractStatus,
    PackageKind,
    ServicePackage,
    SignatureRole,
    SigningChannel,
    SigningWay,
)
from app.contracts.models.contracts import STATUS_LABELS
from app.core import audit, clock
from app.core.auth import ROLE_LABELS, Principal, Role
from app.core.crypto import blind_index, mask_name, normalise
from app.core.db import db
from app.core.errors import NotFound, PermissionDenied
from app.core.pagination import Page, paginate
from app.core.scope import SKIP_SCOPE, get_or_404, scoped_institution_id
from app.doctors.models import Doctor
from app.doctors.services.public import centre_public, photo_url
from app.institutions.models import Institution
from app.residents.models import (
    CHILD_0_6,
    ELDERLY_65,
    GENERAL,
    GROUPS,
    SEX_LABELS,
    SPECIAL_GROUP_CODES,
    Resident,
    ResidentGroup,
    normalise_id_number,
)
from app.residents.services import visible_groups
from app.residents.services.common import can_see_group, can_see_health, visible_special_groups
from app.teams.models import Team

UNSCOPED = {SKIP_SCOPE: True}

# Who reads contracts on the staff side (the routes declare it).
VIEW_ROLES: frozenset[str] = frozenset(
    {
        Role.DOCTOR,
        Role.NURSE,
        Role.TEAM_LEADER,
        Role.CENTRE_ADMIN,
        Role.PUBLIC_HEALTH,
        Role.DISTRICT_ADMIN,
        Role.AUDITOR,
    }
)

# --- the one dictionary of codes and labels -------------------------------------------------------

CHANNEL_LABELS: Mapping[str, str] = {
    SigningChannel.MINI_PROGRAM: "小程序网络预申请",
    SigningChannel.PARTNER_APP: "健康罗湖",
    SigningChannel.DESK: "诊间签约",
    SigningChannel.HOME_VISIT: "上门签约",
    SigningChannel.IMPORT: "历史数据导入",
    "system": "系统自动处理",  # events written by jobs (lapses, expiry)
}
ONLINE_CHANNELS = frozenset({SigningChannel.MINI_PROGRAM, SigningChannel.PARTNER_APP})

SIGNING_WAY_LABELS: Mapping[str, str] = {
    SigningWay.SELF: "本人签约",
    SigningWay.PROXY: "家属代签",
    SigningWay.GUARDIAN: "监护人代签",
    SigningWay.HOUSEHOLD: "家庭签约",
}

# History actions (ContractEvent.action) as a resident or a nurse reads them.
ACTION_LABELS: Mapping[str, str] = {
    "create": "创建签约",
    "apply": "提交签约申请",
    "accept": "团队同意签约申请",
    "reject": "团队拒绝签约申请",
    "confirm": "居民确认签约",
    "sign": "双方签字",
    "pay": "缴费完成，签约生效",
    "activate": "签约生效",
    "withdraw": "撤回",
    "review_lapsed": "超时未审核，申请自动撤回",
    "confirm_lapsed": "超时未确认，申请自动撤回",
    "payment_lapsed": "超时未缴费，申请自动撤回",
    "expire": "签约到期",
    "terminate": "解约",
    "renew": "续签",
    "print": "打印协议",
    "reprint": "补打协议",
    "attach": "上传附件",
    "scanned_copy": "上传纸质协议扫描件",
    "signature": "采集签名",
}

ACTOR_KIND_LABELS: Mapping[str, str] = {
    "staff": "工作人员",
    "resident": "居民",
    "partner": "合作应用",
    "system": "系统",
}

SIGNATURE_ROLE_LABELS: Mapping[str, str] = {
    SignatureRole.RESIDENT: "乙方（居民或代签人）签名",
    SignatureRole.DOCTOR: "甲方（家庭医生）签名",
}

ATTACHMENT_KIND_LABELS: Mapping[str, str] = {
    "photo": "签约现场照片",
    "scanned_copy": "纸质协议扫描件",
}

PACKAGE_KIND_LABELS: Mapping[str, str] = {
    PackageKind.BASIC: "基础服务包",
    PackageKind.PERSONALISED: "个性化服务包",
}

PAYMENT_STATUS_LABELS: Mapping[str, str] = {
    "none": "无需自付",
    "unpaid": "待缴费",
    "paid": "已缴费",
    "cancelled": "账单已作废",
}

PROGRESS_STEPS: Sequence[tuple[str, str]] = (
    ("submit", "提交申请"),
    ("review", "团队审核"),
    ("confirm", "居民确认"),
    ("pay", "缴费"),
    ("active", "生效"),
)
STEP_STATE_LABELS: Mapping[str, str] = {
    "done": "已完成",
    "current": "进行中",
    "pending": "未开始",
    "skipped": "无需办理",
    "failed": "未完成",
}


def _pairs(labels: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"code": str(code), "label": label} for code, label in labels.items()]


def code_lists() -> dict[str, list[dict[str, str]]]:
    """Every code of the contract views with its Chinese label."""
    return {
        "statuses": _pairs(STATUS_LABELS),
        "channels": _pairs(CHANNEL_LABELS),
        "signing_ways": _pairs(SIGNING_WAY_LABELS),
        "actions": _pairs(ACTION_LABELS),
        "actor_kinds": _pairs(ACTOR_KIND_LABELS),
        "signature_roles": _pairs(SIGNATURE_ROLE_LABELS),
        "attachment_kinds": _pairs(ATTACHMENT_KIND_LABELS),
        "package_kinds": _pairs(PACKAGE_KIND_LABELS),
        "payment_statuses": _pairs(PAYMENT_STATUS_LABELS),
        "progress_steps": _pairs(dict(PROGRESS_STEPS)),
        "progress_states": _pairs(STEP_STATE_LABELS),
    }


def status_label(status: str | None) -> str | None:
    return None if status is None else STATUS_LABELS.get(status, status)


def channel_label(channel: str) -> str:
    return CHANNEL_LABELS.get(channel, channel)


# --- small lookups (unscoped: the contract itself has been scoped already) -------------------------


def _by_id(model: Any, ids: Iterable[uuid.UUID | None]) -> dict[uuid.UUID, Any]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    rows = db.session.execute(select(model).where(model.id.in_(wanted)).execution_options(**UNSCOPED))
    return {row.id: row for row in rows.scalars()}


def _one(model: Any, object_id: uuid.UUID | None) -> Any:
    return _by_id(model, [object_id]).get(object_id) if object_id is not None else None


def payment_status(contract: Contract, bill: Bill | None) -> str:
    if contract.self_pay_fen == 0:
        return "none"
    if bill is None:
        return "paid" if contract.status == ContractStatus.ACTIVE and contract.bill_id is None else "unpaid"
    if bill.status == BillStatus.PAID:
        return "paid"
    if bill.status == BillStatus.CANCELLED:
        return "cancelled"
    return "unpaid"


def _payment(contract: Contract, bill: Bill | None) -> dict[str, Any]:
    status = payment_status(contract, bill)
    return {
        "status": status,
        "status_label": PAYMENT_STATUS_LABELS[status],
        "self_pay_fen": contract.self_pay_fen,
        "bill_id": bill.id if bill is not None else None,
        "bill_no": bill.bill_no if bill is not None else None,
        "bill_status": bill.status if bill is not None else None,
        "amount_fen": bill.amount_fen if bill is not None else None,
        "paid_at": bill.paid_at if bill is not None else None,
    }


def _resident_brief(resident: Resident | None, principal: Principal | None) -> dict[str, Any] | None:
    if resident is None:
        return None
    groups = visible_groups(resident, principal)
    return {
        "id": resident.id,
        "name": resident.name,
        "sex": resident.sex,
        "sex_label": SEX_LABELS.get(resident.sex, ""),
        "age": resident.age_on(clock.today_local()),
        "population_groups": None
        if groups is None
        else [{"code": c, "label": GROUPS[c].label} for c in groups],
    }


def _named(obj: Any) -> dict[str, Any] | None:
    return None if obj is None else {"id": obj.id, "name": obj.name}


def _doctor_brief(doctor: Doctor | None) -> dict[str, Any] | None:
    return None if doctor is None else {"id": doctor.id, "name": doctor.name, "title": doctor.title}


RESTRICTED_PACKAGE_NAME = "个性化服务包（特殊人群，无权查看）"


def _special_package_ids(package_ids: Iterable[uuid.UUID], principal: Principal | None) -> set[uuid.UUID]:
    """Packages aimed only at special categories (严重精神障碍, 肺结核) that `principal` may not
    see all of: their names reveal the category (DATA-05), so such a caller gets a neutral name."""
    ids = list(package_ids)
    visible = visible_special_groups(principal)
    if not ids or visible == SPECIAL_GROUP_CODES:
        return set()
    rows = db.session.execute(
        select(ServicePackage.id, ServicePackage.target_groups).where(ServicePackage.id.in_(ids))
    )
    return {
        pid
        for pid, groups in rows
        if groups and set(groups) <= SPECIAL_GROUP_CODES and not set(groups) <= visible
    }


def _packages_brief(
    contract: Contract, principal: Principal | None = None, *, redact: bool = False
) -> list[dict[str, Any]]:
    hidden = _special_package_ids((p.package_id for p in contract.packages), principal) if redact else set()
    return [
        {
            "package_id": p.package_id,
            "code": "restricted" if p.package_id in hidden else p.code,
            "version": p.version,
            "name": RESTRICTED_PACKAGE_NAME if p.package_id in hidden else p.name,
            "kind": p.kind,
            "kind_label": PACKAGE_KIND_LABELS.get(p.kind, p.kind),
            "price_fen": p.price_fen,
            "subsidy_fen": p.subsidy_fen,
            "self_pay_fen": p.self_pay_fen,
        }
        for p in _sorted_packages(contract.packages)
    ]


def _sorted_packages(packages: Iterable[ContractPackage]) -> list[ContractPackage]:
    return sorted(packages, key=lambda p: (p.kind != PackageKind.BASIC, p.code))


def frequency_label(times: int, due_within_days: int | None) -> str:
    if due_within_days is not None:
        return f"签约后 {due_within_days} 天内完成 {times} 次"
    return f"签约期内 {times} 次"


def _packages_with_items(
    contract: Contract, principal: Principal | None = None, *, redact: bool = False
) -> list[dict[str, Any]]:
    sources = _by_id(ServicePackage, [p.package_id for p in contract.packages])
    packages = _packages_brief(contract, principal, redact=redact)
    for package in packages:
        source = sources.get(package["package_id"])
        package["items"] = [
            {
                "code": item.code,
                "name": item.name,
                "service_type": item.service_type,
                "times_per_period": item.times_per_period,
                "due_within_days": item.due_within_days,
                "frequency_label": frequency_label(item.times_per_period, item.due_within_days),
                "description": item.description,
            }
            for item in (source.items if source is not None and package["code"] != "restricted" else [])
        ]
    return packages


# --- the staff list ---------------------------------------------------------------------------------

_MOBILE = re.compile(r"1[3-9]\d{9}")
_LETTERS = re.compile(r"[A-Za-z]{1,20}")
_ID_LIKE = re.compile(r"[A-Za-z0-9\s-]{4,40}")


def _resident_search(term: str) -> tuple[str, Any]:
    """`q`: an exact ID number or mobile (blind index), pinyin initials, or part of the name."""
    term = term.strip()
    compact = normalise(term, "phone")
    if _MOBILE.fullmatch(compact):
        return "phone", Resident.phone_bidx == blind_index(compact, "phone")
    if re.search(r"\d", term) and _ID_LIKE.fullmatch(term):
        return "id_number", Resident.id_number_bidx == blind_index(normalise_id_number(term), "id_number")
    if _LETTERS.fullmatch(term):
        prefix = term.lower()
        return "name_initials", or_(
            Resident.name_initials.startswith(prefix, autoescape=True),
            Resident.name_initials.contains(" " + prefix, autoescape=True),
        )
    return "name", Resident.name.contains(term, autoescape=True)


def _years_ago(on: date, years: int) -> date:
    try:
        return on.replace(year=on.year - years)
    except ValueError:  # 29 February
        return date(on.year - years, 2, 28)


def _group_condition(group: str, principal: Principal | None) -> Any:
    """Residents in `group` today, as this principal sees groups (hidden special categories do
    not exist for a role that may not see them)."""
    today = clock.today_local()
    elderly = Resident.birth_date <= _years_ago(today, 65)
    child = Resident.birth_date > _years_ago(today, 7)
    if group == ELDERLY_65:
        return elderly
    if group == CHILD_0_6:
        return child
    if group == GENERAL:
        visible = {c for c in set(GROUPS) - {GENERAL, ELDERLY_65, CHILD_0_6} if can_see_group(principal, c)}
        stored = select(ResidentGroup.resident_id).where(ResidentGroup.code.in_(sorted(visible)))
        return and_(not_(elderly), not_(child), Resident.id.not_in(stored))
    return Resident.id.in_(select(ResidentGroup.resident_id).where(ResidentGroup.code == group))


def check_group_filter(group: str, principal: Principal | None) -> None:
    """403 when the role may not filter by this population group (health data, DATA-05)."""
    if can_see_group(principal, group):
        return
    audit.record(
        "search",
        "contract",
        None,
        result=audit.DENIED,
        purpose="population_group_not_permitted",
        detail={"population_group": group},
        durable=True,
    )
    if group in SPECIAL_GROUP_CODES and can_see_health(principal):
        raise PermissionDenied(
            f"您没有“{GROUPS[group].label}”类别权限，不能按该人群筛选，请联系本中心管理员授权",
            code="special_group_not_permitted",
        )
    raise PermissionDenied("您的角色不能按人群分类筛选", code="population_group_not_permitted")


def _local_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=clock.CHINA)


def list_contracts(
    principal: Principal | None,
    *,
    page: int,
    size: int,
    status: Collection[str] = (ContractStatus.ACTIVE,),
    team_id: uuid.UUID | None = None,
    doctor_id: uuid.UUID | None = None,
    institution_id: uuid.UUID | None = None,
    package_code: str | None = None,
    population_group: str | None = None,
    channel: str | None = None,
    expiry_month: date | None = None,
    signed_from: date | None = None,
    signed_to: date | None = None,
    q: str | None = None,
) -> Page[dict[str, Any]]:
    """Contracts in the caller's scope (a team's with `team_id`), newest first, or by end date
    when filtering an expiry month (renewal work). Audited as one search naming the filters."""
    if population_group:
        check_group_filter(population_group, principal)
    # Residents and their groups are joined unscoped (a resident managed by another centre may sign
    # with one of ours), so the contract's centre is applied here, from the principal only.
    statement: Select[Any] = select(Contract).execution_options(**UNSCOPED)
    centre = scoped_institution_id()
    if centre is not None:
        statement = statement.where(Contract.institution_id == centre)
    filters: dict[str, Any] = {}
    statuses = sorted(set(status))
    if statuses and "all" not in statuses:
        statement = statement.where(Contract.status.in_(statuses))
    filters["status"] = statuses or ["all"]
    for field, value in (
        ("team_id", team_id),
        ("doctor_id", doctor_id),
        ("institution_id", institution_id),
        ("channel", channel),
    ):
        if value:
            statement = statement.where(getattr(Contract, field) == value)
            filters[field] = str(value)
    if package_code:
        statement = statement.where(
            Contract.id.in_(select(ContractPackage.contract_id).where(ContractPackage.code == package_code))
        )
        filters["package_code"] = package_code
    resident_conditions: list[Any] = []
    if population_group:
        resident_conditions.append(_group_condition(population_group, principal))
        filters["population_group"] = population_group
    if q:
        kind, condition = _resident_search(q)
        resident_conditions.append(condition)
        filters["q"] = kind  # the kind of search, never the term
    if resident_conditions:
        statement = statement.where(Contract.resident_id.in_(select(Resident.id).where(*resident_conditions)))
    if expiry_month:
        first = expiry_month.replace(day=1)
        following = (first + timedelta(days=32)).replace(day=1)
        statement = statement.where(Contract.period_end >= first, Contract.period_end < following)
        filters["expiry_month"] = f"{first:%Y-%m}"
    signed_on = func.coalesce(Contract.signed_at, Contract.activated_at, Contract.created_at)
    if signed_from:
        statement = statement.where(signed_on >= _local_start(signed_from))
        filters["signed_from"] = signed_from.isoformat()
    if signed_to:
        statement = statement.where(signed_on < _local_start(signed_to + timedelta(days=1)))
        filters["signed_to"] = signed_to.isoformat()
    if expiry_month:
        statement = statement.order_by(Contract.period_end, Contract.contract_no)
    else:
        statement = statement.order_by(Contract.created_at.desc(), Contract.contract_no)
    found = paginate(statement, page, size)
    rows = _rows(found.items, principal)
    audit.record(
        "search",
        "contract",
        None,
        detail={
            "filters": filters,
            "total": found.total,
            "contract_ids": [str(c.id) for c in found.items],
        },
    )
    return Page(rows, found.page, found.size, found.total)


def _rows(contracts: Sequence[Contract], principal: Principal | None) -> list[dict[str, Any]]:
    residents = _by_id(Resident, [c.resident_id for c in contracts])
    teams = _by_id(Team, [c.team_id for c in contracts])
    doctors = _by_id(Doctor, [c.doctor_id for c in contracts])
    centres = _by_id(Institution, [c.institution_id for c in contracts])
    bills = _by_id(Bill, [c.bill_id for c in contracts])
    rows = []
    for contract in contracts:
        bill = bills.get(contract.bill_id) if contract.bill_id else None
        payment = payment_status(contract, bill)
        rows.append(
            {
                "id": contract.id,
                "contract_no": contract.contract_no,
                "resident": _resident_brief(residents.get(contract.resident_id), principal),
                "institution": _named(centres.get(contract.institution_id)),
                "team": _named(teams.get(contract.team_id)),
                "doctor": _doctor_brief(doctors.get(contract.doctor_id)),
                "packages": _packages_brief(contract, principal, redact=True),
                "status": contract.status,
                "status_label": status_label(contract.status),
                "period_start": contract.period_start,
                "period_end": contract.period_end,
                "channel": contract.channel,
                "channel_label": channel_label(contract.channel),
                "signed_at": contract.signed_at or contract.activated_at,
                "self_pay_fen": contract.self_pay_fen,
                "payment_status": payment,
                "payment_status_label": PAYMENT_STATUS_LABELS[payment],
                "self_pay_paid": payment in ("none", "paid"),
            }
        )
    return rows


# --- one contract for staff ---------------------------------------------------------------------------


def get_contract(contract_id: uuid.UUID, *, action: str = "read") -> Contract:
    """A contract within the caller's scope; another centre's is 404, audited as denied."""
    return get_or_404(Contract, contract_id, object_type="contract", action=action)


def view_contract(principal: Principal | None, contract_id: uuid.UUID) -> dict[str, Any]:
    """The full record (parties, packages, agreement snapshot, signatures, signer, period, bill and
    payment, prints, attachments). Audited with the resident's id."""
    contract = get_contract(contract_id)
    record = contract_record(contract, principal)
    audit.record(
        "read",
        "contract",
        contract.id,
        resident_id=contract.resident_id,
        institution_id=contract.institution_id,
    )
    return record


def contract_record(contract: Contract, principal: Principal | None) -> dict[str, Any]:
    resident: Resident | None = _one(Resident, contract.resident_id)
    signer: Resident | None = _one(Resident, contract.signer_resident_id)
    bill: Bill | None = _one(Bill, contract.bill_id)
    centre: Institution | None = _one(Institution, contract.institution_id)
    signatures = db.session.execute(
        select(ContractSignature)
        .where(ContractSignature.contract_id == contract.id)
        .order_by(ContractSignature.role)
    ).scalars()
    attachments = db.session.execute(
        select(ContractAttachment)
        .where(ContractAttachment.contract_id == contract.id)
        .order_by(ContractAttachment.uploaded_at, ContractAttachment.id)
    ).scalars()
    resident_view = _resident_brief(resident, principal)
    if resident_view is not None and resident is not None:
        resident_view["id_number"] = resident.id_number
    return {
        "id": contract.id,
        "contract_no": contract.contract_no,
        "status": contract.status,
        "status_label": status_label(contract.status),
        "status_changed_at": contract.status_changed_at,
        "channel": contract.channel,
        "channel_label": channel_label(contract.channel),
        "resident": resident_view,
        "institution": _named(centre),
        "team": _named(_one(Team, contract.team_id)),
        "doctor": _doctor_brief(_one(Doctor, contract.doctor_id)),
        "signer": {
            "way": contract.signing_way,
            "way_label": SIGNING_WAY_LABELS.get(contract.signing_way, contract.signing_way),
            "resident_id": contract.signer_resident_id,
            "name": contract.signer_name or (signer.name if signer is not None else None),
            "relationship": contract.signer_relationship,
        },
        "household_batch": contract.household_batch,
        "renewal_of_id": contract.renewal_of_id,
        "period_start": contract.period_start,
        "period_end": contract.period_end,
        "price_fen": contract.price_fen,
        "subsidy_fen": contract.subsidy_fen,
        "self_pay_fen": contract.self_pay_fen,
        "packages": _packages_with_items(contract, principal, redact=True),
        "payment": _payment(contract, bill),
        "agreement": masked_agreement(contract, [resident, signer], [contract.signer_name], principal),
        "signatures": [
            {
                "role": s.role,
                "role_label": SIGNATURE_ROLE_LABELS.get(s.role, s.role),
                "signer_name": s.signer_name,
                "sha256": s.sha256,
                "signed_at": s.signed_at,
                "url": f"/api/v1/contracts/{contract.id}/signatures/{s.role}",
            }
            for s in signatures
        ],
        "attachments": [
            {
                "id": a.id,
                "kind": a.kind,
                "kind_label": ATTACHMENT_KIND_LABELS.get(a.kind, a.kind),
                "content_type": a.content_type,
                "size": a.size,
                "sha256": a.sha256,
                "uploaded_at": a.uploaded_at,
            }
            for a in attachments
        ],
        "print_count": contract.print_count,
        "last_printed_at": contract.last_printed_at,
        "applied_at": contract.applied_at,
        "review_due_at": contract.review_due_at,
        "reviewed_at": contract.reviewed_at,
        "rejection_reason": contract.rejection_reason,
        "confirmed_at": contract.confirmed_at,
        "signed_at": contract.signed_at,
        "activated_at": contract.activated_at,
        "ended_at": contract.ended_at,
        "end_reason": contract.end_reason,
        "signed_place": contract.signed_place,
        "signed_latitude": contract.signed_latitude,
        "signed_longitude": contract.signed_longitude,
        "created_by_kind": contract.created_by_kind,
        "created_at": contract.created_at,
        "updated_at": contract.updated_at,
    }


def masked_agreement(
    contract: Contract,
    residents: Sequence[Resident | None],
    names: Sequence[str | None],
    principal: Principal | None = None,
) -> dict[str, Any]:
    """The agreement snapshot with the personal names in it masked (DATA-02), and the names of
    special-category packages replaced for roles that may not see those categories (DATA-05).
    `sha256` is the hash of the text exactly as signed (unmasked), which the printed agreement carries."""
    people = {n for n in [*(r.name for r in residents if r is not None), *names] if n and len(n) > 1}
    hidden_ids = _special_package_ids((p.package_id for p in contract.packages), principal)
    hidden_names = {p.name for p in contract.packages if p.package_id in hidden_ids}

    def mask(text: str) -> str:
        for name in sorted(hidden_names, key=len, reverse=True):
            text = text.replace(name, RESTRICTED_PACKAGE_NAME)
        for name in sorted(people, key=len, reverse=True):
            text = text.replace(name, mask_name(name) or "")
        return text

    return {
        "template_id": contract.template_id,
        "clauses": [
            {**clause, "text": mask(str(clause.get("text", "")))} if "text" in clause else dict(clause)
            for clause in (contract.clauses or [])
        ],
        "text": mask(contract.agreement_text),
        "sha256": contract.agreement_sha256,
        "names_masked": True,
    }


def signature_image(contract_id: uuid.UUID, role: str) -> ContractSignature:
    """One signature image of a contract of the caller's centre; audited with the resident's id."""
    contract = get_contract(contract_id)
    signature = db.session.execute(
        select(ContractSignature).where(
            ContractSignature.contract_id == contract.id, ContractSignature.role == role
        )
    ).scalar_one_or_none()
    if signature is None:
        raise NotFound("该签约没有这一方的签名", code="signature_not_found")
    audit.record(
        "read",
        "contract_signature",
        signature.id,
        resident_id=contract.resident_id,
        institution_id=contract.institution_id,
        detail={"contract_id": str(contract.id), "role": role},
    )
    return signature


# --- history ----------------------------------------------------------------------------------------


def contract_history(contract_id: uuid.UUID) -> list[dict[str, Any]]:
    """Every event of the contract, oldest first, staff actors by role and name. Audited."""
    contract = get_contract(contract_id)
    events = history_rows(contract, staff_names=True)
    audit.record(
        "read",
        "contract_history",
        contract.id,
        resident_id=contract.resident_id,
        institution_id=contract.institution_id,
    )
    return events


def _events(contract: Contract) -> list[ContractEvent]:
    return list(
        db.session.execute(
            select(ContractEvent)
            .where(ContractEvent.contract_id == contract.id)
            .order_by(ContractEvent.created_at, ContractEvent.id)
        ).scalars()
    )


_ROLE_LABELS: Mapping[str, str] = {str(role): label for role, label in ROLE_LABELS.items()}


def history_rows(contract: Contract, *, staff_names: bool) -> list[dict[str, Any]]:
    """The events as read by staff (`staff_names`: actors named) or by a resident (roles only)."""
    events = _events(contract)
    names: dict[uuid.UUID, str] = {}
    if staff_names:
        staff = _by_id(StaffUser, [e.actor_id for e in events if e.actor_kind == "staff"])
        names = {user_id: user.name for user_id, user in staff.items()}
    rows = []
    for event in events:
        role_label = _ROLE_LABELS.get(event.actor_role or "")
        name = names.get(event.actor_id) if event.actor_kind == "staff" and event.actor_id else None
        rows.append(
            {
                "id": event.id,
                "action": event.action,
                "action_label": ACTION_LABELS.get(event.action, event.action),
                "from_status": event.from_status,
                "from_status_label": status_label(event.from_status),
                "to_status": event.to_status,
                "to_status_label": status_label(event.to_status),
                "actor_kind": event.actor_kind,
                "actor_kind_label": ACTOR_KIND_LABELS.get(event.actor_kind, event.actor_kind),
                "actor_role": event.actor_role if event.actor_kind == "staff" else None,
                "actor_role_label": role_label if event.actor_kind == "staff" else None,
                "actor_name": name,
                "channel": event.channel,
                "channel_label": channel_label(event.channel),
                "reason": event.reason,
                "at": event.created_at,
                **({"detail": dict(event.detail or {})} if staff_names else {}),
            }
        )
    return rows


# --- the mini-program ------------------------------------------------------------------------------------


def acting_for(user_id: uuid.UUID) -> set[uuid.UUID]:
    """The residents a mini-program user acts for: themselves and bound family (active bindings)."""
    from app.mp_accounts.models import BindingStatus, MpBinding

    return set(
        db.session.execute(
            select(MpBinding.resident_id).where(
                MpBinding.user_id == user_id, MpBinding.status == BindingStatus.ACTIVE
            )
        ).scalars()
    )


def _self_resident(user_id: uuid.UUID) -> uuid.UUID:
    from app.mp_accounts.models import BindingStatus, MpBinding, Relationship

    found = db.session.execute(
        select(MpBinding.resident_id).where(
            MpBinding.user_id == user_id,
            MpBinding.relationship == Relationship.SELF,
            MpBinding.status == BindingStatus.ACTIVE,
        )
    ).scalar_one_or_none()
    if found is None:
        raise NotFound("请先完成实名认证", code="identity_not_bound")
    return found


def _resident_not_found(resident_id: uuid.UUID) -> NotFound:
    audit.record(
        "read",
        "contract",
        None,
        resident_id=resident_id,
        result=audit.DENIED,
        purpose="not_bound_resident",
        durable=True,
    )
    return NotFound("未找到该居民，或您未绑定该家庭成员", code="resident_not_found")


def current_contract(resident_id: uuid.UUID) -> Contract | None:
    """The resident's contract or application holding their place, else their latest one."""
    statement = select(Contract).where(Contract.resident_id == resident_id).execution_options(**UNSCOPED)
    occupying = db.session.execute(
        statement.where(Contract.occupancy_key == resident_id)
    ).scalar_one_or_none()
    if occupying is not None:
        return occupying
    latest: Contract | None = db.session.execute(
        statement.order_by(Contract.created_at.desc(), Contract.id).limit(1)
    ).scalar_one_or_none()
    return latest


def my_doctor(principal: Principal, resident_id: uuid.UUID | None) -> dict[str, Any]:
    """我的家庭医生 for the caller or a bound family member: the current contract (or the latest
    application) with doctor, team, centre, packages and items, period, payment, progress, links.
    Audited as a read of the resident's contract."""
    target = resident_id or _self_resident(principal.id)
    if target not in acting_for(principal.id):
        raise _resident_not_found(target)
    resident: Resident | None = _one(Resident, target)
    if resident is None:
        raise _resident_not_found(target)
    contract = current_contract(target)
    audit.record(
        "read",
        "contract",
        contract.id if contract is not None else None,
        resident_id=target,
        institution_id=contract.institution_id if contract is not None else resident.institution_id,
        purpose="my_doctor",
    )
    return {
        "resident": {"id": resident.id, "name": resident.name},
        "has_contract": contract is not None,
        "contract": None if contract is None else mp_contract_view(contract),
    }


def _days_remaining(contract: Contract, today: date) -> int | None:
    if contract.status not in OCCUPYING_STATUSES:
        return None
    start = max(today, contract.period_start)
    return max(0, (contract.period_end - start).days + 1)


def mp_contract_view(contract: Contract) -> dict[str, Any]:
    doctor: Doctor | None = _one(Doctor, contract.doctor_id)
    team: Team | None = _one(Team, contract.team_id)
    centre: Institution | None = _one(Institution, contract.institution_id)
    bill: Bill | None = _one(Bill, contract.bill_id)
    base = f"/mp/v1/contracts/{contract.id}"
    return {
        "id": contract.id,
        "contract_no": contract.contract_no,
        "status": contract.status,
        "status_label": status_label(contract.status),
        "channel": contract.channel,
        "channel_label": channel_label(contract.channel),
        "doctor": None
        if doctor is None
        else {
            "id": doctor.id,
            "name": doctor.name,
            "title": doctor.title,
            "sex": doctor.sex,
            "photo_url": photo_url(doctor),
        },
        "team": _named(team),
        "centre": None
        if centre is None
        else {k: v for k, v in centre_public(centre).items() if k in ("id", "name", "address", "phone")},
        "packages": _packages_with_items(contract),
        "period_start": contract.period_start,
        "period_end": contract.period_end,
        "days_remaining": _days_remaining(contract, clock.today_local()),
        "price_fen": contract.price_fen,
        "subsidy_fen": contract.subsidy_fen,
        "self_pay_fen": contract.self_pay_fen,
        "payment": _payment(contract, bill),
        "review_due_at": contract.review_due_at if contract.status == ContractStatus.PENDING_REVIEW else None,
        "rejection_reason": contract.rejection_reason,
        "end_reason": contract.end_reason,
        "progress": progress(contract, bill),
        "links": {
            "agreement_pdf": f"{base}/agreement.pdf" if contract.agreement_text else None,
            "history": f"{base}/history",
        },
    }


_CONFIRMED = frozenset({ContractStatus.AWAITING_PAYMENT, ContractStatus.ACTIVE})
_REVIEWED = frozenset({ContractStatus.AWAITING_CONFIRMATION, ContractStatus.REJECTED}) | _CONFIRMED


def progress(contract: Contract, bill: Bill | None) -> list[dict[str, Any]]:
    """提交申请 → 团队审核 → 居民确认 → 缴费 → 生效, each with its time and state."""
    events = _events(contract)

    def first(condition: Any) -> datetime | None:
        return next((e.created_at for e in events if condition(e)), None)

    online = contract.channel in ONLINE_CHANNELS
    created = first(lambda e: e.action == "create") or contract.created_at
    submitted = contract.applied_at or created
    reviewed = contract.reviewed_at or first(
        lambda e: e.from_status == ContractStatus.PENDING_REVIEW and e.to_status in _REVIEWED
    )
    confirmed = contract.confirmed_at or first(
        lambda e: e.from_status == ContractStatus.AWAITING_CONFIRMATION and e.to_status in _CONFIRMED
    )
    if not online:  # signed at the desk or on a visit: applying, review and confirmation are one act
        reviewed = reviewed or created
        confirmed = confirmed or contract.signed_at or created
    activated = contract.activated_at or first(lambda e: e.to_status == ContractStatus.ACTIVE)
    paid = (bill.paid_at if bill is not None else None) or first(lambda e: e.action == "pay")
    if paid is None and contract.self_pay_fen > 0 and activated is not None:
        paid = activated
    times: dict[str, datetime | None] = {
        "submit": submitted,
        "review": reviewed,
        "confirm": confirmed,
        "pay": paid,
        "active": activated,
    }
    # Where a rejected or withdrawn application stopped: that step failed, the later ones never came.
    stop: tuple[str, str, datetime | None] | None = None
    if contract.status == ContractStatus.REJECTED:
        note = f"未通过：{contract.rejection_reason}" if contract.rejection_reason else "未通过"
        stop = ("review", note, reviewed or first(lambda e: e.to_status == ContractStatus.REJECTED))
    elif contract.status == ContractStatus.WITHDRAWN:
        open_keys = [k for k, _ in PROGRESS_STEPS if times[k] is None and not _skipped(k, contract)]
        withdrawn = contract.ended_at or first(lambda e: e.to_status == ContractStatus.WITHDRAWN)
        stop = (open_keys[0], "已撤回", withdrawn) if open_keys else None
    steps: list[dict[str, Any]] = []
    stopped = current_given = False
    for key, label in PROGRESS_STEPS:
        at, note_text = times[key], None
        if _skipped(key, contract):
            state, at = "skipped", None
        elif stop is not None and key == stop[0]:
            state, note_text, at = "failed", stop[1], stop[2]
            stopped = True
        elif stopped:
            state, at = "pending", None
        elif at is not None:
            state = "done"
        elif not current_given and contract.status in OCCUPYING_STATUSES:
            state, current_given = "current", True
        else:
            state = "pending"
        steps.append(
            {
                "key": key,
                "label": label,
                "state": state,
                "state_label": STEP_STATE_LABELS[state],
                "at": at,
                "note": note_text,
            }
        )
    return steps


def _skipped(key: str, contract: Contract) -> bool:
    return key == "pay" and contract.self_pay_fen == 0


def mp_contract(principal: Principal, contract_id: uuid.UUID, *, action: str = "read") -> Contract:
    """A contract of a resident the caller acts for; anyone else's is 404, audited as denied."""
    contract = db.session.execute(
        select(Contract).where(Contract.id == contract_id).execution_options(**UNSCOPED)
    ).scalar_one_or_none()
    if contract is None or contract.resident_id not in acting_for(principal.id):
        if contract is not None:
            audit.record(
                action,
                "contract",
                contract.id,
                result=audit.DENIED,
                purpose="cross_owner_access",
                institution_id=contract.institution_id,
                durable=True,
            )
        raise NotFound("未找到该签约记录", code="contract_not_found")
    return contract


def mp_history(principal: Principal, contract_id: uuid.UUID) -> list[dict[str, Any]]:
    """The contract's history for the resident: staff shown by role only. Audited."""
    contract = mp_contract(principal, contract_id)
    rows = history_rows(contract, staff_names=False)
    audit.record(
        "read",
        "contract_history",
        contract.id,
        resident_id=contract.resident_id,
        institution_id=contract.institution_id,
    )
    return rows


def mp_agreement_pdf(principal: Principal, contract_id: uuid.UUID) -> tuple[bytes, str]:
    """The agreement PDF for the resident (or their family): (bytes, file name). Audited as a
    download; it is not a staff print and does not change the print count."""
    from app.contracts.services.printing import render_agreement_pdf

    contract = mp_contract(principal, contract_id, action="download")
    if not contract.agreement_text:
        raise NotFound("该签约尚无协议文本", code="agreement_not_available")
    pdf: bytes = render_agreement_pdf(contract)
    audit.record(
        "download",
        "contract_agreement",
        contract.id,
        resident_id=contract.resident_id,
        institution_id=contract.institution_id,
        detail={"channel": "mini_program"},
    )
    return pdf, f"{contract.contract_no}.pdf"
