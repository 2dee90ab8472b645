"""Apply a BSDIFF40 patch (as made by ``bsdiff4``) with the standard library only, streaming.

The client ships inside every app, so its delta support adds no dependency: bz2 is in the
standard library and the patch is applied in 1 MiB pieces, so memory stays flat however large
the app is (the diff block is decompressed at most :data:`AHEAD` pieces ahead, in a thread of its
own: about 0.75x the time of a 20 MB patch on two cores). Everything read from the patch is
bounded by the size the caller expects (the signed size of the target), so a hostile patch cannot
make us write or decompress more.

Format: ``BSDIFF40``, then three little-endian signed 64-bit lengths (control block, diff block,
new file), then three bz2 streams. Control is a list of triples (x, y, z): add x bytes of diff to
x bytes of old, copy y bytes of extra, move the old position by z.
"""

from __future__ import annotations

import bz2
import hashlib
import queue
import threading
from pathlib import Path
from typing import BinaryIO

from .errors import PatchError

CHUNK = 1 << 20
MAGIC = b"BSDIFF40"


def _offtin(b: bytes) -> int:
    v = int.from_bytes(b[:8], "little")
    return -(v & ~(1 << 63)) if v >> 63 else v


class _Bz2Stream:
    """Exactly-n reads of decompressed bytes from one bz2 stream at a slice of the patch file."""

    def __init__(self, f: BinaryIO, offset: int, length: int) -> None:
        self.f, self.pos, self.left = f, offset, length
        self.dec = bz2.BZ2Decompressor()
        self.buf = b""

    def read(self, n: int) -> bytes:
        data = self.read_upto(n)
        if len(data) < n:
            raise PatchError("the patch ends early (truncated or corrupt)")
        return data

    def read_upto(self, n: int) -> bytes:
        """Up to ``n`` bytes: fewer only where the stream ends."""
        parts, have = [self.buf[:n]], min(n, len(self.buf))
        self.buf = self.buf[n:]
        while have < n and not self.dec.eof:  # at its end a bz2 stream has given all its output
            data = b""
            if self.dec.needs_input:
                if self.left <= 0:
                    break
                self.f.seek(self.pos)
                data = self.f.read(min(CHUNK, self.left))
                if not data:
                    break
                self.pos += len(data)
                self.left -= len(data)
            try:
                piece = self.dec.decompress(data, n - have)
            except (OSError, EOFError) as e:
                raise PatchError(f"a compressed block of the patch is corrupt ({e})") from e
            if not piece and self.dec.eof:
                break
            parts.append(piece)
            have += len(piece)
        return b"".join(parts)


AHEAD = 4
"""Decompressed pieces of the diff block the decompressing thread may hold ready (4 MiB at most)."""
_WAIT = 60.0
"""Seconds without a piece from the decompressing thread before the patch is given up (it never
blocks on anything but the file it reads: this bounds a stalled disk, not a normal patch)."""
_END = object()


class _Ahead:
    """Exactly-n reads of one bz2 stream, decompressed ahead in a thread of its own.

    The diff block is as long as the new file (zeros where old and new agree): decompressing it is
    most of a patch's time, and bz2 lets other threads run while it works, so the caller adds,
    writes and hashes one piece while the next is being decompressed. At most :data:`AHEAD`
    pieces wait; a failure in the thread is raised by the read that meets it.
    """

    def __init__(self, stream: _Bz2Stream, total: int) -> None:
        self.pieces: queue.Queue[object] = queue.Queue(AHEAD)
        self.stop = threading.Event()
        self.buf = b""
        self.thread = threading.Thread(target=self._run, args=(stream, total), name="gupper-bspatch", daemon=True)
        self.thread.start()

    def _run(self, stream: _Bz2Stream, total: int) -> None:
        item: object = _END
        try:
            left = total
            while left > 0:
                piece = stream.read_upto(min(CHUNK, left))
                if not piece:
                    break
                left -= len(piece)
                if not self._put(piece):
                    return
        except Exception as e:  # handed to the reading thread, which raises it
            item = e
        self._put(item)

    def _put(self, item: object) -> bool:
        while not self.stop.is_set():
            try:
                self.pieces.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read(self, n: int) -> bytes:
        while len(self.buf) < n:
            try:
                item = self.pieces.get(timeout=_WAIT)
            except queue.Empty:
                raise PatchError(f"the patch's diff block gave nothing for {_WAIT:g} s") from None
            if item is _END:
                raise PatchError("the patch ends early (truncated or corrupt)")
            if isinstance(item, Exception):
                raise item
            assert isinstance(item, bytes)
            self.buf = item if not self.buf else self.buf + item
        piece, self.buf = self.buf[:n], self.buf[n:]
        return piece

    def close(self) -> None:
        self.stop.set()
        self.thread.join(_WAIT)


