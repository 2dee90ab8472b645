"""Publishing: upload immutable artifacts, record them in the channel state, write the manifest last.

The order is the safety argument: artifacts first (create-only), then the channel state
(compare-and-swap), then the manifest derived from that state (compare-and-swap). A client never
sees a manifest naming a missing file, and two publishers racing never lose each other's release.

Serials: the state carries the serial of the manifest it implies and bumps it by exactly one when
a change alters the manifest's content (or on re-signing). The manifest is then written from the
newest state, unless a manifest with that serial or a higher one is already there, which was
derived from a state including this change. So N content-changing publishes raise the serial by
exactly N however they interleave, and it never goes down.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packaging.version import Version

from gupper.errors import MalformedError
from gupper.manifest import load_envelope
from gupper.platforms import current_platform
from gupper.wire.canonical import format_time, valid_app_name
from gupper.wire.manifest import APP, Manifest

from . import folder_delta
from .archive import archive_name_for, make_archive
from .artifacts import PACKAGE_SUFFIXES, ZIP_SUFFIX, ArtifactName, artifact_filename, hash_file, parse_artifact_name
from .channels import (
    DEFAULT_CHANNEL,
    ArtifactRecord,
    ChannelState,
    PatchRecord,
    add_release,
    check_channel_name,
    check_notes,
    check_percent,
    derive,
    derived,
    describe,
    payload_of,
    seed_from_manifest,
    state_from_json,
    state_to_json,
)
from .delta import DEFAULT_PATCHES, make_patches, previous_files
from .errors import (
    AlreadyExistsError,
    BadArtifactNameError,
    ImmutableConflictError,
    NotAnExecutableError,
    NotFoundError,
    PreconditionFailedError,
    PublishError,
    SigningKeyError,
    StoreBusyError,
    UntrustedKeyError,
)
from .exe_check import check_archive_entry, check_file
from .extras import require
from .layout import ARCHIVE_SUFFIX, BUNDLE_SUFFIX, manifest_key, patch_key, state_key
from .locks import work_folder
from .signing import public_key_of, sign_manifest
from .stores import (
    ARTIFACT_CACHE_CONTROL,
    ARTIFACT_CONTENT_TYPE,
    MANIFEST_CACHE_CONTROL,
    MANIFEST_CONTENT_TYPE,
    Progress,
    Store,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # the publisher extra

log = logging.getLogger("gupper.publish")

DEFAULT_EXPIRY = timedelta(days=30)
CAS_ATTEMPTS = 12

ProgressFactory = Callable[[str, int], AbstractContextManager[Progress | None]]
"""Given what is being done (``uploading app-1.2.0-linux-amd64``) and its size in bytes (0: unknown,
a step without a byte count such as making patches), a context yielding a byte-count callback
(or None for no display)."""


@dataclass(frozen=True)
class PublishOptions:
    """How to publish: channel, signing keys, manifest lifetime, clock."""

    keys: Sequence[Ed25519PrivateKey]
    channel: str = DEFAULT_CHANNEL
    expires_in: timedelta = DEFAULT_EXPIRY
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    # The next serial written is at least this: an app moved to a new store continues the old
    # store's serial, which its installs have seen (docs/release-management.md).
    min_serial: int = 0


@dataclass(frozen=True)
class Uploaded:
    """One artifact's fate in a publish."""

    key: str
    size: int
    sha256: str
    status: str  # "uploaded" or "unchanged"


@dataclass(frozen=True)
class ManifestResult:
    """A manifest after a command: its key, serial, whether this call wrote it, and per platform what it serves."""

    key: str
    serial: int
    changed: bool
    platforms: dict[str, str]


@dataclass(frozen=True)
class PatchMade:
    """A binary patch (or, for a one-folder build, a per-file patch index) a publish listed in the manifest."""

    key: str
    from_version: str
    size: int
    sha256: str


@dataclass(frozen=True)
class PublishReport:
    """What a publish did: the artifacts, the patches to them from earlier releases, the manifests written."""

    artifacts: list[Uploaded]
    manifests: list[ManifestResult]
    patches: list[PatchMade] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return {
            "artifacts": [a.__dict__ for a in self.artifacts],
            "patches": [p.__dict__ for p in self.patches],
            "manifests": [m.__dict__ for m in self.manifests],
        }


# --- artifacts ---


