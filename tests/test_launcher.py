"""The one-folder launcher (launcher/launcher.c), compiled and run for real.

The target in ``versions/<version>/`` is launcher/testdata/echo_args.c compiled (an .exe is
what Windows can run), so the same tests run on every OS with a C compiler.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


# --- Windows: `current` a folder, the path the app runs from for every version (issue 21, item 3) ---

HOLDER = """
import sys
sys.path[:0] = {paths!r}
from pathlib import Path
from gupper._lock import hold_in_use
held = hold_in_use(Path(sys.argv[1]))
print("held" if held is not None else "not held", flush=True)
sys.stdin.read()  # until the test closes our stdin
"""


def folder_install(root: Path, binaries: Binaries, current: str = "1.0.0", *others: str) -> Path:
    """The Windows one-folder layout: the launcher as <root>/app, the running version in <root>/current,
    others in versions/. Each version's program is the echo target plus a file naming the version."""
    for version, folder in [(current, root / "current"), *((v, root / "versions" / v) for v in others)]:
        folder.mkdir(parents=True)
        shutil.copy2(binaries.echo, folder / ("app" + EXE))
        (folder / "version.txt").write_text(version)
    shutil.copy2(binaries.launcher, root / ("app" + EXE))
    return root / ("app" + EXE)


def holds(root: Path) -> str:
    return (root / "current" / "version.txt").read_text()


def test_a_current_folder_is_run_from_its_own_path(tmp_path: Path, binaries: Binaries) -> None:
    launcher = folder_install(tmp_path, binaries)
    result = run(launcher, "x", env={"ECHO_ARGS_EXIT": "5"})
    assert result.returncode == 5 and result.args == [b"x"], result
    assert ran(result, tmp_path / "current" / ("app" + EXE))  # the one path firewall rules and pins name


def test_a_pending_switch_is_made_before_the_app_starts(tmp_path: Path, binaries: Binaries) -> None:
    launcher = folder_install(tmp_path, binaries, "1.0.0", "2.0.0")
    (tmp_path / "next").write_bytes(b"versions\\2.0.0\r\nversions\\1.0.0\r\n")  # as the updater writes it
    result = run(launcher)
    assert result.returncode == 0 and ran(result, tmp_path / "current" / ("app" + EXE)), result
    assert holds(tmp_path) == "2.0.0" and (tmp_path / "versions" / "1.0.0" / "version.txt").read_text() == "1.0.0"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app" + EXE, "current", "versions"]  # `next` done
    assert sorted(p.name for p in (tmp_path / "versions").iterdir()) == ["1.0.0"]


def test_a_switch_killed_between_its_two_moves_is_finished(tmp_path: Path, binaries: Binaries) -> None:
    launcher = folder_install(tmp_path, binaries, "1.0.0", "2.0.0")
    (tmp_path / "next").write_bytes(b"versions\\2.0.0\r\nversions\\1.0.0\r\n")
    (tmp_path / "current").rename(tmp_path / "versions" / "1.0.0")  # the first move, then a kill
    result = run(launcher)
    assert result.returncode == 0 and holds(tmp_path) == "2.0.0", result
    assert not (tmp_path / "next").exists()


def test_a_switch_waits_while_an_app_runs_from_current(tmp_path: Path, binaries: Binaries) -> None:
    launcher = folder_install(tmp_path, binaries, "1.0.0", "2.0.0")
    (tmp_path / "next").write_bytes(b"versions\\2.0.0\r\nversions\\1.0.0\r\n")
    with holder(tmp_path / "current" / ("app" + EXE)):  # another instance of 1.0.0 runs
        result = run(launcher)
        assert result.returncode == 0 and holds(tmp_path) == "1.0.0", result  # it starts as it was
        assert (tmp_path / "next").is_file() and (tmp_path / "versions" / "2.0.0").is_dir()
    assert run(launcher).returncode == 0 and holds(tmp_path) == "2.0.0"  # once that one has quit


