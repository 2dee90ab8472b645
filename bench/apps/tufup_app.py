"""Bench app: the same hello world, embedding tufup 0.10's client instead (built in tufup's venv).

It does at start-up what Gupper's start-up hook does: check, and if there is an update download
it, install it over this one-file executable (``os.replace``, as Gupper does: tufup's own installer
refuses Linux) and exec the new version. Marks go to stderr as in ``gupper_app.py``.
``_bench_config`` carries the version, the metadata and targets URLs; the tufup client dir (its
kept metadata) is ``GUPPER_BENCH_TUFUP_DIR``; the local CA comes in through ``REQUESTS_CA_BUNDLE``.
"""

import time

T0 = time.time()

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import _bench_config as build  # noqa: E402


def mark(step: str, t: float | None = None) -> None:
    print(
        json.dumps({"mark": step, "t": time.time() if t is None else t, "version": build.VERSION}),
        file=sys.stderr,
        flush=True,
    )


def main() -> int:
    mark("main", T0)
    # After an update the new version does not check again (Gupper's restarted version does not either).
    if "--no-update" not in sys.argv and not os.environ.get("GUPPER_BENCH_RESTARTED"):
        from tufup.client import Client

        mark("imported")
        exe = Path(sys.executable)
        client_dir = Path(os.environ["GUPPER_BENCH_TUFUP_DIR"])
        client = Client(
            app_name=build.APP,
            app_install_dir=exe.parent,
            current_version=build.VERSION,
            metadata_dir=client_dir / "metadata",
            metadata_base_url=build.META_URL,
            target_dir=client_dir / "targets",
            target_base_url=build.TARGETS_URL,
            extract_dir=client_dir / "extract",
        )
        new = client.check_for_updates(patch=os.environ.get("GUPPER_BENCH_TUFUP_PATCH") == "1")
        mark("checked")
        if new is not None:

            def install(src_dir: Path, dst_dir: Path, **_: object) -> None:
                mark("downloaded")  # tufup calls this once the archive is downloaded, verified and extracted
                target = Path(dst_dir) / exe.name
                src = Path(src_dir) / exe.name
                src.chmod(0o755)
                os.replace(src, target)
                mark("swapped")
                env = {k: v for k, v in os.environ.items() if not k.startswith("_PYI_")}
                env.update(PYINSTALLER_RESET_ENVIRONMENT="1", GUPPER_BENCH_RESTARTED="1")
                os.execve(target, [str(target)], env)

            client.download_and_apply_update(skip_confirmation=True, install=install)
    print(f"hello from version {build.VERSION}", flush=True)
    mark("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
