"""Item 2: a full update v1 -> v2 of the one-file demo app, Gupper against tufup; and the notes
and step split items 2 and 3 share."""

from __future__ import annotations

from pathlib import Path

from bench.common import median
from bench.harness import Bench, Row, Run, gupper_updates, step_ms, total_bytes, tufup_updates


def demo_steps(runs: list[Run]) -> str:
    """Gupper's side split by the demo's log lines (medians, ms since v1 was started)."""
    marks = [
        ("update found", "gupper: updating"),
        ("downloaded (patch applied)", "gupper: applied a"),
        ("installed", "gupper: installed"),
        ("v2 running", "gupper: now running"),
    ]
    parts = []
    for label, text in marks:
        at = [x for r in runs if (x := step_ms(r[2], text)) is not None]
        if at:
            parts.append(f"{label} at {median(at):,.0f} ms")
    return "Gupper's steps (from its log lines): " + ", ".join(parts) if parts else ""


GUPPER_RUN_NOTE = (
    "Gupper: the installed one-file v1 starts, checks, downloads, verifies, "
    "pre-flights v2, swaps, execs v2 (3 PyInstaller extractions)"
)
TUFUP_RUN_NOTE = (
    "tufup: a Python script (no PyInstaller extraction for the old version) checks, "
    "downloads, extracts, replaces, execs v2 --no-update"
)


def item2_update(b: Bench, tufup_urls: tuple[str, str, Path] | None) -> None:
    g = gupper_updates(b, "update")
    t = tufup_updates(b, tufup_urls, "update", "full") if tufup_urls is not None and b.tufup_python is not None else []
    note = (
        GUPPER_RUN_NOTE
        + "; "
        + TUFUP_RUN_NOTE.replace("downloads,", "downloads the .tar.gz,")
        + "; both published with no patch"
    )
    note += "; " + demo_steps(g)
    b.add(
        Row(
            "2",
            "full update v1 -> v2: wall time to the new version running",
            "ms",
            median([r[0] for r in g]),
            median([r[0] for r in t]) if t else None,
            note,
        )
    )
    b.add(
        Row(
            "2",
            "full update v1 -> v2: bytes transferred",
            "bytes",
            median([total_bytes(r) for r in g]),
            median([total_bytes(r) for r in t]) if t else None,
        )
    )
    b.metrics["full_bytes"] = median([total_bytes(r, "-linux-amd64") for r in g])
