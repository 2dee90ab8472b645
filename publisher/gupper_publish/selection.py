"""Version selection and the signed payload: what a channel's manifest should say. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from gupper.wire.manifest import Manifest

from .artifacts import ArtifactName, parse_artifact_name
from .errors import BadArtifactName
from .stores import ObjectInfo


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
        parts = obj.key.split("/")
        if len(parts) != 3 or parts[0] != app:
            continue
        try:
            name = parse_artifact_name(parts[2])
        except BadArtifactName:
            continue
        # Only a file at its own canonical key counts: a stray copy elsewhere is not a release.
        if name.app == app and name.key == obj.key:
            out.append(Release(name, obj.size))
    return out


DEFAULT_CHANNEL = "stable"


def channel_takes_prereleases(channel: str) -> bool:
    """``stable`` carries final releases only; any other channel carries pre-releases too."""
    return channel != DEFAULT_CHANNEL


def build_signed(
    *,
    app: str,
    channel: str,
    serial: int,
    now: datetime,
    expires_in: timedelta,
    platforms: Mapping[str, Mapping[str, Any]],
    yanked: Sequence[str] = (),
    keys: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``signed`` object from plain-data entries, which are written as given, unchecked (for
    tests and tools that forge payloads; ``gupper-publish`` builds typed :class:`Manifest` values).
    ``yanked`` and ``keys`` only when set (docs/schema-extensions.md)."""
    signed = Manifest(app, channel, serial, now, now + expires_in, entries={}).to_json()
    signed["platforms"] = {key: dict(platforms[key]) for key in sorted(platforms)}
    if yanked:
        signed["yanked"] = list(yanked)
    if keys is not None:
        signed["keys"] = dict(keys)
    return signed
