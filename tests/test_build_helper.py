"""``gupper-publish build``: real PyInstaller builds of a small app of its own (not ``app/``).

Two builds of the same source are byte-identical, two versions differing in one constant give a
patch of a few hundred bytes, the output is named for publishing and runs, and a one-folder
build's entry point is what the publisher looks for. On Linux the bundled libraries are stripped
(``--no-strip`` keeps them as installed).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from dataclasses import replace
from importlib import metadata
from pathlib import Path

import bsdiff4
import nacl
import pytest
from PyInstaller.archive.readers import CArchiveReader

import gupper
from gupper.platforms import Platform, current_platform
from gupper.selftest import SelfTestRun, Verdict, preflight
from gupper_publish.build import (
    REPRODUCIBLE_ENV,
    BuildOptions,
    ModuleRoot,
    absolute_paths,
    build,
    build_environment,
    error_line,
    hidden_source_roots,
    makes_bundle,
    missing_module,
    module_roots,
    output_name,
    pyinstaller_command,
    self_test_failure,
    shipping_note,
    strips,
)
from gupper_publish.errors import PublishError

TIMEOUT = 600
PLATFORM = current_platform()

SCRIPT = '''"""A tiny app of its own: answers Gupper's self-test, prints its version and a computed line."""
import json
import sys

from gupper import answer_self_test

VERSION = "{version}"


