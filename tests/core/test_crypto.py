"""Field encryption, blind indexes, key rotation and masking (app/core/crypto.py; DATA-01, DATA-02)."""

from __future__ import annotations

import base64
import os
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import Text, select, text, type_coerce

from app.accounts.models import StaffUser
from app.core import crypto
from app.core.auth import Role
from app.core.crypto import CryptoError, Keyring
from app.core.db import commit, db
from tests.factories import make_centre, make_staff

MOBILE = re.compile(r"1[3-9]\d{9}")
# Random identifiers and HMAC digests are hex: they can contain 11 digits in a row by chance and say
# nothing about a person. Every other column value is checked with the regex.
_RANDOM_HEX = re.compile(r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}|[0-9a-f]{64}")


def _key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


@pytest.fixture
def restore_keyring() -> Iterator[Keyring]:
    """Tests below install other keyrings; the process-wide one is put back afterwards."""
    original = crypto.keyring()
    try:
        yield original
    finally:
        crypto.configure(original)


def _ring(active: str, **keys: str) -> Keyring:
    return Keyring.from_settings(
        ",".join(f"{k}:{v}" for k, v in keys.items()), active, "a-blind-index-key-for-the-tests"
    )


def _raw_phone(user_id: uuid.UUID) -> str:
    """The stored column value, bypassing the decrypting type."""
    table = StaffUser.__table__
    value = db.session.execute(
        select(type_coerce(table.c.phone, Text)).where(table.c.id == user_id)
    ).scalar_one()
    assert isinstance(value, str)
    return value


# --- the keyring on its own ---------------------------------------------------------------------


def test_roundtrip_and_key_id_in_ciphertext() -> None:
    ring = _ring("k1", k1=_key())
    sealed = ring.encrypt("13812341234", "staff.phone")
    assert sealed.startswith("v1:k1:")
    assert Keyring.key_id_of(sealed) == "k1"
    assert "13812341234" not in sealed
    assert ring.decrypt(sealed, "staff.phone") == "13812341234"


def test_same_plaintext_encrypts_differently_each_time() -> None:
    ring = _ring("k1", k1=_key())
    first, second = (
        ring.encrypt("广东省深圳市罗湖区", "resident.address"),
        ring.encrypt("广东省深圳市罗湖区", "resident.address"),
    )
    assert first != second  # random nonce: equal values are not linkable by their ciphertext
    assert ring.decrypt(first, "resident.address") == ring.decrypt(second, "resident.address")


def test_ciphertext_of_one_column_does_not_decrypt_in_another() -> None:
    ring = _ring("k1", k1=_key())
    sealed = ring.encrypt("13812341234", "staff.phone")
    with pytest.raises(CryptoError, match="authentication"):
        ring.decrypt(sealed, "resident.phone")


@pytest.mark.parametrize("position", [8, 20, -1])
def test_tampered_ciphertext_fails(position: int) -> None:
    ring = _ring("k1", k1=_key())
    sealed = ring.encrypt("11010519491231002X", "resident.id_number")
    prefix, key_id, token = sealed.split(":", 2)
    blob = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    blob[position] ^= 0x01  # one bit in the nonce, the ciphertext or the tag
    forged = f"{prefix}:{key_id}:" + base64.urlsafe_b64encode(bytes(blob)).decode().rstrip("=")
    with pytest.raises(CryptoError):
        ring.decrypt(forged, "resident.id_number")


def test_ciphertext_under_another_key_with_the_same_id_fails() -> None:
    sealed = _ring("k1", k1=_key()).encrypt("13812341234", "staff.phone")
    with pytest.raises(CryptoError):
        _ring("k1", k1=_key()).decrypt(sealed, "staff.phone")


@pytest.mark.parametrize("value", ["13812341234", "v2:k1:abc", "v1:unknown:abc"])
def test_not_a_ciphertext_or_unknown_key_is_refused(value: str) -> None:
    with pytest.raises(CryptoError):
        _ring("k1", k1=_key()).decrypt(value, "staff.phone")