@dataclass(frozen=True)
class _Prepared:
    path: Path
    name: ArtifactName
    sha256: str
    size: int
    patches: tuple[PatchRecord, ...] = ()
    files_sha256: str | None = None
    blobs: bool = False

    @property
    def record(self) -> ArtifactRecord:
        return ArtifactRecord(self.name.filename, self.size, self.sha256, self.patches, self.files_sha256, self.blobs)


@dataclass(frozen=True)
class Naming:
    """What a build is published as when its own name does not say it (``publish --app --version --platform``)."""

    app: str
    version: str
    platform: str | None = None  # <os>-<arch>; None: this machine's


def is_bundle(given: Path) -> bool:
    """Whether a build folder (or a user's ``.tar.gz``/``.zip`` of one) is a macOS app bundle: named
    ``*.app`` (``*.app.tar.gz``, ``*.app.zip``), or a folder holding ``Contents/Info.plist``."""
    name = given.name.removesuffix(ARCHIVE_SUFFIX).removesuffix(ZIP_SUFFIX)
    return name.endswith(BUNDLE_SUFFIX) or (given.is_dir() and (given / "Contents" / "Info.plist").is_file())


def _name_of(given: Path, folder: bool, naming: Naming | None) -> ArtifactName:
    """The artifact name ``given`` publishes as: ``naming``'s, else its own, which must then say app, version and
    platform."""
    bundle = folder and is_bundle(given)
    if naming is not None:
        platform = naming.platform or current_platform().key
        return artifact_filename(naming.app, naming.version, platform, folder=folder, bundle=bundle)
    try:
        name = parse_artifact_name(archive_name_for(given) if folder else given.name)
        if bundle and name.kind != APP:  # a bundle's folder named as a plain build: its content says what it is
            return artifact_filename(name.app, str(name.version), name.platform, folder=True, bundle=True)
        return name
    except BadArtifactNameError as e:
        what = "one-folder build" if folder else "build"
        raise BadArtifactNameError(
            f"{e}; rename the {what}, or keep its name and say what it is with --app NAME --version V "
            "[--platform OS-ARCH] (default: this machine's)"
        ) from e


def _prepare(
    paths: Sequence[Path],
    workdir: Path,
    post_install: str | None = None,
    *,
    force: bool = False,
    progress: ProgressFactory | None = None,
    naming: Naming | None = None,
) -> list[_Prepared]:
    """Name, hash and size of each artifact; a one-folder build (or a ``.tar.gz`` of one) is first
    packed into a deterministic archive under ``workdir``. Unless ``force``, each must be an
    executable for the platform its name says (for a folder: its entry point). ``naming`` names
    the one build in ``paths`` instead of its own name."""
    prepared = []
    for given in paths:
        path, files_sha256 = given, None
        if given.is_dir() or given.name.endswith(PACKAGE_SUFFIXES):
            if not given.exists():
                raise PublishError(
                    f"{given} does not exist; pass a one-folder build such as dist/app-1.2.0-linux-amd64/"
                )
            name = _name_of(given, True, naming)
            if name.kind == APP and post_install is not None:
                raise PublishError(
                    f"{given.name} is an app bundle, and a bundle runs no post-install hook (nothing inside a signed "
                    "bundle may change); drop --post-install"
                )
            with (progress or _no_progress)(f"packing {given.name}", 0):
                path, files_sha256 = make_archive(given, workdir, post_install, name.filename)
            # The clause brings its own verb ("has no entry point ...").
            problem = (
                None if force else check_archive_entry(path, name.app, name.platform.os, name.platform.arch, name.kind)
            )
        elif not path.is_file():
            raise PublishError(f"{path} is not a file; pass built artifacts such as dist/app-1.2.0-linux-amd64")
        else:
            name = _name_of(given, False, naming)
            found = (
                None if force or path.stat().st_size == 0 else check_file(path, name.platform.os, name.platform.arch)
            )
            problem = None if found is None else f"is {found}"
        if problem is not None:
            said = "its name says" if naming is None else "it is published for"
            raise NotAnExecutableError(
                f"{given.name} {problem}; {said} {name.platform.key}: publish the build made for it "
                f"(what PyInstaller wrote to dist/ on {name.platform.os}), or pass --force if this "
                "file really is what those installs should run"
            )
        with (progress or _no_progress)(f"hashing {path.name}", path.stat().st_size) as callback:
            digest, size = hash_file(path, progress=callback)
        if size == 0:
            raise PublishError(f"{path} is empty; rebuild it")
        prepared.append(_Prepared(path, name, digest, size, files_sha256=files_sha256))
    return prepared


