"""HTTP transport: bounded GETs over https, with our own redirect policy.

Everything the network can do to the client is bounded here:

- **One overall deadline per request**, covering DNS, connect, the proxy tunnel, the TLS
  handshake, the status line, the ``1xx`` interim responses, the headers and the body.
  The request up to its headers runs in a worker thread that the caller waits for until the
  deadline and not a moment longer (a resolver that hangs cannot hold the app); the same thread
  then watches the body and, at the deadline, shuts down the request's sockets, so a read blocked
  on a server that trickles one byte a second returns at once. Per-operation timeouts alone
  cannot do this: each trickled byte arrives well inside them.
- **Interim responses**: every ``1xx`` but ``101`` is skipped, as RFC 9110 §15.2 asks (http.client
  skips only ``100``, and took ``103 Early Hints`` for the answer), at most :data:`MAX_INTERIM` of
  them in :data:`MAX_INTERIM_BYTES`.
- **Bounded bytes**: a byte limit per document, the signed size per artifact (a longer declared
  length is refused before the body is read); redirect bodies are never read (requests' own
  redirect handling reads them whole into memory).
- **Redirects** followed only to https (or to loopback http when the app's config allows it,
  for tests and local demos), each target re-checked, at most :data:`MAX_REDIRECTS`.
- **One exception boundary**: every failure of the transport or of a URL it is handed maps to
  :mod:`gupper.errors` (``raise … from e``) with one line that names what happened (an expired or
  wrong-host certificate, a handshake or an answer that did not come in time, ...); nothing else
  escapes, and a URL in a message is shortened (:func:`shown`).
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import http.client
import logging
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, TypeVar
from urllib.parse import urljoin, urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util.retry import Retry
from urllib3.util.ssl_ import create_urllib3_context

from .errors import ConfigError, DownloadError, HTTPStatusError, IntegrityError, TooLargeError, TransferTimeoutError
from .transfer import FetchConfig, Fetched, OnStart, Progress, Resume, check_url, shown, strong_etag

CHUNK = 64 * 1024
PIECE = 1 << 20  # what the writer thread writes and hashes at once
QUEUED = 4  # pieces waiting for it at most
MAX_REDIRECTS = 5
MAX_INTERIM = 20  # 1xx responses before the final one: Early Hints come once or twice, 100 once
MAX_INTERIM_BYTES = 64 * 1024  # their status lines and headers together
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


def _reason(e: BaseException) -> str:
    text = str(e).lower()
    for needle, reason in _REASONS:
        if needle in text:
            return reason
    return type(e).__name__


def _declared_length(resp: requests.Response) -> int | None:
    """The body's length as its Content-Length declares it, if that is one number."""
    declared = resp.headers.get("Content-Length")
    return int(declared) if declared is not None and declared.isdigit() else None


def _chain(e: BaseException) -> Iterator[BaseException]:
    """``e`` and what led to it: causes, contexts and the errors requests and urllib3 wrap in their
    arguments or ``reason`` (a bounded walk: the chain is the library's, not ours)."""
    seen: set[int] = set()
    todo = [e]
    while todo and len(seen) < 32:
        x = todo.pop(0)
        if id(x) in seen:
            continue
        seen.add(id(x))
        yield x
        todo += [c for c in (x.__cause__, x.__context__, getattr(x, "reason", None)) if isinstance(c, BaseException)]
        todo += [a for a in x.args if isinstance(a, BaseException)]


_E = TypeVar("_E", bound=BaseException)


def _found(e: BaseException, kind: type[_E]) -> _E | None:
    """The first error of ``kind`` in ``e``'s chain."""
    return next((x for x in _chain(e) if isinstance(x, kind)), None)


# OpenSSL's X509_V_ERR_* codes that have a better word than "not trusted"
_CERT_NOT_YET_VALID, _CERT_HAS_EXPIRED, _HOSTNAME_MISMATCH, _IP_ADDRESS_MISMATCH = 9, 10, 62, 64


