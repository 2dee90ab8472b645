"""Real windows for the desktop tests: an Xvfb screen, xdotool to press keys in named windows, and
the example apps built the way README "Use it in your app" says (``gupper-publish build``)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WAIT = 60.0
"""Bound on every wait for a window, a process or a file in the desktop tests."""


def require_screen() -> None:
    """Skip, saying what to install, when there is no virtual screen to be had."""
    missing = [tool for tool in ("Xvfb", "xdotool") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"no {' or '.join(missing)}: install them with 'bash scripts/desktop.sh install'")


@dataclass
class Screen:
    """A running Xvfb and the environment that puts windows on it."""

    display: str
    process: subprocess.Popen[bytes]

    def env(self) -> dict[str, str]:
        return {"DISPLAY": self.display, "QT_QPA_PLATFORM": "xcb"}

    def xdotool(self, *args: str, timeout: float = WAIT) -> str:
        """Run xdotool against this screen; its output."""
        proc = subprocess.run(
            ["xdotool", *args],
            env={**os.environ, **self.env()},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if proc.returncode != 0:
            raise AssertionError(f"xdotool {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc.stdout

    def wait_window(self, title: str) -> str:
        """The id of the first window titled exactly ``title``, waiting (bounded) until one is mapped."""
        out = self.xdotool("search", "--sync", "--onlyvisible", "--name", f"^{title}$")
        return out.split()[0]

    def titles(self, pattern: str) -> list[str]:
        """The titles of the visible windows whose title matches the regular expression ``pattern``."""
        proc = subprocess.run(
            ["xdotool", "search", "--onlyvisible", "--name", pattern, "getwindowname", "%@"],
            env={**os.environ, **self.env()},
            capture_output=True,
            text=True,
            timeout=WAIT,
            check=False,
        )
        return sorted(proc.stdout.splitlines())

    def press(self, title: str, *keys: str) -> None:
        """Focus the window titled ``title`` (waiting for it) and press ``keys`` there."""
        window = self.wait_window(title)
        self.xdotool("windowfocus", "--sync", window, "key", "--delay", "50", *keys)

    def type(self, title: str, text: str) -> None:
        """Focus the window titled ``title`` and type ``text`` into its focused widget."""
        window = self.wait_window(title)
        self.xdotool("windowfocus", "--sync", window, "type", "--delay", "20", text)

    def screenshot(self, path: Path) -> Path:
        """The whole screen as a PNG (ImageMagick's import)."""
        subprocess.run(
            ["import", "-window", "root", str(path)],
            env={**os.environ, **self.env()},
            check=True,
            timeout=WAIT,
            capture_output=True,
        )
        return path


@pytest.fixture(scope="module")
def screen() -> Iterator[Screen]:
    """An Xvfb screen for the module; Xvfb writes its display number to a pipe once it is ready."""
    require_screen()
    read, write = os.pipe()
    proc = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write), "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
        pass_fds=(write,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    os.close(write)
    try:
        import select

        ready, _, _ = select.select([read], [], [], WAIT)
        number = os.read(read, 32).decode().strip() if ready else ""
        if not number:
            pytest.fail("Xvfb did not report a display")
        yield Screen(f":{number}", proc)
    finally:
        os.close(read)
        proc.terminate()
        proc.wait(WAIT)


def build_example(
    source: Path,
    script: str,
    name: str,
    version: str,
    settings: str,
    out: Path,
    *,
    onedir: bool = False,
    edit: Sequence[tuple[str, str]] = (),
) -> Path:
    """Build an example app as a user would: its folder copied, ``update_settings.py`` written,
    ``edit`` applied to the script (a bug in a release), then ``gupper-publish build ... -- --windowed``.

    Gupper is installed editable here (a PEP 660 finder PyInstaller does not follow), so its source
    folder is passed with ``--paths``, as a user developing beside Gupper would.
    """
    work = out.parent / f"src-{name}-{version}-{len(edit)}"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(source, work, ignore=shutil.ignore_patterns("README.md", "__pycache__"))
    (work / "update_settings.py").write_text(settings)
    text = (work / script).read_text()
    for old, new in edit:
        assert old in text, old
        text = text.replace(old, new)
    (work / script).write_text(text)
    command = [
        sys.executable,
        "-m",
        "gupper_publish",
        "build",
        script,
        "--name",
        name,
        "--version",
        version,
        "--out",
        str(out),
        *(["--onedir"] if onedir else []),
        "--",
        "--windowed",
        "--paths",
        str(ROOT / "updater"),
        "--paths",
        ".",
    ]
    proc = subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return Path(proc.stdout.strip().splitlines()[-1]).resolve() if proc.stdout.strip() else out


def processes_of(path: Path) -> list[int]:
    """The processes running the executable at ``path``, or an earlier file that was at that path
    (Linux: ``/proc/<pid>/exe``; the kernel adds " (deleted)" once the file was replaced)."""
    target = str(path)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            exe = os.readlink(entry / "exe")
        except OSError:
            continue
        if exe == target or exe == target + " (deleted)":
            found.append(int(entry.name))
    return found


def kill_group_of(pid: int) -> None:
    """End a process started as a session of its own (a version started by ``restart_on_exit``)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(os.getpgid(pid), signal.SIGKILL)
