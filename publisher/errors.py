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


class PreconditionFailed(StoreError):
    """A compare-and-swap write lost a race with another publisher."""


__all__ = ["AlreadyExists", "BadArtifactName", "ImmutableConflict", "PreconditionFailed", "PublishError", "SigningKeyError", "StoreError"]
