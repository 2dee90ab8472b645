"""Gupper's client: keep a frozen Python app up to date from a signed static manifest.

Typical start-up use::

    from gupper import Updater, UpdaterConfig
    Updater(UpdaterConfig(app="app", current_version=__version__,
                          manifest_url="https://cdn.example.com/app/stable/latest.json",
                          public_keys=("ed25519:...",))).run()
"""

from __future__ import annotations

from .client import Checkpoint, PeriodicCheck, Result, Status, Update, Updater, UpdaterConfig
from .errors import (
    BadSignature,
    ConfigError,
    DownloadError,
    Expired,
    HTTPError,
    InstallError,
    IntegrityError,
    Malformed,
    ManifestError,
    PreflightFailed,
    PreflightInterrupted,
    Rollback,
    Timeout,
    TooLarge,
    UpdateError,
    WrongTarget,
)
from .fetch import Progress
from .keys import PublicKey, TrustedKeys
from .manifest import Entry, Manifest, verify_manifest
from .platforms import Platform, current_platform
from .selftest import answer_self_test

__version__ = "0.1.0"

__all__ = [
    "BadSignature",
    "Checkpoint",
    "ConfigError",
    "DownloadError",
    "Entry",
    "Expired",
    "HTTPError",
    "InstallError",
    "IntegrityError",
    "Malformed",
    "Manifest",
    "ManifestError",
    "PeriodicCheck",
    "Platform",
    "PreflightFailed",
    "PreflightInterrupted",
    "Progress",
    "PublicKey",
    "Result",
    "Rollback",
    "Status",
    "Timeout",
    "TooLarge",
    "TrustedKeys",
    "Update",
    "UpdateError",
    "Updater",
    "UpdaterConfig",
    "WrongTarget",
    "answer_self_test",
    "current_platform",
    "verify_manifest",
]
