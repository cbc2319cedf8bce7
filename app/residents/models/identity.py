"""Identity rules (pure functions, shared by schemas, services and factories): ID numbers per
ID type with the GB 11643 checksum, derived sex and birth date, full-year ages, pinyin initials."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from pypinyin import Style, lazy_pinyin
from stdnum.cn import ric
from stdnum.exceptions import ValidationError as StdnumError

from app.core import clock
from app.residents.models.codes import DERIVING_ID_TYPES, SEX_LABELS, IdType


class IdentityError(ValueError):
    """A bad ID number, sex or birth date; `field` names the request field at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Identity:
    id_type: IdType
    id_number: str
    sex: str
    birth_date: date


# The first two digits of a GB 11643 number: provinces, and 81/82/83 for HK/Macao/Taiwan permits.
_PROVINCES = frozenset(
    {"11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37", "41", "42"}
    | {"43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64", "65", "71"}
)
_HMT_PREFIXES = frozenset({"810000", "820000", "830000"})
_FORMATS: dict[IdType, tuple[re.Pattern[str], str]] = {
    IdType.HK_MACAO_PERMIT: (
        re.compile(r"[HM]\d{8}(\d{2})?"),
        "港澳居民来往内地通行证号码应为 H 或 M 加 8 位（或 10 位）数字",
    ),
    IdType.TAIWAN_PERMIT: (
        re.compile(r"\d{8}(\d{2})?"),
        "台湾居民来往大陆通行证号码应为 8 位（或 10 位）数字",
    ),
    IdType.PASSPORT: (re.compile(r"[A-Z0-9]{5,17}"), "护照号码应为 5-17 位字母或数字"),
    IdType.FOREIGN_PERMANENT_RESIDENCE: (
        re.compile(r"[A-Z]{3}\d{12}|9\d{16}[\dX]"),
        "外国人永久居留身份证号码应为 3 位字母加 12 位数字，或以 9 开头的 18 位号码",
    ),
    IdType.OTHER: (re.compile(r"[A-Z0-9-]{4,32}"), "证件号码应为 4-32 位字母、数字或 -"),
}
EARLIEST_BIRTH = date(1890, 1, 1)


def normalise_id_number(raw: str) -> str:
    """Spaces removed, letters upper-cased (the same normalisation as the blind index)."""
    return re.sub(r"\s+", "", raw).upper()


def _check_gb11643(number: str, *, label: str, today: date) -> tuple[str, date]:
    """The 18-character GB 11643 structure: region, birth date, sequence (odd = male), check digit.

    `stdnum.cn.ric.validate` is not used as a whole on purpose: it also refuses a number whose
    county code did not exist yet in the birth year, but codes were assigned at registration
    (1984 onwards), so it would refuse most residents born before their county existed (for
    Luohu, 440303, everyone born before 1983). We check the province, checksum and birth date.
    """
    if len(number) != 18:
        raise IdentityError("id_number", f"{label}号码应为 18 位")
    if not number[:17].isdigit() or not (number[17].isdigit() or number[17] == "X"):
        raise IdentityError("id_number", f"{label}号码格式不正确：前 17 位应为数字，末位为数字或 X")
    if number[17] != ric.calc_check_digit(number):
        raise IdentityError("id_number", f"{label}号码校验位不正确，请核对后重新输入")
    try:
        birth = ric.get_birth_date(number)
    except StdnumError:
        raise IdentityError("id_number", f"{label}号码中的出生日期无效") from None
    if birth > today or birth < EARLIEST_BIRTH:
        raise IdentityError("id_number", f"{label}号码中的出生日期无效")
    return ("male" if int(number[16]) % 2 else "female"), birth


def parse_identity(
    id_type: str,
    raw_number: str,
    *,
    sex: str | None = None,
    birth_date: date | None = None,
    today: date | None = None,
) -> Identity:
    """Validate an ID number for its type; derive sex and birth date where the number encodes them.

    For other ID types sex and birth date are required. A given sex or birth date that
    contradicts the number is refused (a typo in one of them is likely).
    """
    kind = IdType(id_type)
    today = today or clock.today_local()
    number = normalise_id_number(raw_number)
    if not number:
        raise IdentityError("id_number", "请填写证件号码")
    if kind in DERIVING_ID_TYPES:
        if kind is IdType.RESIDENT_ID_CARD:
            if number[:6] in _HMT_PREFIXES or number[:2] in {"81", "82", "83"}:
                message = "该号码是港澳台居民居住证号码，请将证件类型选为“港澳台居民居住证”"
                raise IdentityError("id_number", message)
            derived_sex, derived_birth = _check_gb11643(number, label="身份证", today=today)
            if number[:2] not in _PROVINCES:
                raise IdentityError("id_number", "身份证号码前 6 位地区码无效")
        else:
            derived_sex, derived_birth = _check_gb11643(number, label="居住证", today=today)
            if number[:6] not in _HMT_PREFIXES:
                raise IdentityError("id_number", "港澳台居民居住证号码应以 810000、820000 或 830000 开头")
        if sex is not None and sex != derived_sex:
            raise IdentityError("sex", f"性别与证件号码不一致（证件号码显示为{SEX_LABELS[derived_sex]}）")
        if birth_date is not None and birth_date != derived_birth:
            raise IdentityError("birth_date", "出生日期与证件号码不一致")
        return Identity(kind, number, derived_sex, derived_birth)
    pattern, message = _FORMATS[kind]
    if not pattern.fullmatch(number):
        raise IdentityError("id_number", message)
    if sex is None:
        raise IdentityError("sex", "该证件类型须填写性别")
    if birth_date is None:
        raise IdentityError("birth_date", "该证件类型须填写出生日期")
    if birth_date > today or birth_date < EARLIEST_BIRTH:
        raise IdentityError("birth_date", "出生日期无效")
    return Identity(kind, number, sex, birth_date)


def years_between(born: date, on: date) -> int:
    """Full years (周岁). Someone born on 29 February turns a year older on 1 March in common years."""
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


# Polyphonic characters read differently as surnames (曾 zēng, 单 shàn, 仇 qiú ...).
_SURNAME_INITIALS: dict[str, str] = {
    "曾": "z",
    "单": "s",
    "仇": "q",
    "覃": "q",
    "解": "x",
    "区": "o",
    "朴": "p",
    "查": "z",
    "盖": "g",
    "缪": "m",
    "翟": "z",
    "乐": "y",
    "尉": "y",
    "种": "c",
    "繁": "p",
    "员": "y",
    "秘": "b",
    "召": "s",
}


def _latin_initials(chunk: str) -> str:
    return "".join(word[0].lower() for word in re.findall(r"[A-Za-z]+", chunk))


def name_initials(name: str) -> str:
    """Pinyin initials for search: 张三丰 -> "zsf". Polyphonic surnames get both readings,
    surname reading first (曾小明 -> "zxm cxm"); Latin names give word initials (John Smith -> "js")."""
    letters = "".join(lazy_pinyin(name.strip(), style=Style.FIRST_LETTER, errors=_latin_initials)).lower()
    letters = re.sub(r"[^a-z]", "", letters)
    variants = [letters]
    surname = _SURNAME_INITIALS.get(name.strip()[:1])
    if surname and letters and letters[0] != surname:
        variants.insert(0, surname + letters[1:])
    return " ".join(variants)[:100]
