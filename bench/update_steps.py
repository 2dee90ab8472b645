"""Item 10: a one-file update step by step, Gupper and tufup frozen the same way, against the floor.

Both sides are the same hello-world app (bench/apps/gupper_app.py, bench/apps/tufup_app.py) built
one-file by bench/freeze.py as v1 and v2; each prints a JSON mark with its epoch time at every step
boundary (Gupper's ``checkpoint`` hook; tufup's around its calls), so an update's wall time splits
into: v1 start (bootloader extraction + Python + the app's first line), import of the updater,
check, download + verify (+ patch), pre-flight (Gupper starts the new binary once in self-test
mode), swap (backup, rename, trial record), v2 start to its last line, and v2's exit (which, for
Gupper, waits for the outcome report that confirming the trial sends: ``gupper.outcomes``).

The floor is what no updater can avoid: three starts of the app (v1, the pre-flight, v2: the
median start-to-exit of the same binary with ``--no-update``) plus the transfer of the bytes
(curl, same server). tufup does not pre-flight, so its floor has two starts. Each of Gupper's
three starts also pays what embedding Gupper costs every start (item 9), which that floor leaves
out; so the update is also set against three starts of the app as shipped (v2, up to date: its
warm check and ``confirm()``) plus the transfer: what the update adds beyond three ordinary starts.

Gupper's releases live under ``bapp/`` in the bucket (their own manifest), tufup's under
``tufupf/`` (a repository of its own, made from the tufup app's bundles).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from bench import freeze
from bench.common import ROOT, median
from bench.embedding import tufup_client_dir
from bench.harness import RUN, Bench, Row, app_env, install_copy, publish, run_timed, run_tufup, upload_tree

GUPPER_STEPS = [  # (label, from mark, to mark); "spawn" is when the bench started v1
    ("v1 start", "spawn", "main"),
    ("import gupper (its transport loads with the check)", "main", "imported"),
    ("check (loads requests, urllib3, ssl)", "imported", "checked"),
    ("download + verify (delta: + patch)", "checked", "downloaded"),
    ("pre-flight (v2 in self-test mode: loads its update path, answers)", "downloaded", "preflight-passed"),
    ("swap (backup, rename, trial)", "preflight-passed", "restarting"),
    ("v2 start to its last line (confirm() sends the trial's outcome report from a thread)", "restarting", "done2"),
    ("v2 exit (waits for that report, at most 3 s; both bootloaders clean up)", "done2", "end"),
]
TUFUP_STEPS = [
    ("v1 start", "spawn", "main"),
    ("import tufup", "main", "imported"),
    ("check", "imported", "checked"),
    ("download + verify + extract (patch: + rebuild the archive)", "checked", "downloaded"),
    ("swap (rename)", "downloaded", "swapped"),
    ("v2 start to its last line", "swapped", "done2"),
    ("v2 exit (its bootloader cleans up)", "done2", "end"),
]


def marks_of(stderr: str, spawn: float, end: float) -> dict[str, float]:
    """Step marks (epoch) from an app's stderr; v2's ``main`` and ``done`` are kept as ``main2``/``done2``."""
    out: dict[str, float] = {"spawn": spawn, "end": end}
    for line in stderr.splitlines():
        if not line.startswith('{"mark"'):
            continue
        m = json.loads(line)
        key = m["mark"] + ("2" if m["version"] == "2.0.0" and m["mark"] in ("main", "done") else "")
        out.setdefault(key, m["t"])
    return out


def shares(runs: list[dict[str, float]], steps: list[tuple[str, str, str]]) -> dict[str, float]:
    return {label: median([(r[b] - r[a]) * 1000 for r in runs if a in r and b in r]) for label, a, b in steps}


def curl_ms(url: str, ca: str, n: int = 5) -> float:
    times = []
    for _ in range(n):
        proc = subprocess.run(
            ["curl", "-sS", "--cacert", ca, "-o", "/dev/null", "-w", "%{time_total}", url],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        times.append(float(proc.stdout) * 1000)
    return median(times)


def start_ms(exes: dict[str, Path], env: dict[str, str], n: int) -> dict[str, float]:
    """Median start-to-exit of each app with ``--no-update``, the apps alternated round by round."""
    times: dict[str, list[float]] = {name: [] for name in exes}
    for rnd in range(n + 1):
        for name, exe in exes.items():
            ms = run_timed([str(exe), "--no-update"], env)[0]
            if rnd:  # the first round warms the page cache
                times[name].append(ms)
    return {name: median(v) for name, v in times.items()}


def shipped_start_ms(exe: Path, env: dict[str, str], n: int) -> float:
    """Median start-to-exit of ``exe`` as shipped, with nothing to update: its warm check (304) and
    confirm(). Two unmeasured runs first: the first keeps the manifest and its ETag."""
    times = []
    for rnd in range(n + 2):
        ms, proc = run_timed([str(exe)], env)
        if proc.returncode != 0 or "hello from version" not in proc.stdout:
            raise RuntimeError(f"{exe.name} did not start: {proc.stdout}\n{proc.stderr[-2000:]}")
        if rnd >= 2:
            times.append(ms)
    return median(times)


def gupper_runs(b: Bench, v1: Path, tag: str, reps: int) -> tuple[list[dict[str, float]], list[float]]:
    runs, walls = [], []
    for i in range(reps):
        base = RUN / "steps" / f"{tag}-{i}"
        exe = install_copy(v1, base / "install")
        env = app_env(b.store, base / "tmp")
        env.update(XDG_STATE_HOME=str(base / "state"), GUPPER_BENCH_CA=b.store.ca)
        spawn = time.time()
        ms, proc = run_timed([str(exe)], env)
        if "hello from version 2.0.0" not in proc.stdout:
            raise RuntimeError(f"Gupper's bench app did not update ({tag}): {proc.stdout}\n{proc.stderr[-3000:]}")
        if tag == "delta" and "applied a" not in proc.stderr:
            raise RuntimeError(f"the delta run did not apply a patch: {proc.stderr[-3000:]}")
        runs.append(marks_of(proc.stderr, spawn, spawn + ms / 1000))
        walls.append(ms)
    return runs, walls


def tufup_runs(
    b: Bench, v1: Path, template: Path, tag: str, reps: int, patch_from: Path | None
) -> tuple[list[dict[str, float]], list[float]]:
    runs, walls = [], []
    for i in range(reps):
        base = RUN / "steps" / f"tufup-{tag}-{i}"
        exe = install_copy(v1, base / "install")
        client = base / "client"
        shutil.rmtree(client, ignore_errors=True)
        shutil.copytree(template, client)
        if patch_from is not None:  # tufup patches the archive it installed from, kept in its targets dir
            shutil.copyfile(patch_from, client / "targets" / patch_from.name)
        env = app_env(b.store, base / "tmp")
        env.update(GUPPER_BENCH_TUFUP_DIR=str(client), GUPPER_BENCH_TUFUP_PATCH="1" if patch_from is not None else "0")
        spawn = time.time()
        ms, proc = run_timed([str(exe)], env)
        if "hello from version 2.0.0" not in proc.stdout:
            raise RuntimeError(f"tufup's bench app did not update ({tag}): {proc.stdout}\n{proc.stderr[-3000:]}")
        runs.append(marks_of(proc.stderr, spawn, spawn + ms / 1000))
        walls.append(ms)
    return runs, walls


def describe(parts: dict[str, float], total: float) -> str:
    return "; ".join(f"{label} {ms:,.0f} ms ({ms / total:.0%})" for label, ms in parts.items())


def item10_update_steps(b: Bench) -> None:
    from gupper.platforms import current_platform

    plat = current_platform().key
    out = RUN / "steps"
    reps = b.reps
    gupper_py = freeze.gupper_venv()
    url = b.store.url("bapp/stable/latest.json")
    g = {
        v: freeze.freeze(
            gupper_py,
            "gupper_app",
            f"bapp-{v}-{plat}",
            out / "dist",
            config={"APP": "bapp", "VERSION": v, "MANIFEST_URL": url, "PUBLIC_KEYS": [b.public_key]},
            paths=[ROOT / "updater"],
        )
        for v in ("1.0.0", "2.0.0")
    }
    bucket, env = f"s3://{b.store.bucket}", b.store.s3_env()
    publish(b, bucket, g["1.0.0"], patches=0, env=env)
    publish(b, bucket, g["2.0.0"], patches=0, env=env)
    t: dict[str, Any] = {}
    tufup_exe = tufup_builds(b, out)["1.0.0"] if b.tufup_python is not None else None
    starts = start_ms(
        {"gupper": g["1.0.0"]} | ({"tufup": tufup_exe} if tufup_exe else {}),
        app_env(b.store, out / "start-tmp"),
        max(7, 2 * reps),
    )
    g_start = starts["gupper"]
    shipped_env = app_env(b.store, out / "shipped-tmp")
    shipped_env.update(XDG_STATE_HOME=str(out / "shipped-state"), GUPPER_BENCH_CA=b.store.ca)
    shutil.rmtree(out / "shipped-state", ignore_errors=True)
    g_shipped = shipped_start_ms(g["2.0.0"], shipped_env, max(7, 2 * reps))  # 2.0.0 is the latest: up to date
    g_full_transfer = curl_ms(b.store.url(f"bapp/2.0.0/{g['2.0.0'].name}"), b.store.ca)
    full_runs, full_walls = gupper_runs(b, g["1.0.0"], "full", reps)
    publish(b, bucket, g["2.0.0"], patches=1, env=env)  # adds the v1 -> v2 bsdiff4 patch to the entry
    manifest = json.loads(
        subprocess.run(
            ["curl", "-sS", "--cacert", b.store.ca, url], capture_output=True, text=True, check=True, timeout=60
        ).stdout
    )
    patch_url = next(p["url"] for e in manifest["signed"]["platforms"].values() for p in e.get("patches", []))
    g_patch_transfer = curl_ms(urljoin(url, patch_url), b.store.ca)
    delta_runs, delta_walls = gupper_runs(b, g["1.0.0"], "delta", reps)

    if tufup_exe is not None:
        t = tufup_side(b, out, reps, starts["tufup"])

    for kind, runs, walls, transfer in (
        ("full", full_runs, full_walls, g_full_transfer),
        ("delta", delta_runs, delta_walls, g_patch_transfer),
    ):
        total = median(walls)
        floor = 3 * g_start + transfer
        shipped = 3 * g_shipped + transfer
        parts = shares(runs, GUPPER_STEPS)
        tk = t.get(kind)
        b.metrics[f"steps_{kind}_ratio"] = total / floor
        b.metrics[f"steps_{kind}_shipped_ratio"] = total / shipped
        b.add(
            Row(
                "10",
                f"one-file update v1 -> v2, {kind}, same hello-world app frozen alike: wall time to v2 exiting",
                "ms",
                total,
                None if tk is None else tk["total"],
                note=f"Gupper: {describe(parts, total)}. Floor: 3 starts x {g_start:,.0f} ms + transfer "
                f"{transfer:,.1f} ms = {floor:,.0f} ms; "
                f"Gupper/floor = {total / floor:.2f} (target <= 1.2). Against 3 starts of the app as shipped "
                f"(up to date: warm check + confirm) x {g_shipped:,.0f} ms + transfer = {shipped:,.0f} ms: "
                f"{total / shipped:.2f}"
                + (
                    ""
                    if tk is None
                    else ". tufup (frozen the same way, no pre-flight): "
                    f"{describe(tk['parts'], tk['total'])}; its floor 2 starts x "
                    f"{tk['start']:,.0f} ms + transfer = {tk['floor']:,.0f} ms, tufup/floor = "
                    f"{tk['total'] / tk['floor']:.2f}"
                ),
            )
        )


def tufup_builds(b: Bench, out: Path) -> dict[str, Path]:
    """tufup's bench app, v1 and v2, baked with the URLs of its repository under ``tufupf/``."""
    cfg = {"APP": "app", "META_URL": b.store.url("tufupf/metadata/"), "TARGETS_URL": b.store.url("tufupf/targets/")}
    return {
        v: freeze.freeze(freeze.tufup_venv(), "tufup_app", "app", out / f"tufup-dist-{v}", config=cfg | {"VERSION": v})
        for v in ("1.0.0", "2.0.0")
    }


