"""API-01: the generated BOLA matrix over every route that takes an object id.

For every route in `app.url_map` with a `uuid` path parameter, the objects are built in centre A
and the route is called with a token for every centre role (and a centre-level auditor):

- staff of centre B: 403 where the route does not admit the role at all (its declared roles, read
  from `app.core.api.route_auth_specs`), otherwise 404 exactly like a missing object, never 2xx;
  each such 404 leaves one `denied` audit row;
- staff of centre A: the declared roles get 2xx or a 4xx that is not 404 (the isolation never
  hides their own centre's objects from them); the others get 403;
- a district admin: 2xx on reads, and never 404 on writes.

Writes get a body that passes validation (BODIES), so a 404 comes from the object lookup and not
from a 422 that would hide whether the lookup leaks. A new route with an id parameter fails
`test_every_id_parameter_has_a_factory` until its factory (and body) is registered here.

Not covered here: resident tokens (R1 against R2's objects) on `/mp/v1`, which belong to the
mini-program's own tests.
"""

from __future__ import annotations

import io
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from functools import cached_property
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from app import create_app
from app.accounts.models import StaffUser
from app.core import clock
from app.core.api import AuthSpec, route_auth_specs
from app.core.audit import AuditEvent
from app.core.auth import CLINICAL_ROLES, GRANTABLE_PERMISSIONS, Role
from app.core.db import commit, db
from app.institutions.models import Institution
from tests.audit.support import Http
from tests.factories import grant, make_centre, make_staff, token_for

