"""Item 1: a check with no update available, first (200) and warm (304), against tufup's; wall
time, requests, body bytes and bytes on the wire."""

from __future__ import annotations

import json
import socket
import ssl
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.common import median
from bench.harness import RUN, Bench, Row, gupper_config, in_window, kept_etag, log_entries, run_tufup, wait_for_log

Window = tuple[float, float, float]  # epoch start, epoch end, wall ms


def window_counts(b: Bench, windows: list[Window], prefix: str) -> tuple[list[int], list[int], list[dict[str, Any]]]:
    """Requests and body bytes per window, from the access log; and the entries of the last window."""
    wait_for_log(b.access_log, 1)
    entries = log_entries(b.access_log)
    served = [in_window(entries, s, e, prefix) for s, e, _ in windows]
    return [len(x) for x in served], [sum(e["bytes_sent"] for e in x) for x in served], served[-1] if served else []


def wire_bytes(url: str, ca: str, etag: str | None = None) -> dict[str, int]:
    """One GET over a fresh TLS connection, counted at the TCP level (what a CDN carries and bills).

    The TLS engine runs over memory BIOs, so every byte in either direction is counted: handshake
    (certificate chain included), request, response headers and body. Bounded by a socket timeout
    and a cap on round trips.
    """
    u = urlsplit(url)
    host, port = u.hostname or "127.0.0.1", u.port or 443
    ctx = ssl.create_default_context(cafile=ca)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(inc, out, server_hostname=host)
    count = {"sent": 0, "received": 0}
    with socket.create_connection((host, port), timeout=10) as sock:

        def flush() -> None:
            data = out.read()
            if data:
                sock.sendall(data)
                count["sent"] += len(data)

        def pump() -> bool:
            data = sock.recv(1 << 16)
            if not data:
                inc.write_eof()
                return False
            count["received"] += len(data)
            inc.write(data)
            return True

        for _ in range(100):
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                flush()
                if not pump():
                    raise ConnectionError("closed during the TLS handshake") from None
        flush()
        handshake = count["sent"] + count["received"]
        path = u.path + (f"?{u.query}" if u.query else "")
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {u.netloc}",
            "User-Agent: gupper-bench",
            "Accept-Encoding: identity",
            "Connection: close",
        ]
        if etag:
            lines.append(f"If-None-Match: {etag}")
        tls.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        flush()
        response = bytearray()
        for _ in range(1 << 16):
            try:
                chunk = tls.read(1 << 16)
            except ssl.SSLWantReadError:
                flush()
                if not pump():
                    break
                continue
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                break
            if not chunk:
                break
            response += chunk
    head, _, body = bytes(response).partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
    return {
        "status": status,
        "total": count["sent"] + count["received"],
        "handshake": handshake,
        "headers": len(head) + 4,
        "body": len(body),
    }


def replay_on_wire(b: Bench, served: list[dict[str, Any]]) -> int:
    """Replay the logged requests of one check, each over a fresh TLS connection (as the front has no
    keep-alive, each was one), and add up their bytes on the wire."""
    base = urlsplit(b.store.public_base)
    total = 0
    for e in served:
        url = f"{base.scheme}://{base.netloc}{e['path']}" + (f"?{e['query']}" if e.get("query") else "")
        total += wire_bytes(url, b.store.ca, e.get("if_none_match"))["total"]
    return total


