"""A local S3-compatible store for the Gupper demo and tests.

Run ``python -m gupper_infra.localstore --state-dir DIR``. One process serves moto's S3
backend over HTTPS on two ports:

* the S3 API endpoint (full S3 API, any credentials), for the publisher;
* the public front (the CDN's role): anonymous GET/HEAD of ``/<bucket>/<key>``
  only, see :class:`gupper_infra.front.PublicFront`.

The ports are fixed unless given (:data:`S3_PORT`, :data:`PUBLIC_PORT`), so the URLs an app
was built with still work after a restart. When both ports answer, it writes
``DIR/store.json`` and prints one line, ``GUPPER-STORE-READY <json>``, then the ``export``
lines a shell needs to point ``gupper-publish`` at it, on stdout. It runs until SIGTERM or
SIGINT. Objects are kept in ``DIR/objects`` (:mod:`gupper_infra.objects`): a restarted store
serves what was published, with the same serials and ETags, and keeps its CA.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import http.client
import json
import os
import shlex
import signal
import socket
import ssl
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any
from wsgiref.types import WSGIApplication

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

from gupper_infra import (
    ACCESS_KEY,
    DEFAULT_BUCKET,
    READY_PREFIX,
    REGION,
    SECRET_KEY,
    STORE_INFO_FILE,
)
from gupper_infra.client import s3_env
from gupper_infra.front import AccessLog, PublicFront
from gupper_infra.objects import ObjectMirror, Persisting
from gupper_infra.tls import (
    DEFAULT_IDENTITIES,
    TLSFiles,
    ensure_tls_material,
    normalize_identity,
    server_ssl_context,
    write_file_atomic,
)
from gupper_publish.policy import render_public_read_policy, validate_bucket_name

# Per-connection socket timeout (handshake, reads, each write): a stalled client
# then frees its thread instead of holding it forever.
CONNECTION_TIMEOUT = 60.0
SELF_CHECK_TIMEOUT = 10.0
S3_PORT = 19443  # the S3 API's default port (the demo's too)
PUBLIC_PORT = 19444  # the public front's
OBJECTS_DIR = "objects"  # under the state dir, unless --data-dir says otherwise


def _verbose(handler: WSGIRequestHandler) -> bool:
    return bool(getattr(handler.server, "verbose", False))


def _handshake(handler: WSGIRequestHandler) -> bool:
    conn = handler.connection
    if not isinstance(conn, ssl.SSLSocket):
        return True
    try:
        conn.do_handshake()
    except OSError as exc:  # ssl.SSLError included; e.g. a client that distrusts the CA
        if _verbose(handler):
            handler.log_error("TLS handshake failed: %s", exc)
        return False
    return True


class _QuietTLSHandling:
    """TLS handshake in the request's own thread (one stalled client must not block the accept
    loop) and request logs only with --verbose; mixed into both servers' handlers."""

    timeout: float | None = CONNECTION_TIMEOUT
    # TCP_NODELAY, as nginx, Go's servers and CDNs set it. With Nagle's algorithm on, a response
    # written in pieces (headers, then body; or after TLS 1.3's session tickets) waited for the
    # client's delayed ACK: about 10 ms per request here, which the bench counted against the client.
    disable_nagle_algorithm = True

    def handle(self) -> None:
        if _handshake(self):  # type: ignore[arg-type]
            super().handle()  # type: ignore[misc]

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if _verbose(self):  # type: ignore[arg-type]
            super().log_request(code, size)  # type: ignore[misc]

    def log_error(self, format: str, *args: Any) -> None:
        if _verbose(self) or not format.startswith("SSL error"):  # type: ignore[arg-type]
            super().log_error(format, *args)  # type: ignore[misc]


class _S3Handler(_QuietTLSHandling, MotoRequestHandler):
    """moto's handler."""


class _PublicHandler(_QuietTLSHandling, WSGIRequestHandler):
    """Plain werkzeug handler: unlike moto's, it drops headers spelled with
    underscores, which a public endpoint has no use for."""