CENTRE_ROLES: list[Role] = [r for r in Role if r is not Role.DISTRICT_ADMIN]  # incl. a centre-level auditor
UUID_PARAM = re.compile(r"<uuid:(\w+)>")
ANY_PARAM = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")
UUID_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class World:
    """The objects of one centre that the routes' ids point at, built on first use and consistent
    with each other (the consent belongs to the resident, the resident is a member of the household,
    the member belongs to the team)."""

    def __init__(self, centre: Institution) -> None:
        self.centre = centre

    @cached_property
    def staff(self) -> StaffUser:
        return make_staff(Role.DOCTOR, self.centre)

    # residents -------------------------------------------------------------------------------

    @cached_property
    def resident(self) -> Any:
        from tests.factories_residents import make_resident

        return make_resident(self.centre)

    @cached_property
    def another_resident(self) -> Any:
        """Not in any household; an adult who may act as a guardian."""
        from tests.factories_residents import make_resident

        return make_resident(self.centre, birth_date=date(1980, 3, 1))

    @cached_property
    def household_head(self) -> Any:
        from tests.factories_residents import make_resident

        return make_resident(self.centre, birth_date=date(1970, 5, 1))

    @cached_property
    def household(self) -> Any:
        """Headed by `household_head`, with `resident` as an ordinary member."""
        from tests.factories_residents import make_household

        return make_household(self.household_head, (self.resident, "child"))

    @cached_property
    def consent(self) -> Any:
        from tests.factories_residents import make_consent

        return make_consent(self.resident)

    @cached_property
    def family_binding(self) -> Any:
        """A WeChat user acting for the resident (parent)."""
        from app.mp_accounts.models import MpBinding, MpUser

        user = MpUser(id=uuid.uuid4(), openid=f"o-test-{uuid.uuid4().hex}")
        db.session.add(user)
        commit()
        binding = MpBinding(
            id=uuid.uuid4(),
            user_id=user.id,
            resident_id=self.resident.id,
            relationship="parent",
            status="active",
            verified_at=clock.now(),
        )
        db.session.add(binding)
        commit()
        return binding

    # doctors and teams ---------------------------------------------------------------------------

    @cached_property
    def doctor(self) -> Any:
        """Approved, with a photo."""
        import hashlib

        from app.doctors.models import DoctorPhoto
        from tests.factories_doctors import make_doctor

        doctor = make_doctor(self.centre)
        data = _png()[0].getvalue()
        db.session.add(
            DoctorPhoto(
                doctor_id=doctor.id,
                content_type="image/png",
                data=data,
                size=len(data),
                width=64,
                height=64,
                sha256=hashlib.sha256(data).hexdigest(),
            )
        )
        commit()
        return doctor

    @cached_property
    def another_doctor(self) -> Any:
        """Approved, in no team."""
        from tests.factories_doctors import make_doctor

        return make_doctor(self.centre)

    @cached_property
    def team(self) -> Any:
        """A GP leader and a nurse."""
        from tests.factories_doctors import make_team

        return make_team(self.centre)

    @cached_property
    def team_member(self) -> Any:
        """The nurse of `team` (not the leader)."""
        from app.teams.models import TeamMember

        return db.session.execute(
            select(TeamMember).where(TeamMember.team_id == self.team.id, TeamMember.is_leader.is_(False))
        ).scalar_one()

    @cached_property
    def mi_import(self) -> Any:
        """An imported medical-insurance doctor list: district-wide, it belongs to no centre."""
        from app.doctors.models import MiImportBatch

        batch = MiImportBatch(
            id=uuid.uuid4(), filename="医保医师名单.csv", file_format="csv", file_sha256="0" * 64
        )
        db.session.add(batch)
        commit()
        return batch

    # --- payments (issue 4) ---------------------------------------------------------------------

    @cached_property
    def bill(self) -> Any:
        from tests.billing.factories import make_bill

        bill = make_bill(self.centre, amount_fen=2500)
        commit()
        return bill

    @cached_property
    def payment_order(self) -> Any:
        """A QR order waiting for the payer."""
        from app.billing.models import OrderState
        from app.billing.services import orders
        from payments.base import Channel, PayMode

        order = orders.start_order(
            self.bill,
            mode=PayMode.MERCHANT_QR,
            channel=Channel.WECHAT,
            client_ip="127.0.0.1",
            actor=orders.SYSTEM,
        )
        orders.transition(
            order,
            OrderState.PENDING,
            source="api",
            actor=orders.SYSTEM,
            values={"qr_content": "sandbox://matrix"},
        )
        commit()
        return order

    @cached_property
    def paid_order(self) -> Any:
        """A paid order of another bill, with one refund and one anomaly."""
        from app.billing.services import orders
        from payments.base import Channel, PayMode, TradeState, TradeStatus
        from tests.billing.factories import make_bill

        bill = make_bill(self.centre, amount_fen=3000)
        order = orders.start_order(
            bill, mode=PayMode.MERCHANT_QR, channel=Channel.WECHAT, client_ip="127.0.0.1", actor=orders.SYSTEM
        )
        status = TradeStatus(
            out_trade_no=order.out_trade_no,
            state=TradeState.PAID,
            amount_fen=3000,
            provider_trade_no=f"4200{uuid.uuid4().hex[:24]}",
        )
        orders.apply_trade_status(order, status, source="query", actor=orders.PROVIDER)
        commit()
        return order

    @cached_property
    def refund(self) -> Any:
        from app.billing.models import RefundOrigin
        from app.billing.services import orders

        refund = orders.request_refund(
            self.paid_order, amount_fen=100, reason="矩阵测试", origin=RefundOrigin.STAFF, actor=orders.SYSTEM
        )
        commit()
        return refund

    @cached_property
    def anomaly(self) -> Any:
        from app.billing.models import AnomalyKind
        from app.billing.services import orders

        anomaly, _ = orders.record_anomaly(AnomalyKind.AMOUNT_MISMATCH, source="test", order=self.paid_order)
        commit()
        return anomaly

    @cached_property
    def reconciliation_run(self) -> Any:
        from app.billing.models import ReconciliationRun

        run = ReconciliationRun(
            id=uuid.uuid4(),
            channel="wechat",
            status="completed",
            attempts=1,
            bill_date=date.fromordinal(date(2000, 1, 1).toordinal() + uuid.uuid4().int % 30000),
        )
        db.session.add(run)
        commit()
        return run

    @cached_property
    def aggregate_qr(self) -> Any:
        from app.billing.models import AggregateQr

        code = AggregateQr(
            id=uuid.uuid4(), institution_id=self.centre.id, token=uuid.uuid4().hex, label="收费处"
        )
        db.session.add(code)
        commit()
        return code

    # --- family-doctor signing (issue 5) ---------------------------------------------------------

    @cached_property
    def package(self) -> Any:
        """A draft personalised package of the centre."""
        from tests.contracts.factories import make_package

        return make_package(institution_id=self.centre.id, status="draft")

    @cached_property
    def template(self) -> Any:
        """A draft agreement template of the centre."""
        from tests.contracts.factories import make_template

        return make_template(institution_id=self.centre.id, status="draft")

    @cached_property
    def contract_application(self) -> Any:
        """A pending online application (mini-program) of `resident` to `team`'s GP leader."""
        from datetime import timedelta

        from app.contracts.models import ContractStatus, SigningChannel
        from app.contracts.services import core
        from tests.contracts.factories import make_basic_package, make_template
        from tests.factories_residents import make_resident

        now = clock.now()
        contract = core.create_contract(
            resident=make_resident(self.centre),
            team=self.team,
            doctor=self.team.leader().doctor,
            packages=[make_basic_package()],
            status=ContractStatus.PENDING_REVIEW,
            channel=SigningChannel.MINI_PROGRAM,
            actor=core.SYSTEM,
            template=make_template(institution_id=self.centre.id),
            values={"applied_at": now, "review_due_at": now + timedelta(hours=48)},
        )
        commit()
        return contract

    @cached_property
    def contract(self) -> Any:
        """An active desk contract of `resident`, with both parties' signatures."""
        import hashlib

        from app.contracts.models import ContractAttachment, ContractSignature, ContractStatus, SigningChannel
        from app.contracts.services import core
        from tests.contracts.factories import make_basic_package, make_template

        contract = core.create_contract(
            resident=self.resident,
            team=self.team,
            doctor=self.team.leader().doctor,
            packages=[make_basic_package()],
            status=ContractStatus.ACTIVE,
            channel=SigningChannel.DESK,
            actor=core.SYSTEM,
            template=make_template(institution_id=self.centre.id),
        )
        png, _ = _png()
        image = png.getvalue()
        for role in ("resident", "doctor"):
            db.session.add(
                ContractSignature(
                    id=uuid.uuid4(),
                    contract_id=contract.id,
                    role=role,
                    image=image,
                    sha256=hashlib.sha256(image).hexdigest(),
                )
            )
        db.session.add(
            ContractAttachment(
                id=uuid.uuid4(),
                contract_id=contract.id,
                kind="scanned_copy",
                content_type="image/png",
                data=image,
                size=len(image),
                sha256=hashlib.sha256(image).hexdigest(),
            )
        )
        commit()
        return contract

    # --- public-health records (issue 6) ---------------------------------------------------------

    @cached_property
    def health_record(self) -> Any:
        """The health record of `resident` (numbered; no forms yet)."""
        from app.health_records.services import records
        from tests.factories import as_principal

        with as_principal(self.staff):
            record = records.open_record(self.resident.id)
        commit()
        return record

    @cached_property
    def health_form(self) -> Any:
        """A general form (老年人生活自理能力评估表) on `health_record`."""
        from app.health_records.services import forms
        from tests.factories import as_principal

        record = self.health_record
        with as_principal(self.staff):
            form = forms.create_form(record.id, "elderly_selfcare", SELFCARE_DATA)
        commit()
        return form

    @cached_property
    def health_case(self) -> Any:
        """An open 肺结核 case of `resident` (the TB notice arrived an hour ago)."""
        from datetime import timedelta

        from app.health_records.services import cases
        from tests.factories import as_principal, grant

        self.health_record  # noqa: B018 - a case needs the record
        grant(self.staff, "health:tb")
        with as_principal(self.staff):
            case = cases.open_case(self.resident.id, "tb", notified_at=clock.now() - timedelta(hours=1))
        commit()
        return case