def _tls_failure(url: str, e: BaseException) -> DownloadError:
    """One line for a failed TLS handshake that says which check failed and what to do."""
    host = urlsplit(url).hostname or url
    verify = _found(e, ssl.SSLCertVerificationError)
    if verify is None:
        tls = _found(e, ssl.SSLError)
        reason = (tls.reason if tls is not None else None) or _reason(e)
        return DownloadError(
            f"the TLS handshake with {host} failed ({reason}) for {shown(url)}; check that the URL's port serves https"
        )
    failed = f"TLS verification failed for {shown(url)}"
    if verify.verify_code == _CERT_HAS_EXPIRED:
        return DownloadError(
            f"{failed}: the server's certificate has expired (or this computer's clock is wrong); the server must "
            "renew it"
        )
    if verify.verify_code == _CERT_NOT_YET_VALID:
        return DownloadError(f"{failed}: the server's certificate is not valid yet; check this computer's clock")
    if verify.verify_code in (_HOSTNAME_MISMATCH, _IP_ADDRESS_MISMATCH):
        return DownloadError(
            f"{failed}: the server's certificate is not valid for {host}; check the host name in the URL"
        )
    return DownloadError(
        f"{failed}: the certificate is not trusted ({verify.verify_message}); set the app's CA bundle if you use "
        "a private CA"
    )


class _InterimResponsesError(http.client.HTTPException):
    """More ``1xx`` responses before the final one than :data:`MAX_INTERIM` (or :data:`MAX_INTERIM_BYTES`)."""


class _FinalResponse(http.client.HTTPResponse):
    """http.client's response, reading past every ``1xx`` but ``101`` to the final status (RFC 9110 §15.2).

    ``begin()`` skips only ``100 Continue``; this status reader skips the others as well (and ``100``
    too, so ``begin()`` never loops), within a bound: a server cannot keep the request waiting on
    interim responses (the deadline would end it too, later and with a vaguer message). ``101``
    is a final answer: nothing here asked to switch protocols.
    """

    def _read_status(self) -> tuple[str, int, str]:
        spent = 0
        for _ in range(MAX_INTERIM + 1):
            version, status, reason = super()._read_status()  # type: ignore[misc]
            if not 100 <= status < 200 or status == 101:
                return version, status, reason
            spent += len(version) + len(reason) + 5
            while spent <= MAX_INTERIM_BYTES:  # its header lines, which nothing here needs
                line = self.fp.readline(MAX_INTERIM_BYTES - spent + 1)
                spent += len(line)
                if line in (b"\r\n", b"\n", b""):
                    break
            if spent > MAX_INTERIM_BYTES:
                break
        raise _InterimResponsesError(
            f"more than {MAX_INTERIM} interim (1xx) responses or {MAX_INTERIM_BYTES} bytes of them before an answer"
        )


def _past_deadline(url: str, *, downloading: bool = False) -> TransferTimeoutError:
    """The line for a request (or the body of a download) that its deadline cut off."""
    what = f"download of {shown(url)} exceeded" if downloading else f"gave up on {shown(url)} after"
    return TransferTimeoutError(f"{what} its deadline; the server or network is too slow")


# --- The watchdog ------------------------------------------------------------------------------


class _Watch:
    """Shuts down every socket of one request when its deadline passes.

    It holds duplicates of the request's sockets: ``shutdown`` on a duplicate ends the shared
    connection (so a read blocked in any thread returns), and the duplicates are the watch's own,
    closed under its lock, so no file descriptor is ever shut down after it was reused.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._closed = False
        self.fired = False

    def add(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        try:
            dup = socket.socket(sock.family, sock.type, sock.proto, fileno=socket.dup(sock.fileno()))
        except (OSError, ValueError):
            return  # already closed: nothing left to watch
        with self._lock:
            if self._closed:
                dup.close()
                return
            self._socks.append(dup)
            if self.fired:
                _shutdown(dup)

    def fire(self) -> None:
        with self._lock:
            self.fired = True
            if not self._closed:
                for sock in self._socks:
                    _shutdown(sock)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            socks, self._socks = self._socks, []
        for sock in socks:
            sock.close()


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # not connected yet, or already gone
        sock.shutdown(socket.SHUT_RDWR)


class _QuietInOurThreads(logging.Filter):
    """Drops urllib3's own warnings ("Failed to parse headers", "Retrying …") raised while a
    Gupper request is sent: the failure reaches the app as Gupper's one line, not as a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not threading.current_thread().name.startswith(_THREAD_NAME)


