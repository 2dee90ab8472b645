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


class NotAnExecutable(PublishError):
    """A build is not an executable for the platform in its name (``force`` publishes it anyway)."""


class UntrustedKey(SigningKeyError):
    """The signing keys are not the ones a channel's installs trust; ``rotate-keys`` moves them to new ones."""


class BuildFailed(PublishError):
    """PyInstaller failed, or built something that is not an executable for this platform."""


class MissingExtra(PublishError):
    """A dependency of an optional part (the publisher, the build helper) is not installed; the message names the pip command."""


__all__ = [
    "AlreadyExists",
    "BadArtifactName",
    "BuildFailed",
    "ImmutableConflict",
    "MissingExtra",
    "NotAnExecutable",
    "NotFound",
    "PreconditionFailed",
    "PublishError",
    "SigningKeyError",
    "StoreBusy",
    "StoreError",
    "StoreUnsupported",
    "UntrustedKey",
]