SELFCARE_DATA: dict[str, str] = {
    "assessed_at": "2026-01-05",
    "meal_level": "1",
    "grooming_level": "1",
    "dressing_level": "1",
    "toileting_level": "1",
    "activity_level": "1",
}


# Path parameter -> the id of that object in a centre's world.
ID_FACTORIES: dict[str, Callable[[World], uuid.UUID]] = {
    "staff_id": lambda w: w.staff.id,
    "institution_id": lambda w: w.centre.id,
    "resident_id": lambda w: w.resident.id,
    "household_id": lambda w: w.household.id,
    "consent_id": lambda w: w.consent.id,
    "binding_id": lambda w: w.family_binding.id,
    "doctor_id": lambda w: w.doctor.id,
    "team_id": lambda w: w.team.id,
    "member_id": lambda w: w.team_member.id,
    "import_id": lambda w: w.mi_import.id,
    "bill_id": lambda w: w.bill.id,
    "order_id": lambda w: w.payment_order.id,
    "refund_id": lambda w: w.refund.id,
    "anomaly_id": lambda w: w.anomaly.id,
    "run_id": lambda w: w.reconciliation_run.id,
    "code_id": lambda w: w.aggregate_qr.id,
    "package_id": lambda w: w.package.id,
    "template_id": lambda w: w.template.id,
    "application_id": lambda w: w.contract_application.id,
    "contract_id": lambda w: w.contract.id,
    "record_id": lambda w: w.health_record.id,
    "form_id": lambda w: w.health_form.id,
    "case_id": lambda w: w.health_case.id,
}


