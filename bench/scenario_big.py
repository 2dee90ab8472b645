"""Item 4: a 1 GiB artifact: the client's peak RSS and its download + verify throughput against
curl, served by a stdlib HTTPS static server."""

from __future__ import annotations

import hashlib
import http.server
import json
import shutil
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from bench.common import ROOT, median
from bench.harness import GIB, MIB, RUN, Bench, Row, curl_rate, publish, random_file, sha256_rate


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def static_https(root: Path, cert: Path, key: Path) -> Iterator[str]:
    """A loopback HTTPS static file server over ``root`` (threaded, stdlib)."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(root)))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cert), str(key))
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


BIG_CLIENT = r"""
import json, sys, time
from gupper import Updater, UpdaterConfig
def hwm_kib():  # VmHWM, not ru_maxrss: Linux carries the parent's high-water mark across fork + exec
    with open("/proc/self/status", encoding="ascii") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
url, key, ca, exe, state = sys.argv[1:6]
u = Updater(UpdaterConfig(app="huge", current_version="1.0.0", manifest_url=url, public_keys=(key,),
                          ca_bundle=ca, executable=exe, state_dir=state))
t0 = time.perf_counter()
update = u.check()
t1 = time.perf_counter()
rss_check = hwm_kib()
path = u.download(update)
t2 = time.perf_counter()
size = path.stat().st_size
path.unlink()
print(json.dumps({"check_s": t1 - t0, "download_s": t2 - t1, "bytes": size, "rss_after_check_kib": rss_check,
                  "peak_rss_kib": hwm_kib()}))
"""


def item4_big(b: Bench) -> None:
    size = GIB
    work = RUN / "big"
    site = work / "site"
    shutil.rmtree(site, ignore_errors=True)
    artifact = random_file(work / "huge-2.0.0-linux-amd64", size)
    publish(b, str(site), artifact, patches=0, force=True)
    sha_rate = sha256_rate()
    b.metrics["sha256_mib_s"] = sha_rate
    print(f"  SHA-256 on this CPU (hashlib, {ssl.OPENSSL_VERSION}): {sha_rate:.0f} MiB/s", file=sys.stderr, flush=True)
    digest = hashlib.sha256()
    with artifact.open("rb") as f:
        for chunk in iter(lambda: f.read(MIB), b""):
            digest.update(chunk)
    artifact_sha = digest.hexdigest()
    (work / "install").mkdir(parents=True, exist_ok=True)
    exe = work / "install" / "huge"
    exe.write_bytes(b"v1")
    state = Path(b.store.state_dir)
    reps = 1 if b.quick else 3
    g_rss: list[float] = []
    g_base: list[float] = []
    g_tp: list[float] = []
    c_tp: list[float] = []
    cs_tp: list[float] = []
    with static_https(site, state / "server.pem", state / "server-key.pem") as base:
        url = f"{base}/huge/stable/latest.json"
        art_url = f"{base}/huge/2.0.0/{artifact.name}"
        for _ in range(reps):
            state_dir = work / f"state-{len(g_rss)}"
            shutil.rmtree(state_dir, ignore_errors=True)
            proc = subprocess.run(
                [sys.executable, "-c", BIG_CLIENT, url, b.public_key, b.store.ca, str(exe), str(state_dir)],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=900,
                check=False,
            )
            if proc.returncode != 0:
                raise RuntimeError(f"1 GiB client failed: {proc.stderr[-3000:]}")
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            assert r["bytes"] == size
            g_rss.append(r["peak_rss_kib"] / 1024)
            g_base.append(r["rss_after_check_kib"] / 1024)
            g_tp.append(size / MIB / r["download_s"])
            c_tp.append(curl_rate(art_url, b.store.ca, size, work / "curl.out"))
            cs_tp.append(curl_rate(art_url, b.store.ca, size, None, artifact_sha))
    b.add(
        Row(
            "4",
            "1 GiB artifact: peak RSS of the Gupper client (check + download + sha256 + fsync)",
            "MiB",
            median(g_rss),
            note=f"target <= 40 MiB; peak before the download (imports + check): {median(g_base):.0f} MiB",
        )
    )
    gt, ct, cst = median(g_tp), median(c_tp), median(cs_tp)
    bound = min(ct, sha_rate)  # receiving and hashing overlap (a writer thread): the slower of the two bounds it
    b.metrics.update(g_tp=gt, curl_tp=ct, curl_sha_tp=cst, serial_bound=bound, rss=median(g_rss))
    b.add(
        Row(
            "4",
            "1 GiB artifact: Gupper download+verify throughput",
            "MiB/s",
            gt,
            note=f"Gupper/curl = {gt / ct:.2f} (target >= 0.9); stdlib threaded HTTPS server",
        )
    )
    b.add(
        Row(
            "4",
            "reference: curl -o file (plain transfer, no hash)",
            "MiB/s",
            ct,
            note="curl from the same server; not a Gupper figure",
        )
    )
    b.add(
        Row(
            "4",
            "reference: curl | sha256sum (transfer + hash in two processes)",
            "MiB/s",
            cst,
            note=f"Gupper/(curl | sha256sum) = {gt / cst:.2f}; not a Gupper figure",
        )
    )
    b.add(
        Row(
            "4",
            "reference: SHA-256 on this CPU (hashlib, in memory)",
            "MiB/s",
            sha_rate,
            note=f"{ssl.OPENSSL_VERSION}; receiving and hashing in two threads can reach at most "
            f"min(curl, sha256) = {bound:.0f} MiB/s; "
            f"Gupper reaches {gt / bound:.2f} of that",
        )
    )
