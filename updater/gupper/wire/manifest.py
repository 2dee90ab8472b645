"""The signed manifest (``latest.json``): its payload, entries, patches, rollouts and key set. Pure.

One class per part, each with ``from_json`` (every field checked once, here: a wrong type or
value raises :class:`~gupper.errors.MalformedError` naming the field) and ``to_json`` (the object as
it appears under ``signed``). The client reads typed fields only; the publisher builds manifests
through the same classes. See docs/manifest.md for the format and docs/schema-extensions.md for
the optional fields.

Round trip: ``Manifest.from_json(d).to_json() == d`` for every manifest ``gupper-publish``
writes, unknown fields included (they are kept in ``unknown`` and written back). Two spellings
are normalised on the way: versions are written in PEP 440 normal form (``str(Version)``) and an
optional field set to ``null`` is read as absent, as the client always did. Signatures never
depend on either: they are checked over the canonical bytes of the ``signed`` object as
received (:func:`gupper.manifest.verify_manifest`), not over a re-serialisation.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

from packaging.version import InvalidVersion, Version

from ..errors import ConfigError, MalformedError
from ..keys import TrustedKeys
from ..records import field, record
from .canonical import MAX_INT, format_time, is_sha256, parse_time

MANIFEST_TYPE = "gupper-manifest"
SCHEMA_VERSION = 1
BINARY = "binary"
ARCHIVE = "archive"
APP = "app"
"""A macOS app bundle (``<name>.app``): an archive of the bundle's ``Contents/``, swapped as a whole."""
ARTIFACT_TYPES = (BINARY, ARCHIVE, APP)
ARCHIVE_FORMAT = "tar.gz"
PATCH_FORMAT = "bsdiff4"
"""A binary patch of a one-file release (``binary`` entries)."""
FILES_PATCH_FORMAT = "files-bsdiff4"
"""A patch index of per-file bsdiff4 patches of a one-folder release (``archive`` entries; :mod:`gupper.wire.files`)."""
MAX_MANIFEST_BYTES = 1 << 20

Json = dict[str, Any]


