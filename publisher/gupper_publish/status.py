"""``list`` / ``status``: what the store holds per app, channel and platform, as JSON or a table.

The JSON shape is documented in docs/release-management.md; keep the two in step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from packaging.version import Version

from gupper.wire.canonical import format_time
from gupper.wire.manifest import Entry, Manifest

from . import channels as ch
from .errors import NotFoundError
from .layout import manifest_key, state_key
from .publish import load_channel
from .release import discover
from .stores import Store

STATUS_SCHEMA = 1


def _manifest_json(key: str, manifest: Manifest | None, now: datetime) -> dict[str, Any] | None:
    if manifest is None:
        return None
    return {
        "key": key,
        "serial": manifest.serial,
        "created": format_time(manifest.created),
        "expires": format_time(manifest.expires),
        "expired": now >= manifest.expires,
    }


def _served(entries: Mapping[str, Entry]) -> dict[str, Any]:
    return {
        platform: {
            "version": str(entry.version),
            "rollout": entry.rollout.to_json() if entry.rollout else None,
            "fallback": str(entry.fallback.version) if entry.fallback else None,
        }
        for platform, entry in sorted(entries.items())
    }


def _channel_json(store: Store, app: str, channel: str, now: datetime) -> dict[str, Any]:
    snap = load_channel(store, app, channel)
    mkey = manifest_key(app, channel)
    in_sync = (
        snap.manifest is not None
        and snap.manifest_serial >= snap.state.serial
        and ch.payload_of(snap.manifest) == ch.derive(snap.state, mkey)
    )
    releases = [
        {
            "version": str(r.version),
            "status": "yanked" if snap.state.is_yanked(r.version) else r.status,
            "rollout": r.rollout,
            "added": r.added or None,
            "platforms": sorted(r.artifacts),
        }
        for r in sorted(snap.state.releases.values(), key=lambda r: r.version, reverse=True)
    ]
    return {
        "manifest": _manifest_json(mkey, snap.manifest, now),
        "state": {"key": state_key(app, channel), "serial": snap.state.serial, "stored": snap.state_etag is not None},
        "in_sync": in_sync,
        "platforms": _served(snap.manifest.entries if snap.manifest else {}),
        "releases": releases,
        "yanked": list(snap.state.yanked),
        "keys": snap.state.keys.to_json() if snap.state.keys is not None else None,
    }


def status(store: Store, now: datetime, app: str | None = None, channel: str | None = None) -> dict[str, Any]:
    """The store's apps, channels, releases and manifests as plain data (``list --json``)."""
    found = discover(store, app)
    if app is not None and app not in found:
        raise NotFoundError(f"no app {app!r} in {store.url}; see 'gupper-publish list'")
    apps: dict[str, Any] = {}
    for name, listing in found.items():
        names = [c for c in listing.channels if channel is None or c == channel]
        if channel is not None and not names and app is not None:
            raise NotFoundError(f"{name} has no channel {channel!r}; it has {', '.join(listing.channels) or 'none'}")
        channels = {c: _channel_json(store, name, c, now) for c in names}
        members: dict[Version, list[str]] = {}
        referenced: set[Version] = set()
        for c, info in channels.items():
            for r in info["releases"]:
                members.setdefault(Version(r["version"]), []).append(c)
            for p in info["platforms"].values():
                referenced.update(Version(v) for v in (p["version"], p["fallback"]) if v)
        stored: dict[Version, dict[str, Any]] = {}
        for r in listing.releases:
            stored.setdefault(r.name.version, {})[r.name.platform.key] = {"key": r.key, "size": r.size}
        apps[name] = {
            "channels": channels,
            "releases": [
                {
                    "version": str(v),
                    "platforms": dict(sorted(stored[v].items())),
                    "channels": members.get(v, []),
                    "referenced": v in referenced,
                }
                for v in sorted(stored, reverse=True)
            ],
        }
    return {"schema": STATUS_SCHEMA, "store": store.url, "apps": apps}


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows of text in columns as wide as their widest cell (the first row: the headers)."""
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=False)]
    return ["  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)).rstrip() for row in (headers, *rows)]


def render_table(doc: dict[str, Any]) -> str:
    """The ``list`` table for people: one row per app, channel, platform and release, then the manifests."""
    rows: list[list[str]] = []
    manifests: list[list[str]] = []
    for app, info in doc["apps"].items():
        for channel, c in info["channels"].items():
            for r in c["releases"]:
                state = f"rollout {r['rollout']}%" if r["status"] == "rollout" else r["status"]
                for platform in r["platforms"]:
                    served = c["platforms"].get(platform, {})
                    role = (
                        "entry"
                        if served.get("version") == r["version"]
                        else "fallback"
                        if served.get("fallback") == r["version"]
                        else "-"
                    )
                    rows.append([app, channel, platform, r["version"], state, role])
            m, s = c["manifest"], c["state"]
            note = (
                ""
                if c["in_sync"]
                else f"behind its state (serial {s['serial']}): run 'gupper-publish resign {app} --channel {channel}'"
            )
            if m is not None and m["expired"]:
                note = "EXPIRED: run 'gupper-publish resign'"
            manifests.append(
                [
                    m["key"] if m else manifest_key(app, channel),
                    str(m["serial"]) if m else "-",
                    m["expires"] if m else "-",
                    note,
                ]
            )
        for r in info["releases"]:
            if not r["channels"]:
                rows.extend([app, "-", platform, r["version"], "in no channel", "-"] for platform in r["platforms"])
    if not rows and not manifests:
        return f"{doc['store']}: no releases"
    lines = table(["APP", "CHANNEL", "PLATFORM", "VERSION", "STATE", "SERVED"], rows)
    if manifests:
        lines += ["", *table(["MANIFEST", "SERIAL", "EXPIRES", "NOTE"], manifests)]
    return "\n".join(lines)
