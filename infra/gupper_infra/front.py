"""The public front of the local store: what a CDN in front of S3 would do.

It is a WSGI middleware around moto's S3 app. moto does not enforce bucket policies
against anonymous writes or listings, so this layer is what makes the public side
read-only: GET/HEAD of ``/<bucket>/<key>`` only, anonymous, no listing.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO
from urllib.parse import parse_qsl
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

# Query parameters that turn a GET into a listing (ListObjects[V2], ListObjectVersions,
# ListMultipartUploads). Compared case-insensitively.
LISTING_PARAMS = frozenset(
    {
        "list-type",
        "prefix",
        "delimiter",
        "marker",
        "continuation-token",
        "start-after",
        "max-keys",
        "versions",
        "uploads",
    }
)

# Request headers that carry credentials or let a caller steer moto (its account
# header). WSGI spells them HTTP_<NAME>.
_STRIPPED_HEADER_PREFIXES = ("HTTP_X_AMZ_", "HTTP_X_MOTO_")
_STRIPPED_HEADERS = frozenset({"HTTP_AUTHORIZATION", "HTTP_COOKIE"})
_MOTO_PRESERVED_NAMES_KEY = "moto.preserved_header_names"

DEFAULT_CHUNK_SIZE = 64 * 1024

if TYPE_CHECKING:
    from _typeshed import OptExcInfo


class AccessLog:
    """Append-only JSON-lines log of public-front requests, safe across threads.

    Each line is flushed at once so a test can read it while the store runs.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._file: TextIO = open(path, "a", encoding="utf-8")  # noqa: SIM115

    def write(self, record: dict[str, object]) -> None:
        """Append one record as a JSON line."""
        line = json.dumps(record, separators=(",", ":")) + "\n"
        with self._lock:
            if not self._file.closed:
                self._file.write(line)
                self._file.flush()

    def close(self) -> None:
        """Close the file; later writes are dropped."""
        with self._lock:
            self._file.close()


@dataclass
class _Exchange:
    method: str
    path: str
    query: str
    range: str | None
    if_none_match: str | None
    status: int | None = None
    bytes_sent: int = 0

    def as_record(self) -> dict[str, object]:
        return {
            "ts": round(time.time(), 6),
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "status": self.status,
            "range": self.range,
            "if_none_match": self.if_none_match,
            "bytes_sent": self.bytes_sent,
        }


def raw_request_path(environ: WSGIEnvironment) -> str:
    """The request path as sent (still percent-encoded), without the query.

    moto matches keys against this form (see moto.core.request.Request.raw_path),
    so the front must judge the same string moto will act on.
    """
    raw_uri = str(environ.get("RAW_URI") or environ.get("REQUEST_URI") or "")
    if raw_uri.startswith(("http://", "https://")):
        raw_uri = "/" + raw_uri.split("://", 1)[1].partition("/")[2]
    path = raw_uri.split("?", 1)[0]
    if not path:
        path = str(environ.get("PATH_INFO") or "/")
    return path if path.startswith("/") else "/" + path


class _ResponseBody:
    """Wraps the inner app's body: counts bytes actually handed to the server,
    re-chunks large bodies, drops the body for HEAD, and logs once at the end."""

    def __init__(
        self,
        inner: Iterable[bytes],
        exchange: _Exchange,
        log: AccessLog | None,
        chunk_size: int,
        drop_body: bool,
    ) -> None:
        self._inner = inner
        self._exchange = exchange
        self._log = log
        self._chunk_size = chunk_size
        self._drop_body = drop_body
        self._finished = False
        self._gen = self._generate()

    def __iter__(self) -> Generator[bytes, None, None]:
        return self._gen

    def _generate(self) -> Generator[bytes, None, None]:
        try:
            if self._drop_body:
                return
            size = self._chunk_size
            for chunk in self._inner:
                # moto hands over a whole object as one chunk; smaller pieces keep
                # bytes_sent close to what was written before a client hung up.
                for start in range(0, len(chunk), size):
                    piece = chunk if len(chunk) <= size else chunk[start : start + size]
                    yield piece
                    # Counted only once the server asked for more, i.e. wrote it.
                    self._exchange.bytes_sent += len(piece)
        finally:
            self._finish()

    def close(self) -> None:
        """WSGI close(): stop the body and release the inner response."""
        self._gen.close()
        self._finish()

    def _finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        try:
            close = getattr(self._inner, "close", None)
            if close is not None:
                close()
        finally:
            if self._log is not None:
                self._log.write(self._exchange.as_record())


