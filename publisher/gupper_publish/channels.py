"""Channel state: which releases a channel carries, their rollout, the yanks and the key set. Pure.

Each app channel has one small JSON object in the store, ``<app>/<channel>/channel.json`` (see
docs/release-management.md). It is the publisher's own record; the signed manifest beside it is a
pure function of it (:func:`derive`), so every command is "change the state with compare-and-swap,
then write the manifest it implies". Keeping size and sha256 of every artifact in the state means
a manifest can be rebuilt without listing or reading the store, and that ``promote`` copies a
release between channels without touching its bytes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import unquote

from packaging.version import InvalidVersion, Version

from gupper.errors import ConfigError, MalformedError
from gupper.platforms import parse_platform_key
from gupper.wire.canonical import valid_app_name
from gupper.wire.manifest import (
    APP,
    ARCHIVE,
    ARCHIVE_FORMAT,
    FILES_PATCH_FORMAT,
    PATCH_FORMAT,
    Entry,
    KeySet,
    Manifest,
    Patch,
    Rollout,
)

from .artifacts import parse_artifact_name
from .errors import BadArtifactNameError, ImmutableConflictError, NotFoundError, PublishError
from .layout import artifact_key, blob_key, list_key, patch_key, relative_url, type_of_file
from .plans import RolloutPlan

STATE_TYPE = "gupper-channel-state"
STATE_SCHEMA = 1
DEFAULT_CHANNEL = "stable"
HISTORY = 200
"""Lines of ``advance`` decisions a channel state keeps, newest last."""


def channel_takes_prereleases(channel: str) -> bool:
    """``stable`` carries final releases only; any other channel carries pre-releases too."""
    return channel != DEFAULT_CHANNEL


@dataclass(frozen=True)
class PatchRecord:
    """A patch (or one-folder patch index) from an earlier release's file to this one, named ``file`` under ``patches/``
    (:mod:`gupper_publish.layout`)."""

    from_version: str
    from_sha256: str
    file: str
    size: int
    sha256: str
    download: int | None = None
    """One-folder patch indexes: every byte a client with exactly ``from_version``'s files fetches
    (the index, the per-file patches, the files it lacks), so an app can show it before downloading."""


@dataclass(frozen=True)
class ArtifactRecord:
    """One platform's file of a release, as uploaded: name within ``<app>/<version>/``, size, digest.

    An archive (``.tar.gz``, a one-folder build) also records the sha256 of its file list.
    """

    file: str
    size: int
    sha256: str
    patches: tuple[PatchRecord, ...] = ()
    files_sha256: str | None = None
    blobs: bool = False  # an archive's list and files are also stored one by one (folder deltas)

    @property
    def type(self) -> str:
        """The manifest entry type: ``app`` for an app bundle's ``.app.tar.gz``, ``archive`` for another
        ``.tar.gz`` package, else ``binary``."""
        return type_of_file(self.file)

    def same_file(self, other: ArtifactRecord) -> bool:
        """The same bytes (patches are derived data and may be added later)."""
        return (self.file, self.size, self.sha256) == (other.file, other.size, other.sha256)


@dataclass(frozen=True)
class ReleaseRecord:
    """A release (one version, one file per platform) as a member of a channel."""

    version: Version
    artifacts: Mapping[str, ArtifactRecord]
    rollout: int | None = None  # percent of installs (0..99) while staged; None once complete
    added: str = ""
    notes: str | None = None  # release notes, signed into each entry (what an app shows when it asks)
    plan: RolloutPlan | None = None  # a rollout that runs itself (gupper-publish advance)

    @property
    def status(self) -> str:
        """``complete``, ``halted`` (rollout 0) or ``rollout``."""
        if self.rollout is None:
            return "complete"
        return "halted" if self.rollout == 0 else "rollout"


@dataclass(frozen=True)
class ChannelState:
    """Everything a channel's manifest is derived from, plus the serial of that manifest."""

    app: str
    channel: str
    serial: int = 0  # serial of the manifest derived from this state; 0 = none written yet
    releases: Mapping[str, ReleaseRecord] = field(default_factory=dict)  # str(version) -> record
    yanked: tuple[str, ...] = ()
    keys: KeySet | None = None
    history: tuple[str, ...] = ()  # advance's decisions, one line each, newest last (at most HISTORY)

    def find(self, version: Version) -> ReleaseRecord | None:
        """The member release equal to ``version`` (``1.0`` finds ``1.0.0``), or None."""
        return next((r for r in self.releases.values() if r.version == version), None)

    def is_yanked(self, version: Version) -> bool:
        """True if ``version`` was yanked from this channel."""
        return any(Version(v) == version for v in self.yanked)


