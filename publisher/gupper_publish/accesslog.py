"""Access-log lines as the stores and servers in front of Gupper write them, parsed one at a time. Pure.

Four formats, each turned into the same :class:`Hit` (time, method, path, status, bytes sent,
User-Agent):

- ``s3``: AWS S3 server access logs (space-separated, the key field URL-encoded);
- ``cloudfront``: CloudFront standard logs (tab-separated, columns named by the ``#Fields`` line,
  the User-Agent URL-encoded);
- ``combined``: the NCSA combined format of nginx and Apache (``log_format combined``,
  ``LogFormat "%h %l %u %t \\"%r\\" %>s %b \\"%{Referer}i\\" \\"%{User-Agent}i\\""``);
- ``rgw``: Ceph RGW's ops log, JSON objects, one per line, but several on one line when requests
  end together (:func:`rgw_records`; ``rgw_enable_ops_log``).

A :class:`LineParser` keeps the little state a format needs (CloudFront's column order),
returns None for a line that is not a request of its format (headers, blank or garbled lines)
and raises ValueError for one whose fields do not parse (a time that is no time); the caller
counts both. Nothing here reads files: see :mod:`gupper_publish.logsource`.
"""

from __future__ import annotations

import calendar
import json
import re
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, NamedTuple
from urllib.parse import unquote

FORMATS = ("s3", "cloudfront", "combined", "rgw")
AUTO = "auto"


class Hit(NamedTuple):
    """One request: when (seconds since the epoch, UTC), what, the answer and who asked.

    A named tuple: millions are made, and a frozen dataclass costs three times as much to create."""

    time: float
    method: str
    path: str  # URL path or object key, percent-decoded, without the query
    status: int
    bytes_sent: int
    user_agent: str


_MONTHS = {
    m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)
}


_DAYS: dict[str, int] = {}
_TWO = {f"{i:02d}": i for i in range(100)}


def clf_time(text: str) -> float:
    """``10/Oct/2000:13:55:36 -0700`` (nginx, Apache, S3) as seconds since the epoch; ValueError if it is not one."""
    last = _LAST[0]
    if text == last[0]:  # a busy log writes many lines a second
        return last[1]
    value = _clf_time(text)
    _LAST[0] = (text, value)  # one assignment: a reader in another thread sees the old pair or the new one
    return value


_LAST: list[tuple[str, float]] = [("", 0.0)]


def _clf_time(text: str) -> float:
    if len(text) != 26 or text[2] != "/" or text[20] != " ":
        raise ValueError(f"not a log time: {text!r}")
    day = text[:11] + text[20:]  # the date and the zone: a log has few, and working them out is most of the cost
    start = _DAYS.get(day)
    if start is None:
        offset = (int(text[22:24]) * 60 + int(text[24:26])) * 60
        start = calendar.timegm((int(text[7:11]), _MONTHS[text[3:6]], int(text[0:2]), 0, 0, 0))
        start = start - offset if text[21] == "+" else start + offset
        if len(_DAYS) < 10_000:
            _DAYS[day] = start
    return float(start + _TWO[text[12:14]] * 3600 + _TWO[text[15:17]] * 60 + _TWO[text[18:20]])


def _number(text: str) -> int:
    return 0 if text in {"-", ""} else int(text)


def _request_path(request: str) -> tuple[str, str]:
    """``GET /a/b?x=1 HTTP/1.1`` → (``GET``, ``/a/b``), the path percent-decoded."""
    method, _, rest = request.partition(" ")
    target = rest.rsplit(" ", 1)[0] if rest.endswith(("HTTP/1.0", "HTTP/1.1", "HTTP/2.0", "HTTP/2", "HTTP/3")) else rest
    path = target.split("?", 1)[0]
    return method, unquote(path) if "%" in path else path


def _unescape(text: str) -> str:
    """A quoted field as nginx (``\\x22``) or Apache (``\\"``) escaped it."""
    if "\\" not in text:
        return text
    return re.sub(r"\\x([0-9a-fA-F]{2})|\\(.)", lambda m: chr(int(m[1], 16)) if m[1] else m[2], text)


_QUOTED = r'"([^"\\]*(?:\\.[^"\\]*)*)"'  # a quoted field with escapes, unrolled: no alternation per character
_COMBINED = re.compile(r"(\S+) \S+ \S+ \[([^\]]+)\] " + _QUOTED + r" (\d{3}) (\d+|-) " + _QUOTED + " " + _QUOTED)
_S3 = re.compile(
    r"\S+ \S+ \[([^\]]+)\] \S+ \S+ \S+ (\S+) (\S+) "
    + _QUOTED
    + r" (\d{3}|-) \S+ (\d+|-) (\d+|-) \S+ \S+ "
    + _QUOTED
    + " "
    + _QUOTED
)


_TAILS: dict[str, tuple[str, str, int, int, str]] = {}
_TAILS_MAX = 100_000


def parse_combined(line: str) -> Hit | None:
    """A line of nginx's or Apache's combined format.

    Everything but the client and the time is in the line's tail (request, status, bytes,
    referrer, User-Agent), and a fleet's tails repeat: the same check answered 304 to the same
    version, thousands of times. A tail seen before is not parsed again (three times faster)."""
    cut = line.find('] "')
    tail = line[cut + 2 :]
    known = _TAILS.get(tail) if cut > 0 else None
    if known is not None:
        start = line.find(" [")
        if 0 < start < cut:
            return Hit(clf_time(line[start + 2 : cut]), *known)
    m = _COMBINED.match(line)
    if m is None:
        return None
    method, path = _request_path(_unescape(m[3]))
    fields = (method, path, int(m[4]), _number(m[5]), _unescape(m[7]))
    if cut > 0 and len(_TAILS) < _TAILS_MAX and line[: len(line) - len(tail)].endswith(f"[{m[2]}] "):
        _TAILS[tail] = fields
    return Hit(clf_time(m[2]), *fields)


