"""Agreement templates (协议模板) and their clauses (协议条款): maintenance, versioning, the current
template of a centre, placeholder validation and the preview a doctor sees before signing.

Same rules as service packages (`app.contracts.services.packages`): district-wide templates
(`institution_id` NULL) and a centre's own; read by every staff member of the centre, maintained by
district admins (any) and centre admins (own centre); created as a draft, edited while a draft,
published (retiring the previously published version of the same code); published and retired
versions never change (409) — `new_template_version` copies one into a draft with version + 1.

Clause text is `str.format` text with the placeholders `core.agreement_context` fills
(`PLACEHOLDERS`); `{{` and `}}` are literal braces. Anything else (an unknown name, attribute or
index access, a conversion or format spec, an unbalanced brace) is a 422 naming it, checked on save
and on every per-contract override (`check_clause_text`, `check_overrides`).

Nothing here commits; routes and CLI commands do.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import select

from app.contracts.models import AgreementClause, AgreementTemplate, ClauseKind, Contract, TemplateStatus
from app.contracts.services import core
from app.contracts.services.core import PLACEHOLDERS, check_clause_text, check_overrides
from app.contracts.services.packages import (
    check_manager,
    check_new_code,
    find_visible,
    flush_or_conflict,
    next_version_of,
    owner_for_new,
    publish_version,
    published_by_ids,
    require_draft,
    retire_version,
    visible_to,
)
from app.core import audit, clock
from app.core.auth import Principal
from app.core.db import db
from app.core.errors import BusinessRuleViolation
from app.core.pagination import Page, paginate
from app.core.scope import get_or_404
from app.doctors.models import Doctor
from app.residents.models import Resident
from app.teams.models import Team

__all__ = [
    "PLACEHOLDERS",
    "Preview",
    "check_clause_text",
    "check_overrides",
    "create_template",
    "current_template",
    "get_template",
    "list_templates",
    "new_template_version",
    "preview_template",
    "publish_template",
    "require_current_template",
    "retire_template",
    "update_template",
]

WHAT = "协议模板"
PREVIEW_CONTRACT_NO = "（签约后生成）"


# --- templates ---------------------------------------------------------------------------------------


def get_template(
    template_id: uuid.UUID, principal: Principal | None, *, action: str = "read"
) -> AgreementTemplate:
    return find_visible(
        AgreementTemplate, template_id, principal, object_type="agreement_template", action=action
    )


def list_templates(
    principal: Principal | None,
    *,
    page: int = 1,
    size: int = 20,
    status: str | None = None,
    code: str | None = None,
    scope: str | None = None,
    institution_id: uuid.UUID | None = None,
) -> Page[AgreementTemplate]:
    statement = select(AgreementTemplate)
    condition = visible_to(AgreementTemplate, principal)
    if condition is not None:
        statement = statement.where(condition)
    if status:
        statement = statement.where(AgreementTemplate.status == status)
    if code:
        statement = statement.where(AgreementTemplate.code == code)
    if scope == "district":
        statement = statement.where(AgreementTemplate.institution_id.is_(None))
    elif scope == "centre":
        statement = statement.where(AgreementTemplate.institution_id.is_not(None))
    if institution_id is not None:
        statement = statement.where(AgreementTemplate.institution_id == institution_id)
    statement = statement.order_by(
        AgreementTemplate.code, AgreementTemplate.version.desc(), AgreementTemplate.id
    )
    return paginate(statement, page, size)


def current_template(institution_id: uuid.UUID | None) -> AgreementTemplate | None:
    """The template a new contract of the centre is signed with: the centre's published template,
    else the district's (the most recently published one when several codes are published)."""
    for owner in ([institution_id] if institution_id is not None else []) + [None]:
        condition = (
            AgreementTemplate.institution_id.is_(None)
            if owner is None
            else AgreementTemplate.institution_id == owner
        )
        found = db.session.execute(
            select(AgreementTemplate)
            .where(condition, AgreementTemplate.status == TemplateStatus.PUBLISHED)
            .order_by(
                AgreementTemplate.published_at.desc(),
                AgreementTemplate.version.desc(),
                AgreementTemplate.id,
            )
            .limit(1)
        ).scalar_one_or_none()
        if found is not None:
            return found
    return None


