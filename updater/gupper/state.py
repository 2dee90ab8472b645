"""The client's small persistent state, one JSON file per app in the user's state directory.

It holds what must survive restarts for the security checks (highest manifest serial seen per
channel, the adopted key set) and later features (install id for rollouts). Written atomically
(temp file, fsync, rename) so a crash never leaves half a file; a missing or unreadable file
means "first run", which only weakens rollback protection back to what a fresh install has.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import time
from pathlib import Path
from typing import Any

from ._fsutil import atomic_write
from .keys import TrustedKeys
from .records import asdict, field, record
from .trust import ChannelRecord, fingerprint

log = logging.getLogger("gupper")

STATE_VERSION = 1


@record
class Trial:
    """A freshly installed version on probation until it confirms it runs."""

    version: str
    previous_version: str
    target: str
    backup: str
    starts: int = 0


@record
class PartialDownload:
    """What a kept partial download is, so the next attempt can resume it with Range/If-Range."""

    url: str
    sha256: str
    size: int
    etag: str | None
    path: str


@record
class ClientState:
    """Everything the updater remembers between runs."""

    install_id: str = field(default_factory=lambda: secrets.token_hex(16))
    channels: dict[str, ChannelRecord] = field(default_factory=dict)
    trusted_keys: list[str] | None = None
    trusted_threshold: int = 1
    builtin_fingerprint: str = ""
    trial: Trial | None = None
    bad_versions: dict[str, str] = field(default_factory=dict)
    partial: PartialDownload | None = None
    preflight_interrupted: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def trusted(self, builtin: TrustedKeys) -> TrustedKeys:
        """The key set to verify with: an adopted rotation, unless this build ships other keys."""
        if self.trusted_keys and self.builtin_fingerprint == fingerprint(builtin):
            return TrustedKeys.from_texts(self.trusted_keys, self.trusted_threshold)
        return builtin

    def adopt(self, keys: TrustedKeys, builtin: TrustedKeys) -> None:
        """Trust ``keys`` from now on (after a verified rotation)."""
        self.trusted_keys = [k.to_text() for k in keys.keys]
        self.trusted_threshold = keys.threshold
        self.builtin_fingerprint = fingerprint(builtin)

    def to_json(self) -> dict[str, Any]:
        """Serialisable form."""
        return {
            "version": STATE_VERSION,
            "install_id": self.install_id,
            "channels": {name: {"serial": r.serial, "digest": r.digest} for name, r in sorted(self.channels.items())},
            "trusted_keys": self.trusted_keys,
            "trusted_threshold": self.trusted_threshold,
            "builtin_fingerprint": self.builtin_fingerprint,
            "trial": asdict(self.trial) if self.trial else None,
            "bad_versions": dict(sorted(self.bad_versions.items())),
            "partial": asdict(self.partial) if self.partial else None,
            "preflight_interrupted": dict(sorted(self.preflight_interrupted.items())),
            "extra": self.extra,
        }

    @classmethod
    def from_json(cls, doc: Any) -> ClientState:
        """Parse; raises ValueError/TypeError/KeyError on anything unexpected."""
        if not isinstance(doc, dict) or doc.get("version") != STATE_VERSION:
            raise ValueError("unknown state version")
        channels = {str(k): ChannelRecord(int(v["serial"]), str(v["digest"])) for k, v in dict(doc["channels"]).items()}
        keys = doc.get("trusted_keys")
        return cls(
            install_id=str(doc["install_id"]),
            channels=channels,
            trusted_keys=[str(k) for k in keys] if keys else None,
            trusted_threshold=int(doc.get("trusted_threshold", 1)),
            builtin_fingerprint=str(doc.get("builtin_fingerprint", "")),
            trial=Trial(**doc["trial"]) if doc.get("trial") else None,
            bad_versions={str(k): str(v) for k, v in dict(doc.get("bad_versions", {})).items()},
            partial=PartialDownload(**doc["partial"]) if doc.get("partial") else None,
            preflight_interrupted={str(k): int(v) for k, v in dict(doc.get("preflight_interrupted", {})).items()},
            extra=dict(doc.get("extra", {})),
        )


def default_state_dir(app: str) -> Path:
    """``~/.local/state/gupper/<app>`` on Linux, the system's equivalent elsewhere (:mod:`gupper.folders`)."""
    from .folders import user_state_dir

    return user_state_dir(app)


