"""Code lists with their Chinese labels, in one place: ID types, sexes, statuses, population
groups, household and guardian relationships, consent purposes, legal bases, channels and
history actions. Clients fetch them from `GET /api/v1/residents/codes`."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class IdType(StrEnum):
    """身份证件类别 (WS 364.3 CV02.01.101 in `national_code`)."""

    RESIDENT_ID_CARD = "resident_id_card"
    HMT_RESIDENCE_PERMIT = "hmt_residence_permit"
    HK_MACAO_PERMIT = "hk_macao_permit"
    TAIWAN_PERMIT = "taiwan_permit"
    PASSPORT = "passport"
    FOREIGN_PERMANENT_RESIDENCE = "foreign_permanent_residence"
    OTHER = "other"

    @property
    def label(self) -> str:
        return ID_TYPE_LABELS[self]


ID_TYPE_LABELS: dict[IdType, str] = {
    IdType.RESIDENT_ID_CARD: "居民身份证",
    IdType.HMT_RESIDENCE_PERMIT: "港澳台居民居住证",
    IdType.HK_MACAO_PERMIT: "港澳居民来往内地通行证",
    IdType.TAIWAN_PERMIT: "台湾居民来往大陆通行证",
    IdType.PASSPORT: "护照",
    IdType.FOREIGN_PERMANENT_RESIDENCE: "外国人永久居留身份证",
    IdType.OTHER: "其他法定有效证件",
}
# 身份证件类别代码 (WS 364.3-2011 CV02.01.101), for exchange with the regional platform.
ID_TYPE_NATIONAL_CODES: dict[IdType, str] = {
    IdType.RESIDENT_ID_CARD: "01",
    IdType.HMT_RESIDENCE_PERMIT: "99",
    IdType.HK_MACAO_PERMIT: "06",
    IdType.TAIWAN_PERMIT: "07",
    IdType.PASSPORT: "03",
    IdType.FOREIGN_PERMANENT_RESIDENCE: "99",
    IdType.OTHER: "99",
}
# ID types whose number encodes birth date and sex (GB 11643 structure): those are derived.
DERIVING_ID_TYPES = frozenset({IdType.RESIDENT_ID_CARD, IdType.HMT_RESIDENCE_PERMIT})

SEX_LABELS: dict[str, str] = {"male": "男", "female": "女"}


class ResidentStatus(StrEnum):
    ACTIVE = "active"
    MOVED_OUT = "moved_out"
    DECEASED = "deceased"

    @property
    def label(self) -> str:
        return STATUS_LABELS[self]


STATUS_LABELS: dict[ResidentStatus, str] = {
    ResidentStatus.ACTIVE: "在册",
    ResidentStatus.MOVED_OUT: "迁出",
    ResidentStatus.DECEASED: "死亡",
}
# The status machine: a moved-out resident may move back in; death is final.
STATUS_TRANSITIONS: dict[ResidentStatus, frozenset[ResidentStatus]] = {
    ResidentStatus.ACTIVE: frozenset({ResidentStatus.MOVED_OUT, ResidentStatus.DECEASED}),
    ResidentStatus.MOVED_OUT: frozenset({ResidentStatus.ACTIVE, ResidentStatus.DECEASED}),
    ResidentStatus.DECEASED: frozenset(),
}


@dataclass(frozen=True)
class PopulationGroup:
    """服务人群 (family-doctor spec §1.2). `derived` groups come from age and are never stored.
    `permission`: a DATA-05 special category (严重精神障碍, 肺结核), shown only to staff holding that
    category permission (granted per person, `app.core.auth.GRANTABLE_PERMISSIONS`); the one place
    that maps a group to its permission."""

    code: str
    label: str
    derived: bool = False
    permission: str | None = None
    sex: str | None = None

    @property
    def special(self) -> bool:
        return self.permission is not None


GENERAL = "general"
ELDERLY_65 = "elderly_65"
CHILD_0_6 = "child_0_6"
POPULATION_GROUPS: tuple[PopulationGroup, ...] = (
    PopulationGroup(GENERAL, "普通人群", derived=True),
    PopulationGroup(ELDERLY_65, "65岁及以上老年人", derived=True),
    PopulationGroup(CHILD_0_6, "0-6岁儿童", derived=True),
    PopulationGroup("maternal", "孕产妇", sex="female"),
    PopulationGroup("hypertension", "高血压"),
    PopulationGroup("diabetes_t2", "2型糖尿病"),
    PopulationGroup("severe_mental_disorder", "严重精神障碍", permission="health:smd"),
    PopulationGroup("tuberculosis", "肺结核", permission="health:tb"),
    PopulationGroup("disabled", "残疾人"),
    PopulationGroup("copd", "慢性阻塞性肺疾病"),
    PopulationGroup("family_planning_special", "计划生育特殊家庭"),
    PopulationGroup("low_income", "城乡低保/特困人员"),
    PopulationGroup("entitled_groups", "重点优抚对象"),
)
GROUPS: dict[str, PopulationGroup] = {g.code: g for g in POPULATION_GROUPS}
STORED_GROUP_CODES: tuple[str, ...] = tuple(g.code for g in POPULATION_GROUPS if not g.derived)
# DATA-05: special group code -> the category permission that shows it.
SPECIAL_GROUP_PERMISSIONS: dict[str, str] = {
    g.code: g.permission for g in POPULATION_GROUPS if g.permission is not None
}
SPECIAL_GROUP_CODES: frozenset[str] = frozenset(SPECIAL_GROUP_PERMISSIONS)

# 与户主关系 (after GB/T 4761 家庭关系代码, grouped).
HEAD = "head"
HOUSEHOLD_RELATIONSHIPS: dict[str, str] = {
    HEAD: "户主",
    "spouse": "配偶",
    "child": "子女",
    "child_in_law": "儿媳/女婿",
    "grandchild": "孙子女/外孙子女",
    "parent": "父母",
    "parent_in_law": "公婆/岳父母",
    "grandparent": "祖父母/外祖父母",
    "sibling": "兄弟姐妹",
    "other_relative": "其他亲属",
    "non_relative": "非亲属",
}
# 监护关系 (民法典 Art. 27-28: minors, and adults without full capacity).
GUARDIAN_RELATIONSHIPS: dict[str, str] = {
    "father": "父亲",
    "mother": "母亲",
    "grandparent": "祖父母/外祖父母",
    "sibling": "兄/姐",
    "spouse": "配偶",
    "child": "成年子女",
    "other_relative": "其他近亲属",
    "appointed": "其他依法指定的监护人",
}
ADULT_AGE = 18
GUARDIAN_CONSENT_AGE = 14  # PIPL Art. 31: under 14, a guardian consents


class LegalBasis(StrEnum):
    SEPARATE_CONSENT = "separate_consent"
    CONSENT = "consent"
    STATUTORY_DUTY = "statutory_duty"

    @property
    def label(self) -> str:
        return LEGAL_BASIS_LABELS[self]


LEGAL_BASIS_LABELS: dict[LegalBasis, str] = {
    LegalBasis.SEPARATE_CONSENT: "单独同意（个人信息保护法第二十九条）",
    LegalBasis.CONSENT: "个人同意（个人信息保护法第十三条第一款第一项）",
    LegalBasis.STATUTORY_DUTY: "履行法定职责（个人信息保护法第十三条第一款第三项）",
}


@dataclass(frozen=True)
class ConsentPurpose:
    code: str
    label: str
    legal_basis: LegalBasis

    @property
    def needs_consent(self) -> bool:
        return self.legal_basis is not LegalBasis.STATUTORY_DUTY


CONSENT_PURPOSES: dict[str, ConsentPurpose] = {
    p.code: p
    for p in (
        ConsentPurpose("regional_platform_sharing", "区域平台数据共享", LegalBasis.SEPARATE_CONSENT),
        ConsentPurpose("online_services", "线上服务", LegalBasis.SEPARATE_CONSENT),
        ConsentPurpose("sms_notifications", "短信通知", LegalBasis.CONSENT),
        ConsentPurpose("basic_public_health", "基本公共卫生服务", LegalBasis.STATUTORY_DUTY),
    )
}
CONSENT_GRANTORS: dict[str, str] = {"self": "本人", "guardian": "监护人"}
CONSENT_CHANNELS: dict[str, str] = {
    "desk": "窗口",
    "tablet": "平板（上门）",
    "paper": "纸质知情同意书",
    "miniprogram": "微信小程序",
    "partner_app": "健康罗湖APP",
}
STAFF_CONSENT_CHANNELS: tuple[str, ...] = ("desk", "tablet", "paper")


CHANGE_ACTION_LABELS: dict[str, str] = {
    "created": "建档",
    "updated": "修改信息",
    "status_changed": "状态变更",
    "transferred": "管理机构变更",
    "guardian_set": "设置监护人",
    "guardian_removed": "解除监护人",
    "household_joined": "加入家庭",
    "household_left": "离开家庭",
    "household_relationship_changed": "变更家庭关系",
    "consent_granted": "同意授权",
    "consent_revoked": "撤回同意",
}
