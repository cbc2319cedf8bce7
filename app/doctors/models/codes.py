"""Code lists and identifiers of the registry: 职称, 执业范围, certificates, licence numbers,
the 医保医师编码, and the pinyin search keys of names."""

from __future__ import annotations

import re
from enum import StrEnum

from pypinyin import Style, lazy_pinyin, pinyin

# --- code lists ---------------------------------------------------------------------------------


class Sex(StrEnum):
    MALE = "male"
    FEMALE = "female"


SEX_LABELS: dict[str, str] = {Sex.MALE: "男", Sex.FEMALE: "女"}

# 职称 (professional titles) by series. The series decides the licence-number pattern and which
# team roles the person may take (a 社区护士 needs a nursing title, a 全科医生 a physician title).
TITLE_SERIES: dict[str, tuple[str, ...]] = {
    "physician": (
        "主任医师",
        "副主任医师",
        "主治医师",
        "医师",
        "医士",
        "主任中医师",
        "副主任中医师",
        "主治中医师",
        "中医师",
        "中医士",
    ),
    "nursing": ("主任护师", "副主任护师", "主管护师", "护师", "护士"),
    "pharmacy": ("主任药师", "副主任药师", "主管药师", "药师", "药士"),
    "technician": ("主任技师", "副主任技师", "主管技师", "技师", "技士"),
    "other": ("无职称",),
}
TITLES: tuple[str, ...] = tuple(t for series in TITLE_SERIES.values() for t in series)
_SERIES_OF: dict[str, str] = {t: s for s, titles in TITLE_SERIES.items() for t in titles}

# 执业范围: the physician scopes of 卫医发〔2001〕169号 used in primary care, plus the nursing and
# pharmacy "scopes" so that every team member fits one list.
PRACTICE_SCOPES: tuple[str, ...] = (
    "全科医学专业",
    "内科专业",
    "外科专业",
    "妇产科专业",
    "儿科专业",
    "眼耳鼻咽喉科专业",
    "皮肤病与性病专业",
    "精神卫生专业",
    "康复医学专业",
    "急救医学专业",
    "医学影像和放射治疗专业",
    "医学检验、病理专业",
    "预防保健专业",
    "公共卫生类别专业",
    "口腔专业",
    "中医专业",
    "中西医结合专业",
    "护理",
    "药学",
    "其他",
)

QUALIFICATION_TYPES: tuple[str, ...] = (
    "医师资格证书",
    "医师执业证书",
    "护士执业证书",
    "执业药师注册证",
    "专业技术资格证书",
    "全科医生转岗培训合格证书",
    "住院医师规范化培训合格证书",
    "健康管理师证书",
    "其他",
)

# 执业证书编号. 医师执业证书编码 are 15 digits; 护士执业证书编号 are 12 digits on the older
# certificates and 15 on the newer ones (memory — verify against 国家卫健委 rules). Other series
# (pharmacists, technicians, health managers) carry certificates of various shapes: 6–30 letters
# or digits, and the number is optional for them.
LICENCE_PATTERNS: dict[str, re.Pattern[str]] = {
    "physician": re.compile(r"\d{15}"),
    "nursing": re.compile(r"\d{12}|\d{15}"),
}
OTHER_LICENCE = re.compile(r"[0-9A-Za-z-]{6,30}")
LICENCE_REQUIRED_SERIES = frozenset({"physician", "nursing"})


def title_series(title: str) -> str:
    return _SERIES_OF.get(title, "other")


def licence_problem(title: str, number: str | None) -> str | None:
    """A Chinese message when the licence number does not fit the title's series, else None."""
    series = title_series(title)
    if not number:
        return "此职称须填写执业证书编号" if series in LICENCE_REQUIRED_SERIES else None
    if series == "physician" and not LICENCE_PATTERNS["physician"].fullmatch(number):
        return "医师执业证书编号须为 15 位数字"
    if series == "nursing" and not LICENCE_PATTERNS["nursing"].fullmatch(number):
        return "护士执业证书编号须为 12 位或 15 位数字"
    if series not in LICENCE_PATTERNS and not OTHER_LICENCE.fullmatch(number):
        return "证书编号须为 6-30 位字母或数字"
    return None


# 医保医师编码 (医保发〔2019〕39号): "D" + 6-digit administrative division + 6-digit sequence.
MI_CODE = re.compile(r"D(\d{6})(\d{6})")
LUOHU_DIVISION = "440303"
# First two digits of a real 行政区划代码 (provinces, autonomous regions, municipalities, HK/MO/TW).
_PROVINCES = frozenset(
    {
        "11",
        "12",
        "13",
        "14",
        "15",
        "21",
        "22",
        "23",
        "31",
        "32",
        "33",
        "34",
        "35",
        "36",
        "37",
        "41",
        "42",
        "43",
        "44",
        "45",
        "46",
        "50",
        "51",
        "52",
        "53",
        "54",
        "61",
        "62",
        "63",
        "64",
        "65",
        "71",
        "81",
        "82",
    }
)


def mi_code_problem(code: str | None) -> str | None:
    """None when `code` is a well-formed 医保医师编码, else a Chinese message."""
    if not code:
        return "缺少医保医师编码"
    match = MI_CODE.fullmatch(code)
    if match is None:
        return "医保医师编码须为 D + 6 位行政区划代码 + 6 位顺序号，共 13 位（如 D440303000123）"
    if match.group(1)[:2] not in _PROVINCES:
        return "医保医师编码中的行政区划代码不正确"
    if match.group(2) == "000000":
        return "医保医师编码的顺序号不能为 000000"
    return None


def is_valid_mi_code(code: str | None) -> bool:
    return mi_code_problem(code) is None


# --- pinyin -------------------------------------------------------------------------------------


# Surnames whose reading differs from the character's common one (pypinyin knows no surnames).
SURNAME_READINGS: dict[str, str] = {
    "曾": "zeng",
    "单": "shan",
    "解": "xie",
    "区": "ou",
    "仇": "qiu",
    "朴": "piao",
    "查": "zha",
    "盖": "ge",
    "覃": "qin",
    "缪": "miao",
    "翟": "zhai",
    "乐": "yue",
    "尉": "yu",
    "召": "shao",
    "种": "chong",
    "员": "yun",
}


def name_search_keys(name: str) -> tuple[str, str]:
    """(initials, full pinyin) of a name, each as space-wrapped variants: " zs cs ".

    Every reading of the surname counts (曾 zeng/ceng, 单 shan/dan): residents type what they
    say. The first variant is the usual reading (surname table, else pypinyin's phrase-aware
    reading), so ordering by the column orders by it. The given name uses pypinyin's reading.
    """
    text = re.sub(r"\s+", "", name)
    if not text:
        return " ", " "
    rest = lazy_pinyin(text[1:], style=Style.NORMAL, errors="ignore")
    common = lazy_pinyin(text[0], style=Style.NORMAL, errors="ignore") or [""]
    usual = SURNAME_READINGS.get(text[0]) or common[0]
    readings = [usual] + [r for r in pinyin(text[0], style=Style.NORMAL, heteronym=True)[0][:4] if r != usual]
    full = ["".join([first, *rest]) for first in readings]
    initials = ["".join(p[:1] for p in [first, *rest]) for first in readings]
    return _variants(initials), _variants(full)


def _variants(values: list[str]) -> str:
    cleaned = [re.sub(r"[^a-z]", "", v.lower()) for v in values]
    unique = list(dict.fromkeys(v for v in cleaned if v))
    return " " + " ".join(unique) + " "
