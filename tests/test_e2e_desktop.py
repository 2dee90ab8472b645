"""Desktop apps that ask first, for real (issue 20): the example apps (examples/tk_notes, a Tk app;
examples/qt_viewer, a PySide6 one-folder app) built with ``gupper-publish build -- --windowed``,
published to the local store, run on an Xvfb screen and driven through their windows with xdotool.

- ask, patch, restart: the user says yes twice, the note typed into 1.0.0 is saved by its own quit
  path and 2.0.0 opens with it; exactly one Notes window afterwards;
- a 1.0.0 that declined the restart keeps running after 2.0.0 replaced its file, and loads code it
  never loaded before (File > Export imports csv and xml.dom.minidom), as does a second 1.0.0
  instance that never checked;
- a 3.0.0 that crashes building its window, installed through the GUI flow: rolled back to 1.0.0
  at its third start, which opens 1.0.0's window;
- the Qt app: ask, folder delta (a few hundred bytes of a 170 MB bundle), restart.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gupper.state import StateFile

from .desktop_support import WAIT, Screen, build_example, kill_group_of, processes_of
from .e2e_support import E2E

pytestmark = [pytest.mark.e2e, pytest.mark.posix]

ROOT = Path(__file__).resolve().parent.parent
NOTES = ROOT / "examples" / "tk_notes"
VIEWER = ROOT / "examples" / "qt_viewer"
CRASH = ("        self.root = root = tk.Tk()\n", '        raise RuntimeError("3.0.0 cannot build its window")\n')
DOCS_SHOT = ROOT / "docs" / "images" / "tk-update-dialog.png"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Apps:
    """The example apps built for this module's store, each once."""

    e2e: E2E
    out: Path
    built: dict[tuple[str, str, bool], Path] = field(default_factory=dict)

    def notes(self, version: str, crash: bool = False) -> Path:
        if ("notes", version, crash) not in self.built:
            settings = (
                f'APP = "notes"\nVERSION = "{version}"\n'
                f'MANIFEST_URL = "{self.e2e.store.url("notes/stable/latest.json")}"\n'
                f'PUBLIC_KEYS = ["{self.e2e.key.public}"]\n'
                "import os\n"
                'NOTES_FILE = os.environ.get("NOTES_TEST_FILE", "~/.local/share/notes/note.txt")\n'
                "FIRST_CHECK = 3600.0\n"
            )
            edit = [(CRASH[0], CRASH[1] + CRASH[0])] if crash else []
            self.built["notes", version, crash] = build_example(
                NOTES, "notes.py", "notes", version, settings, self.out, edit=edit
            )
        return self.built["notes", version, crash]

    def viewer(self, version: str) -> Path:
        if ("viewer", version, False) not in self.built:
            settings = (
                f'APP = "viewer"\nVERSION = "{version}"\n'
                f'MANIFEST_URL = "{self.e2e.store.url("viewer/stable/latest.json")}"\n'
                f'PUBLIC_KEYS = ["{self.e2e.key.public}"]\nFIRST_CHECK = 1.0\n'
            )
            self.built["viewer", version, False] = build_example(
                VIEWER, "viewer.py", "viewer", version, settings, self.out, onedir=True
            )
        return self.built["viewer", version, False]


@pytest.fixture(scope="module")
def apps(e2e: E2E, tmp_path_factory: pytest.TempPathFactory) -> Apps:
    return Apps(e2e, tmp_path_factory.mktemp("desktop-builds"))


