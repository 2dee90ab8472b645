"""Publishing: upload immutable artifacts, then regenerate each channel manifest last.

The order is the safety argument: a manifest is only written after every object it names is
in the store, so a client never sees a manifest pointing at a missing file; and it is written
with compare-and-swap, so two publishers racing never lose each other's release.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from updater.manifest import valid_app_name

from .artifacts import ArtifactName, hash_file, manifest_key, parse_artifact_name
from .errors import AlreadyExists, ImmutableConflict, PreconditionFailed, PublishError
from .selection import build_signed, channel_takes_prereleases, entry_json, releases_in, select_latest
from .signing import sign_manifest
from .stores import ARTIFACT_CACHE_CONTROL, ARTIFACT_CONTENT_TYPE, MANIFEST_CACHE_CONTROL, MANIFEST_CONTENT_TYPE, Store

log = logging.getLogger("gupper.publish")

DEFAULT_EXPIRY = timedelta(days=30)
CAS_ATTEMPTS = 12


@dataclass(frozen=True)
class PublishOptions:
    """How to publish: channel, signing keys, manifest lifetime, clock."""

    keys: Sequence[Ed25519PrivateKey]
    channel: str = "stable"
    expires_in: timedelta = DEFAULT_EXPIRY
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))


@dataclass(frozen=True)
class Uploaded:
    """One artifact's fate in a publish."""

    key: str
    size: int
    sha256: str
    status: str  # "uploaded" or "unchanged"


@dataclass(frozen=True)
class ManifestResult:
    """A manifest after regeneration."""

    key: str
    serial: int
    changed: bool
    platforms: dict[str, str]


@dataclass(frozen=True)
class PublishReport:
    """What a publish did."""

    artifacts: list[Uploaded]
    manifests: list[ManifestResult]

    def to_json(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return {
            "artifacts": [a.__dict__ for a in self.artifacts],
            "manifests": [m.__dict__ for m in self.manifests],
        }


def _prepare(paths: Sequence[Path]) -> list[tuple[Path, ArtifactName, str, int]]:
    prepared = []
    for path in paths:
        if not path.is_file():
            raise PublishError(f"{path} is not a file; pass built artifacts such as dist/app-1.2.0-linux-amd64")
        name = parse_artifact_name(path.name)
        digest, size = hash_file(path)
        if size == 0:
            raise PublishError(f"{path} is empty; rebuild it")
        prepared.append((path, name, digest, size))
    return prepared


def upload_artifacts(store: Store, paths: Sequence[Path]) -> list[Uploaded]:
    """Upload each artifact to its immutable key; identical re-uploads are no-ops.

    Every name is checked before anything is uploaded, so one bad file fails the whole call
    without leaving the others half-published.
    """
    prepared = _prepare(paths)
    plan = []
    for path, name, digest, size in prepared:
        existing = store.head(name.key)
        if existing is not None:
            _check_same(store, name.key, existing.size, digest, size)
            plan.append((path, name, digest, size, False))
        else:
            plan.append((path, name, digest, size, True))
    done = []
    for path, name, digest, size, needed in plan:
        status = "unchanged"
        if needed:
            try:
                store.create_file(name.key, path, sha256=digest, content_type=ARTIFACT_CONTENT_TYPE, cache_control=ARTIFACT_CACHE_CONTROL)
                status = "uploaded"
            except AlreadyExists:
                # Another publisher created it between our HEAD and PUT: fine if it is the same file.
                info = store.head(name.key)
                _check_same(store, name.key, info.size if info else -1, digest, size)
        done.append(Uploaded(name.key, size, digest, status))
    return done


def _check_same(store: Store, key: str, existing_size: int, digest: str, size: int) -> None:
    if existing_size != size or store.sha256_of(key) != digest:
        raise ImmutableConflict(f"{key} is already published with different content; releases are immutable, so bump the version and publish again")


def _previous(store: Store, key: str) -> tuple[dict[str, Any] | None, str | None]:
    stored = store.read(key)
    if stored is None:
        return None, None
    try:
        doc = json.loads(stored.data)
        signed = doc["signed"]
        int(signed["serial"])
    except (ValueError, KeyError, TypeError) as e:
        raise PublishError(f"the existing manifest {key} is unreadable; inspect it, and delete it to start again at serial 1") from e
    return signed, stored.etag


def regenerate_manifest(store: Store, app: str, options: PublishOptions, *, force: bool = False) -> ManifestResult:
    """Rebuild ``app``'s channel manifest from what the store holds (compare-and-swap loop).

    ``force`` writes a new serial and expiry even when no entry changed (re-signing).
    """
    if not valid_app_name(app) or not valid_app_name(options.channel):
        raise PublishError(f"invalid app {app!r} or channel {options.channel!r}: use letters, digits, '.', '_' or '-'")
    key = manifest_key(app, options.channel)
    for attempt in range(CAS_ATTEMPTS):
        previous, etag = _previous(store, key)
        winners = select_latest(releases_in(store.list(app), app), include_prereleases=channel_takes_prereleases(options.channel))
        old_platforms: dict[str, Any] = dict(previous["platforms"]) if previous else {}
        platforms: dict[str, dict[str, Any]] = {}
        for platform, release in winners.items():
            old = old_platforms.get(platform.key)
            if isinstance(old, dict) and old.get("version") == str(release.name.version) and old.get("size") == release.size:
                sha = str(old["sha256"])  # already signed for; save re-reading the object
            else:
                sha = store.sha256_of(release.key)
            platforms[platform.key] = entry_json(release, sha, key)
        summary = {p: str(v["version"]) for p, v in sorted(platforms.items())}
        if previous is not None and previous.get("platforms") == platforms and not force:
            return ManifestResult(key, int(previous["serial"]), False, summary)
        serial = int(previous["serial"]) + 1 if previous else 1
        signed = build_signed(app=app, channel=options.channel, serial=serial, now=options.clock(), expires_in=options.expires_in, platforms=platforms)
        body = sign_manifest(signed, options.keys)
        try:
            store.swap(key, body, expect_etag=etag, content_type=MANIFEST_CONTENT_TYPE, cache_control=MANIFEST_CACHE_CONTROL)
        except PreconditionFailed:
            # Lost a race with another publisher: back off with jitter, re-read, rebuild.
            time.sleep(min(2.0, 0.05 * 2**attempt) * random.uniform(0.5, 1.5))
            continue
        return ManifestResult(key, serial, True, summary)
    raise PublishError(f"{key} kept changing under us ({CAS_ATTEMPTS} attempts); another publisher is busy, try again")


def publish(store: Store, paths: Sequence[Path], options: PublishOptions) -> PublishReport:
    """Upload ``paths`` and regenerate the manifest of every app they belong to."""
    if not paths:
        raise PublishError("nothing to publish; pass one or more built artifacts")
    if not options.keys:
        raise PublishError("no signing key; pass --key or set GUPPER_SIGNING_KEY")
    uploaded = upload_artifacts(store, paths)
    apps = sorted({u.key.split("/", 1)[0] for u in uploaded})
    manifests = [regenerate_manifest(store, app, options) for app in apps]
    return PublishReport(uploaded, manifests)
