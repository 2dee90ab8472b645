"""The report: bench/results.md (table, targets met or missed, the measured sizes) and its chart."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

from bench.common import ROOT, machine_summary, median, package_version, tools_python
from bench.harness import Bench


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
        f"Produced by `{command}` on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))} in {time.time() - started:.0f} "
        "s. "
        f"Medians over {b.reps} repetitions unless the row says otherwise.",
        "",
        f"Machine: {machine_summary()}; Gupper from the source tree, requests "
        f"{package_version('requests')}, urllib3 {package_version('urllib3')}, "
        f"PyInstaller {package_version('pyinstaller')}; tufup venv: {tufup_versions(b)}.",
        "",
        *load_note(b),
        "Everything runs on loopback: the local store (moto behind the public HTTPS "
        "front, werkzeug's threaded dev server, no keep-alive) serves both "
        "Gupper's `latest.json` + artifacts and tufup's TUF repository; requests and "
        "bytes are counted from the front's access log (body bytes). "
        "Item 4 uses a stdlib threaded HTTPS static server over a `LocalStore` folder "
        "instead (moto holds objects in memory). "
        "Every Gupper client gets a fresh state dir unless the row says warm; items 2, 4 "
        "and 6 publish with `--patches 0`, item 3 publishes v2 "
        "again with `--patches 1`. Item 8 builds the demo as PyInstaller one-folder "
        "bundles whose manifest lives under `folder/` in the bucket: "
        "v1 is published with `--patches 3`, v2 first with `--patches 0` (the archive "
        "path), then again with `--patches 3` (the file list, the files "
        "one by one and the per-file patches are added); tufup gets the same bundle dir "
        "(`add_bundle`, a repository of its own). "
        "Builds are reproducible (`PYTHONHASHSEED=0`), which is what keeps patches small (see docs/delta.md).",
        "",
        "Items 9-14 (issue 14, what embedding costs): tiny one-file apps (bench/apps/: "
        "hello world, hello + requests, hello + Gupper's start-up "
        "hook, hello + tufup's client) built alike by bench/freeze.py in build venvs of "
        "their own that have cryptography installed, as a "
        "user's often has, and README's start-up call built from README's venv (Gupper installed editable, "
        "and as a wheel); item 9 starts them in turn round after round; item 10 updates "
        "the Gupper and the tufup hello app v1 -> v2, each "
        "printing a mark at every step; items 11 and 12 use nginx (Debian's nginx-light, "
        "started by the bench on 127.0.0.1 with the store's "
        "certificate) over the same files; item 13 times imports in plain Python; item 14 "
        "installs each Ed25519 verifier in a venv of its own.",
        "",
    ]
    if b.tufup_python is None:
        lines += [f"**tufup was not measured:** {b.tufup_why_not}", ""]
    lines += [
        "| item | metric | Gupper | tufup 0.10 | unit | Gupper/tufup | notes |",
        "| --- | --- | ---: | ---: | --- | ---: | --- |",
    ]
    for r in b.rows:
        ratio = "-" if r.ratio is None else f"{r.ratio:.2f}"
        metric, note = (x.replace("|", "\\|") for x in (r.metric, r.note))  # a literal pipe would end the cell
        lines.append(
            f"| {r.item} | {metric} | {fmt(r.gupper, r.unit)} | {fmt(r.tufup, r.unit)} | {r.unit} | {ratio} | {note} |"
        )
    lines += ["", *targets_section(b), "", "![chart](results.png)", ""]
    out.write_text("\n".join(lines))
    data = out.with_suffix(".json")
    data.write_text(json.dumps([asdict(r) for r in b.rows], indent=1))
    chart(data, out.with_suffix(".png"))
    data.unlink()


def targets_section(b: Bench) -> list[str]:
    """The issue's targets, each met or missed, with the figures and (when missed) the reason."""
    m = b.metrics
    rows: list[tuple[str, bool | None, str]] = []

    def ratio(a: str, t: str) -> float | None:
        return m[a] / m[t] if a in m and m.get(t) else None

    for kind, label in (("warm", "warm (every later start)"), ("first", "first (fresh install)")):
        r = ratio(f"g_{kind}_ms", f"t_{kind}_ms")
        if r is not None:
            why = ""
            if r > 0.5:
                why = (
                    ". Why: on loopback both are bound by per-connection set-up and fixed client "
                    f"work, not by bytes. Gupper's {m[f'g_{kind}_ms']:.0f} ms is one new "
                    "TLS connection (the front has no keep-alive) plus building the client, reading "
                    "the state file and verifying the Ed25519 signature; "
                    f"tufup's is {m[f't_{kind}_req']:g} such requests. Half of tufup's time means "
                    "Gupper's one request plus its fixed work may cost no more "
                    "than one of tufup's requests; with 1 request against 2 the ratio sits near 0.5, "
                    "and run-to-run noise on a shared machine decides the side."
                )
            rows.append(
                (
                    f"no-update check, {label}: wall time <= 1/2 of tufup's",
                    r <= 0.5,
                    f"{m[f'g_{kind}_ms']:.1f} vs {m[f't_{kind}_ms']:.1f} ms = {r:.2f}{why}",
                )
            )
        r = ratio(f"g_{kind}_req", f"t_{kind}_req")
        if r is not None:
            rows.append(
                (
                    f"no-update check, {label}: requests <= 1/2 of tufup's",
                    r <= 0.5,
                    f"{m[f'g_{kind}_req']:g} vs {m[f't_{kind}_req']:g} = {r:.2f}",
                )
            )
    if "g_patch" in m and "t_patch" in m:
        ok = m["g_patch"] <= m["t_patch"]
        total = (
            f"; with the metadata {m['g_delta_total']:,.0f} vs {m['t_delta_total']:,.0f} B"
            if "g_delta_total" in m and "t_delta_total" in m
            else ""
        )
        why = (
            ""
            if ok
            else ". Why: both are bsdiff4; tufup diffs the uncompressed .tar (file + tar header), "
            "Gupper the binary itself."
        )
        rows.append(
            (
                "delta bytes <= tufup's patch bytes",
                ok,
                f"patch {m['g_patch']:,.0f} vs {m['t_patch']:,.0f} B{total}{why}",
            )
        )
    if "rss" in m:
        rows.append(
            (
                "peak RSS <= 40 MiB updating a 1 GiB artifact",
                m["rss"] <= 40,
                f"{m['rss']:.1f} MiB, flat: the file streams through 1 MiB pieces",
            )
        )
    if "g_tp" in m:
        r = m["g_tp"] / m["curl_tp"]
        why = ""
        if r < 0.9:
            than = "slower than" if m["sha256_mib_s"] < m["curl_tp"] * 0.9 else "about as fast as"
            why = (
                f". Why: SHA-256 runs at {m['sha256_mib_s']:.0f} MiB/s on this CPU (no SHA "
                f"extensions), {than} curl's plain transfer "
                f"({m['curl_tp']:.0f} MiB/s), so no download that also verifies can keep up with a "
                "transfer that does not. The client receives in one thread and writes + hashes "
                "1 MiB pieces in another, which caps it at min(curl, sha256) = "
                f"{m['serial_bound']:.0f} MiB/s; it reaches "
                f"{m['g_tp'] / m['serial_bound']:.2f} of that. curl | sha256sum (two processes, "
                f"two cores) does {m['curl_sha_tp']:.0f} MiB/s: "
                f"Gupper/(curl | sha256sum) = {m['g_tp'] / m['curl_sha_tp']:.2f}. On a CPU with "
                "SHA extensions (SHA-NI, ARMv8 SHA2; about 1.5-2 GiB/s) "
                "the hash stops being the limit; below about 1 Gbit/s (120 MiB/s) the network is "
                "the limit, not the hash."
            )
        rows.append(
            (
                "download+verify throughput >= 0.9x curl",
                r >= 0.9,
                f"{m['g_tp']:.0f} vs {m['curl_tp']:.0f} MiB/s = {r:.2f}{why}",
            )
        )
    out: list[str] = []
    if rows:
        out += ["## Targets (issue 7)", "", "| target | result | measured |", "| --- | --- | --- |"]
        out += [
            f"| {name} | {'met' if ok else '**missed**'} | {detail.replace('|', chr(92) + '|')} |"
            for name, ok, detail in rows
        ]
        out += ["", *sizes_note(b)]
    rows14 = targets_issue14(m)
    if rows14:
        out += ["", "## Targets (issue 14)", "", "| target | result | measured |", "| --- | --- | --- |"]
        out += [
            f"| {name} | {'met' if ok else '**missed**'} | {detail.replace('|', chr(92) + '|')} |"
            for name, ok, detail in rows14
        ]
    return out


