"""Exceptions raised by the updater.

Every message is one line that says what was wrong and what to do about it, because the
embedding app usually just logs ``str(error)`` and carries on with the version it has.

The tree splits by what a retry can do, so the order of ``except`` clauses never matters::

    UpdateError
    ├── ConfigError                 the app's configuration cannot work
    ├── ManifestError               the manifest cannot be trusted or used (permanent for these bytes)
    │   ├── MalformedError, BadSignatureError, ExpiredError, RollbackError, WrongTargetError
    ├── DownloadError               a transfer failed: network, server, deadline (retryable)
    │   ├── HTTPStatusError, TransferTimeoutError
    ├── IntegrityError              the bytes are not the signed ones (permanent: never retried as they are)
    │   ├── TooLargeError, PatchError
    └── InstallError                the install could not be changed; it was left as it was
        ├── PreflightFailedError, PreflightInterruptedError

The names of the previous release (``Malformed``, ``BadSignature``, ``Expired``, ``Rollback``,
``WrongTarget``, ``HTTPError``, ``Timeout``, ``TooLarge``, ``PreflightFailed``,
``PreflightInterrupted``) still import from ``gupper`` and ``gupper.errors``, with a
DeprecationWarning, until the next release.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any


class UpdateError(Exception):
    """Base class: any failure of a check, download or install."""


class ConfigError(UpdateError):
    """The updater was configured with something unusable (bad key, non-https URL, ...)."""


class ManifestError(UpdateError):
    """The manifest cannot be trusted or used; the same bytes are refused every time."""


class MalformedError(ManifestError):
    """The manifest is not valid JSON of the expected shape, or a field has the wrong type or value."""


class BadSignatureError(ManifestError):
    """Not enough valid signatures from trusted keys."""


class ExpiredError(ManifestError):
    """The manifest's expiry lies in the past (a freeze attack or a publisher that stopped re-signing)."""


class RollbackError(ManifestError):
    """The manifest is older than one already accepted (or differs from one with its serial)."""


class WrongTargetError(ManifestError):
    """The manifest is for another app or channel."""


class DownloadError(UpdateError):
    """Fetching the manifest or an artifact failed on the way: the network, the server, a deadline.

    Retryable: a later attempt may succeed (a partial download is kept when it can be resumed).
    """


class HTTPStatusError(DownloadError):
    """The server answered with an error status, or a redirect that is refused; ``status`` is the code."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class TransferTimeoutError(DownloadError):
    """A connect, read or overall deadline passed."""


class IntegrityError(UpdateError):
    """The bytes are not the signed ones (size, sha256, a file list, a patch that does not fit).

    Permanent for these bytes: they are removed, never resumed; the store holds something else
    than what was signed, until it is fixed.
    """


class TooLargeError(IntegrityError):
    """The server sent more bytes than signed (or than a manifest may have)."""


class PatchError(IntegrityError):
    """A delta patch is malformed, truncated or does not fit the file it is applied to (the full file is fetched
    instead)."""


class InstallError(UpdateError):
    """Replacing the executable failed; the installed binary was left as it was."""


class PreflightFailedError(InstallError):
    """The downloaded binary did not start and answer its self-test; it was not installed."""


class PreflightInterruptedError(InstallError):
    """The self-test of the downloaded binary was killed from outside (a signal such as SIGKILL
    from the OOM killer or a user): no verdict on the release; it is tried again later."""


DEPRECATED = {
    "BadSignature": "BadSignatureError",
    "Expired": "ExpiredError",
    "HTTPError": "HTTPStatusError",
    "Malformed": "MalformedError",
    "PreflightFailed": "PreflightFailedError",
    "PreflightInterrupted": "PreflightInterruptedError",
    "Rollback": "RollbackError",
    "Timeout": "TransferTimeoutError",
    "TooLarge": "TooLargeError",
    "WrongTarget": "WrongTargetError",
}
"""Names of the previous release → their new names; importable for one more release, with a warning."""


def renamed(module: str, name: str, renames: Mapping[str, str], namespace: Mapping[str, Any]) -> Any:
    """What the old ``name`` in ``module`` stands for (looked up in ``namespace`` under its new name
    from ``renames``), after a DeprecationWarning naming the new one; None if it is not an old name.
    Shared with the publisher's errors module."""
    new = renames.get(name)
    if new is None:
        return None
    warnings.warn(
        f"{module}.{name} is deprecated and goes away in the next release; use {module}.{new}",
        DeprecationWarning,
        stacklevel=4,  # the line that used the old name: past this function, deprecated() and __getattr__
    )
    return namespace[new]


def deprecated(module: str, name: str) -> type[UpdateError] | None:
    """The class an old name stands for, after a DeprecationWarning naming the new one; None if ``name`` is not an
    old name."""
    cls: type[UpdateError] | None = renamed(module, name, DEPRECATED, globals())
    return cls


def __getattr__(name: str) -> type[UpdateError]:
    """The old names, with a DeprecationWarning (PEP 562)."""
    cls = deprecated(__name__, name)
    if cls is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return cls


__all__ = [
    "BadSignatureError",
    "ConfigError",
    "DownloadError",
    "ExpiredError",
    "HTTPStatusError",
    "InstallError",
    "IntegrityError",
    "MalformedError",
    "ManifestError",
    "PatchError",
    "PreflightFailedError",
    "PreflightInterruptedError",
    "RollbackError",
    "TooLargeError",
    "TransferTimeoutError",
    "UpdateError",
    "WrongTargetError",
]
