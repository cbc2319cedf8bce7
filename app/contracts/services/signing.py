"""Signing in person: at the desk (诊间签约), on a home visit with a tablet (上门签约, also queued
offline and uploaded later in a batch), and a household together (家庭签约).

Every channel goes through `core.create_contract` (the rules, the one-contract guard, capacity, the
agreement snapshot, the self-pay bill, history and audit). This module adds what is particular to
signing in person:

- who signs: the resident, a proxy (家属代签: name + relationship), the guardian of a minor, a
  household representative;
- the status: `active` at once when nothing is to be paid, else `awaiting_payment` with a bill for
  the cashier;
- home visits: both signatures (PNG) and an optional photo, decoded, size-checked and re-encoded
  with Pillow; device time, place and position; and the tablet's `client_submission_id`: the
  database's unique constraint makes a retry (also one whose first response was lost after the
  commit, also a concurrent duplicate) find the same contract, while the same id with another body
  is a 409 `submission_conflict`. The body's fingerprint is kept in the contract's `sign` event;
- an offline batch: each item in its own savepoint, the route commits after each item, so one bad
  item never undoes another; each item gets a result (created, already_exists, conflict, invalid);
- a household: all members or none, one `household_batch` id, per-member reasons when refused.

Nothing here commits; the routes do.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from marshmallow import ValidationError
from sqlalchemy import select

from app.contracts.models import (
    AgreementTemplate,
    Contract,
    ContractAttachment,
    ContractEvent,
    ContractSignature,
    ContractStatus,
    ServicePackage,
    SignatureRole,
    SigningChannel,
    SigningWay,
)
from app.contracts.models.contracts import STATUS_LABELS
from app.contracts.schemas.signing import MAX_PHOTO_BYTES, MAX_SIGNATURE_BYTES, HomeVisitSignSchema
from app.contracts.services import core
from app.contracts.services.agreements import require_current_template
from app.contracts.services.packages import published_by_ids
from app.core import audit, clock, images
from app.core.auth import Role, current_principal
from app.core.db import db
from app.core.errors import BusinessRuleViolation, Conflict, DomainError, NotFound
from app.core.scope import get_or_404
from app.doctors.models import Doctor
from app.residents.models import GUARDIAN_RELATIONSHIPS, HOUSEHOLD_RELATIONSHIPS, Household, Resident
from app.residents.services import get_resident
from app.teams.models import Team
from payments.base import fen_to_yuan

# Who may sign residents in person (the team's centre only: the centre scope sees to that).
SIGNING_ROLES: frozenset[str] = frozenset({Role.DOCTOR, Role.NURSE, Role.TEAM_LEADER, Role.CENTRE_ADMIN})

# Home visits: how far the tablet's clock may run ahead, and how old a queued signing may be.
CLOCK_SKEW = timedelta(minutes=5)
MAX_OFFLINE_AGE = timedelta(days=30)
# How far ahead a contract period may start when signed in person.
MAX_START_AHEAD = timedelta(days=90)
MAX_SIGNATURE_SIDE = 4096
MAX_PHOTO_SIDE = 8192
MAX_PHOTO_PIXELS = 40_000_000
SIGNATURE_IMAGE: dict[str, Any] = {
    "limit": MAX_SIGNATURE_BYTES,
    "kinds": ("PNG",),
    "side": MAX_SIGNATURE_SIDE,
}
PHOTO_IMAGE: dict[str, Any] = {"limit": MAX_PHOTO_BYTES, "kinds": ("JPEG", "PNG"), "side": MAX_PHOTO_SIDE}


class SubmissionInvalid(BusinessRuleViolation):
    """The submission itself is malformed (an image, a time, a field): `invalid` in a batch."""

    code = "invalid_submission"


# --- the shared preparation --------------------------------------------------------------------------


@dataclass(frozen=True)
class Parties:
    resident: Resident
    team: Team
    doctor: Doctor
    packages: list[ServicePackage]


def _resident(resident_id: uuid.UUID, field: str = "resident_id") -> Resident:
    try:
        return get_resident(resident_id, action="sign")
    except NotFound:
        raise NotFound(
            "未找到该居民（须为本中心管理的在册居民）", code="resident_not_found", errors={field: ["未找到"]}
        ) from None


def _team_and_doctor(team_id: uuid.UUID, doctor_id: uuid.UUID) -> tuple[Team, Doctor]:
    try:
        team = get_or_404(Team, team_id, object_type="team", action="sign")
    except NotFound:
        raise NotFound(
            "未找到该家庭医生团队（须为本社康中心的团队）",
            code="team_not_found",
            errors={"team_id": ["未找到"]},
        ) from None
    try:
        doctor = get_or_404(Doctor, doctor_id, object_type="doctor", action="sign")
    except NotFound:
        raise NotFound("未找到该医生", code="doctor_not_found", errors={"doctor_id": ["未找到"]}) from None
    return team, doctor


def _parties(args: Mapping[str, Any]) -> Parties:
    resident = _resident(args["resident_id"])
    team, doctor = _team_and_doctor(args["team_id"], args["doctor_id"])
    packages = published_by_ids(args["package_ids"], current_principal())
    return Parties(resident, team, doctor, packages)


def _period_start(requested: date | None, earliest: date) -> date:
    start = requested or earliest
    if start < earliest:
        raise BusinessRuleViolation(
            f"服务期开始日期不能早于 {earliest:%Y年%m月%d日}",
            code="period_start_in_past",
            errors={"period_start": ["不能早于签约当天"]},
        )
    if start > clock.today_local() + MAX_START_AHEAD:
        raise BusinessRuleViolation(
            f"服务期开始日期不能晚于 {MAX_START_AHEAD.days} 天后",
            code="period_start_too_far",
            errors={"period_start": ["过晚"]},
        )
    return start


def _signer(resident: Resident, args: Mapping[str, Any]) -> core.Signer:
    """The signer fields of a desk or home-visit body; a guardian defaults to the registered one."""
    way = SigningWay(args.get("signing_way") or SigningWay.SELF)
    if way is SigningWay.SELF:
        return core.Signer()
    signer_id: uuid.UUID | None = args.get("signer_resident_id")
    name: str | None = args.get("signer_name")
    relationship: str | None = args.get("signer_relationship")
    if way is SigningWay.GUARDIAN and signer_id is None and not name and resident.guardian_id is not None:
        signer_id = resident.guardian_id
        relationship = relationship or GUARDIAN_RELATIONSHIPS.get(
            resident.guardian_relationship or "", resident.guardian_relationship
        )
    if signer_id is not None:
        if signer_id == resident.id:
            raise BusinessRuleViolation(
                "代签人不能是居民本人；本人签约请选择“本人”",
                code="invalid_signer",
                errors={"signer_resident_id": ["不能是本人"]},
            )
        signer = _resident(signer_id, "signer_resident_id")
        if not signer.is_active or signer.age_on(clock.today_local()) < core.ADULT_AGE:
            raise BusinessRuleViolation(
                f"代签人须为年满 {core.ADULT_AGE} 周岁的在册居民",
                code="invalid_signer",
                errors={"signer_resident_id": ["须为成年在册居民"]},
            )
        name = name or signer.name
    return core.Signer(way, signer_id, name, relationship)


def _next_steps(contract: Contract) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = []
    if contract.status == ContractStatus.AWAITING_PAYMENT and contract.bill_id is not None:
        from app.billing.models import Bill

        bill = db.session.get(Bill, contract.bill_id)
        steps.append(
            {
                "action": "pay",
                "label": f"请居民缴纳自付费用 {fen_to_yuan(contract.self_pay_fen)} 元（收费处或扫码支付），缴费后签约生效",
                "method": "GET",
                "href": f"/api/v1/billing/bills/{contract.bill_id}",
                "bill_id": contract.bill_id,
                "bill_no": bill.bill_no if bill is not None else None,
                "amount_fen": contract.self_pay_fen,
            }
        )
    label = (
        "打印签约协议，请居民（或代签人）在纸质协议上签字后留存"
        if contract.channel == SigningChannel.DESK
        else "如需纸质协议，可打印签约协议交居民留存"
    )
    steps.append(
        {
            "action": "print_agreement",
            "label": label,
            "method": "GET",
            "href": f"/api/v1/contracts/{contract.id}/agreement.pdf",
        }
    )
    return steps


_CONTRACT_FIELDS = (  # noqa: SIM905 - a word list reads better than 25 quoted names
    "id contract_no status channel institution_id resident_id team_id doctor_id signing_way"
    " signer_resident_id signer_name signer_relationship household_batch period_start period_end"
    " price_fen subsidy_fen self_pay_fen bill_id template_id agreement_sha256 client_submission_id"
    " signed_place signed_latitude signed_longitude"
).split()
_PACKAGE_FIELDS = "package_id code version name kind price_fen subsidy_fen self_pay_fen".split()  # noqa: SIM905


def describe(contract: Contract) -> dict[str, Any]:
    """The reply of a signing: the contract (as stored), its status and what to do next."""
    resident = db.session.get(Resident, contract.resident_id)
    team = db.session.get(Team, contract.team_id)
    doctor = db.session.get(Doctor, contract.doctor_id)
    signatures = db.session.execute(
        select(ContractSignature)
        .where(ContractSignature.contract_id == contract.id)
        .order_by(ContractSignature.role)
    ).scalars()
    photo = db.session.execute(
        select(ContractAttachment.sha256)
        .where(ContractAttachment.contract_id == contract.id, ContractAttachment.kind == "photo")
        .order_by(ContractAttachment.uploaded_at)
        .limit(1)
    ).scalar_one_or_none()
    status = ContractStatus(contract.status)
    if status == ContractStatus.ACTIVE:
        message = f"签约成功，协议编号 {contract.contract_no}，服务期 {contract.period_start:%Y年%m月%d日} 至 {contract.period_end:%Y年%m月%d日}"
    elif status == ContractStatus.AWAITING_PAYMENT:
        message = f"已签约，待缴纳自付费用 {fen_to_yuan(contract.self_pay_fen)} 元后生效，协议编号 {contract.contract_no}"
    else:
        message = f"协议编号 {contract.contract_no}，当前状态：{STATUS_LABELS[status]}"
    return {
        "message": message,
        "contract": {
            **{name: getattr(contract, name) for name in _CONTRACT_FIELDS},
            "signed_at": _utc(contract.signed_at),
            "activated_at": _utc(contract.activated_at),
            "created_at": _utc(contract.created_at),
            "status_label": STATUS_LABELS[status],
            "resident_name": resident.name if resident is not None else "",
            "team_name": team.name if team is not None else "",
            "doctor_name": doctor.name if doctor is not None else "",
            "packages": [
                {name: getattr(p, name) for name in _PACKAGE_FIELDS}
                for p in sorted(contract.packages, key=lambda p: (p.kind != "basic", p.code))
            ],
            "signatures": [
                {"role": s.role, "signer_name": s.signer_name, "sha256": s.sha256} for s in signatures
            ],
            "photo_sha256": photo,
        },
        "next_steps": _next_steps(contract),
    }


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC)


def _status_for(packages: Sequence[ServicePackage]) -> ContractStatus:
    return (
        ContractStatus.AWAITING_PAYMENT
        if sum(p.self_pay_fen for p in packages) > 0
        else ContractStatus.ACTIVE
    )


def _create(
    parties: Parties,
    *,
    channel: SigningChannel,
    signer: core.Signer,
    period_start: date,
    clause_overrides: Mapping[str, str] | None,
    template: AgreementTemplate,
    values: Mapping[str, Any],
) -> Contract:
    status = _status_for(parties.packages)
    now = clock.now()
    try:
        contract = core.create_contract(
            resident=parties.resident,
            team=parties.team,
            doctor=parties.doctor,
            packages=parties.packages,
            status=status,
            channel=channel,
            actor=core.actor_from_principal(),
            signer=signer,
            period_start=period_start,
            template=template,
            clause_overrides=clause_overrides,
            values={
                "signed_at": now,
                **({"activated_at": now} if status == ContractStatus.ACTIVE else {}),
                **values,
            },
        )
    except Conflict as exc:
        if exc.code == "doctor_capacity_full":
            raise Conflict(
                f"{parties.doctor.name}医生的签约人数已达上限，不能再签约新居民，请选择本团队的其他医生",
                code="doctor_capacity_full",
                errors={"doctor_id": ["签约人数已满"]},
            ) from exc
        if exc.code == "team_capacity_full":
            raise Conflict(
                f"“{parties.team.name}”的签约人数已达上限，请选择其他团队",
                code="team_capacity_full",
                errors={"team_id": ["签约人数已满"]},
            ) from exc
        raise
    return contract


def _sign_event(contract: Contract, channel: SigningChannel, detail: dict[str, Any]) -> None:
    core.record_event(
        contract,
        "sign",
        actor=core.actor_from_principal(),
        channel=channel,
        to_status=contract.status,
        detail={"signing_way": contract.signing_way, **detail},
    )


# --- desk -------------------------------------------------------------------------------------------


def sign_at_desk(args: Mapping[str, Any]) -> dict[str, Any]:
    """诊间签约: create and sign in one step (the resident signs the printed agreement)."""
    parties = _parties(args)
    start = _period_start(args.get("period_start"), clock.today_local())
    signer = _signer(parties.resident, args)
    contract = _create(
        parties,
        channel=SigningChannel.DESK,
        signer=signer,
        period_start=start,
        clause_overrides=args.get("clause_overrides"),
        template=require_current_template(parties.team.institution_id),
        values={},
    )
    _sign_event(contract, SigningChannel.DESK, {})
    return _reply(contract)


def _reply(contract: Contract) -> dict[str, Any]:
    db.session.flush()
    db.session.refresh(contract)
    return describe(contract)


# --- home visit (tablet) -----------------------------------------------------------------------------


@dataclass(frozen=True)
class HomeVisitOutcome:
    created: bool
    reply: dict[str, Any]


def submission_fingerprint(args: Mapping[str, Any]) -> str:
    """SHA-256 of the loaded body, independent of key order and of the order of `package_ids`."""
    canonical = dict(args)
    canonical["package_ids"] = sorted(str(i) for i in canonical.get("package_ids") or [])
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), default=_canonical)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _canonical(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return str(value)


def _by_submission(submission_id: str) -> Contract | None:
    return db.session.execute(
        select(Contract).where(Contract.client_submission_id == submission_id)
    ).scalar_one_or_none()


def _replay(contract: Contract, fingerprint: str) -> HomeVisitOutcome:
    stored = db.session.execute(
        select(ContractEvent.detail)
        .where(ContractEvent.contract_id == contract.id, ContractEvent.action == "sign")
        .order_by(ContractEvent.id)
        .limit(1)
    ).scalar_one_or_none()
    if not stored or stored.get("submission_sha256") != fingerprint:
        raise Conflict(
            f"该签约提交编号已用于另一份内容不同的签约（协议编号 {contract.contract_no}），请勿修改后重复提交；如需重新签约请生成新的提交编号",
            code="submission_conflict",
            errors={"client_submission_id": [contract.contract_no]},
        )
    audit.record(
        "contract.read",
        "contract",
        contract.id,
        resident_id=contract.resident_id,
        institution_id=contract.institution_id,
        detail={"via": "home_visit_retry"},
    )
    return HomeVisitOutcome(False, describe(contract))


def sign_home_visit(args: Mapping[str, Any]) -> HomeVisitOutcome:
    """上门签约 from a tablet. A retry with the same `client_submission_id` and body returns the same
    contract (`created=False`); with another body, 409 `submission_conflict`."""
    submission_id = str(args["client_submission_id"])
    fingerprint = submission_fingerprint(args)
    existing = _by_submission(submission_id)
    if existing is not None:
        return _replay(existing, fingerprint)
    try:
        with db.session.begin_nested():
            contract = _sign_home_visit(args, submission_id, fingerprint)
            reply = _reply(contract)
    except Conflict:
        # A concurrent request with the same id won the insert: answer as its retry.
        existing = _by_submission(submission_id)
        if existing is not None:
            return _replay(existing, fingerprint)
        raise
    return HomeVisitOutcome(True, reply)


def _sign_home_visit(args: Mapping[str, Any], submission_id: str, fingerprint: str) -> Contract:
    signed_at: datetime = args["signed_at"]
    now = clock.now()
    if signed_at > now + CLOCK_SKEW:
        raise SubmissionInvalid(
            "签约时间晚于当前时间，请检查平板电脑的时间设置",
            code="signed_at_in_future",
            errors={"signed_at": ["晚于当前时间"]},
        )
    if signed_at < now - MAX_OFFLINE_AGE:
        raise SubmissionInvalid(
            f"签约时间早于 {MAX_OFFLINE_AGE.days} 天前，离线签约须在 {MAX_OFFLINE_AGE.days} 天内上传，请重新签约",
            code="signed_at_too_old",
            errors={"signed_at": ["过早"]},
        )
    resident_png = clean_image(args["resident_signature"], field="resident_signature", **SIGNATURE_IMAGE)
    doctor_png = clean_image(args["doctor_signature"], field="doctor_signature", **SIGNATURE_IMAGE)
    photo = clean_image(args["photo"], field="photo", **PHOTO_IMAGE) if args.get("photo") else None
    parties = _parties(args)
    start = _period_start(args.get("period_start"), clock.local(signed_at).date())
    signer = _signer(parties.resident, args)
    latitude, longitude = args.get("latitude"), args.get("longitude")
    contract = _create(
        parties,
        channel=SigningChannel.HOME_VISIT,
        signer=signer,
        period_start=start,
        clause_overrides=args.get("clause_overrides"),
        template=require_current_template(parties.team.institution_id),
        values={
            "signed_at": signed_at.astimezone(UTC),
            "client_submission_id": submission_id,
            "signed_place": args["place"],
            "signed_latitude": None if latitude is None else f"{latitude:.6f}",
            "signed_longitude": None if longitude is None else f"{longitude:.6f}",
        },
    )
    actor = core.actor_from_principal()
    db.session.add_all(
        [
            ContractSignature(
                id=uuid.uuid4(),
                contract_id=contract.id,
                role=SignatureRole.RESIDENT,
                signer_name=signer.name or parties.resident.name,
                image=resident_png.data,
                sha256=resident_png.sha256,
                signed_at=signed_at,
            ),
            ContractSignature(
                id=uuid.uuid4(),
                contract_id=contract.id,
                role=SignatureRole.DOCTOR,
                signer_name=parties.doctor.name,
                image=doctor_png.data,
                sha256=doctor_png.sha256,
                signed_at=signed_at,
            ),
        ]
    )
    if photo is not None:
        db.session.add(
            ContractAttachment(
                id=uuid.uuid4(),
                contract_id=contract.id,
                kind="photo",
                content_type=photo.content_type,
                data=photo.data,
                size=len(photo.data),
                sha256=photo.sha256,
                uploaded_by=actor.id,
            )
        )
    _sign_event(
        contract,
        SigningChannel.HOME_VISIT,
        {
            "client_submission_id": submission_id,
            "submission_sha256": fingerprint,
            "device_signed_at": signed_at.isoformat(),
            "signatures": {"resident": resident_png.sha256, "doctor": doctor_png.sha256},
            **({"photo": photo.sha256} if photo is not None else {}),
        },
    )
    return contract


# --- offline batch -----------------------------------------------------------------------------------


def upload_item(index: int, raw: Mapping[str, Any]) -> dict[str, Any]:
    """One queued home-visit signing of a batch, in its own savepoint (the route commits after each):
    created | already_exists | conflict (with the reason) | invalid (with the field errors)."""
    raw_id = raw.get("client_submission_id")
    result: dict[str, Any] = {
        "index": index,
        "client_submission_id": raw_id if isinstance(raw_id, str) else None,
    }
    try:
        args = HomeVisitSignSchema().load(raw)
    except ValidationError as exc:
        messages = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
        return {
            **result,
            "result": "invalid",
            "code": "validation_error",
            "message": "提交的数据有误：" + "、".join(str(k) for k in messages),
            "errors": messages,
        }
    result["client_submission_id"] = str(args["client_submission_id"])
    try:
        with db.session.begin_nested():
            outcome = sign_home_visit(args)
    except SubmissionInvalid as exc:
        return {**result, "result": "invalid", "code": exc.code, "message": exc.message, "errors": exc.errors}
    except DomainError as exc:
        return {
            **result,
            "result": "conflict",
            "code": exc.code,
            "message": exc.message,
            "errors": exc.errors,
        }
    contract = outcome.reply["contract"]
    return {
        **result,
        "result": "created" if outcome.created else "already_exists",
        "contract_id": contract["id"],
        "contract_no": contract["contract_no"],
        "status": contract["status"],
        "message": outcome.reply["message"],
    }


def summarise(results: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    summary = {"created": 0, "already_exists": 0, "conflict": 0, "invalid": 0}
    for item in results:
        summary[item["result"]] += 1
    return summary


# --- household ---------------------------------------------------------------------------------------


def sign_household(args: Mapping[str, Any]) -> dict[str, Any]:
    """家庭签约: every listed member with one `household_batch` id, or none (409/422 naming each
    member's reason). Adults are signed by the representative (an adult member); a minor by the
    guardian: the representative when registered as such, else the guardian given for the member."""
    try:
        household = get_or_404(Household, args["household_id"], object_type="household", action="sign")
    except NotFound:
        raise NotFound(
            "未找到该家庭（须为本中心的家庭）",
            code="household_not_found",
            errors={"household_id": ["未找到"]},
        ) from None
    team, doctor = _team_and_doctor(args["team_id"], args["doctor_id"])
    memberships = {m.resident_id: m for m in household.members}
    representative = _resident(args["representative"]["resident_id"], "representative")
    rep_membership = memberships.get(representative.id)
    if rep_membership is None:
        raise BusinessRuleViolation(
            "户代表须为该家庭的成员",
            code="representative_not_member",
            errors={"representative": ["不是家庭成员"]},
        )
    today = clock.today_local()
    if not representative.is_active or representative.age_on(today) < core.ADULT_AGE:
        raise BusinessRuleViolation(
            f"户代表须为年满 {core.ADULT_AGE} 周岁的在册居民",
            code="invalid_representative",
            errors={"representative": ["须为成年在册居民"]},
        )
    outsiders = [str(m["resident_id"]) for m in args["members"] if m["resident_id"] not in memberships]
    if outsiders:
        raise BusinessRuleViolation(
            "以下居民不是该家庭的成员，不能一同家庭签约",
            code="not_household_member",
            errors={"members": outsiders},
        )
    start = _period_start(args.get("period_start"), today)
    template = require_current_template(team.institution_id)
    batch = uuid.uuid4()
    rep_label = (
        f"户代表（{HOUSEHOLD_RELATIONSHIPS.get(rep_membership.relationship, rep_membership.relationship)}）"
    )
    contracts: list[Contract] = []
    failures: list[tuple[Resident | None, uuid.UUID, DomainError]] = []
    for member in args["members"]:
        resident: Resident | None = None
        try:
            with db.session.begin_nested():
                resident = _resident(member["resident_id"])
                signer = _household_signer(resident, representative, rep_label, member.get("guardian"))
                parties = Parties(
                    resident, team, doctor, published_by_ids(member["package_ids"], current_principal())
                )
                contract = _create(
                    parties,
                    channel=SigningChannel.DESK,
                    signer=signer,
                    period_start=start,
                    clause_overrides=member.get("clause_overrides"),
                    template=template,
                    values={"household_batch": batch},
                )
                _sign_event(
                    contract,
                    SigningChannel.DESK,
                    {
                        "household_id": str(household.id),
                        "household_batch": str(batch),
                        "representative_id": str(representative.id),
                    },
                )
                contracts.append(contract)
        except DomainError as exc:
            failures.append((resident, member["resident_id"], exc))
    if failures:
        raise _household_refusal(failures, len(args["members"]))
    return {
        "household_batch": batch,
        "message": f"家庭签约成功，共 {len(contracts)} 人",
        "results": [_reply(c) for c in contracts],
    }


def _household_signer(
    resident: Resident, representative: Resident, rep_label: str, guardian: Mapping[str, Any] | None
) -> core.Signer:
    if resident.id == representative.id:
        return core.Signer()
    if resident.age_on(clock.today_local()) >= core.ADULT_AGE:
        return core.Signer(SigningWay.HOUSEHOLD, representative.id, representative.name, rep_label)
    relationship_label = GUARDIAN_RELATIONSHIPS.get(
        resident.guardian_relationship or "", resident.guardian_relationship
    )
    if resident.guardian_id == representative.id:
        return core.Signer(
            SigningWay.GUARDIAN, representative.id, representative.name, relationship_label or "监护人"
        )
    if guardian:
        return _signer(
            resident,
            {
                "signing_way": SigningWay.GUARDIAN,
                "signer_resident_id": guardian.get("resident_id"),
                "signer_name": guardian.get("name"),
                "signer_relationship": guardian["relationship"],
            },
        )
    raise BusinessRuleViolation(
        f"{resident.name}未满 {core.ADULT_AGE} 周岁，须由监护人签署：户代表不是其登记的监护人，请填写监护人",
        code="guardian_required",
        errors={"guardian": ["必填"]},
    )


def _household_refusal(
    failures: Sequence[tuple[Resident | None, uuid.UUID, DomainError]], total: int
) -> DomainError:
    reasons = [f"{r.name if r is not None else str(rid)}：{exc.message}" for r, rid, exc in failures]
    errors = {str(rid): [f"{exc.code}: {exc.message}"] for _, rid, exc in failures}
    message = f"家庭签约未完成（{len(failures)}/{total} 名成员不能签约，全部成员均未签约）：" + "；".join(
        reasons
    )
    if any(exc.status == 409 for _, _, exc in failures):
        return Conflict(message, code="household_signing_conflict", errors=errors)
    if all(exc.status == 404 for _, _, exc in failures):
        return NotFound(message, code="household_member_not_found", errors=errors)
    return BusinessRuleViolation(message, code="household_signing_refused", errors=errors)


# --- images ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CleanImage:
    data: bytes
    content_type: str
    sha256: str


_LABELS = {"resident_signature": "居民签名", "doctor_signature": "医生签名", "photo": "现场照片"}


def _image_error(field: str, problem: str, code: str = "invalid_image") -> SubmissionInvalid:
    message = f"{_LABELS.get(field, field)}{problem}"
    return SubmissionInvalid(message, code=code, errors={field: [message]})


def clean_image(text: str, *, field: str, limit: int, kinds: Sequence[str], side: int) -> CleanImage:
    """Decode base64 (an optional `data:image/...;base64,` prefix is allowed), check the size and the
    type by content, decode with Pillow and re-encode (drops metadata such as EXIF positions)."""
    payload = text.strip()
    if payload.startswith("data:") and "," in payload:
        payload = payload.split(",", 1)[1]
    if len(payload) > (limit + 2) // 3 * 4 + 4:
        raise _image_error(field, f"不能超过 {limit // 1024} KB", "image_too_large")
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise _image_error(field, "不是有效的 Base64 编码") from None
    if not raw:
        raise _image_error(field, "为空")
    if len(raw) > limit:
        raise _image_error(field, f"不能超过 {limit // 1024} KB", "image_too_large")
    kind = images.sniff(raw) or ""
    if kind not in kinds:
        raise _image_error(field, "须为 " + " 或 ".join(kinds) + " 图片")
    try:
        image = images.reencode(
            raw,
            kind,
            max_side=side,
            max_pixels=MAX_PHOTO_PIXELS,
            jpeg_quality=85,
            upright={"JPEG"},
            normalise_png_mode=True,
        )
    except images.ImageTooLarge as exc:
        raise _image_error(field, f"尺寸不能超过 {side}×{side} 像素") from exc
    except images.ImageUnreadable as exc:
        raise _image_error(field, "已损坏或无法识别") from exc
    return CleanImage(image.data, image.content_type, hashlib.sha256(image.data).hexdigest())
