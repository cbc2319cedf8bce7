"""Consent (知情同意, DATA-06 / PIPL Art. 29, 31): separate, versioned, revocable, per purpose.

Each purpose has a legal basis. Purposes based on consent need an active consent record for the
*current* version of its text (setting `RESIDENT_CONSENT_VERSIONS`): a new text version needs a
new consent. Under 14 only a guardian may grant or revoke. `require_consent` is what later
features call before processing for a consent-based purpose.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, cast

from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.engine import CursorResult

from app.core import audit, clock
from app.core.auth import Principal
from app.core.db import db
from app.core.errors import BusinessRuleViolation, Conflict, NotFound, PermissionDenied
from app.residents.models import (
    CONSENT_CHANNELS,
    CONSENT_PURPOSES,
    GUARDIAN_CONSENT_AGE,
    ConsentPurpose,
    Resident,
    ResidentConsent,
)
from app.residents.services.common import (
    actor_ref,
    get_resident,
    guarded_write,
    record_change,
    require_active,
    today,
)

DEFAULT_VERSION = "1"


def current_versions() -> dict[str, str]:
    """The current consent-text version of every consent-based purpose, from settings
    (`purpose:version` pairs, comma-separated; unlisted purposes are at version "1")."""
    configured: dict[str, str] = {}
    for item in str(current_app.config.get("RESIDENT_CONSENT_VERSIONS", "")).split(","):
        purpose, sep, version = item.strip().partition(":")
        if sep and purpose in CONSENT_PURPOSES and version.strip():
            configured[purpose] = version.strip()
    return {
        code: configured.get(code, DEFAULT_VERSION) for code, p in CONSENT_PURPOSES.items() if p.needs_consent
    }


def _purpose(code: str) -> ConsentPurpose:
    purpose = CONSENT_PURPOSES.get(code)
    if purpose is None:
        raise BusinessRuleViolation(
            "同意事项无效", code="invalid_purpose", errors={"purpose": ["同意事项无效"]}
        )
    return purpose


def _check_party(resident: Resident, party: str, field: str) -> None:
    if resident.age_on(today()) < GUARDIAN_CONSENT_AGE and party != "guardian":
        message = f"未满 {GUARDIAN_CONSENT_AGE} 周岁的居民须由监护人同意或撤回（个人信息保护法第三十一条）"
        raise BusinessRuleViolation(message, code="guardian_consent_required", errors={field: [message]})
    if party == "guardian" and resident.guardian_id is None:
        raise BusinessRuleViolation(
            "该居民没有登记监护人，请先设置监护人",
            code="guardian_missing",
            errors={field: ["该居民没有登记监护人"]},
        )


def active_consent(resident: Resident, purpose: str) -> ResidentConsent | None:
    found: ResidentConsent | None = db.session.execute(
        select(ResidentConsent).where(
            ResidentConsent.resident_id == resident.id,
            ResidentConsent.purpose == purpose,
            ResidentConsent.ended_at.is_(None),
        )
    ).scalar_one_or_none()
    return found


def require_consent(resident: Resident, purpose: str) -> ResidentConsent | None:
    """403 `consent_required` unless the resident has an active consent to the current text of
    `purpose`. Purposes with a statutory basis need none (returns None)."""
    definition = CONSENT_PURPOSES[purpose]
    if not definition.needs_consent:
        return None
    consent = active_consent(resident, purpose)
    if consent is None:
        raise PermissionDenied(
            f"居民尚未同意“{definition.label}”或已撤回同意，暂不能办理", code="consent_required"
        )
    if consent.text_version != current_versions()[purpose]:
        raise PermissionDenied(
            f"“{definition.label}”知情同意书已更新，须居民重新签署同意", code="consent_required"
        )
    return consent


def grant_consent(
    actor: Principal,
    resident_id: uuid.UUID,
    *,
    purpose: str,
    text_version: str,
    granted_by: str,
    channel: str,
) -> ResidentConsent:
    """Record a consent. A consent to an older text version is superseded by this one."""
    resident = get_resident(resident_id, action="update")
    definition = _purpose(purpose)
    if not definition.needs_consent:
        raise BusinessRuleViolation(
            f"“{definition.label}”依法定职责处理，无需居民同意",
            code="consent_not_applicable",
            errors={"purpose": ["该事项无需居民同意"]},
        )
    current = current_versions()[purpose]
    if text_version != current:
        message = f"知情同意书版本不是当前版本（当前版本为 {current}），请使用最新版本"
        raise BusinessRuleViolation(
            message, code="consent_version_outdated", errors={"text_version": [message]}
        )
    if channel not in CONSENT_CHANNELS:
        raise BusinessRuleViolation("渠道无效", code="invalid_channel", errors={"channel": ["渠道无效"]})
    require_active(resident, "登记知情同意")
    _check_party(resident, granted_by, "granted_by")
    existing = active_consent(resident, purpose)
    if existing is not None and existing.text_version == text_version:
        raise Conflict(
            f"居民已同意“{definition.label}”（版本 {text_version}），无需重复登记",
            code="consent_already_granted",
        )
    now = clock.now()
    actor_id, _role = actor_ref()
    with guarded_write():
        if existing is not None:
            _end(existing, now=now, reason="superseded", party=None, channel=None)
        consent = ResidentConsent(
            id=uuid.uuid4(),
            resident_id=resident.id,
            purpose=purpose,
            text_version=text_version,
            legal_basis=definition.legal_basis.value,
            granted_by=granted_by,
            guardian_id=resident.guardian_id if granted_by == "guardian" else None,
            guardian_relationship=resident.guardian_relationship if granted_by == "guardian" else None,
            channel=channel,
            granted_at=now,
            recorded_by=actor_id,
        )
        db.session.add(consent)
    record_change(
        resident.id,
        "consent_granted",
        fields=["consent"],
        detail={"purpose": purpose, "text_version": text_version, "granted_by": granted_by},
    )
    audit.record(
        "consent_grant",
        "resident_consent",
        consent.id,
        resident_id=resident.id,
        detail={"purpose": purpose, "text_version": text_version},
    )
    return consent


def _end(
    consent: ResidentConsent, *, now: datetime, reason: str, party: str | None, channel: str | None
) -> None:
    """End an active consent with a conditional UPDATE: two concurrent revocations cannot both win."""
    actor_id, _role = actor_ref()
    result = cast(
        CursorResult[Any],
        db.session.execute(
            update(ResidentConsent)
            .where(ResidentConsent.id == consent.id, ResidentConsent.ended_at.is_(None))
            .values(
                ended_at=now,
                end_reason=reason,
                revoked_by=party,
                revoke_channel=channel,
                revoke_recorded_by=actor_id,
            )
            .execution_options(synchronize_session="fetch")
        ),
    )
    if result.rowcount != 1:
        raise Conflict("该同意记录已被撤回或更新，请刷新后重试", code="consent_not_active")


def revoke_consent(
    actor: Principal,
    resident_id: uuid.UUID,
    consent_id: uuid.UUID,
    *,
    revoked_by: str,
    channel: str,
    reason: str | None = None,
) -> ResidentConsent:
    """Withdraw a consent (PIPL Art. 15): processing for that purpose stops from now on."""
    resident = get_resident(resident_id, action="update")
    consent = db.session.execute(
        select(ResidentConsent).where(
            ResidentConsent.id == consent_id, ResidentConsent.resident_id == resident.id
        )
    ).scalar_one_or_none()
    if consent is None:
        raise NotFound("未找到该同意记录", code="consent_not_found")
    if not consent.is_active:
        raise Conflict("该同意记录已撤回或已被新版本取代", code="consent_not_active")
    if channel not in CONSENT_CHANNELS:
        raise BusinessRuleViolation("渠道无效", code="invalid_channel", errors={"channel": ["渠道无效"]})
    _check_party(resident, revoked_by, "revoked_by")
    _end(consent, now=clock.now(), reason="revoked", party=revoked_by, channel=channel)
    record_change(
        resident.id,
        "consent_revoked",
        fields=["consent"],
        reason=reason,
        detail={"purpose": consent.purpose, "text_version": consent.text_version},
    )
    audit.record(
        "consent_revoke",
        "resident_consent",
        consent.id,
        resident_id=resident.id,
        detail={"purpose": consent.purpose},
    )
    return consent


def list_consents(resident_id: uuid.UUID) -> list[ResidentConsent]:
    """Every consent record of the resident, newest first (active, revoked and superseded)."""
    resident = get_resident(resident_id)
    found = list(
        db.session.execute(
            select(ResidentConsent)
            .where(ResidentConsent.resident_id == resident.id)
            .order_by(ResidentConsent.granted_at.desc(), ResidentConsent.id)
        ).scalars()
    )
    audit.record("read", "resident_consent", None, resident_id=resident.id)
    return found
