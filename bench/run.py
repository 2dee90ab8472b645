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
- measures items 1-7 of issue 7, item 8 (a one-folder app) and items 9-14 of issue 14 (what
  embedding costs: bench/embedding.py, bench/update_steps.py, bench/fast_server.py with nginx,
  bench/imports.py, bench/verifiers.py), checks the issues' targets and writes
  ``bench/results.md`` and ``bench/results.png``.

Publishes that must measure a full download (or must not spend minutes in bsdiff4: items 2, 4, 6)
pass ``--patches 0``; item 3 publishes v2 again with ``--patches 1``, which adds the v1 -> v2 patch.
Item 8 builds the demo as one-folder bundles whose manifest lives under ``folder/`` in the bucket
(so it never mixes with the one-file releases): v1 with ``--patches 3``, v2 first with ``--patches 0``
(the archive path), then again with ``--patches 3`` (file list, files and per-file patches added).
``--only 8`` (repeatable) runs just the items named, and writes ``.gupper/bench/results-partial.md``
unless ``--out`` says otherwise; so does ``--skip``.
Every Gupper client gets a state dir of its own, so "first check" (no ETag yet: 200) and "warm
check" (If-None-Match: 304, answered from the kept signed copy) are measured apart.

This module is the driver (flags, set-up, the order of the items). Items 1-8 live in
bench/scenario_*.py, what they share in bench/harness.py, the report in bench/report.py.

Every network action is loopback only; every loop is bounded.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import embedding, fast_server, imports, update_steps, verifiers  # noqa: E402
from bench.common import CACHE, bench_key, build_reproducible, ensure_venv, tools_python  # noqa: E402
from bench.harness import RUN, Bench, Row, install_copy, publish, run_tufup, upload_tree  # noqa: E402
from bench.report import write_results  # noqa: E402
from bench.scenario_big import item4_big  # noqa: E402
from bench.scenario_check import item1_check  # noqa: E402
from bench.scenario_concurrency import item7_concurrency  # noqa: E402
from bench.scenario_delta import item3_delta  # noqa: E402
from bench.scenario_folder import item8_folder  # noqa: E402
from bench.scenario_publish import item6_publish  # noqa: E402
from bench.scenario_startup import item5_startup  # noqa: E402
from bench.scenario_update import item2_update  # noqa: E402
from gupper_infra.client import start_local_store  # noqa: E402

TUFUP_VENV = CACHE / "tufup-venv"
DEFAULT_PORTS = (47311, 47312)  # S3 API, public front; fixed so cached builds stay valid
ITEMS = [str(i) for i in range(1, 15)]
PARTIAL_OUT = CACHE / "results-partial.md"  # a run of some items only never overwrites bench/results.md


def free_port(port: int) -> bool:
    with socket.socket() as s:
        # As the servers do: connections of a store that just stopped (TIME_WAIT) do not make the port busy.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@contextmanager
def sample_load(b: Bench, every: float = 5.0) -> Iterator[None]:
    """Sample the 1-minute load average in a background thread while the measurements run."""
    stop = threading.Event()

    def loop() -> None:
        while True:
            b.load.append(os.getloadavg()[0])
            if stop.wait(every):
                return

    thread = threading.Thread(target=loop, name="load-sampler", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=every + 1)


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


def setup_tufup_repo(b: Bench) -> tuple[tuple[str, str, Path] | None, dict[str, Any]]:
    """Make tufup's repository (v1 state uploaded now, v2 states kept for items 2 and 3); (urls, states)."""
    if b.tufup_python is None:
        return None, {}
    try:
        for v, exe in (("v1", b.v1), ("v2", b.v2)):
            install_copy(exe, RUN / "bundles" / v)
        out = run_tufup(
            b, "repo", str(RUN / "tufup-repo"), str(RUN / "bundles" / "v1"), str(RUN / "bundles" / "v2"), timeout=600
        )
        states: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        upload_tree(b, Path(states["v1"]), "tufup")
        return (
            b.store.url("tufup/metadata/"),
            b.store.url("tufup/targets/"),
            Path(states["v1"]) / "metadata" / "root.json",
        ), states
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


