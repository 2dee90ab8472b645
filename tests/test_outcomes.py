"""Trial outcome reports (gupper.outcomes): one GET beside the manifest when a trial ends, with the
manifest check's User-Agent and nothing more, never holding up the app, off when the config says so,
and sent before a rollback re-executes the previous version or a process exits."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from gupper import Status, outcomes
from gupper.outcomes import Outcome, outcome_url

from .conftest import MakeManifest, entry, fake_app
from .httpsim import Sim, status
from .test_client import make_updater, publish_release

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = "/app/stable/latest.json"
ARTIFACT = "/app/2.0.0/app-2.0.0-linux-amd64"  # the same paths as test_client's
OUTCOMES = "/app/stable/outcomes/2.0.0/linux-amd64/"
OLD = b"#!/bin/sh\necho old\n"


def install_v2(sim: Sim, exe: Path, make_manifest: MakeManifest, public_key: str) -> None:
    """Publish 2.0.0 on the simulator and let the installed 1.0.0 take it: 2.0.0 is then on trial."""
    publish_release(sim, make_manifest)
    assert make_updater(sim, exe, public_key).run(restart=False).status is Status.INSTALLED


def reports(sim: Sim) -> list[tuple[str, dict[str, str]]]:
    return [(path, headers) for method, path, headers in sim.requests if "/outcomes/" in path]


def test_the_url_is_beside_the_manifest_under_the_channel() -> None:
    base = "https://cdn.example.com/releases/app/beta/latest.json?x=1"
    assert outcome_url(base, "2.0.0", "linux-amd64", Outcome.CONFIRMED) == (
        "https://cdn.example.com/releases/app/beta/outcomes/2.0.0/linux-amd64/confirmed"
    )
    assert outcome_url(base, "2.0.0+local.1", "windows-arm64", Outcome.PREFLIGHT_INTERRUPTED).endswith(
        "/app/beta/outcomes/2.0.0%2Blocal.1/windows-arm64/preflight-interrupted"
    )
    assert [o.value for o in Outcome] == ["confirmed", "rolled-back", "preflight-failed", "preflight-interrupted"]


def test_confirm_reports_once_with_the_check_user_agent_and_nothing_else(
    sim: Sim, exe: Path, make_manifest: MakeManifest, keypair: tuple[Path, object, str]
) -> None:
    install_v2(sim, exe, make_manifest, keypair[2])
    v2 = make_updater(sim, exe, keypair[2], current_version="2.0.0")
    assert v2.run(restart=False).status is Status.UP_TO_DATE  # a start of 2.0.0, on trial
    v2.confirm()  # the store has nothing there: a 404, which is fine
    v2.confirm()  # the trial is over: nothing more to report
    outcomes.settle()
    check = [headers for method, path, headers in sim.requests if path == MANIFEST][-1]
    (path, headers), *more = reports(sim)
    assert path == OUTCOMES + "confirmed" and not more
    assert headers["User-Agent"] == check["User-Agent"] == "gupper-updater (app/2.0.0; linux-amd64)"
    assert set(headers) <= set(check), "the report sends no header the manifest check does not"


def test_reports_off_sends_nothing(
    sim: Sim, exe: Path, make_manifest: MakeManifest, keypair: tuple[Path, object, str]
) -> None:
    install_v2(sim, exe, make_manifest, keypair[2])
    make_updater(sim, exe, keypair[2], current_version="2.0.0", report_outcomes=False).confirm()
    outcomes.settle()
    assert reports(sim) == []


def test_a_failed_preflight_is_reported_for_the_version_that_failed(
    sim: Sim, exe: Path, make_manifest: MakeManifest, keypair: tuple[Path, object, str]
) -> None:
    bad = fake_app("2.0.0", self_test_version="1.9.9")  # answers its self-test with another version
    sim.routes[ARTIFACT] = bad
    sim.routes[MANIFEST] = make_manifest(
        platforms={"linux-amd64": entry("2.0.0", size=len(bad), sha=hashlib.sha256(bad).hexdigest())}
    )
    result = make_updater(sim, exe, keypair[2]).run(restart=False)
    assert result.status is Status.FAILED and "reports version 1.9.9" in result.message
    outcomes.settle()
    ((path, headers),) = reports(sim)
    assert path == OUTCOMES + "preflight-failed"
    assert headers["User-Agent"] == "gupper-updater (app/1.0.0; linux-amd64)"  # the version that is running


def test_a_server_that_never_answers_does_not_hold_the_app(
    sim: Sim, exe: Path, make_manifest: MakeManifest, keypair: tuple[Path, object, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    install_v2(sim, exe, make_manifest, keypair[2])
    arrived, release = threading.Event(), threading.Event()

    def hold(h: BaseHTTPRequestHandler) -> None:
        arrived.set()
        release.wait(30)  # bounded: the test releases it, or the client's deadline has long passed

    sim.routes[OUTCOMES + "confirmed"] = hold
    monkeypatch.setattr(outcomes, "DEADLINE", 0.5)
    make_updater(sim, exe, keypair[2], current_version="2.0.0").confirm()  # returns while the GET waits
    assert arrived.wait(10), "the report never reached the server"
    assert not release.is_set()
    with outcomes._lock:
        sending = list(outcomes._pending)
    outcomes.settle(10)  # the report's own deadline ends it, not the server
    assert sending and not any(t.is_alive() for t in sending)
    release.set()


def test_no_retry_on_a_server_error(
    sim: Sim, exe: Path, make_manifest: MakeManifest, keypair: tuple[Path, object, str]
) -> None:
    install_v2(sim, exe, make_manifest, keypair[2])
    sim.routes[OUTCOMES + "confirmed"] = status(503)
    make_updater(sim, exe, keypair[2], current_version="2.0.0", retries=2).confirm()
    outcomes.settle()
    assert [path for path, _ in reports(sim)] == [OUTCOMES + "confirmed"]


PROCESS = textwrap.dedent(
    """
    import sys
    from gupper import Platform, Updater, UpdaterConfig
    manifest_url, key, ca, exe, state, what = sys.argv[1:]
    cfg = UpdaterConfig(
        app="app", current_version="2.0.0", manifest_url=manifest_url, public_keys=(key,), ca_bundle=ca,
        executable=exe, state_dir=state, platform=Platform("linux", "amd64"), retries=0,
        trial_starts=1 if what == "confirm" else 0,
    )
    # trial_starts=0: creating the updater is the start that rolls back and re-executes the previous version
    updater = Updater(cfg, environ={}, argv=["app"])
    updater.confirm()  # and exit at once, as a short-lived tool does
    print("not reached" if what == "rollback" else "exiting")
    """
)


@pytest.mark.posix
@pytest.mark.parametrize(
    ("what", "outcome", "output"), [("confirm", "confirmed", "exiting"), ("rollback", "rolled-back", "old")]
)
def test_the_report_goes_out_before_the_process_exits_or_execs(
    sim: Sim,
    exe: Path,
    make_manifest: MakeManifest,
    keypair: tuple[Path, object, str],
    what: str,
    outcome: str,
    output: str,
) -> None:
    exe.write_bytes(OLD)
    cfg = make_updater(sim, exe, keypair[2]).config  # before the install: a 1.0.0 start later would end 2.0.0's trial
    install_v2(sim, exe, make_manifest, keypair[2])
    args = [cfg.manifest_url, keypair[2], sim.ca_path, str(exe), str(cfg.state_dir), what]
    proc = subprocess.run(
        [sys.executable, "-c", PROCESS, *args], capture_output=True, text=True, timeout=60, check=False, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [output]  # "old": the previous version runs in its place
    assert [path for path, _ in reports(sim)] == [OUTCOMES + outcome]