def upload_artifacts(
    store: Store, paths: Sequence[Path], progress: ProgressFactory | None = None, *, force: bool = False
) -> list[Uploaded]:
    """Upload each artifact to its immutable key; identical re-uploads are no-ops.

    Every name (and, unless ``force``, that each file is an executable for the platform in its
    name) is checked before anything is uploaded, so one bad file fails the whole call without
    leaving the others half-published.
    """
    with work_folder() as workdir:
        return _upload(store, _prepare(paths, workdir, force=force, progress=progress), progress)


def _upload(store: Store, prepared: Sequence[_Prepared], progress: ProgressFactory | None) -> list[Uploaded]:
    plan = []
    for p in prepared:
        existing = store.head(p.name.key)
        if existing is not None:
            _check_same(store, p.name.key, existing.size, p.sha256, p.size)
        plan.append((p, existing is None))
    done = []
    for p, needed in plan:
        status = "unchanged"
        if needed:
            try:
                with (progress or _no_progress)(f"uploading {p.name.filename}", p.size) as callback:
                    store.create_file(
                        p.name.key,
                        p.path,
                        sha256=p.sha256,
                        content_type=ARTIFACT_CONTENT_TYPE,
                        cache_control=ARTIFACT_CACHE_CONTROL,
                        progress=callback,
                    )
                status = "uploaded"
            except AlreadyExistsError:
                # Another publisher created it between our HEAD and PUT: fine if it is the same file.
                info = store.head(p.name.key)
                _check_same(store, p.name.key, info.size if info else -1, p.sha256, p.size)
        done.append(Uploaded(p.name.key, p.size, p.sha256, status))
    return done


def _no_progress(name: str, size: int) -> AbstractContextManager[Progress | None]:
    return nullcontext(None)


def _check_same(store: Store, key: str, existing_size: int, digest: str, size: int) -> None:
    if existing_size != size or store.sha256_of(key) != digest:
        raise ImmutableConflictError(
            f"{key} is already published with different content; releases are immutable, so "
            "bump the version and publish again"
        )


# --- channel state and manifest: the compare-and-swap engine ---


@dataclass(frozen=True)
class ChannelSnapshot:
    """A channel as read: its state (seeded from the manifest if there is none yet) and manifest, with ETags."""

    state: ChannelState
    state_etag: str | None
    manifest: Manifest | None  # the manifest's ``signed`` object
    manifest_etag: str | None
    signed_by: frozenset[str] = frozenset()  # key ids of the manifest's signatures: what its installs accept now

    @property
    def manifest_serial(self) -> int:
        """The manifest's serial, 0 when there is none."""
        return self.manifest.serial if self.manifest else 0


Mutation = Callable[[ChannelState], ChannelState]


def _read_signed(store: Store, key: str) -> tuple[Manifest | None, str | None, frozenset[str]]:
    stored = store.read(key)
    if stored is None:
        return None, None, frozenset()
    try:
        signed, signatures = load_envelope(stored.data)
        manifest = Manifest.from_json(signed)
    except MalformedError as e:
        raise PublishError(
            f"the existing manifest {key} is unreadable ({e}); inspect it, and delete it to start again at serial 1"
        ) from e
    signed_by = frozenset(s["keyid"] for s in signatures if isinstance(s, dict) and isinstance(s.get("keyid"), str))
    return manifest, stored.etag, signed_by


def load_channel(store: Store, app: str, channel: str) -> ChannelSnapshot:
    """Read a channel's manifest, then its state.

    In that order: the state read second is at least as new as the one the manifest came from.
    A channel whose manifest predates channel state gets a state seeded from that manifest.
    """
    if not valid_app_name(app):
        raise PublishError(f"invalid app {app!r}: use letters, digits, '.', '_' or '-'")
    check_channel_name(channel)
    mkey, skey = manifest_key(app, channel), state_key(app, channel)
    manifest, manifest_etag, signed_by = _read_signed(store, mkey)
    stored = store.read(skey)
    if stored is not None:
        state = state_from_json(stored.data, app=app, channel=channel, where=f"{store.url}/{skey}")
    elif manifest is not None:
        state = seed_from_manifest(app, channel, manifest.to_json(), f"{store.url}/{mkey}")
    else:
        state = ChannelState(app, channel)
    return ChannelSnapshot(state, stored.etag if stored else None, manifest, manifest_etag, signed_by)


