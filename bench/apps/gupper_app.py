"""Bench app: hello world that embeds Gupper and runs its start-up hook, as an app would.

``_bench_config`` (written by bench/freeze.py) bakes the version, manifest URL and key in. With
``--no-update`` it greets without checking; with ``--check-later`` it creates its updater and
confirms, as a windowed app does before its window, and leaves the check for later. Each step
boundary is printed to stderr as a JSON line with its epoch time (``{"mark": step, "t": ...}``),
so the bench can split an update's wall time into v1 start, check, download, pre-flight, swap and
v2 start. ``GUPPER_BENCH_CA`` names the local store's CA (a real app trusts its CDN's public chain).
"""

import time

T0 = time.time()  # after the bootloader's extraction and Python's start, before any app import

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

import _bench_config as build  # noqa: E402


def mark(step: str, t: float | None = None) -> None:
    print(
        json.dumps({"mark": step, "t": time.time() if t is None else t, "version": build.VERSION}),
        file=sys.stderr,
        flush=True,
    )


def main() -> int:
    mark("main", T0)
    if "--no-update" not in sys.argv:
        import logging

        from gupper import Updater, UpdaterConfig

        mark("imported")
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
        config = UpdaterConfig(
            app=build.APP,
            current_version=build.VERSION,
            manifest_url=build.MANIFEST_URL,
            public_keys=tuple(build.PUBLIC_KEYS),
            ca_bundle=os.environ.get("GUPPER_BENCH_CA"),
        )
        updater = Updater(config, checkpoint=mark)
        if "--check-later" not in sys.argv:  # a windowed app creates it and checks later, from a thread
            updater.run()
        mark("run-returned")
    print(f"hello from version {build.VERSION}", flush=True)
    if "--no-update" not in sys.argv:
        updater.confirm()
    mark("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
