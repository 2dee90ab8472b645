"""One-file PyInstaller builds of the bench apps (bench/apps/), in build venvs of their own, cached.

Every build uses the same settings: ``--onefile --noconfirm --clean``, ``PYTHONHASHSEED=0``,
``SOURCE_DATE_EPOCH`` fixed, a work dir fixed per input digest, and the PyInstaller version of the
project's venv. The digest covers the app's source, its baked config, the flags, the venv's
installed packages and (for Gupper's venv) the client's source, so a cached build is reused only
when nothing that goes into it changed.

Build venvs (under ``.gupper/bench/``):

- ``freeze-floor``: PyInstaller, requests and cryptography, without Gupper. cryptography is there
  because a user's build venv often has it for another reason; then PyInstaller bundles it into
  any app that imports requests (requests names it for its SNI fallback).
- ``freeze-gupper``: the same plus Gupper from this source tree (editable, so it is always the
  current code, and its ``pyinstaller40`` hook is registered as for an installed Gupper).
- ``freeze-gupper-readme-editable`` and ``freeze-gupper-readme-wheel``: the venv README "Use it in
  your app" sets up, ``pip install "gupper[publisher]" "pyinstaller>=6.9"``, with Gupper from this
  tree installed editable (``pip install -e``) or as a wheel built from it (remade, with the venv,
  when the tree changes); PyInstaller pinned to the project's version, like the others. Their apps
  are built without ``--paths``: PyInstaller finds Gupper as a user's build does.
- ``freeze-tufup``: PyInstaller and tufup 0.10 (bench/requirements-tufup.txt).

Nothing here touches the network except pip installing those venvs once.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import CACHE, ensure_venv  # noqa: E402

APPS = ROOT / "bench" / "apps"
FREEZE_CACHE = CACHE / "freeze-cache"
# PyInstaller's own cache (stripped binaries) lives in its config dir; --clean empties it, which
# breaks any other build running at the same time with the default one (~/.cache/pyinstaller).
PYI_CONFIG = CACHE / "pyinstaller-config"


def _pyinstaller_pin() -> str:
    import PyInstaller

    return f"pyinstaller=={PyInstaller.__version__}"


def floor_venv() -> Path:
    """PyInstaller + requests + cryptography, no Gupper; its python."""
    return ensure_venv(CACHE / "freeze-floor", ROOT / "bench" / "requirements-freeze.txt", extra=[_pyinstaller_pin()])


def gupper_venv() -> Path:
    """The floor venv's packages plus Gupper (editable, from this tree); its python."""
    return ensure_venv(
        CACHE / "freeze-gupper", ROOT / "bench" / "requirements-freeze.txt", extra=[_pyinstaller_pin(), "-e", str(ROOT)]
    )


README_KINDS = ("editable", "wheel")


def readme_venv(kind: str) -> Path:
    """The README's build venv (``gupper[publisher]`` beside PyInstaller) with Gupper installed ``kind``
    (``editable`` or ``wheel``); its python."""
    requirements = ROOT / "bench" / "requirements-readme.txt"
    path = CACHE / f"freeze-gupper-readme-{kind}"
    if kind == "editable":
        return ensure_venv(path, requirements, extra=["-e", f"{ROOT}[publisher]", _pyinstaller_pin()])
    wheel = _wheel()
    stamp = path / ".bench-wheel"
    if path.exists() and (not stamp.is_file() or stamp.read_text() != str(wheel)):
        shutil.rmtree(path)  # the same version from another tree: a fresh venv, not pip's "already satisfied"
    python = ensure_venv(path, requirements, extra=[f"{wheel}[publisher]", _pyinstaller_pin()])
    stamp.write_text(str(wheel))
    return python


def _wheel() -> Path:
    """A wheel of this tree (``pip wheel --no-deps``), kept per digest of what goes into it."""
    h = hashlib.sha256()
    sources = [ROOT / "pyproject.toml", *(p for d in ("updater", "publisher", "infra") for p in (ROOT / d).rglob("*"))]
    for path in sorted(p for p in sources if p.is_file() and "__pycache__" not in p.parts):
        h.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    out = CACHE / "wheels" / h.hexdigest()[:24]
    found = sorted(out.glob("gupper-*.whl"))
    if found:
        return found[0]
    shutil.rmtree(CACHE / "wheels", ignore_errors=True)  # older trees' wheels
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "--disable-pip-version-check", "-w", str(out)]
    cmd.append(str(ROOT))
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"pip wheel failed:\n{proc.stderr[-4000:]}")
    return next(out.glob("gupper-*.whl"))