def run_items(b: Bench, skip: set[str], failures: list[str]) -> None:
    """The measurements in an order that needs each store state once: v1 only (1, 5), v2 without a
    patch (2), v2 with one (3), then the ones that do not care (8: its own prefix; 7, 6, 4)."""
    bucket, env = f"s3://{b.store.bucket}", b.store.s3_env()
    tufup_urls: tuple[str, str, Path] | None = None
    states: dict[str, Any] = {}
    if {"1", "2", "3", "5", "7", "9", "11"} - skip:  # the one-file items share the store's app/stable manifest
        publish(b, bucket, b.v1, patches=0, env=env)
    if {"1", "2", "3", "9", "11"} - skip:
        tufup_urls, states = setup_tufup_repo(b)
    if "1" not in skip:
        step("item 1: check, no update", lambda: item1_check(b, tufup_urls), failures)
    if "5" not in skip:
        step("item 5: start-up overhead", lambda: item5_startup(b), failures)
    if "9" not in skip:
        step("item 9: embedding cost (one-file apps)", lambda: embedding.item9_embedding(b, tufup_urls), failures)
    if "11" not in skip:
        v1_state = Path(states["v1"]) if states else None
        step("item 11: check against nginx", lambda: fast_server.item11_fast_check(b, tufup_urls, v1_state), failures)
    if "2" not in skip:
        publish(b, bucket, b.v2, patches=0, env=env)  # a full download: no patch listed
        if states:
            upload_tree(b, Path(states["v2"]), "tufup")
        step("item 2: full update", lambda: item2_update(b, tufup_urls), failures)
    if "3" not in skip:
        step("item 3: delta update", lambda: item3_delta(b, tufup_urls, states), failures)
    if "8" not in skip:
        step("item 8: one-folder update", lambda: item8_folder(b), failures)
    if "7" not in skip:
        step("item 7: 1,000 checks, 50 workers", lambda: item7_concurrency(b), failures)
    if "6" not in skip:
        step("item 6: publish 100 MB", lambda: item6_publish(b), failures)
    if "4" not in skip:
        step("item 4: 1 GiB artifact", lambda: item4_big(b), failures)
    if "10" not in skip:
        step("item 10: update steps, both sides frozen", lambda: update_steps.item10_update_steps(b), failures)
    if "12" not in skip:
        step("item 12: throughput against nginx", lambda: fast_server.item12_throughput(b), failures)
    if "13" not in skip:
        step("item 13: import cost", lambda: imports.item13_imports(b), failures)
    if "14" not in skip:
        step("item 14: Ed25519 verifiers", lambda: verifiers.item14_verifiers(b), failures)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="2 repetitions and one 1 GiB download (a few minutes)")
    p.add_argument("--reps", type=int, default=None, help="repetitions per measurement (default 5, --quick 2)")
    p.add_argument(
        "--ports",
        type=int,
        nargs=2,
        default=DEFAULT_PORTS,
        metavar=("S3", "PUBLIC"),
        help="loopback ports of the local store",
    )
    p.add_argument("--skip", action="append", default=[], choices=ITEMS, help="skip an item (repeatable)")
    p.add_argument(
        "--only", action="append", default=[], choices=ITEMS, help="run only this item (repeatable), e.g. --only 8"
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"results file (default: bench/results.md; with --only/--skip: {PARTIAL_OUT.relative_to(ROOT)})",
    )
    args = p.parse_args(argv)
    reps = args.reps or (2 if args.quick else 5)
    started = time.time()
    skip = set(args.skip) | ({*ITEMS} - set(args.only) if args.only else set())
    out: Path = args.out or (PARTIAL_OUT if skip else ROOT / "bench" / "results.md")
    command = "python bench/run.py" + (" --quick" if args.quick else "") + (f" --reps {args.reps}" if args.reps else "")
    command += "".join(f" --only {i}" for i in args.only) + "".join(f" --skip {i}" for i in args.skip)
    if not all(free_port(port) for port in args.ports):
        print(
            f"ports {args.ports} are busy; pass --ports with two free loopback ports (builds are then redone)",
            file=sys.stderr,
        )
        return 2
    # The demo builds (app/build.py, --clean) get a PyInstaller cache of their own, so builds
    # elsewhere on the machine (tests, other checkouts) cannot empty it under them, nor they under those.
    os.environ["PYINSTALLER_CONFIG_DIR"] = str(CACHE / "pyinstaller-config")
    print("== tufup venv", file=sys.stderr, flush=True)
    tufup_python, why_not = setup_tufup()
    tools_python()
    fresh_run_dir()
    access_log = RUN / "access.log"
    key_path, public = bench_key("run")
    store = start_local_store(
        CACHE / "store",
        access_log=access_log,
        extra_args=["--s3-port", str(args.ports[0]), "--public-port", str(args.ports[1])],
    )
    failures: list[str] = []
    try:
        print("== building v1 and v2 (cached)", file=sys.stderr, flush=True)
        url = store.url("app/stable/latest.json")
        with ThreadPoolExecutor(2) as pool:
            v1, v2 = pool.map(lambda v: build_reproducible(v, url, [public], RUN / "dist"), ["1.0.0", "2.0.0"])
        b = Bench(args.quick, reps, store, access_log, key_path, public, v1, v2, tufup_python, why_not)
        with sample_load(b):
            run_items(b, skip, failures)
    finally:
        store.stop()
    for failure in failures:
        b.rows.append(Row("!", "FAILED: " + failure.replace("|", "/").replace("\n", " ")[:600], "", None))
    write_results(b, out, started, command)
    print(out.read_text())
    print(f"wrote {out}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
