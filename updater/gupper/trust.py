"""Decisions about trust across checks: rollback, equivocation and key rotation. Pure.

These need memory of earlier manifests (a :class:`ChannelRecord`), which the caller loads from
and saves to the state file; nothing here does I/O.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from .errors import BadSignature, Rollback
from .keys import TrustedKeys
from .manifest import count_valid_signatures
from .wire.manifest import Manifest


@dataclass(frozen=True)
class ChannelRecord:
    """The newest manifest this install has accepted for one app channel."""

    serial: int = 0
    digest: str = ""


def digest_of(manifest: Manifest) -> str:
    """Fingerprint of the signed content (what equivocation is judged on)."""
    return hashlib.sha256(manifest.signed_bytes).hexdigest()


def check_fresh(manifest: Manifest, seen: ChannelRecord) -> None:
    """Refuse a manifest older than one already accepted, or a different one with the same serial."""
    if manifest.serial < seen.serial:
        raise Rollback(
            f"manifest serial {manifest.serial} is older than serial {seen.serial} already seen: a mirror or cache is replaying an old "
            "manifest, or the app moved to a new store whose serials started again (the publisher continues them with "
            f"'gupper-publish ... --min-serial {seen.serial + 1}'); it is ignored until the store serves a newer one"
        )
    if manifest.serial == seen.serial and digest_of(manifest) != seen.digest:
        raise Rollback(
            f"manifest serial {manifest.serial} differs from the serial {seen.serial} already seen (two different manifests with one "
            "serial): the store is equivocating or a publisher bypassed gupper-publish; re-publish to get a new serial"
        )


def rotated_keys(manifest: Manifest, trusted: TrustedKeys) -> TrustedKeys | None:
    """The key set to trust from now on, if ``manifest`` (already verified with ``trusted``) rotates it.

    A new set is adopted only when the manifest also carries a threshold of signatures from the
    new set: whoever announces keys must hold them. Raises BadSignature when it does not.
    """
    new = manifest.keys
    if new is None or _same(new, trusted):
        return None
    valid = count_valid_signatures(manifest.signed_bytes, list(manifest.signatures), new)
    if valid < new.threshold:
        raise BadSignature(
            f"manifest announces a new key set but carries {valid} of the {new.threshold} signature(s) it needs from it; "
            "sign the rotation with both the old and the new keys"
        )
    return new


def _same(a: TrustedKeys, b: TrustedKeys) -> bool:
    return a.threshold == b.threshold and {k.keyid for k in a.keys} == {k.keyid for k in b.keys}


def fingerprint(trusted: TrustedKeys) -> str:
    """Stable id of a key set, to notice when a new build ships different built-in keys."""
    ids = ",".join(sorted(k.keyid for k in trusted.keys))
    return hashlib.sha256(f"{trusted.threshold}:{ids}".encode()).hexdigest()[:32]
