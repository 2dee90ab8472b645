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
- ``--strip`` on Linux (unless ``BuildOptions.strip`` is False): the symbols and debug info of the
  bundled shared libraries go (PyNaCl's libsodium ships with them: 3.7 MB a one-file app unpacks
  at every start), which makes the app smaller and its start faster; not on Windows, where
  PyInstaller advises against it, nor on macOS, where stripping breaks the binaries' code
  signatures. PyInstaller's cache, where it keeps the stripped copies, is in the work folder
  unless ``PYINSTALLER_CONFIG_DIR`` says otherwise: ``--clean`` empties it, and a cache shared
  with another build running at the same time would lose files from under that build;
- ``--clean --noconfirm``, and ``--name <app>`` so a one-folder build's executable is named after
  the app, which is where ``gupper-publish`` looks for its entry point.

Arguments after ``--`` go to PyInstaller unchanged, except that relative paths in the options
that take files (``--add-data``, ``--icon``, ``--paths``, ...) are made absolute from the
current folder: with the spec file in the work folder PyInstaller would look for them there.

When the building Python imports Gupper through an editable install (``pip install -e``: a PEP 660
import hook, which PyInstaller does not follow), Gupper's source folder is added to PyInstaller's
``--paths``, so the app bundles it.

The output is checked to be an executable for this platform and then started in self-test mode,
the handshake the client's pre-flight uses before it installs an update
(:func:`gupper.selftest.run_self_test`): it must answer with the version it is built as. A build
that cannot start (a module PyInstaller did not bundle), does not answer or reports another version
is refused with one line saying why and what to do. Only then is it copied to
``<out>/<app>-<version>-<os>-<arch>[.exe]`` (a folder with ``--onedir``) and its path returned.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from packaging.version import Version

from gupper.platforms import Platform, current_platform
from gupper.selftest import SelfTestRun, Verdict, not_ready_reason, run_self_test

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
STRIP_OPTIONS = frozenset({"-s", "--strip"})
STRIPPED_OS = frozenset({"linux"})
"""Where ``--strip`` is passed by default: Windows (PyInstaller advises against it) and macOS (it breaks code
signatures) are left alone."""
DEFAULT_WORK = Path("build") / "gupper"
LOG_TAIL = 300
SELF_TEST_TIMEOUT = 60.0
"""Seconds the built app has to answer its self-test: the client's default ``preflight_timeout``."""
FIND_TIMEOUT = 60.0


