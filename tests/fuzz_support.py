"""Helpers for the Schemathesis run over the whole OpenAPI document (tests/test_openapi_fuzz.py).

- `FreshContextApp`: each fuzzed request runs in its own application context (its own database
  session and `g`), as under gunicorn, although the test itself holds an app context open.
- `rolled_back`: each operation's calls are undone afterwards (a SAVEPOINT), so every operation
  starts from the same seeded rows.
- `seed_actor`: one caller (a staff role, a mini-program resident, or anonymous) and rows of a
  centre (a nurse, a resident with a household and a consent, a doctor, a team) whose ids go into
  Schemathesis fuzz dictionaries, so generated requests get past 404 into the services.
- `run_plan`: how hard to fuzz each operation for a caller: the operations its role may call get the
  full treatment, the ones its role gate refuses only a few calls (they all stop at 401/403).
- Custom checks: no unmasked ID-card or mobile number in a response (DATA-02); every 4xx has the
  house error shape; tokens are honoured (anonymous: exactly 401 on secured operations; a caller
  with a live token: never 401).
"""

from __future__ import annotations

import contextvars
import json
import re
import traceback
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from typing import Any

from flask import Flask
from schemathesis.core.failures import Failure, FailureGroup

from app.accounts import services as account_services
from app.accounts.models import StaffSession, StaffUser
from app.core import clock
from app.core.api import AuthSpec, route_auth_specs
from app.core.auth import CLINICAL_ROLES, GRANTABLE_PERMISSIONS, Role
from app.core.db import commit, db
from app.integrations.wechat_mp_fake import FakeMiniProgramAuth
from app.mp_accounts.services import sessions as mp_sessions
from tests.factories import PASSWORD, as_principal, grant, make_centre, make_staff, token_for
from tests.factories_doctors import make_doctor, make_team
from tests.factories_residents import make_consent, make_household, make_resident, random_id_number

ANONYMOUS = "anonymous"
RESIDENT = "resident"  # a WeChat mini-program user (not bound to a resident record)

ID_NUMBER = re.compile(r"(?<!\d)\d{17}[\dXx](?!\d)")
MOBILE = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")
# Random machine identifiers that may hold a run of digits by chance: UUIDs, hex digests and
# request ids (32+ hex digits), session tokens. They are blanked out before the regexes above run.
OPAQUE = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|(?<![0-9A-Za-z])[0-9a-f]{32,}(?![0-9A-Za-z])"
    r"|(?:st|rt)_[A-Za-z0-9_-]{20,}"
)


def is_unmask_operation(path: str) -> bool:
    """The DATA-02 allowlist: `POST .../{id}/unmask` returns one personal field in clear, by design."""
    return path.endswith("/unmask")


class FreshContextApp:
    """A WSGI callable that runs each request in an empty `contextvars.Context`.

    Flask reuses an application context that is already pushed (the test's own), which would share
    one SQLAlchemy session and one `g` between all fuzzed requests. In an empty context Flask
    pushes a new app context per request: a new session (bound to the test's rolled-back
    connection) and a clean `g`, as in production.
    """

    def __init__(self, app: Flask) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        return contextvars.Context().run(self.app, environ, start_response)


@contextmanager
def rolled_back(app: Flask) -> Iterator[None]:
    """Undo what the calls inside did (a SAVEPOINT on the test's connection), so that every
    operation starts from the seeded rows: a DELETE fuzzed early does not starve the rest."""
    connection = db.bound(app).sessionmaker.kw["bind"]
    savepoint = connection.begin_nested()
    try:
        yield
    finally:
        db.session.close()
        savepoint.rollback()


# --- who may call what -----------------------------------------------------------------------

FULL = "full"  # examples, coverage and fuzzing phases
FUZZ = "fuzz"  # examples and fuzzing phases
GATE = "gate"  # the role gate refuses the caller: a few fuzzed calls


def openapi_path(rule: str) -> str:
    """`/api/v1/staff/<uuid:staff_id>` -> `/api/v1/staff/{staff_id}`."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def operation_access(app: Flask) -> dict[str, AuthSpec | None]:
    """`METHOD /openapi/path` -> the route's `@blp.auth` declaration."""
    return {f"{method} {openapi_path(rule)}": spec for (rule, method), spec in route_auth_specs(app).items()}


