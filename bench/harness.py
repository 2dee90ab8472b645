"""What the scenarios share: the run's state (Bench) and result rows, the store's access log,
publishing, installing and running the demo app, and the reference rates (SHA-256, curl)."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import CACHE, ROOT, run_exact, wait_exited
from gupper_infra.client import LocalStore

RUN = CACHE / "run"
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
    metrics: dict[str, float] = field(default_factory=dict)  # named figures for the targets and the notes
    load: list[float] = field(default_factory=list)  # 1-minute load average, sampled during the run

    @property
    def manifest_url(self) -> str:
        return self.store.url("app/stable/latest.json")

    def add(self, row: Row) -> None:
        self.rows.append(row)
        g = "-" if row.gupper is None else f"{row.gupper:,.2f}"
        t = "-" if row.tufup is None else f"{row.tufup:,.2f}"
        print(
            f"  [{row.item}] {row.metric}: gupper {g} {row.unit}; tufup {t} {row.unit} {row.note}",
            file=sys.stderr,
            flush=True,
        )


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


_FENCES = itertools.count(1)


def settle_log(b: Bench) -> None:
    """Wait (bounded) until the front has logged what the last run fetched.

    The front writes a log line when a response ends, which can be just after the client has read
    it and exited. A fence request sent now is logged after it ends; once its line is there, the
    earlier responses (already fully sent) have been logged too.
    """
    import requests

    key = f"bench-fence/{os.getpid()}-{next(_FENCES)}"
    requests.get(b.store.url(key), verify=b.store.ca, timeout=10)  # a 404, logged like any request
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and not any(e["path"].endswith(key) for e in log_entries(b.access_log)[-50:]):
        time.sleep(0.01)


def app_env(store: LocalStore, tmpdir: Path) -> dict[str, str]:
    """Environment for an installed demo binary: trust the local CA, loopback only, own TMPDIR."""
    tmpdir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("_PYI_", "PYINSTALLER_"))}
    env.update(
        REQUESTS_CA_BUNDLE=store.ca, TMPDIR=str(tmpdir), NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost"
    )
    return env


def publish(
    b: Bench, store_arg: str, *files: Path, patches: int, env: dict[str, str] | None = None, force: bool = False
) -> float:
    """``python -m gupper_publish --patches N`` as a user runs it; returns its wall time in seconds. ``force``:
    the files are random bytes named as executables (items 4 and 6), which the executable check refuses."""
    cmd = [
        sys.executable,
        "-m",
        "gupper_publish",
        "--store",
        store_arg,
        "--key",
        str(b.key_path),
        "--patches",
        str(patches),
        *(["--force"] if force else []),
        *map(str, files),
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(
        cmd, cwd=ROOT, env=dict(os.environ, **(env or {})), capture_output=True, text=True, timeout=900, check=False
    )
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"publish failed: {proc.stderr[-2000:]}")
    return seconds


def kept_etag(state_dir: Path, channel: str = "stable") -> str | None:
    """The ETag a client keeps beside its last accepted manifest (what its next check sends as
    If-None-Match), read through the client's own cache class."""
    from gupper.state import ManifestCache

    kept = ManifestCache(state_dir, channel).load(1 << 20)
    return None if kept is None else kept[0]


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


def gupper_config(b: Bench, version: str, state_dir: Path) -> Any:
    from gupper import UpdaterConfig

    return UpdaterConfig(
        app="app",
        current_version=version,
        manifest_url=b.manifest_url,
        public_keys=(b.public_key,),
        ca_bundle=b.store.ca,
        state_dir=str(state_dir),
    )