@dataclass(frozen=True)
class Upload:
    """A multipart body (form fields and files) instead of JSON."""

    fields: dict[str, Any]


def _png() -> tuple[io.BytesIO, str]:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 120, 40)).save(buffer, format="PNG")
    buffer.seek(0)
    return buffer, "photo.png"


Body = Callable[[World], "dict[str, Any] | Upload"]
# (method, rule) -> a request body that passes the route's schema (ids in it point into the same world).
BODIES: dict[tuple[str, str], Body] = {
    # accounts and institutions
    ("PATCH", "/api/v1/staff/<uuid:staff_id>"): lambda w: {"name": "改名测试"},
    ("POST", "/api/v1/staff/<uuid:staff_id>/role"): lambda w: {"role": "nurse", "reason": "矩阵测试"},
    ("POST", "/api/v1/staff/<uuid:staff_id>/disable"): lambda w: {"reason": "矩阵测试"},
    ("POST", "/api/v1/staff/<uuid:staff_id>/enable"): lambda w: {"reason": "矩阵测试"},
    ("POST", "/api/v1/staff/<uuid:staff_id>/unlock"): lambda w: {"reason": "矩阵测试"},
    ("POST", "/api/v1/staff/<uuid:staff_id>/unmask"): lambda w: {
        "field": "phone",
        "reason": "verify_identity",
    },
    ("PUT", "/api/v1/staff/<uuid:staff_id>/grants/<string:permission>"): lambda w: {"reason": "矩阵测试"},
    ("DELETE", "/api/v1/staff/<uuid:staff_id>/grants/<string:permission>"): lambda w: {"reason": "矩阵测试"},
    ("PATCH", "/api/v1/institutions/<uuid:institution_id>"): lambda w: {"opening_hours": "08:00-17:00"},
    # residents and households
    ("PATCH", "/api/v1/residents/<uuid:resident_id>"): lambda w: {
        "current_address": "深圳市罗湖区矩阵路1号",
        "reason": "矩阵测试",
    },
    ("POST", "/api/v1/residents/<uuid:resident_id>/status"): lambda w: {
        "status": "moved_out",
        "effective_date": clock.today_local().isoformat(),
        "reason": "矩阵测试",
    },
    ("POST", "/api/v1/residents/<uuid:resident_id>/transfer"): lambda w: {
        "to_institution_id": str(w.centre.id),
        "reason": "矩阵测试",
    },
    ("PUT", "/api/v1/residents/<uuid:resident_id>/guardian"): lambda w: {
        "guardian_id": str(w.another_resident.id),
        "relationship": "mother",
    },
    ("POST", "/api/v1/residents/<uuid:resident_id>/consents"): lambda w: {
        "purpose": "online_services",
        "text_version": "1",
        "granted_by": "self",
        "channel": "desk",
    },
    ("POST", "/api/v1/residents/<uuid:resident_id>/consents/<uuid:consent_id>/revoke"): lambda w: {
        "revoked_by": "self",
        "channel": "desk",
    },
    ("POST", "/api/v1/residents/<uuid:resident_id>/unmask"): lambda w: {
        "field": "phone",
        "reason": "verify_identity",
    },
    ("PUT", "/api/v1/households/<uuid:household_id>/head"): lambda w: {
        "head_id": str(w.resident.id),
        "relationships": [{"resident_id": str(w.household_head.id), "relationship": "parent"}],
    },
    ("POST", "/api/v1/households/<uuid:household_id>/members"): lambda w: {
        "resident_id": str(w.another_resident.id),
        "relationship": "child",
    },
    ("PATCH", "/api/v1/households/<uuid:household_id>/members/<uuid:resident_id>"): lambda w: {
        "relationship": "spouse"
    },
    # doctors
    ("POST", "/api/v1/doctors/<uuid:doctor_id>/resubmit"): lambda w: {
        "name": "王芳",
        "sex": "female",
        "birth_date": "1985-04-01",
        "phone": "13700001234",
        "title": "主治医师",
        "practice_licence_no": f"11044039{uuid.uuid4().int % 10**7:07d}",
        "practice_scopes": ["全科医学专业"],
    },
    ("PATCH", "/api/v1/doctors/<uuid:doctor_id>/profile"): lambda w: {"introduction": "矩阵测试"},
    ("PUT", "/api/v1/doctors/<uuid:doctor_id>/photo"): lambda w: Upload({"photo": _png()}),
    ("POST", "/api/v1/doctors/<uuid:doctor_id>/approve"): lambda w: {},
    ("POST", "/api/v1/doctors/<uuid:doctor_id>/reject"): lambda w: {"reason": "矩阵测试"},
    ("POST", "/api/v1/doctors/<uuid:doctor_id>/practice-status"): lambda w: {
        "status": "suspended",
        "reason": "矩阵测试",
    },
    ("PUT", "/api/v1/doctors/<uuid:doctor_id>/mi-code"): lambda w: {
        "mi_doctor_code": f"D440303{uuid.uuid4().int % 10**6:06d}"
    },
    ("PUT", "/api/v1/doctors/<uuid:doctor_id>/capacity"): lambda w: {"capacity_override": 100},
    ("POST", "/api/v1/doctor-mi-imports/<uuid:import_id>/apply"): lambda w: {},
    # teams
    ("PATCH", "/api/v1/teams/<uuid:team_id>"): lambda w: {"description": "矩阵测试"},
    ("POST", "/api/v1/teams/<uuid:team_id>/dissolve"): lambda w: {"reason": "矩阵测试"},
    ("PUT", "/api/v1/teams/<uuid:team_id>/capacity"): lambda w: {"capacity_override": 500},
    ("POST", "/api/v1/teams/<uuid:team_id>/members"): lambda w: {
        "doctor_id": str(w.another_doctor.id),
        "role": "specialist",
    },
    ("PATCH", "/api/v1/teams/<uuid:team_id>/members/<uuid:member_id>"): lambda w: {"role": "health_manager"},
    ("POST", "/api/v1/teams/<uuid:team_id>/members/<uuid:member_id>/remove"): lambda w: {
        "reason": "矩阵测试"
    },
    # payments
    ("POST", "/api/v1/billing/bills/<uuid:bill_id>/payments"): lambda w: {
        "mode": "merchant_qr",
        "channel": "wechat",
    },
    ("POST", "/api/v1/billing/bills/<uuid:bill_id>/cancel"): lambda w: {"reason": "矩阵测试"},
    ("POST", "/api/v1/billing/orders/<uuid:order_id>/close"): lambda w: {},
    ("POST", "/api/v1/billing/orders/<uuid:order_id>/refunds"): lambda w: {
        "amount_fen": 1,
        "reason": "矩阵测试",
    },
    ("POST", "/api/v1/billing/refunds/<uuid:refund_id>/retry"): lambda w: {},
    ("POST", "/api/v1/billing/refunds/<uuid:refund_id>/cancel"): lambda w: {"reason": "矩阵测试"},
    ("POST", "/api/v1/billing/anomalies/<uuid:anomaly_id>/resolve"): lambda w: {"resolution": "矩阵测试"},
    ("POST", "/api/v1/billing/aggregate-qr/<uuid:code_id>/revoke"): lambda w: {},
    # family-doctor signing
    ("PATCH", "/api/v1/service-packages/<uuid:package_id>"): lambda w: {"description": "矩阵测试"},
    ("POST", "/api/v1/service-packages/<uuid:package_id>/publish"): lambda w: {},
    ("POST", "/api/v1/service-packages/<uuid:package_id>/versions"): lambda w: {},
    ("POST", "/api/v1/service-packages/<uuid:package_id>/retire"): lambda w: {},
    ("PATCH", "/api/v1/agreement-templates/<uuid:template_id>"): lambda w: {"title": "矩阵测试"},
    ("POST", "/api/v1/agreement-templates/<uuid:template_id>/publish"): lambda w: {},
    ("POST", "/api/v1/agreement-templates/<uuid:template_id>/versions"): lambda w: {},
    ("POST", "/api/v1/agreement-templates/<uuid:template_id>/retire"): lambda w: {},
    ("POST", "/api/v1/agreement-templates/<uuid:template_id>/preview"): lambda w: {
        "resident_id": str(w.resident.id),
        "team_id": str(w.team.id),
    },
    ("POST", "/api/v1/contract-applications/<uuid:application_id>/accept"): lambda w: {},
    ("POST", "/api/v1/contract-applications/<uuid:application_id>/reject"): lambda w: {"reason": "矩阵测试"},
    ("POST", "/mp/v1/contract-applications/<uuid:application_id>/withdraw"): lambda w: {},
    ("POST", "/mp/v1/contract-applications/<uuid:application_id>/confirm"): lambda w: {
        "agreement_sha256": "0" * 64
    },
    ("POST", "/api/v1/contracts/<uuid:contract_id>/scanned-copy"): lambda w: Upload({"file": _png()}),
    # public-health records
    ("POST", "/api/v1/health-records/<uuid:record_id>/forms"): lambda w: {
        "form_type": "elderly_selfcare",
        "data": SELFCARE_DATA,
    },
    ("PATCH", "/api/v1/health-records/<uuid:record_id>"): lambda w: {"card_remarks": "矩阵测试"},
    ("PUT", "/api/v1/health-forms/<uuid:form_id>"): lambda w: {
        "base_version": 1,
        "data": {**SELFCARE_DATA, "meal_level": "3"},
    },
    ("POST", "/api/v1/health-forms/<uuid:form_id>/void"): lambda w: {"reason": "矩阵测试"},
    ("POST", "/api/v1/health-cases/<uuid:case_id>/close"): lambda w: {"reason": "矩阵测试"},
    ("POST", "/api/v1/health-cases/<uuid:case_id>/missed-visits"): lambda w: {
        "attempted_at": clock.now().isoformat()
    },
    # resident-only (staff tokens get 403 before any body is read)
    ("POST", "/mp/v1/bills/<uuid:bill_id>/payments"): lambda w: {},
    ("POST", "/mp/v1/payments/<uuid:order_id>/confirm"): lambda w: {},
}
WRITES_WITHOUT_BODY = {"DELETE"}

