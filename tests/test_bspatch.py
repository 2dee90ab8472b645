"""The client's standard-library bsdiff4 applier against patches made by the bsdiff4 package."""

from __future__ import annotations

import bz2
import hashlib
import io
import random
import threading
from pathlib import Path

import bsdiff4
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gupper.bspatch import apply_patch
from gupper.errors import PatchError


def _pair(seed: int, size: int) -> tuple[bytes, bytes]:
    rng = random.Random(seed)
    old = bytearray(rng.randbytes(size))
    new = bytearray(old)
    for _ in range(20):  # scattered edits, an insertion and a deletion, like a rebuilt binary
        i = rng.randrange(len(new))
        new[i : i + 4] = rng.randbytes(4)
    new[size // 3 : size // 3] = b"inserted" * 100
    del new[size // 2 : size // 2 + 500]
    return bytes(old), bytes(new)


@pytest.mark.parametrize(("seed", "size"), [(1, 10_000), (2, 300_000), (3, 3 << 20)])
def test_applies_bsdiff4_patches_exactly(tmp_path: Path, seed: int, size: int) -> None:
    old, new = _pair(seed, size)
    (tmp_path / "old").write_bytes(old)
    (tmp_path / "patch").write_bytes(bsdiff4.diff(old, new))
    out = io.BytesIO()
    digest = apply_patch(tmp_path / "old", tmp_path / "patch", out, len(new))
    assert out.getvalue() == new and digest == hashlib.sha256(new).hexdigest()


def test_wrong_expected_size_and_garbage_are_refused(tmp_path: Path) -> None:
    old, new = _pair(4, 50_000)
    (tmp_path / "old").write_bytes(old)
    patch = bsdiff4.diff(old, new)
    (tmp_path / "patch").write_bytes(patch)
    with pytest.raises(PatchError, match="not the 1 signed for"):
        apply_patch(tmp_path / "old", tmp_path / "patch", io.BytesIO(), 1)
    (tmp_path / "patch").write_bytes(patch[: len(patch) // 2])
    with pytest.raises(PatchError):
        apply_patch(tmp_path / "old", tmp_path / "patch", io.BytesIO(), len(new))
    (tmp_path / "patch").write_bytes(b"not a patch at all")
    with pytest.raises(PatchError, match="not a bsdiff4 patch"):
        apply_patch(tmp_path / "old", tmp_path / "patch", io.BytesIO(), len(new))


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=600), st.integers(min_value=0, max_value=5000))
def test_any_corruption_gives_a_patch_error_or_bytes_of_the_signed_size(
    tmp_path_factory: pytest.TempPathFactory, noise: bytes, at: int
) -> None:
    tmp = tmp_path_factory.mktemp("fuzz")
    old, new = _pair(5, 20_000)
    (tmp / "old").write_bytes(old)
    patch = bytearray(bsdiff4.diff(old, new))
    at = min(at, len(patch))
    patch[at : at + len(noise)] = noise
    (tmp / "patch").write_bytes(bytes(patch))
    out = io.BytesIO()
    try:
        apply_patch(tmp / "old", tmp / "patch", out, len(new))
    except PatchError:
        return
    assert len(out.getvalue()) == len(new)  # the caller's sha256 check decides the rest


def _bspatch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "gupper-bspatch"]


def test_the_diff_block_decompressed_ahead_leaves_no_thread_and_its_failure_is_raised(tmp_path: Path) -> None:
    """The diff block is decompressed in a thread of its own, a few pieces ahead of the writes: each
    way a patch can end (applied, a corrupt diff block met by that thread, a corrupt control block
    met by the caller while the thread is still ahead) ends that thread too."""
    old, new = _pair(6, 3 << 20)
    (tmp_path / "old").write_bytes(old)
    patch = bsdiff4.diff(old, new)
    (tmp_path / "patch").write_bytes(patch)
    out = io.BytesIO()
    assert apply_patch(tmp_path / "old", tmp_path / "patch", out, len(new)) == hashlib.sha256(new).hexdigest()
    assert out.getvalue() == new and not _bspatch_threads()

    len_ctrl = int.from_bytes(patch[8:16], "little")
    diff_at = 32 + len_ctrl
    broken_diff = patch[: diff_at + 40] + bytes(64) + patch[diff_at + 104 :]
    (tmp_path / "patch").write_bytes(broken_diff)
    with pytest.raises(PatchError, match="a compressed block of the patch is corrupt"):
        apply_patch(tmp_path / "old", tmp_path / "patch", io.BytesIO(), len(new))
    assert not _bspatch_threads()

    # A control block that asks for more than the new file: refused by the caller, the thread stopped.
    ctrl = bytearray(bz2.decompress(patch[32:diff_at]))
    ctrl[0:8] = (len(new) + 1).to_bytes(8, "little")
    packed = bz2.compress(bytes(ctrl))
    header = patch[:8] + len(packed).to_bytes(8, "little") + patch[16:32]
    (tmp_path / "patch").write_bytes(header + packed + patch[diff_at:])
    with pytest.raises(PatchError, match="control block is corrupt"):
        apply_patch(tmp_path / "old", tmp_path / "patch", io.BytesIO(), len(new))
    assert not _bspatch_threads()