def require_current_template(institution_id: uuid.UUID | None) -> AgreementTemplate:
    template = current_template(institution_id)
    if template is None:
        raise BusinessRuleViolation("尚未发布签约协议模板，请联系管理员", code="no_agreement_template")
    return template


def create_template(actor: Principal, data: Mapping[str, Any]) -> AgreementTemplate:
    """A new template (draft, version 1): code, title, clauses; `institution_id` for district admins."""
    owner = owner_for_new(actor, data.get("institution_id"), WHAT)
    check_new_code(AgreementTemplate, data["code"], WHAT)
    template = AgreementTemplate(
        id=uuid.uuid4(),
        code=data["code"],
        version=1,
        title=data["title"],
        status=TemplateStatus.DRAFT,
        institution_id=owner,
        created_by=actor.id,
    )
    template.clauses = _clauses(data["clauses"])
    db.session.add(template)
    flush_or_conflict(f"协议模板代码“{template.code}”已被使用", "code_taken")
    _audit("agreement_template.create", template)
    return template


def update_template(actor: Principal, template_id: uuid.UUID, data: Mapping[str, Any]) -> AgreementTemplate:
    """Edit a draft: the title and/or the clauses (`clauses` replace all of them)."""
    template = get_template(template_id, actor, action="update")
    check_manager(actor, template, WHAT)
    require_draft(template, WHAT)
    if "title" in data:
        template.title = data["title"]
    if "clauses" in data:
        clauses = _clauses(data["clauses"])
        # The old rows go before the new ones come in: (template_id, key) stays unique.
        template.clauses = []
        db.session.flush()
        template.clauses = clauses
    flush_or_conflict("协议模板内容冲突，请刷新后重试", "conflict")
    _audit("agreement_template.update", template)
    return template


def publish_template(actor: Principal, template_id: uuid.UUID) -> AgreementTemplate:
    template = get_template(template_id, actor, action="publish")
    check_manager(actor, template, WHAT)
    if not template.clauses:
        raise BusinessRuleViolation("协议模板至少须含一个条款", code="clauses_required")
    publish_version(AgreementTemplate, template, WHAT)
    _audit("agreement_template.publish", template)
    return template


def retire_template(actor: Principal, template_id: uuid.UUID) -> AgreementTemplate:
    template = get_template(template_id, actor, action="retire")
    check_manager(actor, template, WHAT)
    retire_version(AgreementTemplate, template, WHAT)
    _audit("agreement_template.retire", template)
    return template


def new_template_version(actor: Principal, template_id: uuid.UUID) -> AgreementTemplate:
    source = get_template(template_id, actor, action="new_version")
    check_manager(actor, source, WHAT)
    version = next_version_of(AgreementTemplate, source, WHAT)
    template = AgreementTemplate(
        id=uuid.uuid4(),
        code=source.code,
        version=version,
        title=source.title,
        status=TemplateStatus.DRAFT,
        institution_id=source.institution_id,
        created_by=actor.id,
    )
    template.clauses = [
        AgreementClause(
            id=uuid.uuid4(),
            key=clause.key,
            kind=clause.kind,
            title=clause.title,
            text=clause.text,
            personalisable=clause.personalisable,
            sort=clause.sort,
        )
        for clause in source.clauses
    ]
    db.session.add(template)
    flush_or_conflict("已有人同时创建了新版本，请刷新后重试", "draft_exists")
    _audit("agreement_template.new_version", template, {"from_version": source.version})
    return template