_MASKS: dict[int, tuple[int, int]] = {}
_ZEROS = bytes(CHUNK)


def _add_bytes(a: bytes, b: bytes) -> bytes:
    """Byte-wise (a + b) mod 256 over whole chunks with big-int arithmetic (no per-byte loop)."""
    n = len(a)
    if n not in _MASKS:
        _MASKS[n] = (int.from_bytes(b"\x7f" * n, "little"), int.from_bytes(b"\x80" * n, "little"))
    lo, hi = _MASKS[n]
    x, y = int.from_bytes(a, "little"), int.from_bytes(b, "little")
    return (((x & lo) + (y & lo)) ^ ((x ^ y) & hi)).to_bytes(n, "little")


def apply_patch(old_path: Path, patch_path: Path, out: BinaryIO, expected_size: int) -> str:
    """Write ``old`` + ``patch`` to ``out``; return the sha256 of what was written.

    Raises PatchError unless the patch is well formed and produces exactly ``expected_size``
    bytes. The caller still compares the returned digest with the signed one.
    """
    patch_size = patch_path.stat().st_size
    old_size = old_path.stat().st_size
    with patch_path.open("rb") as pf, old_path.open("rb") as old:
        head = pf.read(32)
        if len(head) != 32 or head[:8] != MAGIC:
            raise PatchError("not a bsdiff4 patch")
        len_ctrl, len_diff, len_new = _offtin(head[8:16]), _offtin(head[16:24]), _offtin(head[24:32])
        if min(len_ctrl, len_diff, len_new) < 0 or 32 + len_ctrl + len_diff > patch_size:
            raise PatchError("the patch header is corrupt")
        if len_new != expected_size:
            raise PatchError(f"the patch makes {len_new} bytes, not the {expected_size} signed for")
        ctrl = _Bz2Stream(pf, 32, len_ctrl)
        extra = _Bz2Stream(pf, 32 + len_ctrl + len_diff, patch_size - 32 - len_ctrl - len_diff)
        # The thread reads the patch through a handle of its own: the one above seeks for the others.
        with patch_path.open("rb") as df:
            diff = _Ahead(_Bz2Stream(df, 32 + len_ctrl, len_diff), len_new)
            try:
                return _apply(old, old_size, len_new, ctrl, diff, extra, out)
            finally:
                diff.close()


def _apply(
    old: BinaryIO, old_size: int, len_new: int, ctrl: _Bz2Stream, diff: _Ahead, extra: _Bz2Stream, out: BinaryIO
) -> str:
    digest = hashlib.sha256()
    oldpos = newpos = triples = 0
    while newpos < len_new:
        triples += 1
        if triples > len_new + 1024:  # empty triples cannot spin us forever
            raise PatchError("the patch's control block is corrupt")
        triple = ctrl.read(24)
        x, y, z = _offtin(triple[0:8]), _offtin(triple[8:16]), _offtin(triple[16:24])
        if x < 0 or y < 0 or newpos + x + y > len_new:
            raise PatchError("the patch's control block is corrupt")
        for done in range(0, x, CHUNK):
            k = min(CHUNK, x - done)
            d = diff.read(k)
            start = oldpos + done
            lo, hi = max(0, start), min(old_size, start + k)
            if lo < hi:
                old.seek(lo)
                o = bytes(lo - start) + old.read(hi - lo) + bytes(max(0, start + k - hi))
            else:
                o = bytes(k)
            piece = o if d == (_ZEROS if k == CHUNK else bytes(k)) else _add_bytes(d, o)
            out.write(piece)
            digest.update(piece)
        for done in range(0, y, CHUNK):
            piece = extra.read(min(CHUNK, y - done))
            out.write(piece)
            digest.update(piece)
        newpos += x + y
        oldpos += x + z
    return digest.hexdigest()