class _TLSServer(ThreadedWSGIServer):
    """werkzeug's threaded server, with TLS set up so the handshake does not run
    in the accept loop (werkzeug's own ``ssl_context=`` handshakes in ``accept()``,
    so one client stalling mid-handshake would block every other connection)."""

    def __init__(
        self,
        host: str,
        port: int,
        app: WSGIApplication,
        handler: type[WSGIRequestHandler],
        ssl_context: ssl.SSLContext,
        *,
        verbose: bool,
    ) -> None:
        super().__init__(host, port, app, handler=handler)
        self.socket = ssl_context.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)
        self.ssl_context = ssl_context
        self.verbose = verbose


def _moto_s3_app(dispatcher: DomainDispatcherApplication) -> WSGIApplication:
    # The front must reach moto's S3 app directly: the dispatcher guesses the
    # service from the request, and an anonymous GET of a key ending in
    # "/.well-known/jwks.json" would be routed to Cognito. Sharing the
    # dispatcher's instance keeps one S3 app for both ports.
    with dispatcher.lock:
        app = dispatcher.app_instances.get("s3")
        if app is None:
            app = dispatcher.create_app("s3")
            dispatcher.app_instances["s3"] = app
    return app


class StoreServers:
    """The two HTTPS servers over one moto backend, each on its own thread."""

    def __init__(
        self,
        *,
        host: str,
        s3_port: int,
        public_port: int,
        bucket: str,
        ssl_context: ssl.SSLContext,
        verbose: bool = False,
        mirror: ObjectMirror | None = None,
    ) -> None:
        # moto 5.2's DomainDispatcherApplication has no service= argument; requests
        # signed for S3 (and unsigned ones) are dispatched to S3 anyway.
        self.dispatcher = DomainDispatcherApplication(create_backend_app)
        self.front = PublicFront(_moto_s3_app(self.dispatcher), bucket)
        s3_app: WSGIApplication = self.dispatcher if mirror is None else Persisting(self.dispatcher, mirror)
        self.s3_server = _TLSServer(host, s3_port, s3_app, _S3Handler, ssl_context, verbose=verbose)
        self.public_server = _TLSServer(host, public_port, self.front, _PublicHandler, ssl_context, verbose=verbose)
        self._threads: list[threading.Thread] = []

    @property
    def s3_port(self) -> int:
        """The S3 API port actually bound."""
        return self.s3_server.port

    @property
    def public_port(self) -> int:
        """The public front's port actually bound."""
        return self.public_server.port

    def start(self) -> None:
        """Serve both ports on daemon threads; both already accept connections."""
        for name, server in (("s3", self.s3_server), ("public", self.public_server)):
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.1},
                name=f"localstore-{name}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)

    def shutdown(self) -> None:
        """Stop both accept loops and close the listening sockets."""
        if not self._threads:
            self.s3_server.server_close()
            self.public_server.server_close()
            return
        for server in (self.s3_server, self.public_server):
            server.shutdown()  # serve_forever closes its socket on the way out
        for thread in self._threads:
            thread.join(timeout=5.0)
        self._threads.clear()


def s3_backend() -> Any:
    """moto's S3 backend that the store's requests reach (they resolve their account the same way:
    MOTO_ACCOUNT_ID wins)."""
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    return s3_backends[os.environ.get("MOTO_ACCOUNT_ID", DEFAULT_ACCOUNT_ID)]["aws"]


def create_bucket_with_public_read(bucket: str) -> None:
    """Create ``bucket`` in moto (if missing) and apply the public-read policy.

    This talks to moto's backend in-process: no credentials, proxies or AWS
    config files of the environment can get in the way at start-up.
    """
    from moto.s3.exceptions import BucketAlreadyExists

    backend = s3_backend()
    with contextlib.suppress(BucketAlreadyExists):
        backend.create_bucket(bucket, REGION)
    backend.put_bucket_policy(bucket, render_public_read_policy(bucket).encode())


