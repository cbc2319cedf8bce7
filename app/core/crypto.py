"""Personal-data protection: field encryption, blind indexes and masking (DATA-01, DATA-02).

Ciphertext format (text column): ``v1:<key id>:<base64url(nonce || ciphertext+tag)>``.
AES-256-GCM with a random 96-bit nonce; the column's *context* (e.g. ``staff.phone``) is bound as
associated data so a ciphertext copied into another column does not decrypt.

Keys come from settings (`FIELD_ENCRYPTION_KEYS`, `FIELD_ENCRYPTION_ACTIVE_KEY`). Rotation: add a
new key, make it active, run `flask rotate-field-keys`; old keys stay listed until no row uses them.

Blind index: HMAC-SHA256 over the *normalised* value under a separate key (`BLIND_INDEX_KEY`),
domain-separated by kind, for exact lookup only. Never index low-cardinality fields.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Text, TypeDecorator
from sqlalchemy.engine import Dialect

_PREFIX = "v1"
_NONCE_BYTES = 12
_TAG_BYTES = 16


class CryptoError(RuntimeError):
    pass


@dataclass(frozen=True)
class Keyring:
    keys: dict[str, bytes]
    active_key_id: str
    blind_index_key: bytes

    @classmethod
    def from_settings(cls, field_keys: str, active: str, blind_index_key: str) -> Keyring:
        keys: dict[str, bytes] = {}
        for item in filter(None, (part.strip() for part in field_keys.split(","))):
            key_id, sep, encoded = item.partition(":")
            if not sep or not re.fullmatch(r"[A-Za-z0-9_-]{1,16}", key_id):
                raise CryptoError(f"bad FIELD_ENCRYPTION_KEYS entry for key id {key_id!r}")
            raw = base64.b64decode(encoded)
            if len(raw) != 32:
                raise CryptoError(f"field key {key_id!r} must be 32 bytes (AES-256)")
            keys[key_id] = raw
        if not keys:
            raise CryptoError("FIELD_ENCRYPTION_KEYS is empty")
        active_id = active or list(keys)[-1]
        if active_id not in keys:
            raise CryptoError(f"active field key {active_id!r} is not in FIELD_ENCRYPTION_KEYS")
        if len(blind_index_key) < 16:
            raise CryptoError("BLIND_INDEX_KEY must be at least 16 characters")
        return cls(keys, active_id, blind_index_key.encode())

    def encrypt(self, plaintext: str, context: str) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = AESGCM(self.keys[self.active_key_id]).encrypt(nonce, plaintext.encode(), context.encode())
        token = base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")
        return f"{_PREFIX}:{self.active_key_id}:{token}"

    def decrypt(self, ciphertext: str, context: str) -> str:
        try:
            prefix, key_id, token = ciphertext.split(":", 2)
        except ValueError as exc:
            raise CryptoError("not a field ciphertext") from exc
        if prefix != _PREFIX or key_id not in self.keys:
            raise CryptoError(f"unknown ciphertext version or key id {key_id!r}")
        try:
            blob = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError) as exc:
            raise CryptoError("ciphertext is not valid base64url") from exc
        if len(blob) < _NONCE_BYTES + _TAG_BYTES:
            raise CryptoError("ciphertext is truncated")
        try:
            nonce, sealed = blob[:_NONCE_BYTES], blob[_NONCE_BYTES:]
            plain = AESGCM(self.keys[key_id]).decrypt(nonce, sealed, context.encode())
        except InvalidTag as exc:
            raise CryptoError("ciphertext failed authentication") from exc
        return plain.decode()

    @staticmethod
    def key_id_of(ciphertext: str) -> str:
        return ciphertext.split(":", 2)[1]

    def blind_index(self, value: str, kind: str) -> str:
        normalised = normalise(value, kind)
        message = f"{kind}\x00{normalised}".encode()
        return hmac.new(self.blind_index_key, message, hashlib.sha256).hexdigest()


_keyring: Keyring | None = None


def configure(keyring: Keyring) -> None:
    global _keyring
    _keyring = keyring


def keyring() -> Keyring:
    if _keyring is None:
        raise CryptoError("field encryption is not configured (create_app sets it up)")
    return _keyring


# --- normalisation for blind indexes ---------------------------------------------------------


def normalise(value: str, kind: str) -> str:
    text = re.sub(r"\s+", "", value)
    if kind == "id_number":
        return text.upper()
    if kind == "phone":
        text = re.sub(r"[-()]", "", text)
        if text.startswith("+86"):
            text = text[3:]
        elif text.startswith("0086"):
            text = text[4:]
        return text
    return text.lower()


def blind_index(value: str | None, kind: str) -> str | None:
    if value is None or value == "":
        return None
    return keyring().blind_index(value, kind)


# --- the column type ---------------------------------------------------------------------------


class EncryptedString(TypeDecorator[str]):
    """A string encrypted at rest. `context` names the column, e.g. ``"staff.phone"``."""

    impl = Text
    cache_ok = True

    def __init__(self, context: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.context = context

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return keyring().encrypt(value, self.context)

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return keyring().decrypt(value, self.context)

    def __repr__(self) -> str:
        return f"EncryptedString({self.context!r})"


# --- masking (DATA-02) -------------------------------------------------------------------------


def mask_id_number(value: str | None) -> str | None:
    """身份证号: only the last 4 characters are shown."""
    if not value:
        return value
    return "*" * max(len(value) - 4, 0) + value[-4:]


def mask_phone(value: str | None) -> str | None:
    """Mobile phone as 138****1234; other numbers keep only their last 4 digits."""
    if not value:
        return value
    digits = normalise(value, "phone")
    if re.fullmatch(r"1\d{10}", digits):
        return f"{digits[:3]}****{digits[-4:]}"
    return "*" * max(len(digits) - 4, 0) + digits[-4:]


def mask_name(value: str | None) -> str | None:
    """张三 -> 张*, 欧阳娜娜 -> 欧***: the first character only."""
    if not value:
        return value
    return value[0] + "*" * (len(value) - 1) if len(value) > 1 else value


def mask_address(value: str | None) -> str | None:
    """Keep the first 6 characters (district and street level), hide the rest."""
    if not value:
        return value
    keep = min(6, max(len(value) - 4, 0))
    return value[:keep] + "*" * (len(value) - keep)


MASKERS = {
    "id_number": mask_id_number,
    "phone": mask_phone,
    "name": mask_name,
    "address": mask_address,
}
