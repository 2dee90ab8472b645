"""Exceptions raised by the publisher; the CLI maps them to one line and an exit code."""

from __future__ import annotations


class PublishError(Exception):
    """Base class for anything that stops a publish."""


class BadArtifactName(PublishError):
    """A file name that does not follow ``<app>-<version>-<os>-<arch>[.exe]``."""


class ImmutableConflict(PublishError):
    """A different file is already published under that name (releases are immutable)."""


class SigningKeyError(PublishError):
    """The signing key is missing, unreadable, of the wrong kind or too widely readable."""


class StoreError(PublishError):
    """The store refused or failed an operation."""


class AlreadyExists(StoreError):
    """A create-only write found the object already there."""


class StoreUnsupported(StoreError):
    """The store lacks a feature the publisher's guarantees rest on (conditional writes); retrying will not help."""


class PreconditionFailed(StoreError):
    """A compare-and-swap write lost a race with another publisher."""


class StoreBusy(PublishError):
    """Compare-and-swap kept losing to other publishers; retrying later is the fix."""


class NotFound(PublishError):
    """The app, channel or release a command names is not in the store."""


__all__ = [
    "AlreadyExists",
    "BadArtifactName",
    "ImmutableConflict",
    "NotFound",
    "PreconditionFailed",
    "PublishError",
    "SigningKeyError",
    "StoreBusy",
    "StoreError",
    "StoreUnsupported",
]