def _backoff(attempt: int) -> None:
    # Lost a race with another publisher: wait a jittered, growing moment before re-reading.
    time.sleep(min(1.0, 0.02 * 2**attempt) * random.uniform(0.5, 1.5))


def check_signers(
    state: ChannelState,
    signers: Sequence[Ed25519PrivateKey],
    previous: ChannelState | None = None,
    current: ChannelSnapshot | None = None,
) -> None:
    """Refuse to sign a manifest its clients would reject.

    While the channel's manifest (``current``) announces no key set, its installs trust the keys
    built into them, and the manifest there now shows which those are: every key that signed it
    must sign again (more keys may join; ``rotate-keys`` is how a new one becomes trusted). When
    the channel announces a key set (``keys``, from ``rotate-keys``), the signing keys must reach
    its threshold, and during a rotation also the threshold of the set before it.
    """
    have = {public_key_of(k).keyid for k in signers}
    if current is not None and current.manifest is not None and current.manifest.key_set is None:
        missing = current.signed_by - have
        if missing:
            raise UntrustedKeyError(
                f"{state.app}/{state.channel}: its installs trust the key(s) that signed its "
                f"manifest now (key id {_ids(current.signed_by)}), and the signing "
                f"key(s) given (key id {_ids(have)}) leave out {_ids(missing)}; sign with the key "
                "whose .pub is built into the app "
                "(--key or GUPPER_SIGNING_KEY), or move to a new key with 'gupper-publish "
                f"rotate-keys {state.app} --key OLD.key --key NEW.key ...'"
            )
    sets = [state.keys] + ([previous.keys] if previous is not None and previous.keys != state.keys else [])
    for keys in sets:
        if keys is None:
            continue
        trusted = keys.trusted()
        good = len(have & set(trusted.by_id()))
        if good < trusted.threshold:
            raise UntrustedKeyError(
                f"{state.app}/{state.channel} trusts {len(trusted.keys)} key(s) with threshold "
                f"{trusted.threshold}, and only {good} of the "
                "given signing keys are among them; pass --key for enough of the keys named by rotate-keys"
            )


def _ids(keyids: Iterable[str]) -> str:
    """Short key ids for a message (the first 16 hex digits, as 'gupper-publish keygen' prints them)."""
    return ", ".join(sorted(k[:16] for k in keyids)) or "none"


def change_channel(
    store: Store,
    app: str,
    channel: str,
    mutate: Mutation,
    *,
    signers: Sequence[Ed25519PrivateKey] | None,
    force: bool = False,
    min_serial: int = 0,
) -> ChannelState:
    """Apply ``mutate`` to the channel state with compare-and-swap and return the state written.

    The serial goes up by one when the derived manifest content changes, or always with
    ``force`` (re-signing), to at least ``min_serial``. ``signers`` (None: this change never
    needs signing) are checked against the channel's key set before anything is written.
    """
    key, mkey = state_key(app, channel), manifest_key(app, channel)
    for attempt in range(CAS_ATTEMPTS):
        snap = load_channel(store, app, channel)
        new = mutate(snap.state)
        if force or derive(new, mkey) != derive(snap.state, mkey):
            new = replace(new, serial=max(snap.state.serial, snap.manifest_serial, min_serial - 1) + 1)
        if signers is not None and new.serial != snap.state.serial:
            check_signers(new, signers, snap.state, snap)
        if new == snap.state:
            return new  # nothing to record (a seeded state is only written once something changes)
        try:
            store.swap(
                key,
                state_to_json(new),
                expect_etag=snap.state_etag,
                content_type=MANIFEST_CONTENT_TYPE,
                cache_control=MANIFEST_CACHE_CONTROL,
            )
        except PreconditionFailedError:
            _backoff(attempt)
            continue
        return new
    raise StoreBusyError(
        f"{store.url}/{key} kept changing under us ({CAS_ATTEMPTS} attempts); another "
        "publisher is busy, run the command again"
    )


