"""Which entry of a verified manifest, if any, this install should move to. Pure."""

from __future__ import annotations

import hashlib

from packaging.version import Version

from .records import record
from .wire.manifest import APP, ARCHIVE, BINARY, Entry, Manifest

INSTALLABLE_TYPES = (BINARY,)


@record(frozen=True)
class Decision:
    """The outcome of comparing a manifest with the running version.

    ``refused``: the release is newer but of a kind this install cannot take (a one-folder build
    for a one-file install, ...): no update, and not "up to date" either. The install never
    updates until someone reinstalls it, so the client reports it as a failure."""

    entry: Entry | None
    reason: str
    refused: bool = False


KINDS = {BINARY: "a one-file build", ARCHIVE: "a one-folder build", APP: "a macOS app bundle (.app)"}
"""What each manifest entry type is, for people."""


def kind_name(kind: str) -> str:
    """``a one-folder build`` for ``archive``; an unknown type by its name. Pure."""
    return KINDS.get(kind, f"a {kind!r} artifact")


ROLLOUT_BUCKETS = 10000


def rollout_bucket(install_id: str, app: str, rollout_id: str) -> int:
    """This install's place (0..9999) in a staged rollout: a stable hash of install id, app and release."""
    return int(hashlib.sha256(f"{install_id}:{app}:{rollout_id}".encode()).hexdigest()[:8], 16) % ROLLOUT_BUCKETS


def in_rollout(install_id: str, app: str, rollout_id: str, percent: int) -> bool:
    """Whether this install is in a staged rollout of ``percent`` %.

    Its :func:`rollout_bucket` is below ``percent`` hundredths: raising the percentage only adds
    installs, and different releases sample different installs.
    """
    return rollout_bucket(install_id, app, rollout_id) < percent * ROLLOUT_BUCKETS // 100


def _staged(entry: Entry, app: str, install_id: str) -> tuple[Entry | None, str]:
    """Resolve a staged rollout: the entry itself, its fallback, or nothing."""
    rollout = entry.rollout
    if rollout is None:
        return entry, ""
    if in_rollout(install_id, app, rollout.id, rollout.percent):
        return entry, f" (in the {rollout.percent}% rollout)"
    offered = entry.fallback
    if offered is None:
        return None, f" (not in the {rollout.percent}% rollout of {entry.version})"
    return offered, f" (not in the {rollout.percent}% rollout of {entry.version}; offered {offered.version})"


def choose_update(
    manifest: Manifest,
    platform_key: str,
    current: Version,
    install_id: str = "",
    types: tuple[str, ...] = INSTALLABLE_TYPES,
) -> Decision:
    """Pick this platform's entry if this install should move to it.

    A platform with no entry means no update (never another platform's file). A lower version
    is only ever chosen when the running version is in the signed ``yanked`` list. An entry of a
    type this install cannot take (``types``: ``binary`` for a single-file install, ``archive``
    for a one-folder one) is skipped with a reason rather than guessed at.
    """
    listed = manifest.entry_for(platform_key)
    if listed is None:
        return Decision(None, f"no release for {platform_key} in the manifest")
    entry, note = _staged(listed, manifest.app, install_id)
    if entry is None:
        return Decision(None, f"no update{note}")
    yanked = current in manifest.yanked
    if entry.version == current or (entry.version < current and not yanked):
        return Decision(None, f"up to date ({current}; latest for {platform_key} is {entry.version}{note})")
    if entry.type not in types:
        have = " or ".join(kind_name(t) for t in types)
        return Decision(
            None,
            f"release {entry.version} for {platform_key} is {kind_name(entry.type)}, which this install "
            f"({have}) cannot take: install {entry.version} by hand once, or publish {have} for {platform_key}",
            refused=True,
        )
    if entry.version < current:
        return Decision(entry, f"{current} was withdrawn by the publisher; going back to {entry.version}")
    return Decision(entry, f"update available: {current} -> {entry.version}{note}")


def move_line(app: str, current: Version, entry: Entry) -> str:
    """How a move to ``entry`` is announced: an update, or the way back from a version the publisher
    withdrew (``gupper-publish yank``: the only way :func:`choose_update` ever goes down). Pure."""
    if entry.version < current:
        return f"{app} {current} was withdrawn by the publisher; going back to {entry.version} ({entry.size} bytes)"
    return f"updating {app} {current} -> {entry.version} ({entry.size} bytes)"
