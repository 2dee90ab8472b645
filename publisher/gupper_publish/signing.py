"""Ed25519 key generation, loading and manifest signing."""

from __future__ import annotations

import base64
import json
import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gupper.keys import PublicKey, keyid_for
from gupper.manifest import canonical_bytes

from .errors import SigningKeyError


def public_key_of(private: Ed25519PrivateKey) -> PublicKey:
    """The client-side form of ``private``'s public half."""
    raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return PublicKey(keyid_for(raw), raw)


def keygen(prefix: Path) -> tuple[Path, Path, PublicKey]:
    """Write ``<prefix>.key`` (private, mode 0600, PKCS#8 PEM) and ``<prefix>.pub``.

    Refuses to overwrite either file. The private key is never printed or logged.
    """
    key_path, pub_path = prefix.with_name(prefix.name + ".key"), prefix.with_name(prefix.name + ".pub")
    for path in (key_path, pub_path):
        if path.exists():
            raise SigningKeyError(f"{path} already exists; choose another name or move the old key away first")
    prefix.parent.mkdir(parents=True, exist_ok=True)
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    # Created 0600 from the first byte: no window in which another user could read it.
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    public = public_key_of(private)
    pub_path.write_text(public.to_text() + "\n", encoding="ascii")
    return key_path, pub_path, public


def load_signing_key(path: Path, *, check_permissions: bool = True) -> Ed25519PrivateKey:
    """Load an Ed25519 private key, refusing one that group or others can read (POSIX)."""
    try:
        st = path.stat()
    except FileNotFoundError as e:
        raise SigningKeyError(f"signing key {path} does not exist; make one with 'gupper-publish keygen' or pass --key") from e
    if not stat.S_ISREG(st.st_mode):
        raise SigningKeyError(f"signing key {path} is not a regular file")
    if check_permissions and os.name == "posix" and st.st_mode & 0o077:
        raise SigningKeyError(f"signing key {path} is readable by group or others (mode {stat.S_IMODE(st.st_mode):o}); run: chmod 600 {path}")
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as e:
        raise SigningKeyError(f"{path} is not an unencrypted PEM private key; use a .key file written by 'gupper-publish keygen'") from e
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{path} holds a {type(key).__name__}, not an Ed25519 key; use 'gupper-publish keygen'")
    return key


def sign_manifest(signed: dict[str, Any], keys: Sequence[Ed25519PrivateKey]) -> bytes:
    """The manifest file: ``signed`` plus one signature per key over its canonical bytes."""
    if not keys:
        raise SigningKeyError("no signing key given; pass --key or set GUPPER_SIGNING_KEY")
    payload = canonical_bytes(signed)
    signatures = [{"keyid": public_key_of(k).keyid, "sig": base64.b64encode(k.sign(payload)).decode("ascii")} for k in keys]
    return (json.dumps({"signed": signed, "signatures": signatures}, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")
