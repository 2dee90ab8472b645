"""Artifact file names: parsing, canonical spelling, hashing."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from packaging.version import InvalidVersion, Version

from gupper.platforms import Platform, normalize_arch, normalize_os, parse_platform_key
from gupper.wire.canonical import valid_app_name

from .errors import BadArtifactNameError
from .layout import ARCHIVE_SUFFIX, BUNDLE_SUFFIX, artifact_key, type_of_file

PATTERN_HELP = (
    "<app>-<version>-<os>-<arch>[.exe], e.g. app-1.2.0-linux-amd64 or "
    "app-1.2.0-windows-amd64.exe, or a one-folder build "
    "app-1.2.0-linux-amd64/ (or its .tar.gz or .zip), or an app bundle app-1.2.0-darwin-arm64.app/ "
    "(os: linux, darwin/macos, windows; arch: amd64/x86_64, arm64/aarch64)"
)
ZIP_SUFFIX = ".zip"
PACKAGE_SUFFIXES = (ARCHIVE_SUFFIX, ZIP_SUFFIX)
"""Inputs that are one-folder builds packed by the user: repacked into a deterministic ``.tar.gz``."""


@dataclass(frozen=True)
class ArtifactName:
    """The parts of an artifact file name."""

    app: str
    version: Version
    platform: Platform
    filename: str

    @property
    def key(self) -> str:
        """The immutable store key, relative to the store prefix."""
        return artifact_key(self.app, self.version, self.filename)

    @property
    def is_archive(self) -> bool:
        """A multi-file package (``type: archive`` or ``app``) rather than one executable."""
        return self.filename.endswith(ARCHIVE_SUFFIX)

    @property
    def kind(self) -> str:
        """The manifest entry type: ``binary``, ``archive`` (a one-folder build) or ``app`` (an app bundle)."""
        return type_of_file(self.filename)


def parse_artifact_name(filename: str) -> ArtifactName:
    """Parse ``app-1.2.0-linux-amd64`` (fields are read from the right, so app names may hold ``-``).

    Raises BadArtifactNameError with the expected pattern for a name that does not parse.
    """
    if "/" in filename or "\\" in filename or filename in {"", ".", ".."}:
        raise BadArtifactNameError(f"{filename!r} is not a plain file name; expected {PATTERN_HELP}")
    archive = filename.endswith(ARCHIVE_SUFFIX)
    stem = (
        filename[: -len(ARCHIVE_SUFFIX)]
        if archive
        else filename[:-4]
        if filename.lower().endswith(".exe")
        else filename
    )
    bundle = archive and stem.endswith(BUNDLE_SUFFIX)
    stem = stem.removesuffix(BUNDLE_SUFFIX) if bundle else stem
    parts = stem.rsplit("-", 3)
    if len(parts) != 4:
        raise BadArtifactNameError(f"cannot parse artifact name {filename!r}; expected {PATTERN_HELP}")
    app, version_text, os_text, arch_text = parts
    os_name, arch = normalize_os(os_text), normalize_arch(arch_text)
    if not valid_app_name(app):
        raise BadArtifactNameError(
            f"{filename!r}: app name {app!r} must be letters, digits, '.', '_' or '-'; expected {PATTERN_HELP}"
        )
    if os_name is None or arch is None:
        raise BadArtifactNameError(f"{filename!r}: unknown os/arch {os_text!r}/{arch_text!r}; expected {PATTERN_HELP}")
    try:
        version = Version(version_text)
    except InvalidVersion as e:
        raise BadArtifactNameError(
            f"{filename!r}: {version_text!r} is not a PEP 440 version; expected {PATTERN_HELP}"
        ) from e
    platform = Platform(os_name, arch)
    if archive:
        suffix = (BUNDLE_SUFFIX if bundle else "") + ARCHIVE_SUFFIX
        return ArtifactName(app, version, platform, f"{app}-{version}-{platform.key}{suffix}")
    if (os_name == "windows") != filename.lower().endswith(".exe"):
        raise BadArtifactNameError(f"{filename!r}: Windows builds, and only they, end in .exe; expected {PATTERN_HELP}")
    # Store the canonical spelling so aliases (x86_64, macos) never make two names for one build.
    canonical = f"{app}-{version}-{platform.key}{platform.exe_suffix}"
    return ArtifactName(app, version, platform, canonical)


def artifact_filename(
    app: str, version: str, platform: Platform | str, *, folder: bool, bundle: bool = False
) -> ArtifactName:
    """The name a build of ``app`` ``version`` for ``platform`` publishes as, whatever its own name:
    ``<app>-<version>-<os>-<arch>``, plus ``.exe`` for a Windows one-file build, ``.tar.gz`` for
    a one-folder build (``folder``) and ``.app.tar.gz`` for an app bundle (``bundle``). ``platform``
    is a :class:`Platform` or a key such as ``linux-amd64`` (aliases such as ``macos-aarch64`` too). Pure.

    Raises BadArtifactNameError naming the part that cannot be used.
    """
    if not valid_app_name(app):
        raise BadArtifactNameError(f"app name {app!r} must be letters, digits, '.', '_' or '-'")
    try:
        canonical = Version(version)
    except InvalidVersion as e:
        raise BadArtifactNameError(f"{version!r} is not a PEP 440 version (e.g. 1.2.0)") from e
    parsed = parse_platform_key(platform) if isinstance(platform, str) else platform
    if parsed is None:
        raise BadArtifactNameError(
            f"unknown platform {platform!r}; give <os>-<arch> such as linux-amd64, windows-amd64 or darwin-arm64"
        )
    suffix = (BUNDLE_SUFFIX if bundle else "") + ARCHIVE_SUFFIX if folder or bundle else parsed.exe_suffix
    return parse_artifact_name(f"{app}-{canonical}-{parsed.key}{suffix}")


def hash_file(path: Path, chunk: int = 1 << 20, *, progress: Callable[[int], None] | None = None) -> tuple[str, int]:
    """sha256 hex digest and size of a file, read in chunks; ``progress`` is called with each chunk's length."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
            size += len(block)
            if progress is not None:
                progress(len(block))
    return digest.hexdigest(), size
