"""The signed manifest (``latest.json``): canonical bytes, parsing and verification.

Pure: functions here take bytes, keys and a clock reading and return values or raise a
:class:`~gupper.errors.ManifestError`; they never touch the network or the disk. The order of
checks follows TUF: signatures are checked over the raw ``signed`` object before any of its
fields are trusted, and only then are the fields parsed and compared with what the app expects.
See ``docs/manifest.md`` for the format.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

from packaging.version import InvalidVersion, Version

from .errors import BadSignature, ConfigError, Expired, Malformed, WrongTarget
from .keys import TrustedKeys

MANIFEST_TYPE = "gupper-manifest"
SCHEMA_VERSION = 1
ARTIFACT_TYPES = ("binary", "archive")
MAX_MANIFEST_BYTES = 1 << 20
MAX_INT = (1 << 53) - 1  # JSON interop: larger ints do not survive a JavaScript reader
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def canonical_bytes(obj: Any) -> bytes:
    """Serialise ``obj`` to the canonical JSON bytes that signatures cover.

    Sorted keys, no whitespace, UTF-8, and only the types that round-trip exactly (no floats),
    so that every reader re-creates the very bytes the publisher signed.
    """
    _check_canonical(obj)
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def _check_canonical(obj: Any, depth: int = 0) -> None:
    if depth > 16:
        raise Malformed("manifest nests too deeply; regenerate it with gupper-publish")
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return
    if isinstance(obj, int):
        if abs(obj) > MAX_INT:
            raise Malformed(f"manifest holds an integer out of range ({str(obj)[:20]}...); regenerate it with gupper-publish")
        return
    if isinstance(obj, list):
        for item in obj:
            _check_canonical(item, depth + 1)
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, str):
                raise Malformed("manifest object keys must be strings")
            _check_canonical(v, depth + 1)
        return
    raise Malformed(f"manifest holds a {type(obj).__name__}, which has no canonical form; regenerate it with gupper-publish")


def format_time(when: datetime) -> str:
    """UTC timestamp as written in manifests, e.g. ``2026-11-28T12:00:00Z``."""
    return when.astimezone(UTC).strftime(_TIME_FORMAT)


def parse_time(text: Any, what: str) -> datetime:
    """Parse a manifest timestamp; raises Malformed naming the field."""
    if not isinstance(text, str):
        raise Malformed(f"manifest field {what!r} must be a timestamp string like 2026-01-31T12:00:00Z")
    try:
        return datetime.strptime(text, _TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError as e:
        raise Malformed(f"manifest field {what!r} is {text[:40]!r}, not a timestamp like 2026-01-31T12:00:00Z") from e


@dataclass(frozen=True)
class Entry:
    """One platform's release in a manifest."""

    platform: str
    version: Version
    type: str
    url: str
    size: int
    sha256: str
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Manifest:
    """A verified manifest's signed content."""

    app: str
    channel: str
    serial: int
    created: datetime
    expires: datetime
    entries: Mapping[str, Entry]
    signed_bytes: bytes
    signatures: tuple[Any, ...] = ()
    keys: TrustedKeys | None = None
    yanked: frozenset[Version] = frozenset()

    def entry_for(self, platform_key: str) -> Entry | None:
        """The entry for ``linux-amd64`` etc., or None: never another platform's file."""
        return self.entries.get(platform_key)