def check_channel_name(channel: str) -> str:
    """Return ``channel`` if it can name a channel; a version-like name would share a folder with a release."""
    if not valid_app_name(channel):
        raise PublishError(f"invalid channel {channel!r}: use letters, digits, '.', '_' or '-' (e.g. stable, beta)")
    try:
        Version(channel)
    except InvalidVersion:
        return channel
    raise PublishError(
        f"channel {channel!r} looks like a version and would share {channel}/ with a "
        "release; choose a name such as beta"
    )


def check_percent(percent: int) -> int:
    """A rollout percentage: an integer 0..100."""
    if not 0 <= percent <= 100:
        raise PublishError(f"rollout percent must be 0..100, not {percent}")
    return percent


# --- mutations: each returns a new state, or raises PublishError saying what to do instead ---


def add_release(
    state: ChannelState,
    version: Version,
    artifacts: Mapping[str, ArtifactRecord],
    *,
    rollout: int | None,
    added: str,
    notes: str | None = None,
) -> ChannelState:
    """Make ``version`` (with these platform files) a member of the channel.

    ``rollout`` None keeps an existing member's rollout and makes a new member complete; a number
    sets it (100 completes). ``notes`` None keeps a member's release notes; text replaces them.
    Files already recorded for a platform must be the same file.
    """
    if version.is_prerelease and not channel_takes_prereleases(state.channel):
        raise PublishError(
            f"{version} is a pre-release and {state.channel} carries final releases only; use "
            "--channel beta (or another channel)"
        )
    if state.is_yanked(version):
        raise PublishError(
            f"{version} was yanked from {state.app}/{state.channel} and stays withdrawn; bump "
            "the version and publish that"
        )
    existing = state.find(version)
    if existing is not None and str(existing.version) != str(version):
        raise PublishError(
            f"{version} and {existing.version} are the same version spelled twice; publish it as {existing.version}"
        )
    merged = dict(existing.artifacts) if existing else {}
    for platform, art in artifacts.items():
        old = merged.get(platform)
        if old is not None and not old.same_file(art):
            raise ImmutableConflictError(
                f"{state.app}/{state.channel} already carries a different {platform} file for "
                f"{version}; releases are immutable, so bump the version"
            )
        merged[platform] = art if art.patches or art.blobs or old is None else old
    new_rollout = existing.rollout if existing else None  # not given: keep a member's, a new one is complete
    plan = existing.plan if existing else None
    if rollout is not None:
        new_rollout = None if check_percent(rollout) == 100 else rollout
        plan = None  # a percent given by hand ends a plan
    new_notes = check_notes(notes) if notes is not None else (existing.notes if existing else None)
    record = ReleaseRecord(version, merged, new_rollout, existing.added if existing else added, new_notes, plan)
    return replace(state, releases={**state.releases, str(version): record})


MAX_NOTES = 16 * 1024


