"""Fetching verified bytes for one install: resumable downloads, the record of a kept partial, patches.

A download goes to a partial file beside the install (same filesystem, so the final rename
cannot cross devices). A network failure keeps it and records its validator (ETag) in the state
file before the first byte is written, so the next attempt, in this run after a jittered
back-off or in a later run, resumes with ``Range``/``If-Range``; size and sha256 decide, never
the transfer. A signed bsdiff4 patch from exactly the installed file is fetched (one attempt)
and applied instead when there is one; one-folder deltas fetch their small signed documents and
files through :meth:`Downloads.get_signed_small` and :meth:`Downloads.delta_fetcher` under one
deadline. Nothing here decides what to install: see :mod:`gupper.layouts`.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO
from urllib.parse import urljoin

from ._fsutil import durable_file, hash_file
from .checkpoints import Checkpoint, CheckpointHook
from .config import UpdaterConfig
from .errors import ConfigError, DownloadError, HTTPStatusError, InstallError, IntegrityError, TooLargeError
from .records import record
from .state import ClientState, PartialDownload, StateFile
from .transfer import FetchConfig, Progress, Resume, check_url
from .wire.manifest import PATCH_FORMAT, Entry

if TYPE_CHECKING:
    from .fetch import Fetcher
    from .folder_delta import Fetch  # patching: loaded only when an update is applied (tests/test_lazy_imports.py)

log = logging.getLogger("gupper")


@record(frozen=True)
class Blob:
    """Something to fetch and verify: a full artifact or a patch."""

    url: str
    size: int
    sha256: str


class Downloads:
    """The downloads of one install.

    ``save_state`` writes the state file (a failure is logged, not raised); ``checkpoint`` is the
    updater's fault-injection hook (``download-started``, ``download-half``).
    """

    def __init__(
        self,
        config: UpdaterConfig,
        fetch_config: FetchConfig,
        state_file: StateFile,
        save_state: Callable[[ClientState], None],
        checkpoint: CheckpointHook,
    ) -> None:
        self.config, self.fetch_config, self.state_file = config, fetch_config, state_file
        self._save_state, self._checkpoint = save_state, checkpoint

    # --- the kept partial download -----------------------------------------------------------

    def resumable(self, blob: Blob, partial: Path) -> bool:
        """Whether ``partial`` is a recorded, resumable download of ``blob``."""
        kept = self.state_file.load().partial
        return (
            kept is not None
            and kept.sha256 == blob.sha256
            and kept.path == str(partial)
            and bool(kept.etag)
            and partial.is_file()
        )

    def record(self, blob: Blob, partial: Path, validator: str | None) -> None:
        """Remember ``partial`` as a download of ``blob`` resumable with ``validator`` (none: not resumable)."""
        state = self.state_file.load()
        record = PartialDownload(blob.url, blob.sha256, blob.size, validator, str(partial)) if validator else None
        if state.partial != record:
            state.partial = record
            self._save_state(state)

    def forget(self) -> None:
        """Drop the record of a kept partial (the file is gone or not ours)."""
        state = self.state_file.load()
        if state.partial is not None:
            state.partial = None
            self._save_state(state)

    def drop(self, partial: Path) -> None:
        """Remove ``partial`` and the record of it (a record of another file stays)."""
        unlink_quietly(partial)
        state = self.state_file.load()
        if state.partial is not None and state.partial.path == str(partial):
            state.partial = None
            self._save_state(state)

    def drop_unwanted(self, wanted_sha256: str | None, partial: Path) -> None:
        """After a check: a kept partial of anything but the release now offered will never be
        resumed (a yank, a newer release): remove it."""
        kept = self.state_file.load().partial
        if kept is None or kept.sha256 == wanted_sha256:
            return
        if kept.path == str(partial):
            self.drop(partial)
        else:
            self.forget()

    def tidy(self, partial: Path) -> None:
        """At start: keep ``partial`` only if it is a recorded download the next attempt can resume."""
        kept = self.state_file.load().partial
        try:
            size = partial.stat().st_size
        except OSError:
            if kept is not None and kept.path == str(partial):
                self.forget()
            return
        if not (kept is not None and kept.path == str(partial) and kept.etag and 0 < size <= kept.size):
            self.drop(partial)

    # --- fetching ----------------------------------------------------------------------------

    def fetch_verified(
        self, blob: Blob, dest: Path, progress: Progress | None, *, beside: Path, attempts: int | None = None
    ) -> None:
        """Fetch ``blob`` into ``dest`` with bounded retries, resuming a kept partial; verified on return.
        ``beside`` is what ``dest`` sits beside, for messages (the executable, a folder's ``current``).

        The record stays until the file is installed or dropped: killed before that, the next
        start reuses the complete, verified file instead of fetching it again.

        Raises:
            DownloadError: a transfer failure that outlasted the attempts (a resumable partial is kept).
            IntegrityError: bytes that do not match the signed size or sha256 (the partial is removed).
            InstallError: the partial cannot be written.
        """
        resume = self._resume_point(self.state_file.load(), blob, dest)
        if resume.offset == blob.size:
            return  # verified by _resume_point; the record stays until the file is used
        attempts = max(1, self.config.download_attempts if attempts is None else attempts)
        attempt = 0
        while True:
            ranged = bool(resume.offset and resume.etag)  # this request asks for the rest only
            try:
                self._fetch_into(dest, blob, resume, progress)
                return
            except (IntegrityError, TooLargeError):
                self.drop(dest)  # these bytes are wrong: never resume them
                raise
            except DownloadError as e:
                if isinstance(e, HTTPStatusError) and e.status == 416 and ranged:
                    # Our partial no longer fits the file there: start again from zero, at once. Not an
                    # attempt: the next request has no Range, so only a failure that counts as one leads
                    # back here. A 416 to a request without a Range is the server's error, below.
                    self.drop(dest)
                    resume = Resume()
                    continue
                if isinstance(e, HTTPStatusError) and not _transient(e):
                    self.drop(dest)
                    raise
                if not (resume.etag and resume.offset):
                    self.drop(dest)  # nothing a later request could validate: start over
                    resume = Resume()
                attempt += 1
                if attempt >= attempts:
                    raise
                delay = min(8.0, 0.5 * 2 ** (attempt - 1)) * random.uniform(0.5, 1.5)  # exponential back-off, jitter
                log.debug("gupper: download interrupted at %d bytes, resuming in %.1fs", resume.offset, delay)
                time.sleep(delay)
            except OSError as e:
                self.drop(dest)
                raise InstallError(
                    f"cannot write the update beside {beside} ({e.strerror or e}); free some disk "
                    "space or check the folder's permissions"
                ) from e
            except BaseException:
                self.drop(dest)  # refused (e.g. a redirect to http): nothing worth resuming
                raise

    def _resume_point(self, state: ClientState, blob: Blob, partial: Path) -> Resume:
        """Where to start fetching ``blob`` into ``partial``: after the bytes a recorded, resumable
        partial holds, else from zero (an unusable file there is removed)."""
        kept = state.partial
        if kept and kept.sha256 == blob.sha256 and kept.path == str(partial) and kept.etag:
            try:
                size = partial.stat().st_size
                if 0 < size <= blob.size:
                    digest, size = hash_file(partial)
                    if size < blob.size:
                        log.info("gupper: resuming the download at %d of %d bytes", size, blob.size)
                        return Resume(size, kept.etag, digest)
                    if digest.hexdigest() == blob.sha256:  # complete and verified: killed before the install
                        log.info("gupper: reusing the complete download of %d bytes", size)
                        return Resume(size, kept.etag, digest)
            except OSError:
                pass
        unlink_quietly(partial)
        if kept is not None and kept.path == str(partial):
            self.forget()
        return Resume()

    def _fetch_into(self, partial: Path, blob: Blob, resume: Resume, progress: Progress | None) -> None:
        half, halfway = blob.size // 2, [False]

        def written(offset: int) -> None:  # on the writer's thread: half of the file is on disk
            if offset >= half and not halfway[0]:
                halfway[0] = True
                self._checkpoint(Checkpoint.DOWNLOAD_HALF)

        def started(validator: str | None) -> None:
            # Recorded before the first byte is written: a process killed at any later instant
            # leaves a partial the next start resumes (or, without a validator, removes).
            self.record(blob, partial, validator)
            self._checkpoint(Checkpoint.DOWNLOAD_STARTED)

        # Synced however the fetch ends: what arrived is kept for a resume.
        from .fetch import Fetcher  # the transport loads with the first request (gupper.transfer)

        with durable_file(partial, exclusive=False, keep=resume.offset) as out, Fetcher(self.fetch_config) as fetcher:
            fetcher.download(
                blob.url,
                out,
                size=blob.size,
                sha256=blob.sha256,
                timeout=self.config.download_timeout,
                progress=progress,
                resume=resume,
                on_start=started,
                on_written=written,
            )

    def pick_patch(self, entry: Entry, installed_sha256: str) -> Blob | None:
        """A usable bsdiff4 patch from exactly the installed file, smaller than the full file."""
        for p in entry.patches_of(PATCH_FORMAT):
            if p.from_sha256 != installed_sha256 or p.size >= entry.size:
                continue
            resolved = urljoin(self.config.manifest_url, p.url)
            try:
                check_url(resolved, self.config.allow_insecure_loopback)
            except ConfigError:
                continue
            return Blob(resolved, p.size, p.sha256)
        return None

    def fetch_patched(self, full: Blob, patch: Blob, source: Path, out_path: Path, progress: Progress | None) -> None:
        """Fetch ``patch`` (one attempt: the full file is the retry) and apply it to ``source`` into ``out_path``.

        Raises:
            DownloadError, IntegrityError: the patch could not be fetched, or the result does not
                match ``full``'s sha256 (the caller falls back to the full file).
            PatchError: the patch does not apply (likewise).
            InstallError: ``out_path`` cannot be written.
        """
        from .bspatch import apply_patch
        from .install import patch_path_for

        patch_file = patch_path_for(source)
        self.fetch_verified(patch, patch_file, progress, beside=source, attempts=1)
        try:
            with durable_file(out_path, exclusive=False) as out:
                digest = apply_patch(source, patch_file, out, full.size)
        except OSError as e:
            unlink_quietly(out_path)
            raise InstallError(
                f"cannot write the update beside {source} ({e.strerror or e}); free some disk "
                "space or check the folder's permissions"
            ) from e
        finally:
            unlink_quietly(patch_file)
        if digest != full.sha256:
            raise IntegrityError("the patched file does not match the signed sha256")
        log.info("gupper: applied a %d-byte patch instead of downloading %d bytes", patch.size, full.size)

    def checked_url(self, url: str) -> str:
        """``url`` if the config allows fetching it.

        Raises:
            ConfigError: a scheme or host the config refuses (plain http beyond loopback).
        """
        check_url(url, self.config.allow_insecure_loopback)
        return url

    def get_signed_small(
        self,
        fetcher: Fetcher,
        url: str,
        max_bytes: int,
        sha256: str,
        deadline: float,
        decode: Callable[[bytes], bytes] = bytes,
    ) -> bytes:
        """A small document whose sha256 (of its ``decode``-d form) the manifest signs (a file list, a patch index).

        Raises:
            DownloadError: the transfer failed or outlasted ``deadline`` (a monotonic time).
            IntegrityError: the document is not the signed one.
        """
        got = fetcher.get_small(
            self.checked_url(urljoin(self.config.manifest_url, url)), max_bytes=max_bytes, timeout=left(deadline)
        )
        data = decode(got.body) if got is not None else b""
        if got is None or hashlib.sha256(data).hexdigest() != sha256:
            raise IntegrityError(f"{url} does not match the signed sha256; the store holds a different file")
        return data

    def delta_fetcher(
        self, fetcher: Fetcher, total: int, progress: Progress | None, deadline: float
    ) -> tuple[Fetch, Callable[[], None]]:
        """``fetch`` for :func:`gupper.folder_delta.build` (one bounded, verified GET per file,
        overall progress, ``download-half`` once half the bytes are in) and a call that reports
        that checkpoint if no fetch did."""
        done, half = 0, False

        def reach_half() -> None:
            nonlocal half
            if not half:
                half = True
                self._checkpoint(Checkpoint.DOWNLOAD_HALF)

        def fetch(url: str, size: int, sha256: str, out: BinaryIO) -> None:
            nonlocal done

            def report(n: int, _total: int) -> None:
                if progress is not None:
                    progress(done + n, total)

            fetcher.download(url, out, size=size, sha256=sha256, timeout=left(deadline), progress=report)
            done += size
            if done * 2 >= total:
                reach_half()

        return fetch, reach_half


def left(deadline: float) -> float:
    """Seconds left before ``deadline`` (a monotonic time); 0 once it passed."""
    return max(0.0, deadline - time.monotonic())


def _transient(e: HTTPStatusError) -> bool:
    """A status that says "not now" rather than "not here"."""
    return e.status is not None and (e.status >= 500 or e.status in (408, 429))


def unlink_quietly(path: Path) -> None:
    """Remove a file if it is there; a failure is logged (the next start's cleanup retries)."""
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as e:
        log.debug("could not remove %s: %s", path, e)
