"""Shared pieces of the benchmarks: demo-app builds in two flavours, keys, timing helpers.

Nothing here touches the network. Builds are cached under ``.gupper/bench/`` so a second run
of a benchmark does not spend a minute in PyInstaller.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from app.build import build_app  # noqa: E402
from gupper_publish.signing import keygen  # noqa: E402

CACHE = ROOT / ".gupper" / "bench"
BUILD_CACHE = CACHE / "build-cache"


def bench_key(name: str = "bench") -> tuple[Path, str]:
    """A signing key kept under the bench cache (so cached builds stay valid); (key path, public text)."""
    prefix = CACHE / "keys" / name
    key_path, pub_path = prefix.with_name(name + ".key"), prefix.with_name(name + ".pub")
    if not key_path.is_file():
        keygen(prefix)
    return key_path, pub_path.read_text().strip()


def _hooks_digest() -> str:
    """Digest of Gupper's PyInstaller hooks, which app/build.py's cache key does not cover."""
    h = hashlib.sha256()
    for path in sorted((ROOT / "updater" / "gupper" / "_pyinstaller").glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:12]


def build_reproducible(
    version: str, manifest_url: str, public_keys: Sequence[str], out_dir: Path, *, onedir: bool = False
) -> Path:
    """The project's own build: ``PYTHONHASHSEED=0``, fixed work paths, cached; ``onedir`` gives the
    one-folder bundle ``out_dir/app-<version>-<os>-<arch>/`` instead of the one-file binary."""
    return build_app(
        version, manifest_url, public_keys, out_dir, cache_dir=BUILD_CACHE / _hooks_digest(), onedir=onedir
    )


def build_default(
    version: str, manifest_url: str, public_keys: Sequence[str], out_dir: Path, *, rebuild: bool = False
) -> Path:
    """The demo app as a user gets it from PyInstaller by default: a random hash seed per build
    (frozen sets and dicts of strings are marshalled in a random order). Each cached build is
    one random draw; ``rebuild`` draws again."""
    return build_app(
        version,
        manifest_url,
        public_keys,
        out_dir,
        cache_dir=CACHE / "default-build-cache",
        use_cache=not rebuild,
        reproducible=False,
    )


def differing_bytes(a: bytes, b: bytes) -> int:
    """Bytes that differ position by position, plus the length difference (like ``cmp -l | wc -l``)."""
    n = min(len(a), len(b))
    block = 1 << 20
    count = 0
    for start in range(0, n, block):
        x, y = a[start : start + block], b[start : start + block]
        if x != y:
            count += sum(1 for i, j in zip(x, y, strict=True) if i != j)
    return count + abs(len(a) - len(b))


def median(values: Sequence[float]) -> float:
    """Median, or NaN for no values."""
    return statistics.median(values) if values else float("nan")


def package_version(name: str) -> str:
    """Installed version of a distribution in this interpreter, or ``-``."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "-"


def machine_summary() -> str:
    """One line: CPUs, memory, OS, Python."""
    mem = ""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            kib = int(f.readline().split()[1])
        mem = f", {kib / 1024 / 1024:.1f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    nproc = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    return f"{os.cpu_count()} CPUs (nproc {nproc}){mem}, {platform.platform()}, Python {platform.python_version()}"


def ensure_venv(path: Path, requirements: Path, *, extra: Sequence[str] = ()) -> Path:
    """Create ``path`` as a venv and install ``requirements`` into it once; return its python.

    Re-installs only when the requirements file (or ``extra``) changed since the last install.
    Uses the base interpreter of this one, so the venv has the same Python version.
    """
    python = path / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    stamp = path / ".bench-requirements"
    wanted = hashlib.sha256(requirements.read_bytes() + "\0".join(extra).encode()).hexdigest()
    if python.is_file() and stamp.is_file() and stamp.read_text() == wanted:
        return python
    base = getattr(sys, "_base_executable", sys.executable)
    if not python.is_file():
        subprocess.run([base, "-m", "venv", str(path)], check=True)
    cmd = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", "-r", str(requirements), *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"pip install into {path} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    stamp.write_text(wanted)
    return python


def tools_python() -> Path:
    """The venv holding the bench-only tools (bench/requirements.txt), kept apart from the build venv."""
    return ensure_venv(CACHE / "tools-venv", ROOT / "bench" / "requirements.txt")


@contextlib.contextmanager
def killed_after(proc: subprocess.Popen[Any], timeout: float) -> Iterator[None]:
    """Bound a blocking wait on ``proc``: kill it after ``timeout`` seconds, then raise TimeoutExpired.

    ``Popen.wait(timeout=...)`` (and so ``subprocess.run(..., timeout=...)``) polls with sleeps
    doubling up to 50 ms, so a process is seen to end up to 50 ms late, in steps: every figure timed
    around it would carry that. Inside this block the wait is one blocking ``waitpid``.
    """
    fired = threading.Event()

    def kill() -> None:
        fired.set()
        proc.kill()

    killer = threading.Timer(timeout, kill)
    killer.start()
    try:
        yield
    finally:
        killer.cancel()
    if fired.is_set():
        raise subprocess.TimeoutExpired(proc.args, timeout)


def wait_exited(proc: subprocess.Popen[Any], timeout: float) -> int:
    """``proc``'s exit status, seen without polling; killed after ``timeout`` seconds."""
    with killed_after(proc, timeout):
        return proc.wait()


def run_exact(
    cmd: Sequence[str], *, timeout: float, env: dict[str, str] | None = None, cwd: Path | None = None
) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Run ``cmd`` with its output captured; its wall time in ms (start to exit, seen without polling)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(list(cmd), env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with killed_after(proc, timeout):
        out, err = proc.communicate()  # no timeout: reads to EOF, then a blocking waitpid
    ms = (time.perf_counter() - t0) * 1000
    return ms, subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