def parse_s3(line: str) -> Hit | None:
    """A line of an AWS S3 server access log (fields as AWS documents them, in that order)."""
    m = _S3.match(line)
    if m is None or m[5] == "-":
        return None
    method, path = _request_path(m[4])
    if m[3] != "-":
        path = unquote(m[3])  # the key: no bucket in it, whatever the addressing style
    operation = m[2].split(".")
    if len(operation) >= 2 and operation[0] == "REST":
        method = operation[1]
    return Hit(clf_time(m[1]), method, path, int(m[5]), _number(m[6]), m[9])


CLOUDFRONT_FIELDS = (
    "date",
    "time",
    "x-edge-location",
    "sc-bytes",
    "c-ip",
    "cs-method",
    "cs(Host)",
    "cs-uri-stem",
    "sc-status",
    "cs(Referer)",
    "cs(User-Agent)",
    "cs-uri-query",
    "cs(Cookie)",
    "x-edge-result-type",
    "x-edge-request-id",
    "x-host-header",
    "cs-protocol",
    "cs-bytes",
    "time-taken",
    "x-forwarded-for",
    "ssl-protocol",
    "ssl-cipher",
    "x-edge-response-result-type",
    "cs-protocol-version",
    "fle-status",
    "fle-encrypted-fields",
    "c-port",
    "time-to-first-byte",
    "x-edge-detailed-result-type",
    "sc-content-type",
    "sc-content-len",
    "sc-range-start",
    "sc-range-end",
)
"""A CloudFront standard log's columns when its ``#Fields`` line is missing (AWS's documented order)."""


class _CloudFront:
    """CloudFront standard logs: the ``#Fields`` line names the columns of the lines below it."""

    def __init__(self) -> None:
        self._columns(CLOUDFRONT_FIELDS)

    def _columns(self, fields: Sequence[str]) -> None:
        where = {name: i for i, name in enumerate(fields)}
        needed = ("date", "time", "cs-method", "cs-uri-stem", "sc-status", "sc-bytes", "cs(User-Agent)")
        if any(name not in where for name in needed):
            raise ValueError(f"a CloudFront #Fields line without {', '.join(n for n in needed if n not in where)}")
        self.at = tuple(where[name] for name in needed)
        self.width = max(self.at) + 1

    def __call__(self, line: str) -> Hit | None:
        if line.startswith("#"):
            if line.startswith("#Fields:"):
                self._columns(line[len("#Fields:") :].split())
            return None
        cols = line.split("\t")
        if len(cols) < self.width:
            return None
        date, time, method, stem, status, sent, agent = (cols[i] for i in self.at)
        stamp = calendar.timegm(
            (int(date[0:4]), int(date[5:7]), int(date[8:10]), int(time[0:2]), int(time[3:5]), int(time[6:8]))
        )
        # CloudFront URL-encodes the User-Agent, and older logs encode it twice (%2520 for a space).
        for _ in range(2):
            if "%" not in agent:
                break
            agent = unquote(agent)
        return Hit(float(stamp), method, unquote(stem), int(status), _number(sent), agent)


def parse_rgw(line: str) -> Hit | None:
    """A line of Ceph RGW's ops log (JSON: ``time``, ``uri``, ``http_status``, ``bytes_sent``, ``user_agent``)."""
    try:
        doc: Any = json.loads(line)
        method, path = _request_path(str(doc["uri"]))
        return Hit(
            datetime.fromisoformat(str(doc["time"])).timestamp(),
            method,
            path,
            int(doc["http_status"]),
            int(doc.get("bytes_sent") or 0),
            str(doc.get("user_agent") or ""),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def rgw_records(line: str) -> list[str]:
    """The JSON objects of one line of RGW's ops log: Ceph 16.2 writes the entries of requests that
    end at the same moment back to back, ``{…}{…}``, with one newline after the last."""
    decoder, out, at = json.JSONDecoder(), [], 0
    while at < len(line):
        try:
            _, end = decoder.raw_decode(line, at)
        except ValueError:
            out.append(line[at:])  # the rest is no JSON object: the parser refuses it and it is counted
            break
        out.append(line[at:end])
        at = end
        while at < len(line) and line[at] in " \t":
            at += 1
    return out


LineParser = Callable[[str], Hit | None]


def parser_for(fmt: str) -> LineParser:
    """A fresh parser for ``fmt`` (one of :data:`FORMATS`); ValueError for another name."""
    parsers: dict[str, Callable[[], LineParser]] = {
        "s3": lambda: parse_s3,
        "cloudfront": _CloudFront,
        "combined": lambda: parse_combined,
        "rgw": lambda: parse_rgw,
    }
    if fmt not in parsers:
        raise ValueError(f"unknown log format {fmt!r}; use one of {', '.join(FORMATS)}")
    return parsers[fmt]()


def detect(line: str) -> str | None:
    """The format a log's first non-blank line is written in, or None when it is none of :data:`FORMATS`."""
    if line.startswith(("#Version:", "#Fields:")):
        return "cloudfront"
    if line.startswith("{"):
        return "rgw" if parse_rgw(rgw_records(line)[0]) is not None else None
    if parse_combined(line) is not None:
        return "combined"
    if parse_s3(line) is not None:
        return "s3"
    if line.count("\t") >= 10:
        return "cloudfront"  # a standard log whose header lines were cut off
    return None