def item1_check(b: Bench, tufup_urls: tuple[str, str, Path] | None) -> None:
    from gupper import Updater

    n = max(5, b.reps * 2)
    base = RUN / "check"
    Updater(gupper_config(b, "1.0.0", base / "imports")).check()  # warm the imports, as the tufup side does

    def timed(state_dir: Path) -> Window:
        start = time.time()
        t0 = time.perf_counter()
        found = Updater(gupper_config(b, "1.0.0", state_dir)).check()
        window = (start, time.time(), (time.perf_counter() - t0) * 1000)
        assert found is None, "the store should hold v1 only here"
        time.sleep(0.1)  # a gap, so the checks are apart in the access log
        return window

    first = [timed(base / f"first-{i}") for i in range(n)]  # a fresh install each time: no ETag, no kept copy
    timed(base / "warm")  # keeps the signed manifest and its ETag
    warm = [timed(base / "warm") for _ in range(n)]
    g: dict[str, tuple[float, float, float, int]] = {}
    for kind, windows, status in (("first", first, 200), ("warm", warm, 304)):
        reqs, nbytes, last = window_counts(b, windows, "/gupper/app/")
        assert [e["status"] for e in last] == [status], f"Gupper's {kind} check: {last}"
        g[kind] = (median([ms for _, _, ms in windows]), median(reqs), median(nbytes), replay_on_wire(b, last))
    manifest_200 = wire_bytes(b.manifest_url, b.store.ca)
    etag = kept_etag(base / "warm")
    manifest_304 = wire_bytes(b.manifest_url, b.store.ca, etag)
    assert manifest_200["status"] == 200 and manifest_304["status"] == 304, (manifest_200, manifest_304)
    b.metrics.update(
        manifest_body=manifest_200["body"],
        manifest_200_headers=manifest_200["headers"],
        manifest_304_headers=manifest_304["headers"],
        manifest_200_wire=manifest_200["total"],
        manifest_304_wire=manifest_304["total"],
        tls_handshake=manifest_200["handshake"],
    )

    t: dict[str, tuple[float, float, float, int] | None] = {"first": None, "warm": None}
    if tufup_urls is not None and b.tufup_python is not None:
        meta_url, targets_url, root = tufup_urls
        result = json.loads(
            run_tufup(b, "check", meta_url, targets_url, str(root), str(RUN / "tufup-client"), "1.0.0", str(n), str(n))
        )
        assert result["found"] == [None], f"tufup found an update: {result}"
        for kind, key in (("first", "cold"), ("warm", "warm")):
            windows = [(r["start"], r["end"], r["ms"]) for r in result[key]]
            reqs, nbytes, last = window_counts(b, windows, "/gupper/tufup/")
            t[kind] = (median([ms for _, _, ms in windows]), median(reqs), median(nbytes), replay_on_wire(b, last))
    labels = {
        "first": (
            "no-update check, first on a fresh install",
            "Gupper: GET latest.json (200), verify, keep it + its ETag; tufup: only the "
            "shipped root.json, fetches root N+1 (404), timestamp, snapshot, targets",
        ),
        "warm": (
            "no-update check, warm (every later start)",
            "Gupper: If-None-Match -> 304, verify the kept signed copy again; tufup: metadata "
            "kept, fetches root N+1 (404) and timestamp.json",
        ),
    }
    for kind, (label, note) in labels.items():
        gv, tv = g[kind], t[kind]
        b.add(
            Row(
                "1",
                f"{label}: wall time (in-process, new client object each time)",
                "ms",
                gv[0],
                tv[0] if tv else None,
                note,
            )
        )
        b.add(Row("1", f"{label}: requests", "requests", gv[1], tv[1] if tv else None))
        b.add(Row("1", f"{label}: bytes transferred (bodies)", "bytes", gv[2], tv[2] if tv else None))
        b.add(
            Row(
                "1",
                f"{label}: bytes on the wire (TLS handshake + headers + bodies, both ways)",
                "bytes",
                gv[3],
                tv[3] if tv else None,
                "each request replayed over a fresh TLS 1.3 connection and counted at the TCP "
                "level (loopback CA: a 1-certificate chain)",
            )
        )
        b.metrics[f"g_{kind}_ms"], b.metrics[f"g_{kind}_req"] = gv[0], gv[1]
        if tv:
            b.metrics[f"t_{kind}_ms"], b.metrics[f"t_{kind}_req"] = tv[0], tv[1]
