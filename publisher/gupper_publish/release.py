"""Release management over the channel engine: promote, rollout, yank, key rotation, prune, init.

Every command that changes what clients see goes through :func:`gupper_publish.publish.update_channel`
(state compare-and-swap, then the manifest); see docs/release-management.md.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from packaging.version import InvalidVersion, Version

from gupper.wire.canonical import format_time, valid_app_name

from . import channels as ch
from . import folder_delta
from .artifacts import ArtifactName, parse_artifact_name
from .errors import BadArtifactNameError, NotFoundError, PublishError
from .layout import app_of, artifact_key, manifest_key, release_prefix, split_key
from .publish import (
    ManifestResult,
    PublishOptions,
    change_channel,
    load_channel,
    regenerate_manifest,
    update_channel,
)
from .stores import LocalStore, ObjectInfo, S3Store, Store


def parse_version(text: str) -> Version:
    """A version argument; says what is wrong with a bad one."""
    try:
        return Version(text)
    except InvalidVersion as e:
        raise PublishError(f"{text!r} is not a PEP 440 version (e.g. 1.2.0)") from e


@dataclass(frozen=True)
class Release:
    """One published artifact as found in the store."""

    name: ArtifactName
    size: int

    @property
    def key(self) -> str:
        """Its store key."""
        return self.name.key


def releases_in(objects: Iterable[ObjectInfo], app: str) -> list[Release]:
    """The artifacts of ``app`` among a store listing; anything else (manifests, strays) is ignored."""
    out = []
    for obj in objects:
        parts = split_key(obj.key)
        if parts is None or parts.app != app:
            continue
        try:
            name = parse_artifact_name(parts.name)
        except BadArtifactNameError:
            continue
        # Only a file at its own canonical key counts: a stray copy elsewhere is not a release.
        if name.app == app and name.key == obj.key:
            out.append(Release(name, obj.size))
    return out


@dataclass
class AppListing:
    """What the store holds for one app: its channels and every release file."""

    channels: list[str] = field(default_factory=list)
    releases: list[Release] = field(default_factory=list)

    def versions(self) -> list[Version]:
        """Every version with at least one file in the store, newest first."""
        return sorted({r.name.version for r in self.releases}, reverse=True)


def discover(store: Store, app: str | None = None) -> dict[str, AppListing]:
    """Apps in the store (or just ``app``), each with its channels and release files, from one listing."""
    if app is not None and not valid_app_name(app):
        raise PublishError(f"invalid app {app!r}: use letters, digits, '.', '_' or '-'")
    objects = store.list(app or "")
    apps: dict[str, AppListing] = {}
    for obj in objects:
        parts = split_key(obj.key)
        if parts is not None and parts.is_channel_file and valid_app_name(parts.app):
            try:
                ch.check_channel_name(parts.folder)
            except PublishError:
                continue
            listing = apps.setdefault(parts.app, AppListing())
            if parts.folder not in listing.channels:
                listing.channels.append(parts.folder)
    for name in {app_of(o.key) for o in objects}:
        found = releases_in(objects, name)
        if found:
            apps.setdefault(name, AppListing()).releases = sorted(
                found, key=lambda r: (r.name.version, r.name.platform)
            )
    for listing in apps.values():
        listing.channels.sort(key=lambda c: (c != ch.DEFAULT_CHANNEL, c))
    return dict(sorted(apps.items()))


def _app(store: Store, app: str) -> AppListing:
    found = discover(store, app).get(app)
    if found is None:
        raise NotFoundError(f"no app {app!r} in {store.url}; see 'gupper-publish list'")
    return found


def artifacts_in_store(store: Store, app: str, version: Version) -> dict[str, ch.ArtifactRecord]:
    """The files of ``app`` ``version`` that the store holds, per platform (reads sha256 from metadata or content)."""
    found = [r for r in releases_in(store.list(release_prefix(app, version)), app) if r.name.version == version]
    out = {}
    for r in found:
        record = ch.ArtifactRecord(r.name.filename, r.size, store.sha256_of(r.key))
        listed = folder_delta.read_list(store, app, version, record.file) if record.type == "archive" else None
        if listed is not None:  # stored beside the archive when it was published: folder deltas keep working
            record = replace(record, files_sha256=hashlib.sha256(listed).hexdigest(), blobs=True)
        out[r.name.platform.key] = record
    return out


def promote(
    store: Store,
    app: str,
    version_text: str,
    *,
    to_channel: str,
    options: PublishOptions,
    from_channel: str | None = None,
    rollout: int | None = None,
) -> ManifestResult:
    """Add an uploaded release to ``to_channel`` without uploading anything.

    Its files come from ``from_channel``'s record, or, without one, from what the store holds for
    that version. Each must still be in the store (a pruned release cannot come back this way).
    """
    version = parse_version(version_text)
    ch.check_channel_name(to_channel)
    if from_channel is not None:
        if from_channel == to_channel:
            raise PublishError(f"--from and --to are both {to_channel}; name another channel")
        source = load_channel(store, app, from_channel).state
        record = source.find(version)
        if record is None:
            raise NotFoundError(f"{version} is not in {app}/{from_channel}; see 'gupper-publish list {app}'")
        if source.is_yanked(version):
            raise PublishError(f"{version} was yanked from {app}/{from_channel}; a yanked release cannot be promoted")
        version, artifacts = record.version, dict(record.artifacts)
    else:
        artifacts = artifacts_in_store(store, app, version)
        if not artifacts:
            raise NotFoundError(f"no files of {app} {version} in {store.url}; publish them first")
    for art in artifacts.values():
        key = artifact_key(app, version, art.file)
        info = store.head(key)
        if info is None or info.size != art.size:
            raise PublishError(f"{key} is no longer in {store.url} (pruned?); publish that file again")
    added = format_time(options.clock())

    def mutate(state: ch.ChannelState) -> ch.ChannelState:
        return ch.add_release(state, version, artifacts, rollout=rollout, added=added)

    return update_channel(store, app, to_channel, mutate, replace(options, channel=to_channel))


def set_rollout(store: Store, app: str, version_text: str, percent: int, options: PublishOptions) -> ManifestResult:
    """Set a release's rollout in ``options.channel``: raise it, halt it (0) or complete it (100)."""
    version = parse_version(version_text)
    ch.check_percent(percent)
    return update_channel(store, app, options.channel, lambda s: ch.set_rollout(s, version, percent), options)