_THREAD_NAME = "gupper-fetch"
log = logging.getLogger("gupper")
logging.getLogger("urllib3.connectionpool").addFilter(_QuietInOurThreads())

_WATCH: contextvars.ContextVar[_Watch | None] = contextvars.ContextVar("gupper_watch", default=None)


class _WatchedMixin:
    """Registers each socket of a connection with the request's watch: when it is made (before
    the proxy tunnel and the TLS handshake, which run over it) and each time it is reused."""

    sock: socket.socket | None
    response_class: type[http.client.HTTPResponse] = _FinalResponse

    def _new_conn(self) -> socket.socket:
        sock: socket.socket = super()._new_conn()  # type: ignore[misc]
        watch = _WATCH.get()
        if watch is not None:
            watch.add(sock)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        watch = _WATCH.get()
        if watch is not None:
            watch.add(self.sock)
        super().request(*args, **kwargs)  # type: ignore[misc]


class _HTTPConnection(_WatchedMixin, HTTPConnection):
    pass


class _HTTPSConnection(_WatchedMixin, HTTPSConnection):
    _bundle_file: str | None = None
    _bundle_seen = False

    def connect(self) -> None:
        # The CA bundle requests hands over (certifi's, REQUESTS_CA_BUNDLE, UpdaterConfig.ca_bundle) becomes
        # the process's one context for that file, instead of a context urllib3 would build and load here;
        # with a memo (gupper.anchors), only the bundle's certificates that verified this host last.
        if not self._bundle_seen:  # what requests asked for, before this method set a context of its own
            self._bundle_seen = True
            if self.ssl_context is None and self.ca_certs and not self.ca_cert_dir and not self.ca_cert_data:
                self._bundle_file = self.ca_certs
        ca_file = self._bundle_file
        if ca_file is None:
            super().connect()
            return
        host = self._origin()  # None through an https proxy (TLS in TLS): the whole bundle, as before
        memo = _ANCHOR_MEMO.get() if host is not None else None
        narrowed = _remembered_context(ca_file, memo, host) if memo is not None and host is not None else None
        if narrowed is not None:
            self.ssl_context, self.ca_certs = narrowed, None
            try:
                super().connect()
                return
            except ssl.SSLCertVerificationError:
                self._drop_socket()  # another root now (or a refusal the whole bundle repeats): ask it
        context = tls_context(ca_file)
        self.ssl_context, self.ca_certs = (context, None) if context is not None else (None, ca_file)
        super().connect()
        if memo is not None and host is not None and context is not None:
            _remember_anchor(ca_file, memo, host, self.sock)

    def _origin(self) -> str | None:
        """The ``host:port`` this connection's TLS is with (through a CONNECT tunnel: the origin's),
        or None through an https proxy, whose TLS-in-TLS socket cannot say what verified it."""
        if self.proxy is None:
            return f"{self.host}:{self.port or 443}"
        if self.proxy_is_tunneling and getattr(self, "_tunnel_scheme", "http") == "http":
            return f"{self._tunnel_host}:{self._tunnel_port or 443}"
        return None

    def _drop_socket(self) -> None:
        sock, self.sock = self.sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()


class _HTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


_TLS_CONTEXTS: dict[str, tuple[tuple[int, int], ssl.SSLContext]] = {}
_TLS_LOCK = threading.Lock()


def tls_context(ca_file: str) -> ssl.SSLContext | None:
    """The verifying TLS context for the CA bundle ``ca_file``, built once per process (and again only
    if the file changes): loading certifi's bundle of about 120 certificates costs about 20 ms, and
    every connection (the check, each download, an outcome report) loaded it afresh. None when the
    file cannot be read or loaded: the connection then loads it itself and fails as it always did.
    """
    try:
        st = os.stat(ca_file)
    except (OSError, ValueError):
        return None
    version = (st.st_mtime_ns, st.st_size)
    with _TLS_LOCK:  # held while loading: threads that connect at once build it once
        known = _TLS_CONTEXTS.get(ca_file)
        if known is not None and known[0] == version:
            return known[1]
        try:
            context = _load_context(ca_file)
        except (OSError, ValueError):
            return None
        _TLS_CONTEXTS[ca_file] = (version, context)
        return context


