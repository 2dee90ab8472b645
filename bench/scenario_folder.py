"""Item 8: a one-folder app update v1 -> v2, through the archive and through the per-file delta,
Gupper against tufup; and the publish times."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.common import build_reproducible, median
from bench.harness import (
    RUN,
    Bench,
    Row,
    Run,
    gupper_updates,
    publish,
    run_tufup,
    total_bytes,
    tufup_updates,
    upload_tree,
)

FOLDER_PREFIX = "folder"  # item 8's corner of the bucket: its builds bake folder/app/stable/latest.json in
TUFUP_FOLDER_PREFIX = "tufup-folder"


def install_folder(build: Path, root: Path, version: str) -> Path:
    """Install a one-folder build as an installer does (docs/packages.md, "Install layout"):
    ``root/versions/<version>/`` and the relative link ``root/current``; returns ``current/app``."""
    shutil.rmtree(root, ignore_errors=True)
    (root / "versions").mkdir(parents=True)
    shutil.copytree(build, root / "versions" / version, symlinks=True)
    (root / "current").symlink_to(f"versions/{version}")
    return root / "current" / "app"


def folder_stats(v1: Path, v2: Path) -> tuple[int, int, int]:
    """v2's files, their total bytes, and how many of them differ from v1's file at the same path."""
    files = [p for p in sorted(v2.rglob("*")) if p.is_file() and not p.is_symlink()]
    changed = 0
    for f in files:
        old = v1 / f.relative_to(v2)
        if not (old.is_file() and old.stat().st_size == f.stat().st_size and old.read_bytes() == f.read_bytes()):
            changed += 1
    return len(files), sum(f.stat().st_size for f in files), changed


@dataclass
class FolderSide:
    """One side of item 8: its update runs and publish times."""

    full: list[Run]
    delta: list[Run]
    publish_s: float  # v2 with patches from v1
    publish_nopatch_s: float  # v2 without (Gupper: --patches 0; tufup: skip_patch=True)
    built: str = ""  # Gupper's "built 2.0.0 from 1.0.0: ..." summary


def item8_gupper(b: Bench, v1: Path, v2: Path) -> FolderSide:
    """The installed one-folder v1 updates itself, through the archive (v2 published with
    --patches 0), then through the folder delta (v2 published again with --patches 3)."""
    env = b.store.s3_env()
    store_arg = f"s3://{b.store.bucket}/{FOLDER_PREFIX}"
    prefix = urlsplit(b.store.url(f"{FOLDER_PREFIX}/app/")).path

    def install(root: Path) -> Path:
        return install_folder(v1, root, "1.0.0")

    def switched(tag: str, runs: list[Run]) -> None:
        for i in range(len(runs)):
            link = RUN / tag / f"g{i}" / "current"
            if os.readlink(link) != "versions/2.0.0":
                raise RuntimeError(f"{link} -> {os.readlink(link)}, not versions/2.0.0")

    publish(b, store_arg, v1, patches=3, env=env)
    publish_archive = publish(
        b, store_arg, v2, patches=0, env=env
    )  # the archive path first: no file list, no patch listed
    full = gupper_updates(b, "folder-full", install, prefix)
    switched("folder-full", full)
    for _, served, stderr in full:
        if "gupper: built 2.0.0 from" in stderr or not any(e["path"].endswith(".tar.gz") for e in served):
            raise RuntimeError(f"Gupper did not update through the archive: {stderr[-2000:]}")
    publish(b, store_arg, v2, patches=3, env=env)  # adds the file list, the files and the per-file patches from 1.0.0
    delta = gupper_updates(b, "folder-delta", install, prefix)
    switched("folder-delta", delta)
    built = ""
    for _, served, stderr in delta:
        mark = "gupper: built 2.0.0 from 1.0.0:"  # stderr lines carry a "[  123 ms] " stamp first (run_stamped)
        lines = [line.split(mark, 1)[1] for line in stderr.splitlines() if mark in line]
        if not lines or any(e["path"].endswith(".tar.gz") for e in served):
            raise RuntimeError(f"Gupper did not update through the folder delta: {stderr[-2000:]}")
        built = lines[0].strip()
    # The publish time from scratch (archive, every file, per-file patches, manifest), in a prefix of its own.
    scratch = f"s3://{b.store.bucket}/{FOLDER_PREFIX}-publish"
    publish(b, scratch, v1, patches=3, env=env)
    return FolderSide(full, delta, publish(b, scratch, v2, patches=3, env=env), publish_archive, built)


def item8_tufup(b: Bench, v1: Path, v2: Path) -> FolderSide | None:
    """The same bundle dirs as tufup bundles (a repository of its own): full, then patch updates."""
    if b.tufup_python is None:
        return None
    out = run_tufup(b, "repo", str(RUN / "tufup-folder-repo"), str(v1), str(v2), timeout=900)
    states: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    upload_tree(b, Path(states["v1"]), TUFUP_FOLDER_PREFIX)
    root = Path(states["v1"]) / "metadata" / "root.json"
    urls = (b.store.url(f"{TUFUP_FOLDER_PREFIX}/metadata/"), b.store.url(f"{TUFUP_FOLDER_PREFIX}/targets/"), root)
    template = RUN / "tufup-folder-client"  # a v1 install that has checked once: metadata as v1 left it
    found = json.loads(run_tufup(b, "check", urls[0], urls[1], str(root), str(template), "1.0.0", "1", "0"))
    assert found["found"] == [None], f"tufup found an update: {found}"
    prefix = urlsplit(b.store.url(f"{TUFUP_FOLDER_PREFIX}/")).path
    upload_tree(b, Path(states["v2"]), TUFUP_FOLDER_PREFIX)
    full = tufup_updates(b, urls, "folder-full", "full", folder=v1, template=template, prefix=prefix)
    for _, served, stderr in full:
        if "tufup: downloading archive" not in stderr or not any(e["path"].endswith(".tar.gz") for e in served):
            raise RuntimeError(f"tufup did not update through its archive: {stderr[-2000:]}")
    upload_tree(b, Path(states["v2p"]), TUFUP_FOLDER_PREFIX)
    kept = Path(states["v1"]) / "targets" / "app-1.0.0.tar.gz"  # the archive v1 was installed from
    delta = tufup_updates(b, urls, "folder-delta", "patch", kept, folder=v1, template=template, prefix=prefix)
    for _, served, stderr in delta:
        if "tufup: downloading patch" not in stderr or not any(e["path"].endswith(".patch") for e in served):
            raise RuntimeError(f"tufup did not update through its patch: {stderr[-2000:]}")
    return FolderSide(full, delta, float(states["publish_patch_s"]), float(states["publish_full_s"]))


def item8_folder(b: Bench) -> None:
    manifest = b.store.url(f"{FOLDER_PREFIX}/app/stable/latest.json")
    with ThreadPoolExecutor(2) as pool:
        v1, v2 = pool.map(
            lambda v: build_reproducible(v, manifest, [b.public_key], RUN / "dist-onedir", onedir=True),
            ["1.0.0", "2.0.0"],
        )
    n_files, folder_bytes, changed = folder_stats(v1, v2)
    g = item8_gupper(b, v1, v2)
    t = item8_tufup(b, v1, v2)

    def med(runs: list[Run] | None, fn: Callable[[Run], float]) -> float | None:
        return median([fn(r) for r in runs]) if runs else None

    def requests(r: Run) -> float:
        return len(r[1])

    def wall(r: Run) -> float:
        return r[0]

    size = f"{folder_bytes / 1e6:.0f} MB"
    g_note = (
        f"Gupper: the installed one-folder v1 (<root>/current/app; {n_files} files, "
        f"{size}, {changed} changed in v2) starts, checks, "
        "{how}, pre-flights v2, switches `current` atomically (one rename), execs v2 (3 "
        "starts of the frozen app: v1, v2's pre-flight, v2; "
        "one-folder: no PyInstaller extraction)"
    )
    t_note = (
        "tufup: a Python script (not the frozen v1) checks, {how}, extracts, copies the "
        "bundle over the install dir file by file "
        "(its macOS installer; not atomic), execs v2 --no-update"
    )
    delta_note = (
        g_note.format(
            how="fetches the patch index (the new file list is rebuilt from v1's and checked "
            "against the signed hash) and a bsdiff4 patch "
            "per changed file, hard-links the unchanged files from v1, "
            f"patches the changed ones, verifies each ({g.built})"
        )
        + "; "
        + t_note.format(
            how="downloads the bsdiff4 patch of the whole uncompressed .tar of the bundle dir, "
            "gunzips v1's kept .tar.gz, patches in memory, re-gzips the result"
        )
    )
    full_note = (
        g_note.format(
            how="downloads the archive (v2 published with --patches 0), verifies it, extracts it into versions/2.0.0"
        )
        + "; "
        + t_note.format(how="downloads the .tar.gz (published with skip_patch=True)")
    )
    t_full, t_delta = (t.full, t.delta) if t else (None, None)
    parts = {
        "latest.json": "latest.json",
        ".json.gz": "file list (gzipped)",
        ".files.json": "patch index",
        ".bsdiff4": "per-file patches",
    }
    sizes = {what: med(g.delta, partial(total_bytes, suffix=suffix)) or 0 for suffix, what in parts.items()}
    g_parts = " + ".join(
        f"{what} {n:,.0f} B" for what, n in sizes.items() if n
    )  # the list is fetched only if v1's files differ
    t_patch = med(t_delta, lambda r: total_bytes(r, ".patch"))
    bytes_note = f"Gupper: {g_parts}" + (
        f"; tufup: patch {t_patch:,.0f} B (of the .tar: every member's header, mtime "
        "included, besides the changed file) + TUF metadata"
        if t_patch is not None
        else ""
    )
    label = "one-folder update v1 -> v2"
    rows = [
        (
            f"{label}, delta (Gupper --patches 3, tufup patch): wall time to the new version running",
            "ms",
            med(g.delta, wall),
            med(t_delta, wall),
            delta_note,
        ),
        (
            f"{label}, delta: bytes transferred",
            "bytes",
            med(g.delta, total_bytes),
            med(t_delta, total_bytes),
            bytes_note,
        ),
        (f"{label}, delta: requests", "requests", med(g.delta, requests), med(t_delta, requests), ""),
        (
            f"{label}, full (Gupper --patches 0: the archive; tufup: no patch): wall time to the new version running",
            "ms",
            med(g.full, wall),
            med(t_full, wall),
            full_note,
        ),
        (f"{label}, full: bytes transferred", "bytes", med(g.full, total_bytes), med(t_full, total_bytes), ""),
        (f"{label}, full: requests", "requests", med(g.full, requests), med(t_full, requests), ""),
        (
            "publish one-folder v2 with patches from v1: wall time",
            "s",
            g.publish_s,
            t.publish_s if t else None,
            "one run each. Gupper: the CLI from scratch (Python start-up, deterministic "
            f".tar.gz, the file list and the {n_files} files one by one ({size}), "
            f"bsdiff4 of the changed files, S3 PUTs, signed manifest; {g.publish_nopatch_s:.1f} s with --patches 0); "
            "tufup: add_bundle + publish_changes in-process, local files only (gzip the "
            f"bundle, bsdiff4 of the {size} .tar, sign"
            + (f"; {t.publish_nopatch_s:.1f} s with skip_patch=True" if t else "")
            + "), upload not included",
        ),
    ]
    for metric, unit, gv, tv, note in rows:
        b.add(Row("8", metric, unit, gv, tv, note))