def yank(
    store: Store, app: str, version_text: str, options: PublishOptions, channels: Sequence[str] | None = None
) -> list[ManifestResult]:
    """Withdraw a release from ``channels`` (default: every channel that carries it).

    Each manifest is regenerated without it and lists it under the signed ``yanked`` field, so
    installs running it go back to the best remaining release.
    """
    version = parse_version(version_text)
    if channels is None:
        channels = []
        for name in _app(store, app).channels:
            state = load_channel(store, app, name).state
            if state.find(version) is not None or state.is_yanked(version):
                channels.append(name)
        if not channels:
            raise NotFoundError(f"{version} is in no channel of {app}; see 'gupper-publish list {app}'")
    return [update_channel(store, app, c, lambda s: ch.yank(s, version), replace(options, channel=c)) for c in channels]


def resign(
    store: Store, app: str, options: PublishOptions, channels: Sequence[str] | None = None
) -> list[ManifestResult]:
    """Re-sign the manifests of ``channels`` (default: every channel of ``app`` in the store) with
    the next serial and a fresh expiry, so that none of them expires unnoticed (run it from cron)."""
    names = list(channels) if channels is not None else _app(store, app).channels
    if not names:
        raise NotFoundError(f"{app} has no channel in {store.url}; publish a release first")
    return [regenerate_manifest(store, app, replace(options, channel=c), force=True) for c in names]


