"""Items 11 and 12: the client against a fast static HTTPS server (nginx), where its own cost shows.

The local store's front (werkzeug, no keep-alive) takes ~25 ms a request, so a check against it
measures the server. Here nginx (Debian's ``nginx-light``; ``apt-get install -y nginx-light``) is
started on 127.0.0.1 with the local store's test certificate, over a folder holding the same files:
Gupper's signed ``latest.json`` (fetched byte for byte from the store) and tufup's repository.

- Item 11, the warm no-update check in-process (a new client object each time, as at every start):
  Gupper (``Updater.check()``: If-None-Match -> 304, verify the kept copy), tufup (its warm check:
  root N+1 -> 404, timestamp.json), and the floor: a fresh TLS connection (new SSL context with the
  same CA file) + GET of the manifest + parse + one Ed25519 verify (PyNaCl), in the same process.
- Item 12, download + verify throughput of a 256 MiB artifact, in one run: curl into a file, SHA-256
  in memory, Gupper's ``Fetcher.download`` (receive, write, hash each ~16 kB TLS record in one
  thread) and two bench-only prototypes for fetch.py: A gathers 1 MiB before writing and hashing
  (one thread), B receives in one thread and writes + hashes 1 MiB pieces in a second one.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import queue
import shutil
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from bench.common import median
from bench.harness import MIB, RUN, Bench, Row, curl_rate, kept_etag, random_file, run_tufup, sha256_rate
from gupper_infra.nginx import config, free_port, running

NGINX_HTTP = """access_log off;
    types { application/json json; }
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;"""
NGINX_SERVER = """ssl_protocols TLSv1.2 TLSv1.3;
        root {root};
        etag on;
        add_header Cache-Control no-cache;"""


@contextmanager
def nginx(root: Path, cert: Path, key: Path, prefix: Path) -> Iterator[str]:
    """nginx serving ``root`` over HTTPS on a free loopback port; stopped (and waited for) on exit."""
    shutil.rmtree(prefix, ignore_errors=True)
    prefix.mkdir(parents=True)
    port = free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(config(prefix, port, cert, key, http=NGINX_HTTP, server=NGINX_SERVER.format(root=root)))
    with running(prefix, conf, port):
        yield f"https://127.0.0.1:{port}"


def docroot(b: Bench, tufup_v1: Path | None) -> Path:
    """The same files the store serves: Gupper's manifest, byte for byte, and tufup's v1 repository."""
    import requests

    root = RUN / "nginx-root"
    shutil.rmtree(root, ignore_errors=True)
    manifest = root / "gupper" / "app" / "stable" / "latest.json"
    manifest.parent.mkdir(parents=True)
    resp = requests.get(b.manifest_url, verify=b.store.ca, timeout=30)
    resp.raise_for_status()
    manifest.write_bytes(resp.content)
    if tufup_v1 is not None:
        shutil.copytree(tufup_v1, root / "gupper" / "tufup")
    for d in [root, *root.rglob("*")]:  # nginx's worker reads them
        d.chmod(0o755 if d.is_dir() else 0o644)
    return root


def floor_check(base: str, path: str, ca: str, public_key: str) -> float:
    """Fresh TLS connection + GET + parse + one Ed25519 verify; ms."""
    import base64

    from nacl.signing import VerifyKey

    from gupper.manifest import canonical_bytes

    raw_key = base64.b64decode(public_key.split(":", 1)[1])
    host, port = base.removeprefix("https://").split(":")
    t0 = time.perf_counter()
    ctx = ssl.create_default_context(cafile=ca)
    conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=10)
    conn.request("GET", path)
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    doc = json.loads(body)
    VerifyKey(raw_key).verify(canonical_bytes(doc["signed"]), base64.b64decode(doc["signatures"][0]["sig"]))
    ms = (time.perf_counter() - t0) * 1000
    assert resp.status == 200
    return ms


def item11_fast_check(b: Bench, tufup_urls: tuple[str, str, Path] | None, tufup_v1: Path | None) -> None:
    from gupper import Updater, UpdaterConfig

    state = Path(b.store.state_dir)
    root = docroot(b, tufup_v1)
    n = max(15, b.reps * 4)
    with nginx(root, state / "server.pem", state / "server-key.pem", RUN / "nginx") as base:
        url = f"{base}/gupper/app/stable/latest.json"
        cfg = UpdaterConfig(
            app="app",
            current_version="1.0.0",
            manifest_url=url,
            public_keys=(b.public_key,),
            ca_bundle=b.store.ca,
            state_dir=str(RUN / "nginx-check-state"),
        )
        assert Updater(cfg).check() is None  # first check: 200, keeps the copy and its ETag
        floor_check(base, "/gupper/app/stable/latest.json", b.store.ca, b.public_key)
        g, f = [], []
        for _ in range(n):  # alternated, so drift hits both alike
            t0 = time.perf_counter()
            assert Updater(cfg).check() is None
            g.append((time.perf_counter() - t0) * 1000)
            f.append(floor_check(base, "/gupper/app/stable/latest.json", b.store.ca, b.public_key))
        etag = kept_etag(RUN / "nginx-check-state")
        assert etag, "nginx sent no ETag: the warm check would not be a 304"
        t_ms = None
        if tufup_urls is not None and b.tufup_python is not None:
            root_json = tufup_urls[2]
            meta, targets = f"{base}/gupper/tufup/metadata/", f"{base}/gupper/tufup/targets/"
            out = json.loads(
                run_tufup(b, "check", meta, targets, str(root_json), str(RUN / "nginx-tufup"), "1.0.0", "1", str(n))
            )
            assert out["found"] == [None], out
            t_ms = median([r["ms"] for r in out["warm"]])
    gm, fm = median(g), median(f)
    b.metrics.update(fast_g=gm, fast_floor=fm, **({"fast_t": t_ms} if t_ms else {}))
    b.add(
        Row(
            "11",
            "no-update check, warm, against nginx (in-process, new client object each time)",
            "ms",
            gm,
            t_ms,
            note="floor (fresh TLS connection + GET + parse + one Ed25519 verify, same process, "
            f"alternated with Gupper): {fm:.2f} ms; "
            f"Gupper/floor = {gm / fm:.2f} (target <= 2)"
            + ("" if t_ms is None else f"; Gupper/tufup = {gm / t_ms:.2f} (target <= 0.5)"),
        )
    )


# --- item 12: throughput ----------------------------------------------------------------------


def _gathered_pieces(session: Any, url: str, ca: str, size: int, chunk: int) -> Iterator[bytes]:
    """The body in ``chunk``-sized pieces: ``read1`` as ``Fetcher`` does (whatever arrived, so a
    deadline could be checked between reads), gathered before anything else is done with it."""
    with session.get(url, stream=True, verify=ca, timeout=(5, 15), headers={"Accept-Encoding": "identity"}) as resp:
        resp.raise_for_status()
        raw, buf, done = resp.raw, bytearray(), 0
        while True:
            data = raw.read1(chunk, decode_content=False)
            done += len(data)
            if done > size:
                raise ValueError("more bytes than signed")
            buf += data
            if len(buf) >= chunk or (not data and buf):
                yield bytes(buf)
                buf.clear()
            if not data:
                return


def gathered_download(session: Any, url: str, out: BinaryIO, size: int, sha256: str, ca: str, chunk: int = MIB) -> None:
    """Prototype A for fetch.py: one thread, but write and hash 1 MiB pieces instead of each TLS
    record (~16 kB): about 60 times fewer write calls, hash updates and progress calls."""
    digest, done = hashlib.sha256(), 0
    for piece in _gathered_pieces(session, url, ca, size, chunk):
        out.write(piece)
        digest.update(piece)
        done += len(piece)
    if done != size or digest.hexdigest() != sha256:
        raise ValueError("size or sha256 mismatch")


def pipelined_download(
    session: Any, url: str, out: BinaryIO, size: int, sha256: str, ca: str, chunk: int = MIB
) -> None:
    """Prototype B for fetch.py: receive (and gather) in this thread; write and hash each 1 MiB
    piece in a second one. hashlib and file writes release the GIL on large buffers, and so does
    the socket read, so receiving overlaps hashing on two cores; a queue of at most 4 pieces keeps
    memory flat. The size bound and the final size and digest checks are those of ``Fetcher.download``.
    """
    digest = hashlib.sha256()
    pieces: queue.Queue[bytes | None] = queue.Queue(maxsize=4)
    failed: list[BaseException] = []
    written = 0

    def writer() -> None:
        nonlocal written
        try:
            while (piece := pieces.get()) is not None:
                out.write(piece)
                digest.update(piece)
                written += len(piece)
        except BaseException as e:  # handed back to the receiving thread
            failed.append(e)
            while pieces.get() is not None:  # drain, so the receiver never blocks on a full queue
                pass

    worker = threading.Thread(target=writer, name="write-and-hash", daemon=True)
    worker.start()
    try:
        for piece in _gathered_pieces(session, url, ca, size, chunk):
            pieces.put(piece)
    finally:
        pieces.put(None)
        worker.join(timeout=60)
    if failed:
        raise failed[0]
    if written != size or digest.hexdigest() != sha256:
        raise ValueError("size or sha256 mismatch")


def item12_throughput(b: Bench) -> None:
    import requests

    from gupper.fetch import Fetcher
    from gupper.transfer import FetchConfig

    state = Path(b.store.state_dir)
    size = 256 * MIB
    work = RUN / "throughput"
    root = work / "root"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    artifact = random_file(root / "big.bin", size)
    digest = hashlib.sha256()
    with artifact.open("rb") as f:
        for block in iter(lambda: f.read(MIB), b""):
            digest.update(block)
    sha = digest.hexdigest()
    for d in [root, artifact]:
        d.chmod(0o755 if d.is_dir() else 0o644)
    sha_rate = sha256_rate()
    reps = 2 if b.quick else 3
    rates: dict[str, list[float]] = {"curl": [], "gupper": [], "gathered": [], "pipelined": []}
    with nginx(root, state / "server.pem", state / "server-key.pem", work / "nginx") as base:
        url = f"{base}/big.bin"
        out_path = work / "out.bin"
        for _ in range(reps):
            rates["curl"].append(curl_rate(url, b.store.ca, size, out_path))
            with out_path.open("wb") as out, Fetcher(FetchConfig(ca_bundle=b.store.ca)) as fetcher:
                t0 = time.perf_counter()
                fetcher.download(url, out, size=size, sha256=sha, timeout=600)
                rates["gupper"].append(size / MIB / (time.perf_counter() - t0))
            for name, prototype in (("gathered", gathered_download), ("pipelined", pipelined_download)):
                with out_path.open("wb") as out, requests.Session() as session:
                    t0 = time.perf_counter()
                    prototype(session, url, out, size, sha, b.store.ca)
                    rates[name].append(size / MIB / (time.perf_counter() - t0))
        out_path.unlink(missing_ok=True)
    c, g, a, p = (median(rates[k]) for k in ("curl", "gupper", "gathered", "pipelined"))
    bound = min(c, sha_rate)
    b.metrics.update(tp_curl=c, tp_sha=sha_rate, tp_gupper=g, tp_gathered=a, tp_pipelined=p)
    b.add(
        Row(
            "12",
            "256 MiB download + verify against nginx: Gupper (Fetcher.download: receives in the calling thread, "
            "writes + hashes 1 MiB pieces in a writer thread)",
            "MiB/s",
            g,
            note=f"Gupper / min(curl {c:,.0f}, SHA-256 in memory {sha_rate:,.0f}) = {g / bound:.2f} (target >= 0.9)",
        )
    )
    b.add(
        Row(
            "12",
            "256 MiB download + verify against nginx: prototype A, one thread, writes and hashes 1 MiB pieces",
            "MiB/s",
            a,
            note=f"prototype A / min(curl, SHA-256) = {a / bound:.2f} (bench/fast_server.py: gathered_download)",
        )
    )
    b.add(
        Row(
            "12",
            "256 MiB download + verify against nginx: prototype B, receives in one thread, "
            "writes + hashes 1 MiB pieces in another",
            "MiB/s",
            p,
            note=f"prototype B / min(curl, SHA-256) = {p / bound:.2f} (bench/fast_server.py: "
            "pipelined_download); the design fetch.py adopted (Gupper's row)",
        )
    )
    b.add(
        Row(
            "12",
            "reference: curl -o file from the same nginx / SHA-256 in memory",
            "MiB/s",
            c,
            note=f"SHA-256 (hashlib, 1 MiB blocks): {sha_rate:,.0f} MiB/s; not Gupper figures",
        )
    )
