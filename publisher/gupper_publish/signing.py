"""Ed25519 key generation, loading and manifest signing."""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import stat
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gupper.keys import PublicKey, keyid_for
from gupper.wire.canonical import canonical_bytes
from gupper.wire.manifest import Manifest

from .errors import SigningKeyError

# cryptography signs; it comes with the publisher extra (the client verifies with PyNaCl), so it is
# imported where keys are made, loaded or used: the CLI can say which extra is missing.
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def public_key_of(private: Ed25519PrivateKey) -> PublicKey:
    """The client-side form of ``private``'s public half."""
    from cryptography.hazmat.primitives import serialization

    raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return PublicKey(keyid_for(raw), raw)


def keygen(prefix: Path) -> tuple[Path, Path, PublicKey]:
    """Write ``<prefix>.key`` (private, mode 0600, PKCS#8 PEM) and ``<prefix>.pub``.

    Refuses to overwrite either file. The private key is never printed or logged.
    """
    if is_key_material(str(prefix)):
        raise SigningKeyError(
            "keygen was given key text where a file name prefix goes; pass a name such as keys/release"
        )
    key_path, pub_path = prefix.with_name(prefix.name + ".key"), prefix.with_name(prefix.name + ".pub")
    for path in (key_path, pub_path):
        if path.exists():
            raise SigningKeyError(f"{path} already exists; choose another name or move the old key away first")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    prefix.parent.mkdir(parents=True, exist_ok=True)
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # Created 0600 from the first byte: no window in which another user could read it.
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    public = public_key_of(private)
    pub_path.write_text(public.to_text() + "\n", encoding="ascii")
    return key_path, pub_path, public


PUBLIC_KEY_MARKERS = (b"ed25519:", b"-----BEGIN PUBLIC KEY-----", b"ssh-ed25519 ")
_BASE64 = re.compile(r"[A-Za-z0-9+/=_-]+")
_SHOWN = re.compile(r"[ .~:\\]")  # characters no PEM or base64 key holds: a value with one is safe to show


def key_id(private: Ed25519PrivateKey) -> str:
    """The key id of ``private``'s public half, as manifests' signatures name it."""
    return public_key_of(private).keyid


