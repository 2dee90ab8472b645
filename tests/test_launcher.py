"""The one-folder launcher (launcher/launcher.c), compiled and run for real.

The target in ``versions/<version>/`` is launcher/testdata/echo_args.c compiled (an .exe is
what Windows can run), so the same tests run on every OS with a C compiler.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from gupper.folder import FolderLayout, switch
from launcher.build import HERE, CompilerNotFound, build_launcher, compile_program, find_compiler

WINDOWS = sys.platform == "win32"
EXE = ".exe" if WINDOWS else ""
EXIT_BAD_CURRENT = 126
EXIT_CANNOT_START = 127
posix_only = pytest.mark.skipif(WINDOWS, reason="POSIX behaviour (symlinks, exec)")


@dataclass(frozen=True)
class Binaries:
    launcher: Path
    echo: Path


@dataclass(frozen=True)
class Run:
    returncode: int
    lines: list[str]
    stderr: str

    def values(self, key: str) -> list[str]:
        return [line.split("=", 1)[1] for line in self.lines if line.startswith(key + "=")]

    def value(self, key: str) -> str:
        (found,) = self.values(key)
        return found

    @property
    def args(self) -> list[bytes]:
        return [bytes.fromhex(v) for v in self.values("arg")]


@pytest.fixture(scope="module")
def binaries(tmp_path_factory: pytest.TempPathFactory) -> Binaries:
    """The launcher and the echo target, compiled once (warnings are errors); skipped without a compiler."""
    try:
        compiler = find_compiler()
    except CompilerNotFound as e:
        pytest.skip(f"no C compiler on this machine, the launcher cannot be built: {e}")
    out = tmp_path_factory.mktemp("launcher-build")
    launcher = build_launcher(out, strict=True, compiler=compiler)
    echo = compile_program(
        HERE / "testdata" / "echo_args.c", out / ("echo_args" + compiler.exe_suffix), strict=True, compiler=compiler
    )
    return Binaries(launcher, echo)


def install(
    root: Path,
    binaries: Binaries,
    pointer: bytes | None = b"versions/1.0.0\n",
    versions: tuple[str, ...] = ("1.0.0",),
    name: str = "app",
) -> Path:
    """A one-folder install under ``root``: the launcher as ``<root>/<name>``, ``current`` holding ``pointer``."""
    for version in versions:
        folder = root / "versions" / version
        folder.mkdir(parents=True)
        shutil.copy2(binaries.echo, folder / (name + EXE))
    shutil.copy2(binaries.launcher, root / (name + EXE))
    if pointer is not None:
        (root / "current").write_bytes(pointer)
    return root / (name + EXE)


def run(
    command: str | Path, *args: str, cwd: Path | None = None, stdin: bytes = b"", env: dict[str, str] | None = None
) -> Run:
    proc = subprocess.run(
        [str(command), *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        env={**os.environ, **(env or {})},
        timeout=60,
        check=False,
    )
    return Run(proc.returncode, proc.stdout.decode().splitlines(), proc.stderr.decode())


def ran(result: Run, target: Path) -> bool:
    return os.path.samefile(result.value("argv0"), target)


def test_runs_the_current_version_with_its_arguments_and_exit_code(tmp_path: Path, binaries: Binaries) -> None:
    launcher = install(tmp_path, binaries)
    result = run(launcher, "one", "two", env={"ECHO_ARGS_EXIT": "7"})
    assert result.returncode == 7, result
    assert ran(result, tmp_path / "versions" / "1.0.0" / ("app" + EXE))
    assert result.args == [b"one", b"two"]
    assert result.stderr == ""
    # the app learns the stable entry point, to restart through it
    assert os.path.samefile(result.value("launcher"), launcher)


@pytest.mark.parametrize(
    "pointer",
    [b"versions/1.0.0", b"versions/1.0.0\n", b"versions\\1.0.0\r\n", b"\xef\xbb\xbfversions\\1.0.0\r\n"],
    ids=["no-newline", "posix", "windows", "utf8-bom"],
)
def test_pointer_file_forms(tmp_path: Path, binaries: Binaries, pointer: bytes) -> None:
    launcher = install(tmp_path, binaries, pointer)
    result = run(launcher)
    assert result.returncode == 0, result
    assert ran(result, tmp_path / "versions" / "1.0.0" / ("app" + EXE))


def test_the_working_directory_does_not_matter(tmp_path: Path, binaries: Binaries) -> None:
    root, elsewhere = tmp_path / "root", tmp_path / "elsewhere"
    root.mkdir()
    elsewhere.mkdir()
    launcher = install(root, binaries)
    commands = [launcher]
    if not WINDOWS:  # Windows resolves a relative program path against the parent's directory, not cwd
        commands.append(Path(os.path.relpath(launcher, elsewhere)))
    for command in commands:
        result = run(command, "x", cwd=elsewhere)
        assert result.returncode == 0, (command, result)
        assert ran(result, root / "versions" / "1.0.0" / ("app" + EXE))


@posix_only
def test_a_symlink_to_the_launcher_and_path_lookup_work(tmp_path: Path, binaries: Binaries) -> None:
    root, bindir = tmp_path / "root", tmp_path / "bin"
    root.mkdir()
    bindir.mkdir()
    launcher = install(root, binaries)
    (bindir / "app").symlink_to(launcher)  # e.g. /usr/local/bin/app -> /opt/app/app
    result = run("app", "x", cwd=tmp_path, env={"PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"})
    assert result.returncode == 0, result
    assert ran(result, root / "versions" / "1.0.0" / "app")


def test_stdin_stdout_and_stderr_pass_through(tmp_path: Path, binaries: Binaries) -> None:
    launcher = install(tmp_path, binaries)
    data = b"hello\nworld\n\x00\xff"
    result = run(launcher, stdin=data, env={"ECHO_ARGS_STDIN": "1", "ECHO_ARGS_STDERR": "1"})
    assert result.returncode == 0, result
    assert bytes.fromhex(result.value("stdin")) == data
    assert result.stderr.splitlines() == ["echo_args: to stderr"]


@pytest.mark.parametrize("code", [0, 1, 255])
def test_exit_codes_pass_through(tmp_path: Path, binaries: Binaries, code: int) -> None:
    assert run(install(tmp_path, binaries), env={"ECHO_ARGS_EXIT": str(code)}).returncode == code


@posix_only
def test_posix_execs_in_place(tmp_path: Path, binaries: Binaries) -> None:
    """Same pid: signals and the exit status reach the app with no launcher in between."""
    launcher = install(tmp_path, binaries)
    with subprocess.Popen([str(launcher)], stdout=subprocess.PIPE) as popen:
        out, _ = popen.communicate(timeout=60)
    assert popen.returncode == 0
    assert f"pid={popen.pid}" in out.decode().splitlines()


def test_arguments_arrive_intact(tmp_path: Path, binaries: Binaries) -> None:
    launcher = install(tmp_path, binaries)
    args = [
        "a b",
        "",
        'say "hi"',
        "back\\slash\\",
        'x\\"y',
        "tab\there",
        " lead and trail ",
        "%PATH%",
        "^&|<>",
        "--flag=1",
        "'single'",
        "\\\\server\\share",
    ]
    if not WINDOWS:  # the echo target reads its argv in the ANSI code page on Windows
        args.append("unicode-é€")
    result = run(launcher, *args)
    assert result.returncode == 0, result
    assert result.args == [a.encode() for a in args]


@pytest.mark.parametrize("os_name", ["windows", "linux"])
def test_the_updaters_switch_is_followed(tmp_path: Path, binaries: Binaries, os_name: str) -> None:
    """``current`` as updater/folder.py writes it: a pointer file (Windows) or a symlink (POSIX)."""
    if os_name != "windows" and WINDOWS:
        pytest.skip("symlinks need privileges on Windows; the updater writes a pointer file there")
    launcher = install(tmp_path, binaries, pointer=None, versions=("1.0.0", "2.0.0"))
    layout = FolderLayout(tmp_path, "app" + EXE)
    switch(layout, "1.0.0", os_name)
    assert ran(run(launcher), layout.version_dir("1.0.0") / layout.exe)
    switch(layout, "2.0.0", os_name)
    assert (tmp_path / "current").is_symlink() == (os_name != "windows")
    result = run(launcher, "after")
    assert result.returncode == 0, result
    assert ran(result, layout.version_dir("2.0.0") / layout.exe)
    assert result.args == [b"after"]


@posix_only
def test_symlink_current(tmp_path: Path, binaries: Binaries) -> None:
    launcher = install(tmp_path, binaries, pointer=None)
    (tmp_path / "current").symlink_to("versions/1.0.0")
    result = run(launcher)
    assert result.returncode == 0, result
    assert ran(result, tmp_path / "versions" / "1.0.0" / "app")


def test_one_binary_serves_any_app(tmp_path: Path, binaries: Binaries) -> None:
    launcher = install(tmp_path, binaries, name="other-tool")
    assert launcher.name == "other-tool" + EXE
    result = run(launcher)
    assert result.returncode == 0, result
    assert ran(result, tmp_path / "versions" / "1.0.0" / ("other-tool" + EXE))


BAD_POINTERS = {
    "missing": None,
    "empty": b"",
    "only-newline": b"\r\n",
    "traversal": b"versions/../../etc",
    "dotdot": b"versions/..",
    "dot": b"versions/.",
    "drive": b"C:\\evil",
    "absolute": b"/etc",
    "unc": b"\\\\server\\share\\versions\\1.0.0",
    "spaces": b"versions/1.0 beta",
    "too-long": b"versions/" + b"1" * 300,
    "trailing-separator": b"versions/1.0.0/",
    "double-separator": b"versions//1.0.0",
    "two-lines": b"versions/1.0.0\nversions/2.0.0\n",
    "nul": b"versions/1.0.0\x00",
    "other-folder": b"other/1.0.0",
    "no-version": b"versions",
    "utf16": "versions\\1.0.0".encode("utf-16"),
    "huge": b"versions/1.0.0" + b"\n" * 100_000,
}


@pytest.mark.parametrize("pointer", BAD_POINTERS.values(), ids=BAD_POINTERS.keys())
def test_a_bad_pointer_is_refused_and_nothing_runs(tmp_path: Path, binaries: Binaries, pointer: bytes | None) -> None:
    root = tmp_path / "inst" / "root"
    launcher = install(root, binaries, pointer, versions=("1.0.0", "1.0 beta"))
    evil = tmp_path / "inst" / "etc"  # where versions/../../etc leads
    evil.mkdir()
    shutil.copy2(binaries.echo, evil / ("app" + EXE))
    result = run(launcher, "x")
    assert result.returncode == EXIT_BAD_CURRENT, result
    assert result.lines == []  # no target ran: each would print
    (line,) = result.stderr.splitlines()
    assert line.startswith("app" + EXE + ": ") and "current" in line and line.endswith("; reinstall the app"), line
    if not WINDOWS:  # Windows may name the folder by its 8.3 short name
        assert f"{root.resolve() / 'current'} " in line, line


@posix_only
@pytest.mark.parametrize("target", ["/etc", "../versions/1.0.0", "versions/1.0.0/"])
def test_a_bad_symlink_is_refused(tmp_path: Path, binaries: Binaries, target: str) -> None:
    launcher = install(tmp_path, binaries, pointer=None)
    (tmp_path / "current").symlink_to(target)
    result = run(launcher)
    assert result.returncode == EXIT_BAD_CURRENT and result.lines == [], result
    assert len(result.stderr.splitlines()) == 1


def test_a_missing_version_folder_is_reported(tmp_path: Path, binaries: Binaries) -> None:
    launcher = install(tmp_path, binaries, pointer=b"versions\\3.0.0\r\n")
    result = run(launcher)
    assert result.returncode == EXIT_CANNOT_START and result.lines == [], result
    (line,) = result.stderr.splitlines()
    assert "3.0.0" in line and line.endswith("; reinstall the app"), line


def test_the_build_script_runs_and_reports_a_missing_compiler(tmp_path: Path, binaries: Binaries) -> None:
    script = HERE / "build.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--out", str(tmp_path / "out"), "--name", "app"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()) == tmp_path / "out" / ("app" + EXE)
    assert (tmp_path / "out" / ("app" + EXE)).is_file()

    empty = tmp_path / "empty"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "CC"}
    env["PATH"] = str(empty)
    proc = subprocess.run(
        [sys.executable, str(script), "--out", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        env=env,
        cwd=empty,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    (line,) = proc.stderr.splitlines()
    assert line.startswith("build.py: no C compiler found"), line


def test_the_updater_restarts_a_windows_folder_install_through_its_own_launcher_only(tmp_path: Path) -> None:
    layout = FolderLayout(tmp_path / "root", "app.exe")
    (layout.version_dir("2.0.0")).mkdir(parents=True)
    (layout.version_dir("2.0.0") / "app.exe").write_bytes(b"exe")
    layout.current.write_text("versions\\2.0.0\n")
    ours = str(layout.root / "app.exe")
    assert layout.entry_point("windows", launcher=ours) == Path(ours)
    direct = layout.version_dir("2.0.0") / "app.exe"
    for other in (None, "", str(tmp_path / "elsewhere" / "app.exe"), str(layout.root / "other.exe")):
        assert layout.entry_point("windows", launcher=other) == direct  # inherited by an unrelated app: ignored
