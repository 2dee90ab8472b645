"""``gupper-publish build``: real PyInstaller builds of a small app of its own (not ``app/``).

Two builds of the same source are byte-identical, two versions differing in one constant give a
patch of a few hundred bytes, the output is named for publishing and runs, and a one-folder
build's entry point is what the publisher looks for.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import bsdiff4
import pytest

from gupper.platforms import current_platform
from gupper_publish.build import REPRODUCIBLE_ENV, BuildOptions, absolute_paths, output_name, pyinstaller_command

TIMEOUT = 600
PLATFORM = current_platform()

SCRIPT = '''"""A tiny app of its own: prints its version and a computed line."""
import json
import sys

VERSION = "{version}"


def main() -> int:
    print(json.dumps({{"app": "tiny", "version": VERSION, "args": sys.argv[1:]}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in REPRODUCIBLE_ENV}  # the helper sets them itself
    return subprocess.run(
        [sys.executable, "-m", "gupper_publish", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def write_app(project: Path, version: str) -> Path:
    (project / "src").mkdir(parents=True, exist_ok=True)
    script = project / "src" / "tiny.py"
    script.write_text(SCRIPT.format(version=version))
    return script


@pytest.mark.e2e
def test_two_builds_are_identical_and_two_versions_differ_by_a_tiny_patch(tmp_path: Path) -> None:
    project = tmp_path / "project"
    write_app(project, "1.0.0")
    first = cli("build", "src/tiny.py", "--name", "tiny", "--version", "1.0.0", cwd=project)
    assert first.returncode == 0, first.stderr
    out = project / "dist" / f"tiny-1.0.0-{PLATFORM.key}{PLATFORM.exe_suffix}"
    assert first.stdout == f"{Path('dist') / out.name}\n" and first.stderr == ""
    one = out.read_bytes()
    run = subprocess.run([str(out), "hello"], capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert run.returncode == 0 and run.stdout.strip() == '{"app": "tiny", "version": "1.0.0", "args": ["hello"]}'
    again = cli("build", "src/tiny.py", "--name", "tiny", "--version", "1.0.0", cwd=project)
    assert again.returncode == 0, again.stderr
    assert out.read_bytes() == one  # byte-identical: PYTHONHASHSEED=0 and the same work folder
    write_app(project, "1.0.1")
    second = cli("build", "src/tiny.py", "--name", "tiny", "--version", "1.0.1", cwd=project)
    assert second.returncode == 0, second.stderr
    two = (project / "dist" / f"tiny-1.0.1-{PLATFORM.key}{PLATFORM.exe_suffix}").read_bytes()
    patch = bsdiff4.diff(one, two)
    print(f"\nbuild {len(one)} bytes; patch 1.0.0 -> 1.0.1: {len(patch)} bytes")
    assert len(patch) < 2000 and bsdiff4.patch(one, patch) == two
    # The named output publishes as it is (its header matches its name).
    published = cli(
        "publish", "--store", str(tmp_path / "store"), "--key", str(keygen(tmp_path)), str(out), cwd=project
    )
    assert published.returncode == 0, published.stderr


def keygen(tmp_path: Path) -> Path:
    from gupper_publish import keygen as make

    return make(tmp_path / "keys" / "release")[0]


@pytest.mark.e2e
def test_a_one_folder_build_is_named_and_its_entry_point_publishes(tmp_path: Path) -> None:
    project = tmp_path / "project"
    write_app(project, "2.0.0")
    (project / "src" / "notes.txt").write_text("shipped beside the app\n")
    data = f"src/notes.txt{os.pathsep}."  # PyInstaller's SOURCE:DEST (';' on Windows)
    proc = cli(
        "build",
        "src/tiny.py",
        "--name",
        "tiny",
        "--version",
        "2.0.0",
        "--onedir",
        "--out",
        "out",
        "--",
        "--add-data",
        data,
        cwd=project,
    )
    assert proc.returncode == 0, proc.stderr
    folder = project / "out" / f"tiny-2.0.0-{PLATFORM.key}"
    assert proc.stdout == f"{Path('out') / folder.name}\n"
    exe = folder / f"tiny{PLATFORM.exe_suffix}"
    assert (folder / "_internal").is_dir() and subprocess.run(
        [str(exe)], capture_output=True, text=True, timeout=TIMEOUT, check=False
    ).stdout.count("2.0.0") == 1
    assert (
        folder / "_internal" / "notes.txt"
    ).read_text() == "shipped beside the app\n"  # the arguments after '--' reached PyInstaller
    published = cli(
        "publish",
        "--json",
        "--store",
        str(tmp_path / "store"),
        "--key",
        str(keygen(tmp_path)),
        str(folder),
        cwd=project,
    )
    assert published.returncode == 0, published.stderr
    assert (tmp_path / "store" / "tiny" / "2.0.0" / f"tiny-2.0.0-{PLATFORM.key}.tar.gz").exists()


@pytest.mark.e2e
def test_a_failing_build_says_why_in_one_line_and_where_the_log_is(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "src" / "broken.py").write_text("def main(:\n")
    proc = cli("build", "src/broken.py", "--name", "broken", "--version", "1.0", cwd=project)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("gupper-publish: error: PyInstaller failed (exit code 1): ")
    assert proc.stderr.rstrip().endswith(
        f"the whole log is {project / 'build' / 'gupper' / 'broken' / 'pyinstaller.log'}"
    )
    assert not (project / "dist").exists()
    bad = cli("build", "src/broken.py", "--name", "bro ken", "--version", "1.0", cwd=project)
    assert bad.returncode == 1 and "app name 'bro ken' must be letters" in bad.stderr


def test_the_command_line_and_name_are_the_documented_ones() -> None:
    options = BuildOptions(
        script=Path("src/tiny.py"), name="tiny", version="1.0", pyinstaller_args=("--windowed",), python="py"
    )
    cmd = pyinstaller_command(options, Path("/w"), Path("/project"))
    assert cmd[:3] == ["py", "-m", "PyInstaller"] and cmd[-2:] == ["--windowed", "src/tiny.py"]
    for flag in ("--onefile", "--noupx", "--clean", "--noconfirm"):
        assert flag in cmd
    assert cmd[cmd.index("--workpath") + 1] == str(Path("/w/build")) and cmd[cmd.index("--name") + 1] == "tiny"
    assert REPRODUCIBLE_ENV["PYTHONHASHSEED"] == "0"
    from gupper.platforms import Platform

    assert output_name("tiny", "1.0", Platform("windows", "arm64"), onedir=False) == "tiny-1.0-windows-arm64.exe"
    assert output_name("tiny", "01.2", Platform("darwin", "arm64"), onedir=True) == "tiny-1.2-darwin-arm64"


def test_relative_paths_for_pyinstaller_are_taken_from_the_current_folder() -> None:
    # The spec file lives in the work folder, where PyInstaller would otherwise look for them.
    cwd = Path("/project").resolve()
    given = [
        "--add-data",
        "assets:assets",
        "--add-binary=lib/x.so:.",
        "--icon",
        "app.ico",
        "-i",
        "NONE",
        "--paths",
        f"src{os.pathsep}/abs",
        "--resource",
        "res/a.bin,BINARY",
        "--windowed",
        "--hidden-import",
        "assets",
        "--manifest",
        "<xml/>",
    ]
    assert absolute_paths(given, cwd) == [
        "--add-data",
        f"{cwd / 'assets'}:assets",
        f"--add-binary={cwd / 'lib/x.so'}:.",
        "--icon",
        str(cwd / "app.ico"),
        "-i",
        "NONE",
        "--paths",
        f"{cwd / 'src'}{os.pathsep}/abs",
        "--resource",
        f"{cwd / 'res/a.bin'},BINARY",
        "--windowed",
        "--hidden-import",
        "assets",
        "--manifest",
        "<xml/>",
    ]