# (method, rule) -> what must exist besides the objects in the path for the route to answer 2xx.
SETUP: dict[tuple[str, str], Callable[[World], Any]] = {
    ("GET", "/api/v1/residents/<uuid:resident_id>/health-record"): lambda w: w.health_record,
}

# Reads deliberately open across centres, with the reason. Nothing personal may be listed here.
CROSS_CENTRE_READABLE: dict[tuple[str, str], str] = {
    ("GET", "/api/v1/institutions/<uuid:institution_id>"): (
        "the public directory of centres: the same data GET /api/v1/institutions lists to every role"
    ),
    ("GET", "/api/v1/doctor-mi-imports/<uuid:import_id>"): (
        "a district-wide medical-insurance list belongs to no centre; every centre admin checks against it"
    ),
    ("GET", "/api/v1/doctor-mi-imports/<uuid:import_id>/items"): (
        "the findings of a district-wide list, filtered to the caller's centre (MiReconItem is CentreScoped)"
    ),
    ("GET", "/api/v1/billing/reconciliation/runs/<uuid:run_id>"): (
        "a district-wide reconciliation of the merchant's bill; a centre-level auditor sees only its own centre's items"
    ),
    ("GET", "/api/v1/billing/reconciliation/runs/<uuid:run_id>/report.csv"): (
        "a district-wide reconciliation of the merchant's bill; a centre-level auditor sees only its own centre's items"
    ),
}

