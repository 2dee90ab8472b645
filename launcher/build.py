"""Build the Gupper launcher (``launcher/launcher.c``) with the C compiler at hand.

::

    python launcher/build.py --out DIR [--name app] [--windowed] [--strict]

writes ``DIR/<name>`` (``DIR/<name>.exe`` for Windows). An installer copies it to
``<root>/<app>[.exe]``; it then runs ``<root>/versions/<version>/<app>[.exe]`` for the version
``<root>/current`` names (see the header of launcher.c). The compiler is ``$CC`` when set, else
the first of ``cc``, ``gcc``, ``clang`` on the ``PATH`` (Windows: ``cl`` from a Visual Studio
developer prompt, then MinGW-w64 ``gcc``, ``clang``, ``cc``). The launcher has no dependencies.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "launcher.c"
"""The launcher's source."""

POSIX_COMPILERS = ("cc", "gcc", "clang")
WINDOWS_COMPILERS = ("cl", "gcc", "clang", "cc")


class BuildError(RuntimeError):
    """The launcher (or another program) could not be compiled."""


class CompilerNotFound(BuildError):
    """No C compiler on this machine; the message is one line saying what to install."""


@dataclass(frozen=True)
class Compiler:
    """A C compiler: its command (program path plus any arguments from ``$CC``) and its flavour."""

    command: tuple[str, ...]
    msvc: bool
    """``cl``-style options (MSVC, clang-cl) instead of gcc-style ones."""
    windows_target: bool
    """Builds Windows executables (on Windows, or a MinGW cross compiler): ``.exe`` suffix."""

    @property
    def exe_suffix(self) -> str:
        """``.exe`` for Windows executables, else nothing."""
        return ".exe" if self.windows_target else ""


def find_compiler(environ: Mapping[str, str] | None = None, *, windows: bool | None = None) -> Compiler:
    """The C compiler to use: ``$CC`` when set, else the first known one on the ``PATH``.

    ``environ`` defaults to ``os.environ``, ``windows`` to whether this is Windows. Raises
    CompilerNotFound (one line) when there is none.
    """
    env = os.environ if environ is None else environ
    on_windows = sys.platform == "win32" if windows is None else windows
    search_path = env.get("PATH", os.defpath)
    cc = env.get("CC", "").strip()
    if cc:
        words = shlex.split(cc, posix=not on_windows)
        found = shutil.which(words[0], path=search_path) if words else None
        if found is None:
            raise CompilerNotFound(f"the C compiler named by CC ({cc}) was not found; install it or unset CC")
        return _compiler([found, *words[1:]], on_windows)
    names = WINDOWS_COMPILERS if on_windows else POSIX_COMPILERS
    for name in names:
        found = shutil.which(name, path=search_path)
        if found is not None:
            return _compiler([found], on_windows)
    hint = (
        "install MinGW-w64 gcc or the Visual Studio Build Tools (run from a developer prompt)"
        if on_windows
        else "install gcc or clang (Debian/Ubuntu: build-essential; macOS: xcode-select --install)"
    )
    raise CompilerNotFound(f"no C compiler found (looked for $CC, {', '.join(names)} on PATH): {hint}, or set CC")


def _compiler(command: list[str], on_windows: bool) -> Compiler:
    program = Path(command[0]).name.lower()
    stem = program.removesuffix(".exe")
    msvc = stem in ("cl", "clang-cl")
    return Compiler(tuple(command), msvc=msvc, windows_target=on_windows or "mingw32" in stem)


def compile_program(
    source: Path, exe: Path, *, windowed: bool = False, strict: bool = False, compiler: Compiler | None = None
) -> Path:
    """Compile the one-file C program ``source`` to ``exe`` and return ``exe``.

    ``windowed``: for Windows, the GUI subsystem (no console window; ignored elsewhere).
    ``strict``: compiler warnings are errors (what the tests use). Raises BuildError (with the
    compiler's output) when it fails, CompilerNotFound when there is no compiler.
    """
    cc = compiler or find_compiler()
    exe = exe.absolute()
    exe.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gupper-launcher-") as work:
        if cc.msvc:
            link = ["/SUBSYSTEM:WINDOWS", "/ENTRY:mainCRTStartup"] if windowed else ["/SUBSYSTEM:CONSOLE"]
            cmd = [
                *cc.command,
                "/nologo",
                "/O2",
                "/W3",
                *(["/WX"] if strict else []),
                str(source),
                f"/Fe{exe}",
                f"/Fo{work}{os.sep}",
                "/link",
                *link,
            ]
        else:
            cmd = [
                *cc.command,
                "-std=c11",
                "-O2",
                "-Wall",
                "-Wextra",
                *(["-Werror"] if strict else []),
                "-o",
                str(exe),
                str(source),
            ]
            if cc.windows_target:
                cmd.append("-mwindows" if windowed else "-mconsole")
                if "gcc" in Path(cc.command[0]).name.lower():
                    cmd.append("-static")  # no libgcc DLL beside the launcher
        try:
            proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, errors="replace", check=False)
        except OSError as e:
            raise BuildError(f"{cc.command[0]} cannot be run: {e.strerror or e}") from e
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr).strip()
        raise BuildError(f"{Path(cc.command[0]).name} failed (exit code {proc.returncode}) on {source.name}:\n{output}")
    return exe


def build_launcher(
    out: Path, *, name: str = "launcher", windowed: bool = False, strict: bool = False, compiler: Compiler | None = None
) -> Path:
    """Compile the launcher into the folder ``out`` as ``<name>`` (``<name>.exe`` for Windows); return its path.

    Raises CompilerNotFound (one line) when this machine has no C compiler, BuildError when the
    compiler fails.
    """
    cc = compiler or find_compiler()
    return compile_program(SOURCE, out / (name + cc.exe_suffix), windowed=windowed, strict=strict, compiler=cc)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: build the launcher, print its path; exit code 2 with one line on failure."""
    parser = argparse.ArgumentParser(prog="build.py", description="Build the Gupper launcher for one-folder installs.")
    parser.add_argument("--out", type=Path, required=True, help="folder to write the launcher to")
    parser.add_argument(
        "--name",
        default="launcher",
        help="its file name without .exe: install it as <root>/<app>[.exe] (default: launcher)",
    )
    parser.add_argument(
        "--windowed", action="store_true", help="Windows: GUI subsystem, no console window (for windowed apps)"
    )
    parser.add_argument("--strict", action="store_true", help="treat compiler warnings as errors")
    args = parser.parse_args(argv)
    try:
        path = build_launcher(args.out, name=args.name, windowed=args.windowed, strict=args.strict)
    except BuildError as e:
        print(f"build.py: {e}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
