"""HTTP transport: bounded GETs over https, with our own redirect policy.

Everything the network can do to the client is bounded here: connect and read timeouts per
socket operation, a total deadline per request (a server that trickles one byte a second is cut
off), a byte limit (an endless body is cut off), and redirects followed only to https (or to
loopback http when the app's config allows it, for tests and local demos).
"""

from __future__ import annotations

import hashlib
import ipaddress
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, BinaryIO
from urllib.parse import urljoin, urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from .errors import ConfigError, DownloadError, HTTPError, IntegrityError, Timeout, TooLarge

CHUNK = 64 * 1024
MAX_REDIRECTS = 5
Progress = Callable[[int, int], None]
"""Called with (bytes done, bytes total) as a download proceeds."""


@dataclass(frozen=True)
class FetchConfig:
    """Limits and trust settings for one fetcher."""

    connect_timeout: float = 5.0
    read_timeout: float = 15.0
    ca_bundle: str | None = None
    allow_insecure_loopback: bool = False
    retries: int = 2
    user_agent: str = "gupper-updater"


@dataclass(frozen=True)
class Fetched:
    """A small response body read whole (the manifest)."""

    body: bytes
    etag: str | None
    url: str


def _is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str, allow_insecure_loopback: bool) -> None:
    """Refuse anything but https (and loopback http when explicitly allowed)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and allow_insecure_loopback and _is_loopback(parts.hostname):
        return
    raise ConfigError(f"refusing {parts.scheme or 'schemeless'} URL {url[:100]!r}: updates are fetched over https only")


_REASONS = (
    ("connection refused", "connection refused"),
    ("actively refused", "connection refused"),  # gupper#16: Windows, [WinError 10061]
    ("name or service not known", "host not found"),
    ("nodename nor servname", "host not found"),
    ("getaddrinfo failed", "host not found"),
    ("network is unreachable", "network unreachable"),
    ("connection reset", "connection reset"),
    ("forcibly closed by the remote host", "connection reset"),  # gupper#16: Windows, [WinError 10054]
    ("unreachable network", "network unreachable"),  # gupper#16: Windows, [WinError 10051]
    ("remote end closed", "connection closed by the server"),
)


def _reason(e: Exception) -> str:
    text = str(e).lower()
    for needle, reason in _REASONS:
        if needle in text:
            return reason
    return type(e).__name__


class Fetcher:
    """A requests session wrapped with Gupper's limits; one per check or download."""

    def __init__(self, config: FetchConfig) -> None:
        self.config = config
        self.session = requests.Session()
        # trust_env stays on: HTTPS_PROXY/NO_PROXY and REQUESTS_CA_BUNDLE work as users expect.
        retry = Retry(
            total=config.retries,
            connect=config.retries,
            read=0,
            redirect=0,
            status=config.retries,
            status_forcelist=(429, 500, 502, 503, 504),
            allowed_methods=frozenset({"GET"}),
            backoff_factor=0.25,
            backoff_jitter=0.25,
            # A hostile or broken server must not make us sleep for as long as it asks.
            respect_retry_after_header=False,
            raise_on_status=False,
        )
        adapter = HTTPAdapter(max_retries=retry)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self.session.headers["User-Agent"] = config.user_agent
        self.session.headers["Accept-Encoding"] = "identity"

    def close(self) -> None:
        """Release pooled connections."""
        self.session.close()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _open(self, url: str, deadline: float, headers: dict[str, str] | None = None) -> Iterator[requests.Response]:
        """GET ``url`` following only allowed redirects; yields a streaming 2xx/304 response."""
        verify: bool | str = self.config.ca_bundle if self.config.ca_bundle else True
        for _ in range(MAX_REDIRECTS + 1):
            check_url(url, self.config.allow_insecure_loopback)
            if time.monotonic() > deadline:
                raise Timeout(f"gave up on {url} after its deadline; the server or network is too slow")
            try:
                resp = self.session.get(
                    url,
                    headers=headers,
                    stream=True,
                    allow_redirects=False,
                    verify=verify,
                    timeout=(self.config.connect_timeout, self.config.read_timeout),
                )
            except requests.exceptions.SSLError as e:
                raise DownloadError(f"TLS verification failed for {url}: the certificate is not trusted; set the app's CA bundle if you use a private CA") from e
            except requests.exceptions.Timeout as e:
                raise Timeout(f"timed out talking to {url}; check the network or try later") from e
            except requests.exceptions.RequestException as e:
                raise DownloadError(f"cannot fetch {url}: {_reason(e)}; check the network or that the update server is up") from e
            if resp.is_redirect:
                location = resp.headers.get("Location", "")
                resp.close()
                if not location:
                    raise HTTPError(f"{url} redirected without a Location", resp.status_code)
                url = urljoin(url, location)
                continue
            try:
                if resp.status_code != 304 and not 200 <= resp.status_code < 300:
                    raise HTTPError(f"{url} answered HTTP {resp.status_code}; check the URL or that the release was published", resp.status_code)
                yield resp
            finally:
                resp.close()
            return
        raise HTTPError(f"{url}: more than {MAX_REDIRECTS} redirects; check the server configuration")

    def _chunks(self, resp: requests.Response, url: str, deadline: float) -> Iterator[bytes]:
        """The body as it arrives, checking the total deadline between reads.

        ``read1`` returns whatever has arrived (up to CHUNK) instead of waiting for a full chunk:
        with ``iter_content`` a server trickling one byte a second would never reach a deadline
        check, since each byte arrives well inside the read timeout.
        """
        raw = resp.raw
        try:
            while True:
                if time.monotonic() > deadline:
                    raise Timeout(f"download of {url} exceeded its deadline; the server or network is too slow")
                chunk = raw.read1(CHUNK, decode_content=False)
                if not chunk:
                    return
                yield chunk
        except (urllib3.exceptions.ReadTimeoutError, TimeoutError) as e:
            raise Timeout(f"read from {url} timed out; check the network or try later") from e
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise DownloadError(f"connection to {url} broke mid-transfer ({_reason(e)}); it will be retried next time") from e

    def get_small(self, url: str, *, max_bytes: int, timeout: float, etag: str | None = None) -> Fetched | None:
        """GET a small document whole; returns None on 304 (when ``etag`` was sent)."""
        deadline = time.monotonic() + timeout
        headers = {"If-None-Match": etag} if etag else None
        with self._open(url, deadline, headers) as resp:
            if resp.status_code == 304:
                return None
            declared = resp.headers.get("Content-Length")
            if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                raise TooLarge(f"{url} is {declared} bytes, over the {max_bytes} byte limit; check the URL")
            buf = bytearray()
            for chunk in self._chunks(resp, url, deadline):
                buf += chunk
                if len(buf) > max_bytes:
                    raise TooLarge(f"{url} sent more than {max_bytes} bytes; check the URL")
            return Fetched(bytes(buf), resp.headers.get("ETag"), resp.url or url)

    def download(
        self,
        url: str,
        out: BinaryIO,
        *,
        size: int,
        sha256: str,
        timeout: float,
        progress: Progress | None = None,
        resume: Resume | None = None,
    ) -> None:
        """Stream ``url`` into ``out``, never past ``size`` bytes, then check size and sha256.

        With ``resume`` (``out`` already holds ``resume.offset`` bytes whose hash is in
        ``resume.digest``), ask only for the rest with Range and If-Range, so a changed file on the
        server restarts from zero instead of being spliced. ``resume.etag`` is updated from the
        response, so a caller can resume again after a failure.
        """
        deadline = time.monotonic() + timeout
        resume = resume or Resume()
        digest = resume.digest
        headers = None
        if resume.offset and resume.etag:
            headers = {"Range": f"bytes={resume.offset}-", "If-Range": resume.etag}
        with self._open(url, deadline, headers) as resp:
            if resp.status_code == 206 and headers and resp.headers.get("Content-Range", "").startswith(f"bytes {resume.offset}-"):
                done = resume.offset
            elif resp.status_code == 200:
                out.seek(0)
                out.truncate()
                digest = resume.digest = hashlib.sha256()  # stored back: a retry in this run resumes from it
                done = resume.offset = 0
            else:
                raise HTTPError(f"{url} answered HTTP {resp.status_code} to a download request", resp.status_code)
            resume.etag = resp.headers.get("ETag") or resume.etag
            for chunk in self._chunks(resp, url, deadline):
                if done + len(chunk) > size:
                    raise TooLarge(f"{url} sent more than the {size} bytes the manifest signed for; the store holds a different file")
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                resume.offset = done
                if progress is not None:
                    progress(done, size)
        if done != size:
            raise IntegrityError(f"{url} ended after {done} of {size} bytes; the download was cut short and will be retried next time")
        if digest.hexdigest() != sha256:
            raise IntegrityError(f"{url} does not match the signed sha256; the store holds a different or corrupted file, nothing was installed")


@dataclass
class Resume:
    """Where an interrupted download stands: bytes kept, their running hash, the server's ETag."""

    offset: int = 0
    etag: str | None = None
    digest: Any = field(default_factory=hashlib.sha256)