# Public routes with an object id (no token at all): resident-facing directories. They are not
# part of the staff matrix; their owners test what they may show.
PUBLIC_ID_ROUTES: dict[tuple[str, str], str] = {
    ("GET", "/mp/v1/doctors/<uuid:doctor_id>"): "the public doctor library of the mini-program",
    ("GET", "/mp/v1/doctors/<uuid:doctor_id>/photo"): "the public doctor library of the mini-program",
    ("GET", "/mp/v1/teams/<uuid:team_id>"): "the public team page of the mini-program",
}


def _routes_with_ids() -> list[tuple[str, str]]:
    """(method, rule) of every non-public route with a uuid path parameter, from a throwaway app."""
    throwaway = create_app(
        {"APP_ENV": "test", "DATABASE_URL": "sqlite://", "REDIS_URL": "", "LOG_LEVEL": "WARNING"}
    )
    return sorted(
        (method, rule)
        for (rule, method), spec in route_auth_specs(throwaway).items()
        if UUID_PARAM.search(rule) and (method, rule) not in PUBLIC_ID_ROUTES
    )


ROUTES = _routes_with_ids()
ROUTE_IDS = [f"{m} {r}" for m, r in ROUTES]


# Path parameters that are not object ids: a valid value (the route then reaches its object lookup).
TEXT_PARAMS: dict[str, str] = {"permission": "health:smd"}
TEXT_PARAM = re.compile(r"<(?:string:)?(\w+)>")


def _path(rule: str, world: World) -> str:
    path = UUID_PARAM.sub(lambda m: str(ID_FACTORIES[m.group(1)](world)), rule)
    return TEXT_PARAM.sub(lambda m: TEXT_PARAMS[m.group(1)], path)


