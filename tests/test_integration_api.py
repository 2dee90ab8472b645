"""The integration contract an app relies on (README "Use it in your app"): the self-test answered
however the app drives the updater, the ask-first flow, events, confirm(), and what gets logged.

The "new version" here is a real Python program that embeds Gupper the way an app does, so its
self-test goes through the same code a frozen app runs.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gupper import Status, Update, UpdateError
from gupper_publish.signing import public_key_of

from .rawhttp import RawServer, Script, response
from .test_field_hardening import ARTIFACT, KEY, MANIFEST, NEW, OLD, manifest, updater

pytestmark = pytest.mark.posix

GUI_APP = """#!{python}
# A GUI app that creates its updater only inside its event loop (a menu item), after its window.
import pathlib, sys, time
sys.path[:0] = {paths!r}
from gupper import Updater, UpdaterConfig, answer_self_test

answer_self_test("2.0.0")  # first thing in main(): a pre-flight ends here, before any window
pathlib.Path({marker!r}).write_text("the window opened")
time.sleep(30)
"""

ASK_FIRST_APP = """#!{python}
# An app that builds its Updater at start-up and asks the user before anything is downloaded.
import pathlib, sys, time
sys.path[:0] = {paths!r}
from gupper import Updater, UpdaterConfig

updater = Updater(UpdaterConfig(app="app", current_version="2.0.0", manifest_url={url!r}, public_keys=({key!r},)))
pathlib.Path({marker!r}).write_text("the window opened")
time.sleep(30)
"""


def publish(raw: RawServer, data: bytes, notes: str | None = None) -> None:
    body = manifest(data=data, notes=notes)
    raw.routes[MANIFEST] = Script.of(response(200, [("ETag", '"m"')], body), end="keep")
    raw.routes[ARTIFACT] = Script.of(response(200, [("ETag", '"a"')], data), end="keep")


def python_app(template: str, raw: RawServer, marker: Path) -> bytes:
    paths = [p for p in sys.path if p]
    return template.format(
        python=sys.executable, paths=paths, marker=str(marker), url=raw.url(MANIFEST), key=public_key_of(KEY).to_text()
    ).encode()


@pytest.mark.parametrize(
    "template", [ASK_FIRST_APP, GUI_APP], ids=["updater-built-at-start", "answer_self_test-first-in-main"]
)
def test_the_ask_first_flow_self_tests_without_starting_the_apps_ui(
    raw: RawServer, exe: Path, tmp_path: Path, template: str
) -> None:
    marker = tmp_path / "window"
    new = python_app(template, raw, marker)
    publish(raw, new)
    u = updater(raw.base, raw.ca_path, exe)
    update = u.check()
    assert update is not None and update.version == "2.0.0" and update.size == len(new)
    staged = u.download(update)
    u.install(staged, update.version)  # the pre-flight: the new version answers and exits
    assert exe.read_bytes() == new and not marker.exists()


def test_a_new_version_whose_updater_config_is_broken_fails_its_self_test(
    raw: RawServer, exe: Path, tmp_path: Path
) -> None:
    broken = python_app(
        ASK_FIRST_APP.replace("public_keys=({key!r},)", "public_keys=('ed25519:not-a-key',)"), raw, tmp_path / "window"
    )
    publish(raw, broken)
    result = updater(raw.base, raw.ca_path, exe).run(restart=False)
    assert result.status is Status.FAILED and type(result.error).__name__ == "PreflightFailedError"
    assert exe.read_bytes() == OLD  # it could never update itself again: refused


def test_on_available_sees_version_size_and_notes_and_can_defer(raw: RawServer, exe: Path) -> None:
    publish(raw, NEW, notes="Faster start-up.\nFixes the crash on save.")
    seen: list[Update] = []

    def ask(update: Update) -> bool:
        seen.append(update)
        return False  # "Later"

    result = updater(raw.base, raw.ca_path, exe).run(restart=False, on_available=ask)
    assert result.status is Status.DEFERRED and "2.0.0 is available" in result.message
    assert [(u.version, u.size, u.notes) for u in seen] == [
        ("2.0.0", len(NEW), "Faster start-up.\nFixes the crash on save.")
    ]
    assert ARTIFACT not in raw.paths() and exe.read_bytes() == OLD
    accepted = updater(raw.base, raw.ca_path, exe).run(restart=False, on_available=lambda update: True)
    assert accepted.status is Status.INSTALLED and exe.read_bytes() == NEW


def test_the_steps_raise_only_update_errors(raw: RawServer, exe: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    publish(raw, NEW)
    u = updater(raw.base, raw.ca_path, exe)
    update = u.check()
    assert update is not None
    monkeypatch.setattr("gupper.download.Downloads.pick_patch", lambda *a: 1 / 0)  # a bug in Gupper
    with pytest.raises(UpdateError, match=r"internal error \(ZeroDivisionError"):
        u.download(update)
    assert exe.read_bytes() == OLD


def test_a_step_while_another_instance_updates_is_refused_not_raced(raw: RawServer, exe: Path) -> None:
    publish(raw, NEW)
    first, second = updater(raw.base, raw.ca_path, exe), updater(raw.base, raw.ca_path, exe)
    update = second.check()
    assert update is not None
    with first._lock() as locked:
        assert locked
        with pytest.raises(UpdateError, match="another instance is updating app"):
            second.download(update)


def test_confirm_never_raises(
    exe: Path, raw: RawServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(self: object) -> None:
        raise OSError(5, "Input/output error")

    made = updater(raw.base, raw.ca_path, exe)
    monkeypatch.setattr("gupper.state.StateFile.load", broken)
    made.confirm()
    assert [r.getMessage() for r in caplog.records] == [
        "gupper: could not confirm 1.0.0 (OSError: [Errno 5] Input/output error); it stays on trial"
    ]


LOGGING_DEFAULTS = """
import sys
sys.path[:0] = {paths!r}
from tests.test_field_hardening import updater
from pathlib import Path
{setup}
result = updater({base!r}, {ca!r}, Path({exe!r}), public_keys=({key!r},)).run(restart=False)
print("result:", result.status.value)
"""


@pytest.mark.parametrize(
    ("setup", "expect"),
    [
        ("", ["gupper: update failed, carrying on with 1.0.0: "]),  # no logging configured: warnings still reach stderr
        (
            "import logging; logging.basicConfig(level=logging.INFO, format='%(message)s')",
            ["gupper: updating app 1.0.0 -> 2.0.0", "gupper: update failed"],
        ),
    ],
    ids=["no-logging-configured", "info-enabled"],
)
def test_what_reaches_stderr_with_and_without_logging_configured(
    raw: RawServer, exe: Path, setup: str, expect: list[str]
) -> None:
    publish(raw, NEW)
    raw.routes[ARTIFACT] = Script.of(
        response(200, [("Content-Length", str(len(NEW)))], NEW[:100], length=False), end="reset"
    )
    root = str(Path(__file__).resolve().parent.parent)
    code = LOGGING_DEFAULTS.format(
        paths=[root, *sys.path],
        setup=setup,
        base=raw.base,
        ca=raw.ca_path,
        exe=str(exe),
        key=public_key_of(KEY).to_text(),
    )
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.stdout.strip() == "result: failed", proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == len(expect) and all(line.startswith(e) for line, e in zip(lines, expect, strict=True)), lines


def test_the_gupper_logger_is_the_one_to_configure(raw: RawServer, exe: Path, caplog: pytest.LogCaptureFixture) -> None:
    raw.routes[MANIFEST] = Script.of(response(200, [("ETag", '"m"')], manifest(version="1.0.0")), end="keep")
    with caplog.at_level(logging.DEBUG, logger="gupper"):
        updater(raw.base, raw.ca_path, exe).run(restart=False)
    assert {r.name for r in caplog.records} == {"gupper"}
