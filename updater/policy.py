"""Which entry of a verified manifest, if any, this install should move to. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from packaging.version import Version

from .manifest import Entry, Manifest

INSTALLABLE_TYPES = ("binary",)


@dataclass(frozen=True)
class Decision:
    """The outcome of comparing a manifest with the running version."""

    entry: Entry | None
    reason: str


def choose_update(manifest: Manifest, platform_key: str, current: Version) -> Decision:
    """Pick this platform's entry if it is newer than ``current``.

    A platform with no entry means no update (never another platform's file); an entry of a type
    this client cannot install is skipped with a reason rather than guessed at.
    """
    entry = manifest.entry_for(platform_key)
    if entry is None:
        return Decision(None, f"no release for {platform_key} in the manifest")
    if entry.version <= current:
        return Decision(None, f"up to date ({current}; latest for {platform_key} is {entry.version})")
    if entry.type not in INSTALLABLE_TYPES:
        return Decision(None, f"release {entry.version} is a {entry.type!r} artifact, which this version cannot install; update by hand")
    return Decision(entry, f"update available: {current} -> {entry.version}")
