"""Gupper end to end on this machine: run by ``bash scripts/demo.sh``.

Starts the local S3-compatible store (moto) behind its HTTPS public front, builds the demo app
as v1.0.0 and v2.0.0 (PyInstaller one-file, cached), publishes v1 with ``gupper-publish``,
installs and runs it (up to date), publishes v2, runs the *installed v1* again and lets it
update itself to v2, then runs it once more. Everything lives under ``.gupper/demo/``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.build import build_app  # noqa: E402
from gupper_infra.client import start_local_store  # noqa: E402

DEMO = ROOT / ".gupper" / "demo"


def step(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m" if sys.stdout.isatty() else f"\n==> {text}", flush=True)


def run(cmd: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    shown = " ".join(str(c).replace(str(ROOT) + "/", "") for c in cmd)
    print(f"$ {shown}", flush=True)
    proc = subprocess.run(
        cmd, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300, check=False
    )
    for line in proc.stdout.splitlines():
        print(f"  | {line}", flush=True)
    if proc.returncode != 0:
        raise SystemExit(f"demo: command failed with exit code {proc.returncode}: {shown}")
    return proc


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def same_files(a: Path, b: Path) -> bool:
    """The same files, links and modes under two folders (the updater's kept file list aside)."""

    def listing(root: Path) -> list[tuple[str, str, int]]:
        return [
            (
                p.relative_to(root).as_posix(),
                os.readlink(p) if p.is_symlink() else sha(p) if p.is_file() else "",
                p.lstat().st_mode,
            )
            for p in sorted(root.rglob("*"))
            if p.name != ".gupper-files.json"
        ]

    return listing(a) == listing(b)


def install_first(install: Path, build: Path, onedir: bool) -> Path:
    """Install v1 as an installer would; return the path users run."""
    shutil.rmtree(install, ignore_errors=True)
    install.mkdir()
    if onedir:  # versions side by side, and a stable entry point
        shutil.copytree(build, install / "versions" / "1.0.0", symlinks=True)
        (install / "current").symlink_to("versions/1.0.0")
        return install / "current" / "app"
    app = install / "app"
    shutil.copyfile(build, app)
    app.chmod(0o755)
    return app


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--s3-port", type=int, default=19443, help="local S3 API port (fixed so builds stay cached)")
    parser.add_argument("--public-port", type=int, default=19444, help="public HTTPS front port")
    parser.add_argument("--fresh", action="store_true", help="forget the demo's key and install first")
    parser.add_argument(
        "--onedir",
        action="store_true",
        help="the one-folder flavour: publish folders as archives, install versions side by side",
    )
    return parser.parse_args()


def main() -> int:
    args = _args()
    if args.fresh:
        shutil.rmtree(DEMO, ignore_errors=True)
    DEMO.mkdir(parents=True, exist_ok=True)
    key = DEMO / "keys" / "demo.key"
    if not key.exists():
        step("Making a signing key (gupper-publish keygen); the private half stays in .gupper/demo/keys")
        run([sys.executable, "-m", "gupper_publish", "keygen", str(DEMO / "keys" / "demo")])
    public = (DEMO / "keys" / "demo.pub").read_text().strip()

    step(f"Starting the local S3 store (moto) on 127.0.0.1:{args.s3_port}, public HTTPS front on :{args.public_port}")
    extra = ["--s3-port", str(args.s3_port), "--public-port", str(args.public_port)]
    with start_local_store(DEMO / "store", extra_args=extra) as store:
        manifest_url = f"{store.public_base}/app/stable/latest.json"
        print(f"  manifest URL: {manifest_url}\n  test CA:      {store.ca}")
        env = dict(os.environ, **store.s3_env())
        env["REQUESTS_CA_BUNDLE"] = store.ca  # the app trusts the store's local CA, as it would a corporate one
        env["XDG_STATE_HOME"] = str(DEMO / "state")  # the app's updater state stays inside the demo folder
        shutil.rmtree(
            DEMO / "state", ignore_errors=True
        )  # the demo's store starts empty: so does its memory of serials

        flavour = "one-folder" if args.onedir else "one-file"
        step(f"Building the demo app as v1.0.0 and v2.0.0 (PyInstaller {flavour}; cached by source hash)")
        dist = DEMO / ("dist-onedir" if args.onedir else "dist")
        with ThreadPoolExecutor(2) as pool:  # two cores, two builds
            futures = {
                v: pool.submit(build_app, v, manifest_url, [public], dist, onedir=args.onedir)
                for v in ("1.0.0", "2.0.0")
            }
            builds = {v: f.result() for v, f in futures.items()}
        for path in builds.values():
            size = (
                sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size
            )
            print(f"  {path.relative_to(ROOT)}{'/' if path.is_dir() else ''}  {size / 1e6:.1f} MB")

        publish = [sys.executable, "-m", "gupper_publish", "--store", f"s3://{store.bucket}", "--key", str(key)]
        step(
            "Publishing v1.0.0"
            + (" (the folder goes up as a deterministic .tar.gz with its signed file list)" if args.onedir else "")
        )
        run([*publish, str(builds["1.0.0"])], env)

        install = DEMO / "install"
        app = install_first(install, builds["1.0.0"], args.onedir)
        step(f"Installing v1.0.0 as {app.relative_to(ROOT)} and running it: nothing newer yet")
        run([str(app)], env)

        made = "its files one by one and a bsdiff4 patch per changed file" if args.onedir else "a bsdiff4 patch"
        step(f"Publishing v2.0.0 (gupper-publish also stores {made} from v1.0.0)")
        run([*publish, str(builds["2.0.0"])], env)

        how = "fetches the patch, verifies, pre-flights, swaps itself"
        if args.onedir:
            how = "links unchanged files, patches the changed one into versions/2.0.0, pre-flights, switches current"
        step(f"Running the installed app again: v1.0.0 finds v2.0.0, {how} and re-executes")
        out = run([str(app)], env)
        step("Running it once more: it is v2.0.0 now and up to date")
        run([str(app)], env)
        if args.onedir:
            what = "current points at versions/2.0.0, whose files are the published v2.0.0 folder's"
            same = os.readlink(install / "current") == "versions/2.0.0" and same_files(
                install / "versions" / "2.0.0", builds["2.0.0"]
            )
        else:
            what, same = "installed binary is byte-identical to the published v2.0.0", sha(app) == sha(builds["2.0.0"])
        ok = "version 2.0.0" in out.stdout and same
        print(f"\n{'OK' if ok else 'FAILED'}: {what}: {same}")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