def _request_body(method: str, rule: str, world: World) -> dict[str, Any]:
    build = BODIES.get((method, rule))
    if build is None:
        return {}
    body = build(world)
    if isinstance(body, Upload):
        return {"data": body.fields, "content_type": "multipart/form-data"}
    return {"json": body}


def _with_categories(user: StaffUser) -> StaffUser:
    """Clinical staff hold both DATA-05 category permissions here: this matrix is about centres
    (tests/health_records/test_access.py is about categories)."""
    if Role(user.role) in CLINICAL_ROLES:
        grant(user, *GRANTABLE_PERMISSIONS)
    return user


def _denials(actor: StaffUser) -> list[AuditEvent]:
    db.session.expire_all()
    return list(
        db.session.execute(
            select(AuditEvent).where(AuditEvent.actor_id == str(actor.id), AuditEvent.result == "denied")
        ).scalars()
    )


def _call(app: Flask, caller: StaffUser, method: str, rule: str, world: World) -> tuple[str, Any]:
    path = _path(rule, world)
    if (method, rule) in SETUP:
        SETUP[(method, rule)](world)
    kwargs = _request_body(method, rule, world)
    # Money endpoints require an Idempotency-Key (PAY-11); a fresh one keeps the lookup reachable.
    headers = {"Idempotency-Key": str(uuid.uuid4())} if method == "POST" else {}
    response = Http(app, token_for(caller)).request(method, path, headers=headers, **kwargs)
    return path, response


def _snippet(response: Any) -> str:
    return response.get_data()[:200].decode("utf-8", "replace")


def _spec(app: Flask, method: str, rule: str) -> AuthSpec:
    spec = route_auth_specs(app).get((rule, method))
    assert spec is not None, f"{method} {rule} has no auth declaration"
    return spec


# --- the registry keeps up with the routes -----------------------------------------------------------


def test_the_matrix_found_the_id_routes():
    rules = {rule for _, rule in ROUTES}
    assert "/api/v1/staff/<uuid:staff_id>" in rules
    assert "/api/v1/institutions/<uuid:institution_id>" in rules


def test_every_id_parameter_has_a_factory(app):
    missing = sorted(
        {
            (name, f"{method} {rule}")
            for (rule, method) in route_auth_specs(app)
            for name in UUID_PARAM.findall(rule)
            if name not in ID_FACTORIES
        }
    )
    assert not missing, f"register a factory in ID_FACTORIES for: {missing}"


def test_every_write_with_an_id_has_a_valid_body_registered(app):
    specs = route_auth_specs(app)
    missing = sorted(
        f"{method} {rule}"
        for (rule, method) in specs
        if UUID_PARAM.search(rule)
        and method not in {"GET", *WRITES_WITHOUT_BODY}
        and (method, rule) not in BODIES
    )
    assert not missing, f"register a minimal valid body in BODIES for: {missing}"
    stale = sorted(
        f"{m} {r}"
        for (m, r) in [*BODIES, *SETUP, *CROSS_CENTRE_READABLE, *PUBLIC_ID_ROUTES]
        if (r, m) not in specs
    )
    assert not stale, f"the registries list routes that no longer exist: {stale}"


def test_object_ids_in_paths_use_the_uuid_converter(app):
    wrong = sorted(
        f"{method} {rule}"
        for (rule, method) in route_auth_specs(app)
        for converter, name in ANY_PARAM.findall(rule)
        if name.endswith("_id") and converter != "uuid"
    )
    assert not wrong, f"object ids must be <uuid:...> path parameters: {wrong}"


def test_public_routes_with_object_ids_are_the_declared_directories(app):
    public = {
        (m, r)
        for (r, m), spec in route_auth_specs(app).items()
        if spec is not None and spec.public and UUID_PARAM.search(r)
    }
    assert public == set(PUBLIC_ID_ROUTES), (
        "a public route with an object id needs a reason in PUBLIC_ID_ROUTES"
    )
    assert all(method == "GET" for method, _ in public)