def targets_issue14(m: dict[str, float]) -> list[tuple[str, bool, str]]:
    """Issue 14's targets: embedding cost, import cost, update wall time, throughput, the check against nginx."""
    rows: list[tuple[str, bool, str]] = []
    if "embed_mb_gupper" in m:
        mb, ms = m["embed_mb_gupper"] - m["embed_mb_hello"], m["embed_over_ms_gupper"]
        rows.append(
            (
                "one-file app embedding Gupper: <= +4 MB over hello world",
                mb <= 4,
                f"+{mb:.2f} MB (requests alone +{m['embed_mb_requests'] - m['embed_mb_hello']:.2f} MB)",
            )
        )
        rows.append(
            (
                "one-file app embedding Gupper, warm no-update check (304): <= +150 ms start to exit over hello world",
                ms <= 150,
                f"+{ms:.0f} ms (requests alone +{m['embed_over_ms_requests']:.0f} ms; "
                f"Gupper carried but not run: +{m['embed_over_ms_gupper --no-update']:.0f} ms; the median of "
                "per-round differences, certifi's roots + the store's CA trusted)",
            )
        )
    for kind in ("editable", "wheel"):
        if f"embed_mb_readme-{kind}" in m:
            mb = m[f"embed_mb_readme-{kind}"] - m["embed_mb_hello"]
            ms = m[f"embed_over_ms_readme-{kind}"]
            rows.append((f"README set-up, {kind} install: <= +4 MB over hello world", mb <= 4, f"+{mb:.2f} MB"))
            rows.append(
                (
                    f"README set-up, {kind} install, warm no-update check (304): <= +150 ms start to exit over "
                    "hello world",
                    ms <= 150,
                    f"+{ms:.0f} ms",
                )
            )
    if "import_g" in m:
        r = m["import_g"] / m["import_r"]
        rows.append(
            (
                "import cost of the start-up path <= 1.2x `import requests` (whole process)",
                r <= 1.2,
                f"+{m['import_g']:.1f} vs +{m['import_r']:.1f} ms = {r:.2f}x; -X importtime "
                f"{m['importtime_g']:.1f} vs {m['importtime_r']:.1f} ms",
            )
        )
    for kind in ("full", "delta"):
        if f"steps_{kind}_ratio" in m:
            r = m[f"steps_{kind}_ratio"]
            rows.append(
                (
                    f"{kind} one-file update wall time <= 1.2x the floor (3 starts + transfer)",
                    r <= 1.2,
                    f"{r:.2f}x (item 10 has each step's share)"
                    + (
                        f"; {m[f'steps_{kind}_shipped_ratio']:.2f}x three starts of the app as shipped "
                        "(each with its warm check) + transfer"
                        if f"steps_{kind}_shipped_ratio" in m
                        else ""
                    ),
                )
            )
    if "tp_gupper" in m:
        bound = min(m["tp_curl"], m["tp_sha"])
        r = m["tp_gupper"] / bound
        rows.append(
            (
                "download + verify >= 0.9x min(curl, SHA-256 in memory)",
                r >= 0.9,
                f"{m['tp_gupper']:.0f} MiB/s vs min({m['tp_curl']:.0f}, {m['tp_sha']:.0f}) = {r:.2f}; "
                f"prototypes: 1 MiB pieces {m['tp_gathered']:.0f} MiB/s = {m['tp_gathered'] / bound:.2f}, "
                f"and hashed in a second thread {m['tp_pipelined']:.0f} MiB/s = {m['tp_pipelined'] / bound:.2f}",
            )
        )
    if "fast_g" in m:
        r = m["fast_g"] / m["fast_floor"]
        rows.append(
            (
                "warm check against nginx <= 2x the floor (fresh TLS + GET + verify)",
                r <= 2,
                f"{m['fast_g']:.2f} vs {m['fast_floor']:.2f} ms = {r:.2f}x",
            )
        )
        if "fast_t" in m:
            r = m["fast_g"] / m["fast_t"]
            rows.append(
                (
                    "warm check against nginx <= 0.5x tufup's",
                    r <= 0.5,
                    f"{m['fast_g']:.2f} vs {m['fast_t']:.2f} ms = {r:.2f}x",
                )
            )
    return rows


