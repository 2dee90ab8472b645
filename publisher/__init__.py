"""Gupper's publisher: upload builds to a store and regenerate a signed static manifest."""

from __future__ import annotations

from .artifacts import ArtifactName, manifest_key, parse_artifact_name
from .errors import AlreadyExists, BadArtifactName, ImmutableConflict, PreconditionFailed, PublishError, SigningKeyError, StoreError
from .publish import PublishOptions, PublishReport, publish, regenerate_manifest, upload_artifacts
from .signing import keygen, load_signing_key, public_key_of, sign_manifest
from .stores import LocalStore, ObjectInfo, S3Store, Store, open_store

__all__ = [
    "AlreadyExists",
    "ArtifactName",
    "BadArtifactName",
    "ImmutableConflict",
    "LocalStore",
    "ObjectInfo",
    "PreconditionFailed",
    "PublishError",
    "PublishOptions",
    "PublishReport",
    "S3Store",
    "SigningKeyError",
    "Store",
    "StoreError",
    "keygen",
    "load_signing_key",
    "manifest_key",
    "open_store",
    "parse_artifact_name",
    "public_key_of",
    "publish",
    "regenerate_manifest",
    "sign_manifest",
    "upload_artifacts",
]
