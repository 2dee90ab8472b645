"""Build the demo app into one file (or one folder) with PyInstaller, reproducibly and with a cache.

``python app/build.py --version 1.2.0 --manifest-url URL --public-key FILE.pub [--out dist]``
writes ``dist/app-1.2.0-<os>-<arch>[.exe]`` and prints its path; with ``--onedir`` it writes the
one-folder bundle ``dist/app-1.2.0-<os>-<arch>/`` (executable ``app[.exe]`` and ``_internal/``)
for the ``archive`` release type (docs/packages.md). Two builds of the same inputs
are byte-identical (``PYTHONHASHSEED=0``, fixed work paths), so the result is cached under
``.gupper/build-cache/<hash of every input>/`` and re-used.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gupper.platforms import current_platform  # noqa: E402

APP_NAME = "app"
DEFAULT_CACHE = ROOT / ".gupper" / "build-cache"


def _inputs_digest(config_text: str) -> str:
    """Hash of everything that goes into a build: sources, config, tool versions."""
    import PyInstaller

    h = hashlib.sha256()
    files = [ROOT / "app" / "main.py", *sorted((ROOT / "updater" / "gupper").rglob("*.py"))]
    for path in files:
        h.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    h.update(config_text.encode())
    h.update(f"{PyInstaller.__version__}|{sys.version}|{platform.platform()}".encode())
    return h.hexdigest()[:32]


FAULTS = ("", "crash-on-start", "crash-after-update-check")


def config_module(version: str, manifest_url: str, public_keys: Sequence[str], channel: str, fault: str = "") -> str:
    """Source of the ``_build_config`` module baked into the binary."""
    if fault not in FAULTS:
        raise ValueError(f"unknown fault {fault!r}; choose from {FAULTS}")
    return (
        '"""Written by app/build.py: what this build of the app trusts and where it looks."""\n'
        f"APP = {APP_NAME!r}\nVERSION = {version!r}\nCHANNEL = {channel!r}\n"
        f"MANIFEST_URL = {manifest_url!r}\nPUBLIC_KEYS = {list(public_keys)!r}\n"
        + (f"FAULT = {fault!r}\n" if fault else "")
    )


def build_app(
    version: str,
    manifest_url: str,
    public_keys: Sequence[str],
    out_dir: Path,
    *,
    channel: str = "stable",
    cache_dir: Path = DEFAULT_CACHE,
    use_cache: bool = True,
    main_source: Path | None = None,
    fault: str = "",
    onedir: bool = False,
    reproducible: bool = True,
    windowed: bool = False,
) -> Path:
    """Build (or take from the cache) the one-file app, or with ``onedir`` the one-folder bundle,
    and copy it into ``out_dir``. ``windowed`` builds with PyInstaller's ``--windowed`` (on macOS
    a one-folder build is then also made into ``app.app``; elsewhere the same bundle).

    ``reproducible=False`` builds as PyInstaller does by default (random hash seed: each build is
    one random draw, cached like any other); the delta benchmark compares the two flavours.
    """
    plat = current_platform()
    name = f"{APP_NAME}-{version}-{plat.key}"
    config_text = config_module(version, manifest_url, public_keys, channel, fault)
    src = main_source or ROOT / "app" / "main.py"
    digest = _inputs_digest(
        config_text
        + src.read_text()
        + ("|onedir" if onedir else "")
        + ("" if reproducible else "|default-seed")
        + ("|windowed" if windowed else "")
    )
    cached = cache_dir / digest / (name if onedir else name + plat.exe_suffix)
    if onedir:
        if not (use_cache and cached.is_dir()):
            _pyinstaller(digest, src, config_text, cache_dir, "--onedir", APP_NAME, reproducible, windowed)
            work = cache_dir / "work" / digest
            shutil.rmtree(cached, ignore_errors=True)
            tmp = cached.with_name(cached.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(work / "dist" / APP_NAME, tmp, symlinks=True)
            os.replace(tmp, cached)
            shutil.rmtree(work, ignore_errors=True)
        dest = out_dir / cached.name
        shutil.rmtree(dest, ignore_errors=True)
        out_dir.mkdir(parents=True, exist_ok=True)
        shutil.copytree(cached, dest, symlinks=True)
        return dest
    if not (use_cache and cached.is_file()):
        _pyinstaller(digest, src, config_text, cache_dir, "--onefile", name, reproducible, windowed)
        work = cache_dir / "work" / digest
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(cached.name + ".tmp")
        shutil.copyfile(work / "dist" / (name + plat.exe_suffix), tmp)
        tmp.chmod(0o755)
        os.replace(tmp, cached)
        shutil.rmtree(work, ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    dest = out_dir / cached.name
    shutil.copyfile(cached, dest)
    dest.chmod(0o755)
    return dest


def _pyinstaller(
    digest: str,
    src: Path,
    config_text: str,
    cache_dir: Path,
    mode: str,
    name: str,
    reproducible: bool = True,
    windowed: bool = False,
) -> None:
    """Run PyInstaller in ``mode`` (``--onefile``/``--onedir``) in a work dir fixed per input digest."""
    work = cache_dir / "work" / digest  # fixed per input: build paths never make two builds differ
    shutil.rmtree(work, ignore_errors=True)
    (work / "src").mkdir(parents=True)
    shutil.copyfile(src, work / "src" / "main.py")
    (work / "src" / "_build_config.py").write_text(config_text)
    env = dict(os.environ, PYTHONHASHSEED="0", SOURCE_DATE_EPOCH="1700000000")
    if not reproducible:
        env = {k: v for k, v in os.environ.items() if k not in {"PYTHONHASHSEED", "SOURCE_DATE_EPOCH"}}
    # A PyInstaller cache per build: --clean empties the cache, and two builds at once (bench item 8
    # builds v1 and v2 in parallel) would otherwise delete files from under each other.
    env["PYINSTALLER_CONFIG_DIR"] = str(work / "pyinstaller-cache")
    cmd = [
        sys.executable,
        "-m",
        "PyInstaller",
        mode,
        "--noconfirm",
        "--clean",
        "--log-level",
        "WARN",
        "--name",
        name,
        "--paths",
        str(ROOT / "updater"),
        "--paths",
        str(work / "src"),
        "--hidden-import",
        "_build_config",
        "--distpath",
        str(work / "dist"),
        "--workpath",
        str(work / "build"),
        "--specpath",
        str(work),
        *(["--windowed"] if windowed else []),
        # Elsewhere a windowed one-folder build stands in for macOS's .app (tests/test_e2e_bundles.py lays it out
        # as one), so it carries what a macOS build carries: Gupper's hook keeps plistlib, which reads a bundle's
        # Info.plist, out of Linux and Windows builds.
        *(["--hidden-import", "plistlib"] if windowed and sys.platform != "darwin" else []),
        str(work / "src" / "main.py"),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"PyInstaller failed for {name}:\n{proc.stderr[-4000:]}")


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: build one version."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--version", required=True, help="PEP 440 version to bake in")
    p.add_argument("--manifest-url", required=True, help="https URL of the channel's latest.json")
    p.add_argument(
        "--public-key", action="append", required=True, type=Path, help="a .pub file from gupper-publish keygen"
    )
    p.add_argument("--channel", default="stable")
    p.add_argument("--out", type=Path, default=ROOT / "dist")
    p.add_argument("--no-cache", action="store_true")
    p.add_argument(
        "--onedir",
        action="store_true",
        help="build a one-folder bundle dist/app-<version>-<os>-<arch>/ (published as an archive)",
    )
    p.add_argument(
        "--fault", default="", choices=FAULTS, help="bake in a start-up crash (to see rollback and pre-flight at work)"
    )
    args = p.parse_args(argv)
    keys = [k.read_text().strip() for k in args.public_key]
    path = build_app(
        args.version,
        args.manifest_url,
        keys,
        args.out,
        channel=args.channel,
        use_cache=not args.no_cache,
        fault=args.fault,
        onedir=args.onedir,
    )
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