@pytest.mark.parametrize("cut", [1, 10, 30])
def test_truncated_ciphertext_is_a_crypto_error(cut: int) -> None:
    """A damaged column value fails with CryptoError (not a stray ValueError from base64/AESGCM)."""
    ring = _ring("k1", k1=_key())
    sealed = ring.encrypt("13812341234", "staff.phone")
    prefix, key_id, token = sealed.split(":", 2)
    with pytest.raises(CryptoError):
        ring.decrypt(f"{prefix}:{key_id}:{token[:cut]}", "staff.phone")


@pytest.mark.parametrize(
    ("keys", "active", "blind", "message"),
    [
        ("", "", "a-blind-index-key-for-the-tests", "empty"),
        ("k1:" + base64.b64encode(b"short").decode(), "", "a-blind-index-key-for-the-tests", "32 bytes"),
        ("bad id!:" + base64.b64encode(b"x" * 32).decode(), "", "a-blind-index-key-for-the-tests", "key id"),
        ("k1:" + base64.b64encode(b"x" * 32).decode(), "k9", "a-blind-index-key-for-the-tests", "active"),
        ("k1:" + base64.b64encode(b"x" * 32).decode(), "", "short", "BLIND_INDEX_KEY"),
    ],
)
def test_bad_key_settings_are_refused(keys: str, active: str, blind: str, message: str) -> None:
    with pytest.raises(CryptoError, match=message):
        Keyring.from_settings(keys, active, blind)


def test_active_key_defaults_to_the_last_listed() -> None:
    ring = Keyring.from_settings(f"old:{_key()},new:{_key()}", "", "a-blind-index-key-for-the-tests")
    assert ring.active_key_id == "new"
    assert ring.encrypt("x", "c").startswith("v1:new:")


# --- blind index --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "variant",
    [
        "13812341234",
        "+8613812341234",
        "+86 138 1234 1234",
        "0086 13812341234",
        "138-1234-1234",
        " 138 1234 1234 ",
    ],
)
def test_phone_blind_index_normalises(variant: str) -> None:
    ring = _ring("k1", k1=_key())
    assert ring.blind_index(variant, "phone") == ring.blind_index("13812341234", "phone")


@pytest.mark.parametrize("variant", ["11010519491231002x", "110105 19491231 002X", " 11010519491231002X"])
def test_id_number_blind_index_upper_cases_x_and_strips_spaces(variant: str) -> None:
    ring = _ring("k1", k1=_key())
    assert ring.blind_index(variant, "id_number") == ring.blind_index("11010519491231002X", "id_number")


def test_blind_index_is_keyed_and_domain_separated() -> None:
    ring = _ring("k1", k1=_key())
    digest = ring.blind_index("13812341234", "phone")
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert digest != ring.blind_index("13812341235", "phone")
    # The same digits as another kind of value give another index.
    assert digest != ring.blind_index("13812341234", "id_number")
    # Another blind-index key gives another index: the index cannot be computed without the key.
    other = Keyring.from_settings(f"k1:{_key()}", "", "another-blind-index-key-123")
    assert digest != other.blind_index("13812341234", "phone")
    # The field keys play no part: rotating them keeps every index valid.
    assert digest == Keyring(dict(ring.keys, k2=os.urandom(32)), "k2", ring.blind_index_key).blind_index(
        "13812341234", "phone"
    )


def test_module_blind_index_ignores_empty_values() -> None:
    assert crypto.blind_index(None, "phone") is None
    assert crypto.blind_index("", "phone") is None
    assert crypto.blind_index("13812341234", "phone") == crypto.keyring().blind_index("13812341234", "phone")


# --- in the database (DATA-01) -------------------------------------------------------------------


