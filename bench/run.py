"""Benchmark Gupper against tufup 0.10 on loopback, with the demo app built as v1 and v2.

``python bench/run.py`` (full: 5 repetitions, medians) or ``python bench/run.py --quick``
(2 repetitions, fewer samples). Run it with the project's venv (the one that builds the app;
never one with the bench tools in it, see bench/requirements.txt). It:

- installs tufup 0.10 into ``.gupper/bench/tufup-venv`` and the chart tools into
  ``.gupper/bench/tools-venv`` (once);
- starts the local store (moto + the public HTTPS front, with an access log) on fixed loopback
  ports (so the cached builds, which bake the manifest URL in, stay valid) and builds v1/v2;
- serves Gupper's files and tufup's repository from the same public front, and counts requests
  and bytes from its access log;
- measures items 1, 2, 4, 5, 6, 7 of issue 7 (item 3, delta, comes later) and writes
  ``bench/results.md`` and ``bench/results.png``.

Every network action is loopback only; every loop is bounded.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import CACHE, bench_key, build_reproducible, ensure_venv, machine_summary, median, package_version, tools_python  # noqa: E402
from infra.client import LocalStore, start_local_store  # noqa: E402

RUN = CACHE / "run"
TUFUP_VENV = CACHE / "tufup-venv"
DEFAULT_PORTS = (47311, 47312)  # S3 API, public front; fixed so cached builds stay valid
GIB = 1 << 30
MIB = 1 << 20


@dataclass
class Row:
    """One line of the results table."""

    item: str
    metric: str
    unit: str
    gupper: float | None
    tufup: float | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.gupper is None or not self.tufup:
            return None
        return self.gupper / self.tufup


@dataclass
class Bench:
    """State shared by the measurements."""

    quick: bool
    reps: int
    store: LocalStore
    access_log: Path
    key_path: Path
    public_key: str
    v1: Path
    v2: Path
    tufup_python: Path | None
    tufup_why_not: str = ""
    rows: list[Row] = field(default_factory=list)

    @property
    def manifest_url(self) -> str:
        return self.store.url("app/stable/latest.json")

    def add(self, row: Row) -> None:
        self.rows.append(row)
        g = "-" if row.gupper is None else f"{row.gupper:,.2f}"
        t = "-" if row.tufup is None else f"{row.tufup:,.2f}"
        print(f"  [{row.item}] {row.metric}: gupper {g} {row.unit}; tufup {t} {row.unit} {row.note}", file=sys.stderr, flush=True)


# --- helpers ---------------------------------------------------------------------------------


def log_entries(access_log: Path) -> list[dict[str, Any]]:
    """The store's access log (JSON lines)."""
    if not access_log.is_file():
        return []
    return [json.loads(line) for line in access_log.read_text().splitlines() if line.strip()]


def in_window(entries: list[dict[str, Any]], start: float, end: float, prefix: str = "") -> list[dict[str, Any]]:
    """Entries logged between ``start`` and ``end`` (epoch seconds), optionally under a path prefix."""
    return [e for e in entries if start - 0.001 <= e["ts"] <= end + 0.05 and e["path"].startswith(prefix)]