def sync_manifest(store: Store, app: str, channel: str, options: PublishOptions) -> ManifestResult:
    """Make the channel's manifest say what its state says (compare-and-swap), and return it.

    A manifest already at the state's serial with the same content is left alone; one that
    differs (written by hand or by an older publisher) is replaced with the next serial.
    """
    mkey = manifest_key(app, channel)
    for attempt in range(CAS_ATTEMPTS):
        snap = load_channel(store, app, channel)
        wanted = derived(snap.state, mkey)
        if snap.manifest is not None and snap.manifest_serial >= snap.state.serial:
            if payload_of(snap.manifest) == wanted.to_json():
                return ManifestResult(mkey, snap.manifest_serial, False, describe(snap.manifest.entries))
            change_channel(store, app, channel, lambda s: s, signers=options.keys, force=True)
            continue
        if snap.state.serial == 0:
            raise NotFoundError(f"{app}/{channel} has no releases yet; publish one with --channel {channel}")
        check_signers(snap.state, options.keys, current=snap)
        now = options.clock()
        manifest = Manifest(
            app,
            channel,
            snap.state.serial,
            now,
            now + options.expires_in,
            wanted.entries,
            key_set=wanted.keys,
            yanked=wanted.yanked,
        )
        try:
            store.swap(
                mkey,
                sign_manifest(manifest.to_json(), options.keys),
                expect_etag=snap.manifest_etag,
                content_type=MANIFEST_CONTENT_TYPE,
                cache_control=MANIFEST_CACHE_CONTROL,
            )
        except PreconditionFailedError:
            _backoff(attempt)
            continue
        return ManifestResult(mkey, snap.state.serial, True, describe(wanted.entries))
    raise StoreBusyError(
        f"{store.url}/{mkey} kept changing under us ({CAS_ATTEMPTS} attempts); another "
        "publisher is busy, run the command again"
    )


def update_channel(
    store: Store, app: str, channel: str, mutate: Mutation, options: PublishOptions, *, force: bool = False
) -> ManifestResult:
    """Change a channel's state, then write the manifest it implies: the one path every command takes."""
    if not options.keys:
        raise SigningKeyError("no signing key; pass --key or set GUPPER_SIGNING_KEY")
    change_channel(store, app, channel, mutate, signers=options.keys, force=force, min_serial=options.min_serial)
    return sync_manifest(store, app, channel, options)


def regenerate_manifest(store: Store, app: str, options: PublishOptions, *, force: bool = False) -> ManifestResult:
    """Write ``app``'s channel manifest from its state if it is behind; ``force`` re-signs it with
    the next serial and a fresh expiry even when nothing changed (``resign``)."""
    snap = load_channel(store, app, options.channel)
    if snap.manifest is None and snap.state_etag is None:
        raise NotFoundError(f"{app}/{options.channel} has no manifest in {store.url}; publish a release to it first")
    return update_channel(store, app, options.channel, lambda s: s, options, force=force)


# --- publish ---


def _with_patches(
    store: Store, prepared: Sequence[_Prepared], channel: str, k: int, progress: ProgressFactory | None = None
) -> list[_Prepared]:
    """The same artifacts, each carrying patches from the channel's previous ``k`` releases of its platform."""
    out = []
    for p in prepared:
        state = load_channel(store, p.name.app, channel).state
        kind = p.name.kind
        previous = [(v, a) for v, a in previous_files(state, p.name.platform.key, p.name.version, k) if a.type == kind]
        if previous:
            require("publisher", "making patches")
        # bsdiff4 gives no progress of its own: the line names the step and its elapsed time.
        label = f"making patches for {p.name.filename} from {', '.join(str(v) for v, _ in previous)}"
        with (progress or _no_progress)(label, 0) if previous else nullcontext():
            if p.name.is_archive:  # compressed packages do not diff well: folders get per-file deltas
                record = folder_delta.prepare(store, p.name.app, p.name.version, p.path, p.record, previous)
                out.append(replace(p, patches=record.patches, blobs=record.blobs))
                continue
            made = make_patches(store, p.name.app, p.name.version, p.path, p.record, previous)
        out.append(replace(p, patches=made))
    return out


def _patches_made(prepared: Sequence[_Prepared]) -> list[PatchMade]:
    return [
        PatchMade(patch_key(p.name.app, p.name.version, r.file), r.from_version, r.size, r.sha256)
        for p in prepared
        for r in p.patches
    ]


