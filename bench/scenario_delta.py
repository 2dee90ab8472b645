"""Item 3: a delta update v1 -> v2 (v2 published again with a patch), Gupper against tufup; and
the publish time with the patch."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import median
from bench.harness import Bench, Row, Run, gupper_updates, publish, total_bytes, tufup_updates, upload_tree
from bench.scenario_update import GUPPER_RUN_NOTE, TUFUP_RUN_NOTE, demo_steps


def item3_delta(b: Bench, tufup_urls: tuple[str, str, Path] | None, states: dict[str, Any]) -> None:
    # v2 is in the store already (item 2, no patch); publishing it again with --patches 1 adds the
    # v1 -> v2 patch to its manifest entry (the upload itself is skipped: same file).
    g_publish = publish(b, f"s3://{b.store.bucket}", b.v2, patches=1, env=b.store.s3_env())
    g = gupper_updates(b, "delta")
    for _, served, stderr in g:
        if "gupper: applied a" not in stderr or not any(e["path"].endswith(".bsdiff4") for e in served):
            raise RuntimeError(f"Gupper did not update through the patch: {stderr[-2000:]}")
    t: list[Run] = []
    if tufup_urls is not None and b.tufup_python is not None and states:
        upload_tree(b, Path(states["v2p"]), "tufup")
        t = tufup_updates(b, tufup_urls, "delta", "patch", Path(states["v1"]) / "targets" / "app-1.0.0.tar.gz")
        for _, served, stderr in t:
            if "tufup: downloading patch" not in stderr or not any(e["path"].endswith(".patch") for e in served):
                raise RuntimeError(f"tufup did not update through its patch: {stderr[-2000:]}")

    def med(runs: list[Run], fn: Callable[[Run], float]) -> float | None:
        return median([fn(r) for r in runs]) if runs else None

    note = (
        GUPPER_RUN_NOTE.replace(
            "downloads,", "downloads the bsdiff4 patch of the binary, applies it (streaming, stdlib bz2),"
        )
        + "; "
        + TUFUP_RUN_NOTE.replace(
            "downloads,",
            "downloads the bsdiff4 patch of the uncompressed .tar, gunzips v1's kept .tar.gz, "
            "patches in memory, gzips the result,",
        )
    )
    note += "; " + demo_steps(g)
    g_patch, t_patch = med(g, lambda r: total_bytes(r, ".bsdiff4")), med(t, lambda r: total_bytes(r, ".patch"))
    g_total, t_total = med(g, total_bytes), med(t, total_bytes)
    b.add(
        Row(
            "3",
            "delta update v1 -> v2: wall time to the new version running",
            "ms",
            med(g, lambda r: r[0]),
            med(t, lambda r: r[0]),
            note,
        )
    )
    b.add(
        Row(
            "3",
            "delta update v1 -> v2: patch bytes",
            "bytes",
            g_patch,
            t_patch,
            "Gupper: one binary; tufup: the .tar of the bundle dir (the same one binary)",
        )
    )
    b.add(Row("3", "delta update v1 -> v2: bytes transferred (patch + metadata)", "bytes", g_total, t_total))
    b.add(
        Row(
            "3", "delta update v1 -> v2: requests", "requests", med(g, lambda r: len(r[1])), med(t, lambda r: len(r[1]))
        )
    )
    b.add(
        Row(
            "3",
            "publish v2 with a v1 -> v2 patch: wall time",
            "s",
            g_publish,
            float(states["publish_patch_s"]) if t else None,
            "Gupper: the CLI (Python start-up, bsdiff4 of the 26 MB binaries, S3 PUT of the "
            "patch, signed manifest; v2 itself already uploaded); "
            "tufup: add_bundle + publish_changes in-process, local files only (gzip the "
            "bundle, bsdiff4 of the .tar, sign; "
            f"{float(states.get('publish_full_s', 0)):.1f} s with skip_patch=True), upload not included",
        )
    )
    if g_patch is not None:
        b.metrics["g_patch"] = g_patch
        b.metrics["manifest_with_patch"] = median([total_bytes(r, "latest.json") for r in g])
    if t_patch is not None:
        b.metrics["t_patch"] = t_patch
    if g_total is not None:
        b.metrics["g_delta_total"] = g_total
    if t_total is not None:
        b.metrics["t_delta_total"] = t_total
