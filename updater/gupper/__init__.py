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
    from .checkpoints import Checkpoint, CheckpointHook
    from .client import Updater
    from .config import UpdaterConfig
    from .desktop import BackgroundUpdates, UiQueue
    from .errors import (
        BadSignatureError,
        ConfigError,
        DownloadError,
        ExpiredError,
        HTTPStatusError,
        InstallError,
        IntegrityError,
        MalformedError,
        ManifestError,
        PatchError,
        PreflightFailedError,
        PreflightInterruptedError,
        RollbackError,
        TooLargeError,
        TransferTimeoutError,
        UpdateError,
        WrongTargetError,
    )
    from .keys import PublicKey, TrustedKeys
    from .logfile import log_to_file
    from .manifest import verify_manifest
    from .periodic import PeriodicCheck
    from .platforms import Platform, current_platform
    from .results import Result, Status, Update
    from .selftest import answer_self_test
    from .transfer import Progress
    from .wire.manifest import Entry, Manifest

__version__ = "0.1.0"

# The submodule that defines each public name.
_WHERE = {
    name: module
    for module, names in {
        "checkpoints": "Checkpoint CheckpointHook",
        "client": "Updater",
        "config": "UpdaterConfig",
        "desktop": "BackgroundUpdates UiQueue",
        "errors": "BadSignatureError ConfigError DownloadError ExpiredError HTTPStatusError "
        "InstallError IntegrityError MalformedError ManifestError PatchError"
        " PreflightFailedError PreflightInterruptedError RollbackError TooLargeError "
        "TransferTimeoutError UpdateError WrongTargetError",
        "transfer": "Progress",
        "keys": "PublicKey TrustedKeys",
        "logfile": "log_to_file",
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
    """Load a public name from its submodule on first use, then keep it in this module.

    The error names of the previous release (``Malformed``, ``Timeout``, ``HTTPError``, ...;
    :data:`gupper.errors.DEPRECATED`) still load, with a DeprecationWarning, until the next release.
    """
    where = _WHERE.get(name)
    if where is None:
        old = importlib.import_module(f"{__name__}.errors").deprecated(__name__, name)
        if old is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        return old  # not kept: each use warns
    value = getattr(importlib.import_module(f"{__name__}.{where}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE})


__all__ = [
    "BackgroundUpdates",
    "BadSignatureError",
    "Checkpoint",
    "CheckpointHook",
    "ConfigError",
    "DownloadError",
    "Entry",
    "ExpiredError",
    "HTTPStatusError",
    "InstallError",
    "IntegrityError",
    "MalformedError",
    "Manifest",
    "ManifestError",
    "PatchError",
    "PeriodicCheck",
    "Platform",
    "PreflightFailedError",
    "PreflightInterruptedError",
    "Progress",
    "PublicKey",
    "Result",
    "RollbackError",
    "Status",
    "TooLargeError",
    "TransferTimeoutError",
    "TrustedKeys",
    "UiQueue",
    "Update",
    "UpdateError",
    "Updater",
    "UpdaterConfig",
    "WrongTargetError",
    "answer_self_test",
    "current_platform",
    "log_to_file",
    "verify_manifest",
]