def check_notes(notes: str) -> str | None:
    """Release notes as signed into the manifest: text of at most 16 KiB (UTF-8); empty means none."""
    text = notes.strip()
    if len(text.encode("utf-8")) > MAX_NOTES:
        raise PublishError(
            f"release notes are {len(text.encode('utf-8'))} bytes, over the {MAX_NOTES} byte "
            "limit; link to longer notes instead"
        )
    if any(not c.isprintable() and c not in "\n\t" for c in text):
        raise PublishError("release notes hold control characters; give plain text (newlines and tabs are fine)")
    return text or None


def set_rollout(state: ChannelState, version: Version, percent: int) -> ChannelState:
    """Set a member release's rollout: 0 halts it, 100 completes it. A percent set by hand ends its plan."""
    record = _member(state, version)
    new = replace(record, rollout=None if check_percent(percent) == 100 else percent, plan=None)
    return replace(state, releases={**state.releases, str(record.version): new})


def set_plan(state: ChannelState, version: Version, plan: RolloutPlan) -> ChannelState:
    """Give a staged (or halted) member release a rollout plan and set its rollout to the plan's step."""
    record = _member(state, version)
    if record.rollout is None and (record.plan is None or record.plan.state != "done"):
        raise PublishError(
            f"{version} is already offered to every install of {state.app}/{state.channel}; a plan stages a "
            "release: publish the next version with --rollout 0 and give it the plan"
        )
    new = replace(record, rollout=None if plan.percent == 100 else plan.percent, plan=plan)
    return replace(state, releases={**state.releases, str(record.version): new})


def with_plan(state: ChannelState, version: Version, plan: RolloutPlan) -> ChannelState:
    """A member's plan moved on by ``advance``: the rollout follows the plan's step (0 once halted)."""
    record = _member(state, version)
    percent = 0 if plan.state == "halted" else plan.percent
    new = replace(record, rollout=None if percent == 100 else percent, plan=plan)
    return replace(state, releases={**state.releases, str(record.version): new})


def record_history(state: ChannelState, line: str, *, replaces: str | None = None) -> ChannelState:
    """Add one line to the channel's history (the oldest go beyond :data:`HISTORY`); ``replaces``: when
    the last line says the same (after its time), the new line takes its place (a repeated wait)."""
    lines = list(state.history)
    if replaces is not None and lines and lines[-1].split(" ", 1)[-1].startswith(replaces + ":"):
        lines.pop()
    lines.append(line)
    return replace(state, history=tuple(lines[-HISTORY:]))


def yank(state: ChannelState, version: Version) -> ChannelState:
    """Withdraw a member release: it leaves the manifest and joins the signed ``yanked`` list."""
    if state.is_yanked(version):
        return state
    record = _member(state, version)
    return replace(state, yanked=sort_versions({*state.yanked, str(record.version)}))


def remove_releases(state: ChannelState, versions: Iterable[Version]) -> ChannelState:
    """Forget member releases (their files are about to be deleted); yanks are kept."""
    gone = set(versions)
    return replace(state, releases={k: r for k, r in state.releases.items() if r.version not in gone})


def set_keys(state: ChannelState, keys: Iterable[str], threshold: int) -> ChannelState:
    """Announce a new trusted key set (``ed25519:...`` lines) in the manifest's ``keys`` field."""
    key_set = KeySet(tuple(keys), threshold)
    try:
        key_set.trusted()
    except ConfigError as e:  # duplicate, malformed key or bad threshold
        raise PublishError(f"unusable new key set: {e}") from e
    return replace(state, keys=key_set)


def _member(state: ChannelState, version: Version) -> ReleaseRecord:
    record = state.find(version)
    if record is None:
        raise NotFoundError(f"{version} is not in {state.app}/{state.channel}; see 'gupper-publish list {state.app}'")
    if state.is_yanked(version):
        raise PublishError(f"{version} was yanked from {state.app}/{state.channel}; yanked releases stay withdrawn")
    return record


def sort_versions(versions: Iterable[str]) -> tuple[str, ...]:
    """Version strings in ascending PEP 440 order."""
    return tuple(sorted(versions, key=Version))


