"""A TLS socket server of the tests' own that controls every byte of a response and its timing.

Unlike :mod:`http.server` (and :mod:`tests.httpsim`, built on it), nothing here is parsed or
normalised on the way out: a response is a :class:`Script` of raw byte steps, each sent after its
own delay, ending with a clean close, a TCP reset, or a hang until the client gives up. It can
send what a real server never should: a status line one byte at a time, endless ``100 Continue``
responses, headers that are not UTF-8, conflicting lengths. Also: a TCP relay that forwards a
real TLS server's bytes one at a time (a trickled TLS handshake).

Every wait is bounded: a handler stops at :data:`HANDLER_CAP` seconds or when the server stops.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import trustme

HANDLER_CAP = 30.0  # no connection handler outlives this, whatever the client does
MAX_HEAD = 64 * 1024


@dataclass(frozen=True)
class Step:
    """Send ``data`` after waiting ``delay`` seconds (the attack's timing, not synchronisation)."""

    data: bytes
    delay: float = 0.0


@dataclass(frozen=True)
class Script:
    """One response as bytes on the wire. ``end``: ``close`` (TLS close), ``reset`` (TCP RST),
    ``hang`` (keep the connection open, sending nothing, until the client closes it) or ``keep``
    (wait for the next request on the same connection)."""

    steps: tuple[Step, ...]
    end: str = "close"

    @classmethod
    def of(cls, data: bytes, end: str = "close") -> Script:
        return cls((Step(data),), end)


@dataclass(frozen=True)
class Request:
    """What the client sent: method, path and headers (names lower-cased)."""

    method: str
    path: str
    headers: dict[str, str]


Route = Script | Callable[[Request], Script]


def response(
    status: int | str, headers: list[tuple[str, str | bytes]] | None = None, body: bytes = b"", *, length: bool = True
) -> bytes:
    """Raw bytes of a response; ``status`` may be a whole status line. Header values may be bytes (sent as they are)."""
    line = status if isinstance(status, str) else f"HTTP/1.1 {status} X"
    out = bytearray(line.encode("latin-1") + b"\r\n")
    names = set()
    for name, value in headers or []:
        names.add(name.lower())
        out += (
            name.encode("latin-1") + b": " + (value if isinstance(value, bytes) else value.encode("latin-1")) + b"\r\n"
        )
    if length and "content-length" not in names and "transfer-encoding" not in names:
        out += f"Content-Length: {len(body)}\r\n".encode()
    return bytes(out + b"\r\n" + body)


def trickled(data: bytes, delay: float, step: int = 1) -> tuple[Step, ...]:
    """``data`` in pieces of ``step`` bytes, each after ``delay`` seconds."""
    return tuple(Step(data[i : i + step], delay) for i in range(0, len(data), step))


@dataclass
class RawServer:
    """A running raw server: base URL, CA file, routes by path and a log of requests."""

    base: str
    ca_path: str
    routes: dict[str, Route] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    context: ssl.SSLContext | None = None  # the server's: another leaf configured on it serves the next connections

    def url(self, path: str) -> str:
        return self.base + path

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]


def _read_head(conn: socket.socket, buf: bytearray, deadline: float) -> bytes | None:
    while b"\r\n\r\n" not in buf:
        if len(buf) > MAX_HEAD or time.monotonic() > deadline:
            return None
        try:
            part = conn.recv(4096)
        except (OSError, ssl.SSLError):
            return None
        if not part:
            return None
        buf += part
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    buf[:] = rest
    return head


def _parse(head: bytes) -> Request:
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = [*lines[0].split(" ", 2), "", ""][:3]
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Request(method, path.split("?", 1)[0], headers)


def _wait(server: RawServer, delay: float, deadline: float) -> bool:
    """Sleep ``delay`` unless the server stops or the handler's cap comes first; False to give up."""
    if delay <= 0:
        return True
    return not server.stop.wait(min(delay, max(0.0, deadline - time.monotonic())))


