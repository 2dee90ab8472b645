"""Exceptions raised by the updater.

Every message is one line that says what was wrong and what to do about it, because the
embedding app usually just logs ``str(error)`` and carries on with the version it has.
"""

from __future__ import annotations


class UpdateError(Exception):
    """Base class: any failure of a check, download or install."""


class ConfigError(UpdateError):
    """The updater was configured with something unusable (bad key, non-https URL, ...)."""


class ManifestError(UpdateError):
    """The manifest cannot be trusted or used."""


class Malformed(ManifestError):
    """The manifest is not valid JSON of the expected shape."""


class BadSignature(ManifestError):
    """Not enough valid signatures from trusted keys."""


class Expired(ManifestError):
    """The manifest's expiry lies in the past (a freeze attack or a publisher that stopped re-signing)."""


class Rollback(ManifestError):
    """The manifest is older than one already accepted."""


class WrongTarget(ManifestError):
    """The manifest is for another app or channel."""


class DownloadError(UpdateError):
    """Fetching the manifest or an artifact failed."""


class HTTPError(DownloadError):
    """The server answered with an error status, or a redirect we refuse to follow."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class TooLarge(DownloadError):
    """The server sent more bytes than allowed."""


class Timeout(DownloadError):
    """A connect, read or total deadline passed."""


class IntegrityError(DownloadError):
    """The downloaded bytes do not match the signed size or sha256."""


class InstallError(UpdateError):
    """Replacing the executable failed; the installed binary was left as it was."""


__all__ = [
    "BadSignature",
    "ConfigError",
    "DownloadError",
    "Expired",
    "HTTPError",
    "InstallError",
    "IntegrityError",
    "Malformed",
    "ManifestError",
    "PreflightFailed",
    "PreflightInterrupted",
    "Rollback",
    "Timeout",
    "TooLarge",
    "UpdateError",
    "WrongTarget",
]


class PreflightFailed(InstallError):
    """The downloaded binary did not start and answer its self-test; it was not installed."""


class PreflightInterrupted(InstallError):
    """The self-test of the downloaded binary was killed from outside (a signal such as SIGKILL
    from the OOM killer or a user): no verdict on the release; it is tried again later."""