def parse_signing_key(data: bytes, what: str) -> Ed25519PrivateKey:
    """An Ed25519 private key from PEM (PKCS#8, unencrypted) or PKCS#8 DER bytes. Pure.

    ``what`` names the key's source in messages (a path, ``GUPPER_SIGNING_KEY``); no message
    ever holds any of ``data``. A public key, an OpenSSH or encrypted key, or another kind of key
    is refused with advice for that case.
    """
    head = data.lstrip()
    if head.startswith(PUBLIC_KEY_MARKERS):
        raise SigningKeyError(
            f"{what} is a public key; signing needs the private key: the .key file written "
            "beside the .pub by 'gupper-publish keygen'"
        )
    if head.startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----"):
        raise SigningKeyError(
            f"{what} is an OpenSSH private key; convert it to PKCS#8 with 'ssh-keygen -p -m "
            "PKCS8 -f FILE' or make one with 'gupper-publish keygen'"
        )
    if head.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----") or b"Proc-Type: 4,ENCRYPTED" in head[:200]:
        raise SigningKeyError(
            f"{what} is encrypted; gupper-publish signs with an unencrypted key (keep it in a CI secret or a 0600 file)"
        )
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        pem = head.startswith(b"-----BEGIN")
        key = (
            serialization.load_pem_private_key(head, password=None)
            if pem
            else serialization.load_der_private_key(data, password=None)
        )
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # No chained cause on purpose: whatever the library said about the bytes stays out of tracebacks.
        raise SigningKeyError(
            f"{what} is not an unencrypted PEM (or PKCS#8 DER) private key; use the .key file "
            "written by 'gupper-publish keygen'"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(
            f"{what} holds a {type(key).__name__}, not an Ed25519 key; make one with 'gupper-publish keygen'"
        )
    return key


def load_signing_key(path: Path, *, check_permissions: bool = True) -> Ed25519PrivateKey:
    """Load an Ed25519 private key file, refusing one that group or others can read (POSIX)."""
    try:
        st = path.stat()
    except FileNotFoundError as e:
        raise SigningKeyError(
            f"signing key {path} does not exist; make one with 'gupper-publish keygen' or pass --key"
        ) from e
    except OSError as e:
        raise SigningKeyError(f"signing key {path} cannot be read ({e.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise SigningKeyError(f"signing key {path} is not a regular file")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise SigningKeyError(f"signing key {path} cannot be read ({e.strerror})") from None
    key = parse_signing_key(data, f"signing key {path}")  # a .pub gets its own advice, not "chmod 600"
    if check_permissions and os.name == "posix" and st.st_mode & 0o077:
        raise SigningKeyError(
            f"signing key {path} is readable by group or others (mode "
            f"{stat.S_IMODE(st.st_mode):o}); run: chmod 600 {path}"
        )
    return key


def key_material(value: str) -> bytes | None:
    """The key bytes if ``value`` is a key itself (PEM text, or base64 of PEM or of PKCS#8 DER), None if it is not.
    Pure.

    CI secrets arrive this way; a PEM pasted into a one-line variable with literal ``\\n`` is
    accepted too.
    """
    text = value.strip()
    if "-----BEGIN" in text:
        if "\n" not in text and "\\n" in text:
            text = text.replace("\\n", "\n")
        return text.encode("utf-8", "replace")
    compact = "".join(text.split())
    if len(compact) < 40 or not _BASE64.fullmatch(compact):
        return None
    try:
        raw = base64.b64decode(
            compact + "=" * (-len(compact) % 4),
            altchars=b"-_" if ("-" in compact or "_" in compact) else None,
            validate=True,
        )
    except (binascii.Error, ValueError):
        return None
    if raw.lstrip().startswith(b"-----BEGIN") or raw[:1] == b"\x30":  # PEM, or a DER SEQUENCE (PKCS#8)
        return raw
    return None


def is_key_material(value: str) -> bool:
    """True if ``value`` holds key text rather than naming files (and so must never be shown)."""
    return key_material(value) is not None or "PRIVATE KEY" in value


def shown(value: str) -> str:
    """``value`` quoted for a message if it cannot be key material, else a placeholder."""
    if len(value) <= 200 and "\n" not in value and _SHOWN.search(value) and not is_key_material(value):
        return repr(value)
    return f"(a {len(value)}-character value, not shown: it could be a secret)"


def load_signing_keys(value: str, *, source: str = "GUPPER_SIGNING_KEY") -> list[Ed25519PrivateKey]:
    """Signing keys from one value as CI hands it over: the key itself, or key files.

    ``value`` is either one or more PEM blocks (or base64 of a PEM or PKCS#8 DER key), or key
    file paths joined by ``os.pathsep``. ``source`` names the value in messages; the value is
    never shown in any of them unless it can only be a path.
    """
    if value.strip().encode().startswith(PUBLIC_KEY_MARKERS):
        raise SigningKeyError(
            f"{source} holds a public key; signing needs the private key: the .key file "
            "written beside the .pub by 'gupper-publish keygen'"
        )
    material = key_material(value)
    if material is not None:
        blocks = _pem_blocks(material) if material.lstrip().startswith(b"-----BEGIN") else [material]
        return [
            parse_signing_key(b, source if len(blocks) == 1 else f"{source} (key {i} of {len(blocks)})")
            for i, b in enumerate(blocks, 1)
        ]
    if "PRIVATE KEY" in value:
        raise SigningKeyError(
            f"{source} holds part of a private key, not a whole PEM block; copy the whole .key "
            "file, BEGIN and END lines included"
        )
    paths = [p for p in value.split(os.pathsep) if p.strip()]
    if not paths:
        raise SigningKeyError(
            f"{source} is empty; set it to a key file's path or to the key itself (the .key file's contents)"
        )
    keys = []
    for p in paths:
        path = Path(p.strip())
        try:
            exists = path.is_file() or path.exists()
        except OSError:  # a name too long for the file system: not a path anyone meant
            exists = False
        if not exists:
            raise SigningKeyError(
                f"{source}: {shown(p)} is neither an existing key file nor a private key (PEM, or base64 of one); "
                "set it to a key file's path or to the key itself (the .key file's contents)"
            )
        keys.append(load_signing_key(path))
    return keys


def _pem_blocks(material: bytes) -> list[bytes]:
    """Each ``-----BEGIN ...-----`` … ``-----END ...-----`` block (several keys in one secret sign together)."""
    blocks = re.findall(rb"-----BEGIN [A-Z0-9 ]+-----.*?-----END [A-Z0-9 ]+-----", material, flags=re.DOTALL)
    return list(blocks) or [material]


def sign_manifest(signed: dict[str, Any], keys: Sequence[Ed25519PrivateKey]) -> bytes:
    """The manifest file: ``signed`` plus one signature per key over its canonical bytes."""
    if not keys:
        raise SigningKeyError("no signing key given; pass --key or set GUPPER_SIGNING_KEY")
    payload = canonical_bytes(signed)
    signatures = [
        {"keyid": public_key_of(k).keyid, "sig": base64.b64encode(k.sign(payload)).decode("ascii")} for k in keys
    ]
    return (
        json.dumps({"signed": signed, "signatures": signatures}, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    ).encode("utf-8")


def build_signed(
    *,
    app: str,
    channel: str,
    serial: int,
    now: datetime,
    expires_in: timedelta,
    platforms: Mapping[str, Mapping[str, Any]],
    yanked: Sequence[str] = (),
    keys: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``signed`` object from plain-data entries, which are written as given, unchecked (for
    tests and tools that forge payloads; ``gupper-publish`` builds typed :class:`Manifest` values).
    ``yanked`` and ``keys`` only when set (docs/schema-extensions.md)."""
    signed = Manifest(app, channel, serial, now, now + expires_in, entries={}).to_json()
    signed["platforms"] = {key: dict(platforms[key]) for key in sorted(platforms)}
    if yanked:
        signed["yanked"] = list(yanked)
    if keys is not None:
        signed["keys"] = dict(keys)
    return signed