@dataclass
class Install:
    exe: Path
    home: Path
    screen: Screen
    e2e: E2E
    started: list[subprocess.Popen[str]] = field(default_factory=list)

    def env(self, note: str = "note.txt") -> dict[str, str]:
        tmpdir = self.home / "tmp"
        tmpdir.mkdir(exist_ok=True)
        base = {k: v for k, v in os.environ.items() if not k.startswith(("_PYI_", "PYINSTALLER_", "GUPPER_"))}
        return {
            **base,
            **self.screen.env(),
            "REQUESTS_CA_BUNDLE": self.e2e.store.ca,
            "XDG_STATE_HOME": str(self.home / "state"),
            "TMPDIR": str(tmpdir),
            "NOTES_TEST_FILE": str(self.home / note),
            "NO_PROXY": "127.0.0.1,localhost",
        }

    @property
    def note(self) -> Path:
        return self.home / "note.txt"

    @property
    def log(self) -> Path:
        return self.home / "state" / self.exe.name / "log" / f"{self.exe.name}.log"

    def start(self, note: str = "note.txt") -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [str(self.exe)],
            env=self.env(note),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.started.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.started:
            kill_group_of(proc.pid)
            proc.wait(WAIT)


@pytest.fixture
def install(e2e: E2E, screen: Screen, tmp_path: Path) -> Iterator[Install]:
    e2e.clear()
    made = Install(tmp_path / "install" / "notes", tmp_path, screen, e2e)
    made.exe.parent.mkdir(parents=True)
    yield made
    made.stop_all()
    for pid in processes_of(made.exe.resolve()):  # a version restart_on_exit started: a session of its own
        kill_group_of(pid)


def copy_exe(build: Path, exe: Path) -> None:
    shutil.copyfile(build, exe)
    exe.chmod(0o755)


def test_the_tk_app_asks_installs_a_patch_and_restarts_with_its_note_saved(
    apps: Apps, install: Install, screen: Screen
) -> None:
    v1, v2 = apps.notes("1.0.0"), apps.notes("2.0.0")
    apps.e2e.publish(v1)
    apps.e2e.publish(v2, patches=1)
    copy_exe(v1, install.exe)
    old = install.start()
    screen.type("note.txt - Notes 1.0.0", "unsaved work in 1.0.0")
    screen.press("note.txt - Notes 1.0.0", "F5")  # Help > Check for updates
    screen.wait_window("Update available")
    shot = screen.screenshot(install.home / "dialog.png")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("GUPPER_UPDATE_DOCS_SHOTS"):  # refresh the README's picture from a real run
        geometry = screen.xdotool("getwindowgeometry", "--shell", screen.wait_window("note.txt - Notes 1.0.0"))
        size = dict(line.split("=", 1) for line in geometry.split())
        DOCS_SHOT.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "convert",
                str(shot),
                "-crop",
                f"{size['WIDTH']}x{size['HEIGHT']}+{size['X']}+{size['Y']}",
                "+repage",
                str(DOCS_SHOT),
            ],
            check=True,
            timeout=WAIT,
        )
    screen.press("Update available", "Return")  # Yes: download (a patch) and install in the background
    screen.press("Update ready", "Return")  # Yes: restart now
    assert old.wait(WAIT) == 0  # 1.0.0 saved the note and quit through its own path
    screen.wait_window("note.txt - Notes 2.0.0")
    assert sha256(install.exe) == sha256(v2)
    assert processes_of(install.exe), "no process runs the installed file"
    assert install.note.read_text() == "unsaved work in 1.0.0"
    assert screen.titles(" - Notes ") == ["note.txt - Notes 2.0.0"]  # exactly one app afterwards
    log = install.log.read_text()
    offer = next(line for line in log.splitlines() if "offering 2.0.0" in line)
    assert "kB to download" in offer, offer  # the patch, not the 25 MB file
    assert "applied a" in log and "-byte patch instead of downloading" in log
    assert log.index("saved 21 characters, quitting") < log.index("now running 2.0.0")