class StateFile:
    """Load and save :class:`ClientState` at one path."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / "state.json"

    def load(self) -> ClientState:
        """The saved state, or a fresh one (logged) if there is none or it is unreadable."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return ClientState()
        except OSError as e:
            log.warning("gupper: cannot read %s (%s); starting from a fresh state", self.path, e.strerror)
            return ClientState()
        try:
            return ClientState.from_json(json.loads(raw))
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as e:
            log.warning("gupper: %s is unreadable (%s); starting from a fresh state", self.path, type(e).__name__)
            return ClientState()

    def save(self, state: ClientState) -> None:
        """Write atomically: temp file in the same directory, fsync, rename, fsync the directory."""
        atomic_write(self.path, (json.dumps(state.to_json(), indent=1, sort_keys=True) + "\n").encode())

    def probe(self) -> None:
        """Create and remove an empty file in the state folder (created if missing).

        Raises:
            OSError: the folder cannot be written (read-only, no permission, full).
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        probe = self.directory / f".probe-{secrets.token_hex(4)}.tmp"  # a temp name: a kill leaves it to the sweep
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600))
        with contextlib.suppress(OSError):
            probe.unlink()

    def remove_stale_temp_files(self, min_age: float = 60.0) -> list[Path]:
        """Remove the temp files of atomic writes that a killed process left in the state folder.

        Only files at least ``min_age`` seconds old: a live writer's temp file exists for
        milliseconds, so an old one has no writer left.
        """
        removed: list[Path] = []
        cutoff = time.time() - min_age
        try:
            candidates = [p for p in self.directory.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp")]
        except OSError:
            return removed
        for path in candidates:
            with contextlib.suppress(OSError):
                if path.lstat().st_mtime < cutoff:
                    path.unlink()
                    removed.append(path)
        return removed


_CACHE_MAGIC = b"gupper-manifest-cache 1\n"
_MAX_ETAG = 1024


class ManifestCache:
    """The last *accepted* manifest of one channel and the ETag it came with, in one file.

    Written only after the manifest verified and passed the rollback checks, both parts in one
    atomic write, so a garbage 200 (a captive portal's page) or a replayed old manifest can never
    be what a later ``304 Not Modified`` is answered from.
    """

    def __init__(self, directory: Path, channel: str) -> None:
        self.path = directory / f"{channel}.manifest-cache"

    def load(self, max_bytes: int) -> tuple[str, bytes] | None:
        """The cached (ETag, manifest bytes), or None when there is no usable copy."""
        try:
            with self.path.open("rb") as f:
                data = f.read(len(_CACHE_MAGIC) + _MAX_ETAG + 1 + max_bytes + 1)
        except OSError:
            return None
        if not data.startswith(_CACHE_MAGIC):
            return None
        etag, sep, body = data[len(_CACHE_MAGIC) :].partition(b"\n")
        try:
            text = etag.decode("utf-8")
        except UnicodeDecodeError:
            return None
        if not sep or not cacheable_etag(text) or len(body) > max_bytes:
            return None
        return text, body

    def save(self, etag: str, body: bytes) -> None:
        """Keep ``body`` as the copy that ``etag`` names."""
        atomic_write(self.path, _CACHE_MAGIC + etag.encode("utf-8") + b"\n" + body)

    def drop(self) -> None:
        """Forget the copy: the next request is unconditional."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def cacheable_etag(etag: str | None) -> bool:
    """Whether ``etag`` can be kept and sent back in ``If-None-Match`` as it is."""
    return etag is not None and 0 < len(etag) <= _MAX_ETAG and etag.isprintable() and not etag[0].isspace()
