"""Who is calling: principals, roles, permissions and the centre scope.

The centre scope of a request comes from the authenticated principal only, never from a
request parameter. `current_principal()` is what services consult; `app.core.scope` applies it
to every ORM query in one place.

Authenticators are pluggable by token prefix: staff tokens (`st_`) are resolved by
`app.accounts`, resident tokens (`rt_`, mini-program) by `miniprogram_api` when it lands.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from flask import g, has_request_context, request

from app.core.errors import Unauthorized


class Role(StrEnum):
    DISTRICT_ADMIN = "district_admin"  # 区卫健局/区级管理员
    CENTRE_ADMIN = "centre_admin"  # 社康中心管理员
    TEAM_LEADER = "team_leader"  # 团队长
    DOCTOR = "doctor"  # 医生
    NURSE = "nurse"  # 护士
    PUBLIC_HEALTH = "public_health"  # 公卫医师/公卫人员
    CASHIER = "cashier"  # 收费员
    AUDITOR = "auditor"  # 审计员

    @property
    def label(self) -> str:
        return ROLE_LABELS[self]


ROLE_LABELS: dict[Role, str] = {
    Role.DISTRICT_ADMIN: "区级管理员",
    Role.CENTRE_ADMIN: "社康中心管理员",
    Role.TEAM_LEADER: "团队长",
    Role.DOCTOR: "医生",
    Role.NURSE: "护士",
    Role.PUBLIC_HEALTH: "公卫人员",
    Role.CASHIER: "收费员",
    Role.AUDITOR: "审计员",
}

ALL_STAFF: frozenset[str] = frozenset(r.value for r in Role)
ADMINS: frozenset[str] = frozenset({Role.DISTRICT_ADMIN, Role.CENTRE_ADMIN})
# Roles that must not belong to a centre, and roles that may be district-wide.
DISTRICT_ONLY_ROLES: frozenset[Role] = frozenset({Role.DISTRICT_ADMIN})
DISTRICT_CAPABLE_ROLES: frozenset[Role] = frozenset({Role.DISTRICT_ADMIN, Role.AUDITOR})

# Fine-grained permissions beyond the role gate of a route.
PERMISSIONS: dict[str, frozenset[Role]] = {
    # See one personal field in clear, with a reason, audited (DATA-02).
    "pii:unmask": frozenset({Role.DISTRICT_ADMIN, Role.CENTRE_ADMIN}),
    # Read the audit trail.
    "audit:read": frozenset({Role.DISTRICT_ADMIN, Role.AUDITOR}),
    # DATA-05 special categories: held by individual staff (granted), never by a whole role.
    "health:smd": frozenset(),
    "health:tb": frozenset(),
}

# Permissions granted to one member of staff by their centre's administrator (DATA-05): the label
# shown in the staff screens and the roles that may hold it.
CLINICAL_ROLES: frozenset[Role] = frozenset({Role.DOCTOR, Role.NURSE, Role.PUBLIC_HEALTH, Role.TEAM_LEADER})
GRANTABLE_PERMISSIONS: dict[str, tuple[str, frozenset[Role]]] = {
    "health:smd": ("严重精神障碍患者健康管理", CLINICAL_ROLES),
    "health:tb": ("肺结核患者健康管理", CLINICAL_ROLES),
}


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of a request."""

    kind: str  # "staff" | "resident" | "partner"
    id: uuid.UUID
    role: str
    institution_id: uuid.UUID | None
    session_id: uuid.UUID | None = None
    display_name: str = ""
    grants: frozenset[str] = frozenset()  # permissions granted to this member of staff
    extra: dict[str, object] = field(default_factory=dict, compare=False)

    @property
    def is_district(self) -> bool:
        """District-wide principals see every centre; centre staff see their own only."""
        return self.kind == "staff" and self.institution_id is None

    def can(self, permission: str) -> bool:
        roles = PERMISSIONS.get(permission, frozenset())
        return self.kind == "staff" and (self.role in roles or permission in self.grants)

    @property
    def actor_ref(self) -> str:
        return f"{self.kind}:{self.id}"


Authenticator = Callable[[str], Principal]
_AUTHENTICATORS: dict[str, Authenticator] = {}


def register_authenticator(prefix: str, authenticator: Authenticator) -> None:
    """`authenticator(token)` returns a Principal or raises Unauthorized."""
    _AUTHENTICATORS[prefix] = authenticator


def bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def authenticate() -> Principal:
    token = bearer_token()
    if token is None:
        raise Unauthorized("请先登录", code="unauthorized")
    for prefix, authenticator in _AUTHENTICATORS.items():
        if token.startswith(prefix):
            principal = authenticator(token)
            g.principal = principal
            return principal
    raise Unauthorized("登录凭证无效，请重新登录", code="invalid_token")


@dataclass(frozen=True)
class Actor:
    """Who caused a change, as history rows record it: a principal, or the system, a payment
    provider, an anonymous payer."""

    kind: str  # staff | resident | partner | payer | provider | system
    id: uuid.UUID | None = None
    role: str | None = None

    @classmethod
    def of(cls, principal: Principal) -> Actor:
        return cls(principal.kind, principal.id, principal.role)


def actor_from_principal(default: Actor) -> Actor:
    """The current principal as an actor, or `default` outside an authenticated request."""
    principal = current_principal()
    return default if principal is None else Actor.of(principal)


def current_principal() -> Principal | None:
    if not has_request_context():
        return getattr(g, "principal", None) if _has_app_g() else None
    return getattr(g, "principal", None)


def _has_app_g() -> bool:
    from flask import has_app_context

    return has_app_context()


def require_principal() -> Principal:
    principal = current_principal()
    if principal is None:
        raise Unauthorized()
    return principal
