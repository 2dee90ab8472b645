"""Gupper's publisher: upload builds to a store and regenerate a signed static manifest."""

from __future__ import annotations

from .artifacts import ArtifactName, manifest_key, parse_artifact_name
from .errors import AlreadyExists, BadArtifactName, ImmutableConflict, NotFound, PreconditionFailed, PublishError, SigningKeyError, StoreBusy, StoreError
from .publish import ManifestResult, PublishOptions, PublishReport, publish, regenerate_manifest, upload_artifacts
from .release import init_store, promote, prune, rotate_keys, set_rollout, yank
from .signing import keygen, load_signing_key, public_key_of, sign_manifest
from .status import status
from .stores import LocalStore, ObjectInfo, S3Store, Store, open_store

__all__ = [
    "AlreadyExists",
    "ArtifactName",
    "BadArtifactName",
    "ImmutableConflict",
    "LocalStore",
    "ManifestResult",
    "NotFound",
    "ObjectInfo",
    "PreconditionFailed",
    "PublishError",
    "PublishOptions",
    "PublishReport",
    "S3Store",
    "SigningKeyError",
    "Store",
    "StoreBusy",
    "StoreError",
    "init_store",
    "keygen",
    "load_signing_key",
    "manifest_key",
    "open_store",
    "parse_artifact_name",
    "promote",
    "prune",
    "public_key_of",
    "publish",
    "regenerate_manifest",
    "rotate_keys",
    "set_rollout",
    "sign_manifest",
    "status",
    "upload_artifacts",
    "yank",
]
