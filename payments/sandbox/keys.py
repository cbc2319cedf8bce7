"""RSA test keys for the Alipay sandbox and its tests (never production keys).

Alipay signs with SHA256withRSA (RSA2) over 2048-bit keys. The emulator needs two pairs: the
*app* pair (our private key signs requests, the emulator verifies with the app public key) and
the *Alipay* pair (the emulator signs replies and notifications, we verify with the Alipay
public key). Both are PEM with BEGIN/END lines, which is what python-alipay-sdk wants.

Generating a 2048-bit key takes tens of milliseconds; `cached_key_pair` keeps generated pairs in
a directory so a demo restarts with the same keys (and the same configuration stays valid).
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

KEY_BITS = 2048
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@dataclass(frozen=True)
class KeyPair:
    private_pem: str  # PKCS#8 "-----BEGIN PRIVATE KEY-----"
    public_pem: str  # SubjectPublicKeyInfo "-----BEGIN PUBLIC KEY-----"


def _public_pem_of(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


def generate_key_pair(bits: int = KEY_BITS) -> KeyPair:
    """A fresh RSA key pair as PEM text."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")
    return KeyPair(private_pem, _public_pem_of(key))


def key_pair_from_private_pem(private_pem: str) -> KeyPair:
    key = serialization.load_pem_private_key(private_pem.encode("ascii"), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("not an RSA private key")
    return KeyPair(private_pem, _public_pem_of(key))


def cached_key_pair(directory: str | os.PathLike[str], name: str) -> KeyPair:
    """The key pair `name` kept in `directory` (created on first use, then reused).

    Only the private key is stored (`<name>.pem`, mode 0600); the public key is derived from it.
    The file is published with a hard link (which fails if it exists), so concurrent first uses
    all end with the same key.
    """
    if not _NAME.fullmatch(name):
        raise ValueError(f"key name must match {_NAME.pattern}: {name!r}")
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.pem"
    if path.exists():
        return key_pair_from_private_pem(path.read_text("ascii"))
    pair = generate_key_pair()
    handle, temp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="ascii") as out:
            out.write(pair.private_pem)
        os.chmod(temp, 0o600)
        with contextlib.suppress(FileExistsError):  # another process was first: use its key
            os.link(temp, path)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)
    return key_pair_from_private_pem(path.read_text("ascii"))