@dataclass(frozen=True)
class BuildOptions:
    """What to build and where: the entry script, the app name and version, one file or one folder.

    ``work_dir`` is PyInstaller's work folder (default ``build/gupper/<name>``); keep it the same
    from build to build. ``pyinstaller_args`` go to PyInstaller unchanged (``--windowed``,
    ``--icon``, ``--add-data``...). ``python`` is the interpreter that has PyInstaller and the app's
    dependencies; ``platform`` is the one the output is named for (default: this machine's);
    ``self_test_timeout`` is how long the built app has to answer its self-test. ``strip``: PyInstaller's
    ``--strip`` on Linux (see :func:`strips`); False keeps the bundled libraries' symbols.
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
    self_test_timeout: float = SELF_TEST_TIMEOUT
    strip: bool = True


def output_name(name: str, version: str, platform: Platform, onedir: bool, bundle: bool = False) -> str:
    """``<app>-<version>-<os>-<arch>`` (plus ``.exe`` for a one-file Windows build, ``.app`` for an app
    bundle), checked as publish will. Pure."""
    named = artifact_filename(name, version, platform, folder=onedir, bundle=bundle)
    return named.filename.removesuffix(ARCHIVE_SUFFIX)


WINDOWED_OPTIONS = frozenset({"-w", "--windowed", "--noconsole"})


def makes_bundle(options: BuildOptions, platform: Platform) -> bool:
    """Whether PyInstaller makes a macOS app bundle of this build (``--windowed`` on macOS), which is
    then what is published. Pure.

    Raises:
        PublishError: a windowed one-file build for macOS: PyInstaller deprecates one-file bundles
            (an error from PyInstaller 7), and a one-file program outside its bundle is no app.
    """
    windowed = any(arg in WINDOWED_OPTIONS for arg in options.pyinstaller_args)
    if platform.os != "darwin" or not windowed:
        return False
    if not options.onedir:
        raise PublishError(
            "on macOS a windowed app is a .app bundle, which PyInstaller makes from a one-folder build only (one-file "
            "bundles are deprecated, an error in PyInstaller 7): add --onedir"
        )
    return True


def strips(options: BuildOptions, platform: Platform) -> bool:
    """Whether the build adds PyInstaller's ``--strip``: on Linux unless ``options.strip`` is False or the extra
    arguments already ask for it. Pure."""
    asked = any(arg in STRIP_OPTIONS for arg in options.pyinstaller_args)
    return options.strip and platform.os in STRIPPED_OS and not asked


def pyinstaller_command(options: BuildOptions, work: Path, cwd: Path, platform: Platform | None = None) -> list[str]:
    """The PyInstaller command line, everything it writes under ``work``; relative paths in the extra arguments are from
    ``cwd``; ``platform`` (default: ``options.platform``, else this machine's) decides ``--strip``."""
    strip = strips(options, platform or options.platform or current_platform())
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
        *(["--strip"] if strip else []),
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


def build_environment(environ: Mapping[str, str], work: Path | None = None) -> dict[str, str]:
    """``environ`` with the reproducible-build settings on top and, given the work folder, PyInstaller's cache in it
    (unless ``environ`` sets ``PYINSTALLER_CONFIG_DIR``). Pure."""
    cache = {"PYINSTALLER_CONFIG_DIR": str(work / "pyinstaller")} if work is not None else {}
    return {**cache, **environ, **REPRODUCIBLE_ENV}


def build(options: BuildOptions, environ: Mapping[str, str]) -> Path:
    """Build with PyInstaller, self-test the output (see the module docs), copy it to its published name, return
    its path.

    ``environ`` is the environment PyInstaller runs in, before the reproducible settings are
    added (and the self-test's). Raises MissingExtraError without PyInstaller, BuildFailedError when
    PyInstaller fails (with the log's path) or the built app fails its self-test (nothing is copied then).
    """
    platform = options.platform or current_platform()
    bundle = makes_bundle(options, platform)
    final = output_name(options.name, options.version, platform, options.onedir, bundle)
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
    # An editable install of Gupper is an import hook PyInstaller does not follow: show it the folder.
    paths = [arg for root in hidden_source_roots(options.python, environ) for arg in ("--paths", root)]
    hooked = replace(options, script=script, pyinstaller_args=(*paths, *options.pyinstaller_args))
    command = pyinstaller_command(hooked, work, Path.cwd(), platform)
    with log.open("w", encoding="utf-8", errors="replace") as out:
        proc = subprocess.run(
            command, env=build_environment(environ, work), stdout=out, stderr=subprocess.STDOUT, check=False
        )
    if proc.returncode != 0:
        raise BuildFailedError(
            f"PyInstaller failed (exit code {proc.returncode}): {_last_error(log)}; the whole log is {log}"
        )
    built = work / "dist" / (options.name if options.onedir else options.name + platform.exe_suffix)
    entry = built / (options.name + platform.exe_suffix) if options.onedir else built
    if bundle:  # PyInstaller made <name>.app beside the plain folder: the bundle is the app
        built = work / "dist" / f"{options.name}.app"
        entry = built / "Contents" / "MacOS" / options.name
    problem = check_file(entry, platform.os, platform.arch)
    if problem is not None:  # e.g. a --target-arch that does not match this machine
        raise BuildFailedError(
            f"{entry} is {problem}; build on the platform the name is for, or publish it with --force"
        )
    _check_it_starts(entry, options, environ)  # before it gets a name to publish under
    options.out_dir.mkdir(parents=True, exist_ok=True)
    dest = options.out_dir / final
    _replace(built, dest)
    return dest


def shipping_note(name: str, built: str, platform: Platform) -> str:
    """What to ship of a one-folder build and how its first install looks, for the line ``gupper-publish
    build --onedir`` prints after the output's path (docs/packages.md, "First install"). Pure."""
    if built.endswith(".app"):
        return (
            f"ship the bundle {built} (renamed as users should see it, e.g. {name}.app) for /Applications or "
            "~/Applications, in a .dmg or a zip made with 'ditto -c -k --keepParent'; it updates as a whole "
            "(docs/packages.md, 'App bundles')"
        )
    if platform.os == "windows":
        return (
            f"ship it as <folder>\\{name}.exe (the launcher: python launcher/build.py --name {name} --windowed) and "
            f"this folder as <folder>\\current\\, per user under %LOCALAPPDATA%\\Programs\\{name}; a plain copy "
            "of the folder cannot update itself on Windows (docs/packages.md, 'First install')"
        )
    return (
        f"ship the folder {built} as it is: copy it anywhere the user can write (e.g. ~/opt/{name}) and start "
        f"{name}/{name}; its first update arranges it into versions/ and current, and {name}/{name} stays the way to "
        "start it (docs/packages.md, 'First install')"
    )


def _check_it_starts(entry: Path, options: BuildOptions, environ: Mapping[str, str]) -> None:
    """Run the built app's self-test, the handshake the client's pre-flight uses before installing an
    update; a build that cannot answer it could never be installed, nor start for its first user."""
    version = str(Version(options.version))  # as the manifest will name it and the client will expect it
    try:
        run = run_self_test(entry, environ, options.self_test_timeout)
    except OSError as e:
        raise BuildFailedError(f"the built app {entry} cannot be started here ({e.strerror or e})") from e
    verdict = run.verdict(version)
    if verdict is Verdict.PASSED:
        return
    missing = missing_module(run.output) if verdict is Verdict.FAILED else None
    root = module_roots(options.python, [missing.partition(".")[0]], environ)[0] if missing else None
    raise BuildFailedError(self_test_failure(entry, version, run, options, missing, root))


def self_test_failure(
    entry: Path, version: str, run: SelfTestRun, options: BuildOptions, missing: str | None, root: ModuleRoot | None
) -> str:
    """One line: why the built app failed its self-test and what to do. ``missing`` is the module its
    traceback says is missing, ``root`` where the building Python finds that module. Pure."""
    verdict = run.verdict(version)
    app = f"the built app {entry}"
    if verdict is Verdict.TIMED_OUT:
        return (
            f"{app} did not answer its self-test within {options.self_test_timeout:g} s: create the Updater (or "
            "call gupper.answer_self_test(version)) first thing in main(), before any window or input"
        )
    if verdict is Verdict.KILLED_FROM_OUTSIDE:
        return f"the self-test of {app} was killed by signal {-(run.returncode or 0)} from outside; build again"
    if verdict is Verdict.WRONG_VERSION:
        return (
            f"{app} reports version {run.answered}, and it is built as {version}: make UpdaterConfig.current_version "
            f"the version you build (or build with --version {run.answered})"
        )
    if verdict is Verdict.NO_ANSWER:
        return (
            f"{app} ran and exited without answering Gupper's self-test, so no install could ever update to it: "
            "create the Updater (or call gupper.answer_self_test(version)) first thing in main()"
        )
    reason = not_ready_reason(run.output)
    if missing is None and reason is not None:
        return f"{app} starts, but its version {reason}: rebuild it with what it leaves out"
    if missing is None:
        return f"{app} cannot start (its self-test exited with code {run.returncode}): {error_line(run.output)}"
    if root is None:
        what = (
            f"{missing.partition('.')[0]} is not installed for {options.python}: install it there, or give "
            "PyInstaller its folder after '--' (-- --paths DIR)"
        )
    elif not root.on_path:
        what = (
            f"{options.python} imports {missing.partition('.')[0]} from {root.root} through an import hook "
            f"PyInstaller does not follow (an editable install): pass -- --paths {root.root}"
        )
    else:
        what = f"PyInstaller did not see it imported: pass -- --hidden-import {missing}"
    fails = "starts but could not update itself later" if not_ready_reason(run.output) else "cannot start"
    return f"{app} {fails}: No module named {missing!r}; {what}"


_MISSING = re.compile(r"No module named '([\w.]+)'")
_EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b.*")


def missing_module(output: str) -> str | None:
    """The module a traceback says is missing (``ModuleNotFoundError: No module named 'x'``), the last one. Pure."""
    found = _MISSING.findall(output)
    return found[-1] if found else None


def error_line(output: str) -> str:
    """The line of a failed start that says what went wrong (a traceback's last), cut to one line. Pure."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    wanted = [line for line in lines if _EXCEPTION.match(line)] or [
        line for line in lines if not line.startswith("[PYI-")
    ]
    return " ".join((wanted[-1] if wanted else "no output").split())[:LOG_TAIL]


@dataclass(frozen=True)
class ModuleRoot:
    """Where an interpreter imports a top-level module from, and whether that folder is on its ``sys.path``
    (PyInstaller looks on ``sys.path`` and its ``--paths``; an editable install's import hook it does not follow)."""

    root: str
    on_path: bool


_FIND_ROOTS = """
import importlib.util, json, os, sys
on_path = {os.path.realpath(p or os.getcwd()) for p in sys.path}
found = []
for name in sys.argv[1:]:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        spec = None
    where = list(spec.submodule_search_locations or []) if spec is not None else []
    origin = where[0] if where else spec.origin if spec is not None else None
    if not origin or not os.path.exists(origin):
        found.append(None)
        continue
    root = os.path.dirname(os.path.realpath(origin))
    found.append({"root": root, "on_path": root in on_path})
print(json.dumps(found))
"""


def module_roots(python: str, names: Sequence[str], environ: Mapping[str, str]) -> list[ModuleRoot | None]:
    """Where ``python`` (in ``environ``) imports each top-level module of ``names`` from; None for one it cannot
    find."""
    proc = subprocess.run(
        [python, "-c", _FIND_ROOTS, *names],
        env=dict(environ),
        capture_output=True,
        text=True,
        timeout=FIND_TIMEOUT,
        check=False,
    )
    if proc.returncode != 0:
        return [None] * len(names)
    return [ModuleRoot(f["root"], f["on_path"]) if f else None for f in json.loads(proc.stdout)]


def hidden_source_roots(python: str, environ: Mapping[str, str]) -> list[str]:
    """The folders holding Gupper's own packages when ``python`` imports them through an import hook
    PyInstaller does not follow (an editable install): given to PyInstaller with ``--paths``."""
    return [r.root for r in module_roots(python, ["gupper"], environ) if r is not None and not r.on_path]


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
