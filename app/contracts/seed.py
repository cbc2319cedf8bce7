"""Default service packages and the standard agreement template (the district's starting data).

The packages follow 《国家基本公共卫生服务规范（第三版）》 (国卫基层发〔2017〕13号): each item is one
service with its number of times within a one-year contract period (and, where the standard sets
one, the number of days from the contract start it is due within). Prices are demo figures — the
district sets the real ones — and every description says so.

`seed_packages_and_templates()` is idempotent: a package or template code that already exists (in any
version, including one an admin has since edited or retired) is left alone; only missing codes are
created, published as version 1. It does not commit: `flask seed-contracts` (this module) and
`flask seed-demo` commit around it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import click
from flask.cli import with_appcontext
from sqlalchemy import select

from app.contracts.models import (
    AgreementClause,
    AgreementTemplate,
    ClauseKind,
    PackageItem,
    PackageKind,
    PackageStatus,
    ServicePackage,
    TemplateStatus,
)
from app.core import clock
from app.core.db import db, transaction

__all__ = ["PACKAGES", "STANDARD_TEMPLATE", "SeedReport", "seed_contracts", "seed_packages_and_templates"]

DEMO = "（演示价格，以区卫生健康局公布的标准为准）"
STANDARD = "依据《国家基本公共卫生服务规范（第三版）》。"


def _item(
    code: str,
    name: str,
    service_type: str,
    times: int = 1,
    due_within_days: int | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    return {
        "code": code,
        "name": name,
        "service_type": service_type,
        "times_per_period": times,
        "due_within_days": due_within_days,
        "description": description,
    }


# code -> the package's columns and items. Basic first; the rest are personalised packages.
PACKAGES: dict[str, dict[str, Any]] = {
    "basic": {
        "name": "基础服务包",
        "kind": PackageKind.BASIC,
        "description": "基本医疗服务与国家基本公共卫生服务，签约居民均可享有；费用由医保基金和基本公共卫生"
        "服务经费承担，个人不付费。" + STANDARD + DEMO,
        "price_fen": 12000,
        "subsidy_fen": 12000,
        "self_pay_fen": 0,
        "items": [
            _item(
                "health_record",
                "建立（更新）居民健康档案",
                "health_record",
                1,
                30,
                "签约后30日内建档或更新档案",
            ),
            _item(
                "annual_assessment", "年度健康评估", "health_assessment", 1, None, "每年1次，并给出健康指导"
            ),
            _item("health_education", "健康教育与健康咨询", "health_education", 4, None, "每季度至少1次"),
            _item(
                "vaccination_reminder", "预防接种提醒", "vaccination_reminder", 1, None, "按免疫程序提醒接种"
            ),
            _item(
                "basic_medical",
                "基本医疗服务",
                "basic_medical",
                1,
                None,
                "常见病、多发病诊疗与合理用药指导，按需提供",
            ),
            _item("referral", "预约与转诊", "referral", 1, None, "优先预约上级医院专家号源，按需提供"),
            _item(
                "chronic_screening",
                "慢性病筛查（血压、血糖）",
                "chronic_screening",
                1,
                None,
                "35岁及以上居民每年1次",
            ),
        ],
    },
    "elderly": {
        "name": "老年人健康管理服务包",
        "kind": PackageKind.PERSONALISED,
        "description": "65岁及以上老年人：每年1次健康管理（生活方式和健康状况评估、体格检查、辅助检查、健康指导）"
        "及中医药健康管理。" + STANDARD + DEMO,
        "target_groups": ["elderly_65"],
        "min_age": 65,
        "price_fen": 12000,
        "subsidy_fen": 10000,
        "self_pay_fen": 2000,
        "items": [
            _item(
                "annual_exam",
                "年度健康体检",
                "health_exam",
                1,
                None,
                "体格检查与辅助检查（血常规、尿常规、肝功能、肾功能、空腹血糖、血脂、心电图、腹部B超）",
            ),
            _item(
                "self_care_assessment",
                "生活自理能力评估",
                "self_care_assessment",
                1,
                None,
                "老年人生活自理能力评估表",
            ),
            _item(
                "tcm_management", "中医药健康管理", "tcm_management", 1, None, "中医体质辨识与中医药保健指导"
            ),
            _item(
                "health_guidance", "健康指导", "health_education", 1, None, "告知体检结果并进行针对性健康指导"
            ),
        ],
    },
    "hypertension": {
        "name": "高血压患者健康管理服务包",
        "kind": PackageKind.PERSONALISED,
        "description": "原发性高血压患者：每年至少4次面对面随访和1次较全面的健康检查。" + STANDARD + DEMO,
        "target_groups": ["hypertension"],
        "min_age": 35,
        "price_fen": 12000,
        "subsidy_fen": 10000,
        "self_pay_fen": 2000,
        "items": [
            _item(
                "follow_up",
                "高血压面对面随访",
                "hypertension_follow_up",
                4,
                None,
                "每季度至少1次：测量血压、评估病情、用药指导",
            ),
            _item("annual_exam", "年度健康检查", "health_exam", 1),
        ],
    },
    "diabetes_t2": {
        "name": "2型糖尿病患者健康管理服务包",
        "kind": PackageKind.PERSONALISED,
        "description": "2型糖尿病患者：每年至少4次面对面随访、4次免费空腹血糖检测和1次较全面的健康检查。"
        + STANDARD
        + DEMO,
        "target_groups": ["diabetes_t2"],
        "min_age": 35,
        "price_fen": 15000,
        "subsidy_fen": 12000,
        "self_pay_fen": 3000,
        "items": [
            _item("follow_up", "糖尿病面对面随访", "diabetes_follow_up", 4, None, "每季度至少1次"),
            _item("glucose", "空腹血糖检测", "blood_glucose", 4, None, "每季度1次"),
            _item("annual_exam", "年度健康检查", "health_exam", 1),
        ],
    },
    "maternal": {
        "name": "孕产妇健康管理服务包",
        "kind": PackageKind.PERSONALISED,
        "description": "孕产妇：孕期5次产前检查（孕13周前建册、孕16～20周、21～24周、28～36周、37～40周），"
        "出院后1周内产后访视和产后42天健康检查。" + STANDARD + DEMO,
        "target_groups": ["maternal"],
        "sex": "female",
        "price_fen": 20000,
        "subsidy_fen": 15000,
        "self_pay_fen": 5000,
        "items": [
            _item(
                "prenatal",
                "产前检查与随访",
                "prenatal_visit",
                5,
                None,
                "孕13周前建立孕产妇保健手册并进行第1次产前检查",
            ),
            _item(
                "postnatal_visit", "产后访视", "postnatal_visit", 1, None, "产妇出院后1周内（3～7天）入户访视"
            ),
            _item("postnatal_42d", "产后42天健康检查", "postnatal_42d_check", 1),
        ],
    },
    "child_infant": {
        "name": "0-6岁儿童健康管理服务包（婴儿期）",
        "kind": PackageKind.PERSONALISED,
        "description": "1岁以内婴儿：新生儿家庭访视、满月健康管理，3、6、8、12月龄健康检查。"
        + STANDARD
        + DEMO,
        "target_groups": ["child_0_6"],
        "max_age": 0,
        "price_fen": 10000,
        "subsidy_fen": 8000,
        "self_pay_fen": 2000,
        "items": [
            _item("newborn_visit", "新生儿家庭访视", "newborn_visit", 1, 7, "出院后1周内"),
            _item("newborn_month", "新生儿满月健康管理", "newborn_month_check", 1, 30, "出生后28～30天"),
            _item("infant_check", "婴儿健康检查", "child_health_check", 4, None, "3、6、8、12月龄各1次"),
        ],
    },
    "child_toddler": {
        "name": "0-6岁儿童健康管理服务包（幼儿期）",
        "kind": PackageKind.PERSONALISED,
        "description": "1～3岁幼儿：18、24、30、36月龄健康检查（每年2次），含生长发育和心理行为发育评估。"
        + STANDARD
        + DEMO,
        "target_groups": ["child_0_6"],
        "min_age": 1,
        "max_age": 3,
        "price_fen": 10000,
        "subsidy_fen": 8000,
        "self_pay_fen": 2000,
        "items": [
            _item("toddler_check", "幼儿健康检查", "child_health_check", 2, None, "18、24、30、36月龄各1次"),
        ],
    },
    "child_preschool": {
        "name": "0-6岁儿童健康管理服务包（学龄前）",
        "kind": PackageKind.PERSONALISED,
        "description": "4～6岁学龄前儿童：每年1次健康管理，含视力筛查。" + STANDARD + DEMO,
        "target_groups": ["child_0_6"],
        "min_age": 4,
        "max_age": 6,
        "price_fen": 10000,
        "subsidy_fen": 8000,
        "self_pay_fen": 2000,
        "items": [
            _item(
                "preschool_check", "学龄前儿童健康检查", "child_health_check", 1, None, "含体格检查、视力筛查"
            ),
        ],
    },
    "disabled": {
        "name": "残疾人健康管理服务包",
        "kind": PackageKind.PERSONALISED,
        "description": "持证残疾人：年度健康评估、康复指导和辅助器具适配咨询。" + DEMO,
        "target_groups": ["disabled"],
        "price_fen": 10000,
        "subsidy_fen": 10000,
        "self_pay_fen": 0,
        "items": [
            _item("assessment", "年度健康评估", "health_assessment", 1),
            _item("rehab_guidance", "康复训练指导", "rehab_guidance", 4, None, "每季度1次，可上门"),
            _item("assistive_devices", "辅助器具适配咨询", "assistive_devices", 1),
        ],
    },
    "severe_mental_disorder": {
        "name": "严重精神障碍患者健康管理服务包",
        "kind": PackageKind.PERSONALISED,
        "description": "在家居住的严重精神障碍患者：每年至少4次随访（危险性评估、服药指导、康复指导）"
        "和1次健康检查。" + STANDARD + DEMO,
        "target_groups": ["severe_mental_disorder"],
        "price_fen": 10000,
        "subsidy_fen": 10000,
        "self_pay_fen": 0,
        "items": [
            _item("follow_up", "严重精神障碍患者随访", "mental_follow_up", 4, None, "每季度至少1次"),
            _item("annual_exam", "年度健康检查", "health_exam", 1),
        ],
    },
    "tuberculosis": {
        "name": "肺结核患者健康管理服务包",
        "kind": PackageKind.PERSONALISED,
        "description": "肺结核患者：接到确诊通知后72小时内首次入户随访，治疗期间每月督导服药随访，"
        "疗程结束后结案评估。" + STANDARD + DEMO,
        "target_groups": ["tuberculosis"],
        "price_fen": 10000,
        "subsidy_fen": 10000,
        "self_pay_fen": 0,
        "items": [
            _item("first_visit", "首次入户随访", "tb_first_visit", 1, 3, "72小时内"),
            _item("follow_up", "督导服药随访", "tb_follow_up", 6, None, "治疗期间每月1次（标准疗程6个月）"),
            _item("closing_assessment", "结案评估", "tb_closing_assessment", 1),
        ],
    },
}

# The standard agreement (罗湖区家庭医生签约服务协议书): (key, kind, title, text, personalisable).
STANDARD_TEMPLATE: dict[str, Any] = {
    "code": "luohu_standard",
    "title": "罗湖区家庭医生签约服务协议书",
    "clauses": [
        (
            "parties",
            ClauseKind.PARTIES,
            "签约双方",
            "甲方（签约居民）：{resident_name}\n"
            "乙方（家庭医生团队）：{centre_name}{team_name}，签约家庭医生：{doctor_name}，联系电话：{centre_phone}\n"
            "协议编号：{contract_no}\n"
            "甲乙双方本着平等、自愿、诚信的原则，签订本协议。",
            False,
        ),
        (
            "services",
            ClauseKind.SERVICES,
            "服务内容",
            "乙方为甲方提供以下服务包所列的服务：{packages}。服务项目、频次按服务包的约定执行，"
            "包括基本医疗服务、国家基本公共卫生服务及所签个性化服务。",
            True,
        ),
        (
            "period",
            ClauseKind.PERIOD,
            "服务期限",
            "本协议服务期自{period_start}起至{period_end}止。期满前乙方提醒甲方续约；"
            "甲方可选择续约或改签其他家庭医生团队。",
            False,
        ),
        (
            "fees",
            ClauseKind.FEES,
            "服务费用",
            "签约服务费合计{price_yuan}元，其中医保基金及财政补助{subsidy_yuan}元，甲方自付{self_pay_yuan}元。"
            "自付部分在签约确认时缴纳，服务期内不另行收取签约服务费。",
            False,
        ),
        (
            "rights_duties",
            ClauseKind.RIGHTS_DUTIES,
            "双方的权利与义务",
            "甲方有权获得本协议约定的服务，有权对服务进行评价和投诉；应如实提供健康信息，配合乙方开展随访和健康管理。\n"
            "乙方应按约定提供服务，为甲方建立和维护健康档案，提供健康咨询和预约转诊服务，"
            "不得无故拒绝或减少约定的服务。",
            False,
        ),
        (
            "privacy",
            ClauseKind.PRIVACY,
            "个人信息保护与数据共享",
            "乙方依照《中华人民共和国个人信息保护法》等规定保护甲方的个人信息和健康信息，仅为提供本协议服务使用。"
            "经甲方单独同意后，乙方将甲方的健康档案和诊疗信息与罗湖区区域全民健康信息平台共享，用于连续诊疗和"
            "健康管理；甲方可随时撤回该同意，撤回不影响撤回前已进行的共享。",
            False,
        ),
        (
            "termination",
            ClauseKind.TERMINATION,
            "协议的变更与解除",
            "服务期内甲方可申请变更签约团队或解除协议；甲方迁出本区、死亡或乙方团队解散的，本协议相应终止或变更。"
            "协议解除后，已缴纳的自付费用按实际服务情况处理。如有疑问请致电{centre_phone}。",
            False,
        ),
    ],
}


@dataclass(frozen=True)
class SeedReport:
    packages_created: list[str]
    templates_created: list[str]


def seed_packages_and_templates() -> SeedReport:
    """Create the missing default packages and the standard template (published, version 1,
    district-wide). Existing codes are left untouched. Does not commit."""
    now = clock.now()
    existing = set(
        db.session.execute(select(ServicePackage.code).where(ServicePackage.code.in_(PACKAGES))).scalars()
    )
    created: list[str] = []
    for code, spec in PACKAGES.items():
        if code in existing:
            continue
        columns = {k: v for k, v in spec.items() if k != "items"}
        package = ServicePackage(
            id=uuid.uuid4(),
            code=code,
            version=1,
            status=PackageStatus.PUBLISHED,
            institution_id=None,
            published_at=now,
            target_groups=list(columns.pop("target_groups", [])),
            **columns,
        )
        package.items = [
            PackageItem(id=uuid.uuid4(), sort=sort, **item) for sort, item in enumerate(spec["items"])
        ]
        db.session.add(package)
        created.append(code)
    templates: list[str] = []
    code = STANDARD_TEMPLATE["code"]
    if (
        db.session.execute(
            select(AgreementTemplate.id).where(AgreementTemplate.code == code).limit(1)
        ).first()
        is None
    ):
        template = AgreementTemplate(
            id=uuid.uuid4(),
            code=code,
            version=1,
            title=STANDARD_TEMPLATE["title"],
            status=TemplateStatus.PUBLISHED,
            institution_id=None,
            published_at=now,
        )
        template.clauses = [
            AgreementClause(
                id=uuid.uuid4(),
                key=key,
                kind=str(kind),
                title=title,
                text=text,
                personalisable=personalisable,
                sort=sort,
            )
            for sort, (key, kind, title, text, personalisable) in enumerate(STANDARD_TEMPLATE["clauses"])
        ]
        db.session.add(template)
        templates.append(code)
    db.session.flush()
    return SeedReport(created, templates)


@click.command("seed-contracts")
@with_appcontext
def seed_contracts() -> None:
    """Default service packages (国家基本公共卫生服务规范 第三版) and the standard agreement template."""
    with transaction():
        report = seed_packages_and_templates()
    click.echo(
        f"service packages created: {len(report.packages_created)}"
        f" ({', '.join(report.packages_created) or '-'}); "
        f"agreement templates created: {len(report.templates_created)}"
        f" ({', '.join(report.templates_created) or '-'})"
    )
