"""Item 5: the start-up time the update check adds to the demo app."""

from __future__ import annotations

from bench.common import median
from bench.harness import RUN, Bench, Row, app_env, install_copy, run_timed


def item5_startup(b: Bench) -> None:
    exe = install_copy(b.v1, RUN / "startup" / "install")
    env = app_env(b.store, RUN / "startup" / "tmp")
    env["XDG_STATE_HOME"] = str(RUN / "startup" / "state")
    on: list[float] = []
    off: list[float] = []
    run_timed([str(exe), "--no-update"], env)  # page cache warm-up
    run_timed([str(exe)], env)  # the first check keeps the manifest and its ETag: from here on every start gets a 304
    for _ in range(max(5, b.reps * 2)):
        for args, sink in (([], on), (["--no-update"], off)):
            ms, proc = run_timed([str(exe), *args], env)
            if "version 1.0.0" not in proc.stdout:
                raise RuntimeError(f"demo app did not run: {proc.stdout}{proc.stderr}")
            sink.append(ms)
    b.add(Row("5", "demo app start to exit, update check on (up to date: 304)", "ms", median(on)))
    b.add(Row("5", "demo app start to exit, --no-update", "ms", median(off)))
    b.add(
        Row(
            "5",
            "added start-up time of the update check",
            "ms",
            median(on) - median(off),
            note="one-file binary; the difference of the two medians",
        )
    )