def may_call(spec: AuthSpec | None, role: str) -> bool:
    if spec is None:
        return False
    return spec.public or role in spec.roles


def run_plan(
    labels: Iterable[str],
    access: Mapping[str, AuthSpec | None],
    roles: list[str],
    role: str,
    *,
    coverage: bool,
) -> dict[str, str]:
    """How to fuzz each operation for `role`: GATE where its role gate refuses `role`; else FULL
    (with the coverage phase) for the first of `roles` that may call it when `coverage` is on, so
    the coverage phase's systematic cases run once per operation; FUZZ otherwise."""
    plan: dict[str, str] = {}
    for label in labels:
        spec = access.get(label)
        if not may_call(spec, role):
            plan[label] = GATE
        elif coverage and next((r for r in roles if may_call(spec, r)), role) == role:
            plan[label] = FULL
        else:
            plan[label] = FUZZ
    return plan


# --- seeded data -----------------------------------------------------------------------------


@dataclass
class FuzzActor:
    """Who calls, with which token, and the seeded values that generated requests may use."""

    role: str
    # Makes a new session for the caller (None: anonymous, no token at all).
    mint: Callable[[], str] | None
    dictionaries: dict[str, list[str]]
    token: str | None = None
    seeded_token: str | None = None
    # Response status codes per operation label.
    statuses: defaultdict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))

    def __post_init__(self) -> None:
        self.token = self.seeded_token = self.mint() if self.mint is not None else None

    @property
    def anonymous(self) -> bool:
        return self.mint is None

    def renew_token(self) -> None:
        """After a logout: a new session (made inside the operation's rollback)."""
        if self.mint is not None:
            self.token = self.mint()

    def restore_token(self) -> None:
        """After the rollback of an operation: the seeded session is back, later ones are gone."""
        self.token = self.seeded_token

    def prepare(self, case: Any) -> None:
        """Send the actor's current bearer token (it changes after a logout)."""
        if self.token is not None:
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {self.token}"}

    def reached(self, label: str) -> bool:
        return any(200 <= status < 300 for status in self.statuses[label])

    def summary(self, plan: Mapping[str, str]) -> str:
        """One line per operation: how it was fuzzed and the status codes it answered."""
        return "\n".join(
            f"  {plan.get(label, '?'):4} {label}: {dict(sorted(counts.items()))}"
            for label, counts in sorted(self.statuses.items())
        )

    def schemathesis_config(
        self, plan: Mapping[str, str], max_examples: int, gate_examples: int
    ) -> dict[str, Any]:
        """Schemathesis settings (the keys of `schemathesis.toml`) for this actor's run.

        Fuzz dictionaries put the seeded ids and valid-looking values into generated requests with a
        probability, so most calls reach real rows while others still exercise 404 and 422.
        Schemathesis draws an entry only where it fits the mode (schema-valid entries in positive
        cases, invalid ones in negative cases).
        """
        full = sorted(label for label, kind in plan.items() if kind == FULL)
        gated = sorted(label for label, kind in plan.items() if kind == GATE)
        operations: list[dict[str, Any]] = []
        if full:
            operations.append({"include-name": full, "phases": {"coverage": {"enabled": True}}})
        if gated:
            operations.append(
                {
                    "include-name": gated,
                    "phases": {"examples": {"enabled": False}},
                    "generation": {"max-examples": gate_examples},
                }
            )
        return {
            "suppress-health-check": ["all"],
            "dictionaries": {name: {"values": values} for name, values in self.dictionaries.items()},
            "parameters": {
                key: {"dictionary": name, "probability": p}
                for key, (name, p) in BINDINGS.items()
                if self.dictionaries.get(name)
            },
            "phases": {"coverage": {"enabled": False}},
            "generation": {
                "max-examples": max_examples,
                "deterministic": True,
                "database": "none",
                # Callers with a token send their own; the anonymous run lets Schemathesis invent tokens.
                "with-security-parameters": self.anonymous,
            },
            "operations": operations,
        }