def test_no_plain_phone_in_the_stored_row(app: Flask) -> None:
    phone = "13712345678"
    user = make_staff(Role.DOCTOR, make_centre(), phone=phone)
    row = (
        db.session.execute(text("SELECT * FROM staff_users WHERE username = :u"), {"u": user.username})
        .mappings()
        .one()
    )
    for column, value in row.items():
        if value is None:
            continue
        shown = str(value)
        assert phone not in shown, column
        if not _RANDOM_HEX.fullmatch(shown.replace("-", "") if column.endswith("id") else shown):
            assert not MOBILE.search(shown), f"{column} holds something shaped like a mobile number"
    assert str(row["phone"]).startswith(f"v1:{crypto.keyring().active_key_id}:")
    assert row["phone_bidx"] == crypto.blind_index(phone, "phone")


def test_lookup_by_blind_index_returns_the_user() -> None:
    centre = make_centre()
    user = make_staff(Role.NURSE, centre, phone="13712345679")
    make_staff(Role.NURSE, centre, phone="13712345670")
    found = (
        db.session.execute(
            select(StaffUser).where(StaffUser.phone_bidx == crypto.blind_index("+86 137 1234 5679", "phone"))
        )
        .scalars()
        .all()
    )
    assert [u.id for u in found] == [user.id]
    assert found[0].phone == "13712345679"


def test_changing_the_phone_updates_the_blind_index() -> None:
    user = make_staff(Role.NURSE, make_centre(), phone="13712345671")
    user.phone = "13712345672"
    commit()
    assert user.phone_bidx == crypto.blind_index("13712345672", "phone")
    user.phone = None
    commit()
    assert user.phone_bidx is None
    assert (
        db.session.execute(
            select(type_coerce(StaffUser.__table__.c.phone, Text)).where(StaffUser.__table__.c.id == user.id)
        ).scalar_one()
        is None
    )


def test_api_search_by_phone_uses_the_blind_index_and_masks(api_as: Any) -> None:
    centre = make_centre()
    admin = make_staff(Role.CENTRE_ADMIN, centre)
    target = make_staff(Role.DOCTOR, centre, phone="13712345673")
    response = api_as(admin).get("/api/v1/staff", query_string={"q": "+8613712345673"})
    assert response.status_code == 200, response.json
    assert [item["id"] for item in response.json["items"]] == [str(target.id)]
    assert response.json["items"][0]["phone"] == "137****5673"
    assert "13712345673" not in response.get_data(as_text=True)


def test_key_rotation(app: Flask, restore_keyring: Keyring) -> None:
    """k1 active -> rows under k1; k1+k2 with k2 active -> old rows read, new rows under k2, lookups
    work; `flask rotate-field-keys` moves every row to k2, after which k1 can be retired."""
    k1, k2 = _key(), _key()
    blind = restore_keyring.blind_index_key.decode()
    crypto.configure(Keyring.from_settings(f"k1:{k1}", "k1", blind))
    centre = make_centre()
    old_users = [make_staff(Role.DOCTOR, centre, phone=f"1360000000{n}") for n in range(3)]
    assert {Keyring.key_id_of(_raw_phone(u.id)) for u in old_users} == {"k1"}

    crypto.configure(Keyring.from_settings(f"k1:{k1},k2:{k2}", "k2", blind))
    db.session.expire_all()  # read back from the database under the new keyring
    assert [u.phone for u in old_users] == [f"1360000000{n}" for n in range(3)]
    new_user = make_staff(Role.DOCTOR, centre, phone="13600000009")
    assert Keyring.key_id_of(_raw_phone(new_user.id)) == "k2"
    assert Keyring.key_id_of(_raw_phone(old_users[0].id)) == "k1"
    for user, phone in [(old_users[1], "+86 136 0000 0001"), (new_user, "13600000009")]:
        found = db.session.execute(
            select(StaffUser.id).where(StaffUser.phone_bidx == crypto.blind_index(phone, "phone"))
        ).scalar_one()
        assert found == user.id

    before = {u.id: _raw_phone(u.id) for u in [*old_users, new_user]}
    result = app.test_cli_runner().invoke(args=["rotate-field-keys", "--batch", "2"])
    assert result.exit_code == 0, result.output
    assert re.search(r"re-encrypted (\d+) values under key k2", result.output)
    assert int(re.search(r"re-encrypted (\d+)", result.output).group(1)) >= 3  # type: ignore[union-attr]
    after = {uid: _raw_phone(uid) for uid in before}
    assert {Keyring.key_id_of(v) for v in after.values()} == {"k2"}
    assert after[new_user.id] == before[new_user.id]  # already under k2: left alone
    for user in old_users:
        assert after[user.id] != before[user.id]
    raw_ids = (
        db.session.execute(
            select(type_coerce(StaffUser.__table__.c.phone, Text)).where(
                StaffUser.__table__.c.phone.isnot(None)
            )
        )
        .scalars()
        .all()
    )
    assert {Keyring.key_id_of(v) for v in raw_ids} == {"k2"}

    # k1 retired: everything still decrypts, and lookups still work.
    crypto.configure(Keyring.from_settings(f"k2:{k2}", "k2", blind))
    db.session.expire_all()
    assert sorted(u.phone for u in [*old_users, new_user]) == sorted(
        [f"1360000000{n}" for n in range(3)] + ["13600000009"]
    )
    assert (
        db.session.execute(
            select(StaffUser.id).where(StaffUser.phone_bidx == crypto.blind_index("13600000002", "phone"))
        ).scalar_one()
        == old_users[2].id
    )


