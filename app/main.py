"""Gupper's demo app: checks for an update at start-up, then does its (tiny) job.

``--version`` prints the version without checking; ``--no-update`` skips the check. Build it
with ``python app/build.py``, which bakes the version, manifest URL and public key into
``_build_config``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

try:
    import _build_config as build  # type: ignore[import-not-found]  # written by app/build.py
except ImportError:  # run from source: updates stay off
    build = None

from gupper import Updater, UpdaterConfig

VERSION: str = build.VERSION if build else "0.0.0.dev0"


def _progress_bar() -> Callable[[int, int], None] | None:
    """A tqdm bar on a terminal, nothing otherwise (logs and pipes stay clean)."""
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    bar: list[Any] = []  # the tqdm, made on the first call when the total is known

    def progress(done: int, total: int) -> None:
        if not bar:
            bar.append(
                tqdm(total=total, unit="B", unit_scale=True, desc="downloading update", file=sys.stderr, leave=False)
            )
        bar[0].update(done - bar[0].n)
        if done >= total:
            bar[0].close()

    return progress


def _demo_fault(where: str) -> None:
    """A fault baked into this build (``app/build.py --fault``) for the rollback tests and demos."""
    if build is not None and getattr(build, "FAULT", "") == where:
        print(f"demo fault: crashing at {where}", file=sys.stderr, flush=True)
        os._exit(3)


def _fault_injection() -> Callable[[str], None] | None:
    """Test hook: ``GUPPER_DEMO_KILL_AT=<step>`` makes the updater SIGKILL this process at that step."""
    kill_at = os.environ.get("GUPPER_DEMO_KILL_AT")
    if not kill_at:
        return None

    def checkpoint(step: str) -> None:
        if step == kill_at:
            import signal

            os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))  # Windows: TerminateProcess either way

    return checkpoint


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo app."""
    parser = argparse.ArgumentParser(prog="app", description="Gupper demo app")
    parser.add_argument("--version", action="store_true", help="print the version and exit (no update check)")
    parser.add_argument("--no-update", action="store_true", help="skip the update check")
    args = parser.parse_args(argv)
    if args.version:
        print(VERSION)
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    logging.getLogger("urllib3").setLevel(logging.ERROR)  # its retry chatter; gupper logs the outcome once
    _demo_fault("crash-on-start")
    if os.environ.get("GUPPER_DEMO_DEBUG"):
        print(f"debug: pid={os.getpid()} meipass={getattr(sys, '_MEIPASS', '')}", file=sys.stderr, flush=True)
    if build is not None and not args.no_update:
        config = UpdaterConfig(
            app=build.APP,
            current_version=VERSION,
            manifest_url=build.MANIFEST_URL,
            public_keys=tuple(build.PUBLIC_KEYS),
            channel=build.CHANNEL,
            state_dir=os.environ.get("GUPPER_DEMO_STATE_DIR") or None,  # tests: one state dir per test on every OS
        )
        updater = Updater(config, checkpoint=_fault_injection())
        # Never raises for update problems: it logs one line and we carry on with this version.
        updater.run(progress=_progress_bar())
    _demo_fault("crash-after-update-check")
    print(f"Hello from the Gupper demo app, version {VERSION}")
    if build is not None and not args.no_update:
        updater.confirm()  # start-up went fine: end this version's trial run
    if os.environ.get("GUPPER_DEMO_HOLD"):  # tests: an instance that keeps running until its stdin closes
        sys.stdout.flush()
        sys.stdin.read()
    return 0


if __name__ == "__main__":
    sys.exit(main())