# Parameter (`location.name`) -> (dictionary, probability of drawing from it).
BINDINGS: dict[str, tuple[str, float]] = {
    "path.staff_id": ("staff_ids", 0.8),
    "path.institution_id": ("centre_ids", 0.8),
    "path.resident_id": ("resident_ids", 0.8),
    "path.household_id": ("household_ids", 0.8),
    "path.consent_id": ("consent_ids", 0.8),
    "path.doctor_id": ("doctor_ids", 0.8),
    "path.team_id": ("team_ids", 0.8),
    "path.member_id": ("member_ids", 0.8),
    "path.bill_id": ("bill_ids", 0.8),
    "path.order_id": ("order_ids", 0.8),
    "path.contract_id": ("contract_ids", 0.8),
    "path.application_id": ("application_ids", 0.8),
    "path.package_id": ("package_ids", 0.8),
    "path.template_id": ("template_ids", 0.8),
    "path.record_id": ("record_ids", 0.8),
    "path.form_id": ("form_ids", 0.8),
    "path.case_id": ("case_ids", 0.8),
    "query.case_id": ("case_ids", 0.5),
    "query.institution_id": ("centre_ids", 0.5),
    "query.street_id": ("street_ids", 0.5),
    "query.actor_id": ("staff_ids", 0.5),
    "query.resident_id": ("resident_ids", 0.5),
    "body.institution_id": ("centre_ids", 0.5),
    "body.community_id": ("community_ids", 0.5),
    "body.resident_id": ("resident_ids", 0.5),
    "body.doctor_id": ("doctor_ids", 0.5),
    "body.username": ("usernames", 0.3),
    "body.name": ("names", 0.3),
    "body.password": ("passwords", 0.5),
    "body.current_password": ("passwords", 0.5),
    "body.new_password": ("passwords", 0.5),
    "body.reset_password": ("passwords", 0.5),
    "body.phone": ("mobiles", 0.5),
    "body.id_number": ("id_numbers", 0.5),
    "body.refresh_token": ("refresh_tokens", 0.5),
}


def seed_actor(role: str, wechat: FakeMiniProgramAuth) -> FuzzActor:
    """Rows of one centre (a nurse, a resident with household and consent, a doctor, a team) and the
    caller: staff of that centre (district-wide for district_admin), a WeChat resident, or nobody."""
    centre = make_centre()
    make_centre()  # a second centre, so that scoped lists have something to leave out
    nurse = make_staff(Role.NURSE, centre, phone="13912345678")
    resident = make_resident(centre)
    household = make_household(resident)
    consent = make_consent(resident)
    doctor = make_doctor(centre)
    team = make_team(centre)
    money_and_contracts = _seed_money_and_contracts(centre)
    health = _seed_health_records(centre, resident)
    mint: Callable[[], str] | None = None
    usernames = [nurse.username]
    if role == RESIDENT:
        openid = f"o-fuzz-{uuid.uuid4().hex[:12]}"
        mint = partial(_resident_token, wechat, openid)
    elif role != ANONYMOUS:
        user = make_staff(role, None if Role(role) == Role.DISTRICT_ADMIN else centre)
        if Role(role) in CLINICAL_ROLES:  # reach the 肺结核/严重精神障碍 code paths too (DATA-05)
            grant(user, *GRANTABLE_PERMISSIONS)
        usernames.append(user.username)
        mint = partial(token_for, user)
    dictionaries = {
        "staff_ids": [str(nurse.id)],
        "centre_ids": [str(centre.id)],
        "street_ids": [str(centre.street_id)],
        "community_ids": [str(centre.community_id)],
        "resident_ids": [str(resident.id)],
        "household_ids": [str(household.id)],
        "consent_ids": [str(consent.id)],
        "doctor_ids": [str(doctor.id)],
        "team_ids": [str(team.id)],
        "member_ids": [str(member.id) for member in team.members],
        "usernames": usernames,
        "names": [resident.name],
        "passwords": [PASSWORD, "Fuzz-Pass-2026!"],
        "mobiles": ["13800138000", "+86 139-0000-0001"],
        "id_numbers": [resident.id_number, random_id_number()],
        # A second session of the nurse: refreshing it never ends the caller's own session.
        "refresh_tokens": [_refresh_token_for(nurse)],
        **money_and_contracts,
        **health,
    }
    return FuzzActor(role=role, mint=mint, dictionaries=dictionaries)


