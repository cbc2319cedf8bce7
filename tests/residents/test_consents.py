"""Consent (DATA-06, PIPL Art. 29 and 31): separate, versioned, revocable, guardian under 14."""

from __future__ import annotations

import pytest
from flask import Flask
from sqlalchemy import select

from app.accounts.models import StaffUser
from app.core.db import commit, db
from app.core.errors import BusinessRuleViolation, Conflict, NotFound, PermissionDenied
from app.institutions.models import Institution
from app.residents import services
from app.residents.models import Resident, ResidentChange, ResidentConsent
from tests.factories import as_principal
from tests.factories_residents import make_resident


def _grant(user: StaffUser, resident: Resident, **overrides: str) -> ResidentConsent:
    values = {"purpose": "online_services", "text_version": "1", "granted_by": "self", "channel": "desk"}
    values.update(overrides)
    with as_principal(user) as actor:
        consent = services.grant_consent(actor, resident.id, **values)
        commit()
    return consent


def _revoke(
    user: StaffUser, resident: Resident, consent: ResidentConsent, by: str = "self"
) -> ResidentConsent:
    with as_principal(user) as actor:
        revoked = services.revoke_consent(actor, resident.id, consent.id, revoked_by=by, channel="tablet")
        commit()
    return revoked


def test_require_consent_is_403_then_ok_then_403_after_withdrawal(
    nurse: StaffUser, resident: Resident
) -> None:
    with pytest.raises(PermissionDenied) as refused:
        services.require_consent(resident, "online_services")
    assert refused.value.code == "consent_required" and refused.value.status == 403
    consent = _grant(nurse, resident)
    assert services.require_consent(resident, "online_services") == consent
    with pytest.raises(PermissionDenied):  # consent is per purpose
        services.require_consent(resident, "regional_platform_sharing")
    revoked = _revoke(nurse, resident, consent)
    assert (revoked.state, revoked.revoked_by, revoked.revoke_channel) == ("revoked", "self", "tablet")
    assert revoked.ended_at is not None and revoked.revoke_recorded_by == f"staff:{nurse.id}"
    with pytest.raises(PermissionDenied) as refused:
        services.require_consent(resident, "online_services")
    assert refused.value.code == "consent_required"


def test_a_consent_records_basis_version_party_channel_and_recorder(
    nurse: StaffUser, resident: Resident
) -> None:
    consent = _grant(nurse, resident, purpose="regional_platform_sharing", channel="paper")
    assert (consent.legal_basis, consent.text_version, consent.granted_by, consent.channel) == (
        "separate_consent",
        "1",
        "self",
        "paper",
    )
    assert consent.recorded_by == f"staff:{nurse.id}" and consent.granted_at is not None
    history = db.session.execute(
        select(ResidentChange).where(
            ResidentChange.resident_id == resident.id, ResidentChange.action == "consent_granted"
        )
    ).scalar_one()
    assert history.detail["purpose"] == "regional_platform_sharing"


def test_statutory_purposes_need_no_consent(nurse: StaffUser, resident: Resident) -> None:
    assert services.require_consent(resident, "basic_public_health") is None
    with pytest.raises(BusinessRuleViolation) as refused:
        _grant(nurse, resident, purpose="basic_public_health")
    assert refused.value.code == "consent_not_applicable"


def test_the_same_version_twice_is_409(nurse: StaffUser, resident: Resident) -> None:
    _grant(nurse, resident)
    with pytest.raises(Conflict) as refused:
        _grant(nurse, resident)
    assert refused.value.code == "consent_already_granted"


def test_only_the_current_text_version_can_be_granted(nurse: StaffUser, resident: Resident) -> None:
    with pytest.raises(BusinessRuleViolation) as refused:
        _grant(nurse, resident, text_version="0.9")
    assert refused.value.code == "consent_version_outdated" and "text_version" in refused.value.errors


def test_a_new_text_version_needs_a_new_consent_which_supersedes_the_old(
    app: Flask, nurse: StaffUser, resident: Resident
) -> None:
    old = _grant(nurse, resident)
    original = app.config["RESIDENT_CONSENT_VERSIONS"]
    app.config["RESIDENT_CONSENT_VERSIONS"] = "online_services:2"
    try:
        assert services.current_versions()["online_services"] == "2"
        assert services.current_versions()["sms_notifications"] == "1"
        with pytest.raises(PermissionDenied, match="已更新"):
            services.require_consent(resident, "online_services")
        new = _grant(nurse, resident, text_version="2")
        assert services.require_consent(resident, "online_services") == new
        db.session.refresh(old)
        assert (old.state, old.end_reason) == ("superseded", "superseded")
        with as_principal(nurse):
            states = [(c.text_version, c.state) for c in services.list_consents(resident.id)]
        assert sorted(states) == [("1", "superseded"), ("2", "active")]
        with pytest.raises(Conflict) as refused:  # superseded is ended: it cannot be revoked
            _revoke(nurse, resident, old)
        assert refused.value.code == "consent_not_active"
    finally:
        app.config["RESIDENT_CONSENT_VERSIONS"] = original


def test_under_14_the_guardian_grants_and_revokes(nurse: StaffUser, centre: Institution) -> None:
    mother = make_resident(centre, age=35, sex="female")
    child = make_resident(centre, age=9, guardian=mother)
    with pytest.raises(BusinessRuleViolation) as refused:
        _grant(nurse, child, granted_by="self")
    assert refused.value.code == "guardian_consent_required" and "granted_by" in refused.value.errors
    consent = _grant(nurse, child, granted_by="guardian")
    assert (consent.guardian_id, consent.guardian_relationship) == (mother.id, "mother")
    with pytest.raises(BusinessRuleViolation):
        _revoke(nurse, child, consent, by="self")
    assert _revoke(nurse, child, consent, by="guardian").state == "revoked"


def test_a_guardian_consent_needs_a_guardian(nurse: StaffUser, resident: Resident) -> None:
    with pytest.raises(BusinessRuleViolation) as refused:
        _grant(nurse, resident, granted_by="guardian")
    assert refused.value.code == "guardian_missing"


def test_no_consent_for_the_deceased(nurse: StaffUser, centre: Institution) -> None:
    deceased = make_resident(centre, status="deceased")
    with pytest.raises(Conflict) as refused:
        _grant(nurse, deceased)
    assert refused.value.code == "resident_not_active"


def test_a_consent_is_revoked_through_its_own_resident_only(
    nurse: StaffUser, resident: Resident, centre: Institution
) -> None:
    consent = _grant(nurse, resident)
    stranger = make_resident(centre)
    with as_principal(nurse) as actor, pytest.raises(NotFound):
        services.revoke_consent(actor, stranger.id, consent.id, revoked_by="self", channel="desk")


def test_the_database_allows_one_active_consent_per_purpose(resident: Resident) -> None:
    import uuid

    for _ in range(2):
        db.session.add(
            ResidentConsent(
                id=uuid.uuid4(),
                resident_id=resident.id,
                purpose="sms_notifications",
                text_version="1",
                legal_basis="consent",
                granted_by="self",
                channel="desk",
            )
        )
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
        db.session.flush()
    db.session.rollback()