def wait_for_log(access_log: Path, count: int, timeout: float = 5.0) -> None:
    """The front writes a log line when a response ends: wait (bounded) until ``count`` lines exist."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(log_entries(access_log)) < count:
        time.sleep(0.05)


def free_port(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def app_env(store: LocalStore, tmpdir: Path) -> dict[str, str]:
    """Environment for an installed demo binary: trust the local CA, loopback only, own TMPDIR."""
    tmpdir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("_PYI_", "PYINSTALLER_"))}
    env.update(REQUESTS_CA_BUNDLE=store.ca, TMPDIR=str(tmpdir), NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    return env


def publish(b: Bench, store_arg: str, *files: Path, env: dict[str, str] | None = None) -> float:
    """``python -m publisher`` as a user runs it; returns its wall time in seconds."""
    cmd = [sys.executable, "-m", "publisher", "--store", store_arg, "--key", str(b.key_path), *map(str, files)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, **(env or {})), capture_output=True, text=True, timeout=900, check=False)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"publish failed: {proc.stderr[-2000:]}")
    return seconds


def upload_tree(b: Bench, src: Path, prefix: str) -> None:
    """Copy a directory into the bucket under ``prefix`` (tufup's repo is a plain static tree)."""
    import boto3

    s3 = boto3.client("s3", **b.store.boto3_kwargs())
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        key = f"{prefix}/{path.relative_to(src).as_posix()}"
        ctype = "application/json" if path.suffix == ".json" else "application/octet-stream"
        s3.upload_file(str(path), b.store.bucket, key, ExtraArgs={"ContentType": ctype})


def random_file(path: Path, size: int) -> Path:
    """A file of ``size`` random bytes (kept between runs)."""
    if path.is_file() and path.stat().st_size == size:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as f:
        for _ in range(size // MIB):
            f.write(os.urandom(MIB))
        f.write(os.urandom(size % MIB))
    tmp.replace(path)
    return path


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


# --- item 1: a check with no update available -------------------------------------------------


def gupper_config(b: Bench, version: str) -> Any:
    from updater import UpdaterConfig

    return UpdaterConfig(app="app", current_version=version, manifest_url=b.manifest_url, public_keys=(b.public_key,), ca_bundle=b.store.ca)


def item1_check(b: Bench, tufup_urls: tuple[str, str, Path] | None) -> None:
    from updater import Updater

    n = max(5, b.reps * 2)
    windows: list[tuple[float, float, float]] = []
    Updater(gupper_config(b, "1.0.0")).check()  # warm the imports, as tufup's cold run does
    for _ in range(n):
        start = time.time()
        t0 = time.perf_counter()
        found = Updater(gupper_config(b, "1.0.0")).check()
        windows.append((start, time.time(), (time.perf_counter() - t0) * 1000))
        assert found is None, "the store should hold v1 only here"
        time.sleep(0.1)
    wait_for_log(b.access_log, 1)
    entries = log_entries(b.access_log)
    g_req = [len(in_window(entries, s, e, "/gupper/app/")) for s, e, _ in windows]
    g_bytes = [sum(x["bytes_sent"] for x in in_window(entries, s, e, "/gupper/app/")) for s, e, _ in windows]
    g_ms = [ms for _, _, ms in windows]

    t_ms = t_req = t_bytes = None
    note = ""
    if tufup_urls is not None and b.tufup_python is not None:
        meta_url, targets_url, root = tufup_urls
        out = run_tufup(b, "check", meta_url, targets_url, str(root), str(RUN / "tufup-client"), "1.0.0", str(n))
        result = json.loads(out)
        assert result["found"] is None, f"tufup found an update: {result}"
        entries = log_entries(b.access_log)
        warm = result["warm"]
        t_ms = median([r["ms"] for r in warm])
        t_req = median([len(in_window(entries, r["start"], r["end"], "/gupper/tufup/")) for r in warm])
        t_bytes = median([sum(x["bytes_sent"] for x in in_window(entries, r["start"], r["end"], "/gupper/tufup/")) for r in warm])
        cold = result["cold"]
        cold_req = in_window(entries, cold["start"], cold["end"], "/gupper/tufup/")
        note = (
            f"tufup warm (metadata kept from the previous start); its first check on a fresh install: {cold['ms']:.0f} ms, "
            f"{len(cold_req)} requests, {sum(x['bytes_sent'] for x in cold_req):,} B"
        )
    b.add(Row("1", "no-update check: wall time (in-process, new client object each time)", "ms", median(g_ms), t_ms, note))
    b.add(Row("1", "no-update check: requests", "requests", median(g_req), t_req))
    b.add(Row("1", "no-update check: bytes transferred (bodies)", "bytes", median(g_bytes), t_bytes))


def run_tufup(b: Bench, *args: str, timeout: float = 300) -> str:
    assert b.tufup_python is not None
    env = dict(os.environ, REQUESTS_CA_BUNDLE=b.store.ca, NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    proc = subprocess.run([str(b.tufup_python), str(ROOT / "bench" / "tufup_side.py"), *args], env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"tufup_side {args[0]} failed ({proc.returncode}):\n{proc.stdout[-1500:]}\n{proc.stderr[-3000:]}")
    return proc.stdout


# --- item 5: added start-up time of the update check ------------------------------------------


def install_copy(exe: Path, where: Path) -> Path:
    shutil.rmtree(where, ignore_errors=True)
    where.mkdir(parents=True)
    target = where / "app"
    shutil.copyfile(exe, target)
    target.chmod(0o755)
    return target


def run_timed(cmd: list[str], env: dict[str, str], timeout: float = 300) -> tuple[float, subprocess.CompletedProcess[str]]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    return (time.perf_counter() - t0) * 1000, proc


def item5_startup(b: Bench) -> None:
    exe = install_copy(b.v1, RUN / "startup" / "install")
    env = app_env(b.store, RUN / "startup" / "tmp")
    on: list[float] = []
    off: list[float] = []
    run_timed([str(exe), "--no-update"], env)  # page cache warm-up
    for _ in range(max(5, b.reps * 2)):
        for args, sink in (([], on), (["--no-update"], off)):
            ms, proc = run_timed([str(exe), *args], env)
            if "version 1.0.0" not in proc.stdout:
                raise RuntimeError(f"demo app did not run: {proc.stdout}{proc.stderr}")
            sink.append(ms)
    b.add(Row("5", "demo app start to exit, update check on (up to date)", "ms", median(on)))
    b.add(Row("5", "demo app start to exit, --no-update", "ms", median(off)))
    b.add(Row("5", "added start-up time of the update check", "ms", median(on) - median(off), note="one-file binary; the difference of the two medians"))


# --- item 2: full update v1 -> v2 -------------------------------------------------------------


def item2_update(b: Bench, tufup_urls: tuple[str, str, Path] | None) -> None:
    g_ms: list[float] = []
    g_bytes: list[int] = []
    for i in range(b.reps):
        exe = install_copy(b.v1, RUN / "update" / f"g{i}")
        env = app_env(b.store, RUN / "update" / f"g{i}-tmp")
        env["XDG_STATE_HOME"] = str(RUN / "update" / f"g{i}-state")  # a fresh install: no state yet
        start = time.time()
        ms, proc = run_timed([str(exe)], env)
        end = time.time()
        if "version 2.0.0" not in proc.stdout:
            raise RuntimeError(f"Gupper update did not reach v2: {proc.stdout}\n{proc.stderr}")
        time.sleep(0.2)
        g_ms.append(ms)
        g_bytes.append(sum(x["bytes_sent"] for x in in_window(log_entries(b.access_log), start, end, "/gupper/app/")))
    t_ms: float | None = None
    t_bytes: float | None = None
    note = "Gupper: the installed one-file v1 starts, checks, downloads, verifies, swaps, execs v2 (2 PyInstaller extractions)"
    if tufup_urls is not None and b.tufup_python is not None:
        meta_url, targets_url, _ = tufup_urls
        tt: list[float] = []
        tb: list[int] = []
        for i in range(b.reps):
            client = RUN / "update" / f"t{i}-client"
            shutil.rmtree(client, ignore_errors=True)
            shutil.copytree(RUN / "tufup-client", client)  # metadata as the up-to-date v1 left it
            install_copy(b.v1, RUN / "update" / f"t{i}")
            env = app_env(b.store, RUN / "update" / f"t{i}-tmp")
            cmd = [str(b.tufup_python), str(ROOT / "bench" / "tufup_side.py"), "update", meta_url, targets_url, str(client), str(RUN / "update" / f"t{i}"), "1.0.0"]
            start = time.time()
            ms, proc = run_timed(cmd, env)
            end = time.time()
            if "version 2.0.0" not in proc.stdout:
                raise RuntimeError(f"tufup update did not reach v2: {proc.stdout}\n{proc.stderr[-3000:]}")
            time.sleep(0.2)
            tt.append(ms)
            tb.append(sum(x["bytes_sent"] for x in in_window(log_entries(b.access_log), start, end, "/gupper/tufup/")))
        t_ms, t_bytes = median(tt), median(tb)
        note += "; tufup: a Python script (no PyInstaller extraction for the old version) checks, downloads the .tar.gz, extracts, replaces, execs v2 --no-update"
    b.add(Row("2", "full update v1 -> v2: wall time to the new version running", "ms", median(g_ms), t_ms, note))
    b.add(Row("2", "full update v1 -> v2: bytes transferred", "bytes", median(g_bytes), t_bytes))


# --- item 6: publish a 100 MB artifact to the S3 server ---------------------------------------


def item6_publish(b: Bench) -> None:
    src = random_file(RUN / "publish" / "payload-100MB", 100 * 1000 * 1000)
    times = []
    stamp = int(time.time())
    for i in range(b.reps):
        f = RUN / "publish" / f"bigapp-{stamp}.{i}.0-linux-amd64"
        f.unlink(missing_ok=True)
        os.link(src, f)
        times.append(publish(b, f"s3://{b.store.bucket}", f, env=b.store.s3_env()))
        f.unlink()
    b.add(Row("6", "publish a 100 MB artifact to the S3 server (CLI, incl. Python start-up and manifest)", "s", median(times), note=f"{100 / median(times):.0f} MB/s"))


# --- item 7: many installs checking at once ---------------------------------------------------


def item7_concurrency(b: Bench) -> None:
    from updater import Updater
    from updater.fetch import FetchConfig, Fetcher

    total, workers = 1000, 50
    etag_holder: list[str] = []

    def full_check(_: int) -> tuple[float, str | None]:
        t0 = time.perf_counter()
        try:
            Updater(gupper_config(b, "2.0.0")).check()
        except Exception as e:
            return (time.perf_counter() - t0) * 1000, type(e).__name__
        return (time.perf_counter() - t0) * 1000, None

    cfg = FetchConfig(ca_bundle=b.store.ca)
    with Fetcher(cfg) as f:
        fetched = f.get_small(b.manifest_url, max_bytes=1 << 20, timeout=20)
    assert fetched is not None and fetched.etag
    etag_holder.append(fetched.etag)

    def conditional(_: int) -> tuple[float, str | None]:
        t0 = time.perf_counter()
        try:
            with Fetcher(cfg) as fetcher:
                got = fetcher.get_small(b.manifest_url, max_bytes=1 << 20, timeout=20, etag=etag_holder[0])
        except Exception as e:
            return (time.perf_counter() - t0) * 1000, type(e).__name__
        return (time.perf_counter() - t0) * 1000, None if got is None else "not-304"

    for label, fn in (("first fetch + verify (Updater.check)", full_check), ("conditional GET, If-None-Match -> 304", conditional)):
        start = time.time()
        t0 = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(fn, range(total)))
        wall = time.perf_counter() - t0
        end = time.time()
        time.sleep(0.3)
        lat = [ms for ms, err in results if err is None]
        errors = [err for _, err in results if err is not None]
        served = in_window(log_entries(b.access_log), start, end, "/gupper/app/")
        statuses = sorted({str(x["status"]) for x in served})
        b.add(
            Row(
                "7",
                f"{total} checks, {workers} workers, {label}: p50 / p99 latency",
                "ms",
                pct(lat, 50),
                note=f"p99 {pct(lat, 99):.0f} ms; {len(errors)} errors{' ' + str(sorted(set(errors))) if errors else ''}; "
                f"{total / wall:.0f} checks/s; statuses {','.join(statuses)}; {sum(x['bytes_sent'] for x in served) / max(1, len(served)):.0f} B/response",
            )
        )


# --- item 4: 1 GiB artifact: peak RSS and throughput vs curl ----------------------------------


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
from updater import Updater, UpdaterConfig
def hwm_kib():  # VmHWM, not ru_maxrss: Linux carries the parent's high-water mark across fork + exec
    with open("/proc/self/status", encoding="ascii") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
url, key, ca, exe = sys.argv[1:5]
u = Updater(UpdaterConfig(app="huge", current_version="1.0.0", manifest_url=url, public_keys=(key,), ca_bundle=ca, executable=exe))
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
    publish(b, str(site), artifact)
    (work / "install").mkdir(parents=True, exist_ok=True)
    exe = work / "install" / "huge"
    exe.write_bytes(b"v1")
    state = Path(b.store.state_dir)
    reps = 1 if b.quick else 3
    g_rss: list[float] = []
    g_base: list[float] = []
    g_tp: list[float] = []
    c_tp: list[float] = []
    with static_https(site, state / "server.pem", state / "server-key.pem") as base:
        url = f"{base}/huge/stable/latest.json"
        art_url = f"{base}/huge/2.0.0/{artifact.name}"
        for _ in range(reps):
            proc = subprocess.run(
                [sys.executable, "-c", BIG_CLIENT, url, b.public_key, b.store.ca, str(exe)], cwd=ROOT, capture_output=True, text=True, timeout=900, check=False
            )
            if proc.returncode != 0:
                raise RuntimeError(f"1 GiB client failed: {proc.stderr[-3000:]}")
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            assert r["bytes"] == size
            g_rss.append(r["peak_rss_kib"] / 1024)
            g_base.append(r["rss_after_check_kib"] / 1024)
            g_tp.append(size / MIB / r["download_s"])
            out = work / "curl.out"
            cp = subprocess.run(
                ["curl", "-sS", "--cacert", b.store.ca, "-o", str(out), "-w", "%{size_download} %{time_total}", art_url],
                capture_output=True, text=True, timeout=900, check=False,
            )  # fmt: skip
            if cp.returncode != 0:
                raise RuntimeError(f"curl failed: {cp.stderr}")
            got, seconds = cp.stdout.split()
            assert int(got) == size
            c_tp.append(size / MIB / float(seconds))
            out.unlink()
    b.add(
        Row(
            "4",
            "1 GiB artifact: peak RSS of the Gupper client (check + download + sha256 + fsync)",
            "MiB",
            median(g_rss),
            note=f"target <= 40 MiB; peak before the download (imports + check): {median(g_base):.0f} MiB",
        )
    )
    b.add(
        Row(
            "4",
            "1 GiB artifact: Gupper download+verify throughput",
            "MiB/s",
            median(g_tp),
            note=f"curl -o file from the same server: {median(c_tp):.0f} MiB/s; Gupper/curl = {median(g_tp) / median(c_tp):.2f} (target >= 0.9); "
            "stdlib threaded HTTPS server",
        )
    )


# --- output ---------------------------------------------------------------------------------


def fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "-"
    if unit in {"bytes"}:
        return f"{v:,.0f}"
    if unit in {"requests"}:
        return f"{v:g}"
    return f"{v:,.1f}" if abs(v) < 1000 else f"{v:,.0f}"


def write_results(b: Bench, out: Path, started: float, command: str) -> None:
    lines = [
        "# Gupper vs tufup 0.10: benchmark results",
        "",
        f"Produced by `{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))} in {time.time() - started:.0f} s. "
        f"Medians over {b.reps} repetitions unless the row says otherwise.",
        "",
        f"Machine: {machine_summary()}; Gupper from the source tree, requests {package_version('requests')}, urllib3 {package_version('urllib3')}, "
        f"PyInstaller {package_version('pyinstaller')}; tufup venv: {tufup_versions(b)}.",
        "",
        "Everything runs on loopback: the local store (moto behind the public HTTPS front, werkzeug's threaded dev server, no keep-alive) serves both "
        "Gupper's `latest.json` + artifacts and tufup's TUF repository; requests and bytes are counted from the front's access log (body bytes). "
        "Item 4 uses a stdlib threaded HTTPS static server over a `LocalStore` folder instead (moto holds objects in memory). "
        "Item 3 (delta updates) is not measured yet.",
        "",
    ]
    if b.tufup_python is None:
        lines += [f"**tufup was not measured:** {b.tufup_why_not}", ""]
    lines += ["| item | metric | Gupper | tufup 0.10 | unit | Gupper/tufup | notes |", "| --- | --- | ---: | ---: | --- | ---: | --- |"]
    for r in b.rows:
        ratio = "-" if r.ratio is None else f"{r.ratio:.2f}"
        lines.append(f"| {r.item} | {r.metric} | {fmt(r.gupper, r.unit)} | {fmt(r.tufup, r.unit)} | {r.unit} | {ratio} | {r.note} |")
    lines += ["", "![chart](results.png)", ""]
    out.write_text("\n".join(lines))
    data = out.with_suffix(".json")
    data.write_text(json.dumps([asdict(r) for r in b.rows], indent=1))
    chart(data, out.with_suffix(".png"))
    data.unlink()


def tufup_versions(b: Bench) -> str:
    if b.tufup_python is None:
        return "not installed"
    proc = subprocess.run(
        [str(b.tufup_python), "-c", "from importlib.metadata import version as v; print(f\"tufup {v('tufup')}, tuf {v('tuf')}, bsdiff4 {v('bsdiff4')}\")"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    return proc.stdout.strip() or "?"


def chart(data: Path, png: Path) -> None:
    """Render the PNG with matplotlib from the tools venv (kept out of the app's build venv)."""
    proc = subprocess.run([str(tools_python()), str(ROOT / "bench" / "chart.py"), str(data), str(png)], capture_output=True, text=True, timeout=300, check=False)
    if proc.returncode != 0:
        print(f"chart failed: {proc.stderr[-2000:]}", file=sys.stderr)


# --- main -----------------------------------------------------------------------------------


def setup_tufup() -> tuple[Path | None, str]:
    try:
        return ensure_venv(TUFUP_VENV, ROOT / "bench" / "requirements-tufup.txt"), ""
    except (RuntimeError, subprocess.SubprocessError, OSError) as e:
        return None, f"installing tufup 0.10 failed: {str(e)[-500:]}"


def step(name: str, fn: Callable[[], None], failures: list[str]) -> None:
    print(f"== {name}", file=sys.stderr, flush=True)
    try:
        fn()
    except Exception as e:
        failures.append(f"{name}: {type(e).__name__}: {str(e)[:800]}")
        print(f"!! {name} failed: {e}", file=sys.stderr, flush=True)


def setup_tufup_repo(b: Bench) -> tuple[tuple[str, str, Path] | None, dict[str, str]]:
    """Make tufup's repository (v1 state uploaded now, v2 state kept for item 2); (urls, states)."""
    if b.tufup_python is None:
        return None, {}
    try:
        for v, exe in (("v1", b.v1), ("v2", b.v2)):
            install_copy(exe, RUN / "bundles" / v)
        out = run_tufup(b, "repo", str(RUN / "tufup-repo"), str(RUN / "bundles" / "v1"), str(RUN / "bundles" / "v2"), timeout=600)
        states: dict[str, str] = json.loads(out.strip().splitlines()[-1])
        upload_tree(b, Path(states["v1"]), "tufup")
        return (b.store.url("tufup/metadata/"), b.store.url("tufup/targets/"), Path(states["v1"]) / "metadata" / "root.json"), states
    except Exception as e:
        b.tufup_python, b.tufup_why_not = None, f"setting up its repository failed: {e}"
        print(f"!! tufup: {b.tufup_why_not}", file=sys.stderr)
        return None, {}


def fresh_run_dir() -> None:
    """Empty ``RUN`` and point the client's state dir into it.

    The client keeps state (seen manifest serials, for rollback protection) under the user's
    state dir; each run starts a fresh store whose serials restart at 1, so every run (this
    process, the apps and clients it starts) gets a fresh state dir of its own.
    """
    shutil.rmtree(RUN, ignore_errors=True)
    RUN.mkdir(parents=True)
    os.environ["XDG_STATE_HOME"] = str(RUN / "xdg-state")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="2 repetitions and one 1 GiB download (a few minutes)")
    p.add_argument("--reps", type=int, default=None, help="repetitions per measurement (default 5, --quick 2)")
    p.add_argument("--ports", type=int, nargs=2, default=DEFAULT_PORTS, metavar=("S3", "PUBLIC"), help="loopback ports of the local store")
    p.add_argument("--skip", action="append", default=[], choices=["1", "2", "4", "5", "6", "7"], help="skip an item (repeatable)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results.md")
    args = p.parse_args(argv)
    reps = args.reps or (2 if args.quick else 5)
    started = time.time()
    command = "python bench/run.py" + (" --quick" if args.quick else "") + (f" --reps {args.reps}" if args.reps else "")
    if not all(free_port(port) for port in args.ports):
        print(f"ports {args.ports} are busy; pass --ports with two free loopback ports (builds are then redone)", file=sys.stderr)
        return 2
    print("== tufup venv", file=sys.stderr, flush=True)
    tufup_python, why_not = setup_tufup()
    tools_python()
    fresh_run_dir()
    access_log = RUN / "access.log"
    key_path, public = bench_key("run")
    store = start_local_store(CACHE / "store", access_log=access_log, extra_args=["--s3-port", str(args.ports[0]), "--public-port", str(args.ports[1])])
    failures: list[str] = []
    try:
        print("== building v1 and v2 (cached)", file=sys.stderr, flush=True)
        url = store.url("app/stable/latest.json")
        with ThreadPoolExecutor(2) as pool:
            v1, v2 = pool.map(lambda v: build_reproducible(v, url, [public], RUN / "dist"), ["1.0.0", "2.0.0"])
        b = Bench(args.quick, reps, store, access_log, key_path, public, v1, v2, tufup_python, why_not)
        publish(b, f"s3://{store.bucket}", v1, env=store.s3_env())
        tufup_urls, states = setup_tufup_repo(b)
        if "1" not in args.skip:
            step("item 1: check, no update", lambda: item1_check(b, tufup_urls), failures)
        if "5" not in args.skip:
            step("item 5: start-up overhead", lambda: item5_startup(b), failures)
        if "2" not in args.skip:
            publish(b, f"s3://{store.bucket}", v2, env=store.s3_env())
            if states:
                upload_tree(b, Path(states["v2"]), "tufup")
            step("item 2: full update", lambda: item2_update(b, tufup_urls), failures)
        if "7" not in args.skip:
            step("item 7: 1,000 checks, 50 workers", lambda: item7_concurrency(b), failures)
        if "6" not in args.skip:
            step("item 6: publish 100 MB", lambda: item6_publish(b), failures)
        if "4" not in args.skip:
            step("item 4: 1 GiB artifact", lambda: item4_big(b), failures)
    finally:
        store.stop()
    for failure in failures:
        b.rows.append(Row("!", "FAILED: " + failure.replace("|", "/").replace("\n", " ")[:600], "", None))
    write_results(b, args.out, started, command)
    print(args.out.read_text())
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