def _seed_money_and_contracts(centre: Any) -> dict[str, list[str]]:
    """A bill with a QR order waiting, an active contract with its packages and template, and a
    pending online application, so the billing and contract routes are fuzzed with ids that exist."""
    from app.billing.models import OrderState
    from app.billing.services import orders
    from app.contracts.models import ContractStatus, SigningChannel
    from app.contracts.services import core
    from payments.base import Channel, PayMode
    from tests.billing.factories import make_bill
    from tests.contracts.factories import signing_world

    bill = make_bill(centre, 2500)
    order = orders.start_order(
        bill, mode=PayMode.MERCHANT_QR, channel=Channel.WECHAT, client_ip="127.0.0.1", actor=orders.SYSTEM
    )
    orders.transition(
        order, OrderState.PENDING, source="api", actor=orders.SYSTEM, values={"qr_content": "sandbox://fuzz"}
    )
    world = signing_world(centre)
    contract = core.create_contract(
        resident=world.resident,
        team=world.team,
        doctor=world.doctor,
        packages=[world.basic],
        status=ContractStatus.ACTIVE,
        channel=SigningChannel.DESK,
        actor=core.SYSTEM,
        template=world.template,
    )
    applicant = make_resident(centre)
    now = clock.now()
    application = core.create_contract(
        resident=applicant,
        team=world.team,
        doctor=world.doctor,
        packages=[world.basic],
        status=ContractStatus.PENDING_REVIEW,
        channel=SigningChannel.MINI_PROGRAM,
        actor=core.SYSTEM,
        template=world.template,
        values={"applied_at": now, "review_due_at": now + timedelta(hours=48)},
    )
    commit()
    return {
        "bill_ids": [str(bill.id)],
        "order_ids": [str(order.id)],
        "contract_ids": [str(contract.id)],
        "application_ids": [str(application.id)],
        "package_ids": [str(world.basic.id)],
        "template_ids": [str(world.template.id)],
    }


def _seed_health_records(centre: Any, resident: Any) -> dict[str, list[str]]:
    """The resident's health record with a 老年人生活自理能力评估表 and an open 肺结核 case."""
    from app.health_records.services import cases, forms, records

    clinician = grant(make_staff(Role.PUBLIC_HEALTH, centre), *GRANTABLE_PERMISSIONS)
    with as_principal(clinician):
        record = records.open_record(resident.id)
        form = forms.create_form(
            record.id,
            "elderly_selfcare",
            {
                "assessed_at": "2026-01-05",
                "meal_level": "1",
                "grooming_level": "2",
                "dressing_level": "1",
                "toileting_level": "1",
                "activity_level": "1",
            },
        )
        case = cases.open_case(resident.id, "tb", notified_at=clock.now() - timedelta(hours=2))
    commit()
    return {"record_ids": [str(record.id)], "form_ids": [str(form.id)], "case_ids": [str(case.id)]}


def _resident_token(wechat: FakeMiniProgramAuth, openid: str) -> str:
    """A new mini-program session of the same WeChat user, as after `wx.login` (codes are single-use)."""
    issued = mp_sessions.login(code=wechat.issue_code(openid), client_address="127.0.0.1")
    commit()
    return issued.token


def _refresh_token_for(user: StaffUser) -> str:
    now = clock.now()
    session = StaffSession(
        id=uuid.uuid4(), user_id=user.id, user=user, created_at=now, expires_at=now + timedelta(hours=12)
    )
    tokens = account_services._issue(session, now)
    db.session.add(session)
    commit()
    return tokens.refresh_token


def describe_failure(exc: BaseException) -> str:
    """Schemathesis' report of a failed operation (Hypothesis groups several distinct failures);
    a traceback for anything else (an error in the test's own code)."""
    if isinstance(exc, (FailureGroup, Failure)):
        return str(exc)
    if isinstance(exc, BaseExceptionGroup):
        return "\n".join(describe_failure(inner) for inner in exc.exceptions)
    return "".join(traceback.format_exception(exc))


# --- custom checks ---------------------------------------------------------------------------


def _text(response: Any) -> str:
    return bytes(response.content or b"").decode("utf-8", "replace")