def test_reading_a_row_whose_key_was_removed_fails_loudly(restore_keyring: Keyring) -> None:
    k1 = _key()
    blind = restore_keyring.blind_index_key.decode()
    crypto.configure(Keyring.from_settings(f"k1:{k1}", "k1", blind))
    user = make_staff(Role.DOCTOR, make_centre(), phone="13600000011")
    crypto.configure(Keyring.from_settings(f"k2:{_key()}", "k2", blind))
    db.session.expire_all()
    with pytest.raises(CryptoError):
        _ = db.session.get_one(StaffUser, user.id).phone
    db.session.rollback()


# --- masking (DATA-02) ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("11010519491231002X", "**************002X"),
        ("110105491231002", "***********1002"),
        (None, None),
        ("", ""),
    ],
)
def test_mask_id_number_keeps_last_four(value: str | None, masked: str | None) -> None:
    assert crypto.mask_id_number(value) == masked


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("13812341234", "138****1234"),
        ("+86 138 1234 1234", "138****1234"),
        ("138-1234-1234", "138****1234"),
        ("0755-12345678", "********5678"),
        (None, None),
    ],
)
def test_mask_phone(value: str | None, masked: str | None) -> None:
    assert crypto.mask_phone(value) == masked


@pytest.mark.parametrize(
    ("value", "masked"),
    [("张三", "张*"), ("欧阳娜娜", "欧***"), ("李小明", "李**"), (None, None)],
)
def test_mask_name_keeps_first_character(value: str | None, masked: str | None) -> None:
    assert crypto.mask_name(value) == masked


def test_mask_address_keeps_district_level_only() -> None:
    address = "深圳市罗湖区桂园街道老围社区人民北路1号3栋501"
    masked = crypto.mask_address(address)
    assert masked is not None
    assert masked.startswith("深圳市罗湖区")
    assert masked[6:] == "*" * (len(address) - 6)
    assert "501" not in masked
    assert crypto.mask_address("罗湖区1号") == "罗****"  # short: at least four characters hidden
    assert crypto.mask_address(None) is None


def test_masked_values_do_not_look_like_numbers() -> None:
    for masked in (crypto.mask_phone("13812341234"), crypto.mask_id_number("11010519491231002X")):
        assert masked is not None
        assert not MOBILE.search(masked)
        assert not re.search(r"\d{17}[\dXx]", masked)
