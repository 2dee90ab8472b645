"""Gupper's publisher: upload builds to a store and regenerate a signed static manifest.

The Python API does what the ``gupper-publish`` command does (docs/release-management.md,
"Python API")::

    from gupper_publish import PublishOptions, load_signing_keys, open_store, publish

    report = publish(open_store("s3://bucket/releases"), [Path("dist/myapp-1.2.0-linux-amd64")],
                     PublishOptions(keys=load_signing_keys(key_text_or_path)))

It needs the publisher extra (``pip install 'gupper[publisher]'``): S3 stores need boto3 and
binary patches bsdiff4; a call that needs one that is missing raises MissingExtraError naming that
command. ``build`` needs ``gupper[build]`` (PyInstaller).
"""

from __future__ import annotations

from . import errors as _errors
from .artifacts import ArtifactName, parse_artifact_name
from .build import BuildOptions, build
from .dryrun import DryRunStore
from .errors import (
    AlreadyExistsError,
    BadArtifactNameError,
    BuildFailedError,
    ImmutableConflictError,
    MissingExtraError,
    NotAnExecutableError,
    NotFoundError,
    PreconditionFailedError,
    PublishError,
    SigningKeyError,
    StoreBusyError,
    StoreError,
    UntrustedKeyError,
)
from .layout import manifest_key
from .publish import (
    ManifestResult,
    Naming,
    PatchMade,
    PublishOptions,
    PublishReport,
    Uploaded,
    publish,
    regenerate_manifest,
    upload_artifacts,
)
from .release import init_store, promote, prune, resign, rotate_keys, set_rollout, yank
from .signing import (
    key_id,
    keygen,
    load_signing_key,
    load_signing_keys,
    parse_signing_key,
    public_key_of,
    sign_manifest,
)
from .status import status
from .stores import LocalStore, ObjectInfo, S3Store, Store, open_store


def __getattr__(name: str) -> type[PublishError]:
    """The error names of the previous release (:data:`gupper_publish.errors.DEPRECATED`), with a DeprecationWarning."""
    cls = _errors.deprecated(__name__, name)
    if cls is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return cls


__all__ = [
    "AlreadyExistsError",
    "ArtifactName",
    "BadArtifactNameError",
    "BuildFailedError",
    "BuildOptions",
    "DryRunStore",
    "ImmutableConflictError",
    "LocalStore",
    "ManifestResult",
    "MissingExtraError",
    "Naming",
    "NotAnExecutableError",
    "NotFoundError",
    "ObjectInfo",
    "PatchMade",
    "PreconditionFailedError",
    "PublishError",
    "PublishOptions",
    "PublishReport",
    "S3Store",
    "SigningKeyError",
    "Store",
    "StoreBusyError",
    "StoreError",
    "UntrustedKeyError",
    "Uploaded",
    "build",
    "init_store",
    "key_id",
    "keygen",
    "load_signing_key",
    "load_signing_keys",
    "manifest_key",
    "open_store",
    "parse_artifact_name",
    "parse_signing_key",
    "promote",
    "prune",
    "public_key_of",
    "publish",
    "regenerate_manifest",
    "resign",
    "rotate_keys",
    "set_rollout",
    "sign_manifest",
    "status",
    "upload_artifacts",
    "yank",
]
