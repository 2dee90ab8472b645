"""Item 13: the import cost of the client's start-up path in plain Python, against requests.

Four commands with the project's interpreter, alternated round after round: ``python -c pass``,
``import requests``, what a start that finds no update imports (``from gupper import Updater,
UpdaterConfig`` plus what ``run()`` loads on the way: the one-file layout, the transport and its
remembered TLS trust, the verifier's module and libsodium, the default state folder's module), and what creating the
``Updater`` alone loads (a start that only confirms a trial, or checks later from a thread).
tests/test_lazy_imports.py proves that a no-update ``run()`` loads nothing more of weight (no
patching, archives, folder deltas, periodic checks or cryptography). Figures: whole-process medians
over ``pass``, and ``-X importtime``'s cumulative microseconds of the top-level imports.
"""

from __future__ import annotations

import re
import subprocess
import sys

from bench.common import ROOT, median, run_exact
from bench.harness import Bench, Row

CREATE = "from gupper import Updater, UpdaterConfig; import gupper.layouts.single, gupper.folders"
STARTUP = (
    "from gupper import Updater, UpdaterConfig; import gupper.layouts.single, gupper.manifest, gupper.fetch, "
    "gupper.anchors, gupper.folders; import gupper.ed25519 as e; e.self_check()"
)
COMMANDS = {"pass": "pass", "requests": "import requests", "gupper": STARTUP, "create": CREATE}


def whole_process_ms(code: str) -> float:
    ms, proc = run_exact([sys.executable, "-c", code], timeout=60, cwd=ROOT)
    proc.check_returncode()
    return ms


def importtime_ms(code: str) -> float:
    """Sum of the cumulative times of the top-level imports ``-X importtime`` reports, in ms."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        timeout=60,
    )
    total = 0
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\S.*)$", line)  # one space before the name: a top-level import
        if (
            m
            and m.group(2) not in ("site", "encodings", "codecs", "io", "abc", "_distutils_hack")
            and not m.group(2).startswith(("encodings", "_"))
        ):
            total += int(m.group(1))
    return total / 1000


def write_bytecode() -> None:
    """Compile Gupper's modules to ``.pyc`` as an installed package has them (pip compiles a wheel's
    modules on install). From an editable tree, under ``PYTHONDONTWRITEBYTECODE`` (set on some
    machines and CI), every run compiled them from source again: about 40 ms that ``import requests``,
    compiled in site-packages, never pays."""
    proc = subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(ROOT / "updater" / "gupper")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"compileall failed: {proc.stdout[-2000:]}{proc.stderr[-2000:]}")


def item13_imports(b: Bench) -> None:
    rounds = max(15, b.reps * 4)
    write_bytecode()
    for code in COMMANDS.values():  # warm the page cache
        whole_process_ms(code)
    wall: dict[str, list[float]] = {k: [] for k in COMMANDS}
    imp: dict[str, list[float]] = {k: [] for k in ("requests", "gupper")}
    for _ in range(rounds):
        for name, code in COMMANDS.items():
            wall[name].append(whole_process_ms(code))
    for _ in range(max(5, b.reps)):
        for name, values in imp.items():
            values.append(importtime_ms(COMMANDS[name]))
    base = median(wall["pass"])
    g, r = median(wall["gupper"]) - base, median(wall["requests"]) - base
    gi, ri = median(imp["gupper"]), median(imp["requests"])
    c = median(wall["create"]) - base
    b.metrics.update(import_g=g, import_r=r, importtime_g=gi, importtime_r=ri, import_create=c)
    b.add(
        Row(
            "13",
            "import cost of the start-up path in plain Python, whole process over `python -c pass`",
            "ms",
            g,
            note=f"`{STARTUP}`: +{g:.1f} ms vs `import requests` +{r:.1f} ms = {g / r:.2f}x (target "
            f"<= 1.2x); `python -c pass` {base:.1f} ms",
        )
    )
    b.add(
        Row(
            "13",
            "import cost of the start-up path, -X importtime (cumulative, top-level imports)",
            "ms",
            gi,
            note=f"`import requests`: {ri:.1f} ms; ratio {gi / ri:.2f}x",
        )
    )
    b.add(
        Row(
            "13",
            "import cost of creating the Updater, no check (a start that only confirms, or checks from a thread)",
            "ms",
            c,
            note=f"`{CREATE}`: +{c:.1f} ms vs `import requests` +{r:.1f} ms = {c / r:.2f}x; requests, urllib3, ssl "
            "and libsodium load with the first check (tests/test_lazy_imports.py)",
        )
    )
