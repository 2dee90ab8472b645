"""What the client hands its transport and gets back, without loading the transport.

:mod:`gupper.fetch` carries requests and urllib3 (about 90 ms of a frozen app's start). The
updater's configuration, its URL checks and the types its steps pass around live here, so that
creating an :class:`~gupper.Updater`, a start that only confirms a trial, and a pre-flight's first
lines load none of it: the transport is imported by the first request.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigError
from .records import field, record

SHOWN_URL = 200  # characters of a URL shown in a message
ANCHOR_MEMO_NAME = "tls-anchors.json"  # in the state folder: gupper.anchors
Progress = Callable[[int, int], None]
"""Called with (bytes done, bytes total) as a download proceeds."""
OnStart = Callable[[str | None], None]
"""Called once a download's response is accepted, before its first byte is written, with the
response's strong validator (its ETag) or None when it has none (the bytes cannot be resumed)."""


@record(frozen=True)
class FetchConfig:
    """Limits and trust settings for one fetcher."""

    connect_timeout: float = 5.0
    read_timeout: float = 15.0
    ca_bundle: str | None = None
    allow_insecure_loopback: bool = False
    retries: int = 2
    user_agent: str = "gupper-updater"
    anchor_memo: str | None = None
    """A file where the CA bundle's certificates that verified each host are remembered, so later
    processes load those instead of the whole bundle (:mod:`gupper.anchors`); None: not remembered."""


@record(frozen=True)
class Fetched:
    """A small response body read whole (the manifest)."""

    body: bytes
    etag: str | None
    url: str


@record
class Resume:
    """Where an interrupted download stands: bytes kept, their running hash, the server's ETag."""

    offset: int = 0
    etag: str | None = None
    digest: Any = field(default_factory=hashlib.sha256)


def _is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def shown(url: str) -> str:
    """``url`` as a message shows it: whole up to :data:`SHOWN_URL` characters, else its start and its length
    (a redirect to a 60 kB URL must not become a 60 kB log line)."""
    if len(url) <= SHOWN_URL:
        return url
    return f"{url[: SHOWN_URL - 40]}... ({len(url)} characters)"


def check_url(url: str, allow_insecure_loopback: bool) -> None:
    """Refuse anything but a well-formed https URL (and loopback http when explicitly allowed).

    Raises:
        ConfigError: the URL does not parse or is not https.
    """
    try:
        parts = urlsplit(url)
        host, _port = parts.hostname, parts.port  # .port raises ValueError for a bad port
    except ValueError as e:
        raise ConfigError(f"refusing URL {url[:100]!r}: it does not parse ({e})") from e
    if parts.scheme == "https" and host:
        return
    if parts.scheme == "http" and allow_insecure_loopback and _is_loopback(host):
        return
    raise ConfigError(f"refusing {parts.scheme or 'schemeless'} URL {url[:100]!r}: updates are fetched over https only")


def strong_etag(value: str | None) -> str | None:
    """The ETag if it can validate a resumed range (``If-Range`` needs a strong one), else None."""
    if not value or value.startswith("W/") or len(value) > 1024 or not value.isprintable():
        return None
    return value