def rotate_keys(
    store: Store, app: str, new_keys: Sequence[str], threshold: int, options: PublishOptions
) -> ManifestResult:
    """Announce a new trusted key set in ``options.channel``'s manifest (the ``keys`` field).

    The manifest must be signed by a threshold of the new set and, when the channel already
    announced one, of the old set too: pass ``--key`` for old and new keys.
    """
    snap = load_channel(store, app, options.channel)
    if snap.manifest is None and snap.state_etag is None:
        raise NotFoundError(f"{app}/{options.channel} has no manifest in {store.url}; publish a release to it first")
    return update_channel(store, app, options.channel, lambda s: ch.set_keys(s, new_keys, threshold), options)


@dataclass(frozen=True)
class PruneReport:
    """What ``prune`` kept and deleted."""

    app: str
    kept: list[str]
    referenced: list[str]
    deleted: list[str]
    dry_run: bool

    def to_json(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return dict(self.__dict__)


def prune(store: Store, app: str, keep: int, *, dry_run: bool = False) -> PruneReport:
    """Delete the files of releases older than the newest ``keep`` that no manifest references.

    "References" covers every channel's manifest and the manifest its state implies, entries and
    fallbacks alike. The releases are first removed from the channel states (compare-and-swap;
    a state that has meanwhile started to use one stops the prune), then their files deleted.
    Remaining race: a ``promote`` of one of these old releases into a channel already processed
    finds the files still there and would then point at deleted ones; do not run both at once.
    """
    if keep < 1:
        raise PublishError("--keep must be at least 1: prune never deletes the newest release")
    listing = _app(store, app)
    versions = listing.versions()
    referenced: set[Version] = set()
    for name in listing.channels:
        snap = load_channel(store, app, name)
        if snap.manifest is not None:
            referenced |= ch.referenced_versions(snap.manifest.entries)
        referenced |= ch.referenced_versions(ch.derived(snap.state, manifest_key(app, name)).entries)
    doomed = [v for v in versions[keep:] if v not in referenced]
    # Every object under a doomed version's prefix: its files and the patches made to it.
    deleted = sorted(o.key for v in doomed for o in store.list(release_prefix(app, v)))
    if not dry_run and doomed:
        for name in listing.channels:
            mkey = manifest_key(app, name)

            def forget(state: ch.ChannelState, mkey: str = mkey, name: str = name) -> ch.ChannelState:
                if ch.referenced_versions(ch.derived(state, mkey).entries) & set(doomed):
                    raise PublishError(
                        f"{app}/{name} changed while pruning and now serves a release being pruned; run prune again"
                    )
                return ch.remove_releases(state, doomed)

            # Removing releases no manifest uses leaves every manifest as it is: no signing needed.
            change_channel(store, app, name, forget, signers=None)
        for key in deleted:
            store.delete(key)
    return PruneReport(
        app,
        kept=[str(v) for v in versions[:keep]],
        referenced=[str(v) for v in sorted(referenced, reverse=True)],
        deleted=deleted,
        dry_run=dry_run,
    )


@dataclass(frozen=True)
class InitReport:
    """What ``init`` did."""

    store: str
    created: bool
    policy: dict[str, Any] | None

    def to_json(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return dict(self.__dict__)


def init_store(store: Store) -> InitReport:
    """Create the bucket if needed and apply the public-read policy (GetObject under the store prefix, no listing).

    A folder store only needs to exist; serving it read-only is the web server's job.
    """
    import json

    from gupper_publish.policy import render_public_read_policy

    if isinstance(store, LocalStore):
        created = not store.root.exists()
        store.root.mkdir(parents=True, exist_ok=True)
        return InitReport(store.url, created, None)
    if not isinstance(store, S3Store):
        raise PublishError(f"init does not know how to set up {store.url}")
    try:
        policy = render_public_read_policy(store.bucket, prefix=store.prefix)
    except ValueError as e:
        raise PublishError(f"{e}; S3 bucket names are 3-63 characters of a-z, 0-9, '.' and '-'") from e
    created = store.ensure_bucket()
    store.put_bucket_policy(policy)
    return InitReport(store.url, created, json.loads(policy))