def _group(prepared: Sequence[_Prepared]) -> dict[str, dict[Version, dict[str, ArtifactRecord]]]:
    apps: dict[str, dict[Version, dict[str, ArtifactRecord]]] = {}
    for p in prepared:
        apps.setdefault(p.name.app, {}).setdefault(p.name.version, {})[p.name.platform.key] = p.record
    return apps


def _adding(
    releases: Mapping[Version, Mapping[str, ArtifactRecord]], rollout: int | None, added: str, notes: str | None = None
) -> Mutation:
    def mutate(state: ChannelState) -> ChannelState:
        for version, artifacts in sorted(releases.items()):
            state = add_release(state, version, artifacts, rollout=rollout, added=added, notes=notes)
        return state

    return mutate


def publish(
    store: Store,
    paths: Sequence[Path],
    options: PublishOptions,
    *,
    rollout: int | None = None,
    progress: ProgressFactory | None = None,
    patches: int = DEFAULT_PATCHES,
    post_install: str | None = None,
    force: bool = False,
    notes: str | None = None,
    naming: Naming | None = None,
) -> PublishReport:
    """Upload ``paths`` into ``options.channel`` of every app they belong to, then write those manifests.

    ``paths`` are builds named ``<app>-<version>-<os>-<arch>[.exe]`` (one-folder builds: a
    folder, ``.tar.gz`` or ``.zip`` named ``<app>-<version>-<os>-<arch>``). Everything is checked
    before the first upload: the names, that each file is an executable for the platform in its
    name (for a folder, its entry point ``<app>[.exe]``; ``force`` skips this check), that the
    channel takes the versions, and that ``options.keys`` are keys the channel's installs
    trust. A refusal raises a :class:`~gupper_publish.errors.PublishError` subclass and leaves
    the store as it was, so the version stays free.

    ``rollout`` (0..100) stages the new releases for that percentage of installs; ``patches``
    is how many earlier releases of each platform get a binary patch to the new one (0: none);
    ``post_install`` names a hook inside each one-folder build (docs/packages.md); ``notes`` are
    release notes signed into the new releases' entries (``Update.notes`` in the client); ``progress``
    shows hashing, patching and uploads (see :data:`ProgressFactory`); ``naming`` publishes the one
    build in ``paths`` as that app, version and platform whatever its file or folder is called (plain
    ``pyinstaller --name app`` output). Returns what was uploaded, the patches listed and the
    manifests written.
    """
    if not paths:
        raise PublishError("nothing to publish; pass one or more built artifacts")
    if naming is not None and len(paths) != 1:
        raise PublishError(
            f"--app, --version and --platform name one build, and {len(paths)} were given; publish them one "
            "at a time, or name them <app>-<version>-<os>-<arch>"
        )
    if not options.keys:
        raise SigningKeyError("no signing key; pass --key or set GUPPER_SIGNING_KEY")
    check_channel_name(options.channel)
    if rollout is not None:
        check_percent(rollout)
    if notes is not None:
        check_notes(notes)
    with work_folder() as workdir:
        if post_install is not None and not any(p.is_dir() or p.name.endswith(PACKAGE_SUFFIXES) for p in paths):
            raise PublishError("--post-install applies to one-folder builds; pass a build folder")
        prepared = _prepare(paths, workdir, post_install, force=force, progress=progress, naming=naming)
        return _publish_prepared(
            store, prepared, options, rollout=rollout, progress=progress, patches=patches, notes=notes
        )


def _publish_prepared(
    store: Store,
    prepared: Sequence[_Prepared],
    options: PublishOptions,
    *,
    rollout: int | None,
    progress: ProgressFactory | None,
    patches: int,
    notes: str | None = None,
) -> PublishReport:
    apps = _group(prepared)
    added = format_time(options.clock())
    # Try each change on the current state first, so a refusal (a yanked version, a pre-release
    # for stable, a rotated key set) comes before any upload rather than after.
    for app, releases in apps.items():
        snap = load_channel(store, app, options.channel)
        dry = _adding(releases, rollout, added, notes)(snap.state)
        check_signers(dry, options.keys, snap.state, snap)
    uploaded = _upload(store, prepared, progress)
    if patches > 0:
        prepared = _with_patches(store, prepared, options.channel, patches, progress)
        apps = _group(prepared)
    manifests = [
        update_channel(store, app, options.channel, _adding(apps[app], rollout, added, notes), options)
        for app in sorted(apps)
    ]
    return PublishReport(uploaded, manifests, _patches_made(prepared))