def _leaves(value: Any, path: tuple[str, ...] = ()) -> Iterable[tuple[tuple[str, ...], str]]:
    """(key path, text) of every scalar in a JSON document; list positions are left out of the path."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _leaves(item, (*path, str(key)))
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item, path)
    elif value is not None and not isinstance(value, bool):
        yield path, str(value)


def _is_public_field(case: Any, path: tuple[str, ...]) -> bool:
    # A centre's phone is public directory data (residents call the centre on it), not a person's
    # number, even when the centre publishes a mobile.
    return case.path.startswith("/api/v1/institutions") and path[-1:] == ("phone",)


def no_unmasked_pii(ctx: Any, response: Any, case: Any) -> bool | None:
    """DATA-02: outside the unmask endpoints no response shows a full ID-card or mobile number,
    not even one the request itself carried (a create or update answers with the masked value, an
    error never echoes the input: DATA-03)."""
    if is_unmask_operation(case.operation.path):
        return None
    content_type = (response.headers.get("content-type") or [""])[0]
    if content_type.startswith(("image/", "application/octet-stream", "application/pdf")):
        return None  # binary: digit runs in it mean nothing
    text = _text(response)
    try:
        leaves = list(_leaves(json.loads(text)))
    except ValueError:
        leaves = [((), text)]
    leaks = sorted(
        {
            f"{'.'.join(path) or '<body>'}={found}"
            for path, value in leaves
            if not _is_public_field(case, path)
            for pattern in (ID_NUMBER, MOBILE)
            for found in pattern.findall(OPAQUE.sub(" ", value))
        }
    )
    if leaks:
        raise AssertionError(f"unmasked personal number(s) in the response: {leaks}")
    return None


def error_shape(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every 4xx is `{code, status, message, errors}`: snake_case code, the HTTP status, a message."""
    if not 400 <= response.status_code < 500:
        return None
    try:
        body = json.loads(_text(response))
    except ValueError:
        raise AssertionError(
            f"{response.status_code} without a JSON body: {_text(response)[:200]!r}"
        ) from None
    if not isinstance(body, Mapping) or set(body) != {"code", "status", "message", "errors"}:
        raise AssertionError(
            f"{response.status_code} body is not {{code, status, message, errors}}: {body!r}"
        )
    problems = []
    if not isinstance(body["code"], str) or not re.fullmatch(r"[a-z][a-z0-9_]*", body["code"]):
        problems.append(f"code {body['code']!r} is not a snake_case string")
    if body["status"] != response.status_code:
        problems.append(f"status {body['status']!r} is not the HTTP status {response.status_code}")
    if not isinstance(body["message"], str) or not body["message"].strip():
        problems.append("message is empty")
    if not isinstance(body["errors"], Mapping):
        problems.append("errors is not an object")
    if problems:
        raise AssertionError("; ".join(problems) + f": {body!r}")
    return None


def _is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(value)
    except (TypeError, ValueError, AttributeError):
        return False
    return isinstance(value, str)


def _refused_before_auth(response: Any, case: Any) -> bool:
    """Refusals that come before authentication, for any caller: a URL that matches no route (a
    path id that is not a UUID: 404), and a NUL character anywhere in the request (422
    `invalid_characters`, refused in a `before_request` hook of app.core.http)."""
    if response.status_code == 404:
        return not all(_is_uuid(value) for value in (case.path_parameters or {}).values())
    if response.status_code == 422:
        try:
            return bool(json.loads(_text(response)).get("code") == "invalid_characters")
        except (ValueError, AttributeError):
            return False
    return False


def make_token_check(
    actor: FuzzActor, access: Mapping[str, AuthSpec | None]
) -> Callable[[Any, Any, Any], bool | None]:
    def token_honoured(ctx: Any, response: Any, case: Any) -> bool | None:
        """Anonymous: a secured operation answers exactly 401. A caller with a live token: never 401."""
        spec = access.get(case.operation.label)
        if spec is None or spec.public or case.method.upper() != case.operation.method.upper():
            return None
        if actor.anonymous:
            if response.status_code != 401 and not _refused_before_auth(response, case):
                raise AssertionError(f"a call without a valid token got {response.status_code}, not 401")
        elif response.status_code == 401:
            raise AssertionError(f"a live {actor.role} session got 401: {_text(response)[:200]}")
        return None

    return token_honoured