def _require(obj: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in obj:
        raise MalformedError(f"manifest {where} lacks field {key!r}; regenerate it with gupper-publish")
    return _typed(obj, key, kind, where)


def _optional(obj: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """The field's value, or None when it is absent or ``null`` (read as absent, as clients always did)."""
    if obj.get(key) is None:
        return None
    return _typed(obj, key, kind, where)


def _typed(obj: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = obj[key]
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        raise MalformedError(f"manifest {where} field {key!r} has the wrong type; regenerate it with gupper-publish")
    return value


def _object(raw: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(raw, dict):
        raise MalformedError(f"manifest {where} is not an object")
    return raw


def _unknown(raw: Mapping[str, Any], known: frozenset[str]) -> Json:
    return {k: v for k, v in raw.items() if k not in known}


def _size(obj: Mapping[str, Any], where: str) -> int:
    size: int = _require(obj, "size", int, where)
    if not 0 < size <= MAX_INT:
        raise MalformedError(f"manifest {where} has size {size}, which is out of range")
    return size


def _optional_size(obj: Mapping[str, Any], key: str, where: str) -> int | None:
    value: int | None = _optional(obj, key, int, where)
    if value is not None and not 0 <= value <= MAX_INT:
        raise MalformedError(f"manifest {where} has {key} {value}, which is out of range")
    return value


def _digest(obj: Mapping[str, Any], key: str, where: str, *, required: bool = True) -> str | None:
    value: str | None = _require(obj, key, str, where) if required else _optional(obj, key, str, where)
    if value is not None and not is_sha256(value):
        raise MalformedError(f"manifest {where} has a {key} that is not 64 lowercase hex digits")
    return value


def _url(obj: Mapping[str, Any], key: str, where: str, *, required: bool = True) -> str | None:
    url: str | None = _require(obj, key, str, where) if required else _optional(obj, key, str, where)
    if url is not None:
        check_entry_url(url, where)
    return url


def check_entry_url(url: str, where: str) -> None:
    """A relative reference or an absolute http(s) URL that parses, checked once at parse time so
    that no later step meets a URL it cannot handle.

    Raises:
        MalformedError: anything else (the message names ``where``).
    """
    if not url or len(url) > 2048 or not url.isprintable() or any(c in url for c in "\\ ") or url.startswith("//"):
        raise MalformedError(f"manifest {where} has an unusable url {url[:60]!r}")
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises for a port that is not a number in range
        urljoin("https://gupper.invalid/app/stable/latest.json", url)
    except ValueError as e:
        raise MalformedError(f"manifest {where} has a url that does not parse ({e}): {url[:60]!r}") from e
    if parts.scheme not in ("", "https", "http") or (parts.scheme and not parts.hostname):
        raise MalformedError(f"manifest {where} has a url that is neither relative nor http(s): {url[:60]!r}")


def _put(out: Json, key: str, value: Any) -> None:
    if value is not None:
        out[key] = value


@record(frozen=True)
class Patch:
    """A delta to an entry's file from an earlier release: one ``bsdiff4`` patch of a one-file
    release from the installed file ``from_sha256``, or a ``files-bsdiff4`` patch index of a
    one-folder release from the file list ``from_sha256`` of ``from_version``. A client skips a
    format it does not know."""

    format: str
    url: str
    size: int
    sha256: str
    from_sha256: str | None = None
    from_version: str | None = None
    download: int | None = None
    """``files-bsdiff4``: the bytes a client with exactly ``from_version``'s files fetches in all."""
    unknown: Mapping[str, Any] = field(default_factory=dict)

    KNOWN = frozenset({"format", "url", "size", "sha256", "from_sha256", "from_version", "download"})

    @classmethod
    def from_json(cls, raw: Any, where: str) -> Patch:
        """Parse one item of an entry's ``patches``.

        Raises:
            MalformedError: a missing field, a wrong type, a size out of range, a digest that is not
                64 lowercase hex digits or an unusable url.
        """
        obj = _object(raw, where)
        return cls(
            format=_require(obj, "format", str, where),
            url=_url(obj, "url", where) or "",
            size=_size(obj, where),
            sha256=_digest(obj, "sha256", where) or "",
            from_sha256=_digest(obj, "from_sha256", where, required=False),
            from_version=_optional(obj, "from_version", str, where),
            download=_optional_size(obj, "download", where),
            unknown=_unknown(obj, cls.KNOWN),
        )

    def to_json(self) -> Json:
        """The object as it appears in ``patches``."""
        out: Json = dict(self.unknown)
        _put(out, "from_version", self.from_version)
        _put(out, "from_sha256", self.from_sha256)
        _put(out, "download", self.download)
        out.update(format=self.format, url=self.url, size=self.size, sha256=self.sha256)
        return out


@record(frozen=True)
class Rollout:
    """A staged rollout: the entry is offered to ``percent`` % of installs, sampled by ``id``."""

    percent: int
    id: str
    unknown: Mapping[str, Any] = field(default_factory=dict)

    KNOWN = frozenset({"percent", "id"})

    @classmethod
    def from_json(cls, raw: Any, platform: str) -> Rollout:
        """Parse an entry's ``rollout``.

        Raises:
            MalformedError: not ``{"percent": 0..100, "id": "..."}``.
        """
        if (
            not isinstance(raw, dict)
            or isinstance(raw.get("percent"), bool)
            or not isinstance(raw.get("percent"), int)
            or not isinstance(raw.get("id"), str)
        ):
            raise MalformedError(
                f"manifest entry {platform[:40]!r} has a malformed 'rollout'; regenerate it with gupper-publish"
            )
        percent = raw["percent"]
        if not 0 <= percent <= 100:
            raise MalformedError(f"manifest entry {platform[:40]!r} has rollout percent {percent}, outside 0..100")
        return cls(percent, raw["id"], _unknown(raw, cls.KNOWN))

    def to_json(self) -> Json:
        """The object as it appears under ``rollout``."""
        return {**self.unknown, "percent": self.percent, "id": self.id}


@record(frozen=True)
class Entry:
    """One platform's release in a manifest (or the ``fallback`` of a staged one).

    ``platform`` is the key it is listed under (not a field of the object). ``type`` is
    ``binary`` or ``archive``; a client skips a type it does not know. The one-folder fields
    (``format``, ``files_sha256``, ``files_url``, ``blobs_url``) are docs/packages.md's.
    """

    platform: str
    version: Version
    type: str
    url: str
    size: int
    sha256: str
    notes: str | None = None
    format: str | None = None
    files_sha256: str | None = None
    files_url: str | None = None
    blobs_url: str | None = None
    patches: tuple[Patch, ...] = ()
    rollout: Rollout | None = None
    fallback: Entry | None = None
    unknown: Mapping[str, Any] = field(default_factory=dict)

    CORE = frozenset({"version", "type", "url", "size", "sha256"})
    KNOWN = CORE | {"notes", "format", "files_sha256", "files_url", "blobs_url", "patches", "rollout", "fallback"}

    @classmethod
    def from_json(cls, platform: str, raw: Any, where: str | None = None) -> Entry:
        """Parse one platform entry.

        Raises:
            MalformedError: a missing field, a wrong type, a value out of range, a version that is
                not PEP 440, a digest that is not 64 lowercase hex digits, an unusable url, or a
                malformed ``patches``, ``rollout`` or ``fallback``.
        """
        where = where or f"entry {platform[:40]!r}"
        obj = _object(raw, where)
        version_text = _require(obj, "version", str, where)
        try:
            version = Version(version_text)
        except InvalidVersion as e:
            raise MalformedError(f"manifest {where} has version {version_text[:40]!r}, which is not PEP 440") from e
        patches = _optional(obj, "patches", list, where) or []
        rollout, fallback = obj.get("rollout"), obj.get("fallback")
        return cls(
            platform=platform,
            version=version,
            type=_require(obj, "type", str, where),
            url=_url(obj, "url", where) or "",
            size=_size(obj, where),
            sha256=_digest(obj, "sha256", where) or "",
            notes=_optional(obj, "notes", str, where),
            format=_optional(obj, "format", str, where),
            files_sha256=_digest(obj, "files_sha256", where, required=False),
            files_url=_url(obj, "files_url", where, required=False),
            blobs_url=_url(obj, "blobs_url", where, required=False),
            patches=tuple(Patch.from_json(p, f"{where} patch {i}") for i, p in enumerate(patches)),
            rollout=Rollout.from_json(rollout, platform) if rollout is not None else None,
            fallback=cls.from_json(platform, fallback, f"{where} fallback") if fallback is not None else None,
            unknown=_unknown(obj, cls.KNOWN),
        )

    def to_json(self) -> Json:
        """The object as it appears under ``platforms``."""
        out: Json = dict(self.unknown)
        out.update(version=str(self.version), type=self.type, url=self.url, size=self.size, sha256=self.sha256)
        out.update(self._optional_json())
        return out

    def _optional_json(self) -> Json:
        out: Json = {}
        _put(out, "notes", self.notes)
        _put(out, "format", self.format)
        _put(out, "files_sha256", self.files_sha256)
        _put(out, "files_url", self.files_url)
        _put(out, "blobs_url", self.blobs_url)
        if self.patches:
            out["patches"] = [p.to_json() for p in self.patches]
        _put(out, "rollout", self.rollout.to_json() if self.rollout else None)
        _put(out, "fallback", self.fallback.to_json() if self.fallback else None)
        return out

    @property
    def extra(self) -> Mapping[str, Any]:
        """Every field beyond the five core ones, as JSON (read-only; the typed fields are the
        way to read them: this view is kept for code written before they existed)."""
        return {**self.unknown, **self._optional_json()}

    def patches_of(self, fmt: str) -> tuple[Patch, ...]:
        """The patches of one format (``bsdiff4``, ``files-bsdiff4``), in manifest order."""
        return tuple(p for p in self.patches if p.format == fmt)


@record(frozen=True)
class KeySet:
    """A trusted key set a manifest announces (key rotation): ``ed25519:...`` lines and a threshold."""

    keys: tuple[str, ...]
    threshold: int
    unknown: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, raw: Any) -> KeySet:
        """Parse the ``keys`` field.

        Raises:
            MalformedError: not ``{"keys": [...], "threshold": n}``, or a set that cannot be used
                (a bad key, a key listed twice, a threshold out of range).
        """
        if (
            not isinstance(raw, dict)
            or not isinstance(raw.get("keys"), list)
            or not all(isinstance(k, str) for k in raw["keys"])
            or isinstance(raw.get("threshold"), bool)
            or not isinstance(raw.get("threshold"), int)
        ):
            raise MalformedError("manifest field 'keys' must be {'keys': [...], 'threshold': n}")
        key_set = cls(tuple(raw["keys"]), raw["threshold"], _unknown(raw, frozenset({"keys", "threshold"})))
        try:
            key_set.trusted()
        except ConfigError as e:
            raise MalformedError(f"manifest announces an unusable key set: {e}") from e
        return key_set

    def trusted(self) -> TrustedKeys:
        """The key set as the client verifies with it.

        Raises:
            ConfigError: a key that does not parse, a key listed twice or a threshold out of range.
        """
        return TrustedKeys.from_texts(self.keys, self.threshold)

    def to_json(self) -> Json:
        """The object as it appears under ``keys``."""
        return {**self.unknown, "keys": list(self.keys), "threshold": self.threshold}


@record(frozen=True)
class Manifest:
    """The ``signed`` payload of a manifest: what one app channel offers each platform.

    ``signed_bytes`` and ``signatures`` are set by :func:`gupper.manifest.verify_manifest` (the
    canonical bytes the signatures covered, and the signatures); a payload built by the
    publisher has neither until it is signed.
    """

    app: str
    channel: str
    serial: int
    created: datetime
    expires: datetime
    entries: Mapping[str, Entry]
    signed_bytes: bytes = b""
    signatures: tuple[Any, ...] = ()
    key_set: KeySet | None = None
    yanked: tuple[Version, ...] = ()
    unknown: Mapping[str, Any] = field(default_factory=dict)

    KNOWN = frozenset(
        {"_type", "schema", "app", "channel", "serial", "created", "expires", "platforms", "yanked", "keys"}
    )

    @property
    def keys(self) -> TrustedKeys | None:
        """The key set this manifest announces (checked when it was parsed), or None."""
        return self.key_set.trusted() if self.key_set is not None else None

    def entry_for(self, platform_key: str) -> Entry | None:
        """The entry for ``linux-amd64`` etc., or None: never another platform's file."""
        return self.entries.get(platform_key)

    @classmethod
    def from_json(cls, signed: Any, signed_bytes: bytes = b"") -> Manifest:
        """Parse a ``signed`` object (the caller has checked its signatures, or wrote it).

        Raises:
            MalformedError: not a schema 1 Gupper manifest, or any field of the wrong type or out
                of range (entries, yanks and the key set included).
        """
        if not isinstance(signed, dict):
            raise MalformedError("manifest 'signed' is not an object")
        if _require(signed, "_type", str, "payload") != MANIFEST_TYPE:
            raise MalformedError(f"manifest '_type' is not {MANIFEST_TYPE!r}: this is not a Gupper manifest")
        schema = _require(signed, "schema", int, "payload")
        if schema != SCHEMA_VERSION:
            raise MalformedError(
                f"manifest schema {schema} is not supported by this app (it reads schema "
                f"{SCHEMA_VERSION}); publish with a matching gupper-publish"
            )
        serial = _require(signed, "serial", int, "payload")
        if not 0 < serial <= MAX_INT:
            raise MalformedError(f"manifest serial {serial} is out of range")
        raw_entries = _require(signed, "platforms", dict, "payload")
        keys = signed.get("keys")
        return cls(
            app=_require(signed, "app", str, "payload"),
            channel=_require(signed, "channel", str, "payload"),
            serial=serial,
            created=parse_time(signed.get("created"), "created"),
            expires=parse_time(signed.get("expires"), "expires"),
            entries={key: Entry.from_json(key, raw) for key, raw in raw_entries.items()},
            signed_bytes=signed_bytes,
            key_set=KeySet.from_json(keys) if keys is not None else None,
            yanked=_parse_yanked(signed),
            unknown=_unknown(signed, cls.KNOWN),
        )

    def to_json(self) -> Json:
        """The ``signed`` object: ``yanked`` and ``keys`` only when set (docs/schema-extensions.md)."""
        out: Json = dict(self.unknown)
        out.update(
            {
                "_type": MANIFEST_TYPE,
                "schema": SCHEMA_VERSION,
                "app": self.app,
                "channel": self.channel,
                "serial": self.serial,
                "created": format_time(self.created),
                "expires": format_time(self.expires),
                "platforms": {key: self.entries[key].to_json() for key in sorted(self.entries)},
            }
        )
        if self.yanked:
            out["yanked"] = [str(v) for v in self.yanked]
        if self.key_set is not None:
            out["keys"] = self.key_set.to_json()
        return out


def _parse_yanked(signed: Mapping[str, Any]) -> tuple[Version, ...]:
    raw = signed.get("yanked", [])
    if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
        raise MalformedError("manifest field 'yanked' must be a list of version strings")
    try:
        return tuple(Version(v) for v in raw)
    except InvalidVersion as e:
        raise MalformedError("manifest field 'yanked' holds a version that is not PEP 440") from e