def _load_context(ca_file: str) -> ssl.SSLContext:
    context = create_urllib3_context(cert_reqs=ssl.CERT_REQUIRED)
    context.load_verify_locations(cafile=ca_file)
    return context


_ANCHOR_MEMO: contextvars.ContextVar[str | None] = contextvars.ContextVar("gupper_anchor_memo", default=None)
_BUNDLES: dict[str, tuple[tuple[int, int], bytes, str]] = {}
_NARROWED: dict[tuple[str, bytes], ssl.SSLContext] = {}


def _bundle(ca_file: str) -> tuple[bytes, str] | None:
    """The CA bundle's bytes and digest, read once per process (again if the file changes)."""
    try:
        st = os.stat(ca_file)
        version = (st.st_mtime_ns, st.st_size)
        with _TLS_LOCK:
            known = _BUNDLES.get(ca_file)
            if known is not None and known[0] == version:
                return known[1], known[2]
        with open(ca_file, "rb") as f:
            data = f.read()
    except (OSError, ValueError):
        return None
    from . import anchors

    entry = (version, data, anchors.digest(data))
    with _TLS_LOCK:
        _BUNDLES[ca_file] = entry
    return entry[1], entry[2]


def _remembered_context(ca_file: str, memo: str, host: str) -> ssl.SSLContext | None:
    """A context that trusts only the certificates of ``ca_file`` that verified ``host`` last (its root,
    and an intermediate the bundle supplied), if ``memo`` remembers them for this very bundle; None
    otherwise (or on any trouble: the whole bundle then)."""
    try:
        from . import anchors

        bundle = _bundle(ca_file)
        if bundle is None:
            return None
        data, bundle_digest = bundle
        pem = anchors.recall(Path(memo), data, bundle_digest, host)
        if pem is None:
            return None
        key = (bundle_digest, pem)
        with _TLS_LOCK:
            context = _NARROWED.get(key)
            if context is None:
                context = create_urllib3_context(cert_reqs=ssl.CERT_REQUIRED)
                context.load_verify_locations(cadata=pem.decode("ascii"))
                _NARROWED[key] = context
        return context
    except Exception as e:  # a shortcut only: whatever goes wrong here, the whole bundle decides
        log.debug("gupper: remembered TLS root not used (%s: %s)", type(e).__name__, e)
        return None


def _verified_chain(sock: Any) -> list[bytes]:
    """The DER certificates of a verified TLS socket's chain, leaf first and its root last (empty
    where Python cannot say)."""
    chain_of = getattr(sock, "get_verified_chain", None)  # Python 3.13+: DER bytes
    if chain_of is not None:
        return [bytes(c) for c in chain_of()]
    chain_of = getattr(getattr(sock, "_sslobj", None), "get_verified_chain", None)  # 3.10-3.12: _ssl.Certificate
    if chain_of is None:
        return []
    return [bytes(c.public_bytes(ssl._ssl.ENCODING_DER)) for c in chain_of()]  # type: ignore[attr-defined]


def _remember_anchor(ca_file: str, memo: str, host: str, sock: Any) -> None:
    try:
        from . import anchors

        bundle = _bundle(ca_file)
        chain = _verified_chain(sock)
        if bundle is not None and chain:
            anchors.remember(Path(memo), bundle[0], bundle[1], host, chain)
    except Exception as e:  # a shortcut not taken next time; the connection itself is fine
        log.debug("gupper: TLS root not remembered (%s: %s)", type(e).__name__, e)


_POOLS: dict[str, type[HTTPConnectionPool]] = {"http": _HTTPConnectionPool, "https": _HTTPSConnectionPool}


