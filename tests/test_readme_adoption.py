"""README "Use it in your app", followed literally: a fresh venv, the install line, keygen, the
example app (Notely, with a module of its own named ``updater``) built with plain PyInstaller,
``gupper-publish init`` and two releases to the local S3 store, then the installed 1.0.0 started:
it updates itself to 1.1.0.

Only what a user would fill in is replaced: where Gupper is installed from (this checkout), the
bucket, the download URL and the public key. Every code block of the section is run here; the
GUI example runs against fakes of a UI toolkit (``test_the_gui_example_asks_then_installs``).
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest

from gupper import Platform, UpdaterConfig
from gupper_publish.signing import public_key_of

from .e2e_support import E2E
from .rawhttp import RawServer, Script, response
from .test_field_hardening import ARTIFACT, KEY, MANIFEST, NEW, OLD, manifest

ROOT = Path(__file__).resolve().parent.parent
SECTION = "## Use it in your app"
BLOCK = re.compile(r"<!-- readme-test: (\S+)(?: (\S+))? -->\n```(\w+)\n(.*?)\n```", re.S)


def readme_blocks() -> list[tuple[str, str, str]]:
    """(kind, argument, code) of each tested block of the section, in order."""
    text = (ROOT / "README.md").read_text()
    start = text.index(SECTION)
    section = text[start : text.index("\n## ", start + len(SECTION))]
    return [(kind, arg or "", code) for kind, arg, _lang, code in BLOCK.findall(section)]


# Blocks of the section run by another test (its own app name, its own store): first line -> test.
COVERED_ELSEWHERE = {
    "pip install gupper                 # the client your app embeds: requests, packaging, pynacl": "tests/test_packaging.py",  # noqa: E501 (the README's line, verbatim)
    "gupper-publish build notely.py --name notely --version 1.0.0             # prints dist/notely-1.0.0-linux-amd64": "tests/test_build_helper.py",  # noqa: E501 (the README's line, verbatim)
    "python -m gupper_infra.localstore --state-dir ~/.gupper-store   # leave it running; it prints export lines": "tests/test_infra_localstore.py",  # noqa: E501 (the README's line, verbatim)
}


# Output the section shows, each produced again and compared line by line by a test: name -> that test.
OUTPUT_CHECKED_BY = {
    "publish-dry-run": "tests/test_publish_dry_run.py",
    "gupper-check": "tests/test_check_command.py",
}


def test_every_output_the_section_shows_is_compared_with_real_output() -> None:
    shown = {arg for kind, arg, _code in readme_blocks() if kind == "output"}
    assert shown == set(OUTPUT_CHECKED_BY)
    for name, test in OUTPUT_CHECKED_BY.items():
        assert f'("output", "{name}")' in (ROOT / test).read_text(), (name, test)


def test_every_code_block_of_the_section_is_run_by_a_test() -> None:
    text = (ROOT / "README.md").read_text()
    start = text.index(SECTION)
    section = text[start : text.index("\n## ", start + len(SECTION))]
    fenced = re.findall(r"(<!-- readme-test: [^>]+ -->\n)?```\w*\n(.*?)\n```", section, re.S)
    untested = [code.splitlines()[0] for marker, code in fenced if not marker and "|" not in code.splitlines()[0]]
    assert set(untested) == set(COVERED_ELSEWHERE), untested
    for first_line, test in COVERED_ELSEWHERE.items():
        command = " ".join(first_line.split()[:3])  # "pip install gupper", "gupper-publish build notely.py"
        assert (ROOT / test).exists() and command.split()[0] in (ROOT / test).read_text(), (first_line, test)
    assert len(fenced) - len(untested) == len(readme_blocks())


def test_the_example_app_in_the_repository_is_the_readmes() -> None:
    files = {arg: code + "\n" for kind, arg, code in readme_blocks() if kind == "file"}
    assert set(files) == {"notely.py", "updater.py"}
    for name, code in files.items():
        assert (ROOT / "examples" / "notely" / name).read_text() == code, name


# --- The GUI example, against a fake UI toolkit -----------------------------------------------


class FakeWindow:
    """What the example needs of a UI toolkit: a yes/no question, a timer on the UI thread
    (``after``, as Tk's), a progress display, ``close`` and a main loop."""

    def __init__(self, answers: dict[str, bool]) -> None:
        self.answers = answers
        self.asked: list[str] = []
        self.progress_seen: list[tuple[int, int]] = []
        self.timers: list[Callable[[], None]] = []
        self.thread = threading.current_thread()
        self.closed = False
        self.off_thread: list[str] = []

    def _on_ui(self, what: str) -> None:
        if threading.current_thread() is not self.thread:
            self.off_thread.append(what)

    def ask(self, question: str) -> bool:
        self._on_ui("ask")
        self.asked.append(question)
        return next(a for prefix, a in self.answers.items() if prefix in question)

    def progress(self, done: int, total: int) -> None:
        self._on_ui("progress")
        self.progress_seen.append((done, total))

    def after(self, ms: int, callback: Callable[[], None]) -> None:
        self._on_ui("after")
        self.timers.append(callback)

    def close(self) -> None:
        self._on_ui("close")
        self.closed = True

    def mainloop(self) -> None:
        """Run the timers every 20 ms until the window is closed, at most 60 s."""
        deadline = time.monotonic() + 60
        while not self.closed:
            assert time.monotonic() < deadline, self.asked
            due, self.timers = self.timers, []
            for callback in due:
                callback()
            threading.Event().wait(0.02)  # a toolkit's event loop idles between its timers


@pytest.mark.posix
def test_the_gui_example_asks_then_installs_on_the_ui_thread(raw: RawServer, tmp_path: Path) -> None:
    (code,) = [code for kind, _arg, code in readme_blocks() if kind == "gui-example"]
    exe = tmp_path / "install" / "notely"
    exe.parent.mkdir()
    exe.write_bytes(OLD)
    exe.chmod(0o755)
    raw.routes[MANIFEST] = Script.of(response(200, [("ETag", '"m"')], manifest(notes="Search your notes.")), end="keep")
    raw.routes[ARTIFACT] = Script.of(response(200, [("ETag", '"a"')], NEW), end="keep")
    window = FakeWindow({"is available": True, "Restart now?": True})
    namespace: dict[str, Any] = {"__name__": "notely_gui", "__version__": "1.0.0", "make_window": lambda: window}
    namespace["UPDATES"] = UpdaterConfig(
        app="app",
        current_version="1.0.0",
        manifest_url=raw.url(MANIFEST),
        public_keys=(public_key_of(KEY).to_text(),),
        ca_bundle=raw.ca_path,
        executable=str(exe),
        platform=Platform("linux", "amd64"),
        state_dir=str(tmp_path / "state"),
        retries=0,
    )
    exec(compile(code, "README.md#gui-example", "exec"), namespace)
    logs: list[str] = []
    namespace["log_to_file"] = logs.append  # the test writes no log file in the user's folders
    launches: list[Any] = []
    with patch("gupper.client.Updater.restart_on_exit", lambda self, version: launches.append(version)):
        namespace["BackgroundUpdates"] = functools.partial(namespace["BackgroundUpdates"], first_check=0)  # not 10 s
        namespace["main"]()
    available, restart = window.asked
    assert available.startswith("Notely 2.0.0 is available (0.3 MB). Search your notes. Install it now?")
    assert restart == "Notely 2.0.0 is ready. Restart now?"
    assert exe.read_bytes() == NEW and window.closed and launches == ["2.0.0"] and logs == ["notely"]
    assert window.progress_seen[-1] == (len(NEW), len(NEW)) and not window.off_thread


# --- The whole section, in a fresh venv ---------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.posix
def test_the_readme_section_followed_literally_in_a_fresh_venv(e2e: E2E, tmp_path: Path) -> None:
    e2e.clear()
    project, home = tmp_path / "notely", tmp_path / "home"
    project.mkdir()
    home.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("VIRTUAL_ENV", "PYTHONPATH", "_PYI_", "PYINSTALLER_", "GUPPER_"))
    }
    env.update(e2e.store.s3_env())  # the user's S3 credentials and endpoint
    env.update(HOME=str(home), TMPDIR=str(tmp_path), PIP_DISABLE_PIP_VERSION_CHECK="1")
    app_env = dict(env, REQUESTS_CA_BUNDLE=e2e.store.ca)  # the installed app trusts the store's test CA (pip must not)
    env["PATH"] = (
        f"{project / '.venv' / 'bin'}{os.pathsep}{env['PATH']}"  # what ". .venv/bin/activate" does for later blocks
    )
    bucket, public = f"s3://{e2e.store.bucket}", e2e.store.url("").rstrip("/")

    def fill(code: str) -> str:
        code = code.replace('"gupper[publisher]"', f'"{ROOT}[publisher]"').replace("s3://my-bucket", bucket)
        code = code.replace("https://downloads.example.com", public)
        if (project / "keys" / "release.pub").exists():
            code = code.replace(
                "ed25519:PASTE-THE-LINE-OF-keys/release.pub", (project / "keys" / "release.pub").read_text().strip()
            )
        return code

    ran: list[str] = []
    output = printed = ""
    for kind, arg, code in readme_blocks():
        if kind == "file":
            (project / arg).write_text(fill(code) + "\n")
        elif kind in ("sh", "run"):
            run_env = app_env if kind == "run" else env
            proc = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", fill(code)],
                cwd=project,
                env=run_env,
                capture_output=True,
                text=True,
                timeout=900,
                check=False,
            )
            assert proc.returncode == 0, (
                f"README block failed:\n{code}\n--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}"
            )
            if kind == "run":
                output, printed = proc.stderr, proc.stdout
        ran.append(kind)
    assert ran.count("sh") == 5 and ran.count("run") == 1 and "gui-example" in ran
    assert "gupper: updating notely 1.0.0 -> 1.1.0" in output, output
    assert "gupper: now running 1.1.0" in output and printed.strip() == "Notely 1.1.0: 0 notes", (printed, output)
    installed = home / ".local" / "bin" / "notely"
    (v11,) = (project / "dist").glob("notely-1.1.0-*")
    assert installed.read_bytes() == v11.read_bytes()
    again = subprocess.run([str(installed)], env=app_env, capture_output=True, text=True, timeout=120, check=False)
    assert again.returncode == 0 and again.stdout.strip() == "Notely 1.1.0: 0 notes", again.stderr
    shutil.rmtree(project / "build", ignore_errors=True)
    print(f"\nREADME section followed: {len(ran)} blocks; python {sys.version.split()[0]}")