@pytest.mark.parametrize(
    "content",
    [b"versions\\2.0.0\r\n", b"versions\\2.0.0\r\nversions\\..\r\n", b"versions\\..\\..\r\nversions\\1.0.0\r\n", b""],
    ids=["one-line", "dotdot-from", "traversal-to", "empty"],
)
def test_a_malformed_switch_is_ignored_and_the_app_starts(tmp_path: Path, binaries: Binaries, content: bytes) -> None:
    launcher = folder_install(tmp_path, binaries, "1.0.0", "2.0.0")
    (tmp_path / "next").write_bytes(content)
    result = run(launcher)
    assert result.returncode == 0 and result.stderr == "" and holds(tmp_path) == "1.0.0", result
    assert sorted(p.name for p in (tmp_path / "versions").iterdir()) == ["2.0.0"]


@posix_only
def test_a_launcher_started_by_a_restart_waits_for_the_old_app_before_the_switch(
    tmp_path: Path, binaries: Binaries
) -> None:
    """restart_on_exit hands over: the launcher waits until the old app has ended (here: the end of a pipe
    it held), so the switch finds `current` free. Without the wait it would start 1.0.0 again."""
    launcher = folder_install(tmp_path, binaries, "1.0.0", "2.0.0")
    (tmp_path / "next").write_bytes(b"versions\\2.0.0\r\nversions\\1.0.0\r\n")
    read_end, write_end = os.pipe()
    with holder(tmp_path / "current" / ("app" + EXE), pass_fds=(write_end,)) as old_app:
        os.close(write_end)  # the old app holds the only write end
        proc = subprocess.Popen(
            [str(launcher)],
            env={**os.environ, "_GUPPER_HANDOVER": f"fd:{read_end}"},
            pass_fds=(read_end,),
            stdout=subprocess.PIPE,
            text=True,
        )
        os.close(read_end)
        assert waiting_in_poll(proc.pid), "the launcher never waited for the old app"
        assert old_app.stdin is not None
        old_app.stdin.close()  # the old app quits
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and holds(tmp_path) == "2.0.0"
    assert "launcher=" in out and "_GUPPER_HANDOVER" not in os.environ


def waiting_in_poll(pid: int, timeout: float = 60.0) -> bool:
    """Whether process ``pid`` reaches a wait in poll() within ``timeout`` (Linux: its wait channel; elsewhere
    not observable: True)."""
    import time

    wchan = Path(f"/proc/{pid}/wchan")
    if not wchan.exists():
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if "poll" in wchan.read_text():
                return True
        time.sleep(0.01)  # a bounded wait on a condition the kernel reports, not a guess at timing
    return False