def run_tufup(b: Bench, *args: str, timeout: float = 300) -> str:
    assert b.tufup_python is not None
    env = dict(
        os.environ, REQUESTS_CA_BUNDLE=b.store.ca, NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost"
    )
    proc = subprocess.run(
        [str(b.tufup_python), str(ROOT / "bench" / "tufup_side.py"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"tufup_side {args[0]} failed ({proc.returncode}):\n{proc.stdout[-1500:]}\n{proc.stderr[-3000:]}"
        )
    return proc.stdout


def install_copy(exe: Path, where: Path) -> Path:
    shutil.rmtree(where, ignore_errors=True)
    where.mkdir(parents=True)
    target = where / "app"
    shutil.copyfile(exe, target)
    target.chmod(0o755)
    return target


def run_timed(
    cmd: list[str], env: dict[str, str], timeout: float = 300
) -> tuple[float, subprocess.CompletedProcess[str]]:
    return run_exact(cmd, timeout=timeout, env=env)


# --- running an update v1 -> v2 (items 2, 3 and 8) --------------------------------------------

Run = tuple[float, list[dict[str, Any]], str]  # wall ms, the requests it made, its stderr


def run_stamped(
    cmd: list[str], env: dict[str, str], timeout: float = 300
) -> tuple[float, subprocess.CompletedProcess[str]]:
    """``run_timed``, but each stderr line is prefixed with the ms since the start at which it
    arrived (``[  1234 ms] ...``): the demo's log lines then split an update into its steps."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    out: list[str] = []

    def read_err() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(f"[{(time.perf_counter() - t0) * 1000:6.0f} ms] {line}")

    def read_out() -> None:
        assert proc.stdout is not None
        out.append(proc.stdout.read())

    readers = [threading.Thread(target=read_err, daemon=True), threading.Thread(target=read_out, daemon=True)]
    for reader in readers:
        reader.start()
    try:
        wait_exited(proc, timeout)
    finally:
        for reader in readers:
            reader.join(timeout=10)
    ms = (time.perf_counter() - t0) * 1000
    return ms, subprocess.CompletedProcess(cmd, proc.returncode, "".join(out), "".join(lines))


def step_ms(stderr: str, text: str) -> float | None:
    """When (ms since start) the first stderr line containing ``text`` arrived (see ``run_stamped``)."""
    for line in stderr.splitlines():
        if text in line and line.startswith("["):
            return float(line[1:].split("ms]", 1)[0])
    return None


def gupper_updates(
    b: Bench, tag: str, install: Callable[[Path], Path] | None = None, prefix: str = "/gupper/app/"
) -> list[Run]:
    """``reps`` times: install the real v1 (the one-file binary, or what ``install(dir)`` puts in
    ``dir``: it returns the executable) with a fresh state dir, run it, time until v2 greets."""
    runs: list[Run] = []
    for i in range(b.reps):
        exe = install(RUN / tag / f"g{i}") if install is not None else install_copy(b.v1, RUN / tag / f"g{i}")
        env = app_env(b.store, RUN / tag / f"g{i}-tmp")
        env["XDG_STATE_HOME"] = str(RUN / tag / f"g{i}-state")  # a fresh install: no state yet
        start = time.time()
        ms, proc = run_stamped([str(exe)], env)
        end = time.time()
        if "version 2.0.0" not in proc.stdout:
            raise RuntimeError(f"Gupper update did not reach v2: {proc.stdout}\n{proc.stderr}")
        settle_log(b)
        runs.append((ms, in_window(log_entries(b.access_log), start, end, prefix), proc.stderr))
    return runs


def tufup_updates(
    b: Bench,
    tufup_urls: tuple[str, str, Path],
    tag: str,
    mode: str,
    current_archive: Path | None = None,
    *,
    folder: Path | None = None,
    template: Path = RUN / "tufup-client",
    prefix: str = "/gupper/tufup/",
) -> list[Run]:
    """``reps`` times: a v1 client (metadata as the up-to-date v1 left it, copied from ``template``)
    updates to v2 and execs it; the install dir holds the one-file v1, or a copy of ``folder``
    (a one-folder bundle, which tufup then updates in place)."""
    meta_url, targets_url, _ = tufup_urls
    runs: list[Run] = []
    for i in range(b.reps):
        client = RUN / tag / f"t{i}-client"
        shutil.rmtree(client, ignore_errors=True)
        shutil.copytree(template, client)
        if current_archive is not None:  # tufup patches the archive it installed from, kept in its targets dir
            shutil.copyfile(current_archive, client / "targets" / current_archive.name)
        install = RUN / tag / f"t{i}"
        if folder is not None:
            shutil.rmtree(install, ignore_errors=True)
            shutil.copytree(folder, install, symlinks=True)
        else:
            install_copy(b.v1, install)
        env = app_env(b.store, RUN / tag / f"t{i}-tmp")
        cmd = [
            str(b.tufup_python),
            str(ROOT / "bench" / "tufup_side.py"),
            "update",
            meta_url,
            targets_url,
            str(client),
            str(install),
            "1.0.0",
            mode,
        ]
        cmd += ["folder"] if folder is not None else []
        start = time.time()
        ms, proc = run_timed(cmd, env)
        end = time.time()
        if "version 2.0.0" not in proc.stdout:
            raise RuntimeError(f"tufup update did not reach v2: {proc.stdout}\n{proc.stderr[-3000:]}")
        settle_log(b)
        runs.append((ms, in_window(log_entries(b.access_log), start, end, prefix), proc.stderr))
    return runs


def total_bytes(run: Run, suffix: str = "") -> int:
    return sum(e["bytes_sent"] for e in run[1] if e["path"].endswith(suffix))


# --- reference rates (items 4 and 12) ---------------------------------------------------------


def sha256_rate(seconds: float = 2.0) -> float:
    """SHA-256 throughput of this CPU in MiB/s: hashlib (OpenSSL) over an in-memory buffer in 1 MiB
    blocks, as the client feeds it; the best of a few passes of at least ``seconds``."""
    block = os.urandom(MIB)
    best = 0.0
    for _ in range(3):
        digest = hashlib.sha256()
        n = 0
        t0 = time.perf_counter()
        while (elapsed := time.perf_counter() - t0) < seconds / 3 or n < 64:
            digest.update(block)
            n += 1
        best = max(best, n / elapsed)
    return best


def curl_rate(url: str, ca: str, size: int, out: Path | None, expect_sha256: str = "") -> float:
    """curl from the same server in MiB/s: into a file (``out``), or piped through ``sha256sum``."""
    if out is not None:
        cmd = ["curl", "-sS", "--cacert", ca, "-o", str(out), "-w", "%{size_download}", url]
    else:
        cmd = ["bash", "-o", "pipefail", "-c", 'curl -sS --cacert "$1" "$2" | sha256sum', "curl-sha256", ca, url]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"curl failed: {proc.stderr}")
    if out is not None:
        assert int(proc.stdout) == size == out.stat().st_size
        out.unlink()
    else:
        assert proc.stdout.split()[0] == expect_sha256, proc.stdout
    return size / MIB / seconds