# --- the manifest a state implies ---


def entry_for(app: str, record: ReleaseRecord, platform: str, manifest_key: str) -> Entry:
    """The manifest entry for ``record``'s file on ``platform``."""
    art = record.artifacts[platform]
    archive = art.type in (ARCHIVE, APP)  # both are folders, packed and listed the same way
    lists = archive and art.files_sha256 is not None and art.blobs
    return Entry(
        platform=platform,
        version=record.version,
        type=art.type,
        url=relative_url(manifest_key, artifact_key(app, record.version, art.file)),
        size=art.size,
        sha256=art.sha256,
        notes=record.notes or None,
        format=ARCHIVE_FORMAT if archive else None,
        files_sha256=art.files_sha256 if archive else None,
        files_url=relative_url(manifest_key, list_key(app, record.version, art.file)) if lists else None,
        blobs_url=relative_url(manifest_key, blob_key(app, record.version, "")) if lists else None,
        patches=tuple(
            Patch(
                format=FILES_PATCH_FORMAT if archive else PATCH_FORMAT,
                url=relative_url(manifest_key, patch_key(app, record.version, p.file)),
                size=p.size,
                sha256=p.sha256,
                from_sha256=p.from_sha256,
                from_version=p.from_version,
                download=p.download,
            )
            for p in art.patches
        ),
    )


@dataclass(frozen=True)
class Derived:
    """What a channel's manifest says, as its state implies it: the entries, the yanks, the key set."""

    entries: Mapping[str, Entry]
    yanked: tuple[Version, ...] = ()
    keys: KeySet | None = None

    def to_json(self) -> dict[str, Any]:
        """The fields as they appear in the manifest's ``signed`` object (compare :func:`payload_of`)."""
        out: dict[str, Any] = {"platforms": {p: e.to_json() for p, e in sorted(self.entries.items())}}
        if self.yanked:
            out["yanked"] = [str(v) for v in self.yanked]
        if self.keys is not None:
            out["keys"] = self.keys.to_json()
        return out


def derived(state: ChannelState, manifest_key: str) -> Derived:
    """The manifest content the state implies.

    Per platform: the highest complete release is the entry; a staged release above it becomes
    the entry instead, with ``rollout`` ``{percent, id}`` and that complete release as
    ``fallback`` (for installs outside the cohort). Yanked releases are left out, and ``stable``
    never serves a pre-release.
    """
    live = [
        r
        for r in state.releases.values()
        if not state.is_yanked(r.version) and (channel_takes_prereleases(state.channel) or not r.version.is_prerelease)
    ]
    entries: dict[str, Entry] = {}
    for platform in sorted({p for r in live for p in r.artifacts}):
        having = [r for r in live if platform in r.artifacts]
        complete = max((r for r in having if r.rollout is None), key=lambda r: r.version, default=None)
        staged = max(
            (r for r in having if r.rollout is not None and (complete is None or r.version > complete.version)),
            key=lambda r: r.version,
            default=None,
        )
        if staged is not None and staged.rollout is not None:
            # The id is the version: raising 10 -> 50 keeps every earlier install in (same salt),
            # and another release samples other installs.
            entries[platform] = replace(
                entry_for(state.app, staged, platform, manifest_key),
                rollout=Rollout(staged.rollout, str(staged.version)),
                fallback=entry_for(state.app, complete, platform, manifest_key) if complete is not None else None,
            )
        elif complete is not None:
            entries[platform] = entry_for(state.app, complete, platform, manifest_key)
    return Derived(entries, tuple(Version(v) for v in sort_versions(state.yanked)), state.keys)


def derive(state: ChannelState, manifest_key: str) -> dict[str, Any]:
    """The manifest fields the state implies, as JSON: ``platforms`` and, when set, ``yanked`` and
    ``keys`` (:func:`derived`; compared with :func:`payload_of` of the manifest in the store)."""
    return derived(state, manifest_key).to_json()