def main() -> int:
    answer_self_test(VERSION)  # first thing: a self-test ends here
    print(json.dumps({{"app": "tiny", "version": VERSION, "args": sys.argv[1:]}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''


def cli(*args: str, cwd: Path, **extra_env: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in REPRODUCIBLE_ENV} | extra_env  # the helper sets them
    return subprocess.run(
        [sys.executable, "-m", "gupper_publish", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def installed_libsodium() -> Path:
    """PyNaCl's libsodium as pip installed it (with its symbols and debug info)."""
    (found,) = (Path(nacl.__file__).parent).glob("_sodium*")
    return found


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
    archive = CArchiveReader(str(out))
    (sodium,) = [name for name in archive.toc if name.replace("\\", "/").startswith("nacl/_sodium")]
    bundled, installed = archive.extract(sodium), installed_libsodium().read_bytes()
    if PLATFORM.os == "linux":  # --strip: libsodium's symbols and debug info (most of its 3.7 MB) are not shipped
        assert len(bundled) < len(installed) / 2, (len(bundled), len(installed))
    else:  # Windows and macOS builds are not stripped
        assert bundled == installed
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
        "--no-strip",
        "--",
        "--add-data",
        data,
        cwd=project,
    )
    assert proc.returncode == 0, proc.stderr
    folder = project / "out" / f"tiny-2.0.0-{PLATFORM.key}"
    (sodium,) = (folder / "_internal" / "nacl").glob("_sodium*")
    bundled, installed = sodium.read_bytes(), installed_libsodium().read_bytes()
    if PLATFORM.os == "linux":  # --no-strip keeps the symbols; Gupper's hook leaves the debug sections out
        assert b".symtab" in bundled and b".debug_info" in installed and b".debug_info" not in bundled
    else:  # the library as installed
        assert bundled == installed
    assert proc.stdout == f"{Path('out') / folder.name}\n"
    assert proc.stderr == shipping_note("tiny", str(Path("out") / folder.name), PLATFORM) + "\n"  # what to ship
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


def test_a_one_folder_build_says_what_to_ship_and_how_a_first_install_looks() -> None:
    """Copied as it is on Linux and macOS (its first update arranges it); on Windows the launcher layout."""
    linux = shipping_note("notes", "dist/notes-1.0.0-linux-amd64", Platform("linux", "amd64"))
    assert linux == (
        "ship the folder dist/notes-1.0.0-linux-amd64 as it is: copy it anywhere the user can write (e.g. ~/opt/notes) "
        "and start notes/notes; its first update arranges it into versions/ and current, and notes/notes stays the "
        "way to start it (docs/packages.md, 'First install')"
    )
    windows = shipping_note("notes", "dist/notes-1.0.0-windows-amd64", Platform("windows", "amd64"))
    assert "<folder>\\notes.exe (the launcher" in windows and "<folder>\\current\\" in windows
    assert "cannot update itself on Windows" in windows and "\n" not in windows + linux


def test_a_windowed_macos_build_is_its_app_bundle_and_one_file_is_refused_before_building(tmp_path: Path) -> None:
    """Issue 21, item 2: what is built for macOS is what its installs take (an app bundle updated as a whole)."""
    mac = Platform("darwin", "arm64")
    windowed = BuildOptions(tmp_path / "notes.py", "notes", "1.0.0", onedir=True, pyinstaller_args=("--windowed",))
    assert makes_bundle(windowed, mac) and not makes_bundle(windowed, Platform("linux", "amd64"))
    assert not makes_bundle(BuildOptions(tmp_path / "notes.py", "notes", "1.0.0", onedir=True), mac)
    assert output_name("notes", "1.0.0", mac, True, bundle=True) == "notes-1.0.0-darwin-arm64.app"
    onefile = BuildOptions(tmp_path / "notes.py", "notes", "1.0.0", pyinstaller_args=("-w",), platform=mac)
    with pytest.raises(PublishError, match=r"on macOS a windowed app is a \.app bundle, .*: add --onedir"):
        build(onefile, {})  # refused before PyInstaller runs (the script does not even exist)
    note = shipping_note("notes", "dist/notes-1.0.0-darwin-arm64.app", mac)
    assert note.startswith("ship the bundle dist/notes-1.0.0-darwin-arm64.app (renamed as users should see it")


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


def test_builds_are_stripped_on_linux_only_and_never_twice() -> None:
    linux, windows, mac = Platform("linux", "arm64"), Platform("windows", "amd64"), Platform("darwin", "arm64")
    options = BuildOptions(script=Path("tiny.py"), name="tiny", version="1.0", python="py")
    assert "--strip" in pyinstaller_command(options, Path("/w"), Path("/p"), linux)
    assert strips(options, linux) and not strips(options, windows) and not strips(options, mac)
    for kept in (replace(options, strip=False), replace(options, pyinstaller_args=("-s",))):
        assert not strips(kept, linux)
    assert "--strip" not in pyinstaller_command(replace(options, strip=False), Path("/w"), Path("/p"), linux)
    asked = pyinstaller_command(replace(options, pyinstaller_args=("--strip",)), Path("/w"), Path("/p"), linux)
    assert asked.count("--strip") == 1
    assert "--strip" not in pyinstaller_command(replace(options, platform=mac), Path("/w"), Path("/p"))


def test_pyinstallers_cache_is_the_builds_own_unless_the_environment_names_one() -> None:
    # --clean empties PyInstaller's cache, where --strip keeps its stripped copies: a cache shared with
    # another build running at the same time would lose them from under it.
    work = Path("/w/build/gupper/tiny")
    env = build_environment({"PATH": "/bin", "PYTHONHASHSEED": "random"}, work)
    assert env == {"PATH": "/bin", "PYINSTALLER_CONFIG_DIR": str(work / "pyinstaller"), **REPRODUCIBLE_ENV}
    assert build_environment({"PYINSTALLER_CONFIG_DIR": "/mine"}, work)["PYINSTALLER_CONFIG_DIR"] == "/mine"


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


# --- The built app's self-test: the client's pre-flight handshake, before the build says it is done ---

HOOKED_APP = '''"""An app that imports a library only an import hook finds (as an editable install's does)."""
import sys

from gupper import answer_self_test

import hookedlib

VERSION = "1.0.0"


def main() -> int:
    answer_self_test(VERSION)
    print(f"tiny {VERSION} with {hookedlib.NAME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''

# What setuptools writes for 'pip install -e' (a PEP 660 finder on sys.meta_path): the library's folder is
# not on sys.path, where PyInstaller looks. Installed at start-up from PYTHONPATH, here for the build.
HOOK = """import importlib.abc
import importlib.util
import sys

SOURCE = {source!r}


class EditableFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "hookedlib":
            return None
        return importlib.util.spec_from_file_location(
            name, f"{{SOURCE}}/hookedlib/__init__.py", submodule_search_locations=[f"{{SOURCE}}/hookedlib"]
        )


sys.meta_path.append(EditableFinder())
"""


def gupper_is_editable() -> bool:
    """Whether the interpreter running the builds has gupper as an editable install (scripts/_venv.sh's .venv)."""
    # The installed distribution's record, not the gupper.egg-info a source checkout may hold.
    (installed,) = metadata.distributions(name="gupper", path=[sysconfig.get_paths()["purelib"]])
    direct = installed.read_text("direct_url.json")
    return bool(direct and json.loads(direct).get("dir_info", {}).get("editable"))


@pytest.mark.e2e
def test_a_build_from_an_editable_install_of_gupper_answers_its_self_test_and_runs(tmp_path: Path) -> None:
    if not gupper_is_editable():
        pytest.skip("gupper is a plain install here; scripts/_venv.sh's .venv has it editable")
    # The case PyInstaller alone gets wrong: gupper's folder is not on the building Python's sys.path.
    (root,) = module_roots(sys.executable, ["gupper"], os.environ)
    assert root == ModuleRoot(str(Path(gupper.__file__).resolve().parent.parent), on_path=False)
    project = tmp_path / "project"
    write_app(project, "3.0.0")
    proc = cli("build", "src/tiny.py", "--name", "tiny", "--version", "3.0.0", cwd=project)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    exe = project / "dist" / f"tiny-3.0.0-{PLATFORM.key}{PLATFORM.exe_suffix}"
    ran = subprocess.run([str(exe), "x"], capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert ran.returncode == 0 and json.loads(ran.stdout) == {"app": "tiny", "version": "3.0.0", "args": ["x"]}
    preflight(exe, "3.0.0", os.environ, TIMEOUT)  # what an install updating to it will ask: answered


@pytest.mark.e2e
def test_a_build_that_cannot_start_is_refused_in_one_line_naming_the_missing_module(tmp_path: Path) -> None:
    project, source, hook = tmp_path / "project", tmp_path / "libsrc", tmp_path / "hook"
    (project / "src").mkdir(parents=True)
    (project / "src" / "app.py").write_text(HOOKED_APP)
    (source / "hookedlib").mkdir(parents=True)
    (source / "hookedlib" / "__init__.py").write_text('NAME = "hookedlib"\n')
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(HOOK.format(source=str(source)))
    built = project / "build" / "gupper" / "hooked" / "dist" / f"hooked{PLATFORM.exe_suffix}"
    proc = cli("build", "src/app.py", "--name", "hooked", "--version", "1.0.0", cwd=project, PYTHONPATH=str(hook))
    assert proc.returncode == 1 and proc.stdout == "" and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr == (
        f"gupper-publish: error: the built app {built} cannot start: No module named 'hookedlib'; "
        f"{sys.executable} imports hookedlib from {source} through an import hook PyInstaller does not "
        f"follow (an editable install): pass -- --paths {source}\n"
    )
    assert not (project / "dist").exists()  # nothing named for publishing
    # The line's advice, taken: the build answers its self-test and runs.
    proc = cli(
        "build",
        "src/app.py",
        "--name",
        "hooked",
        "--version",
        "1.0.0",
        "--",
        "--paths",
        str(source),
        cwd=project,
        PYTHONPATH=str(hook),
    )
    assert proc.returncode == 0, proc.stderr
    exe = project / "dist" / f"hooked-1.0.0-{PLATFORM.key}{PLATFORM.exe_suffix}"
    ran = subprocess.run([str(exe)], capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert ran.returncode == 0 and ran.stdout == "tiny 1.0.0 with hookedlib\n", ran.stderr


def not_ready(reason: str) -> str:
    """What a self-test prints when its version could not update itself later (gupper.selftest)."""
    return f"gupper-self-test-failed: 1.2.0 cannot update itself later: {reason}\n"


def test_the_self_test_verdicts_and_the_lines_they_give() -> None:
    options = BuildOptions(script=Path("app.py"), name="tiny", version="1.2.0", python="/venv/bin/python")
    exe = Path("/w/dist/tiny")
    traceback = (
        'Traceback (most recent call last):\n  File "app.py", line 3, in <module>\n'
        "ModuleNotFoundError: No module named 'hookedlib.sub'\n"
        "[PYI-12:ERROR] Failed to execute script 'app' due to unhandled exception!\n"
    )
    failed = SelfTestRun(1, None, traceback)
    assert failed.verdict("1.2.0") is Verdict.FAILED and missing_module(traceback) == "hookedlib.sub"
    lines = {
        "not installed": self_test_failure(exe, "1.2.0", failed, options, "hookedlib.sub", None),
        "hidden import": self_test_failure(exe, "1.2.0", failed, options, "x.y", ModuleRoot("/src", on_path=True)),
        "crash": self_test_failure(
            exe, "1.2.0", SelfTestRun(1, None, "ValueError: bad\n[PYI-1:ERROR] x\n"), options, None, None
        ),
        "no answer": self_test_failure(exe, "1.2.0", SelfTestRun(0, None, "hello\n"), options, None, None),
        "wrong version": self_test_failure(exe, "1.2.0", SelfTestRun(0, "1.1.0", ""), options, None, None),
        "timeout": self_test_failure(exe, "1.2.0", SelfTestRun(None, None, ""), options, None, None),
        "no libsodium": self_test_failure(
            exe,
            "1.2.0",
            SelfTestRun(3, None, not_ready("ModuleNotFoundError: No module named 'nacl'")),
            options,
            "nacl",
            ModuleRoot("/venv/site-packages", on_path=True),
        ),
        "no CA bundle": self_test_failure(
            exe,
            "1.2.0",
            SelfTestRun(3, None, not_ready("ConfigError: cannot load the CA bundle /x/cacert.pem")),
            options,
            None,
            None,
        ),
    }
    assert lines == {
        "not installed": "the built app /w/dist/tiny cannot start: No module named 'hookedlib.sub'; hookedlib is not "
        "installed for /venv/bin/python: install it there, or give PyInstaller its folder after '--' (-- --paths DIR)",
        "hidden import": "the built app /w/dist/tiny cannot start: No module named 'x.y'; PyInstaller did not see it "
        "imported: pass -- --hidden-import x.y",
        "crash": "the built app /w/dist/tiny cannot start (its self-test exited with code 1): ValueError: bad",
        "no answer": "the built app /w/dist/tiny ran and exited without answering Gupper's self-test, so no install "
        "could ever update to it: create the Updater (or call gupper.answer_self_test(version)) first thing in main()",
        "wrong version": "the built app /w/dist/tiny reports version 1.1.0, and it is built as 1.2.0: make "
        "UpdaterConfig.current_version the version you build (or build with --version 1.1.0)",
        "timeout": "the built app /w/dist/tiny did not answer its self-test within 60 s: create the Updater (or call "
        "gupper.answer_self_test(version)) first thing in main(), before any window or input",
        "no libsodium": "the built app /w/dist/tiny starts but could not update itself later: No module named 'nacl'; "
        "PyInstaller did not see it imported: pass -- --hidden-import nacl",
        "no CA bundle": "the built app /w/dist/tiny starts, but its version 1.2.0 cannot update itself later: "
        "ConfigError: cannot load the CA bundle /x/cacert.pem: rebuild it with what it leaves out",
    }
    assert all("\n" not in line for line in lines.values())
    assert (
        error_line("") == "no output"
        and error_line("  first\n  RuntimeError: last one  \n") == "RuntimeError: last one"
    )


def test_the_building_python_is_asked_where_it_imports_from(tmp_path: Path) -> None:
    (tmp_path / "plainmod.py").write_text("")
    found = module_roots(
        sys.executable, ["json", "no_such_module_here", "plainmod"], {**os.environ, "PYTHONPATH": str(tmp_path)}
    )
    json_root = ModuleRoot(str(Path(json.__file__).resolve().parent.parent), on_path=True)
    assert found == [json_root, None, ModuleRoot(str(tmp_path.resolve()), on_path=True)]
    assert hidden_source_roots(sys.executable, os.environ) == (
        [str(Path(gupper.__file__).resolve().parent.parent)] if gupper_is_editable() else []
    )