def _require(obj: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in obj:
        raise Malformed(f"manifest {where} lacks field {key!r}; regenerate it with gupper-publish")
    value = obj[key]
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        raise Malformed(f"manifest {where} field {key!r} has the wrong type; regenerate it with gupper-publish")
    return value


def parse_entry(platform_key: str, raw: Any) -> Entry:
    """Parse one platform entry (or a rollout fallback) of a verified manifest."""
    where = f"entry {platform_key[:40]!r}"
    if not isinstance(raw, dict):
        raise Malformed(f"manifest {where} is not an object")
    version_text = _require(raw, "version", str, where)
    try:
        version = Version(version_text)
    except InvalidVersion as e:
        raise Malformed(f"manifest {where} has version {version_text[:40]!r}, which is not PEP 440") from e
    kind = _require(raw, "type", str, where)
    url = _require(raw, "url", str, where)
    _check_entry_url(url, where)
    size = _require(raw, "size", int, where)
    if not 0 < size <= MAX_INT:
        raise Malformed(f"manifest {where} has size {size}, which is out of range")
    digest = _require(raw, "sha256", str, where)
    if not _SHA256_RE.match(digest):
        raise Malformed(f"manifest {where} has a sha256 that is not 64 lowercase hex digits")
    extra = {k: v for k, v in raw.items() if k not in {"version", "type", "url", "size", "sha256"}}
    return Entry(platform_key, version, kind, url, size, digest, extra)


def _check_entry_url(url: str, where: str) -> None:
    """A relative reference or an absolute http(s) URL that parses, checked once here so that no
    later step meets a URL it cannot handle."""
    if not url or len(url) > 2048 or not url.isprintable() or any(c in url for c in "\\ ") or url.startswith("//"):
        raise Malformed(f"manifest {where} has an unusable url {url[:60]!r}")
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises for a port that is not a number in range
        urljoin("https://gupper.invalid/app/stable/latest.json", url)
    except ValueError as e:
        raise Malformed(f"manifest {where} has a url that does not parse ({e}): {url[:60]!r}") from e
    if parts.scheme not in ("", "https", "http") or (parts.scheme and not parts.hostname):
        raise Malformed(f"manifest {where} has a url that is neither relative nor http(s): {url[:60]!r}")


def parse_signed(signed: Any, signed_bytes: bytes) -> Manifest:
    """Turn an (already signature-checked) ``signed`` object into a Manifest."""
    if not isinstance(signed, dict):
        raise Malformed("manifest 'signed' is not an object")
    if _require(signed, "_type", str, "payload") != MANIFEST_TYPE:
        raise Malformed(f"manifest '_type' is not {MANIFEST_TYPE!r}: this is not a Gupper manifest")
    schema = _require(signed, "schema", int, "payload")
    if schema != SCHEMA_VERSION:
        raise Malformed(f"manifest schema {schema} is not supported by this app (it reads schema {SCHEMA_VERSION}); publish with a matching gupper-publish")
    app = _require(signed, "app", str, "payload")
    channel = _require(signed, "channel", str, "payload")
    serial = _require(signed, "serial", int, "payload")
    if not 0 < serial <= MAX_INT:
        raise Malformed(f"manifest serial {serial} is out of range")
    created = parse_time(signed.get("created"), "created")
    expires = parse_time(signed.get("expires"), "expires")
    raw_entries = _require(signed, "platforms", dict, "payload")
    entries = {key: parse_entry(key, raw) for key, raw in raw_entries.items()}
    return Manifest(app, channel, serial, created, expires, entries, signed_bytes, keys=_parse_keys(signed), yanked=_parse_yanked(signed))


def _parse_keys(signed: Mapping[str, Any]) -> TrustedKeys | None:
    raw = signed.get("keys")
    if raw is None:
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("keys"), list) or not isinstance(raw.get("threshold"), int):
        raise Malformed("manifest field 'keys' must be {'keys': [...], 'threshold': n}")
    try:
        return TrustedKeys.from_texts([str(k) for k in raw["keys"]], raw["threshold"])
    except ConfigError as e:
        raise Malformed(f"manifest announces an unusable key set: {e}") from e


def _parse_yanked(signed: Mapping[str, Any]) -> frozenset[Version]:
    raw = signed.get("yanked", [])
    if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
        raise Malformed("manifest field 'yanked' must be a list of version strings")
    try:
        return frozenset(Version(v) for v in raw)
    except InvalidVersion as e:
        raise Malformed("manifest field 'yanked' holds a version that is not PEP 440") from e


def load_envelope(data: bytes) -> tuple[dict[str, Any], list[Any]]:
    """Parse the outer JSON into (signed, signatures) without trusting anything in it."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise Malformed(f"manifest is {len(data)} bytes, over the {MAX_MANIFEST_BYTES} byte limit")
    try:
        doc = json.loads(data.decode("utf-8"), parse_float=_refuse_float, parse_constant=_refuse_float)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise Malformed(f"manifest is not valid JSON ({type(e).__name__}); check the URL points at latest.json") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("signed"), dict) or not isinstance(doc.get("signatures"), list):
        raise Malformed("manifest must be an object with 'signed' and 'signatures'; check the URL points at latest.json")
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
    the caller's job (it needs state).
    """
    signed, signatures = load_envelope(data)
    signed_bytes = canonical_bytes(signed)
    valid = count_valid_signatures(signed_bytes, signatures, trusted)
    if valid < trusted.threshold:
        raise BadSignature(
            f"manifest has {valid} valid signature(s) from trusted keys, {trusted.threshold} needed: "
            "it was not signed with this app's key (or was altered); re-publish with the right key"
        )
    manifest = replace(parse_signed(signed, signed_bytes), signatures=tuple(signatures))
    if manifest.app != app or manifest.channel != channel:
        raise WrongTarget(f"manifest is for app {manifest.app!r} channel {manifest.channel!r}, not {app!r} channel {channel!r}; check the manifest URL")
    if now >= manifest.expires:
        raise Expired(
            f"manifest expired at {format_time(manifest.expires)} (now {format_time(now)}); "
            "the publisher must re-sign it ('gupper-publish resign'), or check this machine's clock"
        )
    return manifest


def entry_to_json(entry: Entry) -> dict[str, Any]:
    """The JSON object for one entry, as it appears under ``platforms``."""
    out: dict[str, Any] = dict(entry.extra)
    out.update(version=str(entry.version), type=entry.type, url=entry.url, size=entry.size, sha256=entry.sha256)
    return out


def valid_app_name(name: str) -> bool:
    """App and channel names: a letter or digit, then letters, digits, ``.``, ``_`` or ``-``; never
    ``/`` or ``..`` alone, which would escape a store prefix."""
    return bool(_NAME_RE.match(name))