@contextlib.contextmanager
def holder(program: Path, pass_fds: tuple[int, ...] = ()) -> Iterator[subprocess.Popen[str]]:
    """A process holding ``program``'s version as a running app does (gupper._lock.hold_in_use)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER.format(paths=sys.path), str(program)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        pass_fds=pass_fds,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        if proc.stdin is not None and not proc.stdin.closed:
            proc.stdin.close()
        proc.wait(timeout=60)


@posix_only  # the app here is a script standing in for one; on Windows the launcher's half runs above
def test_the_updater_writes_the_switch_the_launcher_makes_and_the_way_back(
    tmp_path: Path, binaries: Binaries, sim: Any
) -> None:
    """The Windows layout's two halves together: the updater (Windows semantics) builds and checks
    versions/2.0.0, records the trial and writes `next`; the launcher switches `current`; a 2.0.0 that
    never confirms is switched back the same way."""
    from gupper import Platform, Status
    from gupper.state import StateFile

    from .conftest import fake_app
    from .test_packages import folder_updater, make_folder, serve_package

    root = tmp_path / "root"
    (root / "current").mkdir(parents=True)
    (root / "current" / "app").write_bytes(fake_app("1.0.0"))
    (root / "current" / "app").chmod(0o755)
    shutil.copy2(binaries.launcher, root / "app")
    serve_package(sim, make_folder(tmp_path / "dist", "2.0.0"), tmp_path, "2.0.0", platform="windows-amd64")
    layout = FolderLayout(root, "app")

    def updater(version: str) -> Any:
        return folder_updater(
            sim, layout, version, executable=str(root / "current" / "app"), platform=Platform("windows", "amd64")
        )

    first = updater("1.0.0")
    assert type(first.layout).__name__ == "WindowsFolder" and first.layout.restart_after_exit
    assert first.layout.entry_point(None) == root / "app"  # restarts go through the launcher
    assert first.run(restart=False).status is Status.INSTALLED
    assert (root / "next").read_bytes() == b"versions\\2.0.0\r\nversions\\1.0.0\r\n"
    assert (root / "current" / "app").read_bytes() == fake_app("1.0.0")  # nothing that runs was touched
    trial = StateFile(tmp_path / "state").load().trial
    assert trial is not None and trial.version == "2.0.0" and trial.backup == str(root / "versions" / "1.0.0")
    # another start of 1.0.0 before the switch (an instance held `current`): the trial waits, nothing again
    again = updater("1.0.0")
    assert (
        again.run(restart=False).status is Status.INSTALLED and len([r for r in sim.requests if "tar.gz" in r[1]]) == 1
    )
    assert StateFile(tmp_path / "state").load().trial == trial
    assert run(root / "app").lines == ["2.0.0"]  # the launcher switched: 2.0.0 runs from current/
    assert sorted(p.name for p in root.iterdir()) == ["app", "current", "versions"]
    for _ in range(2):
        assert updater("2.0.0").run(restart=False).status is Status.UP_TO_DATE  # and never confirms
    rolled = updater("2.0.0").run(restart=False)
    assert rolled.status is Status.ROLLED_BACK and rolled.version == "1.0.0"
    assert (root / "next").read_bytes() == b"versions\\1.0.0\r\nversions\\2.0.0\r\n"
    assert run(root / "app").lines == ["1.0.0"]
    assert "marked bad" in updater("1.0.0").run(restart=False).message


RESTARTING_APP = """
import sys
sys.path[:0] = {paths!r}
from pathlib import Path
from gupper import Platform, Updater, UpdaterConfig
from gupper._lock import hold_in_use
root = Path(sys.argv[1])
held = hold_in_use(root / "current" / "app")  # as the running app holds its version
assert held is not None
config = UpdaterConfig(
    app="app", current_version="1.0.0", manifest_url="https://127.0.0.1:9/app/stable/latest.json",
    public_keys=({key!r},), executable=str(root / "current" / "app"), platform=Platform("windows", "amd64"),
    state_dir=str(root.parent / "state"),
)
Updater(config, environ={{}}, argv=["app", "--after"]).restart("2.0.0")
"""


@posix_only
def test_a_restart_hands_over_to_the_launcher_which_switches_once_the_old_app_has_ended(
    tmp_path: Path, binaries: Binaries
) -> None:
    """Updater.restart() on the Windows layout: the launcher is started, the app ends at once, the
    launcher waits for it to be gone and only then switches `current` (the old app held it)."""
    from gupper_publish.signing import keygen

    from .conftest import fake_app

    root = tmp_path / "root"
    for version, folder in (("1.0.0", root / "current"), ("2.0.0", root / "versions" / "2.0.0")):
        folder.mkdir(parents=True)
        (folder / "app").write_bytes(fake_app(version))
        (folder / "app").chmod(0o755)
    shutil.copy2(binaries.launcher, root / "app")
    (root / "next").write_bytes(b"versions\\2.0.0\r\nversions\\1.0.0\r\n")
    public = keygen(tmp_path / "key")[2].to_text()
    script = RESTARTING_APP.format(paths=sys.path, key=public)
    proc = subprocess.run(
        [sys.executable, "-c", script, str(root)], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr  # the old app ended by itself, at once
    assert proc.stdout.splitlines() == ["2.0.0"], proc.stderr  # the new one, run by the launcher after the switch
    assert (root / "current" / "app").read_bytes() == fake_app("2.0.0") and not (root / "next").exists()
