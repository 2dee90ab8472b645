"""Gupper's client: keep a frozen Python app up to date from a signed static manifest.

Typical start-up use::

    from gupper import Updater, UpdaterConfig
    Updater(UpdaterConfig(app="app", current_version=__version__,
                          manifest_url="https://cdn.example.com/app/stable/latest.json",
                          public_keys=("ed25519:...",))).run()

The names below are loaded on first use (module ``__getattr__``, PEP 562): ``import gupper``
costs nothing, and ``from gupper import Updater`` loads what a start-up check needs and no more.
Type checkers see ordinary imports.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .client import Checkpoint, Updater
    from .config import UpdaterConfig
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
    from .manifest import verify_manifest
    from .periodic import PeriodicCheck
    from .platforms import Platform, current_platform
    from .results import Result, Status, Update
    from .selftest import answer_self_test
    from .wire.manifest import Entry, Manifest

__version__ = "0.1.0"

# The submodule that defines each public name.
_WHERE = {
    name: module
    for module, names in {
        "client": "Checkpoint Updater",
        "config": "UpdaterConfig",
        "errors": "BadSignature ConfigError DownloadError Expired HTTPError InstallError IntegrityError Malformed ManifestError PreflightFailed"
        " PreflightInterrupted Rollback Timeout TooLarge UpdateError WrongTarget",
        "fetch": "Progress",
        "keys": "PublicKey TrustedKeys",
        "manifest": "verify_manifest",
        "periodic": "PeriodicCheck",
        "platforms": "Platform current_platform",
        "results": "Result Status Update",
        "selftest": "answer_self_test",
        "wire.manifest": "Entry Manifest",
    }.items()
    for name in names.split()
}


def __getattr__(name: str) -> Any:
    """Load a public name from its submodule on first use, then keep it in this module."""
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{where}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE})


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