class _WatchedAdapter(HTTPAdapter):
    """requests' adapter with connections the watchdog can see, directly and through a proxy."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):  # SOCKS pools bring their own connection classes
            manager.pool_classes_by_scheme = _POOLS
        return manager


class _Request:
    """One GET under one deadline: sent from a worker thread that then watches the body."""

    def __init__(self, send: Callable[[], requests.Response], deadline: float) -> None:
        self.watch = _Watch()
        self._send, self._deadline = send, deadline
        self._lock = threading.Lock()
        self._sent = threading.Event()
        self._finished = threading.Event()
        self._abandoned = False
        self._response: requests.Response | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name=_THREAD_NAME, daemon=True)

    def _work(self) -> None:
        _WATCH.set(self.watch)
        response: requests.Response | None = None
        error: BaseException | None = None
        try:
            response = self._send()
        except BaseException as e:  # handed to the caller, which maps it
            error = e
        with self._lock:
            if self._abandoned:
                if response is not None:
                    response.close()
                self.watch.close()
                return
            self._response, self._error = response, error
            self._sent.set()
        if not self._finished.wait(max(0.0, self._deadline - time.monotonic())):
            self.watch.fire()  # the caller is still reading at the deadline: end its read now

    def start(self) -> requests.Response:
        """The response with its headers read; raises what sending raised, or TransferTimeoutError."""
        self._thread.start()
        if not self._sent.wait(max(0.0, self._deadline - time.monotonic())):
            with self._lock:
                if not self._sent.is_set():
                    self._abandoned = True
                    self._finished.set()
                    self.watch.fire()
                    raise TransferTimeoutError("no response before the deadline")
        if self._error is not None:
            raise self._error
        assert self._response is not None
        return self._response

    def finish(self) -> None:
        """The caller is done (read the body, or gave up): stop watching and release the sockets."""
        with self._lock:
            if self._abandoned:
                return
            self._abandoned = True
        self._finished.set()
        self.watch.close()


class _Sink:
    """Writes and hashes what a download receives, in pieces of :data:`PIECE` bytes, in a thread of
    its own: file writes and hashlib release the GIL on large buffers, so hashing overlaps
    receiving on a second core (bench item 12). At most :data:`QUEUED` pieces wait, so memory
    stays flat; ``resume.offset`` counts the bytes written, so a failed download resumes after
    exactly those."""

    def __init__(
        self, out: BinaryIO, digest: Any, resume: Resume, on_written: Callable[[int], None] | None = None
    ) -> None:
        import queue

        self._out, self._digest, self._resume, self._on_written = out, digest, resume, on_written
        self._pending = bytearray()
        self._pieces: queue.Queue[bytes | None] = queue.Queue(maxsize=QUEUED)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="gupper-write", daemon=True)
        self._thread.start()

    def add(self, chunk: bytes) -> None:
        """Take ``chunk`` (written once a piece is full); raises what writing raised so far."""
        if self._error is not None:
            raise self._error
        self._pending += chunk
        if len(self._pending) >= PIECE:
            self._pieces.put(bytes(self._pending))
            self._pending.clear()

    def close(self) -> None:
        """Write what is pending, wait for the writes, and raise what writing raised."""
        if self._pending:
            self._pieces.put(bytes(self._pending))
            self._pending.clear()
        self._pieces.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def _work(self) -> None:
        while (piece := self._pieces.get()) is not None:
            if self._error is not None:
                continue  # keep draining: the receiving thread never blocks on a full queue
            try:
                self._out.write(piece)
                self._digest.update(piece)
                self._resume.offset += len(piece)
                if self._on_written is not None:
                    self._on_written(self._resume.offset)
            except BaseException as e:  # handed to the receiving thread
                self._error = e


def _no_credentials(request: requests.PreparedRequest) -> requests.PreparedRequest:
    """Requests' auth hook that adds nothing: every request Gupper sends carries no credentials."""
    return request