DERIVED_FIELDS = ("platforms", "yanked", "keys")


def payload_of(manifest: Manifest) -> dict[str, Any]:
    """The derived fields of a manifest's ``signed`` object (for comparison with :func:`derive`)."""
    signed = manifest.to_json()
    return {k: signed[k] for k in DERIVED_FIELDS if k in signed}


def referenced_versions(entries: Mapping[str, Entry]) -> set[Version]:
    """Every version a manifest's entries name, as entry or as fallback."""
    return {e.version for entry in entries.values() for e in (entry, entry.fallback) if e is not None}


def describe(entries: Mapping[str, Entry]) -> dict[str, str]:
    """One short line per platform for people: ``2.0.0`` or ``2.0.0 at 10% (others 1.9.0)``."""
    out = {}
    for platform, entry in sorted(entries.items()):
        text = str(entry.version)
        if entry.rollout is not None:
            others = f"others {entry.fallback.version}" if entry.fallback is not None else "others stay"
            text += f" at {entry.rollout.percent}% ({others})"
        out[platform] = text
    return out


# --- JSON ---


def state_to_json(state: ChannelState) -> bytes:
    """The stored form: pretty, sorted JSON (people read it when something looks wrong)."""
    doc: dict[str, Any] = {
        "_type": STATE_TYPE,
        "schema": STATE_SCHEMA,
        "app": state.app,
        "channel": state.channel,
        "serial": state.serial,
        "releases": {
            key: {
                "version": str(r.version),
                "added": r.added,
                "rollout": r.rollout,
                **({"notes": r.notes} if r.notes is not None else {}),
                **({"plan": r.plan.to_json()} if r.plan is not None else {}),
                "artifacts": {p: _artifact_to_json(a) for p, a in sorted(r.artifacts.items())},
            }
            for key, r in sorted(state.releases.items(), key=lambda kv: kv[1].version)
        },
        "yanked": list(state.yanked),
        "keys": state.keys.to_json() if state.keys is not None else None,
        **({"history": list(state.history)} if state.history else {}),
    }
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode("utf-8")


def state_from_json(data: bytes, *, app: str, channel: str, where: str) -> ChannelState:
    """Parse a stored state; anything unexpected is refused (it would become signed content)."""
    try:
        doc = json.loads(data)
        if doc.get("_type") != STATE_TYPE or doc.get("schema") != STATE_SCHEMA:
            raise ValueError("not a schema 1 channel state")
        if doc["app"] != app or doc["channel"] != channel:
            raise ValueError(f"it belongs to {doc['app']}/{doc['channel']}")
        serial = doc["serial"]
        if not isinstance(serial, int) or isinstance(serial, bool) or serial < 0:
            raise ValueError("bad serial")
        releases = {}
        for key, raw in doc["releases"].items():
            version = Version(raw["version"])
            if str(version) != key:
                raise ValueError(f"release {key!r} holds version {raw['version']!r}")
            rollout = raw["rollout"]
            if rollout is not None and (not isinstance(rollout, int) or not 0 <= rollout < 100):
                raise ValueError(f"release {key} has rollout {rollout!r}")
            arts = {p: _artifact_from_json(p, a) for p, a in raw["artifacts"].items()}
            notes = raw.get("notes")
            if notes is not None and not isinstance(notes, str):
                raise ValueError(f"release {key} has notes that are not text")
            plan = RolloutPlan.from_json(raw["plan"]) if raw.get("plan") is not None else None
            releases[key] = ReleaseRecord(version, arts, rollout, str(raw.get("added", "")), notes, plan)
        yanked = tuple(str(Version(v)) for v in doc["yanked"])
        keys = KeySet.from_json(doc["keys"]) if doc.get("keys") is not None else None
        history = doc.get("history") or []
        if not isinstance(history, list) or not all(isinstance(line, str) for line in history):
            raise ValueError("history is not a list of lines")
    except Exception as e:  # any shape error: one message, pointing at the object
        raise PublishError(
            f"channel state {where} is unreadable ({e}); fix or delete it (it is rebuilt from the manifest)"
        ) from e
    return ChannelState(app, channel, serial, releases, yanked, keys, tuple(history[-HISTORY:]))


