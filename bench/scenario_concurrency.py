"""Item 7: 1,000 checks from 50 workers at once, first and warm: latency percentiles and errors."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from bench.harness import RUN, Bench, Row, gupper_config, in_window, log_entries, settle_log


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def item7_concurrency(b: Bench) -> None:
    from gupper import Updater

    total, workers = 1000, 50
    base = RUN / "concurrency"
    warm_dir = base / "warm"
    Updater(gupper_config(b, "2.0.0", warm_dir)).check()  # keeps the signed manifest and its ETag

    def first(i: int) -> tuple[float, str | None]:
        t0 = time.perf_counter()
        try:
            Updater(gupper_config(b, "2.0.0", base / f"first-{i}")).check()  # a fresh install: 200 + verify + keep it
        except Exception as e:
            return (time.perf_counter() - t0) * 1000, type(e).__name__
        return (time.perf_counter() - t0) * 1000, None

    def warm(_: int) -> tuple[float, str | None]:
        t0 = time.perf_counter()
        try:
            Updater(
                gupper_config(b, "2.0.0", warm_dir)
            ).check()  # If-None-Match -> 304, verify the kept copy; nothing written
        except Exception as e:
            return (time.perf_counter() - t0) * 1000, type(e).__name__
        return (time.perf_counter() - t0) * 1000, None

    labels: list[tuple[str, Callable[[int], tuple[float, str | None]]]] = [
        ("first check on a fresh install: 200 + verify (Updater.check)", first),
        ("warm check: If-None-Match -> 304 + verify the kept copy (Updater.check)", warm),
    ]
    for label, fn in labels:
        start = time.time()
        t0 = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(fn, range(total)))
        wall = time.perf_counter() - t0
        end = time.time()
        settle_log(b)
        lat = [ms for ms, err in results if err is None]
        errors = [err for _, err in results if err is not None]
        served = in_window(log_entries(b.access_log), start, end, "/gupper/app/")
        statuses = sorted({str(x["status"]) for x in served})
        b.add(
            Row(
                "7",
                f"{total} checks, {workers} workers, {label}: p50 / p99 latency",
                "ms",
                pct(lat, 50),
                note=f"p99 {pct(lat, 99):.0f} ms; {len(errors)} "
                f"errors{' ' + str(sorted(set(errors))) if errors else ''}; "
                f"{total / wall:.0f} checks/s; statuses {','.join(statuses)}; "
                f"{sum(x['bytes_sent'] for x in served) / max(1, len(served)):.0f} B/response",
            )
        )