def tufup_side(b: Bench, out: Path, reps: int, start: float) -> dict[str, Any]:
    """tufup's frozen app: its own repository under ``tufupf/``; full and patch runs."""
    targets_url = b.store.url("tufupf/targets/")
    exes = tufup_builds(b, out)
    for v, exe in exes.items():
        install_copy(exe, out / "tufup-bundles" / v)
    bundles = [str(out / "tufup-bundles" / v) for v in ("1.0.0", "2.0.0")]
    states = json.loads(run_tufup(b, "repo", str(out / "tufup-repo"), *bundles, timeout=900).splitlines()[-1])
    upload_tree(b, Path(states["v1"]), "tufupf")
    template = tufup_client_dir(out / "tufup-template", Path(states["v1"]) / "metadata" / "root.json")
    env = app_env(b.store, out / "tufup-tmp")
    env.update(GUPPER_BENCH_TUFUP_DIR=str(template))
    _, proc = run_timed([str(exes["1.0.0"])], env)  # v1 up to date: its metadata is what an installed v1 keeps
    if "hello from version 1.0.0" not in proc.stdout:
        raise RuntimeError(f"tufup's bench app v1 did not run: {proc.stdout}{proc.stderr[-2000:]}")
    result: dict[str, Any] = {}
    upload_tree(b, Path(states["v2"]), "tufupf")
    archive = next(Path(states["v2"], "targets").glob("*2.0.0*.tar.gz"))
    runs, walls = tufup_runs(b, exes["1.0.0"], template, "full", reps, None)
    transfer = curl_ms(targets_url + archive.name, b.store.ca)
    result["full"] = {
        "total": median(walls),
        "parts": shares(runs, TUFUP_STEPS),
        "start": start,
        "floor": 2 * start + transfer,
    }
    upload_tree(b, Path(states["v2p"]), "tufupf")
    patch = next(Path(states["v2p"], "targets").glob("*.patch"))
    current = next(Path(states["v1"], "targets").glob("*1.0.0*.tar.gz"))
    runs, walls = tufup_runs(b, exes["1.0.0"], template, "delta", reps, current)
    transfer = curl_ms(targets_url + patch.name, b.store.ca)
    result["delta"] = {
        "total": median(walls),
        "parts": shares(runs, TUFUP_STEPS),
        "start": start,
        "floor": 2 * start + transfer,
    }
    return result