def tufup_venv() -> Path:
    """PyInstaller + tufup 0.10; its python."""
    return ensure_venv(CACHE / "freeze-tufup", ROOT / "bench" / "requirements-tufup.txt", extra=[_pyinstaller_pin()])


def _venv_digest(python: Path) -> str:
    proc = subprocess.run(
        [str(python), "-m", "pip", "freeze", "--all", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return hashlib.sha256(proc.stdout.encode()).hexdigest()


def freeze(
    python: Path,
    app: str,
    name: str,
    out_dir: Path,
    *,
    config: Mapping[str, object] | None = None,
    flags: Sequence[str] = (),
    paths: Sequence[Path] = (),
) -> Path:
    """Build ``bench/apps/<app>.py`` into the one-file ``out_dir/<name>`` with ``python``'s PyInstaller.

    ``config`` becomes the module ``_bench_config`` (``NAME = value`` lines); ``flags`` go to
    PyInstaller as they are (e.g. ``--exclude-module``); ``paths`` are searched for imports first.
    """
    source = APPS / f"{app}.py"
    config_text = "".join(f"{k} = {v!r}\n" for k, v in (config or {}).items())
    h = hashlib.sha256()
    for part in (
        source.read_bytes(),
        config_text.encode(),
        "\0".join(flags).encode(),
        "\0".join(map(str, paths)).encode(),
        _venv_digest(python).encode(),
    ):
        h.update(part + b"\0")
    if "freeze-gupper" in str(python) or any("updater" in str(p) for p in paths):
        for path in sorted((ROOT / "updater" / "gupper").rglob("*.py")):
            h.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    digest = h.hexdigest()[:24]
    cached = FREEZE_CACHE / digest / name
    if not cached.is_file():
        work = FREEZE_CACHE / "work" / digest
        shutil.rmtree(work, ignore_errors=True)
        (work / "src").mkdir(parents=True)
        shutil.copyfile(source, work / "src" / "main.py")
        (work / "src" / "_bench_config.py").write_text(config_text)
        env = dict(
            os.environ, PYTHONHASHSEED="0", SOURCE_DATE_EPOCH="1700000000", PYINSTALLER_CONFIG_DIR=str(PYI_CONFIG)
        )
        cmd = [
            str(python),
            "-m",
            "PyInstaller",
            "--onefile",
            "--noconfirm",
            "--clean",
            "--log-level",
            "WARN",
            "--name",
            name,
            "--paths",
            str(work / "src"),
            *[a for p in paths for a in ("--paths", str(p))],
            "--hidden-import",
            "_bench_config",
            *flags,
            "--distpath",
            str(work / "dist"),
            "--workpath",
            str(work / "build"),
            "--specpath",
            str(work),
            str(work / "src" / "main.py"),
        ]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False, timeout=900)
        if proc.returncode != 0:
            raise RuntimeError(f"PyInstaller failed for {name}:\n{proc.stderr[-4000:]}")
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(name + ".tmp")
        shutil.copyfile(work / "dist" / name, tmp)
        tmp.chmod(0o755)
        os.replace(tmp, cached)
        shutil.rmtree(work, ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    dest = out_dir / name
    shutil.copyfile(cached, dest)
    dest.chmod(0o755)
    return dest


def bundled_modules(exe: Path) -> set[str]:
    """Top-level names of what a one-file build carries: PYZ modules and collected files/binaries.

    Read with PyInstaller's own archive readers (from the project's venv)."""
    from PyInstaller.archive.readers import CArchiveReader, ZlibArchiveReader

    names: set[str] = set()
    archive = CArchiveReader(str(exe))
    for entry in archive.toc:
        names.add(entry.replace("\\", "/").split("/")[0].split(".")[0])
        if entry.endswith(".pyz") or entry == "PYZ-00.pyz":
            pyz = archive.open_embedded_archive(entry)
            assert isinstance(pyz, ZlibArchiveReader)
            names.update(m.split(".")[0] for m in pyz.toc)
    return names
