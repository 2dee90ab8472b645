"""Decisions about trust across checks: rollback, equivocation and key rotation. Pure.

These need memory of earlier manifests (a :class:`ChannelRecord`), which the caller loads from
and saves to the state file; nothing here does I/O. :func:`accept_manifest` is the whole order in
which a fetched manifest is accepted (verify, fresh, rotation, adopt, what to save); the client
calls it and does what its :class:`Acceptance` says.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from .errors import BadSignatureError, RollbackError
from .keys import TrustedKeys
from .manifest import count_valid_signatures, verify_manifest
from .records import record
from .wire.manifest import Manifest


@record(frozen=True)
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
        raise RollbackError(
            f"manifest serial {manifest.serial} is older than serial {seen.serial} already "
            "seen: a mirror or cache is replaying an old "
            "manifest, or the app moved to a new store whose serials started again (the publisher continues them with "
            f"'gupper-publish ... --min-serial {seen.serial + 1}'); it is ignored until the store serves a newer one"
        )
    if manifest.serial == seen.serial and digest_of(manifest) != seen.digest:
        raise RollbackError(
            f"manifest serial {manifest.serial} differs from the serial {seen.serial} already "
            "seen (two different manifests with one "
            "serial): the store is equivocating or a publisher bypassed gupper-publish; re-publish to get a new serial"
        )


def rotated_keys(manifest: Manifest, trusted: TrustedKeys) -> TrustedKeys | None:
    """The key set to trust from now on, if ``manifest`` (already verified with ``trusted``) rotates it.

    A new set is adopted only when the manifest also carries a threshold of signatures from the
    new set: whoever announces keys must hold them. Raises BadSignatureError when it does not.
    """
    new = manifest.keys
    if new is None or _same(new, trusted):
        return None
    valid = count_valid_signatures(manifest.signed_bytes, list(manifest.signatures), new)
    if valid < new.threshold:
        raise BadSignatureError(
            f"manifest announces a new key set but carries {valid} of the {new.threshold} "
            "signature(s) it needs from it; "
            "sign the rotation with both the old and the new keys"
        )
    return new


def _same(a: TrustedKeys, b: TrustedKeys) -> bool:
    return a.threshold == b.threshold and {k.keyid for k in a.keys} == {k.keyid for k in b.keys}


def fingerprint(trusted: TrustedKeys) -> str:
    """Stable id of a key set, to notice when a new build ships different built-in keys."""
    ids = ",".join(sorted(k.keyid for k in trusted.keys))
    return hashlib.sha256(f"{trusted.threshold}:{ids}".encode()).hexdigest()[:32]


@record(frozen=True)
class Acceptance:
    """A manifest accepted by :func:`accept_manifest`, and what the caller must remember of it.

    ``adopt`` is the key set to trust from now on (a verified rotation), else None; ``record``
    is the channel's new :class:`ChannelRecord` to save, else None (nothing new: the same serial
    as before and no rotation).
    """

    manifest: Manifest
    adopt: TrustedKeys | None
    record: ChannelRecord | None


def accept_manifest(
    data: bytes, trusted: TrustedKeys, seen: ChannelRecord, *, app: str, channel: str, now: datetime
) -> Acceptance:
    """Accept manifest bytes, in this order: verify them with the keys trusted now (signatures,
    fields, app and channel, expiry: :func:`gupper.manifest.verify_manifest`), refuse an older or
    equivocating manifest (:func:`check_fresh`), check a key rotation it announces
    (:func:`rotated_keys`), and say what to adopt and save.

    Raises:
        ManifestError: the manifest cannot be trusted: MalformedError, BadSignatureError (also for a
            rotation not signed by the new keys), WrongTargetError, ExpiredError, RollbackError.
    """
    manifest = verify_manifest(data, trusted, app=app, channel=channel, now=now)
    check_fresh(manifest, seen)
    adopt = rotated_keys(manifest, trusted)
    record = (
        ChannelRecord(manifest.serial, digest_of(manifest))
        if adopt is not None or manifest.serial > seen.serial
        else None
    )
    return Acceptance(manifest, adopt, record)
