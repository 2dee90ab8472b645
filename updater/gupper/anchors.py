"""Which certificates of the CA bundle last verified each host, remembered between starts.

Parsing the CA bundle is most of what an app's first TLS connection costs it: certifi's 117
roots take about 20 ms to load, the one root a store's chain ends at well under 1 ms. The first
connection to a host is verified against the whole bundle; the certificates of its verified chain
that the bundle holds (its root, and an intermediate the server left out) are then remembered as
places in that bundle (byte offsets beside the bundle's SHA-256), and later starts trust only
those bytes of that same bundle (:mod:`gupper.fetch`).

Why this never trusts more than the bundle does: the memory holds offsets, never certificates, and
is used only while the bundle's digest is unchanged; each place it names must be exactly one
certificate block of that bundle. A trust set cut from the bundle can refuse what the bundle would
accept (the store moved to another root), never accept what it refuses; a refusal is retried once
with the whole bundle, which records the new root. A bundle that changed (a certifi update that
dropped a root, another ``ca_bundle``) has another digest, so the memory is not used.

Parsing and choosing are pure (bytes in, values out); :func:`recall` and :func:`remember` read and
write the memo file.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ._fsutil import atomic_write

BEGIN = b"-----BEGIN CERTIFICATE-----"
END = b"-----END CERTIFICATE-----"
MAX_HOSTS = 16  # a store, a CDN, a mirror or two: more means something else writes here
MAX_MEMO_BYTES = 16 * 1024
MAX_CHAIN = 8  # certificates of one verified chain looked up in the bundle
Span = tuple[int, int]


def digest(bundle: bytes) -> str:
    """The SHA-256 of a CA bundle's bytes, hex: what a remembered place is valid for."""
    return hashlib.sha256(bundle).hexdigest()


def _blocks(bundle: bytes) -> Iterator[Span]:
    """The places of the PEM certificate blocks in ``bundle``, from BEGIN to the end of END."""
    start = bundle.find(BEGIN)
    while start >= 0:
        end = bundle.find(END, start)
        if end < 0:
            return
        end += len(END)
        yield start, end
        start = bundle.find(BEGIN, end)


def _der(block: bytes) -> bytes | None:
    try:
        return base64.b64decode(b"".join(block[len(BEGIN) : -len(END)].split()), validate=True)
    except (binascii.Error, ValueError):
        return None


def find(bundle: bytes, der: bytes) -> Span | None:
    """Where in ``bundle`` the certificate ``der`` (DER bytes) is, as one PEM block; None if it is not there."""
    for start, end in _blocks(bundle):
        if _der(bundle[start:end]) == der:
            return start, end
    return None


def certificate_at(bundle: bytes, span: Span) -> bytes | None:
    """The PEM certificate at ``span`` in ``bundle``, if the span is exactly one certificate block."""
    start, end = span
    if not 0 <= start < end <= len(bundle):
        return None
    block = bundle[start:end]
    if not (block.startswith(BEGIN) and block.endswith(END)) or block.count(b"-----") != 4:
        return None
    return block if _der(block) else None


def parse(memo: bytes, bundle_digest: str, host: str) -> tuple[Span, ...] | None:
    """The places remembered for ``host`` in the bundle with ``bundle_digest``, from a memo's bytes;
    None for another bundle, an unknown host, or a memo that is not one this module wrote."""
    try:
        data = json.loads(memo)
        if data.get("bundle") != bundle_digest:
            return None
        spans = data["hosts"][host]
        if not isinstance(spans, list) or not 0 < len(spans) <= MAX_CHAIN:
            return None
        pairs = tuple((start, end) for start, end in spans)
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
        return None
    if any(type(n) is not int for pair in pairs for n in pair):
        return None
    return pairs


def updated(memo: bytes | None, bundle_digest: str, host: str, spans: Sequence[Span]) -> bytes:
    """A memo's bytes with ``host`` at ``spans`` in the bundle ``bundle_digest``: the other hosts of
    the same bundle are kept (at most :data:`MAX_HOSTS`), those of another bundle dropped."""
    hosts: dict[str, Any] = {}
    if memo is not None:
        try:
            data = json.loads(memo)
            if data.get("bundle") == bundle_digest and isinstance(data.get("hosts"), dict):
                hosts = {k: v for k, v in data["hosts"].items() if k != host}
        except (ValueError, TypeError, AttributeError, RecursionError):
            hosts = {}
    kept = dict(list(hosts.items())[-(MAX_HOSTS - 1) :]) if MAX_HOSTS > 1 else {}
    kept[host] = [list(span) for span in spans]
    return (json.dumps({"bundle": bundle_digest, "hosts": kept}, sort_keys=True) + "\n").encode()


def _read(path: Path) -> bytes | None:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_MEMO_BYTES + 1)
    except OSError:
        return None
    return data if len(data) <= MAX_MEMO_BYTES else None


def recall(memo_path: Path, bundle: bytes, bundle_digest: str, host: str) -> bytes | None:
    """The PEM certificates of ``bundle`` that verified ``host`` last (its root, and any intermediate
    the bundle supplied), or None when nothing usable is remembered."""
    memo = _read(memo_path)
    spans = parse(memo, bundle_digest, host) if memo is not None else None
    if spans is None:
        return None
    blocks = [certificate_at(bundle, span) for span in spans]
    if any(block is None for block in blocks):
        return None
    return b"\n".join(block for block in blocks if block is not None)


def remember(memo_path: Path, bundle: bytes, bundle_digest: str, host: str, chain: Sequence[bytes]) -> bool:
    """Remember the certificates of ``host``'s verified ``chain`` (DER, leaf first) that ``bundle``
    holds, as their places in it: its root, and an intermediate the server left out. False when the
    bundle holds none of them (nothing written).

    Raises:
        OSError: the memo cannot be written.
    """
    spans: list[Span] = []
    for der in chain[-MAX_CHAIN:]:
        span = find(bundle, der)
        if span is not None and span not in spans:
            spans.append(span)
    if not spans:
        return False
    old = _read(memo_path)
    if old is not None and parse(old, bundle_digest, host) == tuple(spans):
        return True
    atomic_write(memo_path, updated(old, bundle_digest, host, spans), durable=False)  # lost: one bundle load
    return True
