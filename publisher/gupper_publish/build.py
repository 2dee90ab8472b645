"""``gupper-publish build``: PyInstaller with the settings that keep patches small, output named for publishing.

PyInstaller's builds are not reproducible by default: Python's random hash seed changes the
order of sets and dicts it writes, so two builds of the same source differ in megabytes and a
binary patch between two versions is as large as those differences (hundreds of kB instead of
hundreds of bytes). This runs PyInstaller with:

- ``PYTHONHASHSEED=0`` (and ``SOURCE_DATE_EPOCH``) in its environment: the same source gives
  byte-identical builds, and two versions differ only where their code does;
- its work, spec and dist folders at one fixed place (``build/gupper/<app>`` by default), since
  build paths end up in the output too;
- ``--noupx``: compressed executables would defeat binary patches;
- ``--clean --noconfirm``, and ``--name <app>`` so a one-folder build's executable is named after
  the app, which is where ``gupper-publish`` looks for its entry point.

Arguments after ``--`` go to PyInstaller unchanged, except that relative paths in the options
that take files (``--add-data``, ``--icon``, ``--paths``, ...) are made absolute from the
current folder: with the spec file in the work folder PyInstaller would look for them there.

The output is copied to ``<out>/<app>-<version>-<os>-<arch>[.exe]`` (a folder with ``--onedir``),
checked to be an executable for this platform, and its path returned.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from gupper.platforms import Platform, current_platform

from .artifacts import artifact_filename
from .errors import BuildFailedError, PublishError
from .exe_check import check_file
from .extras import require
from .layout import ARCHIVE_SUFFIX

PATH_OPTIONS = frozenset(
    {
        "-i",
        "--icon",
        "--splash",
        "--version-file",
        "--manifest",
        "-m",
        "-r",
        "--resource",
        "--runtime-hook",
        "--additional-hooks-dir",
        "--osx-entitlements-file",
        "--upx-dir",
    }
)
"""PyInstaller options whose value is one file (``--icon app.ico``; ``--resource FILE,TYPE``: the part before the
comma)."""
PATH_LIST_OPTIONS = frozenset({"-p", "--paths"})
SOURCE_DEST_OPTIONS = frozenset({"--add-data", "--add-binary"})
REPRODUCIBLE_ENV = {"PYTHONHASHSEED": "0", "SOURCE_DATE_EPOCH": "1700000000"}
"""Set for PyInstaller: a fixed hash seed makes its output byte-identical from build to build."""
DEFAULT_WORK = Path("build") / "gupper"
LOG_TAIL = 300


@dataclass(frozen=True)
class BuildOptions:
    """What to build and where: the entry script, the app name and version, one file or one folder.

    ``work_dir`` is PyInstaller's work folder (default ``build/gupper/<name>``); keep it the same
    from build to build. ``pyinstaller_args`` go to PyInstaller unchanged (``--windowed``,
    ``--icon``, ``--add-data``...). ``python`` is the interpreter that has PyInstaller and the app's
    dependencies; ``platform`` is the one the output is named for (default: this machine's).
    """

    script: Path
    name: str
    version: str
    onedir: bool = False
    out_dir: Path = Path("dist")
    work_dir: Path | None = None
    pyinstaller_args: tuple[str, ...] = ()
    python: str = sys.executable
    platform: Platform | None = None


def output_name(name: str, version: str, platform: Platform, onedir: bool) -> str:
    """``<app>-<version>-<os>-<arch>`` (plus ``.exe`` for a one-file Windows build), checked as publish will. Pure."""
    return artifact_filename(name, version, platform, folder=onedir).filename.removesuffix(ARCHIVE_SUFFIX)


def pyinstaller_command(options: BuildOptions, work: Path, cwd: Path) -> list[str]:
    """The PyInstaller command line, everything it writes under ``work``; relative paths in the extra arguments are from
    ``cwd``. Pure."""
    return [
        options.python,
        "-m",
        "PyInstaller",
        "--onedir" if options.onedir else "--onefile",
        "--name",
        options.name,
        "--noconfirm",
        "--clean",
        "--noupx",
        "--log-level",
        "WARN",
        "--distpath",
        str(work / "dist"),
        "--workpath",
        str(work / "build"),
        "--specpath",
        str(work),
        *absolute_paths(options.pyinstaller_args, cwd),
        str(options.script),
    ]


def absolute_paths(args: Sequence[str], cwd: Path) -> list[str]:
    """``args`` for PyInstaller with the relative paths of its file options made absolute from ``cwd``. Pure."""
    out: list[str] = []
    pending: str | None = None
    for arg in args:
        if pending is not None:
            out.append(_absolute_value(pending, arg, cwd))
            pending = None
            continue
        option, eq, value = arg.partition("=")
        if option in PATH_OPTIONS | PATH_LIST_OPTIONS | SOURCE_DEST_OPTIONS:
            if eq:
                out.append(f"{option}={_absolute_value(option, value, cwd)}")
            else:
                out.append(arg)
                pending = option
            continue
        out.append(arg)
    return out


def _absolute_value(option: str, value: str, cwd: Path) -> str:
    def absolute(path: str) -> str:
        return (
            path
            if not path or path == "NONE" or path.lstrip().startswith("<") or Path(path).is_absolute()
            else str(cwd / path)
        )

    if option in PATH_LIST_OPTIONS:
        return os.pathsep.join(absolute(p) for p in value.split(os.pathsep))
    if option in SOURCE_DEST_OPTIONS:
        sep = ";" if os.name == "nt" and ";" in value else ":"  # PyInstaller 6 takes ':' everywhere, ';' on Windows too
        source, found, dest = value.rpartition(sep)
        return f"{absolute(source)}{sep}{dest}" if found else value
    path, comma, rest = value.partition(",")  # --icon FILE.exe,ID and --resource FILE,TYPE,NAME
    return absolute(path) + comma + rest


def build_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` with the reproducible-build settings on top. Pure."""
    return {**environ, **REPRODUCIBLE_ENV}


def build(options: BuildOptions, environ: Mapping[str, str]) -> Path:
    """Build with PyInstaller (see the module docs), copy the output to its published name, return its path.

    ``environ`` is the environment PyInstaller runs in, before the reproducible settings are
    added. Raises MissingExtraError without PyInstaller, BuildFailedError (with the log's path) when it fails.
    """
    platform = options.platform or current_platform()
    final = output_name(options.name, options.version, platform, options.onedir)
    script = options.script.resolve()
    if not script.is_file():
        raise PublishError(
            f"{options.script} is not a file; pass the app's entry script (what you would give pyinstaller)"
        )
    if options.python == sys.executable:  # another interpreter answers for its own PyInstaller
        require("build", "gupper-publish build")
    work = (options.work_dir or DEFAULT_WORK / options.name).resolve()
    shutil.rmtree(work / "dist", ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    log = work / "pyinstaller.log"
    command = pyinstaller_command(replace(options, script=script), work, Path.cwd())
    with log.open("w", encoding="utf-8", errors="replace") as out:
        proc = subprocess.run(
            command, env=build_environment(environ), stdout=out, stderr=subprocess.STDOUT, check=False
        )
    if proc.returncode != 0:
        raise BuildFailedError(
            f"PyInstaller failed (exit code {proc.returncode}): {_last_error(log)}; the whole log is {log}"
        )
    built = work / "dist" / (options.name if options.onedir else options.name + platform.exe_suffix)
    options.out_dir.mkdir(parents=True, exist_ok=True)
    dest = options.out_dir / final
    _replace(built, dest)
    entry = dest / (options.name + platform.exe_suffix) if options.onedir else dest
    problem = check_file(entry, platform.os, platform.arch)
    if problem is not None:  # e.g. a --target-arch that does not match this machine
        raise BuildFailedError(
            f"{entry} is {problem}; build on the platform the name is for, or publish it with --force"
        )
    return dest


def _replace(built: Path, dest: Path) -> None:
    """Move the build to ``dest``, replacing an older output: never a mix of two builds at ``dest``."""
    tmp = dest.with_name(f".{dest.name}.tmp")
    if tmp.is_dir():
        shutil.rmtree(tmp)
    if built.is_dir():
        shutil.copytree(built, tmp, symlinks=True)
        if dest.is_dir() and not dest.is_symlink():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    else:
        shutil.copy2(built, tmp)
        os.replace(tmp, dest)


def _last_error(log: Path) -> str:
    """The last line of PyInstaller's log that says what went wrong, cut to one line."""
    text = log.read_text(encoding="utf-8", errors="replace").splitlines()
    wanted = (
        [line for line in text if "Error" in line or "ERROR" in line]
        or [line for line in text if line.strip()]
        or ["no output"]
    )
    return " ".join(wanted[-1].split())[:LOG_TAIL]