# --- the matrix -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "rule"), ROUTES, ids=ROUTE_IDS)
def test_staff_of_another_centre_get_404_or_403_and_each_404_is_audited(app, method, rule):
    spec = _spec(app, method, rule)
    centre_a, centre_b = make_centre(), make_centre()
    problems: list[str] = []
    for role in CENTRE_ROLES:
        world = World(centre_a)
        caller = _with_categories(make_staff(role, centre_b))
        path, response = _call(app, caller, method, rule, world)
        status = response.status_code
        cell = f"{role.value}@B {method} {path} -> {status} {_snippet(response)}"
        if role.value not in spec.roles:
            expected = {403}
        elif (method, rule) in CROSS_CENTRE_READABLE:
            expected = {200}
        else:
            expected = {404}
        if status not in expected:
            problems.append(f"expected {sorted(expected)}: {cell}")
            continue
        denials = _denials(caller)
        if status == 404:
            path_ids = set(UUID_TEXT.findall(path))
            if len(denials) != 1 or denials[0].object_id not in path_ids:
                found = [(d.object_type, d.object_id) for d in denials]
                problems.append(f"expected one denied audit row for an id of the path, got {found}: {cell}")
            elif denials[0].institution_id != str(centre_b.id):
                problems.append(f"the denial is not filed under the caller's centre: {cell}")
        elif status == 200 and denials:
            problems.append(f"an allowed read was audited as denied: {cell}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(("method", "rule"), ROUTES, ids=ROUTE_IDS)
def test_staff_of_the_same_centre_are_not_hidden_by_the_isolation(app, method, rule):
    spec = _spec(app, method, rule)
    centre_a = make_centre()
    problems: list[str] = []
    for role in CENTRE_ROLES:
        world = World(centre_a)
        caller = _with_categories(make_staff(role, centre_a))
        path, response = _call(app, caller, method, rule, world)
        status = response.status_code
        cell = f"{role.value}@A {method} {path} -> {status} {_snippet(response)}"
        if role.value not in spec.roles:
            if status != 403:
                problems.append(f"expected 403 (role not declared): {cell}")
        elif status in (401, 404) or status >= 500:
            problems.append(f"expected 2xx or a 4xx other than 404: {cell}")
        elif any(d.purpose == "cross_centre_access" for d in _denials(caller)):
            problems.append(f"own-centre access audited as cross-centre: {cell}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(("method", "rule"), ROUTES, ids=ROUTE_IDS)
def test_the_district_admin_reaches_every_centre(app, method, rule):
    spec = _spec(app, method, rule)
    world = World(make_centre())
    admin = make_staff(Role.DISTRICT_ADMIN, None)
    path, response = _call(app, admin, method, rule, world)
    status = response.status_code
    cell = f"district_admin {method} {path} -> {status} {_snippet(response)}"
    if Role.DISTRICT_ADMIN.value not in spec.roles:
        assert status == 403, cell
        return
    if method == "GET":
        assert 200 <= status < 300, cell
    else:
        assert status not in (401, 403, 404) and status < 500, cell
    # The registered body passed the route's schema: a 404 elsewhere is the lookup, not validation.
    if (method, rule) in BODIES:
        assert not (status == 422 and (response.json or {}).get("code") == "validation_error"), cell


# --- the exemptions are honest -----------------------------------------------------------------------


def test_a_centre_read_across_centres_equals_its_entry_in_the_public_listing(app):
    world = World(make_centre())
    caller = make_staff(Role.CASHIER, make_centre())
    http = Http(app, token_for(caller))
    one = http.get(f"/api/v1/institutions/{world.centre.id}")
    listing = http.get("/api/v1/institutions", query_string={"size": 100})
    assert one.status_code == 200 and listing.status_code == 200
    [entry] = [item for item in listing.json["items"] if item["id"] == one.json["id"]]
    assert entry == one.json


def test_medical_insurance_findings_are_filtered_to_the_callers_centre(app):
    from app.doctors.models import MiReconItem

    centre_a, centre_b = make_centre(), make_centre()
    world = World(centre_a)
    batch = world.mi_import
    for n, centre in enumerate((centre_a, centre_b), start=1):
        db.session.add(
            MiReconItem(
                institution_id=centre.id,
                batch_id=batch.id,
                seq=n,
                category="not_in_mi_list",
                message=f"发现{n}",
            )
        )
    commit()
    path = f"/api/v1/doctor-mi-imports/{batch.id}/items"
    seen_by_b = Http(app, token_for(make_staff(Role.CENTRE_ADMIN, centre_b))).get(path)
    assert seen_by_b.status_code == 200, seen_by_b.json
    assert [item["message"] for item in seen_by_b.json["items"]] == ["发现2"]
    seen_by_district = Http(app, token_for(make_staff(Role.DISTRICT_ADMIN, None))).get(path)
    assert sorted(item["message"] for item in seen_by_district.json["items"]) == ["发现1", "发现2"]
