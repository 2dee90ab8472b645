"""Verifying a manifest: from the bytes served to a trusted :class:`~gupper.wire.manifest.Manifest`. Pure.

Functions here take bytes, keys and a clock reading and return values or raise a
:class:`~gupper.errors.ManifestError`; they never touch the network or the disk. The order of
checks follows TUF: signatures are checked over the raw ``signed`` object before any of its
fields are trusted, and only then are the fields parsed (:mod:`gupper.wire.manifest`, the model
the publisher writes with) and compared with what the app expects. What the client does with a
verified manifest across checks (rollback, key rotation) is :mod:`gupper.trust`. See
``docs/manifest.md`` for the format.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any

from .errors import BadSignatureError, ExpiredError, MalformedError, WrongTargetError
from .keys import TrustedKeys
from .records import replace
from .wire.canonical import canonical_bytes, format_time
from .wire.manifest import MAX_MANIFEST_BYTES, Manifest

__all__ = ["canonical_bytes", "count_valid_signatures", "load_envelope", "verify_manifest"]


def load_envelope(data: bytes) -> tuple[dict[str, Any], list[Any]]:
    """Parse the outer JSON into (signed, signatures) without trusting anything in it.

    Raises:
        MalformedError: over the size cap, not JSON (floats and NaN refused), or not an object with
            ``signed`` (an object) and ``signatures`` (an array).
    """
    if len(data) > MAX_MANIFEST_BYTES:
        raise MalformedError(f"manifest is {len(data)} bytes, over the {MAX_MANIFEST_BYTES} byte limit")
    try:
        doc = json.loads(data.decode("utf-8"), parse_float=_refuse_float, parse_constant=_refuse_float)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise MalformedError(
            f"manifest is not valid JSON ({type(e).__name__}); check the URL points at latest.json"
        ) from e
    if (
        not isinstance(doc, dict)
        or not isinstance(doc.get("signed"), dict)
        or not isinstance(doc.get("signatures"), list)
    ):
        raise MalformedError(
            "manifest must be an object with 'signed' and 'signatures'; check the URL points at latest.json"
        )
    return doc["signed"], doc["signatures"]


def _refuse_float(text: str) -> Any:
    raise ValueError(f"non-integer number {text[:20]!r}")


def count_valid_signatures(signed_bytes: bytes, signatures: list[Any], trusted: TrustedKeys) -> int:
    """Number of *distinct* trusted keys with a valid signature; duplicates count once."""
    keys = trusted.by_id()
    good: set[str] = set()
    for sig in signatures:
        if not isinstance(sig, dict):
            continue
        keyid, value = sig.get("keyid"), sig.get("sig")
        if not isinstance(keyid, str) or not isinstance(value, str) or keyid in good:
            continue
        key = keys.get(keyid)
        if key is None:
            continue
        try:
            raw_sig = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            continue
        if key.verify(raw_sig, signed_bytes):
            good.add(keyid)
    return len(good)


def verify_manifest(data: bytes, trusted: TrustedKeys, *, app: str, channel: str, now: datetime) -> Manifest:
    """Verify manifest bytes and return its content.

    Checks, in order: size and JSON shape, threshold of signatures from distinct trusted keys
    over the canonical bytes of ``signed``, the payload's fields, that app and channel are the
    ones asked for, and that ``now`` is before ``expires``. Rollback against earlier manifests is
    the caller's job (it needs state: :func:`gupper.trust.accept_manifest`).

    Raises:
        MalformedError: not a manifest of the expected shape, or a field of the wrong type or value.
        BadSignatureError: fewer valid signatures from distinct trusted keys than the threshold.
        WrongTargetError: the manifest is for another app or channel.
        ExpiredError: ``now`` is at or after its expiry.
    """
    signed, signatures = load_envelope(data)
    signed_bytes = canonical_bytes(signed)
    valid = count_valid_signatures(signed_bytes, signatures, trusted)
    if valid < trusted.threshold:
        raise BadSignatureError(
            f"manifest has {valid} valid signature(s) from trusted keys, {trusted.threshold} needed: "
            "it was not signed with this app's key (or was altered); re-publish with the right key"
        )
    manifest = replace(Manifest.from_json(signed, signed_bytes), signatures=tuple(signatures))
    if manifest.app != app or manifest.channel != channel:
        fix = "UpdaterConfig.app" if manifest.app != app else f"UpdaterConfig.channel ({manifest.channel!r} serves it)"
        raise WrongTargetError(
            f"manifest is for app {manifest.app!r} channel {manifest.channel!r}, not {app!r} "
            f"channel {channel!r}; check the manifest URL (or {fix})"
        )
    if now >= manifest.expires:
        raise ExpiredError(
            f"manifest expired at {format_time(manifest.expires)} (now {format_time(now)}); "
            "the publisher must re-sign it ('gupper-publish resign'), or check this machine's clock"
        )
    return manifest
