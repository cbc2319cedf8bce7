"""Identity binding (实名绑定) and family proxies (家庭成员代理) for WeChat users.

Binding is two steps, each a request:

1. *Ask*: name + ID number. Looked up through `app.residents.services.find_by_id_number`; the name
   must match the record (after trimming spaces and unifying the middle dot of minority names).
   A miss and a wrong name get the same 422 `identity_mismatch`, so the endpoint does not tell
   whether an ID number is on record; only after a match does the answer show the masked phone
   the code went to. Every attempt counts against per-user and per-IP limits (enumeration).
   Then a 6-digit code is sent by SMS (outbox) to the phone *on the resident's record*, within
   the DATA-08 limits: per phone 1/60 s, 5/hour, 10/day; per user and per IP; the global budget.
2. *Confirm*: the code. On success the binding is recorded (`self`, or the proxy relationship).

A resident has one `self` binding: confirming from another WeChat user (a new phone, a new
WeChat account) ends the old one (`superseded`); the code sent to the phone on record is the proof
either way. Proxies require the user's own `self` binding first; at most `MAX_FAMILY_MEMBERS`.

Every step is audited (allowed and denied). Another user's binding id answers 404 (audited).
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from app.core import audit, clock
from app.core.auth import Principal
from app.core.crypto import blind_index, mask_phone
from app.core.db import db
from app.core.errors import BusinessRuleViolation, Conflict, NotFound
from app.messaging import sms
from app.mp_accounts.models import (
    END_REMOVED,
    END_SUPERSEDED,
    BindingStatus,
    MpBinding,
    MpUser,
    Relationship,
)
from app.mp_accounts.services import limits, otp
from app.mp_accounts.services.sessions import current_user
from app.residents.models import Resident, ResidentStatus
from app.residents.services import find_by_id_number

OTP_SELF = "bind_self"
OTP_FAMILY = "bind_family"
SMS_PURPOSE = {OTP_SELF: "微信小程序实名认证", OTP_FAMILY: "授权家人在微信小程序代办社康服务"}
MAX_FAMILY_MEMBERS = 10

# (window seconds, limit, message); "{when}" reads like "45秒后" or "于明天08:30后".
PHONE_RULES = (
    (60, 1, "验证码已发送，请{when}再获取"),
    (3600, 5, "该手机号获取验证码过于频繁，请{when}再试"),
    (86400, 10, "该手机号今日获取验证码次数已达上限，请{when}再试"),
)
# Per WeChat user: below the lookup limits, so that they are reachable (every code needs a lookup).
USER_OTP_RULES = (
    (3600, 8, "您获取验证码过于频繁，请{when}再试"),
    (86400, 15, "您今日获取验证码次数已达上限，请{when}再试"),
)
IP_OTP_RULES = (
    (3600, 60, "当前网络获取验证码过于频繁，请{when}再试"),
    (86400, 300, "当前网络今日获取验证码次数已达上限，请{when}再试"),
)
LOOKUP_USER_RULES = (
    (3600, 10, "实名核验尝试次数过多，请{when}再试"),
    (86400, 20, "今日实名核验尝试次数已达上限，请{when}再试"),
)
LOOKUP_IP_RULES = ((3600, 100, "当前网络实名核验尝试次数过多，请{when}再试"),)

_DOTS = re.compile(r"[·•‧∙⋅・．.]")


@dataclass(frozen=True)
class Challenge:
    """What the client is told after a code was sent."""

    purpose: str
    relationship: str
    masked_phone: str
    expires_at: datetime
    resend_after_seconds: int


def normalise_name(name: str) -> str:
    """Trim, NFKC (full-width letters), one middle dot (阿卜杜·热合曼), no spaces, Latin case-folded."""
    text = unicodedata.normalize("NFKC", name).strip()
    return _DOTS.sub("·", re.sub(r"\s+", "", text)).casefold()


def _rules(kind: str, subject: object, table: tuple[tuple[int, int, str], ...]) -> list[limits.Rule]:
    return [
        limits.Rule(f"mp:rl:{kind}:{subject}:{window}", window, limit, message)
        for window, limit, message in table
    ]


def _ip(client_address: str | None) -> str:
    return client_address or "unknown"


def _active_self(user_id: uuid.UUID) -> MpBinding | None:
    return db.session.execute(
        select(MpBinding).where(
            MpBinding.user_id == user_id,
            MpBinding.relationship == Relationship.SELF,
            MpBinding.status == BindingStatus.ACTIVE,
        )
    ).scalar_one_or_none()


def _lookup(user: MpUser, *, name: str, id_number: str, client_address: str | None, purpose: str) -> Resident:
    limits.enforce(
        _rules("lookup:user", user.id, LOOKUP_USER_RULES)
        + _rules("lookup:ip", _ip(client_address), LOOKUP_IP_RULES),
        code="identity_attempts_exceeded",
    )
    resident = find_by_id_number(id_number)
    if resident is None or normalise_name(resident.name) != normalise_name(name):
        audit.record(
            "identity_check",
            "mp_user",
            user.id,
            resident_id=resident.id if resident else None,
            institution_id=resident.institution_id if resident else None,
            purpose=purpose,
            result=audit.DENIED,
            detail={"reason": "not_found" if resident is None else "name_mismatch"},
            durable=True,
        )
        raise BusinessRuleViolation(
            "姓名与证件号码不匹配，或尚未在社康中心建档。请核对后重试，或携带证件到社康中心办理。",
            code="identity_mismatch",
        )
    if resident.status != ResidentStatus.ACTIVE:
        raise BusinessRuleViolation(
            "该居民档案当前状态不支持线上绑定，请联系所属社康中心", code="resident_inactive"
        )
    if not resident.phone:
        raise BusinessRuleViolation(
            "社康档案中没有登记手机号，无法发送验证码，请到社康中心登记手机号后再试",
            code="no_phone_on_record",
        )
    return resident


def _send_code(
    user: MpUser, resident: Resident, *, purpose: str, relationship: Relationship, client_address: str | None
) -> Challenge:
    phone = resident.phone
    assert phone is not None
    phone_key = resident.phone_bidx or blind_index(phone, "phone") or ""
    limits.enforce(
        _rules("otp:phone", phone_key, PHONE_RULES)
        + _rules("otp:user", user.id, USER_OTP_RULES)
        + _rules("otp:ip", _ip(client_address), IP_OTP_RULES),
        code="otp_rate_limited",
    )
    issued = otp.prepare()
    sms.send_sms(
        phone=phone,
        template="otp",
        params={
            "code": issued.code,
            "minutes": str(int(otp.CODE_LIFETIME.total_seconds() // 60)),
            "purpose": SMS_PURPOSE[purpose],
        },
        dedupe_key=f"sms:otp:{issued.challenge_id}",
        not_after=issued.expires_at,
    )
    otp.store(
        purpose,
        user.id,
        issued,
        {"resident_id": str(resident.id), "relationship": relationship.value, "phone_bidx": phone_key},
    )
    audit.record(
        "otp_sent",
        "resident",
        resident.id,
        resident_id=resident.id,
        institution_id=resident.institution_id,
        purpose=purpose,
        detail={"relationship": relationship.value, "mp_user_id": str(user.id)},
    )
    return Challenge(
        purpose=purpose,
        relationship=relationship.value,
        masked_phone=mask_phone(phone) or "",
        expires_at=issued.expires_at,
        resend_after_seconds=PHONE_RULES[0][0],
    )


def _verified_resident(user: MpUser, *, purpose: str, code: str) -> tuple[Resident, Relationship]:
    try:
        payload = otp.verify(purpose, user.id, code)
    except BusinessRuleViolation as exc:
        audit.record(
            "otp_verify",
            "mp_user",
            user.id,
            purpose=purpose,
            result=audit.DENIED,
            detail={"reason": exc.code},
            durable=True,
        )
        raise
    resident = db.session.get(Resident, uuid.UUID(str(payload["resident_id"])))
    if resident is None or resident.phone_bidx != payload.get("phone_bidx"):
        raise Conflict("居民档案信息已变更，请重新进行认证", code="identity_changed")
    return resident, Relationship(str(payload["relationship"]))


def _open(user: MpUser, resident: Resident, relationship: Relationship, principal: Principal) -> MpBinding:
    binding = MpBinding(
        id=uuid.uuid4(),
        user_id=user.id,
        resident_id=resident.id,
        resident=resident,
        relationship=relationship.value,
        verified_by="sms_otp",
        verified_at=clock.now(),
    )
    binding.transition(BindingStatus.ACTIVE, actor=principal.actor_ref, reason="verified_sms_otp")
    try:
        with db.session.begin_nested():
            db.session.add(binding)
    except IntegrityError:
        raise Conflict("该绑定已存在", code="already_bound") from None
    audit.record(
        "bind",
        "mp_binding",
        binding.id,
        resident_id=resident.id,
        institution_id=resident.institution_id,
        purpose=relationship.value,
        detail={"mp_user_id": str(user.id), "relationship": relationship.value},
    )
    return binding


def _end(binding: MpBinding, *, actor: str, reason: str) -> None:
    binding.transition(BindingStatus.ENDED, actor=actor, reason=reason)
    audit.record(
        "unbind",
        "mp_binding",
        binding.id,
        resident_id=binding.resident_id,
        institution_id=binding.resident.institution_id,
        purpose=reason,
        detail={"mp_user_id": str(binding.user_id), "relationship": binding.relationship},
    )


def has_self_binding(user_id: uuid.UUID) -> bool:
    return _active_self(user_id) is not None


def count_family(user_id: uuid.UUID) -> int:
    return int(
        db.session.execute(
            select(func.count())
            .select_from(MpBinding)
            .where(
                MpBinding.user_id == user_id,
                MpBinding.relationship != Relationship.SELF,
                MpBinding.status == BindingStatus.ACTIVE,
            )
        ).scalar_one()
    )


# --- self ------------------------------------------------------------------------------------


def request_self_binding(
    principal: Principal, *, name: str, id_number: str, client_address: str | None
) -> Challenge:
    user = current_user(principal)
    if _active_self(user.id) is not None:
        raise Conflict("您已完成实名认证", code="already_bound")
    resident = _lookup(user, name=name, id_number=id_number, client_address=client_address, purpose=OTP_SELF)
    return _send_code(
        user, resident, purpose=OTP_SELF, relationship=Relationship.SELF, client_address=client_address
    )


def confirm_self_binding(principal: Principal, *, code: str) -> MpBinding:
    user = current_user(principal)
    resident, _ = _verified_resident(user, purpose=OTP_SELF, code=code)
    if _active_self(user.id) is not None:
        raise Conflict("您已完成实名认证", code="already_bound")
    previous = (
        db.session.execute(
            select(MpBinding).where(
                MpBinding.resident_id == resident.id,
                MpBinding.relationship == Relationship.SELF,
                MpBinding.status == BindingStatus.ACTIVE,
            )
        )
        .scalars()
        .all()
    )
    for old in previous:
        _end(old, actor=principal.actor_ref, reason=END_SUPERSEDED)
    db.session.flush()
    return _open(user, resident, Relationship.SELF, principal)


def self_binding(principal: Principal) -> MpBinding:
    binding = _active_self(current_user(principal).id)
    if binding is None:
        raise NotFound("您尚未完成实名认证", code="identity_not_bound")
    audit.record(
        "read",
        "mp_binding",
        binding.id,
        resident_id=binding.resident_id,
        institution_id=binding.resident.institution_id,
    )
    return binding


def remove_self_binding(principal: Principal) -> None:
    binding = _active_self(current_user(principal).id)
    if binding is None:
        raise NotFound("您尚未完成实名认证", code="identity_not_bound")
    _end(binding, actor=principal.actor_ref, reason=END_REMOVED)


# --- family (proxy) --------------------------------------------------------------------------


def request_family_binding(
    principal: Principal, *, name: str, id_number: str, relationship: str, client_address: str | None
) -> Challenge:
    user = current_user(principal)
    kind = Relationship(relationship)
    if kind is Relationship.SELF:
        raise BusinessRuleViolation("本人请使用实名认证", code="invalid_relationship")
    own = _active_self(user.id)
    if own is None:
        raise BusinessRuleViolation("请先完成本人实名认证，再添加家庭成员", code="identity_not_bound")
    if count_family(user.id) >= MAX_FAMILY_MEMBERS:
        raise BusinessRuleViolation(
            f"最多可添加 {MAX_FAMILY_MEMBERS} 位家庭成员", code="family_limit_reached"
        )
    resident = _lookup(
        user, name=name, id_number=id_number, client_address=client_address, purpose=OTP_FAMILY
    )
    if resident.id == own.resident_id:
        raise BusinessRuleViolation("不能将本人添加为家庭成员", code="cannot_proxy_self")
    if _active_pair(user.id, resident.id) is not None:
        raise Conflict("该家庭成员已添加", code="already_bound")
    return _send_code(user, resident, purpose=OTP_FAMILY, relationship=kind, client_address=client_address)


def _active_pair(user_id: uuid.UUID, resident_id: uuid.UUID) -> MpBinding | None:
    return db.session.execute(
        select(MpBinding).where(
            MpBinding.user_id == user_id,
            MpBinding.resident_id == resident_id,
            MpBinding.status == BindingStatus.ACTIVE,
        )
    ).scalar_one_or_none()


def confirm_family_binding(principal: Principal, *, code: str) -> MpBinding:
    user = current_user(principal)
    resident, relationship = _verified_resident(user, purpose=OTP_FAMILY, code=code)
    if _active_pair(user.id, resident.id) is not None:
        raise Conflict("该家庭成员已添加", code="already_bound")
    return _open(user, resident, relationship, principal)


def list_family(principal: Principal) -> list[MpBinding]:
    user = current_user(principal)
    bindings = list(
        db.session.execute(
            select(MpBinding)
            .where(
                MpBinding.user_id == user.id,
                MpBinding.relationship != Relationship.SELF,
                MpBinding.status == BindingStatus.ACTIVE,
            )
            .order_by(MpBinding.created_at, MpBinding.id)
        ).scalars()
    )
    for binding in bindings:
        audit.record(
            "read",
            "mp_binding",
            binding.id,
            resident_id=binding.resident_id,
            institution_id=binding.resident.institution_id,
            purpose="list",
        )
    return bindings


def get_family(principal: Principal, binding_id: uuid.UUID, *, action: str = "read") -> MpBinding:
    """One of the caller's proxy bindings; anyone else's (or an ended one) is 404, audited."""
    user = current_user(principal)
    binding = db.session.get(MpBinding, binding_id)
    if binding is None or binding.relationship == Relationship.SELF or binding.status != BindingStatus.ACTIVE:
        raise NotFound("未找到该家庭成员", code="not_found")
    if binding.user_id != user.id:
        audit.record(
            action, "mp_binding", binding.id, result=audit.DENIED, purpose="cross_owner_access", durable=True
        )
        raise NotFound("未找到该家庭成员", code="not_found")
    if action == "read":
        audit.record(
            "read",
            "mp_binding",
            binding.id,
            resident_id=binding.resident_id,
            institution_id=binding.resident.institution_id,
        )
    return binding


def remove_family(principal: Principal, binding_id: uuid.UUID) -> None:
    binding = get_family(principal, binding_id, action="delete")
    _end(binding, actor=principal.actor_ref, reason=END_REMOVED)