class PublicFront:
    """WSGI middleware: anonymous, read-only, path-style access to one bucket.

    * only GET and HEAD (else 405); HEAD is served by an internal GET whose body is
      dropped, because moto answers anonymous HEAD with 403;
    * credentials (Authorization, X-Amz-* headers, every query parameter, so
      presigned-URL signatures too) are removed: moto sees an anonymous request;
    * listing is refused (403): the service root, the bucket root, and any
      request with a listing query parameter;
    * ETag, If-None-Match/304, Range/206, Content-Type, Cache-Control and
      Content-Length pass through unchanged from moto.
    """

    def __init__(
        self,
        app: WSGIApplication,
        bucket: str,
        *,
        access_log: AccessLog | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        self.app = app
        self.bucket = bucket
        self.access_log = access_log
        self.chunk_size = chunk_size

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        exchange = _Exchange(
            method=method,
            path=raw_request_path(environ),
            query=str(environ.get("QUERY_STRING", "")),
            range=environ.get("HTTP_RANGE"),
            if_none_match=environ.get("HTTP_IF_NONE_MATCH"),
        )

        def recording_start_response(
            status: str,
            headers: list[tuple[str, str]],
            exc_info: OptExcInfo | None = None,
        ) -> Callable[[bytes], object]:
            exchange.status = int(status.split(" ", 1)[0])
            return start_response(status, headers, exc_info)

        try:
            body = self._route(environ, recording_start_response, exchange)
        except BaseException:
            if self.access_log is not None:
                exchange.status = exchange.status or 500
                self.access_log.write(exchange.as_record())
            raise
        return _ResponseBody(
            body,
            exchange,
            self.access_log,
            self.chunk_size,
            drop_body=method == "HEAD",
        )

    def _route(
        self,
        environ: WSGIEnvironment,
        start_response: StartResponse,
        exchange: _Exchange,
    ) -> Iterable[bytes]:
        if exchange.method not in ("GET", "HEAD"):
            return _plain(
                start_response,
                "405 Method Not Allowed",
                "only GET and HEAD are allowed here\n",
                [("Allow", "GET, HEAD")],
            )
        params = parse_qsl(exchange.query, keep_blank_values=True)
        if any(name.lower() in LISTING_PARAMS for name, _ in params):
            return _plain(start_response, "403 Forbidden", "listing is not allowed\n")
        bucket, _, key = exchange.path.lstrip("/").partition("/")
        if not bucket or (bucket == self.bucket and not key):
            return _plain(start_response, "403 Forbidden", "listing is not allowed\n")
        if bucket != self.bucket:
            return _plain(start_response, "403 Forbidden", "unknown bucket\n")
        return self.app(self._anonymous_get(environ, exchange.path), start_response)

    @staticmethod
    def _anonymous_get(environ: WSGIEnvironment, raw_path: str) -> WSGIEnvironment:
        inner: WSGIEnvironment = {
            name: value
            for name, value in environ.items()
            if name not in _STRIPPED_HEADERS
            and not name.startswith(_STRIPPED_HEADER_PREFIXES)
            and name != _MOTO_PRESERVED_NAMES_KEY
        }
        inner["REQUEST_METHOD"] = "GET"
        inner["QUERY_STRING"] = ""
        inner["RAW_URI"] = inner["REQUEST_URI"] = raw_path
        # A host name with dots would make moto look for a virtual-hosted bucket.
        inner["HTTP_HOST"] = "localhost"
        inner["CONTENT_LENGTH"] = "0"
        inner.pop("CONTENT_TYPE", None)
        inner.pop("HTTP_TRANSFER_ENCODING", None)
        inner["wsgi.input"] = io.BytesIO(b"")
        return inner


def _plain(
    start_response: StartResponse,
    status: str,
    text: str,
    extra_headers: list[tuple[str, str]] | None = None,
) -> list[bytes]:
    body = text.encode("utf-8")
    headers = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
        *(extra_headers or []),
    ]
    start_response(status, headers)
    return [body]