def _play(server: RawServer, conn: socket.socket, script: Script, deadline: float) -> bool:
    """Send the script; True if the connection may serve another request."""
    for step in script.steps:
        if not _wait(server, step.delay, deadline):
            return False
        try:
            if step.data:
                conn.sendall(step.data)
        except (OSError, ssl.SSLError):
            return False
    if script.end == "keep":
        return True
    if script.end == "reset":
        with contextlib.suppress(OSError):
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    elif script.end == "hang":
        while time.monotonic() < deadline and not server.stop.is_set():
            ready, _, _ = select.select([conn], [], [], 0.05)
            if ready:
                try:
                    if not conn.recv(65536):
                        break  # the client gave up
                except (OSError, ssl.SSLError):
                    break
    return False


def _handle(server: RawServer, raw: socket.socket, ctx: ssl.SSLContext) -> None:
    deadline = time.monotonic() + HANDLER_CAP
    raw.settimeout(HANDLER_CAP)
    try:
        conn = ctx.wrap_socket(raw, server_side=True)
    except (OSError, ssl.SSLError):
        raw.close()
        return
    buf = bytearray()
    try:
        while not server.stop.is_set():
            head = _read_head(conn, buf, deadline)
            if head is None:
                return
            request = _parse(head)
            server.requests.append(request)
            route = server.routes.get(request.path, Script.of(response(404), end="keep"))
            script = route(request) if callable(route) else route
            if not _play(server, conn, script, deadline):
                return
    finally:
        with contextlib.suppress(OSError, ssl.SSLError):
            conn.close()


@contextlib.contextmanager
def serve(tmp: Path, ca: trustme.CA | None = None, leaf: trustme.LeafCert | None = None) -> Iterator[RawServer]:
    """Start a raw TLS server on 127.0.0.1 with a fresh CA (unless one is given); stop on exit. ``leaf``:
    the certificate it shows (default: one from the CA for 127.0.0.1 and localhost, valid now)."""
    ca = ca or trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    (leaf or ca.issue_cert("127.0.0.1", "localhost")).configure_cert(ctx)
    ca_path = tmp / "raw-ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    server = RawServer(f"https://127.0.0.1:{listener.getsockname()[1]}", str(ca_path), context=ctx)
    threads: list[threading.Thread] = []

    def accept() -> None:
        while not server.stop.is_set():
            try:
                raw, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            t = threading.Thread(target=_handle, args=(server, raw, ctx), daemon=True)
            threads.append(t)
            t.start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield server
    finally:
        server.stop.set()
        acceptor.join(timeout=5)
        listener.close()
        for t in threads:
            t.join(timeout=5)


@contextlib.contextmanager
def trickle_relay(upstream_port: int, delay: float) -> Iterator[int]:
    """A TCP relay to 127.0.0.1:``upstream_port`` that passes what the client sends at once and
    what the server sends one byte per ``delay`` seconds: the TLS handshake itself trickles.
    Yields the relay's port."""
    stop = threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)

    def relay(client: socket.socket) -> None:
        deadline = time.monotonic() + HANDLER_CAP
        with client, socket.create_connection(("127.0.0.1", upstream_port), timeout=HANDLER_CAP) as up:
            pending = b""
            while time.monotonic() < deadline and not stop.is_set():
                ready, _, _ = select.select([client, up], [], [], 0.01)
                try:
                    if client in ready:
                        data = client.recv(65536)
                        if not data:
                            return
                        up.sendall(data)
                    if up in ready:
                        data = up.recv(65536)
                        if not data and not pending:
                            return
                        pending += data
                    if pending:
                        client.sendall(pending[:1])
                        pending = pending[1:]
                        if stop.wait(delay):
                            return
                except OSError:
                    return

    def accept() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=relay, args=(client,), daemon=True).start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        acceptor.join(timeout=5)
        listener.close()
