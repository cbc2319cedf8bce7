"""Service packages (服务包): maintenance, versioning, visibility and eligibility.

Who may do what (routes gate the roles; these are the object-level rules):
- read: every staff member sees the district-wide packages (`institution_id` NULL) and their own
  centre's; district staff see all. Another centre's package is a 404, audited as denied.
- create, edit, publish, new version, retire: district admins (any package) and centre admins
  (their own centre's packages only; a district-wide package is a 403). Basic packages (基础包)
  are district-wide: only a district admin makes them.

Versioning (`(code, version)` unique): a package is created as a draft (version 1), edited while it
is a draft, then published; publishing retires the previously published version of the same code.
A published or retired version never changes (409): `new_version` copies it into a draft with
version + 1. Contracts keep the version (and a snapshot) they were signed with.

The same rules apply to agreement templates (`app.contracts.services.agreements` reuses the
versioning helpers of this module).

Nothing here commits; routes and CLI commands do.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, String, cast, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from app.contracts.models import PackageItem, PackageKind, PackageStatus, ServicePackage
from app.contracts.services.core import package_problem
from app.core import audit, clock
from app.core.auth import Principal, Role
from app.core.db import db
from app.core.errors import BusinessRuleViolation, Conflict, NotFound, PermissionDenied
from app.core.pagination import Page, paginate
from app.doctors.services.common import rowcount
from app.institutions.models import Institution
from app.residents.models import Resident
from app.residents.models.codes import GROUPS

__all__ = [
    "PackageEligibility",
    "check_manager",
    "confined_to",
    "create_package",
    "eligible_packages",
    "find_visible",
    "get_package",
    "list_packages",
    "new_package_version",
    "owner_for_new",
    "package_reason",
    "publish_package",
    "published_by_ids",
    "retire_package",
    "update_package",
    "visible_to",
]

# A package or an agreement template: both have code, version, status, institution_id, published_at.
V = TypeVar("V", bound=Any)

PACKAGE_FIELDS = (
    "name",
    "description",
    "target_groups",
    "min_age",
    "max_age",
    "sex",
    "price_fen",
    "subsidy_fen",
    "self_pay_fen",
    "valid_from",
    "valid_to",
)


# --- visibility and permissions (shared with agreement templates) ----------------------------------


def confined_to(principal: Principal | None) -> uuid.UUID | None:
    """The centre a staff principal is confined to (None: sees every centre's rows)."""
    if principal is None or principal.kind != "staff" or principal.is_district:
        return None
    return principal.institution_id


def visible_to(model: Any, principal: Principal | None) -> ColumnElement[bool] | None:
    """The SQL condition of what `principal` may see of `model` (None: everything)."""
    centre = confined_to(principal)
    if centre is None:
        return None
    return or_(model.institution_id.is_(None), model.institution_id == centre)


def find_visible(
    model: type[V], object_id: uuid.UUID, principal: Principal | None, *, object_type: str, action: str
) -> V:
    """The row by id if `principal` may see it; 404 otherwise (another centre's row: audited as
    denied, exactly like `app.core.scope.get_or_404`)."""
    found = db.session.get(model, object_id)
    if found is None:
        raise NotFound(_NOT_FOUND.get(object_type, "未找到该记录"), code=f"{object_type}_not_found")
    centre = confined_to(principal)
    if centre is not None and found.institution_id not in (None, centre):
        audit.record(
            action,
            object_type,
            object_id,
            result=audit.DENIED,
            purpose="cross_centre_access",
            detail={"target_institution_id": str(found.institution_id)},
            durable=True,
        )
        raise NotFound(_NOT_FOUND.get(object_type, "未找到该记录"), code=f"{object_type}_not_found")
    return found


_NOT_FOUND = {"service_package": "未找到该服务包", "agreement_template": "未找到该协议模板"}


def check_manager(actor: Principal, row: Any, what: str) -> None:
    """District admins manage everything; a centre admin only their own centre's rows."""
    if actor.role == Role.DISTRICT_ADMIN:
        return
    if (
        actor.role == Role.CENTRE_ADMIN
        and row.institution_id is not None
        and row.institution_id == actor.institution_id
    ):
        return
    if row.institution_id is None:
        raise PermissionDenied(f"区级{what}只能由区级管理员维护", code="district_owned")
    raise PermissionDenied(f"只能维护本社康中心的{what}", code="other_centre")


def owner_for_new(actor: Principal, requested: uuid.UUID | None, what: str) -> uuid.UUID | None:
    """The centre a new package/template belongs to: a centre admin's own centre (another centre
    is a 403); for a district admin the requested centre, or None (district-wide)."""
    if actor.role == Role.DISTRICT_ADMIN:
        if requested is not None and db.session.get(Institution, requested) is None:
            raise BusinessRuleViolation(
                "所选社康中心不存在", code="centre_not_found", errors={"institution_id": ["不存在"]}
            )
        return requested
    if actor.role != Role.CENTRE_ADMIN or actor.institution_id is None:
        raise PermissionDenied(f"只有管理员可以维护{what}")
    if requested is not None and requested != actor.institution_id:
        raise PermissionDenied(f"只能为本社康中心创建{what}", code="other_centre")
    return actor.institution_id


def require_draft(row: Any, what: str) -> None:
    if row.status != PackageStatus.DRAFT:
        raise Conflict(
            f"{what}“{_label(row)}”第 {row.version} 版已{_STATUS_WORDS[row.status]}，不能修改；"
            "请在其基础上创建新版本",
            code="version_immutable",
            errors={"status": [row.status]},
        )


_STATUS_WORDS = {"draft": "为草稿", "published": "发布", "retired": "停用"}


def _label(row: Any) -> str:
    return str(getattr(row, "name", None) or getattr(row, "title", None) or row.code)


def check_new_code(model: Any, code: str, what: str) -> None:
    exists = db.session.execute(select(model.id).where(model.code == code).limit(1)).first()
    if exists is not None:
        raise Conflict(
            f"{what}代码“{code}”已被使用；修改已有{what}请创建新版本",
            code="code_taken",
            errors={"code": ["已被使用"]},
        )


def flush_or_conflict(message: str, code: str) -> None:
    try:
        with db.session.begin_nested():
            db.session.flush()
    except IntegrityError as exc:
        raise Conflict(message, code=code) from exc


def publish_version(model: Any, row: Any, what: str) -> None:
    """draft → published (conditional UPDATE), and the previously published version of the same
    code → retired. Another status is a 409."""
    if row.status != PackageStatus.DRAFT:
        raise Conflict(
            f"{what}“{_label(row)}”第 {row.version} 版已{_STATUS_WORDS[row.status]}，不能再次发布",
            code="not_a_draft",
            errors={"status": [row.status]},
        )
    now = clock.now()
    # Lock the draft first (a concurrent publish of the same draft waits here, then sees 0 rows).
    db.session.execute(select(model.id).where(model.id == row.id).with_for_update())
    published = rowcount(
        db.session.execute(
            update(model)
            .where(model.id == row.id, model.status == PackageStatus.DRAFT)
            .values(status=PackageStatus.PUBLISHED, published_at=now, updated_at=now)
            .execution_options(synchronize_session=False)
        )
    )
    if published != 1:
        db.session.refresh(row)
        raise Conflict("该版本已被他人发布或停用，请刷新后重试", code="not_a_draft")
    db.session.execute(
        update(model)
        .where(model.code == row.code, model.status == PackageStatus.PUBLISHED, model.id != row.id)
        .values(status=PackageStatus.RETIRED, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    db.session.refresh(row)


def retire_version(model: Any, row: Any, what: str) -> None:
    """draft or published → retired (no new signings; contracts keep their snapshot)."""
    if row.status == PackageStatus.RETIRED:
        raise Conflict(f"{what}“{_label(row)}”第 {row.version} 版已停用", code="already_retired")
    now = clock.now()
    done = rowcount(
        db.session.execute(
            update(model)
            .where(model.id == row.id, model.status == row.status)
            .values(status=PackageStatus.RETIRED, updated_at=now)
            .execution_options(synchronize_session=False)
        )
    )
    db.session.refresh(row)
    if done != 1:
        raise Conflict("该版本状态已被他人更新，请刷新后重试", code="status_changed")


def next_version_of(model: Any, row: Any, what: str) -> int:
    """The version number of a new draft copied from `row` (published or retired); 409 when a
    draft of the code already exists."""
    if row.status == PackageStatus.DRAFT:
        raise Conflict("草稿可直接修改，无需创建新版本", code="is_draft")
    draft = db.session.execute(
        select(model.version).where(model.code == row.code, model.status == PackageStatus.DRAFT)
    ).scalar_one_or_none()
    if draft is not None:
        raise Conflict(
            f"{what}“{_label(row)}”已有草稿（第 {draft} 版），请修改该草稿",
            code="draft_exists",
            errors={"version": [str(draft)]},
        )
    latest = db.session.execute(select(func.max(model.version)).where(model.code == row.code)).scalar_one()
    return int(latest or 0) + 1


# --- packages -----------------------------------------------------------------------------------------


def get_package(
    package_id: uuid.UUID, principal: Principal | None, *, action: str = "read"
) -> ServicePackage:
    return find_visible(ServicePackage, package_id, principal, object_type="service_package", action=action)


def list_packages(
    principal: Principal | None,
    *,
    page: int = 1,
    size: int = 20,
    status: str | None = None,
    kind: str | None = None,
    group: str | None = None,
    code: str | None = None,
    q: str | None = None,
    scope: str | None = None,
    institution_id: uuid.UUID | None = None,
) -> Page[ServicePackage]:
    """Visible packages (district-wide + own centre), newest version first within a code.
    `scope`: district | centre; `group`: packages aimed at that population group."""
    statement = select(ServicePackage)
    condition = visible_to(ServicePackage, principal)
    if condition is not None:
        statement = statement.where(condition)
    if status:
        statement = statement.where(ServicePackage.status == status)
    if kind:
        statement = statement.where(ServicePackage.kind == kind)
    if code:
        statement = statement.where(ServicePackage.code == code)
    if q:
        pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        statement = statement.where(
            or_(
                ServicePackage.name.like(pattern, escape="\\"), ServicePackage.code.like(pattern, escape="\\")
            )
        )
    if group:
        # The stored JSON list holds validated codes ([a-z0-9_]); match the quoted code in its text.
        statement = statement.where(cast(ServicePackage.target_groups, String).like(f'%"{group}"%'))
    if scope == "district":
        statement = statement.where(ServicePackage.institution_id.is_(None))
    elif scope == "centre":
        statement = statement.where(ServicePackage.institution_id.is_not(None))
    if institution_id is not None:
        statement = statement.where(ServicePackage.institution_id == institution_id)
    statement = statement.order_by(
        ServicePackage.kind, ServicePackage.code, ServicePackage.version.desc(), ServicePackage.id
    )
    return paginate(statement, page, size)


def create_package(actor: Principal, data: Mapping[str, Any]) -> ServicePackage:
    """A new package (draft, version 1). `data`: code, name, kind, items and the fields of
    `PACKAGE_FIELDS`; `institution_id` only for district admins (None: district-wide)."""
    owner = owner_for_new(actor, data.get("institution_id"), "服务包")
    kind = data["kind"]
    if kind == PackageKind.BASIC and owner is not None:
        raise BusinessRuleViolation(
            "基础服务包由区级统一制定，社康中心只能定义个性化服务包",
            code="basic_is_district",
            errors={"kind": ["基础包须为区级"]},
        )
    check_new_code(ServicePackage, data["code"], "服务包")
    package = ServicePackage(
        id=uuid.uuid4(),
        code=data["code"],
        version=1,
        kind=kind,
        status=PackageStatus.DRAFT,
        institution_id=owner,
        created_by=actor.id,
        price_fen=0,
    )
    _apply(package, data, creating=True)
    db.session.add(package)
    flush_or_conflict(f"服务包代码“{package.code}”已被使用", "code_taken")
    _audit("service_package.create", package)
    return package


def update_package(actor: Principal, package_id: uuid.UUID, data: Mapping[str, Any]) -> ServicePackage:
    """Edit a draft (published/retired versions are immutable: 409). `items`, when given, replace
    the draft's items."""
    package = get_package(package_id, actor, action="update")
    check_manager(actor, package, "服务包")
    require_draft(package, "服务包")
    _apply(package, data, creating=False)
    flush_or_conflict("服务包内容冲突，请刷新后重试", "conflict")
    _audit("service_package.update", package)
    return package


def publish_package(actor: Principal, package_id: uuid.UUID) -> ServicePackage:
    package = get_package(package_id, actor, action="publish")
    check_manager(actor, package, "服务包")
    if not package.items:
        raise BusinessRuleViolation("服务包至少须含一项服务内容", code="items_required")
    publish_version(ServicePackage, package, "服务包")
    _audit("service_package.publish", package)
    return package


def retire_package(actor: Principal, package_id: uuid.UUID) -> ServicePackage:
    package = get_package(package_id, actor, action="retire")
    check_manager(actor, package, "服务包")
    retire_version(ServicePackage, package, "服务包")
    _audit("service_package.retire", package)
    return package


def new_package_version(actor: Principal, package_id: uuid.UUID) -> ServicePackage:
    """A draft copy (version + 1) of a published or retired version, to edit and then publish."""
    source = get_package(package_id, actor, action="new_version")
    check_manager(actor, source, "服务包")
    version = next_version_of(ServicePackage, source, "服务包")
    package = ServicePackage(
        id=uuid.uuid4(),
        code=source.code,
        version=version,
        kind=source.kind,
        status=PackageStatus.DRAFT,
        institution_id=source.institution_id,
        created_by=actor.id,
        **{name: getattr(source, name) for name in PACKAGE_FIELDS if name != "target_groups"},
        target_groups=list(source.target_groups),
    )
    package.items = [
        PackageItem(
            id=uuid.uuid4(),
            code=item.code,
            name=item.name,
            service_type=item.service_type,
            times_per_period=item.times_per_period,
            due_within_days=item.due_within_days,
            description=item.description,
            sort=item.sort,
        )
        for item in source.items
    ]
    db.session.add(package)
    flush_or_conflict("已有人同时创建了新版本，请刷新后重试", "draft_exists")
    _audit("service_package.new_version", package, {"from_version": source.version})
    return package


def _apply(package: ServicePackage, data: Mapping[str, Any], *, creating: bool) -> None:
    for name in PACKAGE_FIELDS:
        if name in data:
            value = data[name]
            setattr(package, name, list(value) if name == "target_groups" else value)
    if creating:
        package.target_groups = list(package.target_groups or [])
        package.subsidy_fen = package.subsidy_fen or 0
        package.self_pay_fen = package.self_pay_fen or 0
    _validate(package)
    if "items" in data:
        items = _items(data["items"])
        if not creating:
            # The old rows go before the new ones come in: (package_id, code) stays unique.
            package.items = []
            db.session.flush()
        package.items = items


def _validate(package: ServicePackage) -> None:
    price, subsidy, self_pay = package.price_fen, package.subsidy_fen, package.self_pay_fen
    if price != subsidy + self_pay:
        raise BusinessRuleViolation(
            f"服务包价格（{_yuan(price)}元）须等于财政补助（{_yuan(subsidy)}元）与个人自付"
            f"（{_yuan(self_pay)}元）之和",
            code="price_mismatch",
            errors={"price_fen": ["须等于 subsidy_fen + self_pay_fen"]},
        )
    unknown = sorted(g for g in package.target_groups if g not in GROUPS)
    if unknown:
        raise BusinessRuleViolation(
            "服务对象人群代码无效：" + "、".join(unknown),
            code="invalid_population_group",
            errors={"target_groups": unknown},
        )
    if package.min_age is not None and package.max_age is not None and package.min_age > package.max_age:
        raise BusinessRuleViolation(
            f"适用年龄下限（{package.min_age}岁）不能大于上限（{package.max_age}岁）",
            code="age_range",
            errors={"min_age": ["不能大于 max_age"]},
        )
    if package.valid_from and package.valid_to and package.valid_from > package.valid_to:
        raise BusinessRuleViolation(
            "有效期开始日期不能晚于结束日期", code="validity_range", errors={"valid_from": ["晚于 valid_to"]}
        )
    if package.sex == "male" and "maternal" in package.target_groups:
        raise BusinessRuleViolation(
            "孕产妇服务包不能限定为男性", code="sex_group_mismatch", errors={"sex": ["与服务对象不符"]}
        )


def _items(specs: Sequence[Mapping[str, Any]]) -> list[PackageItem]:
    codes = [spec["code"] for spec in specs]
    duplicates = sorted({c for c in codes if codes.count(c) > 1})
    if duplicates:
        raise BusinessRuleViolation(
            "服务项目代码重复：" + "、".join(duplicates),
            code="duplicate_item",
            errors={"items": duplicates},
        )
    return [
        PackageItem(
            id=uuid.uuid4(),
            code=spec["code"],
            name=spec["name"],
            service_type=spec["service_type"],
            times_per_period=spec.get("times_per_period", 1),
            due_within_days=spec.get("due_within_days"),
            description=spec.get("description"),
            sort=sort,
        )
        for sort, spec in enumerate(specs)
    ]


def _yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    fen = abs(fen)
    return f"{sign}{fen // 100}.{fen % 100:02d}"


def _audit(action: str, package: ServicePackage, detail: dict[str, Any] | None = None) -> None:
    audit.record(
        action,
        "service_package",
        package.id,
        institution_id=package.institution_id,
        detail={"code": package.code, "version": package.version, "status": package.status, **(detail or {})},
    )


# --- eligibility ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PackageEligibility:
    package: ServicePackage
    eligible: bool
    reason: str | None  # Chinese, naming the package, when not eligible


def package_reason(
    package: ServicePackage,
    resident: Resident,
    institution_id: uuid.UUID,
    on: date,
    *,
    hidden_groups: frozenset[str] = frozenset(),
) -> str | None:
    """Why `resident` cannot sign `package` at `institution_id` on `on` (Chinese), or None.
    `hidden_groups`: judge as if the resident were not in these DATA-05 special groups (those the
    caller may not see: a package of such a group then reads as not matching, like for anybody)."""
    groups = resident.groups_on(on)
    if hidden_groups & groups:
        groups = (groups - hidden_groups) or {"general"}
    problem = package_problem(
        package,
        institution_id=institution_id,
        groups=groups,
        age=resident.age_on(on),
        sex=resident.sex,
        on=on,
    )
    return None if problem is None else f"服务包“{package.name}”{problem}"


def eligible_packages(
    resident: Resident, institution_id: uuid.UUID, on: date, *, hidden_groups: frozenset[str] = frozenset()
) -> list[PackageEligibility]:
    """Every published package a resident could pick at `institution_id` (district-wide + that
    centre), each with whether it is eligible on `on` and why not. Basic first, eligible first."""
    packages = db.session.execute(
        select(ServicePackage).where(
            ServicePackage.status == PackageStatus.PUBLISHED,
            or_(ServicePackage.institution_id.is_(None), ServicePackage.institution_id == institution_id),
        )
    ).scalars()
    results = [
        PackageEligibility(package, reason is None, reason)
        for package in packages
        for reason in [package_reason(package, resident, institution_id, on, hidden_groups=hidden_groups)]
    ]
    results.sort(
        key=lambda r: (r.package.kind != PackageKind.BASIC, not r.eligible, r.package.code, r.package.version)
    )
    return results


def published_by_ids(ids: Iterable[uuid.UUID], principal: Principal | None) -> list[ServicePackage]:
    """Packages by id (in the given order) that `principal` may see; 422 naming a missing one."""
    wanted = list(dict.fromkeys(ids))
    if not wanted:
        return []
    statement = select(ServicePackage).where(ServicePackage.id.in_(wanted))
    condition = visible_to(ServicePackage, principal)
    if condition is not None:
        statement = statement.where(condition)
    found = {p.id: p for p in db.session.execute(statement).scalars()}
    missing = [str(i) for i in wanted if i not in found]
    if missing:
        raise BusinessRuleViolation(
            "所选服务包不存在", code="package_not_found", errors={"package_ids": missing}
        )
    return [found[i] for i in wanted]
