"""The store layout: every object key the publisher reads or writes is built here, and only here. Pure.

Keys are relative to the store prefix (``s3://bucket/prefix``, a folder)::

    <app>/<version>/<app>-<version>-<os>-<arch>[.exe|.tar.gz|.app.tar.gz]   a release's file per platform (immutable)
    <app>/<version>/patches/<file>.from-<old>.bsdiff4             a binary patch from an earlier release's file
    <app>/<version>/patches/<stem>.from-<old>.files.json          a one-folder patch index from an earlier release
    <app>/<version>/patches/files/<old sha256>-<new sha256>.bsdiff4   a per-file patch it names
    <app>/<version>/files/<stem>.json.gz                          a one-folder release's file list (gzip)
    <app>/<version>/files/sha256/<hex>                            each of its files, by content
    <app>/<channel>/latest.json                                   the channel's signed manifest
    <app>/<channel>/channel.json                                  the channel's state (the publisher's record)

Everything of a release sits under ``<app>/<version>/``, so ``prune`` removes it with the release,
and a client never needs another release's objects. Manifests name objects by URLs relative to
the manifest (:func:`relative_url`), so mirrors and CDNs work unchanged. docs/release-management.md
describes the layout for people.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from packaging.version import Version

from gupper.wire.manifest import APP, ARCHIVE, BINARY

MANIFEST_NAME = "latest.json"
STATE_NAME = "channel.json"
CHANNEL_FILES = (MANIFEST_NAME, STATE_NAME)
ARCHIVE_SUFFIX = ".tar.gz"
BUNDLE_SUFFIX = ".app"
"""A macOS app bundle's folder name ends so; its archive is ``<app>-<version>-<os>-<arch>.app.tar.gz``."""


def type_of_file(file: str) -> str:
    """The manifest entry type of a release file, from its name: ``app`` (an app bundle's archive),
    ``archive`` (a one-folder build's) or ``binary``. Pure."""
    if file.endswith(BUNDLE_SUFFIX + ARCHIVE_SUFFIX):
        return APP
    return ARCHIVE if file.endswith(ARCHIVE_SUFFIX) else BINARY


PATCHES = "patches"
FILES = "files"


def release_prefix(app: str, version: Version | str) -> str:
    """The folder of everything one release stored (``store.list`` it, delete it)."""
    return f"{app}/{version}"


def artifact_key(app: str, version: Version | str, file: str) -> str:
    """A release's file for one platform (``file`` is its canonical name)."""
    return f"{release_prefix(app, version)}/{file}"


def stem_of(file: str) -> str:
    """``app-1.2.0-linux-amd64`` for ``app-1.2.0-linux-amd64.tar.gz`` (and for itself)."""
    return file.removesuffix(ARCHIVE_SUFFIX)


def patch_key(app: str, version: Version | str, name: str) -> str:
    """A patch (or patch index) to a release, by its name under ``patches/``."""
    return f"{release_prefix(app, version)}/{PATCHES}/{name}"


def binary_patch_name(file: str, from_version: Version | str) -> str:
    """The name of the bsdiff4 patch from ``from_version``'s file to ``file``."""
    return f"{file}.from-{from_version}.bsdiff4"


def index_name(file: str, from_version: Version | str) -> str:
    """The name of a one-folder release's patch index from ``from_version``."""
    return f"{stem_of(file)}.from-{from_version}.files.json"


def file_patch_name(from_sha256: str, to_sha256: str) -> str:
    """The name of a per-file patch (content-addressed: made once, whatever path the file has)."""
    return f"{from_sha256}-{to_sha256}.bsdiff4"


def file_patch_key(app: str, version: Version | str, name: str) -> str:
    """Where a per-file patch named by a patch index lives (``files/`` beside the index)."""
    return patch_key(app, version, f"{FILES}/{name}")


def list_key(app: str, version: Version | str, file: str) -> str:
    """Where a one-folder release's file list is stored beside its archive (gzip: a third of the size)."""
    return f"{release_prefix(app, version)}/{FILES}/{stem_of(file)}.json.gz"


def blob_key(app: str, version: Version | str, sha256: str) -> str:
    """Where a one-folder release stores the file with this content (``""``: the folder, for ``blobs_url``)."""
    return f"{release_prefix(app, version)}/{FILES}/sha256/{sha256}"


def manifest_key(app: str, channel: str) -> str:
    """Where an app channel's manifest lives."""
    return f"{app}/{channel}/{MANIFEST_NAME}"


def state_key(app: str, channel: str) -> str:
    """Where an app channel's state (the publisher's record of its releases) lives, beside its manifest."""
    return f"{app}/{channel}/{STATE_NAME}"


@dataclass(frozen=True)
class KeyParts:
    """A key of the form ``<app>/<folder>/<name>``: a release's file, or a channel's manifest or state."""

    app: str
    folder: str
    name: str

    @property
    def is_channel_file(self) -> bool:
        """A manifest or a channel state (``folder`` is then the channel)."""
        return self.name in CHANNEL_FILES


def split_key(key: str) -> KeyParts | None:
    """The parts of a key three levels deep (releases' files, channels' files), or None for any other key."""
    parts = key.split("/")
    return KeyParts(*parts) if len(parts) == 3 else None


def app_of(key: str) -> str:
    """The app a key belongs to (its first level)."""
    return key.split("/", 1)[0]


def relative_url(from_manifest_key: str, key: str) -> str:
    """``key``'s URL relative to the manifest at ``from_manifest_key``, so mirrors and CDNs work unchanged."""
    depth = from_manifest_key.count("/")
    up = "../" * (depth - 1)
    app_prefix = app_of(from_manifest_key) + "/"
    rest = key[len(app_prefix) :] if key.startswith(app_prefix) else key
    return up + quote(rest, safe="/")
