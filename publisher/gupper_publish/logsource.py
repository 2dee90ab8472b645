"""Where access logs come from: a file, a folder of them or ``s3://bucket/prefix``; read as a stream.

Each log is read in 1 MiB pieces, gunzipped on the fly when it is gzip (CloudFront's and rotated
nginx logs are), split into lines and handed on one at a time, so memory stays flat whatever the
size of the logs: a line over :data:`MAX_LINE` bytes is skipped (and counted), and a gzip member
is inflated at most a piece at a time. A log's format is taken from its first line unless given
(:func:`gupper_publish.accesslog.detect`); a file that is no access log (nginx's ``error.log``
beside ``access.log``) is skipped and named. Logs older than ``since`` (by their modification
time) are not opened at all.
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

from .accesslog import AUTO, FORMATS, Hit, detect, parser_for, rgw_records
from .errors import AccessLogError, PublishError

PIECE = 1 << 20
MAX_LINE = 64 << 10
"""Longest line kept, in bytes; access log lines are a few hundred."""
GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class LogObject:
    """One log file or object: a name for people, its modification time, and how to open it."""

    name: str
    modified: float
    open: Callable[[], BinaryIO]


@dataclass
class ReadCounts:
    """What reading the logs met, for the report: lines read, kept and why others were not."""

    logs: int = 0
    lines: int = 0
    not_matching: int = 0  # lines without the app's name: other apps' or other objects' requests
    unparsed: int = 0  # lines that are not a request of the log's format (headers, garbage)
    too_long: int = 0
    hits: int = 0
    skipped: list[str] = field(default_factory=list)  # logs that are not access logs, with why
    formats: dict[str, int] = field(default_factory=dict)  # logs read per format

    def to_json(self) -> dict[str, object]:
        """Plain data for ``--json``."""
        return dict(self.__dict__)


def log_objects(source: str, *, endpoint_url: str | None = None, since: float | None = None) -> list[LogObject]:
    """The logs ``source`` names, oldest name first: a file, every file under a folder (hidden ones
    aside), or every object under ``s3://bucket/prefix``; those last modified before ``since`` are left out."""
    parts = urlsplit(source)
    if parts.scheme == "s3":
        return _s3_objects(parts.netloc, parts.path.lstrip("/"), endpoint_url, since)
    path = Path(source)
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not any(s.startswith(".") for s in p.parts[-1:]))
    else:
        raise AccessLogError(f"no log at {source}: give a log file, a folder of logs or s3://bucket/prefix")
    out = []
    for f in files:
        modified = f.stat().st_mtime
        if since is None or modified >= since:
            out.append(LogObject(str(f), modified, lambda f=f: f.open("rb")))  # type: ignore[misc]
    return out


def _s3_objects(bucket: str, prefix: str, endpoint_url: str | None, since: float | None) -> list[LogObject]:
    from .extras import require

    require("publisher", "reading logs from S3")
    from .stores import S3Store

    if not bucket:
        raise AccessLogError("a log location s3://... names no bucket; use s3://bucket/prefix")
    store = S3Store(bucket, "", endpoint_url)
    return [
        LogObject(f"s3://{bucket}/{key}", modified, lambda key=key: store.stream(key))  # type: ignore[misc]
        for key, _size, modified in sorted(store.list_from(prefix))
        if since is None or modified >= since
    ]