def sizes_note(b: Bench) -> list[str]:
    """The measured sizes the README's scale estimate starts from."""
    m = b.metrics
    parts = []
    if "manifest_body" in m:
        parts += [
            f"`latest.json` body {m['manifest_body']:,.0f} B (one platform, no patches)",
            f"response headers {m['manifest_200_headers']:,.0f} B (200) / {m['manifest_304_headers']:,.0f} B (304)",
            "one check on a new TLS 1.3 connection, both directions: "
            f"{m['manifest_200_wire']:,.0f} B (200) / {m['manifest_304_wire']:,.0f} B (304), "
            f"of which {m['tls_handshake']:,.0f} B handshake (loopback CA: one certificate; a "
            "public CDN's chain adds about 2-4 kB)",
        ]
    if "manifest_with_patch" in m:
        parts.append(f"`latest.json` with v2 and one patch listed {m['manifest_with_patch']:,.0f} B")
    if "full_bytes" in m and "g_patch" in m:
        parts.append(f"full download {m['full_bytes']:,.0f} B vs patch {m['g_patch']:,.0f} B")
    return [f'Sizes measured for the scale estimate (README, "Scale"): {"; ".join(parts)}.'] if parts else []


def load_note(b: Bench) -> list[str]:
    if not b.load:
        return []
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    lo, mid, hi = min(b.load), median(b.load), max(b.load)
    busy = (
        " Other work shared the machine during the run (load above the CPU count): wall times carry that noise."
        if mid > cpus
        else ""
    )
    return [
        f"1-minute load average during the run: min {lo:.1f}, median {mid:.1f}, max {hi:.1f} on {cpus} CPUs.{busy}",
        "",
    ]


def tufup_versions(b: Bench) -> str:
    if b.tufup_python is None:
        return "not installed"
    proc = subprocess.run(
        [
            str(b.tufup_python),
            "-c",
            "from importlib.metadata import version as v; print(f\"tufup {v('tufup')}, tuf "
            "{v('tuf')}, bsdiff4 {v('bsdiff4')}\")",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return proc.stdout.strip() or "?"


def chart(data: Path, png: Path) -> None:
    """Render the PNG with matplotlib from the tools venv (kept out of the app's build venv)."""
    proc = subprocess.run(
        [str(tools_python()), str(ROOT / "bench" / "chart.py"), str(data), str(png)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if proc.returncode != 0:
        print(f"chart failed: {proc.stderr[-2000:]}", file=sys.stderr)
