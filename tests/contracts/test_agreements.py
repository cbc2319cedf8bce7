"""Agreement templates and clauses: maintenance, versioning, placeholders, the current template, the
preview with a personalised clause; and the default data (seed) with its idempotence."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import func, select

from app.contracts.models import (
    AgreementClause,
    AgreementTemplate,
    ContractStatus,
    PackageItem,
    ServicePackage,
    TemplateStatus,
)
from app.contracts.seed import PACKAGES, STANDARD_TEMPLATE, seed_contracts, seed_packages_and_templates
from app.contracts.services import agreements as services
from app.contracts.services import core
from app.contracts.services import packages as package_services
from app.core.audit import AuditEvent
from app.core.auth import Role
from app.core.db import commit, db
from app.residents.models.codes import GROUPS
from tests.contracts.factories import STANDARD_CLAUSES, make_package, make_template
from tests.factories import as_principal, make_centre, make_staff
from tests.factories_residents import make_resident

BASE = "/api/v1/agreement-templates"


def clause(key: str = "services", text: str = "服务包：{packages}", **kw: Any) -> dict[str, Any]:
    return {
        "key": key,
        "kind": kw.pop("kind", "services"),
        "title": kw.pop("title", "服务内容"),
        "text": text,
        **kw,
    }


def body(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "code": f"tpl-{uuid.uuid4().hex[:8]}",
        "title": "家庭医生签约服务协议书",
        "clauses": [
            clause(
                "parties",
                "甲方：{resident_name}；乙方：{centre_name}{team_name}",
                kind="parties",
                title="签约双方",
            ),
            clause("services", "乙方提供：{packages}。", personalisable=True),
            clause("fees", "合计{price_yuan}元，自付{self_pay_yuan}元。", kind="fees", title="费用"),
        ],
    }
    values.update(overrides)
    return values


@pytest.fixture
def district_admin() -> Any:
    return make_staff(Role.DISTRICT_ADMIN, None)


# --- lifecycle ----------------------------------------------------------------------------------------


def test_create_edit_publish_version_retire(api, district_admin):
    http = api(district_admin)
    created = http.post(BASE, json=body(code="std"))
    assert created.status_code == 201, created.json
    template = created.json
    assert (template["status"], template["version"], template["scope"]) == ("draft", 1, "district")
    assert [(c["key"], c["personalisable"]) for c in template["clauses"]] == [
        ("parties", False),
        ("services", True),
        ("fees", False),
    ]
    assert template["clauses"][1]["kind_label"] == "服务内容"

    # Replacing the clauses (same keys) of a draft works.
    edited = http.patch(
        f"{BASE}/{template['id']}",
        json={
            "title": "罗湖区家庭医生签约服务协议书",
            "clauses": [clause("services", "新：{packages}", personalisable=True)],
        },
    )
    assert edited.status_code == 200, edited.json
    assert [c["text"] for c in edited.json["clauses"]] == ["新：{packages}"]

    assert http.post(f"{BASE}/{template['id']}/publish").status_code == 200
    locked = http.patch(f"{BASE}/{template['id']}", json={"title": "改"})
    assert (locked.status_code, locked.json["code"]) == (409, "version_immutable")

    v2 = http.post(f"{BASE}/{template['id']}/versions")
    assert v2.status_code == 201, v2.json
    assert (v2.json["version"], v2.json["status"]) == (2, "draft")
    assert [c["text"] for c in v2.json["clauses"]] == ["新：{packages}"]
    assert (http.post(f"{BASE}/{template['id']}/versions").json["code"]) == "draft_exists"
    assert http.post(f"{BASE}/{v2.json['id']}/publish").status_code == 200
    assert http.get(f"{BASE}/{template['id']}").json["status"] == "retired"
    assert http.post(f"{BASE}/{v2.json['id']}/retire").json["status"] == "retired"
    assert http.post(f"{BASE}/{v2.json['id']}/retire").status_code == 409
    listed = http.get(BASE, query_string={"code": "std"}).json["items"]
    assert [(t["version"], t["status"]) for t in listed] == [(2, "retired"), (1, "retired")]


def test_roles_and_visibility(api, centre, other_centre):
    own = make_template(institution_id=centre.id, status=TemplateStatus.DRAFT)
    theirs = make_template(institution_id=other_centre.id)
    district = make_template()
    admin = make_staff(Role.CENTRE_ADMIN, centre)
    doctor = make_staff(Role.DOCTOR, centre)

    assert api(None).get(BASE).status_code == 401
    assert api(None).post(BASE, json=body()).status_code == 401
    assert api(doctor).post(BASE, json=body()).status_code == 403
    assert api(doctor).post(f"{BASE}/{own.id}/publish").status_code == 403
    ids = {t["id"] for t in api(doctor).get(BASE, query_string={"size": 100}).json["items"]}
    assert {str(own.id), str(district.id)} <= ids and str(theirs.id) not in ids
    assert api(doctor).get(f"{BASE}/{theirs.id}").status_code == 404
    denial = db.session.execute(
        select(AuditEvent).where(AuditEvent.actor_id == str(doctor.id), AuditEvent.result == "denied")
    ).scalar_one()
    assert denial.object_id == str(theirs.id)

    created = api(admin).post(BASE, json=body())
    assert (created.status_code, created.json["institution_id"]) == (201, str(centre.id))
    assert api(admin).post(f"{BASE}/{own.id}/publish").status_code == 200
    forbidden = api(admin).post(f"{BASE}/{district.id}/retire")
    assert (forbidden.status_code, forbidden.json["code"]) == (403, "district_owned")
    assert api(admin).post(f"{BASE}/{theirs.id}/retire").status_code == 404
    taken = api(admin).post(BASE, json=body(code=own.code))
    assert (taken.status_code, taken.json["code"]) == (409, "code_taken")


# --- placeholders -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("甲方：{resident}", "{resident}"),
        ("甲方：{resident_name.__class__}", "{resident_name.__class__}"),
        ("甲方：{resident_name[0]}", "{resident_name[0]}"),
        ("费用：{price_yuan:>10}", "{price_yuan}"),
        ("甲方：{resident_name!r}", "{resident_name}"),
        ("甲方：{0}", "{0}"),
        ("甲方：{}", "{}"),
        ("单个 { 括号", "花括号"),
        ("单个 } 括号", "花括号"),
    ],
)
def test_clause_text_is_validated_on_save(api, district_admin, text, named):
    response = api(district_admin).post(BASE, json=body(clauses=[clause("services", text)]))
    assert response.status_code == 422, response.json
    assert response.json["code"] == "invalid_placeholder"
    assert named in response.json["message"]
    assert "条款“服务内容”" in response.json["message"]
    assert "clauses.services.text" in response.json["errors"]


def test_every_context_placeholder_and_literal_braces_are_accepted(api, district_admin):
    text = "".join("{" + name + "}" for name in services.PLACEHOLDERS) + " {{字面括号}}"
    response = api(district_admin).post(BASE, json=body(clauses=[clause("services", text)]))
    assert response.status_code == 201, response.json
    listed = api(district_admin).get(f"{BASE}/placeholders")
    assert [p["name"] for p in listed.json] == list(services.PLACEHOLDERS)


def test_the_placeholders_are_those_the_context_fills(world):
    contract = core.create_contract(
        resident=world.resident,
        team=world.team,
        doctor=world.doctor,
        packages=[world.basic],
        status=ContractStatus.ACTIVE,
        channel="desk",
        actor=core.SYSTEM,
    )
    context = core.agreement_context(contract, world.resident, world.team, world.doctor, [world.basic])
    assert set(context) == set(services.PLACEHOLDERS)


def test_duplicate_clause_keys_are_422(api, district_admin):
    response = api(district_admin).post(BASE, json=body(clauses=[clause("services"), clause("services")]))
    assert (response.status_code, response.json["code"]) == (422, "duplicate_clause")


@pytest.mark.parametrize(
    "overrides",
    [
        {"clauses": []},
        {"clauses": [clause("Services!")]},
        {"clauses": [clause(kind="weird")]},
        {"title": ""},
        {"status": "published"},
    ],
)
def test_schema_rejects_bad_templates(api, district_admin, overrides):
    response = api(district_admin).post(BASE, json=body(**overrides))
    assert (response.status_code, response.json["code"]) == (422, "validation_error")


# --- the current template ----------------------------------------------------------------------------


def test_current_template_prefers_the_centre_then_the_district(api, centre, other_centre, district_admin):
    assert services.current_template(centre.id) is None
    district = make_template()
    assert services.current_template(centre.id).id == district.id
    assert services.current_template(None).id == district.id
    own = make_template(institution_id=centre.id)
    assert services.current_template(centre.id).id == own.id
    assert services.current_template(other_centre.id).id == district.id
    make_template(institution_id=centre.id, status=TemplateStatus.DRAFT)
    assert services.current_template(centre.id).id == own.id
    with as_principal(district_admin) as actor:
        services.retire_template(actor, own.id)
    assert services.current_template(centre.id).id == district.id

    nurse = make_staff(Role.NURSE, centre)
    response = api(nurse).get(f"{BASE}/current")
    assert (response.status_code, response.json["id"]) == (200, str(district.id))
    elsewhere = api(nurse).get(f"{BASE}/current", query_string={"institution_id": str(other_centre.id)})
    assert (elsewhere.status_code, elsewhere.json["code"]) == (422, "other_centre")
    assert api(district_admin).get(f"{BASE}/current").json["id"] == str(district.id)


def test_no_current_template_is_404(api, centre):
    response = api(make_staff(Role.NURSE, centre)).get(f"{BASE}/current")
    assert (response.status_code, response.json["code"]) == (404, "agreement_template_not_found")


# --- preview ------------------------------------------------------------------------------------------


def test_preview_renders_for_a_resident_with_a_personalised_clause(api, world):
    elderly = make_package(name="老年人健康管理", price_fen=12000, subsidy_fen=10000, self_pay_fen=2000)
    http = api(world.doctor_user)
    response = http.post(
        f"{BASE}/{world.template.id}/preview",
        json={
            "resident_id": str(world.resident.id),
            "team_id": str(world.team.id),
            "package_ids": [str(world.basic.id), str(elderly.id)],
            "clause_overrides": {"services": "为{resident_name}提供：{packages}，另加每月一次电话随访。"},
        },
    )
    assert response.status_code == 200, response.json
    preview = response.json
    by_key = {c["key"]: c for c in preview["clauses"]}
    assert by_key["services"]["personalisable"] is True and by_key["services"]["personalised"] is True
    assert (
        by_key["services"]["text"]
        == f"为{world.resident.name}提供：基础服务包、老年人健康管理，另加每月一次电话随访。"
    )
    assert by_key["services"]["source"].startswith("为{resident_name}")
    assert by_key["parties"]["personalisable"] is False and by_key["parties"]["personalised"] is False
    assert world.doctor.name in by_key["parties"]["text"] and world.centre.name in by_key["parties"]["text"]
    assert "（签约后生成）" in by_key["parties"]["text"]
    assert by_key["fees"]["text"] == "服务费合计120.00元，其中财政补助100.00元，居民自付20.00元。"
    assert "{" not in preview["text"]
    assert preview["text"].startswith(world.template.title)
    assert (preview["price_fen"], preview["subsidy_fen"], preview["self_pay_fen"]) == (12000, 10000, 2000)
    assert len(preview["sha256"]) == 64
    assert preview["template"]["id"] == str(world.template.id)
    audit = db.session.execute(
        select(AuditEvent).where(AuditEvent.action == "agreement_template.preview")
    ).scalar_one()
    assert audit.subject_resident_id == str(world.resident.id)

    # The nurse (a member) as the doctor named in the agreement.
    as_nurse = http.post(
        f"{BASE}/{world.template.id}/preview",
        json={
            "resident_id": str(world.resident.id),
            "team_id": str(world.team.id),
            "doctor_id": str(world.nurse.id),
        },
    )
    assert as_nurse.status_code == 200, as_nurse.json
    assert world.nurse.name in as_nurse.json["clauses"][0]["text"]


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"parties": "改写双方"}, "clause_locked"),
        ({"nonexistent": "文本"}, "unknown_clause"),
        ({"services": "提供：{secret}"}, "invalid_placeholder"),
    ],
)
def test_preview_refuses_bad_overrides(api, world, overrides, code):
    response = api(world.doctor_user).post(
        f"{BASE}/{world.template.id}/preview",
        json={
            "resident_id": str(world.resident.id),
            "team_id": str(world.team.id),
            "clause_overrides": overrides,
        },
    )
    assert (response.status_code, response.json["code"]) == (422, code), response.json


def test_preview_errors(api, world, other_centre):
    http = api(world.doctor_user)
    path = f"{BASE}/{world.template.id}/preview"
    payload = {"resident_id": str(world.resident.id), "team_id": str(world.team.id)}
    assert api(None).post(path, json=payload).status_code == 401
    assert api(make_staff(Role.CASHIER, world.centre)).post(path, json=payload).status_code == 403
    assert http.post(path, json={"team_id": str(world.team.id)}).status_code == 422
    stranger = make_resident(other_centre)
    assert http.post(path, json={**payload, "resident_id": str(stranger.id)}).status_code == 404
    outsider = make_staff(Role.DOCTOR, make_centre())
    assert api(outsider).post(path, json=payload).status_code == 404  # the centre's template
    not_member = http.post(path, json={**payload, "doctor_id": str(uuid.uuid4())})
    assert (not_member.status_code, not_member.json["code"]) == (422, "doctor_not_in_team")
    missing_package = http.post(path, json={**payload, "package_ids": [str(uuid.uuid4())]})
    assert (missing_package.status_code, missing_package.json["code"]) == (422, "package_not_found")
    theirs = make_package(institution_id=other_centre.id)
    hidden_package = http.post(path, json={**payload, "package_ids": [str(theirs.id)]})
    assert (hidden_package.status_code, hidden_package.json["code"]) == (422, "package_not_found")
    assert http.post(f"{BASE}/{uuid.uuid4()}/preview", json=payload).status_code == 404


def test_factory_template_has_a_personalisable_clause_with_placeholders():
    template = make_template()
    assert any(c.personalisable for c in template.clauses)
    for c in template.clauses:
        services.check_clause_text(c.text, key=c.key, title=c.title)
    assert {c[0] for c in STANDARD_CLAUSES} >= {
        "parties",
        "services",
        "period",
        "fees",
        "privacy",
        "termination",
    }


# --- the default data ---------------------------------------------------------------------------------


def _counts() -> tuple[int, int, int, int]:
    return (
        db.session.execute(select(func.count()).select_from(ServicePackage)).scalar_one(),
        db.session.execute(select(func.count()).select_from(PackageItem)).scalar_one(),
        db.session.execute(select(func.count()).select_from(AgreementTemplate)).scalar_one(),
        db.session.execute(select(func.count()).select_from(AgreementClause)).scalar_one(),
    )


def test_seed_is_idempotent_and_follows_the_standard(app):
    before = _counts()
    first = seed_packages_and_templates()
    commit()
    assert set(first.packages_created) == set(PACKAGES) and first.templates_created == ["luohu_standard"]
    after_first = _counts()
    assert after_first[0] - before[0] == len(PACKAGES)
    ids_first = set(db.session.execute(select(ServicePackage.id)).scalars())
    second = seed_packages_and_templates()
    commit()
    assert (second.packages_created, second.templates_created) == ([], [])
    assert _counts() == after_first
    assert set(db.session.execute(select(ServicePackage.id)).scalars()) == ids_first

    packages = {
        p.code: p
        for p in db.session.execute(select(ServicePackage).where(ServicePackage.code.in_(PACKAGES))).scalars()
    }
    for package in packages.values():
        assert package.status == "published" and package.institution_id is None and package.version == 1
        assert package.price_fen == package.subsidy_fen + package.self_pay_fen
        assert set(package.target_groups) <= set(GROUPS)
        assert package.items and all(i.times_per_period >= 1 for i in package.items)
        assert "演示" in (package.description or "")
    basic = packages["basic"]
    assert (basic.kind, basic.self_pay_fen) == ("basic", 0) and basic.subsidy_fen > 0
    assert {"建立（更新）居民健康档案", "年度健康评估", "预防接种提醒"} <= {i.name for i in basic.items}

    def times(code: str, service_type: str) -> int:
        return sum(i.times_per_period for i in packages[code].items if i.service_type == service_type)

    assert times("hypertension", "hypertension_follow_up") >= 4
    assert times("diabetes_t2", "diabetes_follow_up") >= 4 and times("diabetes_t2", "blood_glucose") == 4
    assert times("severe_mental_disorder", "mental_follow_up") >= 4
    assert times("maternal", "prenatal_visit") == 5
    assert packages["maternal"].sex == "female"
    assert [
        i.due_within_days for i in packages["tuberculosis"].items if i.service_type == "tb_first_visit"
    ] == [3]
    assert {"self_care_assessment", "tcm_management", "health_exam"} <= {
        i.service_type for i in packages["elderly"].items
    }
    assert packages["elderly"].min_age == 65
    assert (
        packages["elderly"].price_fen,
        packages["elderly"].subsidy_fen,
        packages["elderly"].self_pay_fen,
    ) == (
        12000,
        10000,
        2000,
    )

    template = db.session.execute(
        select(AgreementTemplate).where(AgreementTemplate.code == STANDARD_TEMPLATE["code"])
    ).scalar_one()
    assert template.title == "罗湖区家庭医生签约服务协议书"
    assert [c.kind for c in template.clauses] == [
        "parties",
        "services",
        "period",
        "fees",
        "rights_duties",
        "privacy",
        "termination",
    ]
    assert [c.key for c in template.clauses if c.personalisable] == ["services"]
    for c in template.clauses:
        services.check_clause_text(c.text, key=c.key, title=c.title)
    assert "区域全民健康信息平台" in template.clauses[5].text


def test_seed_leaves_edited_codes_alone_and_the_seeded_data_signs(app, world, district_admin):
    seed_packages_and_templates()
    commit()
    basic = db.session.execute(select(ServicePackage).where(ServicePackage.code == "basic")).scalar_one()
    with as_principal(district_admin) as actor:
        draft = package_services.new_package_version(actor, basic.id)
        package_services.publish_package(actor, draft.id)
    commit()
    report = seed_packages_and_templates()
    assert report.packages_created == [] and report.templates_created == []
    assert db.session.execute(select(func.count()).where(ServicePackage.code == "basic")).scalar_one() == 2

    # The seeded template and packages make a real agreement for an elderly hypertensive resident.
    elderly = make_resident(world.centre, age=70, population_groups={"hypertension"})
    standard = db.session.execute(
        select(AgreementTemplate).where(AgreementTemplate.code == "luohu_standard")
    ).scalar_one()
    chosen = list(
        db.session.execute(
            select(ServicePackage)
            .where(
                ServicePackage.code.in_(["basic", "elderly", "hypertension"]),
                ServicePackage.status == "published",
            )
            .order_by(ServicePackage.code)
        ).scalars()
    )
    contract = core.create_contract(
        resident=elderly,
        team=world.team,
        doctor=world.doctor,
        packages=chosen,
        status=ContractStatus.ACTIVE,
        channel="desk",
        actor=core.SYSTEM,
        template=standard,
        clause_overrides={"services": "提供{packages}的服务，并每月电话随访一次。"},
    )
    assert "{" not in contract.agreement_text
    assert "罗湖区家庭医生签约服务协议书" in contract.agreement_text
    assert "每月电话随访一次" in contract.agreement_text
    assert contract.self_pay_fen == 4000


def test_seed_cli_command(app):
    runner = app.test_cli_runner()
    first = runner.invoke(seed_contracts)
    assert first.exit_code == 0, first.output
    assert f"service packages created: {len(PACKAGES)}" in first.output
    second = runner.invoke(seed_contracts)
    assert second.exit_code == 0, second.output
    assert (
        "service packages created: 0" in second.output and "agreement templates created: 0" in second.output
    )