class Fetcher:
    """A requests session wrapped with Gupper's limits; one per check or download."""

    def __init__(self, config: FetchConfig) -> None:
        self.config = config
        self.session = requests.Session()
        # trust_env stays on: HTTPS_PROXY/NO_PROXY and REQUESTS_CA_BUNDLE work as users expect. An
        # auth of our own (one that adds nothing) keeps requests from reading ~/.netrc: a matching
        # entry there would otherwise send the user's credentials to the update host.
        self.session.auth = _no_credentials
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
        self.adapter = _WatchedAdapter(max_retries=retry)
        self.session.mount("https://", self.adapter)
        self.session.mount("http://", self.adapter)
        self.session.headers["User-Agent"] = config.user_agent
        self.session.headers["Accept-Encoding"] = "identity"

    def close(self) -> None:
        """Release pooled connections."""
        self.session.close()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def load_trust(self, url: str | None = None) -> None:
        """Load the CA bundle a request to ``url`` checks the server's certificate against
        (``FetchConfig.ca_bundle``, else ``REQUESTS_CA_BUNDLE``, else certifi's), as its first
        connection would; a folder of certificates is read per connection and left to it. Nothing
        is sent.

        Raises:
            ConfigError: the bundle cannot be read or holds no certificate.
        """
        # The URL only decides which proxy settings apply; the CA bundle is the same for every https URL.
        prepared = self.session.prepare_request(requests.Request("GET", url or "https://localhost/"))
        merged, _proxies = self._settings(prepared)
        if merged is False:
            return
        path = requests.utils.DEFAULT_CA_BUNDLE_PATH if merged is True else merged
        if os.path.isdir(path):
            return
        try:
            _load_context(path)
        except (OSError, ValueError) as e:
            raise ConfigError(
                f"cannot load the CA bundle {path} ({e}); an app frozen without certifi's cacert.pem, or "
                "UpdaterConfig.ca_bundle naming a missing file, cannot check the store's certificate"
            ) from e

    def _sender(self, url: str, headers: dict[str, str] | None) -> Callable[[], requests.Response]:
        """A call that sends one GET through the adapter, with the session's headers, proxies and CA
        settings (``Session.send`` is bypassed: it reads every redirect body whole into memory)."""
        prepared = self.session.prepare_request(requests.Request("GET", url, headers=headers))
        merged_verify, proxies = self._settings(prepared)
        timeout = (self.config.connect_timeout, self.config.read_timeout)

        memo = self.config.anchor_memo

        def send() -> requests.Response:
            _ANCHOR_MEMO.set(memo)  # this worker thread's connections (gupper.anchors)
            return self.adapter.send(prepared, stream=True, timeout=timeout, verify=merged_verify, proxies=proxies)

        return send

    def _settings(self, prepared: requests.PreparedRequest) -> tuple[bool | str, Any]:
        """The CA setting (``FetchConfig.ca_bundle``, else ``REQUESTS_CA_BUNDLE``, else True: certifi's)
        and the proxies a request to ``prepared.url`` uses, as requests merges them from the environment."""
        verify: bool | str = self.config.ca_bundle if self.config.ca_bundle else True
        settings = self.session.merge_environment_settings(prepared.url, {}, True, verify, None)
        merged: bool | str = settings["verify"] if settings["verify"] is not None else True
        return merged, settings["proxies"]

    def _start(self, url: str, headers: dict[str, str] | None, deadline: float) -> tuple[_Request, requests.Response]:
        """Send one GET (no redirects); the request and its response, headers read."""
        try:
            request = _Request(self._sender(url, headers), deadline)
        except Exception as e:  # preparing: an URL requests cannot encode, a broken proxy setting
            raise DownloadError(
                f"cannot request {shown(url)}: {_reason(e)}; check the URL and the proxy settings"
            ) from e
        try:
            return request, self._send_checked(request, url)
        except BaseException:
            request.finish()
            raise

    def _send_checked(self, request: _Request, url: str) -> requests.Response:
        try:
            return request.start()
        except TransferTimeoutError as e:
            raise _past_deadline(url) from e
        except Exception as e:
            raise self._send_failure(request, url, e) from e

    def _send_failure(self, request: _Request, url: str, e: Exception) -> DownloadError | ConfigError:
        """The one error for a request that got no usable response head, saying which step failed."""
        host = urlsplit(url).netloc or url
        if request.watch.fired:
            return _past_deadline(url)  # the watchdog's shutdown, whatever error it surfaced as
        interim = _found(e, _InterimResponsesError)
        if interim is not None:
            return DownloadError(f"cannot fetch {shown(url)}: the server sent {interim}; check the server or proxy")
        timeouts = [x for x in _chain(e) if isinstance(x, TimeoutError | urllib3.exceptions.TimeoutError)]
        timeouts = [x for x in timeouts if not isinstance(x, urllib3.exceptions.NewConnectionError)]  # a subclass
        if any(isinstance(x, urllib3.exceptions.ConnectTimeoutError) for x in timeouts):
            return TransferTimeoutError(
                f"could not connect to {host} within {self.config.connect_timeout:g} s; check the network or try later"
            )
        if any("handshake" in str(x) for x in timeouts):  # ssl's "The handshake operation timed out"
            return TransferTimeoutError(
                f"no answer from {host} within {self.config.connect_timeout:g} s (the TLS handshake did not "
                "finish); check the network or try later"
            )
        if timeouts:
            return TransferTimeoutError(
                f"no answer from {shown(url)} within {self.config.read_timeout:g} s (the request was sent); check "
                "the server or try later"
            )
        if isinstance(e, requests.exceptions.SSLError) or _found(e, ssl.SSLError) is not None:
            return _tls_failure(url, e)
        missing = next((x for x in _chain(e) if type(x) is OSError and "CA certificate bundle" in str(x)), None)
        if missing is not None:  # requests: "Could not find a suitable TLS CA certificate bundle, invalid path: P"
            path = str(missing).rsplit("invalid path: ", 1)[-1]
            return ConfigError(
                f"the CA bundle {path} does not exist; fix UpdaterConfig.ca_bundle (or REQUESTS_CA_BUNDLE, "
                "CURL_CA_BUNDLE in the environment)"
            )
        return DownloadError(
            f"cannot fetch {shown(url)}: {_reason(e)}; check the network or that the update server is up"
        )

    @contextmanager
    def _open(
        self, url: str, deadline: float, headers: dict[str, str] | None = None
    ) -> Iterator[tuple[requests.Response, _Watch]]:
        """GET ``url`` following only allowed redirects; yields a streaming 2xx/304 response and
        the watch that will cut it off at ``deadline``."""
        for _ in range(MAX_REDIRECTS + 1):
            check_url(url, self.config.allow_insecure_loopback)
            if time.monotonic() >= deadline:
                raise _past_deadline(url)
            request, resp = self._start(url, headers, deadline)
            try:
                if resp.is_redirect:
                    location = resp.headers.get("Location", "")
                    if not location:
                        raise HTTPStatusError(f"{shown(url)} redirected without a Location", resp.status_code)
                    try:
                        url = urljoin(url, location)
                    except ValueError as e:
                        raise HTTPStatusError(
                            f"{shown(url)} redirected to an unusable Location {location[:100]!r}", resp.status_code
                        ) from e
                    continue
                if resp.status_code != 304 and not 200 <= resp.status_code < 300:
                    raise HTTPStatusError(
                        f"{shown(url)} answered HTTP {resp.status_code}; check the URL or that the release was "
                        "published",
                        resp.status_code,
                    )
                yield resp, request.watch
                return
            finally:
                resp.close()
                request.finish()
        raise HTTPStatusError(f"{shown(url)}: more than {MAX_REDIRECTS} redirects; check the server configuration")

    def _chunks(self, resp: requests.Response, watch: _Watch, url: str, deadline: float) -> Iterator[bytes]:
        """The body as it arrives, cut off at the deadline.

        ``read1`` returns whatever has arrived (up to CHUNK) instead of waiting for a full chunk.
        A read that ends early (an error, or an end of data) is a timeout if the watch fired: the
        watchdog's shutdown looks like the end of a body that has no length.
        """
        raw = resp.raw
        while True:
            if time.monotonic() >= deadline:
                raise _past_deadline(url, downloading=True)
            try:
                chunk = raw.read1(CHUNK, decode_content=False)
            except Exception as e:
                if watch.fired:
                    raise _past_deadline(url, downloading=True) from e
                if isinstance(e, urllib3.exceptions.ReadTimeoutError | TimeoutError):
                    raise TransferTimeoutError(
                        f"no data from {shown(url)} within {self.config.read_timeout:g} s; check the network or "
                        "try later"
                    ) from e
                raise DownloadError(
                    f"connection to {shown(url)} broke mid-transfer ({_reason(e)}); it will be retried next time"
                ) from e
            if watch.fired:
                raise _past_deadline(url, downloading=True)
            if not chunk:
                return
            yield chunk

    def get_small(self, url: str, *, max_bytes: int, timeout: float, etag: str | None = None) -> Fetched | None:
        """GET a small document whole; returns None on 304 (only when ``etag`` was sent).

        Raises:
            DownloadError: any transfer failure (TransferTimeoutError, HTTPStatusError among them).
            TooLargeError: the document is over ``max_bytes``.
            ConfigError: ``url`` or a redirect target is not an https URL.
        """
        deadline = time.monotonic() + timeout
        headers = {"If-None-Match": etag} if etag else None
        with self._open(url, deadline, headers) as (resp, watch):
            if resp.status_code == 304:
                if etag is None:
                    raise HTTPStatusError(
                        f"{shown(url)} answered 304 Not Modified to a request that asked for no comparison; check "
                        "the server or proxy",
                        304,
                    )
                return None
            declared = _declared_length(resp)
            if declared is not None and declared > max_bytes:
                raise TooLargeError(f"{shown(url)} is {declared} bytes, over the {max_bytes} byte limit; check the URL")
            buf = bytearray()
            for chunk in self._chunks(resp, watch, url, deadline):
                buf += chunk
                if len(buf) > max_bytes:
                    raise TooLargeError(f"{shown(url)} sent more than {max_bytes} bytes; check the URL")
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
        on_start: OnStart | None = None,
        on_written: Callable[[int], None] | None = None,
    ) -> None:
        """Stream ``url`` into ``out``, never past ``size`` bytes, then check size and sha256.

        With ``resume`` (``out`` already holds ``resume.offset`` bytes whose hash is in
        ``resume.digest``), ask only for the rest with Range and If-Range, so a changed file on the
        server restarts from zero instead of being spliced. ``resume`` is kept up to date with the
        response's validator and the bytes written, so a caller can resume after a failure;
        ``on_start`` hears the validator before the first byte is written. ``progress`` hears the
        bytes received so far, on the calling thread; ``on_written`` the bytes written (in 1 MiB
        pieces), on the writer's thread.

        Raises:
            DownloadError: a transfer failure, retryable (TransferTimeoutError, HTTPStatusError, or the base class).
            IntegrityError: a content mismatch, permanent for these bytes (TooLargeError among them).
            ConfigError: ``url`` or a redirect target is not an https URL.
        """
        deadline = time.monotonic() + timeout
        resume = resume or Resume()
        digest = resume.digest
        headers = None
        if resume.offset and resume.etag:
            headers = {"Range": f"bytes={resume.offset}-", "If-Range": resume.etag}
        with self._open(url, deadline, headers) as (resp, watch):
            if (
                resp.status_code == 206
                and headers
                and resp.headers.get("Content-Range", "").startswith(f"bytes {resume.offset}-")
            ):
                done = resume.offset
            elif resp.status_code == 200:
                out.seek(0)
                out.truncate()
                digest = resume.digest = hashlib.sha256()  # stored back: a retry in this run resumes from it
                done = resume.offset = 0
            else:
                raise HTTPStatusError(
                    f"{shown(url)} answered HTTP {resp.status_code} to a download request", resp.status_code
                )
            declared = _declared_length(resp)
            if declared is not None and done + declared > size:
                # Refused before reading: all the signed bytes could arrive and the read would then wait for
                # the rest until the read timeout (issue 22).
                raise TooLargeError(
                    f"{shown(url)} is {done + declared} bytes, more than the {size} bytes the manifest signed for; "
                    "the store holds a different file"
                )
            validator = strong_etag(resp.headers.get("ETag"))
            if done == 0 or validator is not None:
                resume.etag = validator
            if on_start is not None:
                on_start(resume.etag)
            sink = _Sink(out, digest, resume, on_written)
            try:
                for chunk in self._chunks(resp, watch, url, deadline):
                    if done + len(chunk) > size:
                        raise TooLargeError(
                            f"{shown(url)} sent more than the {size} bytes the manifest signed for; the store holds a "
                            "different file"
                        )
                    sink.add(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, size)
            finally:
                sink.close()  # also on failure: what was received is written, and a resume starts after it
        if done != size:
            raise IntegrityError(
                f"{shown(url)} ended after {done} of {size} bytes; the download was cut short and will be retried "
                "next time"
            )
        if digest.hexdigest() != sha256:
            raise IntegrityError(
                f"{shown(url)} does not match the signed sha256; the store holds a different or corrupted "
                "file, nothing was installed"
            )
