"""ID numbers, derived sex and birth date, pinyin initials and ages (pure functions, no database)."""

from __future__ import annotations

from datetime import date

import pytest
from stdnum.cn import ric

from app.residents.models import IdentityError, IdType, name_initials, parse_identity, years_between
from tests.factories_residents import random_id_number

TODAY = date(2025, 6, 1)


def _with_check(body17: str) -> str:
    return body17 + ric.calc_check_digit(body17 + "0")


def test_a_valid_id_card_gives_sex_and_birth_date() -> None:
    male = _with_check("44030319800615123")  # sequence 123: odd -> male
    female = _with_check("44030319921231002")
    assert parse_identity("resident_id_card", male, today=TODAY) == (
        parse_identity(IdType.RESIDENT_ID_CARD, male, today=TODAY)
    )
    identity = parse_identity("resident_id_card", male, today=TODAY)
    assert (identity.sex, identity.birth_date, identity.id_number) == ("male", date(1980, 6, 15), male)
    assert parse_identity("resident_id_card", female, today=TODAY).sex == "female"
    assert parse_identity("resident_id_card", female, today=TODAY).birth_date == date(1992, 12, 31)


def test_a_lower_case_x_and_spaces_are_normalised() -> None:
    number = next(n for n in (random_id_number() for _ in range(500)) if n.endswith("X"))
    messy = f" {number[:6]} {number[6:14]} {number[14:-1]}x "
    assert parse_identity("resident_id_card", messy, today=TODAY).id_number == number


@pytest.mark.parametrize(
    ("number", "fragment"),
    [
        ("4403031980061512", "应为 18 位"),
        ("44030319800615123A", "格式不正确"),
        ("4403031980061512X0", "格式不正确"),
    ],
)
def test_malformed_numbers_are_refused(number: str, fragment: str) -> None:
    with pytest.raises(IdentityError) as refused:
        parse_identity("resident_id_card", number, today=TODAY)
    assert refused.value.field == "id_number"
    assert fragment in refused.value.message


def test_a_wrong_check_digit_is_refused_in_chinese() -> None:
    good = _with_check("44030319800615123")
    bad = good[:-1] + ("0" if good[-1] != "0" else "1")
    with pytest.raises(IdentityError) as refused:
        parse_identity("resident_id_card", bad, today=TODAY)
    assert refused.value.message == "身份证号码校验位不正确，请核对后重新输入"


def test_a_transposition_is_caught_by_the_checksum() -> None:
    good = _with_check("44030319800615123")
    swapped = good[:14] + good[15] + good[14] + good[16:]
    assert swapped != good
    with pytest.raises(IdentityError, match="校验位"):
        parse_identity("resident_id_card", swapped, today=TODAY)


@pytest.mark.parametrize("birth", ["19801301", "19800230", "20300101", "18800101"])
def test_an_impossible_or_future_birth_date_is_refused(birth: str) -> None:
    with pytest.raises(IdentityError, match="出生日期无效"):
        parse_identity("resident_id_card", _with_check(f"440303{birth}123"), today=TODAY)


def test_an_unknown_province_is_refused() -> None:
    with pytest.raises(IdentityError, match="地区码无效"):
        parse_identity("resident_id_card", _with_check("99030319800615123"), today=TODAY)


def test_elderly_residents_born_before_their_county_code_existed_are_accepted() -> None:
    """440303 (罗湖区) dates from 1983; people born earlier got it at registration. stdnum's full
    `validate` refuses them (it checks the county against the birth year); we must not."""
    number = _with_check("44030319500101123")
    assert not ric.is_valid(number)
    identity = parse_identity("resident_id_card", number, today=TODAY)
    assert identity.birth_date == date(1950, 1, 1)


def test_a_residence_permit_number_needs_its_own_id_type() -> None:
    permit = _with_check("81000019900101002")
    with pytest.raises(IdentityError, match="港澳台居民居住证"):
        parse_identity("resident_id_card", permit, today=TODAY)
    identity = parse_identity("hmt_residence_permit", permit, today=TODAY)
    assert (identity.sex, identity.birth_date) == ("female", date(1990, 1, 1))
    with pytest.raises(IdentityError, match="810000"):
        parse_identity("hmt_residence_permit", _with_check("44030319900101002"), today=TODAY)


def test_a_given_sex_or_birth_date_must_agree_with_the_id_card() -> None:
    number = _with_check("44030319800615123")
    with pytest.raises(IdentityError) as refused:
        parse_identity("resident_id_card", number, sex="female", today=TODAY)
    assert refused.value.field == "sex"
    with pytest.raises(IdentityError) as refused:
        parse_identity("resident_id_card", number, birth_date=date(1980, 6, 16), today=TODAY)
    assert refused.value.field == "birth_date"
    assert parse_identity("resident_id_card", number, sex="male", birth_date=date(1980, 6, 15), today=TODAY)


def test_other_id_types_need_sex_and_birth_date_explicitly() -> None:
    with pytest.raises(IdentityError) as refused:
        parse_identity("passport", "E12345678", today=TODAY)
    assert refused.value.field == "sex"
    with pytest.raises(IdentityError) as refused:
        parse_identity("passport", "E12345678", sex="female", today=TODAY)
    assert refused.value.field == "birth_date"
    identity = parse_identity(
        "passport", "e1234 5678", sex="female", birth_date=date(1990, 2, 3), today=TODAY
    )
    assert (identity.id_number, identity.sex, identity.birth_date) == (
        "E12345678",
        "female",
        date(1990, 2, 3),
    )


@pytest.mark.parametrize(
    ("id_type", "good", "bad"),
    [
        ("hk_macao_permit", "H12345678", "X12345678"),
        ("taiwan_permit", "12345678", "1234567"),
        ("passport", "G1234567", "G1"),
        ("foreign_permanent_residence", "USA440303123456", "US4403031234567"),
        ("other", "ABC-1234", "A!"),
    ],
)
def test_formats_of_other_id_types(id_type: str, good: str, bad: str) -> None:
    assert (
        parse_identity(id_type, good, sex="male", birth_date=date(1980, 1, 1), today=TODAY).id_number == good
    )
    with pytest.raises(IdentityError) as refused:
        parse_identity(id_type, bad, sex="male", birth_date=date(1980, 1, 1), today=TODAY)
    assert refused.value.field == "id_number"


def test_random_factory_numbers_are_valid() -> None:
    for _ in range(200):
        number = random_id_number()
        assert parse_identity("resident_id_card", number, today=date.today()).id_number == number
    assert parse_identity("resident_id_card", random_id_number(sex="female"), today=TODAY).sex == "female"
    assert parse_identity("resident_id_card", random_id_number(sex="male"), today=TODAY).sex == "male"


@pytest.mark.parametrize(
    ("name", "initials"),
    [
        ("张三丰", "zsf"),
        ("欧阳娜娜", "oynn"),
        ("曾小明", "zxm cxm"),
        ("单田芳", "stf dtf"),
        ("John Smith", "js"),
        ("阿依古丽·买买提", "ayglmmt"),
    ],
)
def test_pinyin_initials(name: str, initials: str) -> None:
    assert name_initials(name) == initials


def test_ages_count_full_years_and_leap_day_birthdays() -> None:
    assert years_between(date(1960, 6, 2), date(2025, 6, 1)) == 64
    assert years_between(date(1960, 6, 1), date(2025, 6, 1)) == 65
    assert years_between(date(2000, 2, 29), date(2025, 2, 28)) == 24
    assert years_between(date(2000, 2, 29), date(2025, 3, 1)) == 25
    assert years_between(date(2000, 2, 29), date(2024, 2, 29)) == 24
