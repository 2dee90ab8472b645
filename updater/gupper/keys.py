"""Ed25519 public keys as the client holds them, and signature checks over them.

A public key is written ``ed25519:<base64 of the 32 raw bytes>`` so that it fits on one line of a
build config; its key id is the hex sha256 of the raw bytes, so ids cannot be chosen freely by
whoever writes a manifest.

Signatures are checked with PyNaCl (libsodium, :mod:`gupper.ed25519`), chosen over
``cryptography`` by the figures in bench/results.md: it adds a fraction of the bytes to every
frozen app, imports as fast and verifies faster; libsodium refuses non-canonical signatures and
small-order keys.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable

from . import ed25519
from .errors import ConfigError
from .records import record

KEY_PREFIX = "ed25519:"


def keyid_for(raw_public: bytes) -> str:
    """Key id of a raw 32-byte Ed25519 public key."""
    return hashlib.sha256(raw_public).hexdigest()


@record(frozen=True)
class PublicKey:
    """One trusted Ed25519 public key."""

    keyid: str
    raw: bytes

    @classmethod
    def parse(cls, text: str) -> PublicKey:
        """Parse ``ed25519:<base64>``.

        Raises:
            ConfigError: anything else, with a hint.
        """
        text = text.strip()
        if not text.startswith(KEY_PREFIX):
            raise ConfigError(
                f"public key must look like 'ed25519:<base64>', got {text[:20]!r}...; use the .pub "
                "file written by 'gupper-publish keygen'"
            )
        try:
            raw = base64.b64decode(text[len(KEY_PREFIX) :], validate=True)
        except (binascii.Error, ValueError) as e:
            raise ConfigError("public key is not valid base64; copy the whole line of the .pub file") from e
        if len(raw) != 32:
            raise ConfigError(f"public key must be 32 bytes, got {len(raw)}; copy the whole line of the .pub file")
        return cls(keyid_for(raw), raw)

    def to_text(self) -> str:
        """The one-line ``ed25519:<base64>`` form."""
        return KEY_PREFIX + base64.b64encode(self.raw).decode("ascii")

    def verify(self, signature: bytes, data: bytes) -> bool:
        """True if ``signature`` is this key's valid signature of ``data``."""
        return ed25519.verify(self.raw, signature, data)


@record(frozen=True)
class TrustedKeys:
    """The keys an app trusts and how many distinct ones must sign (k of n)."""

    keys: tuple[PublicKey, ...]
    threshold: int = 1

    def __post_init__(self) -> None:
        ids = {k.keyid for k in self.keys}
        if len(ids) != len(self.keys):
            raise ConfigError("the same public key is listed twice; list each trusted key once")
        if not 1 <= self.threshold <= len(self.keys):
            raise ConfigError(f"threshold {self.threshold} needs between 1 and {len(self.keys)} trusted keys")

    @classmethod
    def from_texts(cls, texts: Iterable[str], threshold: int = 1) -> TrustedKeys:
        """Build from ``ed25519:...`` lines.

        Raises:
            ConfigError: a line that does not parse, a key listed twice, a threshold out of range.
        """
        return cls(tuple(PublicKey.parse(t) for t in texts), threshold)

    def by_id(self) -> dict[str, PublicKey]:
        """Map key id → key."""
        return {k.keyid: k for k in self.keys}