def _artifact_to_json(a: ArtifactRecord) -> dict[str, Any]:
    out: dict[str, Any] = {"file": a.file, "size": a.size, "sha256": a.sha256}
    if a.patches:
        out["patches"] = [{k: v for k, v in vars(p).items() if v is not None} for p in a.patches]
    if a.files_sha256 is not None:
        out["files_sha256"] = a.files_sha256
    if a.blobs:
        out["blobs"] = True
    return out


def _artifact_from_json(platform: str, raw: Any) -> ArtifactRecord:
    parsed = parse_platform_key(platform)
    if parsed is None or parsed.key != platform:
        raise ValueError(f"unknown platform {platform!r}")
    file, size, sha = raw["file"], raw["size"], raw["sha256"]
    if (
        not isinstance(file, str)
        or not isinstance(size, int)
        or not isinstance(sha, str)
        or len(sha) != 64
        or size <= 0
    ):
        raise ValueError(f"bad artifact record for {platform}")
    patches = tuple(
        PatchRecord(
            str(p["from_version"]),
            str(p["from_sha256"]),
            str(p["file"]),
            int(p["size"]),
            str(p["sha256"]),
            int(p["download"]) if p.get("download") is not None else None,
        )
        for p in raw.get("patches", [])
    )
    if any("/" in p.file or p.file.startswith(".") for p in patches):
        raise ValueError(f"bad patch file name for {platform}")
    files_sha256 = raw.get("files_sha256")
    if files_sha256 is not None and (not isinstance(files_sha256, str) or len(files_sha256) != 64):
        raise ValueError(f"bad files_sha256 for {platform}")
    return ArtifactRecord(file, size, sha, patches, files_sha256, raw.get("blobs") is True)


def seed_from_manifest(app: str, channel: str, signed: Mapping[str, Any], where: str) -> ChannelState:
    """The state a manifest written before channel state existed implies (its entries, yanks, keys, serial).

    Only entries at their canonical ``../<version>/<file>`` URL are understood; anything else is
    refused rather than silently dropped from the next manifest.
    """
    try:
        entries = [
            Entry.from_json(platform, raw) for platform, raw in sorted(dict(signed.get("platforms") or {}).items())
        ]
        keys = KeySet.from_json(signed["keys"]) if signed.get("keys") is not None else None
    except MalformedError as e:
        raise PublishError(f"{where} is unreadable ({e}); fix or delete the manifest") from e
    state = ChannelState(app, channel, int(signed.get("serial", 0)))
    for entry in entries:
        for served, rollout in ((entry, entry.rollout.percent if entry.rollout else None), (entry.fallback, None)):
            if served is None:
                continue
            url = served.url
            try:
                name = parse_artifact_name(unquote(url.rsplit("/", 1)[-1]))
            except BadArtifactNameError as err:
                raise PublishError(
                    f"{where} names {url!r} for {served.platform}, which is not a release of {app}; "
                    "fix or delete the manifest"
                ) from err
            if not (
                name.app == app
                and name.platform.key == served.platform
                and str(name.version) == str(served.version)
                and url.endswith(f"{name.version}/{name.filename}")
            ):
                raise PublishError(
                    f"{where} names {url!r} for {served.platform}, not its canonical key; fix or delete the manifest"
                )
            record = ArtifactRecord(name.filename, served.size, served.sha256, files_sha256=served.files_sha256)
            state = add_release(state, name.version, {served.platform: record}, rollout=rollout, added="")
    return replace(state, yanked=sort_versions(str(Version(v)) for v in signed.get("yanked") or []), keys=keys)
