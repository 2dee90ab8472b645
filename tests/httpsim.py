"""An in-process HTTPS server with real TLS (a trustme CA) for fast client tests.

Routes map a path to bytes or to a function that writes the response itself, so tests can
serve signed manifests, tampered artifacts, endless or trickling bodies, redirects and errors.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import trustme

Handler = Callable[[BaseHTTPRequestHandler], None]


@dataclass
class Sim:
    """A running simulator: base URL, CA file, routes and a request log."""

    base: str
    ca_path: str
    routes: dict[str, bytes | Handler] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)

    def url(self, path: str) -> str:
        return self.base + path


def _make_handler(sim: Sim) -> type[BaseHTTPRequestHandler]:
    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            sim.requests.append(("GET", path, dict(self.headers.items())))
            route = sim.routes.get(path)
            if route is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if callable(route):
                route(self)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(route)))
            self.end_headers()
            self.wfile.write(route)

    return H


@contextmanager
def serve(tmp: Path, ca: trustme.CA | None = None) -> Iterator[Sim]:
    """Start the simulator on 127.0.0.1 with a fresh CA (unless one is given); stop on exit."""
    ca = ca or trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    ca_path = tmp / "sim-ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    sim = Sim("", str(ca_path))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(sim))
    server.daemon_threads = True
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    sim.base = f"https://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield sim
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --- Attack behaviours: each returns a route handler. Every loop is bounded. ---

ENDLESS_CAP = 64 << 20  # an "endless" body still stops here, so a broken client cannot hang a test


def status(code: int, headers: dict[str, str] | None = None) -> Handler:
    """Answer with ``code`` and an empty body."""

    def handle(h: BaseHTTPRequestHandler) -> None:
        h.send_response(code)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", "0")
        h.end_headers()

    return handle


def redirect(location: str, code: int = 302) -> Handler:
    """Redirect to ``location``."""
    return status(code, {"Location": location})


def endless(chunk: bytes = b"A" * 65536) -> Handler:
    """A body with no length that never ends (until the client hangs up or the cap)."""

    def handle(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Connection", "close")
        h.end_headers()
        h.close_connection = True
        sent = 0
        try:
            while sent < ENDLESS_CAP:
                h.wfile.write(chunk)
                sent += len(chunk)
        except OSError:
            pass  # the client stopped reading: that is the point

    return handle


def trickle(data: bytes, delay: float) -> Handler:
    """Send ``data`` one byte every ``delay`` seconds (slow retrieval)."""
    import time

    def handle(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.close_connection = True
        try:
            for i in range(len(data)):
                h.wfile.write(data[i : i + 1])
                h.wfile.flush()
                time.sleep(delay)  # the attack itself, not synchronisation
        except OSError:
            pass

    return handle


def lying_length(data: bytes, declared: int) -> Handler:
    """Declare ``declared`` bytes, send ``data``, close."""

    def handle(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(declared))
        h.end_headers()
        h.close_connection = True
        with suppress(OSError):
            h.wfile.write(data)

    return handle


def reset_after(data: bytes, n: int) -> Handler:
    """Send the headers and ``n`` bytes of ``data``, then reset the TCP connection."""
    import socket
    import struct

    def handle(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data[:n])
        h.wfile.flush()
        h.close_connection = True
        raw = h.connection
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close → RST

    return handle


@contextmanager
def connect_proxy() -> Iterator[tuple[str, list[str]]]:
    """A real HTTP CONNECT proxy on 127.0.0.1; yields (proxy URL, list of CONNECT targets seen)."""
    import select
    import socket
    import socketserver

    seen: list[str] = []

    class Tunnel(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            client: socket.socket = self.request
            client.settimeout(10)
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 8192:
                part = client.recv(1024)
                if not part:
                    return
                head += part
            method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
            if method != "CONNECT":
                client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                return
            seen.append(target)
            host, port = target.rsplit(":", 1)
            with socket.create_connection((host, int(port)), timeout=10) as upstream:
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                for _ in range(100_000):  # bounded relay
                    ready, _, _ = select.select([client, upstream], [], [], 10)
                    if not ready:
                        return
                    for src in ready:
                        data = src.recv(65536)
                        if not data:
                            return
                        (upstream if src is client else client).sendall(data)

    class Server(socketserver.ThreadingTCPServer):
        daemon_threads = True
        allow_reuse_address = True

    server = Server(("127.0.0.1", 0), Tunnel)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
