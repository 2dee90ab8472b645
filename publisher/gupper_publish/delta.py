"""Binary patches at publish time: from each of the previous K releases to the new one.

bsdiff4 was picked by measurement (docs/delta.md): patches are as small as zstd's or
HDiffPatch's on reproducible builds, and the client applies them with the standard library in
bounded memory. Making one costs the publisher time and memory (about 14 s and 18x the file
size for a 25 MB app), which is paid once per release, not once per install.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

from packaging.version import Version

from .channels import ArtifactRecord, ChannelState, PatchRecord
from .errors import AlreadyExistsError
from .layout import artifact_key, binary_patch_name, patch_key
from .locks import work_folder
from .stores import ARTIFACT_CACHE_CONTROL, ARTIFACT_CONTENT_TYPE, Store

log = logging.getLogger("gupper.publish")

DEFAULT_PATCHES = 3


def previous_files(
    state: ChannelState, platform: str, version: Version, k: int
) -> list[tuple[Version, ArtifactRecord]]:
    """The newest ``k`` releases below ``version`` that have a file for ``platform`` (yanked ones too:
    installs may still run them)."""
    older = sorted(
        (r for r in state.releases.values() if r.version < version and platform in r.artifacts),
        key=lambda r: r.version,
        reverse=True,
    )
    return [(r.version, r.artifacts[platform]) for r in older[:k]]


def make_patches(
    store: Store,
    app: str,
    version: Version,
    new_file: Path,
    new: ArtifactRecord,
    previous: Sequence[tuple[Version, ArtifactRecord]],
) -> tuple[PatchRecord, ...]:
    """Make (or find, if an earlier run made them) a patch from each previous file to ``new``.

    A patch no smaller than the full file is not worth listing and is skipped.
    """
    if not previous:
        return ()
    import bsdiff4

    new_bytes = new_file.read_bytes()
    records = []
    for old_version, old in previous:
        name = binary_patch_name(new.file, old_version)
        key = patch_key(app, version, name)
        existing = store.head(key)
        if existing is not None:
            records.append(PatchRecord(str(old_version), old.sha256, name, existing.size, store.sha256_of(key)))
            continue
        stored = store.read(artifact_key(app, old_version, old.file))
        if stored is None or hashlib.sha256(stored.data).hexdigest() != old.sha256:
            log.warning("skipping the patch from %s: its file is missing or altered in the store", old_version)
            continue
        patch = bsdiff4.diff(stored.data, new_bytes)
        if len(patch) >= new.size:
            continue
        digest = hashlib.sha256(patch).hexdigest()
        with work_folder() as tmp:
            path = tmp / name
            path.write_bytes(patch)
            try:
                store.create_file(
                    key, path, sha256=digest, content_type=ARTIFACT_CONTENT_TYPE, cache_control=ARTIFACT_CACHE_CONTROL
                )
            except AlreadyExistsError:
                digest = store.sha256_of(key)  # a concurrent publisher made it: bsdiff4 is deterministic
        records.append(PatchRecord(str(old_version), old.sha256, name, len(patch), digest))
    return tuple(records)
