"""What every Gupper document shares: canonical JSON bytes, timestamps, names, digests. Pure.

Signatures and signed digests cover canonical bytes (sorted keys, no whitespace, UTF-8, and only
types that round-trip exactly), so every reader re-creates the very bytes the publisher signed.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from ..errors import MalformedError

MAX_INT = (1 << 53) - 1  # JSON interop: larger ints do not survive a JavaScript reader
MAX_DEPTH = 16
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# What format_time writes, read without datetime.strptime: its first call in a process imports _strptime and
# builds its locale tables and patterns, about 3 ms of every start-up check.
_TIME_RE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})Z")


def canonical_bytes(obj: Any) -> bytes:
    """Serialise ``obj`` to the canonical JSON bytes that signatures cover.

    Sorted keys, no whitespace, UTF-8, and only the types that round-trip exactly (no floats),
    so that every reader re-creates the very bytes the publisher signed.

    Raises:
        MalformedError: ``obj`` holds a float, an integer beyond 2**53 - 1, a non-string key or
            nests deeper than 16 levels.
    """
    _check_canonical(obj)
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def _check_canonical(obj: Any, depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        raise MalformedError("manifest nests too deeply; regenerate it with gupper-publish")
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return
    if isinstance(obj, int):
        if abs(obj) > MAX_INT:
            raise MalformedError(
                f"manifest holds an integer out of range ({str(obj)[:20]}...); regenerate it with gupper-publish"
            )
        return
    if isinstance(obj, list):
        for item in obj:
            _check_canonical(item, depth + 1)
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, str):
                raise MalformedError("manifest object keys must be strings")
            _check_canonical(v, depth + 1)
        return
    raise MalformedError(
        f"manifest holds a {type(obj).__name__}, which has no canonical form; regenerate it with gupper-publish"
    )


def format_time(when: datetime) -> str:
    """UTC timestamp as written in manifests, e.g. ``2026-11-28T12:00:00Z``."""
    return when.astimezone(UTC).strftime(_TIME_FORMAT)


def parse_time(text: Any, what: str) -> datetime:
    """Parse a manifest timestamp.

    Raises:
        MalformedError: ``text`` is not a timestamp like ``2026-01-31T12:00:00Z`` (the message names ``what``).
    """
    if not isinstance(text, str):
        raise MalformedError(f"manifest field {what!r} must be a timestamp string like 2026-01-31T12:00:00Z")
    found = _TIME_RE.fullmatch(text)
    try:
        if found is None:
            raise ValueError(text)
        year, month, day, hour, minute, second = map(int, found.groups())
        return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError as e:  # no timestamp, or fields out of range (month 13, 25 o'clock, February 30)
        raise MalformedError(
            f"manifest field {what!r} is {text[:40]!r}, not a timestamp like 2026-01-31T12:00:00Z"
        ) from e


def is_sha256(text: object) -> bool:
    """64 lowercase hex digits: how every digest is written."""
    return isinstance(text, str) and bool(_SHA256_RE.fullmatch(text))


def valid_app_name(name: str) -> bool:
    """App and channel names: a letter or digit, then letters, digits, ``.``, ``_`` or ``-``; never
    ``/`` or ``..`` alone, which would escape a store prefix."""
    return bool(_NAME_RE.fullmatch(name))