def _clauses(specs: Sequence[Mapping[str, Any]]) -> list[AgreementClause]:
    keys = [spec["key"] for spec in specs]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise BusinessRuleViolation(
            "条款标识重复：" + "、".join(duplicates), code="duplicate_clause", errors={"clauses": duplicates}
        )
    for spec in specs:
        check_clause_text(spec["text"], key=spec["key"], title=spec["title"])
    return [
        AgreementClause(
            id=uuid.uuid4(),
            key=spec["key"],
            kind=spec.get("kind") or ClauseKind.OTHER,
            title=spec["title"],
            text=spec["text"],
            personalisable=bool(spec.get("personalisable", False)),
            sort=sort,
        )
        for sort, spec in enumerate(specs)
    ]


def _audit(action: str, template: AgreementTemplate, detail: dict[str, Any] | None = None) -> None:
    audit.record(
        action,
        "agreement_template",
        template.id,
        institution_id=template.institution_id,
        detail={
            "code": template.code,
            "version": template.version,
            "status": template.status,
            **(detail or {}),
        },
    )


# --- preview ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Preview:
    template: AgreementTemplate
    clauses: list[dict[str, Any]]  # number, key, kind, title, text, personalisable, personalised, source
    text: str
    sha256: str
    period_start: date
    period_end: date
    price_fen: int
    subsidy_fen: int
    self_pay_fen: int


def preview_template(
    actor: Principal,
    template_id: uuid.UUID,
    *,
    resident_id: uuid.UUID,
    team_id: uuid.UUID,
    doctor_id: uuid.UUID | None = None,
    package_ids: Sequence[uuid.UUID] = (),
    clause_overrides: Mapping[str, str] | None = None,
    period_start: date | None = None,
) -> Preview:
    """The template rendered for a resident, team (doctor: `doctor_id` or the team leader) and
    packages, with per-contract overrides of personalisable clauses. Nothing is saved but the
    audit row of reading the resident."""
    template = get_template(template_id, actor)
    resident = get_or_404(Resident, resident_id, object_type="resident")
    team = get_or_404(Team, team_id, object_type="team")
    doctor = _doctor_of(team, doctor_id)
    packages = published_by_ids(package_ids, actor)
    overrides = dict(clause_overrides or {})
    check_overrides(template, overrides)
    start, end = core.period_for(period_start or clock.today_local())
    draft = Contract(
        contract_no=PREVIEW_CONTRACT_NO,
        period_start=start,
        period_end=end,
        price_fen=sum(p.price_fen for p in packages),
        subsidy_fen=sum(p.subsidy_fen for p in packages),
        self_pay_fen=sum(p.self_pay_fen for p in packages),
    )
    context = core.agreement_context(draft, resident, team, doctor, packages)
    rendered, text, sha256 = core.render_agreement(template, context, overrides)
    by_key = {clause.key: clause for clause in template.clauses}
    clauses = [
        {
            **item,
            "personalisable": by_key[item["key"]].personalisable,
            "source": overrides.get(item["key"], by_key[item["key"]].text),
        }
        for item in rendered
    ]
    audit.record(
        "agreement_template.preview",
        "agreement_template",
        template.id,
        resident_id=resident.id,
        detail={"team_id": str(team.id), "packages": [p.code for p in packages]},
    )
    return Preview(
        template=template,
        clauses=clauses,
        text=text,
        sha256=sha256,
        period_start=start,
        period_end=end,
        price_fen=draft.price_fen,
        subsidy_fen=draft.subsidy_fen,
        self_pay_fen=draft.self_pay_fen,
    )


def _doctor_of(team: Team, doctor_id: uuid.UUID | None) -> Doctor:
    members = {m.doctor_id: m for m in team.members}
    if doctor_id is not None:
        member = members.get(doctor_id)
        if member is None:
            raise BusinessRuleViolation(
                "所选医生不是该团队的成员", code="doctor_not_in_team", errors={"doctor_id": [str(doctor_id)]}
            )
        return member.doctor
    leader = team.leader()
    if leader is None:
        candidates = [m for m in team.members if m.role == "gp"] or list(team.members)
        if not candidates:
            raise BusinessRuleViolation("该团队没有成员", code="team_empty", errors={"team_id": ["没有成员"]})
        return candidates[0].doctor
    return leader.doctor