def _pieces(stream: BinaryIO) -> Iterator[bytes]:
    """The stream's bytes in pieces, gunzipped (member after member) when it starts as gzip.

    Raises:
        zlib.error: the gzip data is corrupt, or ends inside a member (truncated, or still being written).
    """
    first = stream.read(PIECE)
    if not first.startswith(GZIP_MAGIC):
        while first:
            yield first
            first = stream.read(PIECE)
        return
    inflate, between, carry, chunk = zlib.decompressobj(wbits=31), True, b"", first
    while chunk or carry:
        data, carry = carry + chunk, b""
        while data:
            if between:  # a member ended: another may follow (rotated logs appended to one another)
                if len(data) < len(GZIP_MAGIC) and chunk:
                    carry = data  # the next read tells
                    break
                if not data.startswith(GZIP_MAGIC):
                    return  # what follows the last member is no gzip: not log lines either
                inflate, between = zlib.decompressobj(wbits=31), False
            out = inflate.decompress(data, PIECE)  # at most a piece at a time: a gzip bomb stays a stream
            if out:
                yield out
            if inflate.eof:
                data, between = inflate.unused_data, True
            else:
                data = inflate.unconsumed_tail
        chunk = stream.read(PIECE) if chunk else b""
    if not between:
        raise zlib.error("the gzip data ends inside a member (truncated, or still being written)")


def split_lines(pieces: Iterator[bytes], counts: ReadCounts, max_line: int = MAX_LINE) -> Iterator[bytes]:
    """The lines of ``pieces`` (without their ends); a line longer than ``max_line`` is dropped and counted."""
    rest = b""
    dropping = False  # inside a line already known to be too long
    for piece in pieces:
        lines = piece.split(b"\n")
        lines[0] = rest + lines[0]
        rest = lines.pop()
        for line in lines:
            if dropping:
                dropping = False
                continue
            if len(line) > max_line:
                counts.too_long += 1
                continue
            yield line.rstrip(b"\r")
        if len(rest) > max_line:
            if not dropping:
                counts.too_long += 1
            rest, dropping = b"", True
    if rest and not dropping:
        yield rest.rstrip(b"\r")


def read_hits(
    logs: list[LogObject], counts: ReadCounts, *, needle: bytes | None = None, fmt: str = AUTO
) -> Iterator[Hit]:
    """Every request in ``logs`` whose line holds ``needle`` (None: every line), parsed in the log's format.

    Raises:
        AccessLogError: a log could not be read, or ``fmt`` names no format.
    """
    if fmt != AUTO and fmt not in FORMATS:
        raise AccessLogError(f"unknown log format {fmt!r}; use {AUTO} or one of {', '.join(FORMATS)}")
    for log in logs:
        try:
            with closing(log.open()) as stream:
                yield from _hits_of(log, stream, counts, needle, fmt)
        except (OSError, zlib.error) as e:
            raise AccessLogError(f"cannot read the log {log.name}: {e}") from e
        except PublishError as e:
            raise AccessLogError(f"cannot read the log {log.name}: {e}") from e


def _hits_of(log: LogObject, stream: BinaryIO, counts: ReadCounts, needle: bytes | None, fmt: str) -> Iterator[Hit]:
    lines = split_lines(_pieces(stream), counts)
    if fmt == AUTO:
        for raw in lines:  # the first line that says anything names the format
            if not raw.strip():
                counts.lines += 1
                continue
            found = detect(raw.decode("utf-8", "replace"))
            if found is None:
                counts.lines += 1
                counts.skipped.append(f"{log.name}: not an access log of a known format (first line {raw[:60]!r})")
                return
            fmt, lines = found, itertools.chain([raw], lines)
            break
        else:
            return  # an empty log
    parse = parser_for(fmt)
    counts.logs += 1
    counts.formats[fmt] = counts.formats.get(fmt, 0) + 1
    joined = fmt == "rgw"  # RGW writes requests that end together on one line
    read = missed = bad = good = 0  # counted here, not on ``counts``: this loop runs once per line
    try:
        for raw in lines:
            read += 1
            if needle is not None and needle not in raw and raw[:1] != b"#":
                missed += 1
                continue
            text = raw.decode("utf-8", "replace")
            for record in rgw_records(text) if joined and "}{" in text else (text,):
                try:
                    hit = parse(record)
                except (ValueError, KeyError, IndexError):
                    hit = None
                if hit is None:
                    if record.strip() and not record.startswith("#"):  # blank lines, CloudFront's headers: no loss
                        bad += 1
                    continue
                good += 1
                yield hit
    finally:
        counts.lines += read
        counts.not_matching += missed
        counts.unparsed += bad
        counts.hits += good
