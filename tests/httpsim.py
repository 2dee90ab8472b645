"""An in-process HTTPS server with real TLS (a trustme CA) for fast client tests.

Routes map a path to bytes or to a function that writes the response itself, so tests can
serve signed manifests, tampered artifacts, endless or trickling bodies, redirects and errors.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
