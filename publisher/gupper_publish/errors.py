"""Exceptions raised by the publisher; the CLI maps them to one line and an exit code.

The names of the previous release (``BadArtifactName``, ``ImmutableConflict``, ``AlreadyExists``,
``StoreUnsupported``, ``PreconditionFailed``, ``StoreBusy``, ``NotFound``, ``NotAnExecutable``,
``UntrustedKey``, ``BuildFailed``, ``MissingExtra``) still import from ``gupper_publish`` and
``gupper_publish.errors``, with a DeprecationWarning, until the next release.
"""

from __future__ import annotations

from gupper.errors import renamed


class PublishError(Exception):
    """Base class for anything that stops a publish."""


class BadArtifactNameError(PublishError):
    """A file name that does not follow ``<app>-<version>-<os>-<arch>[.exe]``."""


class ImmutableConflictError(PublishError):
    """A different file is already published under that name (releases are immutable)."""


class SigningKeyError(PublishError):
    """The signing key is missing, unreadable, of the wrong kind or too widely readable."""


class StoreError(PublishError):
    """The store refused or failed an operation."""


class AlreadyExistsError(StoreError):
    """A create-only write found the object already there."""


class StoreUnsupportedError(StoreError):
    """The store lacks a feature the publisher's guarantees rest on (conditional writes); retrying will not help."""


class PreconditionFailedError(StoreError):
    """A compare-and-swap write lost a race with another publisher."""


class StoreBusyError(PublishError):
    """Compare-and-swap kept losing to other publishers; retrying later is the fix."""


class NotFoundError(PublishError):
    """The app, channel or release a command names is not in the store."""


class NotAnExecutableError(PublishError):
    """A build is not an executable for the platform in its name (``force`` publishes it anyway)."""


class UntrustedKeyError(SigningKeyError):
    """The signing keys are not the ones a channel's installs trust; ``rotate-keys`` moves them to new ones."""


class BuildFailedError(PublishError):
    """PyInstaller failed, or built something that is not an executable for this platform."""


class AccessLogError(PublishError):
    """An access log cannot be read, or its location or format is not one ``stats`` and ``advance`` know."""


class MissingExtraError(PublishError):
    """A dependency of an optional part (the publisher, the build helper) is not installed; the message names the pip
    command."""


DEPRECATED = {
    old: old + "Error"
    for old in (
        "AlreadyExists",
        "BadArtifactName",
        "BuildFailed",
        "ImmutableConflict",
        "MissingExtra",
        "NotAnExecutable",
        "NotFound",
        "PreconditionFailed",
        "StoreBusy",
        "StoreUnsupported",
        "UntrustedKey",
    )
}
"""Names of the previous release → their new names; importable for one more release, with a warning."""


def deprecated(module: str, name: str) -> type[PublishError] | None:
    """The class an old name stands for, after a DeprecationWarning naming the new one; None if ``name`` is not an
    old name."""
    cls: type[PublishError] | None = renamed(module, name, DEPRECATED, globals())
    return cls


def __getattr__(name: str) -> type[PublishError]:
    """The old names, with a DeprecationWarning (PEP 562)."""
    cls = deprecated(__name__, name)
    if cls is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return cls


__all__ = [
    "AccessLogError",
    "AlreadyExistsError",
    "BadArtifactNameError",
    "BuildFailedError",
    "ImmutableConflictError",
    "MissingExtraError",
    "NotAnExecutableError",
    "NotFoundError",
    "PreconditionFailedError",
    "PublishError",
    "SigningKeyError",
    "StoreBusyError",
    "StoreError",
    "StoreUnsupportedError",
    "UntrustedKeyError",
]