def test_a_running_app_that_declined_the_restart_loads_new_code_after_the_swap(
    apps: Apps, install: Install, screen: Screen
) -> None:
    v1, v2 = apps.notes("1.0.0"), apps.notes("2.0.0")
    apps.e2e.publish(v1)
    apps.e2e.publish(v2, patches=1)
    copy_exe(v1, install.exe)
    first = install.start("first.txt")
    second = install.start("second.txt")  # another instance of 1.0.0, which never checks
    first_window = screen.wait_window("first.txt - Notes 1.0.0")
    second_window = screen.wait_window("second.txt - Notes 1.0.0")
    screen.xdotool("windowfocus", "--sync", first_window, "key", "F5")
    screen.press("Update available", "Return")
    screen.press("Update ready", "Escape")  # No: keep working in 1.0.0
    assert sha256(install.exe) == sha256(v2)  # the file both instances started from is 2.0.0 now
    for window in (first_window, second_window):
        screen.xdotool("windowfocus", "--sync", window, "key", "F6")  # File > Export: csv, xml.dom.minidom
        screen.press("Exported", "Return")
    assert first.poll() is None and second.poll() is None
    export = install.home / "export"
    assert (export / "notes.csv").exists() and (export / "notes.xml").read_text().startswith("<?xml")
    assert install.log.read_text().count("notes: exported notes.csv, notes.xml") == 2


def test_a_release_that_crashes_building_its_window_is_rolled_back_in_the_gui_flow(
    apps: Apps, install: Install, screen: Screen
) -> None:
    v1, bad = apps.notes("1.0.0"), apps.notes("3.0.0", crash=True)
    apps.e2e.publish(v1)
    apps.e2e.publish(bad, patches=1)
    copy_exe(v1, install.exe)
    old = install.start()
    screen.press("note.txt - Notes 1.0.0", "F5")
    screen.press("Update available", "Return")
    screen.press("Update ready", "Return")
    assert old.wait(WAIT) == 0
    _out, err = old.communicate(timeout=WAIT)  # the pipes are 3.0.0's too: closed once it has crashed
    assert "3.0.0 cannot build its window" in err  # start 1 of its trial
    state = StateFile(install.home / "state" / "gupper" / "notes")
    trial = state.load().trial
    assert trial is not None and trial.version == "3.0.0" and trial.starts == 1
    second = install.start()
    assert second.wait(WAIT) != 0  # start 2: crashes again
    third = install.start()  # start 3: Updater() rolls back and restarts into 1.0.0 at once
    screen.wait_window("note.txt - Notes 1.0.0")
    assert third.poll() is None  # exec: the process started as 3.0.0 is 1.0.0 now
    assert sha256(install.exe) == sha256(v1)
    assert "3.0.0" in state.load().bad_versions
    log = install.log.read_text()
    assert "3.0.0 started 2 times without Updater.confirm()" in log and "rolled back to 1.0.0" in log


def test_the_qt_app_asks_takes_a_folder_delta_and_restarts(apps: Apps, install: Install, screen: Screen) -> None:
    pytest.importorskip("PySide6", reason="PySide6 is in the test extra: pip install -e '.[test]'")
    v1, v2 = apps.viewer("1.0.0"), apps.viewer("2.0.0")
    # A 170 MB bundle stored file by file (so later releases make deltas from it): minutes on a busy machine.
    apps.e2e.publish(v1, patches=1, timeout=900)
    apps.e2e.publish(v2, patches=1, timeout=900)
    root = install.home / "viewer"
    (root / "versions").mkdir(parents=True)
    shutil.copytree(v1, root / "versions" / "1.0.0", symlinks=True)
    (root / "current").symlink_to("versions/1.0.0")
    install.exe = root / "current" / "viewer"
    old = install.start()
    screen.press("Update available", "Return")
    screen.press("Update ready", "Return")
    assert old.wait(WAIT) == 0
    screen.wait_window("Viewer 2.0.0")
    assert screen.titles("^Viewer ") == ["Viewer 2.0.0"]
    assert os.readlink(root / "current") == "versions/2.0.0"
    log = install.log.read_text()
    offer = next(line for line in log.splitlines() if "offering 2.0.0" in line)
    assert "kB to download" in offer, offer
    assert "built 2.0.0 from 1.0.0" in log and "now running 2.0.0" in log