def _https_status(host: str, port: int, ca: Path, method: str, path: str) -> int:
    ctx = ssl.create_default_context(cafile=str(ca))
    conn = http.client.HTTPSConnection(host.strip("[]"), port, context=ctx, timeout=SELF_CHECK_TIMEOUT)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def self_check(host: str, servers: StoreServers, ca: Path, bucket: str) -> None:
    """Make one real HTTPS request to each port, verifying the certificate.

    Raises ``RuntimeError`` unless both answer without a server error, so the
    READY line is only printed for a store that works end to end.
    """
    probes = (
        ("S3 API", servers.s3_port, "HEAD", f"/{bucket}"),
        ("public front", servers.public_port, "HEAD", f"/{bucket}/.gupper-self-check"),
    )
    for label, port, method, path in probes:
        status = _https_status(host, port, ca, method, path)
        if status >= 500:
            raise RuntimeError(f"self-check of the {label} failed: HTTP {status}")


def advertised_host(host: str) -> str:
    """The host to put in URLs for a bind address (wildcards become loopback)."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    if ":" in host and not host.startswith("["):
        return f"[{host}]"
    return host


def certificate_identities(host: str, extra_names: Sequence[str]) -> list[str]:
    """Names and addresses the server certificate must cover."""
    identities = list(DEFAULT_IDENTITIES)
    for name in (advertised_host(host), *extra_names):
        if normalize_identity(name) not in {normalize_identity(i) for i in identities}:
            identities.append(name.strip("[]"))
    return identities


class _StopSignal:
    """Self-pipe: signal handlers and the stdin watcher only write one byte,
    which is safe at any point, and the main thread blocks on the read."""

    def __init__(self) -> None:
        self._read_fd, self._write_fd = os.pipe()
        if os.name == "posix":  # Python 3.11 cannot make a Windows pipe non-blocking; one byte never fills it
            os.set_blocking(self._write_fd, False)

    def trigger(self, *_: object) -> None:
        with contextlib.suppress(BlockingIOError):
            os.write(self._write_fd, b"x")

    def wait(self) -> None:
        os.read(self._read_fd, 1)


def _watch_stdin(stop: _StopSignal) -> None:
    # The parent holds our stdin pipe open; EOF means it died or let go of us.
    # os.read on the raw fd, not sys.stdin: a daemon thread blocked inside the
    # buffered reader holds its lock, and interpreter shutdown then aborts.
    with contextlib.suppress(OSError):
        while os.read(0, 65536):
            pass
    stop.trigger()


def _bucket_arg(value: str) -> str:
    try:
        return validate_bucket_name(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line of ``python -m gupper_infra.localstore``."""
    parser = argparse.ArgumentParser(
        prog="python -m gupper_infra.localstore",
        description="Local S3-compatible store (moto) with an HTTPS public front.",
    )
    parser.add_argument(
        "--state-dir", type=Path, required=True, help="directory for ca.pem, keys, certificates and store.json"
    )
    parser.add_argument("--bucket", type=_bucket_arg, default=DEFAULT_BUCKET)
    parser.add_argument("--host", default="127.0.0.1", help="bind address")
    parser.add_argument("--s3-port", type=int, default=S3_PORT, help=f"S3 API port (default {S3_PORT}; 0: a free one)")
    parser.add_argument(
        "--public-port", type=int, default=PUBLIC_PORT, help=f"public front port (default {PUBLIC_PORT}; 0: a free one)"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help=f"where objects are kept across restarts (default: STATE_DIR/{OBJECTS_DIR})",
    )
    parser.add_argument("--in-memory", action="store_true", help="keep objects in memory only: a restart empties it")
    parser.add_argument(
        "--access-log", type=Path, default=None, help="append one JSON line per public-front request here"
    )
    parser.add_argument("--verbose", action="store_true", help="log every request and TLS failure to stderr")
    parser.add_argument(
        "--extra-name",
        action="append",
        default=[],
        help="another host name or IP for the server certificate (repeatable), e.g. 'minio' for the compose set-up",
    )
    parser.add_argument(
        "--tls-only",
        action="store_true",
        help="create or refresh the CA and server certificate, print their paths as JSON, and exit",
    )
    parser.add_argument(
        "--exit-on-stdin-eof",
        action="store_true",
        help="also stop when stdin reaches EOF (gupper_infra.client uses it: no orphan store)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the store until SIGTERM/SIGINT (or stdin EOF); return the exit code."""
    args = parse_args(argv)
    stop = _StopSignal()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.trigger()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    state_dir: Path = args.state_dir.resolve()
    bucket: str = args.bucket
    host = advertised_host(args.host)
    tls: TLSFiles = ensure_tls_material(state_dir, certificate_identities(args.host, args.extra_name))
    if args.tls_only:
        print(json.dumps({k: str(v) for k, v in vars(tls).items()}), flush=True)
        return 0

    mirror = None
    if not args.in_memory:
        mirror = ObjectMirror(s3_backend(), (args.data_dir or state_dir / OBJECTS_DIR).resolve(), REGION)
        mirror.load()
    busy = [port for port in (args.s3_port, args.public_port) if port and _in_use(args.host, port)]
    if busy:  # said in one line here: werkzeug would print two and exit
        print(
            f"localstore: error: port {busy[0]} on {host} is in use (another store?); pass --s3-port and "
            "--public-port (0 picks free ones)",
            file=sys.stderr,
        )
        return 1
    servers = StoreServers(
        host=args.host,
        s3_port=args.s3_port,
        public_port=args.public_port,
        bucket=bucket,
        ssl_context=server_ssl_context(tls),
        verbose=args.verbose,
        mirror=mirror,
    )
    access_log = AccessLog(args.access_log.resolve()) if args.access_log else None
    info_path = state_dir / STORE_INFO_FILE
    servers.start()
    try:
        create_bucket_with_public_read(bucket)
        self_check(host, servers, tls.ca_cert, bucket)
        # Attached after the self-check so the log holds only clients' requests.
        servers.front.access_log = access_log
        info = {
            "s3_endpoint": f"https://{host}:{servers.s3_port}",
            "public_base": f"https://{host}:{servers.public_port}/{bucket}",
            "bucket": bucket,
            "ca": str(tls.ca_cert),
            "region": REGION,
            "access_key": ACCESS_KEY,
            "secret_key": SECRET_KEY,
            "pid": os.getpid(),
        }
        write_file_atomic(info_path, (json.dumps(info, indent=2) + "\n").encode(), 0o644)
        print(READY_PREFIX + json.dumps(info), flush=True)
        print(export_lines(info), flush=True)
        if args.exit_on_stdin_eof:
            threading.Thread(target=_watch_stdin, args=(stop,), name="stdin-watch", daemon=True).start()
        stop.wait()
    finally:
        servers.shutdown()
        _remove_own_info(info_path)
        if access_log is not None:
            access_log.close()
    return 0


def _in_use(host: str, port: int) -> bool:
    """Whether something listens on ``host``:``port`` already (bound as the server binds: address reuse on)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host.strip("[]"), port))
        except OSError as e:
            return e.errno == errno.EADDRINUSE
    return False


@dataclass(frozen=True)
class _Running:
    s3_endpoint: str
    public_base: str
    ca: str
    region: str
    access_key: str
    secret_key: str


def export_lines(info: dict[str, Any]) -> str:
    """Shell lines that point boto3 (and so ``gupper-publish``) at the store described by ``info``."""
    running = _Running(
        *(str(info[k]) for k in ("s3_endpoint", "public_base", "ca", "region", "access_key", "secret_key"))
    )
    lines = [f"export {name}={shlex.quote(value)}" for name, value in s3_env(running).items()]
    return "\n".join([*lines, f"# the apps' manifest URLs start with {info['public_base']}/"])


def _remove_own_info(info_path: Path) -> None:
    # Leave the file alone if another store on this state dir has replaced it.
    with contextlib.suppress(OSError, ValueError):
        if json.loads(info_path.read_text(encoding="utf-8")).get("pid") == os.getpid():
            info_path.unlink()


if __name__ == "__main__":
    sys.exit(main())
